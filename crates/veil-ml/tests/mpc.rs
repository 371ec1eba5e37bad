//! The MPC backend against the plaintext executor: the committed digits models on the
//! 360-image test split with two parties and the dealer (and three parties), every other
//! supported operator on a synthetic model, and the refusals (unsupported operators, a model
//! whose fixed-point products could overflow, inputs outside the declared range).
//!
//! Timings print with `cargo test -p veil-ml --test integration mpc:: -- --nocapture`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use veil_ml::data::LabelledData;
use veil_ml::ir::{Activation, Conv2d, Graph, GraphBuilder, Op, Pool2d, Tensor};
use veil_ml::mpc::{run_local, run_local_replicated, MpcOptions, MpcPlan, Reveal};
use veil_ml::MlError;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

fn model(name: &str) -> Graph {
    veil_ml::onnx::import_file(models_dir().join(format!("{name}.onnx")))
        .unwrap()
        .graph
}

fn test_set() -> LabelledData {
    let text = std::fs::read_to_string(models_dir().join("digits_test.csv")).unwrap();
    LabelledData::from_csv(&text, 1.0 / 16.0).unwrap()
}

fn argmax(v: &[f64]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// Largest |MPC score − plaintext score| allowed on the digits models (16 fractional bits).
const SCORE_TOLERANCE: f64 = 0.02;

/// How the parties run.
#[derive(Clone, Copy, Debug)]
enum Family {
    /// Two parties and the dealer.
    Dealer,
    /// Three parties, no dealer (replicated shares).
    Replicated,
}

fn run_with(
    family: Family,
    plan: &MpcPlan,
    weights: &veil_ml::mpc::ModelWeights,
    inputs: &[Vec<f64>],
    batch: usize,
) -> veil_ml::mpc::LocalRun {
    match family {
        Family::Dealer => run_local(plan, weights, 2, inputs, batch).unwrap(),
        Family::Replicated => run_local_replicated(plan, weights, inputs, batch).unwrap(),
    }
}

/// Runs `name` on all 360 test images at batch 360, label only and scores, with two parties
/// and the dealer or three parties without; checks agreement with the plaintext executor and
/// prints time and bytes per image.
fn digits_model_agrees(name: &str, family: Family) {
    let graph = model(name);
    let data = test_set();
    let plain: Vec<Vec<f64>> = data
        .samples
        .iter()
        .map(|s| graph.run(s).unwrap().remove(0))
        .collect();
    let n = data.len();
    assert_eq!(n, 360);

    let (plan, weights) = MpcPlan::compile(&graph, &MpcOptions::default()).unwrap();
    let run = run_with(family, &plan, &weights, &data.samples, n);
    assert_eq!(run.predictions.len(), n);
    let agree = run
        .predictions
        .iter()
        .zip(&plain)
        .filter(|(p, s)| p.label == argmax(s) as i64 && p.scores.is_none())
        .count();
    let correct = run
        .predictions
        .iter()
        .zip(&data.labels)
        .filter(|(p, l)| p.label == **l)
        .count();
    println!(
        "{name}: label mode, {family:?}, batch {n}: {agree}/{n} agree with plaintext, \
         {correct}/{n} correct; {:.3} ms/image, {:.0} B/image sent per party ({:?} total), \
         {:.0} B/image dealer corrections, {} rounds, model shared in {:.2} ms",
        run.infer_seconds * 1e3 / n as f64,
        run.bytes_sent[0] as f64 / n as f64,
        run.bytes_sent,
        run.dealer_bytes as f64 / n as f64,
        run.rounds,
        run.share_seconds * 1e3
    );
    assert!(agree * 100 >= 99 * n, "{name}: only {agree}/{n} agree");

    let options = MpcOptions {
        reveal: Reveal::Scores,
        ..MpcOptions::default()
    };
    let (plan, weights) = MpcPlan::compile(&graph, &options).unwrap();
    let run = run_with(family, &plan, &weights, &data.samples, n);
    let mut worst = 0.0f64;
    let mut agree = 0;
    for (p, s) in run.predictions.iter().zip(&plain) {
        let scores = p.scores.as_ref().unwrap();
        assert_eq!(scores.len(), s.len());
        for (a, b) in scores.iter().zip(s) {
            worst = worst.max((a - b).abs());
        }
        agree += usize::from(p.label == argmax(s) as i64 && p.label == argmax(scores) as i64);
    }
    println!("{name}: scores mode, {family:?}: {agree}/{n} agree, largest score error {worst:.2e}");
    assert!(worst < SCORE_TOLERANCE, "{name}: score error {worst}");
    assert!(agree * 100 >= 99 * n, "{name}: only {agree}/{n} agree");
}

#[test]
fn logreg_agrees_with_plaintext_on_the_test_split() {
    digits_model_agrees("logreg", Family::Dealer);
    digits_model_agrees("logreg", Family::Replicated);
}

#[test]
fn mlp_agrees_with_plaintext_on_the_test_split() {
    digits_model_agrees("mlp", Family::Dealer);
    digits_model_agrees("mlp", Family::Replicated);
}

#[test]
fn cnn_agrees_with_plaintext_on_the_test_split() {
    digits_model_agrees("cnn", Family::Dealer);
    digits_model_agrees("cnn", Family::Replicated);
}

/// Batch 1 (latency): the same labels as a batch, and the time and bytes per image.
#[test]
fn batch_of_one_matches_the_batch_and_reports_latency() {
    let data = test_set();
    let images = &data.samples[..24];
    for name in ["logreg", "mlp", "cnn"] {
        let graph = model(name);
        let (plan, weights) = MpcPlan::compile(&graph, &MpcOptions::default()).unwrap();
        let single = run_local(&plan, &weights, 2, images, 1).unwrap();
        let batched = run_local(&plan, &weights, 2, images, images.len()).unwrap();
        let labels =
            |r: &veil_ml::mpc::LocalRun| r.predictions.iter().map(|p| p.label).collect::<Vec<_>>();
        let plain: Vec<i64> = images
            .iter()
            .map(|s| argmax(&graph.run(s).unwrap()[0]) as i64)
            .collect();
        assert_eq!(labels(&single), plain, "{name}");
        assert_eq!(labels(&batched), plain, "{name}");
        // A batch costs the rounds of one sample.
        assert_eq!(
            single.rounds,
            batched.rounds * images.len() as u64,
            "{name}"
        );
        let k = images.len() as f64;
        println!(
            "{name}: batch 1, 2 parties: {:.3} ms/image, {:.0} B/image sent per party, \
             {:.0} B/image dealer, {} rounds/image",
            single.infer_seconds * 1e3 / k,
            single.bytes_sent[0] as f64 / k,
            single.dealer_bytes as f64 / k,
            single.rounds as f64 / k,
        );
    }
}

/// Three parties: the owner is party 2, the client party 0, party 1 only computes.
#[test]
fn three_parties_with_other_roles() {
    let graph = model("cnn");
    let data = test_set();
    let options = MpcOptions {
        owner: 2,
        client: 0,
        ..MpcOptions::default()
    };
    let (plan, weights) = MpcPlan::compile(&graph, &options).unwrap();
    let run = run_local(&plan, &weights, 3, &data.samples, data.len()).unwrap();
    let agree = run
        .predictions
        .iter()
        .zip(&data.samples)
        .filter(|(p, s)| p.label == argmax(&graph.run(s).unwrap()[0]) as i64)
        .count();
    let n = data.len();
    println!(
        "cnn: label mode, 3 parties, batch {n}: {agree}/{n} agree; {:.3} ms/image, \
         {:?} B sent per party",
        run.infer_seconds * 1e3 / n as f64,
        run.bytes_sent
    );
    assert!(agree * 100 >= 99 * n, "only {agree}/{n} agree");
    assert_eq!(run.bytes_sent.len(), 3);
}

/// Deterministic pseudo-random numbers in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    fn vec(&mut self, n: usize, scale: f64) -> Vec<f64> {
        (0..n).map(|_| self.next() * scale).collect()
    }
}

/// A model using every other supported operator: a grouped, strided, padded convolution,
/// ReLU, an affine layer on shares, average pooling (padded, not counting the padding),
/// a transpose, Sigmoid, Tanh, a product and a difference of two branches, global average
/// pooling, a flatten and a linear layer, ending in ArgMax with labels if `argmax`.
fn synthetic_model(argmax: bool) -> Graph {
    let mut rng = Rng(0x5eed);
    let mut g = GraphBuilder::new("x", vec![2, 7, 7]);
    let x = g.input();
    let conv = Op::Conv2d(Conv2d {
        weight: Tensor::new(vec![4, 1, 3, 3], rng.vec(36, 0.5)).unwrap(),
        bias: rng.vec(4, 0.2),
        stride: [2, 1],
        pads: [1, 0, 1, 2],
        dilation: [1, 1],
        groups: 2,
    });
    let c = g.add("conv", "Conv", conv, &[x], "c").unwrap();
    let r = g
        .add("relu", "Relu", Op::Activation(Activation::Relu), &[c], "r")
        .unwrap();
    let n = g.shape(r).unwrap().iter().product();
    let affine = Op::Affine {
        mul: rng.vec(n, 1.5),
        add: rng.vec(n, 0.3),
    };
    let a = g.add("affine", "Mul", affine, &[r], "a").unwrap();
    let pool = Op::AveragePool(Pool2d {
        kernel: [2, 2],
        stride: [2, 2],
        pads: [0, 0, 1, 1],
        count_include_pad: false,
    });
    let p = g.add("pool", "AveragePool", pool, &[a], "p").unwrap();
    let t = g
        .add(
            "transpose",
            "Transpose",
            Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[p],
            "t",
        )
        .unwrap();
    let s = g
        .add(
            "sigmoid",
            "Sigmoid",
            Op::Activation(Activation::Sigmoid),
            &[t],
            "s",
        )
        .unwrap();
    let h = g
        .add("tanh", "Tanh", Op::Activation(Activation::Tanh), &[t], "h")
        .unwrap();
    let m = g.add("mul", "Mul", Op::Mul, &[s, h], "m").unwrap();
    let d = g.add("sub", "Sub", Op::Sub, &[m, t], "d").unwrap();
    let q = g
        .add("gap", "GlobalAveragePool", Op::GlobalAveragePool, &[d], "q")
        .unwrap();
    let f = g
        .add(
            "flatten",
            "Flatten",
            Op::Reshape { shape: vec![4] },
            &[q],
            "f",
        )
        .unwrap();
    let lin = Op::Linear {
        weight: Tensor::new(vec![5, 4], rng.vec(20, 2.0)).unwrap(),
        bias: rng.vec(5, 0.5),
    };
    let l = g.add("fc", "Gemm", lin, &[f], "l").unwrap();
    if !argmax {
        return g.finish(vec![l]).unwrap();
    }
    let o = g
        .add(
            "argmax",
            "ArgMax",
            Op::ArgMax {
                labels: vec![10, 11, 12, 13, 14],
            },
            &[l],
            "o",
        )
        .unwrap();
    g.finish(vec![o]).unwrap()
}

#[test]
fn every_supported_operator_matches_plaintext() {
    let graph = synthetic_model(true);
    // The scores are the ArgMax's input: the same model without its last node.
    let scores_graph = synthetic_model(false);
    let mut rng = Rng(99);
    let inputs: Vec<Vec<f64>> = (0..40).map(|_| rng.vec(98, 1.0)).collect();
    let plain_scores = |x: &[f64]| scores_graph.run(x).unwrap().remove(0);
    let options = MpcOptions {
        reveal: Reveal::Scores,
        ..MpcOptions::default()
    };
    let (plan, weights) = MpcPlan::compile(&graph, &options).unwrap();
    for family in [Family::Dealer, Family::Replicated] {
        let run = run_with(family, &plan, &weights, &inputs, 16);
        let mut worst = 0.0f64;
        for (x, p) in inputs.iter().zip(&run.predictions) {
            let want = plain_scores(x);
            let got = p.scores.as_ref().unwrap();
            for (a, b) in got.iter().zip(&want) {
                worst = worst.max((a - b).abs());
            }
            assert_eq!(p.label, graph.run(x).unwrap()[0][0] as i64);
        }
        // Sigmoid is within 0.002 and tanh within 0.004; the last layer's weights are below 2.
        println!("synthetic model, {family:?}: largest score error {worst:.2e}");
        assert!(worst < 0.05, "{family:?}: score error {worst}");
    }

    // Label mode: the labels of the ArgMax node.
    let (plan, weights) = MpcPlan::compile(&graph, &MpcOptions::default()).unwrap();
    let run = run_local(&plan, &weights, 3, &inputs[..8], 8).unwrap();
    for (x, p) in inputs.iter().zip(&run.predictions) {
        assert_eq!(p.label, graph.run(x).unwrap()[0][0] as i64);
        assert!(p.scores.is_none());
    }
}

#[test]
fn a_tree_ensemble_is_refused_naming_the_node() {
    let graph = model("forest");
    let err = MpcPlan::compile(&graph, &MpcOptions::default()).unwrap_err();
    let MlError::UnsupportedOp { node, op, .. } = &err else {
        panic!("{err}");
    };
    assert_eq!(op, "TreeEnsemble");
    assert!(!node.is_empty());
    assert!(err.to_string().contains("under MPC"), "{err}");
}

#[test]
fn softplus_is_refused_naming_the_node() {
    let mut g = GraphBuilder::new("x", vec![3]);
    let x = g.input();
    let y = g
        .add(
            "act1",
            "Softplus",
            Op::Activation(Activation::Softplus),
            &[x],
            "y",
        )
        .unwrap();
    let graph = g.finish(vec![y]).unwrap();
    let err = MpcPlan::compile(&graph, &MpcOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MlError::UnsupportedUse { node, op, .. } if node == "act1" && op == "Softplus"),
        "{err}"
    );
    assert!(
        err.to_string().contains("not supported under MPC yet"),
        "{err}"
    );
}

/// Linear (weights `w`) → square → linear.
fn square_model(w: f64) -> Graph {
    let mut g = GraphBuilder::new("x", vec![64]);
    let x = g.input();
    let l1 = Op::Linear {
        weight: Tensor::new(vec![8, 64], vec![w; 512]).unwrap(),
        bias: vec![0.0; 8],
    };
    let h = g.add("fc1", "Gemm", l1, &[x], "h").unwrap();
    let s = g.add("sq", "Mul", Op::Square, &[h], "s").unwrap();
    let l2 = Op::Linear {
        weight: Tensor::new(vec![2, 8], vec![1e-3; 16]).unwrap(),
        bias: vec![0.0; 2],
    };
    let o = g.add("fc2", "Gemm", l2, &[s], "o").unwrap();
    g.finish(vec![o]).unwrap()
}

#[test]
fn a_model_that_could_overflow_the_encoding_is_refused() {
    // 64 inputs up to 1 times weights of 1000: the first layer reaches 64,000, its square
    // 4.1e9, above 2^29 at 16 fractional bits.
    let err = MpcPlan::compile(&square_model(1000.0), &MpcOptions::default()).unwrap_err();
    match &err {
        MlError::FixedPointRange {
            node, op, bound, ..
        } => {
            assert_eq!(node, "sq");
            assert_eq!(op, "Square");
            assert!((bound - 4.096e9).abs() < 1e3, "{bound}");
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("scale the"), "{err}");
    // The same model with smaller weights, or a smaller declared input range, passes: and
    // with 12 fractional bits the range is 2^8 times larger.
    assert!(MpcPlan::compile(&square_model(10.0), &MpcOptions::default()).is_ok());
    let narrow = MpcOptions {
        input_bound: 0.01,
        ..MpcOptions::default()
    };
    assert!(MpcPlan::compile(&square_model(1000.0), &narrow).is_ok());
    let coarse = MpcOptions {
        fixed: veil_mpc::FixedPoint::new(12).unwrap(),
        ..MpcOptions::default()
    };
    assert!(MpcPlan::compile(&square_model(1000.0), &coarse).is_ok());
    // A weight that does not encode at all.
    let err = MpcPlan::compile(&square_model(1e10), &MpcOptions::default()).unwrap_err();
    assert!(
        matches!(&err, MlError::FixedPointRange { node, what, .. } if node == "fc1" && *what == "a weight"),
        "{err}"
    );
}

#[test]
fn the_client_refuses_inputs_outside_the_declared_range() {
    let graph = model("logreg");
    let (plan, weights) = MpcPlan::compile(&graph, &MpcOptions::default()).unwrap();
    let mut image = vec![0.5; 64];
    image[3] = 1.5;
    let err = run_local(&plan, &weights, 2, &[image], 1).unwrap_err();
    assert!(
        matches!(&err, MlError::Input { reason } if reason.contains("declared input range")),
        "{err}"
    );
}

/// Global average pooling of a 64×64 plane: the division multiplies the window sum by
/// `1/4096` encoded with 20 significant bits, so the range check counts that factor.
#[test]
fn pooling_range_accounts_for_the_division() {
    let mut g = GraphBuilder::new("x", vec![1, 64, 64]);
    let x = g.input();
    let q = g
        .add("gap", "GlobalAveragePool", Op::GlobalAveragePool, &[x], "q")
        .unwrap();
    let graph = g.finish(vec![q]).unwrap();
    let options = |input_bound| MpcOptions {
        input_bound,
        reveal: Reveal::Scores,
        ..MpcOptions::default()
    };
    let err = MpcPlan::compile(&graph, &options(1e4)).unwrap_err();
    assert!(
        matches!(&err, MlError::FixedPointRange { node, .. } if node == "gap"),
        "{err}"
    );
    let (plan, weights) = MpcPlan::compile(&graph, &options(1e3)).unwrap();
    let mut rng = Rng(5);
    let images: Vec<Vec<f64>> = (0..2)
        .map(|i| {
            let mut v = rng.vec(4096, 1e3);
            v[i] = 1e3;
            v
        })
        .collect();
    let run = run_local(&plan, &weights, 2, &images, 2).unwrap();
    for (image, p) in images.iter().zip(&run.predictions) {
        let mean = image.iter().sum::<f64>() / 4096.0;
        let got = p.scores.as_ref().unwrap()[0];
        assert!((got - mean).abs() < 1e-3, "{got} vs {mean}");
    }
}

/// The party-level API: the owner shares the weights once, two batches reuse them, and only
/// the client gets predictions — the owner and the helper party get `None`.
#[test]
fn only_the_client_learns_the_predictions() {
    let graph = model("mlp");
    let data = test_set();
    let options = MpcOptions {
        owner: 1,
        client: 2,
        ..MpcOptions::default()
    };
    let (plan, weights) = MpcPlan::compile(&graph, &options).unwrap();
    let images: Vec<Vec<f64>> = data.samples[..10].to_vec();
    let want: Vec<i64> = images
        .iter()
        .map(|s| argmax(&graph.run(s).unwrap()[0]) as i64)
        .collect();
    let out = veil_mpc::memory::run(3, options.fixed, move |party| {
        let me = party.id();
        let model = plan
            .share_model(party, (me == 1).then_some(&weights))
            .unwrap();
        let mut got = Vec::new();
        for chunk in images.chunks(5) {
            got.push(
                plan.infer(party, &model, (me == 2).then_some(chunk), chunk.len())
                    .unwrap(),
            );
        }
        Ok(got)
    })
    .unwrap();
    assert!(
        out[0].iter().all(Option::is_none),
        "the helper learns nothing"
    );
    assert!(
        out[1].iter().all(Option::is_none),
        "the owner learns nothing"
    );
    let labels: Vec<i64> = out[2]
        .iter()
        .flat_map(|b| b.as_ref().unwrap().iter().map(|p| p.label))
        .collect();
    assert_eq!(labels, want);
}

#[test]
fn a_published_plan_round_trips_and_holds_no_weight() {
    for name in ["logreg", "mlp", "cnn"] {
        let (plan, weights) = MpcPlan::compile(&model(name), &MpcOptions::default()).unwrap();
        let bytes = plan.to_bytes();
        assert_eq!(MpcPlan::from_bytes(&bytes).unwrap(), plan, "{name}");
        // No weight in the published plan: the decimal form of none of the first layer's
        // ten largest weights occurs in it.
        let text = String::from_utf8(bytes).unwrap();
        assert!(!weights.is_empty());
        let g = model(name);
        let mut first: Vec<f64> = g
            .nodes()
            .iter()
            .find_map(|n| match &n.op {
                Op::Linear { weight, .. } => Some(weight.data().to_vec()),
                Op::Conv2d(c) => Some(c.weight.data().to_vec()),
                _ => None,
            })
            .unwrap();
        first.sort_by(|a, b| b.abs().total_cmp(&a.abs()));
        for w in &first[..10] {
            assert!(
                !text.contains(&format!("{w}")),
                "{name} leaks the weight {w}"
            );
        }
    }
}

/// A party runs the plan the owner published: a forged plan that would make it read out of
/// bounds, allocate without bound or disagree with itself is refused at load, with a reason.
#[test]
fn a_forged_plan_is_refused_at_load() {
    let graph = synthetic_model(true);
    let (plan, _) = MpcPlan::compile(&graph, &MpcOptions::default()).unwrap();
    let good: serde_json::Value = serde_json::from_slice(&plan.to_bytes()).unwrap();
    let forge = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = good.clone();
        f(&mut v);
        MpcPlan::from_bytes(&serde_json::to_vec(&v).unwrap())
    };
    let node_with = |v: &mut serde_json::Value, key: &str| -> usize {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .position(|n| n["step"].get(key).is_some())
            .unwrap_or_else(|| panic!("no {key} node"))
    };
    type Forgery<'a> = Box<dyn Fn(&mut serde_json::Value) + 'a>;
    let cases: Vec<(&str, Forgery)> = vec![
        (
            "window past its input",
            Box::new(|v| {
                let i = node_with(v, "pool");
                v["nodes"][i]["step"]["pool"]["windows"][0][0] = 1_000_000.into();
            }),
        ),
        (
            "permutation past its input",
            Box::new(|v| {
                let i = node_with(v, "permute");
                v["nodes"][i]["step"]["permute"]["map"] = serde_json::json!([0, 99999]);
            }),
        ),
        (
            "linear shape",
            Box::new(|v| {
                let i = node_with(v, "linear");
                v["nodes"][i]["step"]["linear"]["inn"] = 3.into();
            }),
        ),
        (
            "parameter count",
            Box::new(|v| {
                let i = node_with(v, "linear");
                v["nodes"][i]["params"] = 1.into();
            }),
        ),
        (
            "a value of 2^40 elements",
            Box::new(|v| v["sizes"][0] = (1u64 << 40).into()),
        ),
        (
            "reads a later value",
            Box::new(|v| v["nodes"][0]["inputs"][0] = 10_000.into()),
        ),
        (
            "convolution groups",
            Box::new(|v| {
                let i = node_with(v, "conv");
                v["nodes"][i]["step"]["conv"]["groups"] = 0.into();
            }),
        ),
        ("labels", Box::new(|v| v["labels"] = serde_json::json!([1]))),
        ("fractional bits", Box::new(|v| v["frac_bits"] = 40.into())),
        (
            "input bound",
            Box::new(|v| v["input_bound"] = (-1.0).into()),
        ),
        ("version", Box::new(|v| v["version"] = 9.into())),
        (
            "unknown field",
            Box::new(|v| v["weights"] = serde_json::json!([0.5])),
        ),
    ];
    for (what, f) in cases {
        match forge(&*f) {
            Err(MlError::Format {
                what: "MPC plan",
                reason,
            }) => {
                println!("{what}: {reason}");
            }
            other => panic!("{what}: accepted or wrong error: {other:?}"),
        }
    }
    // Truncated bytes, too.
    let bytes = plan.to_bytes();
    assert!(MpcPlan::from_bytes(&bytes[..bytes.len() / 2]).is_err());
}

/// Conv → MaxPool(3×3, stride 2, pads 1: ResNet's stem) → Flatten → Linear.
fn max_pool_model() -> Graph {
    let mut rng = Rng(0xba11);
    let mut g = GraphBuilder::new("x", vec![1, 8, 8]);
    let x = g.input();
    let conv = Op::Conv2d(Conv2d {
        weight: Tensor::new(vec![3, 1, 3, 3], rng.vec(27, 0.7)).unwrap(),
        bias: rng.vec(3, 0.2),
        stride: [1, 1],
        pads: [1, 1, 1, 1],
        dilation: [1, 1],
        groups: 1,
    });
    let c = g.add("conv", "Conv", conv, &[x], "c").unwrap();
    // No Relu before: windows at the edge may hold only negative values, which padding
    // (ONNX's -inf) must not turn into 0.
    let stem = Op::MaxPool(Pool2d {
        kernel: [3, 3],
        stride: [2, 2],
        pads: [1, 1, 1, 1],
        count_include_pad: false,
    });
    let p = g.add("stem", "MaxPool", stem, &[c], "p").unwrap();
    let f = g
        .add(
            "flatten",
            "Flatten",
            Op::Reshape { shape: vec![48] },
            &[p],
            "f",
        )
        .unwrap();
    let lin = Op::Linear {
        weight: Tensor::new(vec![4, 48], rng.vec(192, 1.0)).unwrap(),
        bias: rng.vec(4, 0.3),
    };
    let l = g.add("fc", "Gemm", lin, &[f], "l").unwrap();
    g.finish(vec![l]).unwrap()
}

#[test]
fn max_pooling_is_exact_under_mpc() {
    let graph = max_pool_model();
    let mut rng = Rng(7);
    let inputs: Vec<Vec<f64>> = (0..24).map(|_| rng.vec(64, 1.0)).collect();
    // The test is meaningful only if some padded window holds negative values only.
    let conv_only = {
        let mut g = GraphBuilder::new("x", vec![1, 8, 8]);
        let x = g.input();
        let c = g
            .add("conv", "Conv", graph.nodes()[0].op.clone(), &[x], "c")
            .unwrap();
        g.finish(vec![c]).unwrap()
    };
    let negative_corners: usize = inputs
        .iter()
        .map(|x| {
            let c = conv_only.run(x).unwrap().remove(0);
            (0..3)
                .filter(|ch| [0, 1, 8, 9].iter().all(|k| c[ch * 64 + k] < 0.0))
                .count()
        })
        .sum();
    assert!(negative_corners > 0);
    let options = MpcOptions {
        reveal: Reveal::Scores,
        ..MpcOptions::default()
    };
    let (plan, weights) = MpcPlan::compile(&graph, &options).unwrap();
    assert_eq!(MpcPlan::from_bytes(&plan.to_bytes()).unwrap(), plan);
    for family in [Family::Dealer, Family::Replicated] {
        let run = run_with(family, &plan, &weights, &inputs, 12);
        let mut worst = 0.0f64;
        for (x, p) in inputs.iter().zip(&run.predictions) {
            let want = graph.run(x).unwrap().remove(0);
            for (a, b) in p.scores.as_ref().unwrap().iter().zip(&want) {
                worst = worst.max((a - b).abs());
            }
            assert_eq!(p.label, argmax(&want) as i64);
        }
        // Rounding of inputs, weights and one truncation per product: the maximum is exact.
        assert!(worst < 2e-3, "{family:?}: score error {worst}");
    }

    // Under HE a maximum has no polynomial form: refused naming the node.
    let err =
        veil_ml::he::Plan::compile(&graph, &veil_ml::he::CompileOptions::default()).unwrap_err();
    assert!(err.to_string().contains("stem"), "{err}");
}

/// A model whose worst case overflows but whose measured values are small compiles with
/// calibration; the plan says so (to every party) and computes correctly on such inputs.
#[test]
fn a_calibrated_plan_records_that_its_bounds_are_measured() {
    let graph = square_model(1e3);
    let options = MpcOptions {
        reveal: Reveal::Scores,
        ..MpcOptions::default()
    };
    assert!(MpcPlan::compile(&graph, &options).is_err());
    let mut rng = Rng(3);
    let samples: Vec<Vec<f64>> = (0..20).map(|_| rng.vec(64, 0.01)).collect();
    let (plan, weights) = MpcPlan::compile_calibrated(&graph, &options, &samples, 2.0).unwrap();
    let c = plan.calibration().unwrap();
    assert_eq!((c.samples, c.margin), (20, 2.0));
    let loaded = MpcPlan::from_bytes(&plan.to_bytes()).unwrap();
    assert_eq!(loaded.calibration(), plan.calibration());
    let inputs: Vec<Vec<f64>> = (0..8).map(|_| rng.vec(64, 0.01)).collect();
    let run = run_local(&plan, &weights, 2, &inputs, 8).unwrap();
    for (x, p) in inputs.iter().zip(&run.predictions) {
        let want = graph.run(x).unwrap().remove(0);
        for (a, b) in p.scores.as_ref().unwrap().iter().zip(&want) {
            assert!((a - b).abs() < 0.01 * b.abs().max(1.0), "{a} vs {b}");
        }
    }
    // Samples outside the declared range, no sample, a margin below 1: refused.
    let outside = vec![vec![2.0; 64]];
    assert!(MpcPlan::compile_calibrated(&graph, &MpcOptions::default(), &outside, 2.0).is_err());
    assert!(MpcPlan::compile_calibrated(&graph, &MpcOptions::default(), &[], 2.0).is_err());
    assert!(MpcPlan::compile_calibrated(&graph, &MpcOptions::default(), &samples, 0.5).is_err());
}
