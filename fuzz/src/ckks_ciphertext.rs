//! Feeds hostile bytes to the readers of plaintexts, ciphertexts, encrypted vectors and
//! parameter sets: they must return errors, never panic or allocate unboundedly.
//!
//! Random bytes rarely get past the magic and the 32-byte parameter fingerprint, so most
//! inputs are instead read as edits of a valid serialized object: the first byte picks the
//! object, the next two a truncation length, the rest (position, value) overwrites.

use std::sync::{Arc, OnceLock};

use crate::edits;
use veil_he::ckks::{
    Ciphertext, CkksContext, CkksParameters, CkksVector, Plaintext, VectorContext,
};

struct Fixture {
    ctx: Arc<VectorContext>,
    samples: Vec<Vec<u8>>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let params = edits::fuzz_parameters();
        let ckks = CkksContext::new(params.clone()).expect("context");
        let ctx = VectorContext::builder(ckks.clone()).build().expect("keys");
        let v = CkksVector::encrypt(&ctx, &[1.0, -2.0, 3.5]).expect("encrypt");
        let sq = v.square().expect("square");
        let sym_pt = veil_he::ckks::CkksEncoder::new(&ckks)
            .encode(&[0.5], 1e9, 1)
            .expect("encode");
        let samples = vec![
            v.ciphertext().to_bytes(),
            sq.ciphertext().to_bytes(),
            v.to_bytes(),
            sym_pt.to_bytes(),
            params.to_bytes(),
        ];
        Fixture { ctx, samples }
    })
}

fn read_all(f: &Fixture, data: &[u8]) {
    let ckks = f.ctx.ckks();
    let _ = Ciphertext::from_bytes(ckks, data);
    let _ = Plaintext::from_bytes(ckks, data);
    let _ = CkksParameters::from_bytes(data);
    let _ = CkksParameters::from_bytes_insecure_allow_below_128_bit_security(data);
    if let Ok(v) = CkksVector::from_bytes(&f.ctx, data) {
        // A vector that parses must be usable.
        let _ = v.decrypt();
        let _ = v.add(&v);
    }
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    let f = fixture();
    read_all(f, data);
    if let Some(obj) = edits::edited(&f.samples, data) {
        read_all(f, &obj);
    }
}
