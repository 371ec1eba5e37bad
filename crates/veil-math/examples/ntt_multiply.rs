//! Multiplies two polynomials of `Z_Q[X]/(X^N + 1)` in RNS form through the NTT and checks
//! the result against schoolbook multiplication.
//!
//! ```sh
//! cargo run --release -p veil-math --example ntt_multiply
//! ```

use std::time::Instant;

use veil_math::prime::primes_for_bit_sizes;
use veil_math::{RingContext, RnsPoly};

fn main() -> veil_math::Result<()> {
    let n = 1024;
    let moduli = primes_for_bit_sizes(n, &[60, 40, 40])?;
    println!(
        "primes: {:?}",
        moduli.iter().map(|m| m.value()).collect::<Vec<_>>()
    );
    let ctx = RingContext::new(n, &moduli)?;
    let a: Vec<i64> = (0..n as i64).map(|k| (k * 7919) % 201 - 100).collect();
    let b: Vec<i64> = (0..n as i64).map(|k| (k * 104_729) % 21 - 10).collect();

    let t = Instant::now();
    let mut pa = RnsPoly::from_signed(&ctx, &[0, 1, 2], &a)?;
    let mut pb = RnsPoly::from_signed(&ctx, &[0, 1, 2], &b)?;
    pa.to_ntt();
    pb.to_ntt();
    let mut prod = RnsPoly::mul(&pa, &pb)?;
    prod.to_coefficient();
    println!("NTT product: {:?}", t.elapsed());

    let t = Instant::now();
    let mut expect = vec![0i64; n];
    for i in 0..n {
        for j in 0..n {
            let p = a[i] * b[j];
            if i + j < n {
                expect[i + j] += p;
            } else {
                expect[i + j - n] -= p;
            }
        }
    }
    println!("schoolbook:  {:?}", t.elapsed());
    let m0 = ctx.moduli()[0];
    let ok = (0..n).all(|k| m0.center(prod.limb(0)[k]) == expect[k]);
    println!("results agree: {ok}");
    if !ok {
        return Err(veil_math::MathError::Internal(
            "NTT product differs from schoolbook",
        ));
    }
    Ok(())
}
