//! `veil._native.ml`: encrypted inference of ONNX models (the `veil.ml` module wraps it with
//! numpy arrays and `veil.he` contexts).

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veil_ml::he::{CompileOptions, EncryptedSamples, Packing, Plan as HePlan};
use veil_ml::MlError as RustMlError;

use crate::errors::{ml, MlError};
use crate::{f64s_from_le_bytes, f64s_to_le_bytes};

/// Adds the classes to the `ml` submodule.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Plan>()?;
    m.add_class::<Encrypted>()?;
    Ok(())
}

/// `rows × cols` little-endian float64 bytes as rows.
fn matrix(bytes: &[u8], rows: usize, cols: usize) -> PyResult<Vec<Vec<f64>>> {
    let v = f64s_from_le_bytes(bytes)
        .ok_or_else(|| MlError::new_err("samples must be float64 bytes"))?;
    if rows.checked_mul(cols) != Some(v.len()) || cols == 0 {
        return Err(MlError::new_err(format!(
            "{rows} samples of {cols} values need {} numbers, got {}",
            rows.saturating_mul(cols),
            v.len()
        )));
    }
    Ok(v.chunks_exact(cols).map(<[f64]>::to_vec).collect())
}

/// A compiled model: the encrypted steps, the CKKS parameters and the keys they need.
#[pyclass(frozen, module = "veil._native.ml", name = "Plan")]
pub struct Plan {
    inner: HePlan,
}

#[pymethods]
impl Plan {
    /// Compiles an ONNX model (its bytes) for encrypted inference. `packing` is `"single"`
    /// (one sample per ciphertext, lowest latency), `"batch"` (thousands of samples per
    /// evaluation) or `"auto"` (single, or batch for tree ensembles, which need it). Inputs
    /// lie in `[lo, hi]`; `calibration` (float64 bytes of `rows × input_len`) measures the
    /// activations' ranges instead; `precision` is the target standard deviation of the
    /// decrypted outputs' error.
    #[staticmethod]
    #[pyo3(signature = (model, lo = 0.0, hi = 1.0, packing = "auto", precision = 0.125, calibration = None))]
    fn compile(
        py: Python<'_>,
        model: &[u8],
        lo: f64,
        hi: f64,
        packing: &str,
        precision: f64,
        calibration: Option<(Vec<u8>, usize, usize)>,
    ) -> PyResult<Self> {
        let packing_choice = match packing {
            "single" => Some(Packing::Single),
            "batch" => Some(Packing::Batch),
            "auto" => None,
            other => {
                return Err(MlError::new_err(format!(
                    "packing must be \"single\", \"batch\" or \"auto\", got {other:?}"
                )))
            }
        };
        let calibration = match calibration {
            Some((bytes, rows, cols)) => matrix(&bytes, rows, cols)?,
            None => Vec::new(),
        };
        let inner = py
            .detach(|| {
                let model = veil_ml::onnx::import(model)?;
                let options = CompileOptions {
                    packing: packing_choice.unwrap_or(Packing::Single),
                    input_range: (lo, hi),
                    calibration,
                    precision,
                    ..CompileOptions::default()
                };
                match HePlan::compile(&model.graph, &options) {
                    // Tree ensembles run with batch packing only.
                    Err(RustMlError::UnsupportedUse { ref op, .. })
                        if op == "TreeEnsemble" && packing_choice.is_none() =>
                    {
                        HePlan::compile(
                            &model.graph,
                            &CompileOptions {
                                packing: Packing::Batch,
                                ..options
                            },
                        )
                    }
                    other => other,
                }
            })
            .map_err(ml)?;
        Ok(Self { inner })
    }

    /// The plan without the model's weights: what a server gives its clients (keys,
    /// encryption and decryption need nothing more).
    fn client_plan(&self) -> Self {
        Self {
            inner: self.inner.without_weights(),
        }
    }

    /// The plan as bytes (versioned; `Plan.from_bytes` validates them).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// Reads a plan written by `to_bytes`; anything malformed is refused.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let inner = py.detach(|| HePlan::from_bytes(data)).map_err(ml)?;
        Ok(Self { inner })
    }

    /// Client side: a fresh secret key and exactly the keys the plan needs.
    fn keygen(&self, py: Python<'_>) -> PyResult<crate::he::Context> {
        let inner = py.detach(|| self.inner.keygen()).map_err(ml)?;
        Ok(crate::he::Context::from_inner(inner))
    }

    /// Client side: encrypts `rows` samples of `input_len` values (float64 bytes).
    fn encrypt(
        &self,
        py: Python<'_>,
        ctx: &crate::he::Context,
        samples_le: &[u8],
        rows: usize,
    ) -> PyResult<Encrypted> {
        let cols = self.inner.input_len();
        let samples = matrix(samples_le, rows, cols)?;
        let inner = py
            .detach(|| self.inner.encrypt_samples(ctx.inner(), &samples))
            .map_err(ml)?;
        Ok(Encrypted { inner })
    }

    /// Server side: runs the model on encrypted samples (public keys only).
    fn evaluate(&self, py: Python<'_>, query: &Encrypted) -> PyResult<Encrypted> {
        let inner = py
            .detach(|| self.inner.evaluate_samples(&query.inner))
            .map_err(ml)?;
        Ok(Encrypted { inner })
    }

    /// Client side: flooded decryption and the client-side tail (Softmax/ArgMax): returns
    /// `(outputs_le, rows, cols, flood_std)`.
    fn decrypt<'py>(
        &self,
        py: Python<'py>,
        answer: &Encrypted,
    ) -> PyResult<(Bound<'py, PyBytes>, usize, usize, f64)> {
        let (outputs, flood) = py
            .detach(|| self.inner.decrypt_samples(&answer.inner))
            .map_err(ml)?;
        let cols = outputs.first().map_or(0, Vec::len);
        let flat: Vec<f64> = outputs.iter().flatten().copied().collect();
        Ok((
            PyBytes::new(py, &f64s_to_le_bytes(&flat)),
            outputs.len(),
            cols,
            flood,
        ))
    }

    /// What the plan computes, in plaintext (float64 bytes of one sample in, of its outputs
    /// out): the reference encrypted results are compared with.
    fn evaluate_plain<'py>(
        &self,
        py: Python<'py>,
        sample_le: &[u8],
    ) -> PyResult<Bound<'py, PyBytes>> {
        let sample = f64s_from_le_bytes(sample_le)
            .ok_or_else(|| MlError::new_err("a sample must be float64 bytes"))?;
        let out = self.inner.evaluate_plain(&sample).map_err(ml)?;
        Ok(PyBytes::new(py, &f64s_to_le_bytes(&out)))
    }

    /// `"single"` or `"batch"`.
    #[getter]
    fn packing(&self) -> &'static str {
        self.inner.packing().name()
    }

    /// Values in one sample.
    #[getter]
    fn input_len(&self) -> usize {
        self.inner.input_len()
    }

    /// Values in one output.
    #[getter]
    fn output_len(&self) -> usize {
        self.inner.output_len()
    }

    /// Multiplicative depth.
    #[getter]
    fn depth(&self) -> usize {
        self.inner.depth()
    }

    /// Samples one evaluation handles.
    #[getter]
    fn samples_per_evaluation(&self) -> usize {
        self.inner.samples_per_evaluation()
    }

    /// Ring degree N the compiler chose.
    #[getter]
    fn poly_modulus_degree(&self) -> usize {
        self.inner.parameter_choice().degree
    }

    /// The modulus chain the compiler chose (bit sizes, special primes last).
    #[getter]
    fn coeff_mod_bit_sizes(&self) -> Vec<u32> {
        self.inner.parameter_choice().moduli_bits.clone()
    }

    /// Rotation steps the plan needs keys for.
    #[getter]
    fn rotation_steps(&self) -> Vec<i64> {
        self.inner.rotation_steps().to_vec()
    }

    fn __repr__(&self) -> String {
        format!(
            "Plan(packing={:?}, input_len={}, output_len={}, depth={}, N={}, galois_keys={})",
            self.packing(),
            self.input_len(),
            self.output_len(),
            self.depth(),
            self.poly_modulus_degree(),
            self.inner.rotation_steps().len()
        )
    }
}

/// Encrypted samples as they travel between client and server.
#[pyclass(frozen, module = "veil._native.ml", name = "Encrypted")]
pub struct Encrypted {
    inner: EncryptedSamples,
}

#[pymethods]
impl Encrypted {
    /// The samples as bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = py.detach(|| self.inner.to_bytes());
        PyBytes::new(py, &b)
    }

    /// Reads samples under `ctx` (the server's public context or the client's own);
    /// malformed bytes are refused.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, ctx: &crate::he::Context, data: &[u8]) -> PyResult<Self> {
        let inner = py
            .detach(|| EncryptedSamples::from_bytes(ctx.inner(), data))
            .map_err(ml)?;
        Ok(Self { inner })
    }

    /// Number of samples.
    #[getter]
    fn samples(&self) -> usize {
        self.inner.samples()
    }

    fn __len__(&self) -> usize {
        self.inner.samples()
    }
}
