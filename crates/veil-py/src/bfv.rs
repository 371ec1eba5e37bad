//! `veil._native.he.BfvContext` / `BfvVector`: exact integer HE (BFV). The `veil.he` module
//! wraps them in TenSEAL's `BFVVector` API.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use veil_he::bfv::{
    BfvContext as RustContext, BfvParameters, BfvPreset, BfvVector as RustVector, BfvVectorContext,
};

use crate::errors::{he, HeError};

/// Adds the classes to the `he` submodule.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<BfvContext>()?;
    m.add_class::<BfvVector>()?;
    m.add(
        "BFV_PRESETS",
        BfvPreset::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(),
    )?;
    Ok(())
}

/// Keys and parameters of BFV: holds the secret key unless made public.
#[pyclass(frozen, module = "veil._native.he", name = "BfvContext")]
pub struct BfvContext {
    inner: Arc<BfvVectorContext>,
}

#[pymethods]
impl BfvContext {
    /// Generates the keys. `coeff_mod_bit_sizes` defaults to the preset chain of the degree;
    /// `plain_modulus` (a prime ≡ 1 mod 2N) or `plain_modulus_bits` (default 20) choose t.
    #[new]
    #[pyo3(signature = (
        poly_modulus_degree = 8192,
        plain_modulus = None,
        plain_modulus_bits = 20,
        coeff_mod_bit_sizes = None,
        insecure_allow_below_128_bit_security = false,
    ))]
    fn new(
        py: Python<'_>,
        poly_modulus_degree: usize,
        plain_modulus: Option<u64>,
        plain_modulus_bits: u32,
        coeff_mod_bit_sizes: Option<Vec<u32>>,
        insecure_allow_below_128_bit_security: bool,
    ) -> PyResult<Self> {
        let bits = match coeff_mod_bit_sizes {
            Some(b) => b,
            None => BfvPreset::ALL
                .into_iter()
                .map(BfvPreset::spec)
                .find(|(n, _)| *n == poly_modulus_degree)
                .map(|(_, b)| b)
                .ok_or_else(|| {
                    HeError::new_err(format!(
                        "no default modulus chain for poly_modulus_degree {poly_modulus_degree}; \
                         give coeff_mod_bit_sizes (or use 4096, 8192, 16384 or 32768)"
                    ))
                })?,
        };
        let inner = py
            .detach(move || {
                let mut b = BfvParameters::builder()
                    .degree(poly_modulus_degree)
                    .moduli_bits(&bits);
                b = match plain_modulus {
                    Some(t) => b.plain_modulus(t),
                    None => b.plain_modulus_bits(plain_modulus_bits),
                };
                if insecure_allow_below_128_bit_security {
                    b = b.insecure_allow_below_128_bit_security();
                }
                BfvVectorContext::new(&RustContext::new(b.build()?)?)
            })
            .map_err(he)?;
        Ok(Self { inner })
    }

    fn is_private(&self) -> bool {
        self.inner.has_secret_key()
    }

    fn make_public(&self) -> Self {
        Self {
            inner: self.inner.public(),
        }
    }

    fn public_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let bytes = py.detach(|| self.inner.public_to_bytes());
        PyBytes::new(py, &bytes)
    }

    fn secret_key_bytes<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let sk = self.inner.secret_key_bytes().map_err(he)?;
        Ok(sk.map(|b| PyBytes::new(py, &b)))
    }

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
                    BfvVectorContext::from_public_bytes_insecure_allow_below_128_bit_security(
                        public, secret_key,
                    )
                } else {
                    BfvVectorContext::from_public_bytes(public, secret_key)
                }
            })
            .map_err(he)?;
        Ok(Self { inner })
    }

    #[getter]
    fn poly_modulus_degree(&self) -> usize {
        self.inner.context().degree()
    }

    #[getter]
    fn plain_modulus(&self) -> u64 {
        self.inner.context().plain_modulus()
    }

    #[getter]
    fn coeff_mod_bit_sizes(&self) -> Vec<u32> {
        self.inner.context().params().core().bit_sizes().to_vec()
    }

    #[getter]
    fn slots(&self) -> usize {
        self.inner.context().slots()
    }

    #[getter]
    fn max_level(&self) -> usize {
        self.inner.context().max_level()
    }

    #[getter]
    fn security(&self) -> &'static str {
        match self.inner.context().params().security() {
            veil_he::ckks::SecurityLevel::Bits128 => "128-bit",
            veil_he::ckks::SecurityLevel::Insecure => "insecure",
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "BfvContext(poly_modulus_degree={}, plain_modulus={}, coeff_mod_bit_sizes={:?}, private={}, security={:?})",
            self.poly_modulus_degree(),
            self.plain_modulus(),
            self.coeff_mod_bit_sizes(),
            self.is_private(),
            self.security()
        )
    }
}

/// An encrypted vector of integers modulo t.
#[pyclass(frozen, module = "veil._native.he", name = "BfvVector")]
pub struct BfvVector {
    inner: RustVector,
}

impl BfvVector {
    fn wrap(r: veil_he::Result<RustVector>) -> PyResult<Self> {
        r.map(|inner| Self { inner }).map_err(he)
    }
}

#[pymethods]
impl BfvVector {
    #[staticmethod]
    fn encrypt(py: Python<'_>, ctx: &BfvContext, values: Vec<i64>) -> PyResult<Self> {
        Self::wrap(py.detach(|| RustVector::encrypt(&ctx.inner, &values)))
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, ctx: &BfvContext, data: &[u8]) -> PyResult<Self> {
        Self::wrap(py.detach(|| RustVector::from_bytes(&ctx.inner, data)))
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let b = py.detach(|| self.inner.to_bytes());
        PyBytes::new(py, &b)
    }

    fn decrypt(&self, py: Python<'_>) -> PyResult<Vec<i64>> {
        py.detach(|| self.inner.decrypt()).map_err(he)
    }

    fn noise_budget(&self, py: Python<'_>) -> PyResult<u32> {
        py.detach(|| self.inner.noise_budget()).map_err(he)
    }

    fn estimated_noise_budget(&self) -> Option<f64> {
        self.inner.estimated_noise_budget()
    }

    fn add(&self, py: Python<'_>, other: &BfvVector) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.add(&other.inner)))
    }

    fn sub(&self, py: Python<'_>, other: &BfvVector) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.sub(&other.inner)))
    }

    fn mul(&self, py: Python<'_>, other: &BfvVector) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.mul(&other.inner)))
    }

    fn square(&self, py: Python<'_>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.mul(&self.inner)))
    }

    fn add_plain(&self, py: Python<'_>, values: Vec<i64>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.add_plain(&values)))
    }

    fn sub_plain(&self, py: Python<'_>, values: Vec<i64>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.sub_plain(&values)))
    }

    fn mul_plain(&self, py: Python<'_>, values: Vec<i64>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.mul_plain(&values)))
    }

    fn add_scalar(&self, py: Python<'_>, c: i64) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.add_scalar(c)))
    }

    fn mul_scalar(&self, py: Python<'_>, c: i64) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.mul_scalar(c)))
    }

    fn neg(&self, py: Python<'_>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.neg()))
    }

    fn sum(&self, py: Python<'_>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.sum()))
    }

    fn dot(&self, py: Python<'_>, other: &BfvVector) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.dot(&other.inner)))
    }

    fn rotate(&self, py: Python<'_>, steps: i64) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.rotate(steps)))
    }

    fn mod_switch_to_next(&self, py: Python<'_>) -> PyResult<Self> {
        Self::wrap(py.detach(|| self.inner.mod_switch_to_next()))
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    #[getter]
    fn level(&self) -> usize {
        self.inner.ciphertext().level()
    }
}
