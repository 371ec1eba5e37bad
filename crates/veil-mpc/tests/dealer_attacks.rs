//! A malicious last party against the dealer (issue 12, item 21).
//!
//! Only the last party talks to the dealer. If the dealer took its copies of the other
//! parties' randomness from one sequential stream per party, advanced by the last party's
//! requests alone, the last party could ask for *other* items than the ones the others take
//! (another type, another size) and make the dealer compute its correction from the stream
//! words party 0 uses as its masks. Two routes, both against party 0's secret input:
//!
//! - a matrix triple with an empty inner dimension (`k = 0`): its product is zero, so the
//!   correction is minus party 0's words, exactly;
//! - the route of the issue: a truncation whose top-bit correction lands on party 0's
//!   truncation mask, hidden behind one unknown bit (which the low bits of the opened value
//!   then give away).
//!
//! In each test party 0 runs an honest program; the last party deviates, takes part in every
//! round so that party 0 goes on, and at the output opening forwards whatever the dealer
//! appended to its last correction (the strongest thing it can do: it cannot compute party
//! 0's tags) before its share. The tests assert what matters: the attacker recovers none of
//! party 0's inputs, and party 0 refuses to output.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::sync::{Arc, Mutex};

use veil_mpc::dealer::Request;
use veil_mpc::memory::{run, MemoryExchange};
use veil_mpc::protocol::{Exchange, Party};
use veil_mpc::{FixedPoint, MpcError, Result};

const N: usize = 1000;
const ULP: f64 = 1.0 / 65536.0;

/// Party 0's secret input.
fn secrets() -> Vec<f64> {
    (0..N)
        .map(|i| ((i as f64) * 0.731).sin() * 5000.0 + (i as f64) * 0.25)
        .collect()
}

/// Asks the dealer for `request`: the correction proper, and what the dealer appended after
/// it (nothing, or words the attacker cannot interpret but may forward).
fn ask(ex: &mut MemoryExchange, request: &Request) -> Result<(Vec<u64>, Vec<u64>)> {
    ex.dealer_request(request)?;
    let mut c = ex
        .dealer_correction()?
        .ok_or_else(|| MpcError::Dealer("the last party got no correction".into()))?;
    let extra = c.split_off(request.correction_len().min(c.len()));
    Ok((c, extra))
}

/// One round with party 0 (two parties): sends `to_party0`, returns what party 0 sent.
fn round(ex: &mut MemoryExchange, to_party0: Vec<u64>) -> Result<Vec<u64>> {
    let mut got = ex.exchange("attack", vec![to_party0, Vec::new()])?;
    Ok(std::mem::take(&mut got[0]))
}

/// Runs `honest` as party 0 and `attacker` as party 1 (the last one, the dealer's client);
/// returns party 0's outcome and what the attacker recovered. The attacker returns what it
/// recovered, the dealer's extra words of its last correction and the length of the output;
/// then it takes part in the output opening: the extra words (if any: the transcript
/// confirmation round), then a share of zeros.
fn attack<H, A>(honest: H, attacker: A) -> (Result<Vec<f64>>, Vec<f64>)
where
    H: Fn(&mut Party<MemoryExchange>) -> Result<Vec<f64>> + Send + Sync + 'static,
    A: Fn(&mut Party<MemoryExchange>) -> Result<(Vec<f64>, Vec<u64>, usize)>
        + Send
        + Sync
        + 'static,
{
    let stolen = Arc::new(Mutex::new(Vec::new()));
    let out = stolen.clone();
    let result = run(2, FixedPoint::default(), move |p| {
        if p.id() == 0 {
            return honest(p);
        }
        let (got, extra, len) = attacker(p)?;
        *out.lock().unwrap() = got;
        let ex = p.exchange_mut();
        // Party 0 may stop here: what matters is what it outputs.
        if extra.is_empty() || round(ex, extra).is_ok() {
            let _ = round(ex, vec![0; len]);
        }
        Ok(Vec::new())
    });
    let recovered = stolen.lock().unwrap().clone();
    (result.map(|mut v| v.swap_remove(0)), recovered)
}

/// How many of party 0's inputs the attacker has to within two units in the last place.
fn hits(recovered: &[f64]) -> usize {
    recovered
        .iter()
        .zip(secrets())
        .filter(|(r, s)| (*r - s).abs() <= 2.0 * ULP)
        .count()
}

fn assert_attack_fails(outcome: Result<Vec<f64>>, recovered: &[f64]) {
    assert_eq!(recovered.len(), N, "the attacker ran to the end");
    let hits = hits(recovered);
    assert_eq!(
        hits, 0,
        "the last party recovered {hits}/{N} of party 0's inputs"
    );
    match outcome {
        Err(MpcError::Dealer(why)) if why.contains("transcript") => {}
        other => panic!("party 0 must refuse to output, not {other:?}"),
    }
}

#[test]
fn an_empty_matrix_triple_does_not_read_party_0s_masks() {
    // Party 0: x · y (a Beaver triple, then a truncation), and opens the product.
    let honest = |p: &mut Party<MemoryExchange>| {
        let x = p.input(0, Some(&secrets()), N)?;
        let y = p.input(1, None, N)?;
        let z = p.mul(&x, &y)?;
        p.open(&z)
    };
    // The last party asks for a 1 × 0 by 0 × N matrix triple instead of the N triples: the
    // correction would be −(party 0's next N words) = −a₀, the mask of x₀ in the opening.
    let attacker = |p: &mut Party<MemoryExchange>| {
        let fixed = p.fixed();
        let x1 = p.input(0, None, N)?;
        p.input(1, Some(&vec![1.0; N]), N)?;
        let ex = p.exchange_mut();
        let (corr, extra) = ask(ex, &Request::MatrixTriple { m: 1, k: 0, n: N })?;
        // Party 0 opens x₀ − a₀ ‖ y₀ − b₀.
        let opened = round(ex, vec![0; 2 * N])?;
        let recovered: Vec<u64> = (0..N)
            .map(|i| {
                let a0 = corr.get(i).copied().unwrap_or(0).wrapping_neg();
                let x0 = opened.get(i).copied().unwrap_or(0).wrapping_add(a0);
                x0.wrapping_add(x1.share()[i])
            })
            .collect();
        // The truncation's opening.
        round(ex, vec![0; N])?;
        Ok((fixed.decode_all(&recovered), extra, N))
    };
    let (outcome, recovered) = attack(honest, attacker);
    assert_attack_fails(outcome, &recovered);
}

#[test]
fn a_shifted_truncation_does_not_read_party_0s_masks() {
    // Party 0: two products by public constants (two truncations), and opens their sum.
    let honest = |p: &mut Party<MemoryExchange>| {
        let x = p.input(0, Some(&secrets()), N)?;
        let w = p.constant(&vec![1.0; N])?;
        let warm = p.mul_public(&w, &vec![3.0; N])?;
        let z = p.mul_public(&x, &vec![1.0; N])?;
        let s = p.add(&warm, &z)?;
        p.open(&s)
    };
    // Sequential streams: party 0's second truncation mask r₀ takes its words [3N, 4N). The
    // last party asks for N/2 square pairs (the dealer moves party 0's stream by N), then a
    // truncation of N: its top-bit correction is msb(R) − (party 0's words [3N, 4N)), that
    // is −r₀ up to one bit. Party 0 opens t₀ = 2^16·x₀ + r₀ + 2^62: of the two candidates
    // for r₀ only one leaves a multiple of 2^16, which gives x₀ mod 2^48, hence x.
    let attacker = |p: &mut Party<MemoryExchange>| {
        let fixed = p.fixed();
        let x1 = p.input(0, None, N)?;
        let ex = p.exchange_mut();
        ask(ex, &Request::Squares { n: N / 2 })?;
        let (corr, extra) = ask(
            ex,
            &Request::Truncation {
                n: N,
                frac_bits: 16,
            },
        )?;
        round(ex, vec![0; N])?;
        let t0 = round(ex, vec![0; N])?;
        let recovered: Vec<u64> = (0..N)
            .map(|i| {
                let msb_corr = corr.get(N + i).copied().unwrap_or(0);
                let t = t0.get(i).copied().unwrap_or(0);
                let v = [0u64, 1]
                    .iter()
                    .map(|bit| {
                        let r0 = bit.wrapping_sub(msb_corr);
                        t.wrapping_sub(r0).wrapping_sub(1 << 62)
                    })
                    .find(|v| v % (1 << 16) == 0)
                    .unwrap_or(0);
                // x₀ mod 2^48, plus x₁, sign-extended from 48 bits.
                let x = (v >> 16).wrapping_add(x1.share()[i]);
                (((x << 16) as i64) >> 16) as u64
            })
            .collect();
        Ok((fixed.decode_all(&recovered), extra, N))
    };
    let (outcome, recovered) = attack(honest, attacker);
    assert_attack_fails(outcome, &recovered);
}
