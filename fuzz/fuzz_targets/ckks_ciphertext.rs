//! Feeds arbitrary bytes to the readers of plaintexts, ciphertexts, encrypted vectors and
//! parameter sets: they must return errors, never panic or allocate unboundedly.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use veil_he::ckks::{Ciphertext, CkksContext, CkksParameters, CkksVector, Plaintext, VectorContext};

fn context() -> &'static Arc<VectorContext> {
    static CTX: OnceLock<Arc<VectorContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let params = CkksParameters::builder()
            .degree(64)
            .moduli_bits(&[60, 40, 60])
            .insecure_allow_below_128_bit_security()
            .build()
            .expect("valid fuzz parameters");
        let ckks = CkksContext::new(params).expect("context");
        VectorContext::builder(ckks).build().expect("keys")
    })
}

fuzz_target!(|data: &[u8]| {
    let ctx = context();
    let ckks = ctx.ckks();
    let _ = Ciphertext::from_bytes(ckks, data);
    let _ = Plaintext::from_bytes(ckks, data);
    let _ = CkksParameters::from_bytes(data);
    if let Ok(v) = CkksVector::from_bytes(ctx, data) {
        // A vector that parses must be usable.
        let _ = v.decrypt();
    }
});
