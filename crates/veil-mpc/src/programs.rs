//! Whole programs one party runs over the network, shared by the CLI (`veil mpc party`) and
//! the Python package (`veil.mpc`), so that both speak the same session.

use serde::Serialize;

use crate::config::SessionConfig;
use crate::error::Result;
use crate::net::{connect_party, NetExchange};
use crate::protocol::{Party, Shared};

/// Opens `x` to every party that learns results; `Some` at those, `None` elsewhere.
pub fn reveal_to_learners(
    p: &mut Party<NetExchange>,
    config: &SessionConfig,
    x: &Shared,
) -> Result<Option<Vec<u64>>> {
    let mut mine = None;
    for to in 0..p.parties() {
        if config.learns_results(to) {
            if let Some(v) = p.reveal_to_raw(x, to)? {
                mine = Some(v);
            }
        }
    }
    Ok(mine)
}

/// The `stats` program: count, sum, mean, variance and a histogram of the concatenation of
/// every party's column, revealed only to the parties that learn results.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// Low end of the histogram.
    pub low: f64,
    /// High end of the histogram.
    pub high: f64,
    /// Number of bins.
    pub bins: usize,
    /// The largest magnitude of a value (public, the same at every party).
    pub max_abs: f64,
}

/// What the `stats` program reveals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StatsResult {
    /// Number of values (public).
    pub count: usize,
    /// Sum.
    pub sum: f64,
    /// Mean.
    pub mean: f64,
    /// Sample variance.
    pub variance: f64,
    /// Standard deviation.
    pub std_dev: f64,
    /// Counts per bin.
    pub histogram: Vec<u64>,
    /// Low end of the histogram.
    pub low: f64,
    /// High end of the histogram.
    pub high: f64,
}

impl Stats {
    /// The canonical description hashed into the session (every party and the dealer must
    /// agree on it).
    pub fn spec(&self) -> String {
        format!(
            "stats low={} high={} bins={} max_abs={}",
            self.low, self.high, self.bins, self.max_abs
        )
    }

    /// Runs the program on an open party; `column` is this party's values.
    pub fn run(
        &self,
        p: &mut Party<NetExchange>,
        config: &SessionConfig,
        column: &[f64],
    ) -> Result<Option<StatsResult>> {
        let me = p.id();
        let lens = p.exchange_lengths(column.len())?;
        let mut parts = Vec::new();
        for (owner, len) in lens.iter().enumerate() {
            parts.push(p.input(owner, (owner == me).then_some(column), *len)?);
        }
        let all = p.concat(&parts);
        let s = p.statistics(&all, self.max_abs, self.low, self.high, self.bins)?;
        let summary = p.concat(&[s.sum, s.mean, s.variance]);
        let values = reveal_to_learners(p, config, &summary)?;
        let hist = reveal_to_learners(p, config, &s.histogram)?;
        let fp = config.fixed();
        Ok(values.zip(hist).map(|(v, histogram)| {
            let v = fp.decode_all(&v);
            StatsResult {
                count: s.count,
                sum: v[0],
                mean: v[1],
                variance: v[2],
                std_dev: v[2].max(0.0).sqrt(),
                histogram,
                low: self.low,
                high: self.high,
            }
        }))
    }

    /// Connects party `id` of the session, runs the program and ends the session.
    pub fn run_party(
        &self,
        config: &SessionConfig,
        id: usize,
        column: &[f64],
    ) -> Result<Option<StatsResult>> {
        let (ex, seed) = connect_party(config, id, &self.spec())?;
        let mut p = Party::new(ex, &seed, config.fixed())?;
        drop(seed);
        let result = self.run(&mut p, config, column)?;
        p.exchange_mut().finish()?;
        Ok(result)
    }
}
