//! Runs every fuzz target over a fixed, seeded set of inputs on a stable toolchain, so CI
//! builds the targets (this test links the `veil-fuzz` binaries too) and catches a panic on
//! hostile input in any parser without `cargo fuzz`.
//!
//! The inputs are the seeds below (valid inputs of each target's shape), mutations of them
//! (bit flips, byte overwrites, insertions, deletions, splices, truncations — libFuzzer's
//! mutators, without coverage guidance) and raw pseudo-random bytes, all from a fixed seed
//! so a failure reproduces: the panic message names the target and the input (hex).
//! `VEIL_FUZZ_SMOKE_RUNS` raises the count per target (default 5000).

use std::panic::{catch_unwind, AssertUnwindSafe};

/// SplitMix64: deterministic, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Values that often sit at boundaries of length and integer checks.
const INTERESTING: &[u8] = &[
    0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x40, 0x20, b'0', b'-', b'\'', b'"',
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let extra = rng.bytes(n);
                out.splice(i..i, extra);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let j = (i + 1 + rng.below(8)).min(len);
                out.drain(i..j);
            }
            4 => {
                // Splice in a piece of another seed.
                let other = &seeds[rng.below(seeds.len())];
                if !other.is_empty() {
                    let a = rng.below(other.len());
                    let b = (a + 1 + rng.below(32)).min(other.len());
                    let i = rng.below(len + 1);
                    out.splice(i..i, other[a..b].iter().copied());
                }
            }
            5 => out.truncate(rng.below(len + 1)),
            6 if len > 0 => {
                // Repeat a piece (grows lengths and counts).
                let a = rng.below(len);
                let b = (a + 1 + rng.below(16)).min(len);
                let piece = out[a..b].to_vec();
                out.extend_from_slice(&piece);
            }
            _ => {
                let i = rng.below(len + 1);
                out.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
            }
        }
    }
    out
}

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let text = |items: &[&str]| items.iter().map(|s| s.as_bytes().to_vec()).collect();
    match target {
        "dp_sql_query" => text(&[
            "SELECT COUNT(*) FROM persons",
            "SELECT state, COUNT(*), AVG(income) FROM persons GROUP BY state",
            "SELECT SUM(income) FROM persons WHERE age > 30 AND state IN ('CA', 'NY')",
            "SELECT COUNT(*) FROM persons WHERE CASE WHEN age > 40 THEN 'x' ELSE '0' END = 0",
            "SELECT VAR(age), MEDIAN(income) FROM persons WHERE income BETWEEN 1 AND 1e300",
            "SELECT COUNT(*) FROM persons WHERE CAST(state AS INT) = 5 OR state LIKE 'A%'",
            "SELECT ROUND(AVG(age)) AS a FROM persons GROUP BY state HAVING COUNT(*) > 2 ORDER BY a",
            "SELECT COUNT(DISTINCT person_id) FROM persons WHERE age / 0 > 1",
        ]),
        "tee_service" => text(&[
            r#"{"evidence":"AAAA","nonce":"AAAA","runtime_public_key":"AAAA","runtime_data":""}"#,
            r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA","kid":"k"}]}"#,
            r#"{"tee":"sgx","tcb_status":"UpToDate","measurements":{"mr_enclave":"aa"}}"#,
            "eyJhbGciOiJFUzI1NiJ9.eyJ0ZWUiOiJzZ3gifQ.AAAA",
            "tee = [\"sgx\"]\n[measurements]\nmr_enclave = [\"aa\"]\n",
            "package p\nallow if input.tee == \"sgx\"\n",
        ]),
        "tee_room" => {
            let mut s: Vec<Vec<u8>> = (0u8..8).map(|m| vec![m, 3, 0, 0xff, 0, 1]).collect();
            for (mode, body) in [
                (2u8, r#"{"party":"a","action":"run","time":1,"signature":"AAAA"}"#),
                (3, "version = 1\n[room]\nname = \"r\"\n"),
                (4, "name = \"a\"\nsigning = \"00\"\n"),
                (5, "x,y\n1,2\n3\n-inf,NaN\n"),
                (6, "{\"index\":0,\"prev\":\"00\"}\n"),
                (7, "\x00AAAA"),
            ] {
                let mut v = vec![mode];
                v.extend_from_slice(body.as_bytes());
                s.push(v);
            }
            s
        }
        // Edit-driven targets (first byte: which valid object; two bytes: truncation; then
        // (position, value) overwrites) and the MPC party (first byte: role and protocol).
        _ => (0u8..8)
            // Each valid object unedited, then with one edit.
            .map(|k| vec![k, 0xff, 0xff])
            .chain((0u8..8).map(|k| {
                let mut v = vec![k, 0xff, 0xff];
                v.extend_from_slice(&[k.wrapping_mul(37), 0, k]);
                v
            }))
            .chain((0u8..8).map(|k| vec![k * 17 + 4, k, 0, 0, 0, 0, 0, 0, 0, 3]))
            .collect(),
    }
}

#[test]
fn every_target_survives_seeded_hostile_inputs() {
    let runs: usize = std::env::var("VEIL_FUZZ_SMOKE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5000);
    for &(name, run) in veil_fuzz::TARGETS {
        let seeds = seeds(name);
        let mut rng = Rng(0x5eed ^ name.len() as u64);
        let started = std::time::Instant::now();
        let mut inputs: Vec<Vec<u8>> = seeds.clone();
        inputs.push(Vec::new());
        while inputs.len() < runs {
            let input = match rng.below(4) {
                0 => {
                    let len = rng.below(256);
                    rng.bytes(len)
                }
                _ => {
                    let base = seeds[rng.below(seeds.len())].clone();
                    mutate(&mut rng, &seeds, &base)
                }
            };
            inputs.push(input);
        }
        for input in &inputs {
            if catch_unwind(AssertUnwindSafe(|| run(input))).is_err() {
                panic!(
                    "fuzz target {name} panicked on input {} (reproduce: write these bytes to a \
                     file and `cargo fuzz run {name} FILE`)",
                    hex::encode(input)
                );
            }
        }
        eprintln!(
            "{name}: {} inputs in {:.1?}",
            inputs.len(),
            started.elapsed()
        );
    }
}
