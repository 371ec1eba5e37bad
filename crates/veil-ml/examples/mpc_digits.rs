//! Secure inference of a committed digits model with MPC, every party and the dealer as
//! threads of this process: the model owner shares the weights, the client the 360 test
//! images, and only the client learns the labels.
//!
//! ```sh
//! cargo run -p veil-ml --example mpc_digits -- cnn 2 360   # model, parties, batch size
//! ```

use veil_ml::data::LabelledData;
use veil_ml::mpc::{run_local, MpcOptions, MpcPlan};
use veil_ml::{MlError, Result};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "cnn".into());
    let number = |v: Option<String>, default: usize| -> Result<usize> {
        v.map_or(Ok(default), |s| {
            s.parse().map_err(|_| MlError::Input {
                reason: format!("`{s}` is not a number"),
            })
        })
    };
    let parties = number(args.next(), 2)?;
    let batch = number(args.next(), 360)?;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
    let model = veil_ml::onnx::import_file(format!("{dir}/{name}.onnx"))?;
    let text =
        std::fs::read_to_string(format!("{dir}/digits_test.csv")).map_err(|e| MlError::Input {
            reason: e.to_string(),
        })?;
    let data = LabelledData::from_csv(&text, 1.0 / 16.0)?;

    let (plan, weights) = MpcPlan::compile(&model.graph, &MpcOptions::default())?;
    println!(
        "{name}: {} secret parameters, scores bounded by {:.1} on inputs in [-1, 1]",
        plan.param_count(),
        plan.score_bound()
    );
    let run = run_local(&plan, &weights, parties, &data.samples, batch)?;
    let n = data.len();
    let correct = run
        .predictions
        .iter()
        .zip(&data.labels)
        .filter(|(p, l)| p.label == **l)
        .count();
    println!(
        "{parties} parties, batch {batch}: {correct}/{n} correct, {:.3} ms/image, \
         {:.0} B/image sent by party 0, {:.0} B/image of dealer corrections, {} rounds",
        run.infer_seconds * 1e3 / n as f64,
        run.bytes_sent.first().copied().unwrap_or(0) as f64 / n as f64,
        run.dealer_bytes as f64 / n as f64,
        run.rounds
    );
    Ok(())
}
