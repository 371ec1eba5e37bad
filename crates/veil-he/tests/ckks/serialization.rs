//! Serialization: round trips, sizes, and hostile input.

use crate::common::*;
use proptest::prelude::*;
use veil_he::ckks::*;
use veil_he::HeError;

fn fx() -> Fixture {
    fixture_with(small(1024, &[60, 40, 40, 60], 40.0), &[1, 2], true, 21)
}

#[test]
fn round_trips() {
    let f = fx();
    let v = values(512, 1);
    let ct = f.enc(&v);
    let back = Ciphertext::from_bytes(&f.ctx, &ct.to_bytes()).unwrap();
    assert!(max_err(&f.dec(&back), &v) < 1e-7);
    // 3-part and lower-level ciphertexts.
    let m = f.eval.multiply(&ct, &ct).unwrap();
    let mb = Ciphertext::from_bytes(&f.ctx, &m.to_bytes()).unwrap();
    assert_eq!(mb.size(), 3);
    let low = f
        .eval
        .rescale(&f.eval.relinearize(&mb, &f.rlk).unwrap())
        .unwrap();
    let lb = Ciphertext::from_bytes(&f.ctx, &low.to_bytes()).unwrap();
    assert_eq!(lb.level(), 1);
    let sq: Vec<f64> = v.iter().map(|x| x * x).collect();
    assert!(max_err(&f.dec(&lb), &sq) < 1e-6);
    // Plaintext.
    let pt = f.encoder.encode(&v, 2f64.powi(30), 1).unwrap();
    let pb = Plaintext::from_bytes(&f.ctx, &pt.to_bytes()).unwrap();
    assert!(max_err(&f.encoder.decode(&pb).unwrap(), &v) < 1e-6);
    // Keys: a context rebuilt from serialized parameters and keys computes and decrypts.
    let params = CkksParameters::from_bytes_insecure_allow_below_128_bit_security(
        &f.ctx.params().to_bytes(),
    )
    .unwrap();
    assert_eq!(&params, f.ctx.params());
    let ctx2 = CkksContext::new(params).unwrap();
    let sk = SecretKey::from_bytes(&ctx2, &f.keygen.secret_key().to_bytes().unwrap()).unwrap();
    assert!(&sk == f.keygen.secret_key());
    let rlk = RelinearizationKey::from_bytes(&ctx2, &f.rlk.to_bytes()).unwrap();
    let gk = GaloisKeys::from_bytes(&ctx2, &f.gk.to_bytes(&f.ctx)).unwrap();
    assert_eq!(gk.len(), f.gk.len());
    let ct2 = Ciphertext::from_bytes(&ctx2, &ct.to_bytes()).unwrap();
    let ev2 = Evaluator::new(&ctx2);
    let r = ev2
        .rotate(
            &ev2.rescale(&ev2.multiply_relin(&ct2, &ct2, &rlk).unwrap())
                .unwrap(),
            1,
            &gk,
        )
        .unwrap();
    let dec2 = Decryptor::new(&ctx2, sk).unwrap();
    let got = CkksEncoder::new(&ctx2)
        .decode(&dec2.decrypt(&r).unwrap())
        .unwrap();
    let expect: Vec<f64> = (0..512).map(|i| sq[(i + 1) % 512]).collect();
    assert!(max_err(&got, &expect) < 1e-6);
    // Public key: encryptions under the deserialized key decrypt.
    let ctx3 = f.ctx.clone();
    let pk_bytes = {
        let mut kg = KeyGenerator::from_secret_key(&ctx3, f.keygen.secret_key().clone()).unwrap();
        kg.public_key().unwrap().to_bytes()
    };
    let pk = PublicKey::from_bytes(&ctx3, &pk_bytes).unwrap();
    let enc = Encryptor::new(&ctx3, pk).unwrap();
    let c = enc
        .encrypt(&f.encoder.encode(&v, f.ctx.params().scale(), 2).unwrap())
        .unwrap();
    assert!(max_err(&f.dec(&c), &v) < 1e-7);
}

#[test]
fn packed_and_seeded_sizes() {
    // The reference point: a fresh N = 8192 [60,40,40,60] ciphertext is 287 KB packed.
    let params = CkksParameters::preset(Preset::N8192Depth2).unwrap();
    let ctx = CkksContext::new(params).unwrap();
    let mut kg = KeyGenerator::new(&ctx).unwrap();
    let pk = kg.public_key().unwrap();
    let enc = Encryptor::new(&ctx, pk).unwrap();
    let pt = CkksEncoder::new(&ctx)
        .encode(&[1.0], 2f64.powi(40), 2)
        .unwrap();
    let ct = enc.encrypt(&pt).unwrap();
    let bytes = ct.to_bytes();
    assert_eq!(bytes.len(), 2 * 8192 * (60 + 40 + 40) / 8 + 38 + 11);
    assert!(bytes.len() < 287_000);
    assert_eq!(ct.memory_bytes(), 2 * 8192 * 3 * 8);
    let sym = SymmetricEncryptor::new(&ctx, kg.secret_key().clone()).unwrap();
    let seeded = sym.encrypt(&pt).unwrap().to_bytes();
    assert_eq!(seeded.len(), 8192 * 140 / 8 + 32 + 38 + 11);
}

#[test]
fn hostile_inputs_are_errors() {
    let f = fx();
    let ct = f.enc(&values(16, 2));
    let bytes = ct.to_bytes();
    // Truncated at every prefix length of the header and some of the body.
    for len in (0..60).chain([bytes.len() / 2, bytes.len() - 1]) {
        assert!(
            Ciphertext::from_bytes(&f.ctx, &bytes[..len]).is_err(),
            "prefix {len}"
        );
    }
    // Trailing garbage.
    let mut long = bytes.clone();
    long.push(0);
    assert!(Ciphertext::from_bytes(&f.ctx, &long).is_err());
    // Wrong magic, version, kind.
    for (pos, val) in [(0usize, b'X'), (4, 9), (5, 4)] {
        let mut b = bytes.clone();
        b[pos] = val;
        assert!(matches!(
            Ciphertext::from_bytes(&f.ctx, &b),
            Err(HeError::Deserialize { .. })
        ));
    }
    // Wrong parameter set.
    let other = fixture_with(small(1024, &[60, 40, 60], 40.0), &[], false, 3);
    assert!(matches!(
        Ciphertext::from_bytes(&other.ctx, &bytes),
        Err(HeError::ParameterMismatch { .. })
    ));
    // Level beyond the maximum, bad sizes and scales.
    for (pos, val) in [(38usize, 9u8), (39, 7), (39, 1)] {
        let mut b = bytes.clone();
        b[pos] = val;
        assert!(
            Ciphertext::from_bytes(&f.ctx, &b).is_err(),
            "byte {pos} = {val}"
        );
    }
    let mut nan = bytes.clone();
    nan[40..48].copy_from_slice(&f64::NAN.to_bits().to_le_bytes());
    assert!(Ciphertext::from_bytes(&f.ctx, &nan).is_err());
    // A coefficient not reduced modulo its prime (all-ones in the first 60 bits).
    let mut unreduced = bytes.clone();
    for b in unreduced[49..57].iter_mut() {
        *b = 0xff;
    }
    assert!(Ciphertext::from_bytes(&f.ctx, &unreduced).is_err());
    // Keys.
    assert!(GaloisKeys::from_bytes(&f.ctx, &bytes).is_err());
    let gk = f.gk.to_bytes(&f.ctx);
    let mut huge = gk.clone();
    huge[38..42].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(GaloisKeys::from_bytes(&f.ctx, &huge).is_err());
    assert!(CkksParameters::from_bytes(&bytes).is_err());
    assert!(SecretKey::from_bytes(&f.ctx, &[]).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn mutated_ciphertexts_never_panic(pos in 0usize..2000, val in any::<u8>(), cut in 0usize..4000) {
        let f = mutate_fixture();
        let mut b = f.1.clone();
        let p = pos % b.len();
        b[p] = val;
        let _ = Ciphertext::from_bytes(&f.0.ctx, &b);
        let _ = Ciphertext::from_bytes(&f.0.ctx, &b[..cut.min(b.len())]);
        let _ = GaloisKeys::from_bytes(&f.0.ctx, &b);
        let _ = PublicKey::from_bytes(&f.0.ctx, &b);
        let _ = CkksParameters::from_bytes(&b[..cut.min(b.len())]);
    }
}

fn mutate_fixture() -> &'static (Fixture, Vec<u8>) {
    static F: std::sync::OnceLock<(Fixture, Vec<u8>)> = std::sync::OnceLock::new();
    F.get_or_init(|| {
        let f = fixture_with(small(64, &[60, 40, 60], 40.0), &[1], false, 5);
        let b = f.enc(&[1.0, 2.0]).to_bytes();
        (f, b)
    })
}
