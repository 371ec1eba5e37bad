//! Importer tests on small hand-built models, checked against tract.

use prost::Message;
use tract_onnx::prelude::{
    tvec, Datum, Framework, InferenceFact, InferenceModelExt, IntoRunnable, IntoTValue,
    Tensor as TractTensor,
};

use super::proto::*;
use super::*;

fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        float_data: data,
        name: name.into(),
        ..Default::default()
    }
}

fn int_tensor(name: &str, data: Vec<i64>) -> TensorProto {
    TensorProto {
        dims: vec![data.len() as i64],
        data_type: data_type::INT64,
        int64_data: data,
        name: name.into(),
        ..Default::default()
    }
}

fn ai(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 2,
        i,
        ..Default::default()
    }
}

fn aints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 7,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

fn af(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: 1,
        f,
        ..Default::default()
    }
}

fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        attribute: attrs,
    }
}

fn value_info(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto {
                    dim: dims
                        .iter()
                        .map(|d| Dimension {
                            dim_value: *d,
                            dim_param: if d.is_none() { Some("N".into()) } else { None },
                        })
                        .collect(),
                }),
            }),
        }),
    }
}

fn model(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    input: &[i64],
    outputs: &[&str],
) -> Vec<u8> {
    let mut dims = vec![None];
    dims.extend(input.iter().map(|&d| Some(d)));
    ModelProto {
        ir_version: 7,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 13,
        }],
        producer_name: "veil-ml tests".into(),
        producer_version: String::new(),
        graph: Some(GraphProto {
            node: nodes,
            name: "test".into(),
            initializer: inits,
            input: vec![value_info("x", &dims)],
            output: outputs
                .iter()
                .map(|o| ValueInfoProto {
                    name: o.to_string(),
                    r#type: None,
                })
                .collect(),
        }),
    }
    .encode_to_vec()
}

/// Deterministic values in [-1, 1).
fn pseudo(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) as f32
        })
        .collect()
}

/// Runs `bytes` with tract and with the importer + executor on `inputs` samples of
/// per-sample shape `shape`; asserts every output agrees.
fn agree_with_tract(bytes: &[u8], shape: &[usize], samples: usize) -> OnnxModel {
    let ours = import(bytes).unwrap();
    let mut full = vec![1usize];
    full.extend_from_slice(shape);
    let n: usize = shape.iter().product();
    let tract = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .with_input_fact(0, InferenceFact::dt_shape(f32::datum_type(), &full))
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    for s in 0..samples {
        let x = pseudo(n, s as u64);
        let theirs = tract
            .run(tvec!(TractTensor::from_shape(&full, &x)
                .unwrap()
                .into_tvalue()))
            .unwrap();
        let xs: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let mine = ours.graph.run(&xs).unwrap();
        assert_eq!(mine.len(), theirs.len());
        for (m, t) in mine.iter().zip(theirs.iter()) {
            let t: Vec<f64> = t
                .cast_to::<f32>()
                .unwrap()
                .to_plain_array_view::<f32>()
                .unwrap()
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            assert_eq!(m.len(), t.len());
            for (a, b) in m.iter().zip(&t) {
                assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{a} vs {b}");
            }
        }
    }
    ours
}

#[test]
fn convolutional_ops_match_tract_and_batchnorm_folds() {
    // Conv (pads, stride 1) → BN → Relu → AveragePool(2, 2) → Sub c → Div c → Sigmoid →
    // Transpose → Reshape → MatMul → Add → Tanh → Gemm → Softplus → Mul c.
    let nodes = vec![
        node(
            "Conv",
            "conv",
            &["x", "w", "b"],
            &["c"],
            vec![
                aints("kernel_shape", &[3, 3]),
                aints("pads", &[1, 1, 1, 1]),
                aints("strides", &[1, 1]),
            ],
        ),
        node(
            "BatchNormalization",
            "bn",
            &["c", "g", "beta", "mu", "var"],
            &["bn"],
            vec![af("epsilon", 1e-3)],
        ),
        node("Relu", "relu", &["bn"], &["r"], vec![]),
        node(
            "AveragePool",
            "pool",
            &["r"],
            &["p"],
            vec![aints("kernel_shape", &[2, 2]), aints("strides", &[2, 2])],
        ),
        node("Sub", "sub", &["p", "s3"], &["q"], vec![]),
        node("Div", "div", &["q", "two"], &["d"], vec![]),
        node("Sigmoid", "sig", &["d"], &["sg"], vec![]),
        node(
            "Transpose",
            "tr",
            &["sg"],
            &["t"],
            vec![aints("perm", &[0, 2, 3, 1])],
        ),
        node("Reshape", "rs", &["t", "shape"], &["f"], vec![]),
        node("MatMul", "mm", &["f", "m"], &["mmo"], vec![]),
        node("Add", "add", &["mmo", "a8"], &["ad"], vec![]),
        node("Tanh", "tanh", &["ad"], &["th"], vec![]),
        node(
            "Gemm",
            "gemm",
            &["th", "gb", "gc"],
            &["gm"],
            vec![af("alpha", 0.5), af("beta", 2.0)],
        ),
        node("Softplus", "sp", &["gm"], &["spo"], vec![]),
        node("Mul", "mul", &["k5", "spo"], &["y"], vec![]),
    ];
    let inits = vec![
        tensor("w", &[3, 2, 3, 3], pseudo(54, 100)),
        tensor("b", &[3], pseudo(3, 101)),
        tensor("g", &[3], vec![1.5, 0.5, 2.0]),
        tensor("beta", &[3], vec![0.1, -0.2, 0.3]),
        tensor("mu", &[3], vec![0.05, 0.0, -0.1]),
        tensor("var", &[3], vec![0.5, 2.0, 1.0]),
        tensor("s3", &[3, 1, 1], vec![0.1, 0.2, 0.3]),
        tensor("two", &[], vec![2.0]),
        int_tensor("shape", vec![0, -1]),
        tensor("m", &[27, 8], pseudo(216, 102)),
        tensor("a8", &[8], pseudo(8, 103)),
        tensor("gb", &[8, 5], pseudo(40, 104)),
        tensor("gc", &[1, 5], pseudo(5, 105)),
        tensor("k5", &[5], vec![1.0, -2.0, 0.5, 3.0, -1.0]),
    ];
    let bytes = model(nodes, inits, &[2, 6, 6], &["y"]);
    let m = agree_with_tract(&bytes, &[2, 6, 6], 8);
    let ops: Vec<&str> = m.graph.nodes().iter().map(|n| n.op.name()).collect();
    // BN folds into the conv, Add into the MatMul; the scalings between sigmoid and
    // AveragePool stay (no linear layer before them), as does the final Mul.
    assert_eq!(
        ops,
        [
            "Conv2d",
            "Relu",
            "AveragePool",
            "Affine",
            "Affine",
            "Sigmoid",
            "Transpose",
            "Reshape",
            "Linear",
            "Tanh",
            "Linear",
            "Softplus",
            "Affine"
        ]
    );
}

#[test]
fn max_pooling_matches_tract_padded_and_strided() {
    // Conv → Relu → MaxPool(3×3, stride 2, pads 1: ResNet's stem) → MaxPool(2×2) → Flatten
    // → Gemm.
    let nodes = vec![
        node(
            "Conv",
            "conv",
            &["x", "w", "b"],
            &["c"],
            vec![aints("kernel_shape", &[3, 3]), aints("pads", &[1, 1, 1, 1])],
        ),
        node("Relu", "relu", &["c"], &["r"], vec![]),
        node(
            "MaxPool",
            "stem",
            &["r"],
            &["p"],
            vec![
                aints("kernel_shape", &[3, 3]),
                aints("strides", &[2, 2]),
                aints("pads", &[1, 1, 1, 1]),
            ],
        ),
        node(
            "MaxPool",
            "pool",
            &["p"],
            &["q"],
            vec![aints("kernel_shape", &[2, 2]), aints("strides", &[2, 2])],
        ),
        node("Flatten", "fl", &["q"], &["f"], vec![]),
        node("Gemm", "fc", &["f", "gb"], &["y"], vec![ai("transB", 1)]),
    ];
    let inits = vec![
        tensor("w", &[3, 2, 3, 3], pseudo(54, 200)),
        tensor("b", &[3], pseudo(3, 201)),
        tensor("gb", &[4, 12], pseudo(48, 202)),
    ];
    let bytes = model(nodes, inits, &[2, 8, 8], &["y"]);
    let m = agree_with_tract(&bytes, &[2, 8, 8], 8);
    let ops: Vec<&str> = m.graph.nodes().iter().map(|n| n.op.name()).collect();
    assert_eq!(
        ops,
        ["Conv2d", "Relu", "MaxPool", "MaxPool", "Reshape", "Linear"]
    );
}

#[test]
fn strided_grouped_conv_global_pool_and_binary_ops_match_tract() {
    let nodes = vec![
        node(
            "Conv",
            "conv",
            &["x", "w"],
            &["c"],
            vec![
                aints("strides", &[2, 1]),
                aints("pads", &[0, 1, 1, 0]),
                ai("group", 2),
            ],
        ),
        node("Mul", "sq", &["c", "c"], &["s"], vec![]),
        node("Pow", "pow", &["c", "two"], &["p"], vec![]),
        node("Add", "add", &["s", "p"], &["a"], vec![]),
        node("Sub", "sub", &["a", "c"], &["d"], vec![]),
        node("Mul", "mul", &["d", "c"], &["e"], vec![]),
        node("GlobalAveragePool", "gap", &["e"], &["g"], vec![]),
        node("Flatten", "flat", &["g"], &["f"], vec![ai("axis", 1)]),
        node("Softmax", "softmax", &["f"], &["y"], vec![ai("axis", 1)]),
    ];
    let inits = vec![
        tensor("w", &[4, 1, 2, 3], pseudo(24, 7)),
        tensor("two", &[], vec![2.0]),
    ];
    let bytes = model(nodes, inits, &[2, 5, 4], &["y"]);
    agree_with_tract(&bytes, &[2, 5, 4], 6);
}

#[test]
fn unsupported_uses_are_explained() {
    let gemm_weight_from_input = model(
        vec![node("Gemm", "g", &["x", "x"], &["y"], vec![])],
        vec![],
        &[4],
        &["y"],
    );
    let err = import(&gemm_weight_from_input).unwrap_err();
    assert!(
        matches!(&err, MlError::UnsupportedUse { node, op, .. } if node == "g" && op == "Gemm"),
        "{err}"
    );

    let flatten0 = model(
        vec![node("Flatten", "fl", &["x"], &["y"], vec![ai("axis", 0)])],
        vec![],
        &[2, 2],
        &["y"],
    );
    let err = import(&flatten0).unwrap_err();
    assert!(
        matches!(&err, MlError::UnsupportedUse { node, .. } if node == "fl"),
        "{err}"
    );

    let lppool = model(
        vec![node(
            "LpPool",
            "",
            &["x"],
            &["y"],
            vec![aints("kernel_shape", &[2, 2])],
        )],
        vec![],
        &[1, 4, 4],
        &["y"],
    );
    let err = import(&lppool).unwrap_err();
    assert!(
        matches!(&err, MlError::UnsupportedOp { node, op, .. } if node == "#0" && op == "LpPool"),
        "{err}"
    );
    // MaxPool's second output (the indices), ceil_mode and padding as large as the window.
    for (attrs, outputs) in [
        (vec![aints("kernel_shape", &[2, 2])], vec!["y", "i"]),
        (
            vec![aints("kernel_shape", &[2, 2]), ai("ceil_mode", 1)],
            vec!["y"],
        ),
        (
            vec![aints("kernel_shape", &[2, 2]), aints("pads", &[2, 0, 0, 0])],
            vec!["y"],
        ),
    ] {
        let bytes = model(
            vec![node("MaxPool", "mp", &["x"], &outputs, attrs)],
            vec![],
            &[1, 4, 4],
            &["y"],
        );
        let err = import(&bytes).unwrap_err();
        assert!(err.to_string().contains("mp"), "{err}");
    }

    let batch_transpose = model(
        vec![node(
            "Transpose",
            "t",
            &["x"],
            &["y"],
            vec![aints("perm", &[1, 0])],
        )],
        vec![],
        &[3],
        &["y"],
    );
    assert!(matches!(
        import(&batch_transpose).unwrap_err(),
        MlError::UnsupportedUse { .. }
    ));

    let bad_shapes = model(
        vec![node(
            "Gemm",
            "g",
            &["x", "w"],
            &["y"],
            vec![ai("transB", 1)],
        )],
        vec![tensor("w", &[3, 5], pseudo(15, 1))],
        &[4],
        &["y"],
    );
    let err = import(&bad_shapes).unwrap_err();
    assert!(
        matches!(&err, MlError::InvalidModel { reason } if reason.contains("`g`")),
        "{err}"
    );

    // ONNX names are single-assignment: a node may not redefine an initializer.
    let redefined = model(
        vec![node("Relu", "r", &["x"], &["w"], vec![])],
        vec![tensor("w", &[1], vec![1.0])],
        &[4],
        &["w"],
    );
    let err = import(&redefined).unwrap_err();
    assert!(
        matches!(&err, MlError::InvalidModel { reason } if reason.contains("redefines `w`")),
        "{err}"
    );

    let raw_too_short = model(
        vec![node("Gemm", "g", &["x", "w"], &["y"], vec![])],
        vec![TensorProto {
            dims: vec![4, 1_000_000_000],
            data_type: data_type::FLOAT,
            raw_data: vec![0; 16],
            name: "w".into(),
            ..Default::default()
        }],
        &[4],
        &["y"],
    );
    assert!(matches!(
        import(&raw_too_short).unwrap_err(),
        MlError::InvalidModel { .. }
    ));
}

#[test]
fn tree_ensemble_regressor_averages_and_adds_base_values() {
    // Two stumps on features 0 and 1; AVERAGE aggregation, base value 10.
    let s = |v: &str| v.as_bytes().to_vec();
    let attrs = vec![
        aints("nodes_treeids", &[0, 0, 0, 1, 1, 1]),
        aints("nodes_nodeids", &[0, 1, 2, 0, 1, 2]),
        aints("nodes_featureids", &[0, 0, 0, 1, 0, 0]),
        AttributeProto {
            name: "nodes_values".into(),
            floats: vec![0.5, 0.0, 0.0, -0.25, 0.0, 0.0],
            ..Default::default()
        },
        AttributeProto {
            name: "nodes_modes".into(),
            strings: vec![
                s("BRANCH_LEQ"),
                s("LEAF"),
                s("LEAF"),
                s("BRANCH_GT"),
                s("LEAF"),
                s("LEAF"),
            ],
            ..Default::default()
        },
        aints("nodes_truenodeids", &[1, 0, 0, 1, 0, 0]),
        aints("nodes_falsenodeids", &[2, 0, 0, 2, 0, 0]),
        aints("target_treeids", &[0, 0, 1, 1]),
        aints("target_nodeids", &[1, 2, 1, 2]),
        aints("target_ids", &[0, 0, 0, 0]),
        AttributeProto {
            name: "target_weights".into(),
            floats: vec![1.0, 2.0, 4.0, 8.0],
            ..Default::default()
        },
        ai("n_targets", 1),
        AttributeProto {
            name: "aggregate_function".into(),
            s: s("AVERAGE"),
            ..Default::default()
        },
        AttributeProto {
            name: "base_values".into(),
            floats: vec![10.0],
            ..Default::default()
        },
    ];
    let mut n = node("TreeEnsembleRegressor", "reg", &["x"], &["y"], attrs);
    n.domain = "ai.onnx.ml".into();
    let mut proto = ModelProto::decode(&model(vec![n], vec![], &[2], &["y"])[..]).unwrap();
    proto.opset_import.push(OperatorSetIdProto {
        domain: "ai.onnx.ml".into(),
        version: 1,
    });
    let m = import(&proto.encode_to_vec()).unwrap();
    let run = |a: f64, b: f64| m.graph.run(&[a, b]).unwrap()[0][0];
    assert_eq!(run(0.5, 0.0), 10.0 + (1.0 + 4.0) / 2.0);
    assert_eq!(run(0.6, -0.25), 10.0 + (2.0 + 8.0) / 2.0);
    assert_eq!(run(-1.0, 3.0), 10.0 + (1.0 + 4.0) / 2.0);
}
