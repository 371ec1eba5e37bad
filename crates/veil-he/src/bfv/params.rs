//! BFV parameter sets: ring degree, ciphertext modulus chain (as bit sizes, like CKKS and
//! SEAL), the plaintext modulus `t`, and the 128-bit security check.
//!
//! The ring, key switching and the security table are CKKS's: a BFV parameter set wraps a
//! [`CkksParameters`] (its "core", whose scale is unused) and adds `t`, a prime `≡ 1 (mod 2N)`
//! so that plaintexts batch `N` integers modulo `t` (SEAL's `PlainModulus::Batching`).

use sha2::{Digest, Sha256};
use veil_math::prime::{generate_ntt_primes, is_prime};
use veil_math::Modulus;

use crate::ckks::params::{CkksParameters, SecurityLevel};
use crate::error::{HeError, Result};

/// Plaintext modulus sizes accepted, in bits.
pub const PLAIN_MODULUS_BITS_RANGE: (u32, u32) = (17, 40);

/// Named, ready-made BFV parameter sets (128-bit secure, 20-bit plaintext modulus).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BfvPreset {
    /// N = 4096: ciphertext primes `[36, 36]`, special `[37]` (SEAL's default sizes): one
    /// multiplication.
    N4096,
    /// N = 8192: `[54, 54, 54]`, special `[56]` (218 bits): two multiplications in a row.
    N8192,
    /// N = 16384: `[54 × 7]`, special `[60]` (438 bits): depth 8 or so.
    N16384,
    /// N = 32768: `[55 × 15]`, special `[56]` (881 bits).
    N32768,
}

impl BfvPreset {
    /// All presets.
    pub const ALL: [BfvPreset; 4] = [
        BfvPreset::N4096,
        BfvPreset::N8192,
        BfvPreset::N16384,
        BfvPreset::N32768,
    ];

    /// The preset's name (`bfv-n8192`, …).
    pub fn name(self) -> &'static str {
        match self {
            BfvPreset::N4096 => "bfv-n4096",
            BfvPreset::N8192 => "bfv-n8192",
            BfvPreset::N16384 => "bfv-n16384",
            BfvPreset::N32768 => "bfv-n32768",
        }
    }

    /// Looks a preset up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Degree and the bit sizes of the chain (ciphertext primes, then one special prime).
    pub fn spec(self) -> (usize, Vec<u32>) {
        let chain = |count: usize, bits: u32, special: u32| {
            let mut v = vec![bits; count];
            v.push(special);
            v
        };
        match self {
            BfvPreset::N4096 => (4096, vec![36, 36, 37]),
            BfvPreset::N8192 => (8192, chain(3, 54, 56)),
            BfvPreset::N16384 => (16384, chain(7, 54, 60)),
            BfvPreset::N32768 => (32768, chain(15, 55, 56)),
        }
    }
}

/// A validated BFV parameter set. Build one with [`BfvParameters::builder`] or
/// [`BfvParameters::preset`].
#[derive(Clone, Debug, PartialEq)]
pub struct BfvParameters {
    core: CkksParameters,
    plain: Modulus,
    fingerprint: [u8; 32],
}

/// Builder for [`BfvParameters`].
#[derive(Clone, Debug)]
pub struct BfvParametersBuilder {
    degree: usize,
    bit_sizes: Vec<u32>,
    special_count: usize,
    plain: PlainChoice,
    insecure: bool,
    bgv: bool,
}

#[derive(Clone, Copy, Debug)]
enum PlainChoice {
    Bits(u32),
    Value(u64),
}

impl Default for BfvParametersBuilder {
    fn default() -> Self {
        let (degree, bit_sizes) = BfvPreset::N8192.spec();
        Self {
            degree,
            bit_sizes,
            special_count: 1,
            plain: PlainChoice::Bits(20),
            insecure: false,
            bgv: false,
        }
    }
}

impl BfvParametersBuilder {
    /// Ring degree N (a power of two, 4096 to 32768 for 128-bit security).
    pub fn degree(mut self, n: usize) -> Self {
        self.degree = n;
        self
    }

    /// Bit sizes of all primes: the ciphertext primes, then the special (key-switching)
    /// primes, as SEAL's `CoeffModulus::Create` takes them.
    pub fn moduli_bits(mut self, bits: &[u32]) -> Self {
        self.bit_sizes = bits.to_vec();
        self
    }

    /// How many of the last primes are special primes (default 1).
    pub fn special_primes(mut self, count: usize) -> Self {
        self.special_count = count;
        self
    }

    /// A plaintext modulus of this many bits: the largest prime `≡ 1 (mod 2N)` below
    /// `2^bits` (SEAL's `PlainModulus::Batching(N, bits)`). Default 20.
    pub fn plain_modulus_bits(mut self, bits: u32) -> Self {
        self.plain = PlainChoice::Bits(bits);
        self
    }

    /// This exact plaintext modulus (a prime `≡ 1 (mod 2N)`).
    pub fn plain_modulus(mut self, t: u64) -> Self {
        self.plain = PlainChoice::Value(t);
        self
    }

    /// **Insecure**: accept parameters below 128-bit security (tests and experiments only).
    pub fn insecure_allow_below_128_bit_security(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// For BGV: the core's errors become multiples of `t` (a different fingerprint, so keys
    /// and ciphertexts never mix with BFV's).
    pub(crate) fn bgv(mut self, yes: bool) -> Self {
        self.bgv = yes;
        self
    }

    /// Validates everything and builds a **BGV** parameter set (for
    /// [`BgvContext`](crate::bgv::BgvContext)): the same chain and `t`, errors multiples of `t`.
    pub fn build_bgv(self) -> Result<BfvParameters> {
        self.bgv(true).build()
    }

    /// Validates everything and generates the primes.
    pub fn build(self) -> Result<BfvParameters> {
        let bad = |m: String| Err(HeError::InvalidParameters(m));
        let mut core = CkksParameters::builder()
            .degree(self.degree)
            .moduli_bits(&self.bit_sizes)
            .special_primes(self.special_count)
            // The core's scale is not used by BFV; 1 bit keeps every prime size admissible.
            .scale_bits(1.0);
        if self.insecure {
            core = core.insecure_allow_below_128_bit_security();
        }
        let core = core.build()?;
        let n = core.degree() as u64;
        let (lo, hi) = PLAIN_MODULUS_BITS_RANGE;
        let chain: Vec<u64> = core
            .ciphertext_moduli()
            .iter()
            .chain(core.special_moduli())
            .map(Modulus::value)
            .collect();
        let t = match self.plain {
            PlainChoice::Bits(bits) => {
                if !(lo..=hi).contains(&bits) {
                    return bad(format!(
                        "a plaintext modulus of {bits} bits is outside {lo}..={hi}"
                    ));
                }
                generate_ntt_primes(bits, 1, 2 * n, &chain)?[0]
            }
            PlainChoice::Value(t) => {
                let bits = 64 - t.leading_zeros();
                if !(lo..=hi).contains(&bits) {
                    return bad(format!(
                        "plaintext modulus {t} has {bits} bits, outside {lo}..={hi}"
                    ));
                }
                if !is_prime(t) || t % (2 * n) != 1 {
                    return bad(format!(
                        "plaintext modulus {t} must be a prime ≡ 1 (mod 2N = {}) for batching",
                        2 * n
                    ));
                }
                if chain.contains(&t) {
                    return bad(format!(
                        "plaintext modulus {t} is also a prime of the modulus chain"
                    ));
                }
                t
            }
        };
        let smallest = core
            .ciphertext_moduli()
            .iter()
            .map(Modulus::value)
            .min()
            .unwrap_or(0);
        if t >= smallest {
            return bad(format!(
                "plaintext modulus {t} must be below every ciphertext prime (the smallest is {smallest})"
            ));
        }
        let q_bits: f64 = core
            .ciphertext_moduli()
            .iter()
            .map(|m| (m.value() as f64).log2())
            .sum();
        let t_bits = (t as f64).log2();
        // A fresh ciphertext's invariant noise is about t·N·σ·6/Q; below ~10 bits of budget
        // nothing at all can be computed.
        let fresh = q_bits - t_bits - (n as f64).log2() - 6.0;
        if fresh < 10.0 {
            return bad(format!(
                "the ciphertext modulus ({q_bits:.0} bits) leaves no noise budget for a {t_bits:.0}-bit \
                 plaintext modulus at N = {n}; use more or larger primes or a smaller plaintext modulus"
            ));
        }
        let plain = Modulus::new(t)?;
        let core = if self.bgv {
            // The same primes again, now with errors that are multiples of t.
            let mut b = CkksParameters::builder()
                .degree(self.degree)
                .moduli_bits(&self.bit_sizes)
                .special_primes(self.special_count)
                .scale_bits(1.0)
                .error_plain_modulus(Some(t));
            if self.insecure {
                b = b.insecure_allow_below_128_bit_security();
            }
            b.build()?
        } else {
            core
        };
        let mut h = Sha256::new();
        h.update(if self.bgv {
            b"veil-bgv-params-v1"
        } else {
            b"veil-bfv-params-v1"
        });
        h.update(core.fingerprint());
        h.update(t.to_le_bytes());
        Ok(BfvParameters {
            core,
            plain,
            fingerprint: h.finalize().into(),
        })
    }
}

impl BfvParameters {
    /// A builder with the [`BfvPreset::N8192`] chain and a 20-bit plaintext modulus.
    pub fn builder() -> BfvParametersBuilder {
        BfvParametersBuilder::default()
    }

    /// A preset with a 20-bit plaintext modulus.
    pub fn preset(preset: BfvPreset) -> Result<Self> {
        let (degree, bits) = preset.spec();
        Self::builder().degree(degree).moduli_bits(&bits).build()
    }

    /// Whether this is a BGV parameter set (errors multiples of `t`).
    pub fn is_bgv(&self) -> bool {
        self.core.plain_modulus_of_errors().is_some()
    }

    /// Rebuilds from a core parameter set and a plaintext modulus (deserialization).
    pub(crate) fn from_core(core: CkksParameters, t: u64, bgv: bool) -> Result<Self> {
        let mut b = Self::builder()
            .bgv(bgv)
            .degree(core.degree())
            .moduli_bits(core.bit_sizes())
            .special_primes(core.special_moduli().len())
            .plain_modulus(t);
        if core.security() == SecurityLevel::Insecure {
            b = b.insecure_allow_below_128_bit_security();
        }
        let p = b.build()?;
        if p.core.ciphertext_moduli() != core.ciphertext_moduli()
            || p.core.special_moduli() != core.special_moduli()
        {
            return Err(HeError::InvalidParameters(
                "the chain does not regenerate to the recorded primes".into(),
            ));
        }
        Ok(p)
    }

    /// The ring, key-switching and security part (a CKKS parameter set whose scale is unused).
    pub fn core(&self) -> &CkksParameters {
        &self.core
    }

    /// Ring degree N.
    pub fn degree(&self) -> usize {
        self.core.degree()
    }

    /// Number of slots: N integers modulo `t`, as a 2 × N/2 matrix.
    pub fn slots(&self) -> usize {
        self.core.degree()
    }

    /// The plaintext modulus `t`.
    pub fn plain_modulus(&self) -> u64 {
        self.plain.value()
    }

    pub(crate) fn plain(&self) -> Modulus {
        self.plain
    }

    /// Highest level (number of ciphertext primes − 1): how many modulus switches are possible.
    pub fn max_level(&self) -> usize {
        self.core.max_level()
    }

    /// Security level the set was validated against.
    pub fn security(&self) -> SecurityLevel {
        self.core.security()
    }

    /// `log2` of the ciphertext modulus at the top level.
    pub fn ciphertext_modulus_bits(&self) -> f64 {
        self.core
            .ciphertext_moduli()
            .iter()
            .map(|m| (m.value() as f64).log2())
            .sum()
    }

    /// Fingerprint of the parameter set (SHA-256 over the core's fingerprint and `t`).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_secure_and_batch() {
        for p in BfvPreset::ALL {
            let params = BfvParameters::preset(p).unwrap();
            assert_eq!(params.security(), SecurityLevel::Bits128, "{}", p.name());
            let t = params.plain_modulus();
            assert_eq!(t % (2 * params.degree() as u64), 1);
            assert!(is_prime(t) && (1 << 19..1 << 20).contains(&t));
            assert_eq!(BfvPreset::from_name(p.name()), Some(p));
        }
    }

    #[test]
    fn bad_parameters_are_refused() {
        // Above the 128-bit table.
        let e = BfvParameters::builder()
            .degree(4096)
            .moduli_bits(&[40, 40, 40])
            .build()
            .unwrap_err();
        assert!(matches!(e, HeError::InsecureParameters { .. }), "{e}");
        // t not ≡ 1 mod 2N, not prime, too large for the chain.
        for t in [65537u64 * 3, 1 << 20, 786_433] {
            let e = BfvParameters::builder()
                .degree(8192)
                .plain_modulus(t)
                .build();
            if t == 786_433 {
                // 786433 = 3·2^18 + 1 is prime and ≡ 1 mod 2^14: accepted.
                assert!(e.is_ok());
            } else {
                assert!(e.is_err(), "{t}");
            }
        }
        let e = BfvParameters::builder()
            .degree(4096)
            .moduli_bits(&[30, 30])
            .plain_modulus_bits(29)
            .build()
            .unwrap_err();
        assert!(
            e.to_string().contains("noise budget") || e.to_string().contains("below"),
            "{e}"
        );
    }
}
