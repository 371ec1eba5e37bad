//! `veil._native.he`: CKKS contexts and encrypted vectors (the `veil.he` module wraps them
//! in a TenSEAL-like API with numpy arrays).

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veil_he::ckks::{
    CkksContext, CkksParameters, CkksVector, NoiseFlooding, Preset, VectorContext,
};

use crate::errors::{he, HeError};
use crate::{f64s_from_le_bytes, f64s_to_le_bytes};

/// Adds the classes to the `he` submodule.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Context>()?;
    m.add_class::<Vector>()?;
    m.add(
        "PRESETS",
        Preset::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
    )?;
    Ok(())
}

fn values(bytes: &[u8]) -> PyResult<Vec<f64>> {
    f64s_from_le_bytes(bytes).ok_or_else(|| {
        HeError::new_err(format!(
            "values must be little-endian float64 bytes (a multiple of 8), got {} bytes",
            bytes.len()
        ))
    })
}

/// Keys and parameters: a CKKS context. Holds the secret key unless made public.
#[pyclass(frozen, module = "veil._native.he", name = "Context")]
pub struct Context {
    inner: Arc<VectorContext>,
}

impl Context {
    /// Wraps a context made in Rust (e.g. by an ML plan's key generation).
    pub(crate) fn from_inner(inner: Arc<VectorContext>) -> Self {
        Self { inner }
    }

    /// The Rust context.
    pub(crate) fn inner(&self) -> &Arc<VectorContext> {
        &self.inner
    }
}

#[pymethods]
impl Context {
    /// Generates a fresh secret key and the public, relinearization and Galois keys (the
    /// power-of-two rotations plus `rotation_steps`) for the given parameters. Parameters
    /// below 128-bit security are refused unless `insecure_allow_below_128_bit_security`.
    #[new]
    #[pyo3(signature = (
        poly_modulus_degree = 8192,
        coeff_mod_bit_sizes = None,
        scale_bits = 40.0,
        special_primes = 1,
        rotation_steps = None,
        flooding_bits = 30,
        insecure_allow_below_128_bit_security = false,
    ))]
    #[allow(
        clippy::too_many_arguments,
        reason = "the Python signature's keyword arguments"
    )]
    fn new(
        py: Python<'_>,
        poly_modulus_degree: usize,
        coeff_mod_bit_sizes: Option<Vec<u32>>,
        scale_bits: f64,
        special_primes: usize,
        rotation_steps: Option<Vec<i64>>,
        flooding_bits: u32,
        insecure_allow_below_128_bit_security: bool,
    ) -> PyResult<Self> {
        let bits = coeff_mod_bit_sizes.unwrap_or_else(|| vec![60, 40, 40, 60]);
        let steps = rotation_steps.unwrap_or_default();
        let inner = py
            .detach(move || {
                let mut b = CkksParameters::builder()
                    .degree(poly_modulus_degree)
                    .moduli_bits(&bits)
                    .special_primes(special_primes)
                    .scale_bits(scale_bits);
                if insecure_allow_below_128_bit_security {
                    b = b.insecure_allow_below_128_bit_security();
                }
                build(b.build()?, &steps, flooding_bits)
            })
            .map_err(he)?;
        Ok(Self { inner })
    }

    /// A context from a named preset (`veil.he.PRESETS`), keys generated.
    #[staticmethod]
    #[pyo3(signature = (name, rotation_steps = None, flooding_bits = 30))]
    fn preset(
        py: Python<'_>,
        name: &str,
        rotation_steps: Option<Vec<i64>>,
        flooding_bits: u32,
    ) -> PyResult<Self> {
        let preset = Preset::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = Preset::ALL.iter().map(|p| p.name()).collect();
            HeError::new_err(format!(
                "unknown preset {name:?}; the presets are {}",
                names.join(", ")
            ))
        })?;
        let steps = rotation_steps.unwrap_or_default();
        let inner = py
            .detach(move || build(CkksParameters::preset(preset)?, &steps, flooding_bits))
            .map_err(he)?;
        Ok(Self { inner })
    }

    /// Whether this context holds the secret key (can decrypt).
    fn is_private(&self) -> bool {
        self.inner.has_secret_key()
    }

    /// The same keys without the secret key: what the computing party gets.
    fn make_public(&self) -> Self {
        Self {
            inner: self.inner.make_public(),
        }
    }

    /// The parameters and the public, relinearization and Galois keys (never the secret key).
    fn public_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| self.inner.public_to_bytes());
        PyBytes::new(py, &bytes)
    }

    /// The serialized secret key, or `None` for a public context. Python's `bytes` cannot be
    /// wiped: keep it only as long as needed.
    fn secret_key_bytes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let sk = self.inner.secret_key_bytes().map_err(he)?;
        Ok(sk.map(|b| PyBytes::new(py, &b)))
    }

    /// Rebuilds a context from [`Context::public_bytes`] (and the secret key for the key
    /// holder). Parameters below 128-bit security are refused unless
    /// `insecure_allow_below_128_bit_security`.
    #[staticmethod]
    #[pyo3(signature = (public, secret_key = None, insecure_allow_below_128_bit_security = false))]
    fn from_bytes(
        py: Python<'_>,
        public: &[u8],
        secret_key: Option<&[u8]>,
        insecure_allow_below_128_bit_security: bool,
    ) -> PyResult<Self> {
        let inner = py
            .detach(|| {
                if insecure_allow_below_128_bit_security {
                    VectorContext::from_public_bytes_insecure_allow_below_128_bit_security(
                        public, secret_key,
                    )
                } else {
                    VectorContext::from_public_bytes(public, secret_key)
                }
            })
            .map_err(he)?;
        Ok(Self { inner })
    }

    /// Ring degree N.
    #[getter]
    fn poly_modulus_degree(&self) -> usize {
        self.inner.ckks().degree()
    }

    /// Values one vector holds at most (N / 2).
    #[getter]
    fn slots(&self) -> usize {
        self.inner.ckks().params().slots()
    }

    /// The modulus chain as bit sizes (special primes last).
    #[getter]
    fn coeff_mod_bit_sizes(&self) -> Vec<u32> {
        self.inner.ckks().params().bit_sizes().to_vec()
    }

    /// log2 of the scale fresh vectors are encoded at.
    #[getter]
    fn scale_bits(&self) -> f64 {
        self.inner.ckks().params().scale_bits()
    }

    /// Multiplications a fresh vector can take.
    #[getter]
    fn max_level(&self) -> usize {
        self.inner.ckks().max_level()
    }

    /// Number of Galois (rotation) keys.
    #[getter]
    fn galois_key_count(&self) -> usize {
        self.inner.galois_keys().len()
    }

    /// `"128-bit"` or `"insecure"` (below 128 bits, opted into by name).
    #[getter]
    fn security(&self) -> &'static str {
        match self.inner.ckks().params().security() {
            veil_he::ckks::SecurityLevel::Bits128 => "128-bit",
            veil_he::ckks::SecurityLevel::Insecure => "insecure",
        }
    }

    /// Statistical security (bits) of the noise flooding `decrypt` adds.
    #[getter]
    fn flooding_bits(&self) -> u32 {
        self.inner.decryption_flooding().statistical_security()
    }

    fn __repr__(&self) -> String {
        format!(
            "Context(poly_modulus_degree={}, coeff_mod_bit_sizes={:?}, scale_bits={}, private={}, galois_keys={}, security={:?})",
            self.poly_modulus_degree(),
            self.coeff_mod_bit_sizes(),
            self.scale_bits(),
            self.is_private(),
            self.galois_key_count(),
            self.security()
        )
    }
}

fn build(
    params: CkksParameters,
    steps: &[i64],
    flooding_bits: u32,
) -> veil_he::Result<Arc<VectorContext>> {
    VectorContext::builder(CkksContext::new(params)?)
        .rotation_steps(steps)
        .decryption_flooding(NoiseFlooding::new(flooding_bits)?)
        .build()
}

/// An encrypted vector of reals (CKKS).
#[pyclass(frozen, module = "veil._native.he", name = "Vector")]
pub struct Vector {
    inner: CkksVector,
}

impl Vector {
    fn wrap(r: veil_he::Result<CkksVector>) -> PyResult<Self> {
        r.map(|inner| Self { inner }).map_err(he)
    }
}

#[pymethods]
impl Vector {
    /// Encrypts little-endian float64 values under the context's public key.
    #[staticmethod]
    fn encrypt(py: Python<'_>, ctx: &Context, values_le: &[u8]) -> PyResult<Self> {
        let v = values(values_le)?;
        Self::wrap(py.detach(|| CkksVector::encrypt(&ctx.inner, &v)))
    }

    /// Decrypts (with noise flooding, safe to share): little-endian float64 bytes.
    fn decrypt<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let v = py.detach(|| self.inner.decrypt()).map_err(he)?;
        Ok(PyBytes::new(py, &f64s_to_le_bytes(&v)))
    }

    /// Decrypts with flooding and returns `(values_le, flood_std)`: the standard deviation of
    /// the noise that was added.
    fn decrypt_flooded<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyBytes>, f64)> {
        let f = py.detach(|| self.inner.decrypt_flooded()).map_err(he)?;
        Ok((PyBytes::new(py, &f64s_to_le_bytes(&f.values)), f.flood_std))
    }

    /// Decrypts **without** flooding: only for results the key holder keeps to itself.
    fn decrypt_unflooded_for_key_holder_only<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let v = py
            .detach(|| self.inner.decrypt_unflooded_for_key_holder_only())
            .map_err(he)?;
        Ok(PyBytes::new(py, &f64s_to_le_bytes(&v)))
    }

    /// `self + other`. Additions take tens of microseconds: they keep the GIL (releasing and
    /// taking it back would be a tenth of the operation); every longer operation releases it.
    fn add(&self, other: &Vector) -> PyResult<Self> {
        Self::wrap(self.inner.add(&other.inner))
    }

    /// `self - other` (keeps the GIL, as `add`).
    fn sub(&self, other: &Vector) -> PyResult<Self> {
        Self::wrap(self.inner.sub(&other.inner))
    }

    /// `self * other` (element-wise; relinearized and rescaled).
    fn mul(&self, py: Python<'_>, other: &Vector) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.mul(&other.inner)))
    }

    /// `self + plain` (little-endian float64 bytes).
    fn add_plain(&self, py: Python<'_>, plain_le: &[u8]) -> PyResult<Self> {
        let p = values(plain_le)?;
        Self::wrap(py.detach(|| self.inner.add_plain(&p)))
    }

    /// `self - plain`.
    fn sub_plain(&self, py: Python<'_>, plain_le: &[u8]) -> PyResult<Self> {
        let p = values(plain_le)?;
        Self::wrap(py.detach(|| self.inner.sub_plain(&p)))
    }

    /// `self * plain` (element-wise).
    fn mul_plain(&self, py: Python<'_>, plain_le: &[u8]) -> PyResult<Self> {
        let p = values(plain_le)?;
        Self::wrap(py.detach(|| self.inner.mul_plain(&p)))
    }

    /// `self + x` on every element (keeps the GIL, as `add`, when the constant goes into
    /// every slot; a short vector's padding-preserving encoding releases it).
    fn add_scalar(&self, py: Python<'_>, x: f64) -> PyResult<Self> {
        if self.inner.len() == self.inner.context().ckks().params().slots() {
            return Self::wrap(self.inner.add_scalar(x));
        }
        Self::wrap(py.detach(|| self.inner.add_scalar(x)))
    }

    /// `self - x` on every element (see `add_scalar`).
    fn sub_scalar(&self, py: Python<'_>, x: f64) -> PyResult<Self> {
        self.add_scalar(py, -x)
    }

    /// `self * x` on every element.
    fn mul_scalar(&self, py: Python<'_>, x: f64) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.mul_scalar(x)))
    }

    /// `-self`.
    fn neg(&self, py: Python<'_>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.neg()))
    }

    /// `self * self`.
    fn square(&self, py: Python<'_>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.square()))
    }

    /// The sum of the elements (a vector of length 1).
    fn sum(&self, py: Python<'_>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.sum()))
    }

    /// Inner product with another encrypted vector (length 1).
    fn dot(&self, py: Python<'_>, other: &Vector) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.dot(&other.inner)))
    }

    /// Inner product with a plain vector (length 1).
    fn dot_plain(&self, py: Python<'_>, plain_le: &[u8]) -> PyResult<Self> {
        let p = values(plain_le)?;
        Self::wrap(py.detach(|| self.inner.dot_plain(&p)))
    }

    /// Rotates the elements left by `step` (negative: right), cyclically over the length.
    fn rotate(&self, py: Python<'_>, step: i64) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.rotate(step)))
    }

    /// Evaluates the polynomial `coeffs[0] + coeffs[1]·x + …` on every element.
    fn polyval(&self, py: Python<'_>, coeffs: Vec<f64>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.polyval(&coeffs)))
    }

    /// Vector–matrix product `self · M`, `M` given as `rows × cols` little-endian float64
    /// bytes in row-major order (`rows` must be the vector's length).
    fn matmul(&self, py: Python<'_>, matrix_le: &[u8], rows: usize, cols: usize) -> PyResult<Self> {
        let m = values(matrix_le)?;
        if rows.checked_mul(cols) != Some(m.len()) || cols == 0 {
            return Err(HeError::new_err(format!(
                "a {rows} × {cols} matrix needs {} values, got {}",
                rows.saturating_mul(cols),
                m.len()
            )));
        }
        let matrix: Vec<Vec<f64>> = m.chunks_exact(cols).map(<[f64]>::to_vec).collect();
        Self::wrap(py.detach(|| self.inner.matmul(&matrix)))
    }

    /// The ciphertext as bytes (read back with `Vector.from_bytes` under the same context).
    fn serialize<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = py.detach(|| self.inner.to_bytes());
        PyBytes::new(py, &b)
    }

    /// Reads a vector serialized under the same parameters; anything malformed is refused.
    #[staticmethod]
    fn from_bytes(py: Python<'_>, ctx: &Context, data: &[u8]) -> PyResult<Self> {
        Self::wrap(py.detach(|| CkksVector::from_bytes(&ctx.inner, data)))
    }

    /// The context this vector was made under.
    #[getter]
    fn context(&self) -> Context {
        Context {
            inner: self.inner.context().clone(),
        }
    }

    /// Multiplications this vector can still take.
    #[getter]
    fn level(&self) -> usize {
        self.inner.level()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __repr__(&self) -> String {
        format!(
            "Vector(len={}, level={})",
            self.inner.len(),
            self.inner.level()
        )
    }
}
