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

#![deny(missing_docs)]
#![forbid(unsafe_code)]

pub mod data;
pub mod error;
mod exec;
pub mod he;
pub mod ir;
pub mod onnx;

pub use error::{MlError, Result};
