//! Feeds arbitrary bytes to the key readers (public, secret, relinearization, Galois).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use veil_he::ckks::{CkksContext, CkksParameters, GaloisKeys, PublicKey, RelinearizationKey, SecretKey};

fn context() -> &'static Arc<CkksContext> {
    static CTX: OnceLock<Arc<CkksContext>> = OnceLock::new();
    CTX.get_or_init(|| {
        let params = CkksParameters::builder()
            .degree(64)
            .moduli_bits(&[60, 40, 60])
            .insecure_allow_below_128_bit_security()
            .build()
            .expect("valid fuzz parameters");
        CkksContext::new(params).expect("context")
    })
}

fuzz_target!(|data: &[u8]| {
    let ctx = context();
    let _ = PublicKey::from_bytes(ctx, data);
    let _ = SecretKey::from_bytes(ctx, data);
    let _ = RelinearizationKey::from_bytes(ctx, data);
    let _ = GaloisKeys::from_bytes(ctx, data);
});
