//! Local and central differential privacy on simulated telemetry: devices report with local
//! DP, and an analyst's central releases are charged to a persistent budget before any noise
//! is drawn.
//!
//! ```sh
//! cargo run --release -p veil-dp --example telemetry
//! ```

use veil_dp::accountant::Cost;
use veil_dp::ledger::SqliteLedger;
use veil_dp::local::{estimate_frequencies, estimate_mean, MeanReporter, UnaryEncoder};
use veil_dp::mechanisms::{quantile, GaussianMechanism};
use veil_dp::{release, DpError};

fn main() -> veil_dp::Result<()> {
    let n = 5_000;
    // Simulated devices: a browser choice among 4 and a session length in minutes.
    let browsers: Vec<usize> = (0..n).map(|i| [0, 0, 0, 1, 1, 2, 3][i % 7]).collect();
    let minutes: Vec<f64> = (0..n).map(|i| ((i * 37) % 120) as f64).collect();

    // Local DP: each device sends one randomized report per question.
    let eps = 2.0;
    let enc = UnaryEncoder::new(4, eps)?;
    let reports = browsers
        .iter()
        .map(|&b| enc.report(b))
        .collect::<veil_dp::Result<Vec<_>>>()?;
    for (i, est) in estimate_frequencies(&reports, 4, eps)?.iter().enumerate() {
        let truth = browsers.iter().filter(|&&b| b == i).count();
        println!(
            "browser {i}: estimate {:7.1} ± {:5.1} (true {truth})",
            est.value,
            1.96 * est.std_error
        );
    }
    let rep = MeanReporter::new(120.0, eps)?;
    let bits = minutes
        .iter()
        .map(|&m| rep.report(m))
        .collect::<veil_dp::Result<Vec<_>>>()?;
    let mean = estimate_mean(&bits, 120.0, eps)?;
    let truth = minutes.iter().sum::<f64>() / n as f64;
    println!(
        "mean session: {:.1} ± {:.1} min (true {truth:.1})",
        mean.value,
        1.96 * mean.std_error
    );

    // Central DP with a ledger.
    let path = std::env::temp_dir().join(format!("veil-telemetry-{}.db", std::process::id()));
    let ledger = SqliteLedger::open(&path)?;
    ledger.set_budget("sessions", None, 1.0, 1e-6)?;
    let sum = GaussianMechanism::from_epsilon_delta(120.0, 0.5, 1e-7)?;
    let total = minutes.iter().sum::<f64>();
    let noisy = release(
        &ledger,
        "sessions",
        "analyst",
        "SUM(minutes)",
        &sum.cost(),
        1e-7,
        || sum.release(total),
    )?;
    println!(
        "sum of minutes: {noisy:.0} (true {total:.0}, ±{:.0} at 95%)",
        sum.confidence_half_width_95()
    );
    let median_cost = Cost::Pure { epsilon: 0.25 };
    let med = release(
        &ledger,
        "sessions",
        "analyst",
        "MEDIAN(minutes)",
        &median_cost,
        0.0,
        || quantile(&minutes, 0.5, 0.0, 120.0, 121, 0.25),
    )?;
    println!("median minutes: {med}");
    match ledger.charge("sessions", "analyst", 0.5, 0.0, "one query too many") {
        Err(DpError::BudgetExhausted {
            remaining_epsilon, ..
        }) => {
            println!("refused: only ε = {remaining_epsilon:.3} left, nothing charged")
        }
        other => println!("unexpected: {other:?}"),
    }
    let _ = std::fs::remove_file(&path);
    Ok(())
}
