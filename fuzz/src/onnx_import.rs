//! Feeds hostile model files to the ONNX importer (`veil ml`, a model a server is asked to
//! register): raw bytes, and edits of the committed digits models (logistic regression, MLP,
//! CNN, random forest). Every input must import or fail with an error — never panic, never
//! allocate beyond the file's own bounds — and a model that imports must run on a sample
//! (or refuse it) without panicking; so must the CKKS compiler on it.

use std::sync::OnceLock;

use crate::edits;

fn samples() -> &'static Vec<Vec<u8>> {
    static S: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    S.get_or_init(|| {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/veil-ml/models");
        ["logreg.onnx", "mlp.onnx", "cnn.onnx", "forest.onnx"]
            .iter()
            .map(|n| std::fs::read(format!("{dir}/{n}")).expect("committed model"))
            .collect()
    })
}

fn check(data: &[u8]) {
    let Ok(model) = veil_ml::onnx::import(data) else {
        return;
    };
    let size: usize = model.graph.input().shape.iter().product();
    if size > 1 << 12 {
        return;
    }
    let _ = model.graph.run(&vec![0.25; size]);
    let _ = veil_ml::he::Plan::compile(
        &model.graph,
        &veil_ml::he::CompileOptions {
            input_range: (0.0, 1.0),
            ..veil_ml::he::CompileOptions::default()
        },
    );
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    check(data);
    if let Some(obj) = edits::edited(samples(), data) {
        check(&obj);
    }
}
