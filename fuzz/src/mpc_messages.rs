//! Hostile peers and a hostile dealer: every message a party receives (openings, lengths,
//! dealer corrections, PSI replies) comes from the fuzzer — often of the right length, so the
//! protocols run deep, sometimes not. Any outcome but a panic is fine: a malformed message
//! must be an error, never a crash.

use std::collections::VecDeque;

use veil_mpc::dealer::Request;
use veil_mpc::protocol::{Exchange, Party};
use veil_mpc::{psi, FixedPoint, MpcError, Result};

struct Hostile<'a> {
    id: usize,
    n: usize,
    data: &'a [u8],
    requests: VecDeque<Request>,
}

impl Hostile<'_> {
    fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn word(&mut self) -> u64 {
        let mut w = [0u8; 8];
        for b in &mut w {
            *b = self.byte();
        }
        u64::from_le_bytes(w)
    }

    /// A vector of about `like` elements: usually exactly, sometimes off.
    fn vector(&mut self, like: usize) -> Vec<u64> {
        let len = match self.byte() % 8 {
            0 => usize::from(self.byte()),
            1 => like.saturating_add(1),
            2 => like.saturating_sub(1),
            _ => like,
        };
        // Bounded work per message: beyond the input, elements are zero.
        (0..len.min(1 << 16)).map(|_| self.word()).collect()
    }
}

impl Exchange for Hostile<'_> {
    fn id(&self) -> usize {
        self.id
    }

    fn parties(&self) -> usize {
        self.n
    }

    fn exchange(&mut self, _phase: &str, outgoing: Vec<Vec<u64>>) -> Result<Vec<Vec<u64>>> {
        if self.data.is_empty() {
            return Err(MpcError::InvalidParameter("out of input".into()));
        }
        let like = outgoing.iter().map(Vec::len).max().unwrap_or(0);
        Ok((0..self.n)
            .map(|j| {
                if j == self.id {
                    Vec::new()
                } else {
                    self.vector(like)
                }
            })
            .collect())
    }

    fn dealer_request(&mut self, request: &Request) -> Result<()> {
        if self.id == self.n - 1 {
            self.requests.push_back(request.clone());
        }
        Ok(())
    }

    fn dealer_correction(&mut self) -> Result<Option<Vec<u64>>> {
        if self.id != self.n - 1 {
            return Ok(None);
        }
        let like = self.requests.pop_front().map_or(0, |r| r.correction_len());
        Ok(Some(self.vector(like)))
    }
}

fn program(p: &mut Party<Hostile<'_>>, op: u8) -> Result<()> {
    let len = p.exchange_lengths(3)?[0].min(64);
    let values: Vec<f64> = (0..len).map(|i| i as f64 - 1.5).collect();
    let x = p.input(0, (p.id() == 0).then_some(&values[..]), len)?;
    let y = p.input(
        p.parties() - 1,
        (p.id() == p.parties() - 1).then_some(&values[..]),
        len,
    )?;
    match op % 8 {
        0 => p.mul(&x, &y).map(drop),
        1 => p.ltz(&x).map(drop),
        2 => p.eqz(&x).map(drop),
        3 => p.relu(&x).map(drop),
        4 => p.argmax(&x).map(drop),
        5 => p.exp(&x).map(drop),
        6 => p.matmul(&x, &y, 1, len, 1).map(drop),
        _ => {
            let s = p.square(&x)?;
            p.open(&s).map(drop)
        }
    }
}

/// One fuzz input: must never panic.
pub fn run(data: &[u8]) {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let n = 2 + usize::from(head % 2);
    let id = usize::from(head >> 4) % n;
    let ex = Hostile {
        id,
        n,
        data: rest,
        requests: VecDeque::new(),
    };
    if head & 0b100 != 0 {
        // PSI between two parties: party 0 receives, party 1 sends.
        let mut ex = Hostile {
            n: 2,
            id: id % 2,
            ..ex
        };
        let items: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 3]).collect();
        let _ = if ex.id == 0 {
            psi::receive(&mut ex, 1, &items, head & 0b1000 != 0).map(drop)
        } else {
            psi::send(&mut ex, 0, &items, head & 0b1000 != 0).map(drop)
        };
        return;
    }
    let op = ex.data.first().copied().unwrap_or(0);
    if let Ok(mut p) = Party::new(ex, &[7; 32], FixedPoint::default()) {
        let _ = program(&mut p, op);
    }
}
