//! `veil._native.dp`: budget ledgers, the DP SQL engine, mechanisms that charge a ledger
//! before they release, and local-DP reporters and estimators (the `veil.dp` module wraps
//! them, with pandas DataFrames for tables and results).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use veil_dp::accountant::Cost;
use veil_dp::ledger::{check_registered, SqliteLedger};
use veil_dp::mechanisms::{GaussianMechanism, LaplaceMechanism};
use veil_dp_sql::dataset::{metadata_sha256, open_ledger, shown_ledger, SharedLedger};
use veil_dp_sql::{Metadata, QueryOptions};

use crate::errors::{dp, sql, DpError};

/// Adds the classes and functions to the `dp` submodule.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Ledger>()?;
    m.add_class::<SqlEngine>()?;
    m.add_class::<Laplace>()?;
    m.add_class::<Gaussian>()?;
    m.add_class::<Accountant>()?;
    m.add_function(wrap_pyfunction!(randomized_response_report, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_fraction, m)?)?;
    m.add_function(wrap_pyfunction!(mean_report, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_mean, m)?)?;
    m.add_function(wrap_pyfunction!(unary_report, m)?)?;
    m.add_function(wrap_pyfunction!(estimate_frequencies, m)?)?;
    Ok(())
}

/// The runtime the SQL engine's futures run on (two workers: the machine's cores).
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RT: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| DpError::new_err(format!("cannot start the async runtime: {e}")))
}

/// A directory removed when the ledger that lives in it is dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        static N: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        loop {
            let dir = std::env::temp_dir().join(format!(
                "veil-ledger-{}-{nanos}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(Self(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Best effort: a leftover temp dir holds no secret, only spent budgets.
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A privacy-budget ledger: a SQLite file or a PostgreSQL URL shared by many processes.
#[pyclass(frozen, module = "veil._native.dp", name = "Ledger")]
pub struct Ledger {
    inner: Arc<SharedLedger>,
    shown: String,
    _temp: Option<TempDir>,
}

#[pymethods]
impl Ledger {
    /// Opens (creating if needed) the ledger `spec` names: a file path or `postgres://…`.
    #[new]
    fn new(py: Python<'_>, spec: &str) -> PyResult<Self> {
        let inner = py.detach(|| open_ledger(spec)).map_err(sql)?;
        Ok(Self {
            inner: Arc::new(inner),
            shown: shown_ledger(spec),
            _temp: None,
        })
    }

    /// A ledger in a temporary SQLite file, deleted when this object is: for notebooks and
    /// tests. Budgets spent in it are forgotten with it, so use a file for real data.
    #[staticmethod]
    fn temporary() -> PyResult<Self> {
        let dir = TempDir::new()
            .map_err(|e| DpError::new_err(format!("cannot make a temporary directory: {e}")))?;
        let path = dir.0.join("budget.db");
        let ledger = SqliteLedger::open(&path).map_err(dp)?;
        Ok(Self {
            inner: Arc::new(Box::new(ledger)),
            shown: format!("{} (temporary)", path.display()),
            _temp: Some(dir),
        })
    }

    /// The operator's act: approves `metadata` (the TOML text) for `dataset` and sets its
    /// total budget (the metadata's `[budget]` unless given). Registering again replaces
    /// both; recorded charges stay.
    #[pyo3(signature = (dataset, metadata, epsilon = None, delta = None))]
    fn register(
        &self,
        py: Python<'_>,
        dataset: &str,
        metadata: &str,
        epsilon: Option<f64>,
        delta: Option<f64>,
    ) -> PyResult<()> {
        let meta = Metadata::from_toml(metadata).map_err(sql)?;
        let sha = metadata_sha256(metadata.as_bytes());
        let epsilon = epsilon.unwrap_or(meta.budget.epsilon);
        let delta = delta.unwrap_or(meta.budget.delta);
        let accounting = meta.budget.accounting();
        py.detach(|| {
            self.inner
                .register_with(dataset, &sha, epsilon, delta, accounting)
        })
        .map_err(dp)
    }

    /// Sets an analyst's own budget on a dataset (`analyst=None`: the dataset's total).
    #[pyo3(signature = (dataset, epsilon, delta, analyst = None))]
    fn set_budget(
        &self,
        py: Python<'_>,
        dataset: &str,
        epsilon: f64,
        delta: f64,
        analyst: Option<&str>,
    ) -> PyResult<()> {
        py.detach(|| self.inner.set_budget(dataset, analyst, epsilon, delta))
            .map_err(dp)
    }

    /// `(ε, δ)` left on the dataset, or on one analyst's own budget.
    #[pyo3(signature = (dataset, analyst = None))]
    fn remaining(
        &self,
        py: Python<'_>,
        dataset: &str,
        analyst: Option<&str>,
    ) -> PyResult<(f64, f64)> {
        let r = py
            .detach(|| self.inner.remaining(dataset, analyst))
            .map_err(dp)?;
        Ok((r.epsilon, r.delta))
    }

    /// Every charge on the dataset, oldest first, as dicts.
    fn history<'py>(&self, py: Python<'py>, dataset: &str) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let charges = py.detach(|| self.inner.history(dataset)).map_err(dp)?;
        charges
            .into_iter()
            .map(|c| {
                let d = PyDict::new(py);
                d.set_item("dataset", c.dataset)?;
                d.set_item("analyst", c.analyst)?;
                d.set_item("epsilon", c.epsilon)?;
                d.set_item("delta", c.delta)?;
                d.set_item("rho", c.rho)?;
                d.set_item("note", c.note)?;
                d.set_item("at", c.at)?;
                Ok(d)
            })
            .collect()
    }

    /// Charges the mechanism's cost to `dataset` (and the analyst's own budget, if set),
    /// and only then adds its noise to `value`. If the budget cannot pay, raises
    /// `BudgetExhausted` and nothing is charged or released.
    #[pyo3(signature = (dataset, analyst, mechanism, value, note = ""))]
    fn release(
        &self,
        py: Python<'_>,
        dataset: &str,
        analyst: &str,
        mechanism: &Bound<'_, PyAny>,
        value: f64,
        note: &str,
    ) -> PyResult<f64> {
        let (cost, delta, noisy): (Cost, f64, Box<dyn FnOnce() -> veil_dp::Result<f64> + Send>) =
            if let Ok(m) = mechanism.cast::<Laplace>() {
                let m = m.get().inner.clone();
                (m.cost(), 0.0, Box::new(move || m.release(value)))
            } else if let Ok(m) = mechanism.cast::<Gaussian>() {
                let g = m.get();
                let (inner, delta) = (g.inner.clone(), g.delta);
                (inner.cost(), delta, Box::new(move || inner.release(value)))
            } else {
                return Err(DpError::new_err(
                    "mechanism must be a veil.dp.Laplace or veil.dp.Gaussian",
                ));
            };
        let note = if note.is_empty() {
            "python release"
        } else {
            note
        };
        py.detach(|| {
            veil_dp::release(
                self.inner.as_ref().as_ref(),
                dataset,
                analyst,
                note,
                &cost,
                delta,
                noisy,
            )
        })
        .map_err(dp)
    }

    fn __repr__(&self) -> String {
        format!("Ledger({:?})", self.shown)
    }
}

/// The Laplace mechanism (exact discrete noise on a grid): pure ε-DP.
#[pyclass(frozen, module = "veil._native.dp", name = "Laplace")]
pub struct Laplace {
    inner: LaplaceMechanism,
}

#[pymethods]
impl Laplace {
    /// A mechanism for values one person moves by at most `sensitivity`, costing `epsilon`.
    #[new]
    fn new(sensitivity: f64, epsilon: f64) -> PyResult<Self> {
        Ok(Self {
            inner: LaplaceMechanism::new(sensitivity, epsilon).map_err(dp)?,
        })
    }

    /// `(ε, δ)` one release costs.
    #[getter]
    fn cost(&self) -> PyResult<(f64, f64)> {
        self.inner.cost().to_approx(0.0).map_err(dp)
    }

    /// The noise scale b.
    #[getter]
    fn scale(&self) -> f64 {
        self.inner.scale()
    }

    /// Half-width of the `1 - alpha` confidence interval of the noise.
    #[pyo3(signature = (alpha = 0.05))]
    fn confidence_half_width(&self, alpha: f64) -> f64 {
        self.inner.confidence_half_width(alpha)
    }

    fn __repr__(&self) -> PyResult<String> {
        let (e, _) = self.cost()?;
        Ok(format!(
            "Laplace(scale={}, epsilon={e})",
            self.inner.scale()
        ))
    }
}

/// The Gaussian mechanism (exact discrete Gaussian on a grid), calibrated in zCDP to the
/// `(ε, δ)` it is charged as.
#[pyclass(frozen, module = "veil._native.dp", name = "Gaussian")]
pub struct Gaussian {
    inner: GaussianMechanism,
    delta: f64,
}

#[pymethods]
impl Gaussian {
    /// A mechanism for values one person moves by at most `sensitivity` (ℓ2), costing
    /// `(epsilon, delta)`.
    #[new]
    fn new(sensitivity: f64, epsilon: f64, delta: f64) -> PyResult<Self> {
        Ok(Self {
            inner: GaussianMechanism::from_epsilon_delta(sensitivity, epsilon, delta)
                .map_err(dp)?,
            delta,
        })
    }

    /// `(ε, δ)` one release costs (ρ-zCDP converted at this mechanism's δ).
    #[getter]
    fn cost(&self) -> PyResult<(f64, f64)> {
        self.inner.cost().to_approx(self.delta).map_err(dp)
    }

    /// ρ (zCDP) one release costs.
    #[getter]
    fn rho(&self) -> f64 {
        match self.inner.cost() {
            Cost::Zcdp { rho } => rho,
            _ => f64::NAN,
        }
    }

    /// The noise standard deviation σ.
    #[getter]
    fn sigma(&self) -> f64 {
        self.inner.sigma()
    }

    /// Half-width of the 95% confidence interval of the noise (1.96 σ).
    fn confidence_half_width_95(&self) -> f64 {
        self.inner.confidence_half_width_95()
    }

    fn __repr__(&self) -> String {
        format!("Gaussian(sigma={}, rho={})", self.inner.sigma(), self.rho())
    }
}

/// Composition of releases (OpenDP's odometer without a limit): Laplace costs add in ε,
/// Gaussian costs add in ρ (zCDP) and convert to (ε, δ) once, at the δ asked for. To *limit*
/// spending, release through a `Ledger`, which refuses what the budget cannot pay.
#[pyclass(module = "veil._native.dp", name = "Accountant")]
pub struct Accountant {
    inner: std::sync::Mutex<veil_dp::accountant::Accountant>,
}

#[pymethods]
impl Accountant {
    /// An empty accountant.
    #[new]
    fn new() -> Self {
        Self {
            inner: std::sync::Mutex::new(veil_dp::accountant::Accountant::new()),
        }
    }

    /// Records one release of `mechanism` (a `Laplace` or a `Gaussian`).
    fn record(&self, mechanism: &Bound<'_, PyAny>) -> PyResult<()> {
        let cost = if let Ok(m) = mechanism.cast::<Laplace>() {
            m.get().inner.cost()
        } else if let Ok(m) = mechanism.cast::<Gaussian>() {
            m.get().inner.cost()
        } else {
            return Err(DpError::new_err(
                "mechanism must be a veil.dp.Laplace or veil.dp.Gaussian",
            ));
        };
        self.inner
            .lock()
            .map_err(|_| DpError::new_err("the accountant's lock is poisoned"))?
            .record(cost);
        Ok(())
    }

    /// The total `(ε, δ)` so far, zCDP releases converted at `delta`.
    #[pyo3(signature = (delta = 1e-6))]
    fn total(&self, delta: f64) -> PyResult<(f64, f64)> {
        self.inner
            .lock()
            .map_err(|_| DpError::new_err("the accountant's lock is poisoned"))?
            .total(delta)
            .map_err(dp)
    }

    /// Total ρ of the Gaussian (zCDP) releases.
    #[getter]
    fn rho(&self) -> PyResult<f64> {
        Ok(self
            .inner
            .lock()
            .map_err(|_| DpError::new_err("the accountant's lock is poisoned"))?
            .rho())
    }
}

/// The DP SQL engine over CSV/Parquet files (embedded DataFusion) or PostgreSQL, bound to one
/// registered dataset and its ledger.
#[pyclass(frozen, module = "veil._native.dp", name = "SqlEngine")]
pub struct SqlEngine {
    engine: veil_dp_sql::Engine,
    ledger: Arc<SharedLedger>,
    dataset: String,
}

#[pymethods]
impl SqlEngine {
    /// Opens the dataset `name` described by `metadata` (TOML text). The metadata must be the
    /// very text its operator registered in `ledger` (`Ledger.register`), or the engine is
    /// refused before anything can be charged. `tables` maps table names to CSV/Parquet
    /// files; `postgres` is a server URL instead.
    #[new]
    #[pyo3(signature = (metadata, name, ledger, tables = None, postgres = None))]
    fn new(
        py: Python<'_>,
        metadata: &str,
        name: &str,
        ledger: &Ledger,
        tables: Option<Vec<(String, PathBuf)>>,
        postgres: Option<String>,
    ) -> PyResult<Self> {
        let meta = Metadata::from_toml(metadata).map_err(sql)?;
        let sha = metadata_sha256(metadata.as_bytes());
        let shared = ledger.inner.clone();
        py.detach(|| check_registered(shared.as_ref().as_ref(), name, &sha))
            .map_err(dp)?;
        let rt = runtime()?;
        let tables = tables.unwrap_or_default();
        let engine = py
            .detach(|| {
                rt.block_on(async {
                    match (&postgres, tables.is_empty()) {
                        (Some(url), true) => veil_dp_sql::Engine::postgres(meta, url).await,
                        (Some(_), false) => Err(veil_dp_sql::SqlError::Rejected(
                            "give tables as files or a PostgreSQL URL, not both".into(),
                        )),
                        (None, true) => Err(veil_dp_sql::SqlError::Rejected(
                            "give the data: tables={name: file} or postgres=URL".into(),
                        )),
                        (None, false) => {
                            let pairs: Vec<(String, &std::path::Path)> = tables
                                .iter()
                                .map(|(n, p)| (n.clone(), p.as_path()))
                                .collect();
                            veil_dp_sql::Engine::embedded(meta, &pairs).await
                        }
                    }
                })
            })
            .map_err(sql)?;
        Ok(Self {
            engine,
            ledger: shared,
            dataset: name.to_string(),
        })
    }

    /// Runs `sql` with noise after charging the budget; returns the result as JSON text
    /// (`columns`, `rows`, `epsilon`, `delta`, `remaining_*`, `accuracy`, `threshold`,
    /// `warnings`, `estimated_bounds`). `EXPLAIN <query>` is refused here: use `preview`.
    #[pyo3(signature = (sql_text, analyst, epsilon, delta, max_groups_per_unit = None, max_rows_per_group = None, noise = None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "the Python signature's keyword arguments"
    )]
    fn query(
        &self,
        py: Python<'_>,
        sql_text: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        max_groups_per_unit: Option<u64>,
        max_rows_per_group: Option<u64>,
        noise: Option<&str>,
    ) -> PyResult<String> {
        if veil_dp_sql::explained(sql_text).map_err(sql)?.is_some() {
            return Err(DpError::new_err(
                "EXPLAIN is the dry run: call preview() (nothing was charged)",
            ));
        }
        let options = QueryOptions {
            epsilon,
            delta,
            max_groups_per_unit,
            max_rows_per_group,
            noise: noise.map(str::parse).transpose().map_err(sql)?,
        };
        let rt = runtime()?;
        let text = py
            .detach(|| {
                let r = rt.block_on(self.engine.query(
                    self.ledger.as_ref().as_ref(),
                    &self.dataset,
                    analyst,
                    sql_text,
                    options,
                ))?;
                let mut j = r.to_json()?;
                if let Some(o) = j.as_object_mut() {
                    o.insert("threshold".into(), serde_json::json!(r.threshold));
                }
                Ok::<_, veil_dp_sql::SqlError>(j.to_string())
            })
            .map_err(sql)?;
        Ok(text)
    }

    /// What `sql` would cost and how accurate it would be, as JSON text: nothing is read and
    /// nothing is charged. `EXPLAIN <query>` is accepted too.
    #[pyo3(signature = (sql_text, analyst, epsilon, delta, max_groups_per_unit = None, max_rows_per_group = None, noise = None))]
    #[allow(
        clippy::too_many_arguments,
        reason = "the Python signature's keyword arguments"
    )]
    fn preview(
        &self,
        py: Python<'_>,
        sql_text: &str,
        analyst: &str,
        epsilon: f64,
        delta: f64,
        max_groups_per_unit: Option<u64>,
        max_rows_per_group: Option<u64>,
        noise: Option<&str>,
    ) -> PyResult<String> {
        let inner = veil_dp_sql::explained(sql_text)
            .map_err(sql)?
            .unwrap_or(sql_text);
        let options = QueryOptions {
            epsilon,
            delta,
            max_groups_per_unit,
            max_rows_per_group,
            noise: noise.map(str::parse).transpose().map_err(sql)?,
        };
        let rt = runtime()?;
        py.detach(|| {
            let p = rt.block_on(self.engine.preview(
                self.ledger.as_ref().as_ref(),
                &self.dataset,
                analyst,
                inner,
                options,
            ))?;
            serde_json::to_string(&p).map_err(|e| veil_dp_sql::SqlError::Internal(e.to_string()))
        })
        .map_err(sql)
    }

    /// The dataset's name in the ledger.
    #[getter]
    fn dataset(&self) -> &str {
        &self.dataset
    }
}

/// Local DP, on the device: one bit by randomized response at `epsilon`.
#[pyfunction]
fn randomized_response_report(bit: bool, epsilon: f64) -> PyResult<bool> {
    veil_dp::local::BitReporter::new(epsilon)
        .and_then(|r| r.report(bit))
        .map_err(dp)
}

/// Local DP, at the collector: `(estimate, std_error)` of the true fraction of 1 bits.
#[pyfunction]
fn estimate_fraction(reports: Vec<bool>, epsilon: f64) -> PyResult<(f64, f64)> {
    let e = veil_dp::local::estimate_fraction(&reports, epsilon).map_err(dp)?;
    Ok((e.value, e.std_error))
}

/// Local DP, on the device: one value in `[0, max]` reported as a single randomized bit.
#[pyfunction]
fn mean_report(x: f64, max: f64, epsilon: f64) -> PyResult<bool> {
    veil_dp::local::MeanReporter::new(max, epsilon)
        .and_then(|r| r.report(x))
        .map_err(dp)
}

/// Local DP, at the collector: `(estimate, std_error)` of the mean of the reported values.
#[pyfunction]
fn estimate_mean(reports: Vec<bool>, max: f64, epsilon: f64) -> PyResult<(f64, f64)> {
    let e = veil_dp::local::estimate_mean(&reports, max, epsilon).map_err(dp)?;
    Ok((e.value, e.std_error))
}

/// Local DP, on the device: a category in `0..categories` as unary-encoded randomized bits.
#[pyfunction]
fn unary_report(value: usize, categories: usize, epsilon: f64) -> PyResult<Vec<bool>> {
    veil_dp::local::UnaryEncoder::new(categories, epsilon)
        .and_then(|r| r.report(value))
        .map_err(dp)
}

/// Local DP, at the collector: `[(estimate, std_error)]` of each category's count.
#[pyfunction]
fn estimate_frequencies(
    reports: Vec<Vec<bool>>,
    categories: usize,
    epsilon: f64,
) -> PyResult<Vec<(f64, f64)>> {
    let e = veil_dp::local::estimate_frequencies(&reports, categories, epsilon).map_err(dp)?;
    Ok(e.into_iter().map(|e| (e.value, e.std_error)).collect())
}
