//! Integration tests of veil-ml against the committed digits models (`models/`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common {
    use std::path::PathBuf;

    use veil_ml::data::LabelledData;

    pub const MODELS: [&str; 4] = ["logreg", "mlp", "cnn", "forest"];

    pub fn models_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
    }

    pub fn model_path(name: &str) -> PathBuf {
        models_dir().join(format!("{name}.onnx"))
    }

    pub fn model_bytes(name: &str) -> Vec<u8> {
        std::fs::read(model_path(name)).unwrap()
    }

    /// The 360 test images, scaled to pixel / 16 as the models expect.
    pub fn test_set() -> LabelledData {
        let text = std::fs::read_to_string(models_dir().join("digits_test.csv")).unwrap();
        LabelledData::from_csv(&text, 1.0 / 16.0).unwrap()
    }

    /// `predictions.csv`: column name → predicted class per test image.
    pub fn recorded_predictions() -> Vec<(String, Vec<i64>)> {
        let text = std::fs::read_to_string(models_dir().join("predictions.csv")).unwrap();
        let mut lines = text.lines();
        let header: Vec<String> = lines.next().unwrap().split(',').map(String::from).collect();
        let mut cols: Vec<Vec<i64>> = vec![Vec::new(); header.len()];
        for line in lines {
            for (c, v) in line.split(',').enumerate() {
                cols[c].push(v.parse().unwrap());
            }
        }
        header.into_iter().zip(cols).collect()
    }

    /// Index of the largest value (first on ties).
    pub fn argmax(v: &[f64]) -> usize {
        let mut best = 0;
        for (i, &x) in v.iter().enumerate() {
            if x > v[best] {
                best = i;
            }
        }
        best
    }
}

mod plaintext {
    use super::common::*;
    use tract_onnx::prelude::*;
    use veil_ml::onnx;

    /// Runs the model with tract on the whole test set at once; returns the float output
    /// (logits, or the forest's probabilities) per image.
    fn tract_outputs(name: &str, images: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let n = images.len();
        let shape: Vec<usize> = if name == "cnn" {
            vec![n, 1, 8, 8]
        } else {
            vec![n, 64]
        };
        let model = tract_onnx::onnx()
            .model_for_path(model_path(name))
            .unwrap()
            .with_input_fact(0, f32::fact(&shape).into())
            .unwrap()
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let flat: Vec<f32> = images.iter().flatten().map(|&v| v as f32).collect();
        let input = Tensor::from_shape(&shape, &flat).unwrap();
        let out = model.run(tvec!(input.into_tvalue())).unwrap();
        // The forest's second output holds the probabilities.
        let scores = if name == "forest" { &out[1] } else { &out[0] };
        let view = scores.to_plain_array_view::<f32>().unwrap();
        let k = view.len() / n;
        let flat: Vec<f64> = view.iter().map(|&v| f64::from(v)).collect();
        flat.chunks(k).map(<[f64]>::to_vec).collect()
    }

    fn check_model_against_tract(name: &str) {
        let data = test_set();
        assert_eq!(data.len(), 360);
        let model = onnx::import_file(model_path(name)).unwrap();
        let reference = tract_outputs(name, &data.samples);
        let recorded = recorded_predictions();
        let recorded = &recorded.iter().find(|(c, _)| c == name).unwrap().1;
        let mut worst = 0.0f64;
        let mut correct = 0;
        for (i, image) in data.samples.iter().enumerate() {
            let outs = model.graph.run(image).unwrap();
            // Scores: the last output (logits, or the forest's probabilities).
            let scores = if name == "forest" { &outs[1] } else { &outs[0] };
            assert_eq!(scores.len(), 10);
            for (a, b) in scores.iter().zip(&reference[i]) {
                worst = worst.max((a - b).abs() / b.abs().max(1.0));
            }
            let predicted = argmax(scores) as i64;
            if name == "forest" {
                // The label output is the argmax mapped through the class labels.
                assert_eq!(outs[0], vec![predicted as f64]);
            }
            assert_eq!(
                predicted, recorded[i],
                "{name}: image {i} predicted {predicted}, train.py recorded {}",
                recorded[i]
            );
            assert_eq!(argmax(&reference[i]) as i64, predicted, "{name}: image {i}");
            correct += usize::from(predicted == data.labels[i]);
        }
        assert!(
            worst < 1e-4,
            "{name}: relative difference to tract {worst:e}"
        );
        // The accuracy train.py recorded.
        let acc = std::fs::read_to_string(models_dir().join("accuracy.json")).unwrap();
        let line = acc
            .lines()
            .find(|l| l.contains(&format!("\"{name}\"")))
            .unwrap();
        let recorded_acc: f64 = line
            .split(':')
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(',')
            .parse()
            .unwrap();
        let ours = correct as f64 / data.len() as f64;
        assert!(
            (ours - recorded_acc).abs() < 1e-5,
            "{name}: {ours} vs {recorded_acc}"
        );
    }

    #[test]
    fn logreg_matches_tract_on_all_test_images() {
        check_model_against_tract("logreg");
    }

    #[test]
    fn mlp_matches_tract_on_all_test_images() {
        check_model_against_tract("mlp");
    }

    #[test]
    fn cnn_matches_tract_on_all_test_images() {
        check_model_against_tract("cnn");
    }

    #[test]
    fn forest_matches_tract_on_all_test_images() {
        check_model_against_tract("forest");
    }

    #[test]
    fn imported_graphs_have_the_expected_structure() {
        let names = |m: &str| -> Vec<&'static str> {
            onnx::import_file(model_path(m))
                .unwrap()
                .graph
                .nodes()
                .iter()
                .map(|n| n.op.name())
                .collect()
        };
        assert_eq!(names("logreg"), ["Linear"]);
        assert_eq!(names("mlp"), ["Linear", "Square", "Linear"]);
        assert_eq!(
            names("cnn"),
            ["Conv2d", "Square", "Reshape", "Linear", "Square", "Linear"]
        );
        assert_eq!(names("forest"), ["TreeEnsemble", "ArgMax"]);
        let forest = onnx::import_file(model_path("forest")).unwrap();
        let veil_ml::ir::Op::TreeEnsemble(t) = &forest.graph.nodes()[0].op else {
            panic!("not a tree ensemble")
        };
        assert_eq!(t.trees.len(), 10);
        assert_eq!(t.n_targets, 10);
        assert_eq!(forest.info.ml_opset, Some(1));
        assert_eq!(forest.info.opset, 13);
    }
}

mod errors {
    use super::common::*;
    use veil_ml::{onnx, MlError};

    /// Replaces every occurrence of `from` by `to` (same length, so the protobuf stays valid).
    fn patch(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let mut out = bytes.to_vec();
        let mut hits = 0;
        let mut i = 0;
        while i + from.len() <= out.len() {
            if &out[i..i + from.len()] == from {
                out[i..i + from.len()].copy_from_slice(to);
                hits += 1;
                i += from.len();
            } else {
                i += 1;
            }
        }
        assert!(hits > 0);
        out
    }

    #[test]
    fn unsupported_operator_is_named_with_its_node() {
        // The CNN's square activations become `Erf`, which Veil does not implement.
        let bytes = patch(&model_bytes("cnn"), b"/1/Mul", b"/1/Erf");
        let bytes = patch(&bytes, b"\x22\x03Mul", b"\x22\x03Erf");
        let err = onnx::import(&bytes).unwrap_err();
        match &err {
            MlError::UnsupportedOp {
                node, op, domain, ..
            } => {
                assert_eq!(node, "/1/Erf");
                assert_eq!(op, "Erf");
                assert_eq!(domain, "ai.onnx");
            }
            other => panic!("wrong error {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("/1/Erf") && msg.contains("Erf") && msg.contains("Gemm"),
            "{msg}"
        );
    }

    #[test]
    fn unsupported_ml_operator_is_named() {
        let bytes = patch(
            &model_bytes("forest"),
            b"TreeEnsembleClassifier",
            b"TreeEnsembleClassifieX",
        );
        let err = onnx::import(&bytes).unwrap_err();
        assert!(
            matches!(&err, MlError::UnsupportedOp { op, domain, .. }
                if op == "TreeEnsembleClassifieX" && domain == "ai.onnx.ml"),
            "{err:?}"
        );
    }

    #[test]
    fn truncated_files_fail_cleanly() {
        for name in MODELS {
            let bytes = model_bytes(name);
            let step = (bytes.len() / 400).max(1);
            let mut cuts: Vec<usize> = (0..bytes.len()).step_by(step).collect();
            cuts.extend(bytes.len().saturating_sub(64)..bytes.len());
            for cut in cuts {
                let r = onnx::import(&bytes[..cut]);
                assert!(
                    r.is_err(),
                    "{name} truncated to {cut} of {} bytes imported",
                    bytes.len()
                );
            }
        }
    }

    #[test]
    fn corrupted_files_never_panic() {
        // Flip bytes all over each model: import may succeed or fail, but never panic,
        // and a model that imports must run.
        let data = test_set();
        for name in MODELS {
            let bytes = model_bytes(name);
            let step = (bytes.len() / 300).max(1);
            for (k, pos) in (0..bytes.len()).step_by(step).enumerate() {
                let mut b = bytes.clone();
                b[pos] ^= [0xff, 0x01, 0x80, 0x7f][k % 4];
                if let Ok(m) = onnx::import(&b) {
                    let n = m.graph.input().shape.iter().product::<usize>();
                    if n == 64 {
                        let _ = m.graph.run(&data.samples[0]);
                    }
                }
            }
        }
    }

    #[test]
    fn not_onnx_is_a_decode_error() {
        let err = onnx::import(b"this is not a model").unwrap_err();
        assert!(matches!(err, MlError::Decode { .. }), "{err:?}");
        let err = onnx::import(&[]).unwrap_err();
        assert!(matches!(err, MlError::Decode { .. }), "{err:?}");
    }

    #[test]
    fn wrong_input_size_is_an_error() {
        let m = onnx::import_file(model_path("mlp")).unwrap();
        let err = m.graph.run(&[0.0; 63]).unwrap_err();
        assert!(matches!(err, MlError::Input { .. }), "{err:?}");
    }
}
