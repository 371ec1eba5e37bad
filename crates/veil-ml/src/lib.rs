//! # veil-ml: encrypted inference of trained models
//!
//! A client encrypts an image or a record, a server runs a trained model on the ciphertext
//! without seeing it, and only the client reads the prediction. This crate takes the model
//! file, so that nobody hand-writes layers in homomorphic operations.
//!
//! ## Design
//!
//! - [`onnx`] reads an ONNX file (untrusted input: bounded, checked, never panics) into the
//!   [`ir`]: a small typed graph of per-sample tensor operations whose constants are already
//!   in the form the backends want (BatchNormalization and constant scalings folded into the
//!   linear layer before them). Unsupported operators are errors naming the node and the
//!   operator.
//! - The plaintext executor ([`ir::Graph::run`]) evaluates the IR in `f64`: it is the
//!   reference every encrypted backend is tested against.
//! - [`he`] compiles a graph onto Veil's CKKS engine (latency packing: one input per
//!   ciphertext), choosing the parameters and the Galois keys from the plan; the client
//!   encrypts and decrypts with noise flooding, the server evaluates with public keys only.
//!
//! ```
//! # fn main() -> veil_ml::Result<()> {
//! let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/models/mlp.onnx"))
//!     .map_err(|e| veil_ml::MlError::Decode { reason: e.to_string() })?;
//! let model = veil_ml::onnx::import(&bytes)?;
//! assert_eq!(model.graph.input().shape, vec![64]);
//! let logits = &model.graph.run(&[0.5; 64])?[0];
//! assert_eq!(logits.len(), 10);
//! # Ok(()) }
//! ```
//!
//! Encrypted inference, with the client/server split (latency packing, one image per
//! ciphertext):
//!
//! ```
//! use veil_ml::he::{CompileOptions, Plan};
//! # fn main() -> veil_ml::Result<()> {
//! # let read = |p: &str| std::fs::read_to_string(p)
//! #     .map_err(|e| veil_ml::MlError::Decode { reason: e.to_string() });
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/models");
//! let model = veil_ml::onnx::import_file(format!("{dir}/logreg.onnx"))?;
//! let data = veil_ml::data::LabelledData::from_csv(&read(&format!("{dir}/digits_test.csv"))?, 1.0 / 16.0)?;
//! // The model owner compiles once: depth, ring degree, modulus chain, scale, Galois keys.
//! let plan = Plan::compile(&model.graph, &CompileOptions {
//!     calibration: data.samples[..20].to_vec(),
//!     ..CompileOptions::default()
//! })?;
//! assert_eq!(plan.depth(), 1);
//! // Client: keys, then an encrypted query.
//! let client = plan.keygen()?;
//! let query = plan.encrypt(&client, &data.samples[0])?;
//! // Server: public keys only.
//! let server = client.make_public();
//! let query = veil_he::ckks::CkksVector::from_bytes(&server, &query.to_bytes())?;
//! let answer = plan.evaluate(&query)?;
//! // Client: flooded decryption; the logits are close to the plaintext model's.
//! let answer = veil_he::ckks::CkksVector::from_bytes(&client, &answer.to_bytes())?;
//! let (logits, _flood_std) = plan.decrypt(&answer)?;
//! let plain = &model.graph.run(&data.samples[0])?[0];
//! assert!(logits.iter().zip(plain).all(|(a, b)| (a - b).abs() < 1.0));
//! # Ok(()) }
//! ```
//!
//! ## Activations under CKKS
//!
//! Relu, Sigmoid, Tanh and Softplus run encrypted as polynomials ([`approx`]): the compiler
//! takes each activation's input interval (declared per node, measured on calibration data
//! and widened by the margin, or propagated from the declared input range), fits the
//! lowest-degree Chebyshev interpolant whose error, measured on a dense grid, is within
//! [`he::CompileOptions::activation_precision`], and evaluates it in `⌈log2(d + 1)⌉` levels.
//! The plan reports every activation's interval, degree and error; inputs outside the
//! interval get meaningless values (the polynomial diverges there), so calibrate on
//! representative data.
//!
//! ```
//! use veil_ml::he::{CompileOptions, Plan};
//! use veil_ml::ir::{Activation, GraphBuilder, Op, Tensor};
//! # fn main() -> veil_ml::Result<()> {
//! let mut g = GraphBuilder::new("x", vec![2]);
//! let x = g.input();
//! let weight = Tensor::new(vec![2, 2], vec![1.0, -1.0, 0.5, 2.0])?;
//! let h = g.add("fc", "Gemm", Op::Linear { weight, bias: vec![0.0, 0.1] }, &[x], "h")?;
//! let y = g.add("act", "Tanh", Op::Activation(Activation::Tanh), &[h], "y")?;
//! let graph = g.finish(vec![y])?;
//! // Inputs in [-1, 1]: interval propagation gives the activation's range.
//! let plan = Plan::compile(&graph, &CompileOptions {
//!     input_range: (-1.0, 1.0),
//!     activation_precision: 1e-3,
//!     ..CompileOptions::default()
//! })?;
//! let tanh = plan.activations()[0];
//! assert!(tanh.max_error <= 1e-3);
//! assert_eq!(plan.depth(), 1 + tanh.depth());
//! // The plan's own arithmetic (the same polynomial, in f64) is close to the exact model.
//! let exact = &graph.run(&[0.3, -0.7])?[0];
//! let planned = plan.evaluate_plain(&[0.3, -0.7])?;
//! assert!(exact.iter().zip(&planned).all(|(a, b)| (a - b).abs() <= 1e-3));
//! # Ok(()) }
//! ```

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod approx;
pub mod data;
pub mod error;
mod exec;
mod forest;
pub mod he;
pub mod ir;
pub mod mpc;
pub mod onnx;
pub mod train;

pub use error::{MlError, Result};
