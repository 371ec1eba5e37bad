//! CKKS parameter sets: ring degree, modulus chain (as bit sizes, the way SEAL and TenSEAL
//! take them), default scale, key-switching decomposition, and the 128-bit security check.

use sha2::{Digest, Sha256};
use veil_math::prime::{is_prime, primes_for_bit_sizes};
use veil_math::Modulus;

use crate::error::{HeError, Result};

/// Largest `log2(QP)` for 128-bit classical security with a uniform ternary secret, from the
/// HomomorphicEncryption.org standard (and OpenFHE's extension to 2^16).
pub const SECURITY_TABLE_128: [(usize, u32); 5] = [
    (4096, 109),
    (8192, 218),
    (16384, 438),
    (32768, 881),
    (65536, 1772),
];

/// Most primes a modulus chain may have (ciphertext and special primes together), as in SEAL.
pub const MAX_PRIMES: usize = 64;

/// Smallest and largest prime bit sizes accepted in a modulus chain.
pub const PRIME_BITS_RANGE: (u32, u32) = (20, 60);

/// Smallest scale an object may carry. A rescaled ciphertext can land just below 1 (Δ²/q with
/// q slightly above Δ), so the bound is 1/2 rather than 1; anything smaller only inflates
/// decoded values and is refused.
pub const MIN_SCALE: f64 = 0.5;

/// The security level a parameter set was validated against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityLevel {
    /// At least 128-bit security per the HomomorphicEncryption.org table.
    Bits128,
    /// Below 128 bits: the caller opted in with
    /// [`CkksParametersBuilder::insecure_allow_below_128_bit_security`]. For tests only.
    Insecure,
}

/// Named, ready-made parameter sets (128-bit secure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preset {
    /// N = 4096, `[40, 20, 40]`, scale 2^20: one multiplication, low precision, very fast.
    N4096Depth1,
    /// N = 8192, `[60, 40, 40, 60]`, scale 2^40: depth 2 (TenSEAL's tutorial default).
    N8192Depth2,
    /// N = 16384, `[60, 40 × 7, 60]`, scale 2^40: depth 7.
    N16384Depth7,
    /// N = 32768, `[60, 40 × 19, 60]`, scale 2^40: depth 19.
    N32768Depth19,
}

impl Preset {
    /// All presets.
    pub const ALL: [Preset; 4] = [
        Preset::N4096Depth1,
        Preset::N8192Depth2,
        Preset::N16384Depth7,
        Preset::N32768Depth19,
    ];

    /// The preset's name as accepted by [`Preset::from_name`].
    pub fn name(self) -> &'static str {
        match self {
            Preset::N4096Depth1 => "n4096-depth1",
            Preset::N8192Depth2 => "n8192-depth2",
            Preset::N16384Depth7 => "n16384-depth7",
            Preset::N32768Depth19 => "n32768-depth19",
        }
    }

    /// Looks a preset up by name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Degree, bit sizes and scale bits of the preset.
    pub fn spec(self) -> (usize, Vec<u32>, u32) {
        let chain = |n: usize| {
            let mut v = vec![60];
            v.extend(std::iter::repeat_n(40, n));
            v.push(60);
            v
        };
        match self {
            Preset::N4096Depth1 => (4096, vec![40, 20, 40], 20),
            Preset::N8192Depth2 => (8192, chain(2), 40),
            Preset::N16384Depth7 => (16384, chain(7), 40),
            Preset::N32768Depth19 => (32768, chain(19), 40),
        }
    }
}

/// A validated CKKS parameter set. Build one with [`CkksParameters::builder`] or
/// [`CkksParameters::preset`].
#[derive(Clone, Debug, PartialEq)]
pub struct CkksParameters {
    degree: usize,
    bit_sizes: Vec<u32>,
    special_count: usize,
    dnum: usize,
    scale_bits: f64,
    ciphertext_moduli: Vec<Modulus>,
    special_moduli: Vec<Modulus>,
    security: SecurityLevel,
    fingerprint: [u8; 32],
    /// `Δ_ℓ` for every level: the scale a ciphertext at level ℓ has in the automatic
    /// schedule ([`CkksParameters::level_scale`]).
    level_scales: Vec<f64>,
    /// BGV cores only: the plaintext modulus `t` that every error term is a multiple of
    /// (keys, encryption, key switching keep `c_0 + c_1·s ≡ m (mod t)`).
    error_plain_modulus: Option<u64>,
}

/// Builder for [`CkksParameters`]: set what you need, then [`build`](Self::build) validates
/// everything once.
#[derive(Clone, Debug)]
pub struct CkksParametersBuilder {
    degree: usize,
    bit_sizes: Vec<u32>,
    special_count: usize,
    dnum: Option<usize>,
    scale_bits: f64,
    insecure: bool,
    error_plain_modulus: Option<u64>,
}

impl Default for CkksParametersBuilder {
    fn default() -> Self {
        Self {
            degree: 8192,
            bit_sizes: vec![60, 40, 40, 60],
            special_count: 1,
            dnum: None,
            scale_bits: 40.0,
            insecure: false,
            error_plain_modulus: None,
        }
    }
}

impl CkksParametersBuilder {
    /// Ring degree N (power of two, 2^12 … 2^16; smaller only with the insecure opt-in).
    pub fn degree(mut self, n: usize) -> Self {
        self.degree = n;
        self
    }

    /// The modulus chain as prime bit sizes, e.g. `[60, 40, 40, 60]`. The last
    /// [`special_primes`](Self::special_primes) entries are special primes used only in key
    /// switching; the others form the ciphertext modulus `q_0 … q_L`.
    pub fn moduli_bits(mut self, bits: &[u32]) -> Self {
        self.bit_sizes = bits.to_vec();
        self
    }

    /// How many of the last primes are special (default 1, as in SEAL).
    pub fn special_primes(mut self, count: usize) -> Self {
        self.special_count = count;
        self
    }

    /// Key-switching decomposition number (digits). Defaults to
    /// `ceil((L+1) / special_primes)`, i.e. each digit holds as many primes as there are
    /// special primes. Fewer digits make key switching faster but need the special modulus
    /// `P` to be at least as large as each digit's product.
    pub fn dnum(mut self, dnum: usize) -> Self {
        self.dnum = Some(dnum);
        self
    }

    /// Default scale as a power of two (e.g. 40 for 2^40).
    pub fn scale_bits(mut self, bits: f64) -> Self {
        self.scale_bits = bits;
        self
    }

    /// Accept parameters below 128-bit security. **Insecure**: for tests and experiments only;
    /// every key and ciphertext made with them is marked [`SecurityLevel::Insecure`].
    pub(crate) fn error_plain_modulus(mut self, t: Option<u64>) -> Self {
        self.error_plain_modulus = t;
        self
    }

    /// **Insecure**: accept parameters below 128-bit security (tests and experiments only).
    pub fn insecure_allow_below_128_bit_security(mut self) -> Self {
        self.insecure = true;
        self
    }

    /// Validates and generates the primes: SEAL's choice (the largest NTT-friendly primes
    /// below `2^b`), except that the ciphertext primes whose bit size equals the scale are
    /// picked so that the scale stays on target at every level (see
    /// [`CkksParameters::level_scale`]).
    pub fn build(self) -> Result<CkksParameters> {
        let bad = |m: String| Err(HeError::InvalidParameters(m));
        let n = self.degree;
        if !n.is_power_of_two() || !(16..=65536).contains(&n) {
            return bad(format!(
                "degree {n} must be a power of two between 2^12 and 2^16"
            ));
        }
        if n < 4096 && !self.insecure {
            return bad(format!(
                "degree {n} is below 4096, which cannot reach 128-bit security; opt in with insecure_allow_below_128_bit_security()"
            ));
        }
        if self.bit_sizes.len() > MAX_PRIMES {
            return bad(format!(
                "the modulus chain has {} primes; at most {MAX_PRIMES} are supported (as in SEAL)",
                self.bit_sizes.len()
            ));
        }
        if self.special_count == 0 {
            return bad("at least one special prime is needed for key switching".into());
        }
        if self.bit_sizes.len() < self.special_count + 1 {
            return bad(format!(
                "the modulus chain {:?} needs at least one ciphertext prime plus {} special prime(s)",
                self.bit_sizes, self.special_count
            ));
        }
        let (lo, hi) = PRIME_BITS_RANGE;
        if let Some(&b) = self.bit_sizes.iter().find(|&&b| !(lo..=hi).contains(&b)) {
            return bad(format!("prime bit size {b} is outside {lo}..={hi}"));
        }
        if !(self.scale_bits.is_finite() && self.scale_bits >= 1.0 && self.scale_bits <= 60.0) {
            return bad(format!(
                "scale 2^{} must be between 2^1 and 2^60",
                self.scale_bits
            ));
        }
        let q_count = self.bit_sizes.len() - self.special_count;
        if f64::from(self.bit_sizes[0]) <= self.scale_bits {
            return bad(format!(
                "the first prime ({} bits) must be larger than the scale (2^{}) to decrypt at the last level",
                self.bit_sizes[0], self.scale_bits
            ));
        }
        let dnum = self.dnum.unwrap_or(q_count.div_ceil(self.special_count));
        if dnum == 0 || dnum > q_count {
            return bad(format!(
                "dnum {dnum} must be between 1 and the number of ciphertext primes ({q_count})"
            ));
        }
        let alpha = q_count.div_ceil(dnum);
        let special_bits: u32 = self.bit_sizes[q_count..].iter().sum();
        let max_digit_bits: u32 = self.bit_sizes[..q_count]
            .chunks(alpha)
            .map(|c| c.iter().sum::<u32>())
            .max()
            .unwrap_or(0);
        if special_bits < max_digit_bits {
            return bad(format!(
                "special primes ({special_bits} bits) must be at least as large as each key-switching digit \
                 ({max_digit_bits} bits with dnum = {dnum}); add special primes or raise dnum"
            ));
        }
        let total_bits: u32 = self.bit_sizes.iter().sum();
        let security = match SECURITY_TABLE_128.iter().find(|(d, _)| *d == n) {
            Some(&(_, max)) if total_bits <= max => SecurityLevel::Bits128,
            _ if self.insecure => SecurityLevel::Insecure,
            Some(&(_, max_bits)) => {
                return Err(HeError::InsecureParameters {
                    degree: n,
                    total_bits,
                    max_bits,
                })
            }
            None => return bad(format!("no security bound known for degree {n}")),
        };
        let mut moduli = primes_for_bit_sizes(n, &self.bit_sizes)?;
        let level_scales =
            retarget_scale_primes(n, &self.bit_sizes, q_count, self.scale_bits, &mut moduli)?;
        let (q, p) = moduli.split_at(q_count);
        let fingerprint = fingerprint_of(
            n,
            dnum,
            self.special_count,
            &moduli,
            security,
            self.error_plain_modulus,
        );
        Ok(CkksParameters {
            degree: n,
            bit_sizes: self.bit_sizes,
            special_count: self.special_count,
            dnum,
            scale_bits: self.scale_bits,
            ciphertext_moduli: q.to_vec(),
            special_moduli: p.to_vec(),
            security,
            fingerprint,
            level_scales,
            error_plain_modulus: self.error_plain_modulus,
        })
    }
}

/// SHA-256 over everything that defines a parameter set (and, for BGV cores, `t`).
fn fingerprint_of(
    n: usize,
    dnum: usize,
    special_count: usize,
    moduli: &[Modulus],
    security: SecurityLevel,
    error_plain_modulus: Option<u64>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"veil-ckks-params-v1");
    h.update((n as u64).to_le_bytes());
    h.update((dnum as u64).to_le_bytes());
    h.update((special_count as u64).to_le_bytes());
    for m in moduli {
        h.update(m.value().to_le_bytes());
    }
    h.update([u8::from(security == SecurityLevel::Insecure)]);
    if let Some(t) = error_plain_modulus {
        h.update(b"bgv-errors-times-t");
        h.update(t.to_le_bytes());
    }
    h.finalize().into()
}

/// Picks the ciphertext primes `q_L … q_1` whose bit size equals the scale so that the scale
/// schedule `Δ_{ℓ−1} = Δ_ℓ² / q_ℓ` stays on target at every level, and returns the schedule.
///
/// With SEAL's choice (the largest primes below `2^b`, in order), every `q_ℓ` is a little below
/// the scale and the deviation doubles at each level: 19 products took the N = 32768 preset
/// from 2^40 to 2^52.26. Here, from the top down, `q_ℓ` is the largest free NTT prime not above
/// `Δ_ℓ² / T`, which puts `Δ_{ℓ−1}` just above the target `T`, within one prime gap; the
/// deviation no longer compounds. `T = 2^{S−κ}` sits a hair below `2^S` so that the primes
/// stay `S`-bit primes (honest bit sizes: security and packing are unchanged); `κ` is chosen
/// among a few candidates to minimise the largest deviation over the chain (about 10^-5 bits
/// for the 40-bit presets).
fn retarget_scale_primes(
    n: usize,
    bits: &[u32],
    q_count: usize,
    scale_bits: f64,
    moduli: &mut [Modulus],
) -> Result<Vec<f64>> {
    let schedule = |moduli: &[Modulus], top: f64| {
        let mut scales = vec![0f64; q_count];
        let mut s = top;
        for l in (0..q_count).rev() {
            scales[l] = s;
            s = s * s / moduli[l].value() as f64;
        }
        scales
    };
    let adaptive: Vec<usize> = (1..q_count)
        .filter(|&l| f64::from(bits[l]) == scale_bits)
        .collect();
    if adaptive.is_empty() {
        return Ok(schedule(moduli, scale_bits.exp2()));
    }
    let s_bits = bits[adaptive[0]];
    let two_n = 2 * n as u64;
    let ceiling = (1u64 << s_bits) - 1;
    let floor = 1u64 << (s_bits - 1);
    let fixed: Vec<u64> = (0..moduli.len())
        .filter(|i| !adaptive.contains(i))
        .map(|i| moduli[i].value())
        .collect();
    // The largest prime p ≡ 1 (mod 2N), floor < p ≤ bound, not in `used`.
    let largest_below = |bound: u64, used: &[u64]| -> Option<u64> {
        let mut c = bound.checked_sub(1)? / two_n * two_n + 1;
        while c > floor {
            if !used.contains(&c) && is_prime(c) {
                return Some(c);
            }
            c -= two_n;
        }
        None
    };
    let target = scale_bits.exp2();
    let mut best: Option<(f64, Vec<u64>, f64)> = None;
    let kappas = std::iter::once(0.0).chain((0..=28).map(|k| f64::from(k - 30).exp2()));
    'trial: for kappa in kappas {
        let top = (scale_bits - kappa).exp2();
        let mut used = fixed.clone();
        let mut chosen = Vec::with_capacity(adaptive.len());
        let mut delta = top;
        let mut worst = kappa;
        for l in (1..q_count).rev() {
            let q = if adaptive.contains(&l) {
                let bound = (delta * delta / top).min(ceiling as f64) as u64;
                let Some(q) = largest_below(bound.min(ceiling), &used) else {
                    continue 'trial;
                };
                used.push(q);
                chosen.push(q);
                q
            } else {
                moduli[l].value()
            };
            delta = delta * delta / q as f64;
            worst = worst.max((delta / target).log2().abs());
        }
        if best.as_ref().is_none_or(|(w, _, _)| worst < *w) {
            best = Some((worst, chosen, top));
        }
    }
    let Some((_, chosen, top)) = best else {
        // Not enough primes near the scale: keep SEAL's choice.
        return Ok(schedule(moduli, target));
    };
    for (&l, &q) in adaptive.iter().rev().zip(&chosen) {
        moduli[l] = Modulus::new(q)?;
    }
    Ok(schedule(moduli, top))
}

impl CkksParameters {
    /// A builder starting from N = 8192, `[60, 40, 40, 60]`, scale 2^40.
    pub fn builder() -> CkksParametersBuilder {
        CkksParametersBuilder::default()
    }

    /// A named preset.
    pub fn preset(preset: Preset) -> Result<Self> {
        let (n, bits, scale) = preset.spec();
        Self::builder()
            .degree(n)
            .moduli_bits(&bits)
            .scale_bits(f64::from(scale))
            .build()
    }

    /// Ring degree N.
    pub fn degree(&self) -> usize {
        self.degree
    }

    /// Number of complex slots (N/2).
    pub fn slots(&self) -> usize {
        self.degree / 2
    }

    /// The prime bit sizes the parameters were built from.
    pub fn bit_sizes(&self) -> &[u32] {
        &self.bit_sizes
    }

    /// Highest level L of a fresh ciphertext (number of ciphertext primes − 1).
    pub fn max_level(&self) -> usize {
        self.ciphertext_moduli.len() - 1
    }

    /// Ciphertext primes `q_0 … q_L`.
    pub fn ciphertext_moduli(&self) -> &[Modulus] {
        &self.ciphertext_moduli
    }

    /// Special primes `p_0 … p_{k-1}` (key switching only).
    pub fn special_moduli(&self) -> &[Modulus] {
        &self.special_moduli
    }

    /// Key-switching decomposition number.
    pub fn dnum(&self) -> usize {
        self.dnum
    }

    /// Primes per key-switching digit.
    pub fn digit_size(&self) -> usize {
        self.ciphertext_moduli.len().div_ceil(self.dnum)
    }

    /// Default scale 2^scale_bits.
    pub fn scale(&self) -> f64 {
        self.scale_bits.exp2()
    }

    /// The scale `Δ_ℓ` of the automatic schedule at `level` (the vector API keeps every
    /// ciphertext at level ℓ at this scale): `Δ_L` is the default scale or a hair below it
    /// (about 10^-5 bits with 40-bit primes), and `Δ_{ℓ−1} = Δ_ℓ² / q_ℓ` stays on target at
    /// every level thanks to the primes' choice (see [`CkksParametersBuilder::build`]). Levels
    /// past `L` get `Δ_L`.
    pub fn level_scale(&self, level: usize) -> f64 {
        self.level_scales
            .get(level.min(self.level_scales.len().saturating_sub(1)))
            .copied()
            .unwrap_or(self.scale())
    }

    /// log2 of the default scale.
    pub fn scale_bits(&self) -> f64 {
        self.scale_bits
    }

    /// The same set without the BGV error modulus (what is serialized: the BGV wrapper
    /// records `t` and rebuilds the core).
    pub(crate) fn without_error_plain_modulus(&self) -> Self {
        let mut p = self.clone();
        p.error_plain_modulus = None;
        let moduli: Vec<Modulus> = p
            .ciphertext_moduli
            .iter()
            .chain(&p.special_moduli)
            .copied()
            .collect();
        p.fingerprint =
            fingerprint_of(p.degree, p.dnum, p.special_count, &moduli, p.security, None);
        p
    }

    /// BGV cores: the plaintext modulus every error is a multiple of.
    pub(crate) fn plain_modulus_of_errors(&self) -> Option<u64> {
        self.error_plain_modulus
    }

    /// The security level the parameters meet.
    pub fn security(&self) -> SecurityLevel {
        self.security
    }

    /// log2 of the whole modulus QP.
    pub fn total_bits(&self) -> f64 {
        self.ciphertext_moduli
            .iter()
            .chain(&self.special_moduli)
            .map(|m| (m.value() as f64).log2())
            .sum()
    }

    /// SHA-256 fingerprint of the parameter set; carried by every key and ciphertext.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Short hex form of the fingerprint (first 8 bytes), for messages.
    pub fn fingerprint_hex(&self) -> String {
        hex8(&self.fingerprint)
    }
}

/// First 8 bytes of a fingerprint in hex.
pub(crate) fn hex8(f: &[u8; 32]) -> String {
    f[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_secure_and_distinct() {
        let mut prints = Vec::new();
        for p in Preset::ALL {
            let params = CkksParameters::preset(p).unwrap();
            assert_eq!(params.security(), SecurityLevel::Bits128, "{}", p.name());
            assert_eq!(Preset::from_name(p.name()), Some(p));
            prints.push(params.fingerprint());
        }
        prints.dedup();
        assert_eq!(prints.len(), 4);
    }

    #[test]
    fn security_table_is_enforced() {
        // 8192 allows 218 bits: [60, 40, 40, 40, 60] = 240 is too many.
        let err = CkksParameters::builder()
            .moduli_bits(&[60, 40, 40, 40, 60])
            .build()
            .unwrap_err();
        assert!(
            matches!(
                err,
                HeError::InsecureParameters {
                    degree: 8192,
                    total_bits: 240,
                    max_bits: 218
                }
            ),
            "{err}"
        );
        let ok = CkksParameters::builder()
            .moduli_bits(&[60, 40, 40, 40, 60])
            .insecure_allow_below_128_bit_security()
            .build()
            .unwrap();
        assert_eq!(ok.security(), SecurityLevel::Insecure);
        // Exactly at the bound is fine: 32768 → 881 and [60, 40×19, 60] = 880.
        assert!(CkksParameters::preset(Preset::N32768Depth19).is_ok());
        assert!(CkksParameters::builder()
            .degree(2048)
            .moduli_bits(&[30, 30])
            .scale_bits(20.0)
            .build()
            .is_err());
    }

    #[test]
    fn invalid_parameters_are_explained() {
        let cases: Vec<CkksParametersBuilder> = vec![
            CkksParameters::builder().degree(3000),
            CkksParameters::builder().moduli_bits(&[60]),
            CkksParameters::builder().moduli_bits(&[60, 70, 60]),
            CkksParameters::builder().moduli_bits(&[30, 40, 60]),
            CkksParameters::builder()
                .moduli_bits(&[60, 40, 40, 40])
                .dnum(1),
            CkksParameters::builder().special_primes(0),
            CkksParameters::builder().scale_bits(f64::NAN),
            CkksParameters::builder()
                .degree(65536)
                .moduli_bits(&[30; 65])
                .insecure_allow_below_128_bit_security(),
        ];
        for c in cases {
            let e = c.clone().build().unwrap_err();
            assert!(matches!(e, HeError::InvalidParameters(_)), "{c:?}: {e}");
        }
    }

    #[test]
    fn retargeted_primes_keep_their_bit_sizes_and_stay_distinct() {
        for p in Preset::ALL {
            let params = CkksParameters::preset(p).unwrap();
            let all: Vec<u64> = params
                .ciphertext_moduli()
                .iter()
                .chain(params.special_moduli())
                .map(|m| m.value())
                .collect();
            for (m, &b) in all.iter().zip(params.bit_sizes()) {
                assert_eq!(64 - m.leading_zeros(), b, "{}: prime {m}", p.name());
                assert_eq!(m % (2 * params.degree() as u64), 1);
            }
            let mut sorted = all.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), all.len(), "{}", p.name());
            // Deterministic: the same bit sizes give the same primes (serialized parameters
            // are rebuilt from them).
            assert_eq!(CkksParameters::preset(p).unwrap(), params);
        }
    }

    #[test]
    fn hybrid_decomposition() {
        let p = CkksParameters::builder()
            .degree(16384)
            .moduli_bits(&[60, 40, 40, 40, 40, 40, 40, 60, 60])
            .special_primes(2)
            .build()
            .unwrap();
        assert_eq!(p.max_level(), 6);
        assert_eq!(p.dnum(), 4);
        assert_eq!(p.digit_size(), 2);
    }
}
