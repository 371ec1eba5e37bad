//! Training on shares against plaintext SGD with the same schedule: a vertical (column) split
//! of the digits, a horizontal (row) split of three parties with an MLP, the exported ONNX
//! model, and the refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::time::Instant;

use veil_ml::data::LabelledData;
use veil_ml::train::{
    plaintext_sgd, train_local, Architecture, Model, PartyData, Split, TrainOptions,
};
use veil_ml::MlError;

fn digits() -> (Vec<Vec<f64>>, Vec<usize>) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let text = std::fs::read_to_string(dir.join("digits_test.csv")).unwrap();
    let data = LabelledData::from_csv(&text, 1.0 / 16.0).unwrap();
    let labels = data.labels.iter().map(|&l| l as usize).collect();
    (data.samples, labels)
}

fn largest_difference(a: &Model, b: &Model) -> f64 {
    let mut worst = 0.0f64;
    for (la, lb) in a.layers.iter().zip(&b.layers) {
        for (x, y) in la
            .weight
            .iter()
            .chain(&la.bias)
            .zip(lb.weight.iter().chain(&lb.bias))
        {
            worst = worst.max((x - y).abs());
        }
    }
    worst
}

fn accuracy(m: &Model, x: &[Vec<f64>], y: &[usize]) -> f64 {
    let ok = x.iter().zip(y).filter(|(x, &y)| m.predict(x) == y).count();
    ok as f64 / x.len() as f64
}

#[test]
fn a_vertical_split_trains_the_weights_of_plaintext_sgd() {
    let (x, y) = digits();
    let (train_x, test_x) = x.split_at(300);
    let (train_y, test_y) = y.split_at(300);
    // Party 0 holds the top half of every image, party 1 the bottom half and the labels.
    let parts = vec![
        PartyData {
            features: train_x.iter().map(|r| r[..32].to_vec()).collect(),
            labels: None,
        },
        PartyData {
            features: train_x.iter().map(|r| r[32..].to_vec()).collect(),
            labels: Some(train_y.to_vec()),
        },
    ];
    let options = TrainOptions {
        epochs: 5,
        batch_size: 30,
        learning_rate: 1.0,
        owner: 1,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    let shared = train_local(&parts, Split::Columns, &options).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let plain = plaintext_sgd(train_x, train_y, &options).unwrap();
    let diff = largest_difference(&shared, &plain);
    let (acc_s, acc_p) = (
        accuracy(&shared, test_x, test_y),
        accuracy(&plain, test_x, test_y),
    );
    println!(
        "logistic, column split: {seconds:.2} s, largest weight difference {diff:.4}, \
         held-out accuracy {acc_s:.3} (plaintext {acc_p:.3})"
    );
    assert!(diff < 0.05, "weights differ by {diff}");
    assert!(acc_s > 0.85, "accuracy {acc_s}");
    // The weights moved: a test that trains nothing would pass the comparison above.
    let w = &shared.layers[0].weight;
    assert!(w.iter().map(|v| v.abs()).fold(0.0, f64::max) > 0.1);
}

#[test]
fn three_parties_train_an_mlp_on_their_rows() {
    let (x, y) = digits();
    let (train_x, test_x) = x.split_at(300);
    let (train_y, test_y) = y.split_at(300);
    let cuts = [0, 70, 190, 300];
    let parts: Vec<PartyData> = cuts
        .windows(2)
        .map(|c| PartyData {
            features: train_x[c[0]..c[1]].to_vec(),
            labels: Some(train_y[c[0]..c[1]].to_vec()),
        })
        .collect();
    let options = TrainOptions {
        architecture: Architecture::Mlp { hidden: 16 },
        // A rate that keeps small-batch SGD stable: at 1.0 plaintext SGD itself is chaotic
        // (held-out accuracy 0.43) and any rounding sends it elsewhere.
        epochs: 10,
        batch_size: 25,
        learning_rate: 0.3,
        owner: 2,
        ..TrainOptions::default()
    };
    let start = Instant::now();
    let shared = train_local(&parts, Split::Rows, &options).unwrap();
    let seconds = start.elapsed().as_secs_f64();
    let plain = plaintext_sgd(train_x, train_y, &options).unwrap();
    let diff = largest_difference(&shared, &plain);
    let (acc_s, acc_p) = (
        accuracy(&shared, test_x, test_y),
        accuracy(&plain, test_x, test_y),
    );
    println!(
        "MLP(16), row split over 3 parties: {seconds:.2} s, largest weight difference \
         {diff:.4}, held-out accuracy {acc_s:.3} (plaintext {acc_p:.3})"
    );
    assert!(diff < 0.05, "weights differ by {diff}");
    assert!(acc_s > 0.8, "accuracy {acc_s}");

    // The owner's ONNX file imports back (and runs under the inference backends) with the
    // scores of the trained model, up to 32-bit float weights.
    let bytes = shared.to_onnx().unwrap();
    let graph = veil_ml::onnx::import(&bytes).unwrap().graph;
    for row in test_x.iter().take(20) {
        let got = graph.run(row).unwrap().remove(0);
        for (a, b) in got.iter().zip(shared.scores(row)) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
    }
    let (plan, weights) =
        veil_ml::mpc::MpcPlan::compile(&graph, &veil_ml::mpc::MpcOptions::default()).unwrap();
    let run = veil_ml::mpc::run_local(&plan, &weights, 2, &test_x[..20], 20).unwrap();
    for (row, p) in test_x.iter().zip(&run.predictions) {
        assert_eq!(p.label as usize, shared.predict(row));
    }
}

#[test]
fn inconsistent_or_out_of_range_data_is_refused() {
    let (x, y) = digits();
    let rows = |a: usize, b: usize, labels: bool| PartyData {
        features: x[a..b].to_vec(),
        labels: labels.then(|| y[a..b].to_vec()),
    };
    let options = TrainOptions {
        epochs: 1,
        ..TrainOptions::default()
    };
    let refused = |parts: Vec<PartyData>, split: Split, options: &TrainOptions, want: &str| {
        match train_local(&parts, split, options) {
            Err(MlError::Input { reason }) => assert!(reason.contains(want), "{reason}"),
            other => panic!("`{want}`: {other:?}"),
        }
    };
    // Column split: two label holders; different row counts.
    refused(
        vec![rows(0, 50, true), rows(0, 50, true)],
        Split::Columns,
        &options,
        "exactly one party",
    );
    refused(
        vec![rows(0, 50, true), rows(0, 40, false)],
        Split::Columns,
        &options,
        "same rows",
    );
    // Row split: a party without labels; different feature counts.
    refused(
        vec![rows(0, 50, true), rows(50, 90, false)],
        Split::Rows,
        &options,
        "labels",
    );
    let mut narrow = rows(50, 90, true);
    narrow.features.iter_mut().for_each(|r| r.truncate(10));
    refused(
        vec![rows(0, 50, true), narrow],
        Split::Rows,
        &options,
        "features",
    );
    // A label beyond the classes, a feature beyond the declared range (unscaled pixels).
    let mut bad_label = rows(0, 50, true);
    bad_label.labels.as_mut().unwrap()[3] = 10;
    refused(
        vec![bad_label, rows(50, 90, true)],
        Split::Rows,
        &options,
        "label 10",
    );
    let mut unscaled = rows(0, 50, true);
    unscaled.features[0][5] = 12.0;
    refused(
        vec![unscaled, rows(50, 90, true)],
        Split::Rows,
        &options,
        "outside",
    );
    // Options that could overflow the encoding.
    let wild = TrainOptions {
        learning_rate: 1000.0,
        ..options
    };
    refused(
        vec![rows(0, 50, true), rows(50, 90, true)],
        Split::Rows,
        &wild,
        "learning rate",
    );
}
