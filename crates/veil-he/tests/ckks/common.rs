//! Shared test fixtures.

use std::sync::Arc;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use veil_he::ckks::*;

pub struct Fixture {
    pub ctx: Arc<CkksContext>,
    pub encoder: CkksEncoder,
    pub encryptor: Encryptor,
    pub sym: SymmetricEncryptor,
    pub decryptor: Decryptor,
    pub eval: Evaluator,
    pub rlk: RelinearizationKey,
    pub gk: GaloisKeys,
    pub keygen: KeyGenerator,
}

pub fn fixture_with(params: CkksParameters, steps: &[i64], conj: bool, seed: u64) -> Fixture {
    let ctx = CkksContext::new(params).unwrap();
    let mut keygen = KeyGenerator::with_rng(&ctx, ChaCha20Rng::seed_from_u64(seed)).unwrap();
    let pk = keygen.public_key().unwrap();
    let rlk = keygen.relin_key().unwrap();
    let gk = keygen
        .galois_keys_with_progress(steps, conj, &mut |_, _| {})
        .unwrap();
    let sk = keygen.secret_key().clone();
    Fixture {
        encoder: CkksEncoder::new(&ctx),
        encryptor: Encryptor::new(&ctx, pk).unwrap(),
        sym: SymmetricEncryptor::new(&ctx, sk.clone()).unwrap(),
        decryptor: Decryptor::new(&ctx, sk).unwrap(),
        eval: Evaluator::new(&ctx),
        rlk,
        gk,
        keygen,
        ctx,
    }
}

/// A small, fast, insecure parameter set (tests only).
pub fn small(degree: usize, bits: &[u32], scale_bits: f64) -> CkksParameters {
    CkksParameters::builder()
        .degree(degree)
        .moduli_bits(bits)
        .scale_bits(scale_bits)
        .insecure_allow_below_128_bit_security()
        .build()
        .unwrap()
}

pub fn values(n: usize, seed: u64) -> Vec<f64> {
    // Deterministic pseudo-random values in [-1, 1].
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

impl Fixture {
    pub fn enc(&self, v: &[f64]) -> Ciphertext {
        let pt = self
            .encoder
            .encode(v, self.ctx.params().scale(), self.ctx.max_level())
            .unwrap();
        self.encryptor.encrypt(&pt).unwrap()
    }

    pub fn dec(&self, ct: &Ciphertext) -> Vec<f64> {
        self.encoder
            .decode(&self.decryptor.decrypt(ct).unwrap())
            .unwrap()
    }
}

/// Max absolute difference over the first `expect.len()` slots.
pub fn max_err(got: &[f64], expect: &[f64]) -> f64 {
    got.iter()
        .zip(expect)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}
