//! Feeds hostile bytes to the key readers (public, secret, relinearization, Galois), both raw
//! and as edits of valid serialized keys (first byte: which key; next two: truncation; then
//! (position, value) overwrites).

use std::sync::{Arc, OnceLock};

use crate::edits;
use veil_he::ckks::{
    CkksContext, GaloisKeys, KeyGenerator, PublicKey, RelinearizationKey, SecretKey,
};

struct Fixture {
    ctx: Arc<CkksContext>,
    samples: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let params = edits::fuzz_parameters();
        let ctx = CkksContext::new(params).expect("context");
        let mut kg = KeyGenerator::new(&ctx).expect("keygen");
        let samples = vec![
            kg.public_key().expect("pk").to_bytes(),
            kg.secret_key().to_bytes().expect("sk").to_vec(),
            kg.relin_key().expect("rlk").to_bytes(),
            kg.galois_keys(&[1, -2]).expect("gk").to_bytes(&ctx),
        ];
        Fixture { ctx, samples }
    })
}

fn read_all(ctx: &Arc<CkksContext>, data: &[u8]) {
    let _ = PublicKey::from_bytes(ctx, data);
    let _ = SecretKey::from_bytes(ctx, data);
    let _ = RelinearizationKey::from_bytes(ctx, data);
    let _ = GaloisKeys::from_bytes(ctx, data);
    let _ = veil_he::ckks::VectorContext::from_public_bytes(data, None);
    // The fixture's parameters are toy ones, which the default reader refuses: the named
    // opt-out reaches the key parsers.
    let _ = veil_he::ckks::VectorContext::from_public_bytes_insecure_allow_below_128_bit_security(
        data, None,
    );
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    let f = fixture();
    read_all(&f.ctx, data);
    if let Some(obj) = edits::edited(&f.samples, data) {
        read_all(&f.ctx, &obj);
    }
}
