//! DP SQL accounting (issue 12, items 7 and 8): what each aggregate's noise is, pinned, and
//! tested statistically at ε ≤ 1; and the shared PostgreSQL ledger charged from inside the
//! async engine.
//!
//! One query over a table with 200 public groups of identical data releases 200 independent
//! samples of an aggregate's noise; ten queries give 2000. Their empirical distribution is
//! compared with the law the accounting claims:
//!
//! - `COUNT(*)`: sensitivity `k` (max rows per unit), discrete Laplace noise on the grid
//!   `2^⌊log2(k/ε)⌋−20` with scale `(k + 2^…)/ε`, rounded to an integer;
//! - `SUM(x)`: sensitivity `k·max(|lower|, |upper|)`, same construction (rounded for integer
//!   columns, exact on the grid for real ones);
//! - `AVG`, `VAR`, `STDDEV`: ε split equally over the measurements (count: `k`; sum of
//!   distances to the middle of the bounds: `k·(upper−lower)/2`; their squares:
//!   `k·((upper−lower)/2)²`), combined as the engine documents — compared with the same
//!   combination of `veil_dp` mechanisms built with exactly those sensitivities;
//! - `MEDIAN`: report-noisy-max with sensitivity `k` over the candidate grid.
//!
//! The noise is drawn from the operating system's randomness (it cannot be seeded), so every
//! check is a statistical test whose false-failure probability is at most α = 10⁻⁴
//! (Dvoretzky–Kiefer–Wolfowitz with Massart's constant, valid for discrete laws too; for two
//! samples each side gets α/2). Each test also checks its power: the same releases are
//! rejected against the law with a noise scale half or double the claimed one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use veil_dp::ledger::{Ledger, SqliteLedger};
use veil_dp::mechanisms::{LaplaceMechanism, ReportNoisyMax};
use veil_dp::noise::Grid;
use veil_dp_sql::engine::QUANTILE_FAILURE;
use veil_dp_sql::{Engine, Metadata, QueryOptions};

/// False-failure probability of every statistical check.
const ALPHA: f64 = 1e-4;
/// Public groups (independent samples per query).
const GROUPS: usize = 200;
/// Units per group; each has exactly `K` rows.
const UNITS: usize = 50;
/// Rows per unit (the metadata's `max_rows_per_unit`).
const K: f64 = 2.0;
/// Queries per aggregate.
const QUERIES: usize = 10;
/// Simulated releases per aggregate, for two-sample tests.
const SIMULATED: usize = 10_000;

/// One group's rows (every group holds the same values): `(x, y, z)`.
fn rows() -> Vec<(i64, f64, i64)> {
    (0..UNITS * K as usize)
        .map(|r| {
            let r = r as i64;
            ((r * 37) % 151 - 50, ((r * 53) % 1001) as f64, (r * 7) % 41)
        })
        .collect()
}

fn metadata() -> Metadata {
    let keys: Vec<String> = (0..GROUPS).map(|g| format!("\"g{g:03}\"")).collect();
    Metadata::from_toml(&format!(
        r#"
[budget]
epsilon = 1000000.0
delta = 0.5

[table.t]
privacy_unit = "id"
max_rows_per_unit = {k}

[table.t.columns]
id = {{ type = "int" }}
g = {{ type = "string", public_keys = [{}] }}
x = {{ type = "int", lower = -50, upper = 100 }}
y = {{ type = "float", lower = 0, upper = 1000 }}
z = {{ type = "int", lower = 0, upper = 40 }}
"#,
        keys.join(", "),
        k = K as u64
    ))
    .unwrap()
}

struct Setup {
    dir: PathBuf,
    engine: Engine,
    ledger: SqliteLedger,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(name: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("veil-dp-acct-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut csv = String::from("id,g,x,y,z\n");
    for g in 0..GROUPS {
        for (r, (x, y, z)) in rows().into_iter().enumerate() {
            let id = g * UNITS + r / K as usize;
            csv.push_str(&format!("{id},g{g:03},{x},{y:.1},{z}\n"));
        }
    }
    let path = dir.join("t.csv");
    std::fs::write(&path, csv).unwrap();
    let engine = Engine::embedded(metadata(), &[("t".into(), path.as_path())])
        .await
        .unwrap();
    let ledger = SqliteLedger::open(dir.join("budget.db")).unwrap();
    ledger.set_budget("t", None, 1e9, 0.5).unwrap();
    Setup {
        dir,
        engine,
        ledger,
    }
}

/// Runs `sql` (`SELECT g, AGG(…) AS v FROM t GROUP BY g`) `QUERIES` times at `epsilon`: the
/// released values, and the reported 95% half-width of `v`.
async fn releases(s: &Setup, sql: &str, epsilon: f64) -> (Vec<f64>, Option<f64>) {
    let mut out = Vec::new();
    let mut accuracy = None;
    for _ in 0..QUERIES {
        let r = s
            .engine
            .query(
                &s.ledger,
                "t",
                "tester",
                sql,
                QueryOptions {
                    epsilon,
                    delta: 0.0,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(r.epsilon, epsilon);
        let rows = r.rows().unwrap();
        assert_eq!(rows.len(), GROUPS, "{sql}");
        out.extend(rows.iter().map(|row| row[1].as_f64().unwrap()));
        accuracy = r.accuracy.get("v").copied().flatten();
    }
    (out, accuracy)
}

fn dkw(n: usize, alpha: f64) -> f64 {
    ((2.0 / alpha).ln() / (2.0 * n as f64)).sqrt()
}

/// Two-sample threshold: each empirical CDF within its DKW band at level α/2.
fn dkw2(n: usize, m: usize) -> f64 {
    dkw(n, ALPHA / 2.0) + dkw(m, ALPHA / 2.0)
}

/// KS distance between integer samples and a CDF on the integers.
fn ks(samples: &[i64], cdf: impl Fn(i64) -> f64) -> f64 {
    let mut s = samples.to_vec();
    s.sort_unstable();
    let n = s.len() as f64;
    let mut d: f64 = 0.0;
    let mut i = 0;
    while i < s.len() {
        let x = s[i];
        let mut j = i;
        while j < s.len() && s[j] == x {
            j += 1;
        }
        d = d
            .max((cdf(x) - j as f64 / n).abs())
            .max((cdf(x - 1) - i as f64 / n).abs());
        i = j;
    }
    d
}

/// Two-sample KS distance (ties allowed).
fn ks2(a: &[f64], b: &[f64]) -> f64 {
    let mut a = a.to_vec();
    let mut b = b.to_vec();
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() || j < b.len() {
        let x = match (a.get(i), b.get(j)) {
            (Some(&x), Some(&y)) => x.min(y),
            (Some(&x), None) => x,
            (None, Some(&y)) => y,
            (None, None) => break,
        };
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

/// CDF of the discrete Laplace law of scale `s` (grid units).
fn discrete_laplace_cdf(s: f64) -> impl Fn(i64) -> f64 {
    let a = (-1.0 / s).exp();
    move |x: i64| {
        let tail = |m: i64| (-(m as f64) / s).exp() / (1.0 + a);
        if x < 0 {
            tail(-x)
        } else {
            1.0 - tail(x + 1)
        }
    }
}

/// CDF of `round(T + N·2^k) − T` for an integer truth `T > 0` and `N` discrete Laplace of
/// scale `s` grid units: `P(N·2^k < j + ½) = P(N ≤ (j + ½)/2^k − 1)`.
fn rounded_cdf(step: f64, s: f64) -> impl Fn(i64) -> f64 {
    let dl = discrete_laplace_cdf(s);
    move |j: i64| dl(((j as f64 + 0.5) / step) as i64 - 1)
}

/// The claimed Laplace measurement for sensitivity `sensitivity` at `epsilon`: its scale, in
/// grid units, and the grid step. Every query here groups by `g`, and a unit's K rows can fall
/// in K groups: the noise covers one grid step of rounding in each.
fn claimed(sensitivity: f64, epsilon: f64) -> (LaplaceMechanism, f64, f64) {
    let m = LaplaceMechanism::for_vector(sensitivity, epsilon, K as u64).unwrap();
    let step = Grid::for_scale(sensitivity / epsilon).spacing();
    let s = m.scale() / step;
    (m, s, step)
}

/// Checks integer releases `values` of a truth against rounded discrete Laplace noise of
/// sensitivity `sensitivity` at `epsilon`, and the reported accuracy.
fn check_rounded(values: &[f64], truth: f64, sensitivity: f64, epsilon: f64, acc: Option<f64>) {
    let (m, s, step) = claimed(sensitivity, epsilon);
    assert_eq!(
        acc,
        Some(m.confidence_half_width(0.05)),
        "reported accuracy"
    );
    let noise: Vec<i64> = values.iter().map(|v| (v - truth) as i64).collect();
    let t = dkw(noise.len(), ALPHA);
    let d = ks(&noise, rounded_cdf(step, s));
    assert!(
        d < t,
        "KS distance {d} ≥ {t} (sensitivity {sensitivity}, ε {epsilon})"
    );
    for wrong in [0.5, 2.0] {
        let d = ks(&noise, rounded_cdf(step, s * wrong));
        assert!(d > t, "not rejected at {wrong}× the scale: {d} ≤ {t}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_noise_is_rounded_discrete_laplace_with_sensitivity_k() {
    let s = setup("count").await;
    let epsilon = 0.5;
    let (values, acc) = releases(&s, "SELECT g, COUNT(*) AS v FROM t GROUP BY g", epsilon).await;
    let truth = (UNITS as f64) * K;
    check_rounded(&values, truth, K, epsilon, acc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sum_noise_is_discrete_laplace_with_sensitivity_k_times_the_magnitude() {
    let s = setup("sum").await;
    let epsilon = 0.5;
    // Integer column in [-50, 100]: sensitivity k·100 (the larger magnitude), rounded output.
    let (values, acc) = releases(&s, "SELECT g, SUM(x) AS v FROM t GROUP BY g", epsilon).await;
    let truth: i64 = rows().iter().map(|r| r.0).sum();
    check_rounded(&values, truth as f64, K * 100.0, epsilon, acc);
    // Real column in [0, 1000]: sensitivity k·1000, the release exactly on the grid.
    let (values, acc) = releases(&s, "SELECT g, SUM(y) AS v FROM t GROUP BY g", epsilon).await;
    let truth: f64 = rows().iter().map(|r| r.1).sum();
    let (m, scale, step) = claimed(K * 1000.0, epsilon);
    assert_eq!(acc, Some(m.confidence_half_width(0.05)));
    let noise: Vec<i64> = values
        .iter()
        .map(|v| {
            let u = (v - truth) / step;
            assert_eq!(u.fract(), 0.0, "off the grid: {v}");
            u as i64
        })
        .collect();
    let t = dkw(noise.len(), ALPHA);
    let d = ks(&noise, discrete_laplace_cdf(scale));
    assert!(d < t, "KS distance {d} ≥ {t}");
    for wrong in [0.5, 2.0] {
        assert!(ks(&noise, discrete_laplace_cdf(scale * wrong)) > t);
    }
}

/// The exact inputs of the centered measurements of `x` (bounds [-50, 100], middle 25).
struct Moments {
    n: f64,
    centered_sum: f64,
    centered_squares: f64,
}

fn moments() -> Moments {
    let rows = rows();
    let (n, sum, squares) = rows.iter().fold((0.0, 0.0, 0.0), |(n, s, q), r| {
        let x = r.0 as f64;
        (n + 1.0, s + x, q + x * x)
    });
    let m = 25.0;
    Moments {
        n,
        centered_sum: sum - m * n,
        centered_squares: squares - 2.0 * m * sum + m * m * n,
    }
}

/// Compares engine releases with `SIMULATED` draws of `simulate(each)` at the claimed
/// per-measurement ε, and rejects the draws at twice that ε (ε not split).
fn check_two_sample(values: &[f64], each: f64, simulate: impl Fn(f64) -> f64) {
    let sim: Vec<f64> = (0..SIMULATED).map(|_| simulate(each)).collect();
    let t = dkw2(values.len(), sim.len());
    let d = ks2(values, &sim);
    assert!(d < t, "two-sample KS distance {d} ≥ {t}");
    let wrong: Vec<f64> = (0..SIMULATED).map(|_| simulate(2.0 * each)).collect();
    let d = ks2(values, &wrong);
    assert!(d > t, "not rejected with ε unsplit: {d} ≤ {t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avg_is_two_measurements_at_half_the_epsilon_each() {
    let s = setup("avg").await;
    let epsilon = 1.0;
    let (values, _) = releases(&s, "SELECT g, AVG(x) AS v FROM t GROUP BY g", epsilon).await;
    let mo = moments();
    check_two_sample(&values, epsilon / 2.0, |each| {
        let n = LaplaceMechanism::new(K, each)
            .unwrap()
            .release(mo.n)
            .unwrap();
        let sum = LaplaceMechanism::new(K * 75.0, each)
            .unwrap()
            .release(mo.centered_sum)
            .unwrap();
        (25.0 + sum / n.max(1.0)).clamp(-50.0, 100.0)
    });
}

/// The variance from three noisy measurements, as the engine combines them.
fn variance(each: f64, population: bool) -> f64 {
    let mo = moments();
    let n = LaplaceMechanism::new(K, each)
        .unwrap()
        .release(mo.n)
        .unwrap()
        .max(2.0);
    let sum = LaplaceMechanism::new(K * 75.0, each)
        .unwrap()
        .release(mo.centered_sum)
        .unwrap();
    let squares = LaplaceMechanism::new(K * 75.0 * 75.0, each)
        .unwrap()
        .release(mo.centered_squares)
        .unwrap();
    let mean = sum / n;
    let dof = if population { n } else { n - 1.0 };
    ((squares - n * mean * mean) / dof).clamp(0.0, 150.0 * 150.0 / 4.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn var_and_stddev_are_three_measurements_at_a_third_of_the_epsilon_each() {
    let s = setup("var").await;
    let epsilon = 1.0;
    let (values, _) = releases(&s, "SELECT g, VAR(x) AS v FROM t GROUP BY g", epsilon).await;
    check_two_sample(&values, epsilon / 3.0, |each| variance(each, false));
    let (values, _) = releases(
        &s,
        "SELECT g, STDDEV_POP(x) AS v FROM t GROUP BY g",
        epsilon,
    )
    .await;
    check_two_sample(&values, epsilon / 3.0, |each| variance(each, true).sqrt());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn median_is_report_noisy_max_with_sensitivity_k() {
    let s = setup("median").await;
    let epsilon = 1.0;
    let (values, _) = releases(&s, "SELECT g, MEDIAN(z) AS v FROM t GROUP BY g", epsilon).await;
    // z in [0, 40] (integers): 41 candidates of step 1; a histogram of the group's values.
    let mut hist: BTreeMap<i64, f64> = BTreeMap::new();
    for r in rows() {
        *hist.entry(r.2).or_default() += 1.0;
    }
    let total: f64 = hist.values().sum();
    let simulate = |sensitivity: f64| {
        // The rank margin and scores the engine documents (engine::quantile).
        let margin = (2.0 * sensitivity / epsilon) * (41.0 / QUANTILE_FAILURE).ln() + K;
        let target = (0.5 * total).max(margin).min((total - margin).max(margin));
        let mut below = 0.0;
        let scores: Vec<f64> = (0..41)
            .map(|c| {
                let upto = below + hist.get(&c).copied().unwrap_or(0.0);
                let score = -(below - target).max(target - upto).max(0.0);
                below = upto;
                score
            })
            .collect();
        ReportNoisyMax::new(sensitivity, epsilon)
            .unwrap()
            .select(&scores)
            .unwrap()
            .unwrap() as f64
    };
    let sim: Vec<f64> = (0..SIMULATED).map(|_| simulate(K)).collect();
    let t = dkw2(values.len(), sim.len());
    let d = ks2(&values, &sim);
    assert!(d < t, "two-sample KS distance {d} ≥ {t}");
    let wrong: Vec<f64> = (0..SIMULATED).map(|_| simulate(K / 2.0)).collect();
    assert!(
        ks2(&values, &wrong) > t,
        "not rejected at half the sensitivity"
    );
}

/// Item 7: the shared PostgreSQL ledger charged from inside the async engine, on both kinds of
/// tokio runtime (the old synchronous ledger panicked: "Cannot start a runtime from within a
/// runtime").
async fn postgres_ledger_inside_the_engine(name: &str) {
    use veil_dp::ledger::postgres::PostgresLedger;
    let Some(server) = veil_dp::testing::PostgresServer::start(name).unwrap() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "PostgreSQL is not installed"
        );
        return;
    };
    let s = setup(name).await;
    let ledger = PostgresLedger::connect(&server.url).unwrap();
    ledger.set_budget("t", None, 1.0, 0.0).unwrap();
    let ask = |epsilon: f64| {
        s.engine.query(
            &ledger,
            "t",
            "tester",
            "SELECT COUNT(*) AS v FROM t",
            QueryOptions {
                epsilon,
                delta: 0.0,
                ..Default::default()
            },
        )
    };
    let r = ask(0.75).await.unwrap();
    assert!((r.remaining_epsilon - 0.25).abs() < 1e-9);
    assert!(ask(0.5).await.is_err(), "over the budget");
    assert_eq!(ledger.history("t").unwrap().len(), 1);
}

#[tokio::test]
async fn the_postgres_ledger_works_inside_a_current_thread_runtime() {
    postgres_ledger_inside_the_engine("acct-pg-current").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_ledger_works_inside_a_multi_thread_runtime() {
    postgres_ledger_inside_the_engine("acct-pg-multi").await;
}
