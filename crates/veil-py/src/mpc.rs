//! `veil._native.mpc`: sessions, the dealer and the `stats` program of one party (the
//! `veil.mpc` module runs each participant as its own Python process over mutual TLS).

use std::path::PathBuf;

use pyo3::prelude::*;
use veil_mpc::config::{init_loopback, SessionConfig};
use veil_mpc::programs::Stats;

use crate::errors::{mpc, MpcError};
use crate::f64s_from_le_bytes;

/// Adds the functions to the `mpc` submodule.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(local_session, m)?)?;
    m.add_function(wrap_pyfunction!(parties, m)?)?;
    m.add_function(wrap_pyfunction!(stats_spec, m)?)?;
    m.add_function(wrap_pyfunction!(run_dealer, m)?)?;
    m.add_function(wrap_pyfunction!(stats_party, m)?)?;
    m.add_function(wrap_pyfunction!(psi_party, m)?)?;
    Ok(())
}

/// Makes a session for `names` in `dir` (a CA, one certificate and key per participant) on
/// free loopback ports; returns the path of its `parties.toml`. For a session across
/// machines, make it with `veil mpc init` / `keygen` / `certify` instead.
#[pyfunction]
fn local_session(dir: PathBuf, names: Vec<String>) -> PyResult<PathBuf> {
    if names.len() < 2 {
        return Err(MpcError::new_err("a session needs at least two parties"));
    }
    init_loopback(&dir, &names).map_err(mpc)
}

/// The parties' names in the session's order.
#[pyfunction]
fn parties(config: PathBuf) -> PyResult<Vec<String>> {
    let c = SessionConfig::load(&config).map_err(mpc)?;
    Ok(c.parties.iter().map(|p| p.name.clone()).collect())
}

/// The canonical description of the `stats` program with these options.
#[pyfunction]
fn stats_spec(low: f64, high: f64, bins: usize, max_abs: f64) -> String {
    Stats {
        low,
        high,
        bins,
        max_abs,
    }
    .spec()
}

/// Runs the dealer of the session for `program` (its spec) until the parties end it;
/// returns `(requests, correction_bytes)`.
#[pyfunction]
fn run_dealer(py: Python<'_>, config: PathBuf, program: String) -> PyResult<(u64, u64)> {
    let c = SessionConfig::load(&config).map_err(mpc)?;
    let r = py
        .detach(|| veil_mpc::net::run_dealer(&c, &program))
        .map_err(mpc)?;
    Ok((r.requests, r.correction_bytes))
}

/// Runs party `id` of the `stats` program on this party's values (float64 bytes); returns
/// the result as JSON text at the parties that learn it, `None` elsewhere.
#[pyfunction]
#[pyo3(signature = (config, id, values_le, low, high, bins, max_abs))]
#[allow(clippy::too_many_arguments, reason = "the program's public options")]
fn stats_party(
    py: Python<'_>,
    config: PathBuf,
    id: usize,
    values_le: &[u8],
    low: f64,
    high: f64,
    bins: usize,
    max_abs: f64,
) -> PyResult<Option<String>> {
    let values = f64s_from_le_bytes(values_le)
        .ok_or_else(|| MpcError::new_err("values must be float64 bytes"))?;
    // Refused by its owner before it connects: nothing is miscomputed, nothing leaks.
    if let Some((i, v)) = values
        .iter()
        .enumerate()
        .find(|(_, v)| !v.is_finite() || v.abs() > max_abs)
    {
        return Err(MpcError::new_err(format!(
            "value {i} ({v}) is beyond max_abs {max_abs} (every party must give the same bound)"
        )));
    }
    let c = SessionConfig::load(&config).map_err(mpc)?;
    if id >= c.parties() {
        return Err(MpcError::new_err(format!(
            "party {id} is not in the session ({} parties)",
            c.parties()
        )));
    }
    let stats = Stats {
        low,
        high,
        bins,
        max_abs,
    };
    let r = py
        .detach(|| stats.run_party(&c, id, &values))
        .map_err(mpc)?;
    r.map(|r| serde_json::to_string(&r).map_err(|e| MpcError::new_err(e.to_string())))
        .transpose()
}

/// Runs party `id` of private set intersection in a two-party session: party 0 receives
/// (learns the common identifiers, or only their number), party 1 sends (learns only the
/// receiver's set size). Identifiers are normalised with `normalize` (`trim`, `casefold`,
/// `nfkc`, comma-separated, or `none`; both sides must give the same, as with `veil psi`,
/// which a Python party interoperates with). Returns JSON.
#[pyfunction]
#[pyo3(signature = (config, id, items, normalize, cardinality_only))]
fn psi_party(
    py: Python<'_>,
    config: PathBuf,
    id: usize,
    items: Vec<String>,
    normalize: &str,
    cardinality_only: bool,
) -> PyResult<String> {
    let normalization = veil_mpc::psi::Normalization::parse(normalize).map_err(mpc)?;
    let c = SessionConfig::load(&config).map_err(mpc)?;
    if c.parties() != 2 {
        return Err(MpcError::new_err(format!(
            "PSI is between 2 parties; {} lists {}",
            config.display(),
            c.parties()
        )));
    }
    if id > 1 {
        return Err(MpcError::new_err(format!(
            "party {id} is not in the session (0 receives, 1 sends)"
        )));
    }
    let items = normalization.identifiers(items.iter().map(String::as_str));
    let program = veil_mpc::psi::program(normalization, cardinality_only);
    let result = py.detach(|| -> veil_mpc::error::Result<serde_json::Value> {
        let mut ex = veil_mpc::net::connect_peers(&c, id, &program)?;
        if id == 1 {
            let theirs = veil_mpc::psi::send(&mut ex, 0, &items, cardinality_only)?;
            ex.finish()?;
            return Ok(serde_json::json!({ "role": "sender", "other_set_size": theirs }));
        }
        let out = veil_mpc::psi::receive(&mut ex, 1, &items, cardinality_only)?;
        ex.finish()?;
        let mut common: Vec<String> = out
            .intersection
            .iter()
            .map(|i| String::from_utf8_lossy(i).into_owned())
            .collect();
        common.sort();
        Ok(serde_json::json!({
            "role": "receiver",
            "size": out.size,
            "other_set_size": out.other_set_size,
            "intersection": if cardinality_only { serde_json::Value::Null } else { common.into() },
        }))
    });
    serde_json::to_string(&result.map_err(mpc)?).map_err(|e| MpcError::new_err(e.to_string()))
}
