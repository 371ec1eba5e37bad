//! Comparisons and what is built on them: `<`, `=`, sign, ReLU, max, argmax, max-pooling.
//!
//! The sign of `x` is its top bit. With a dealer mask `r` the parties open `c = x + r`
//! (uniformly random: it reveals nothing), so `x = c - r` and
//! `msb(x) = msb(c) ⊕ msb(r) ⊕ [c mod 2^63 < r mod 2^63]`. The dealer gives the bits of `r`'s
//! low 63 bits as one-hot encodings of 4-bit chunks: against the *public* chunk of `c`, "less
//! than" and "equal" of each chunk are sums of one-hot entries — no communication — and the 16
//! chunks combine from the top in a tree of Beaver products (`lt = lt_hi + eq_hi · lt_lo`,
//! `eq = eq_hi · eq_lo`), four rounds. A comparison takes **6 rounds** in all (open, four tree
//! levels, the final XOR), independent of the bit length's logarithm of a binary adder, and
//! works for every `x` in the ring, with no range assumption. Results are shared bits (0 or 1
//! as ring integers), usable directly as multiplicands.

use crate::dealer::{Material, Request, COMPARISON_CHUNKS, ONE_HOT_LEN};
use crate::error::{MpcError, Result};
use crate::protocol::{Exchange, Party, Shared};

fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

impl<E: Exchange> Party<E> {
    /// Opens `x + r` for a comparison mask; returns `c` and the mask material.
    fn masked_open(&mut self, x: &Shared) -> Result<(Vec<u64>, Vec<u64>, Vec<u64>)> {
        let n = x.len();
        let request = Request::Comparison { n };
        let mut material = self.material_begin(&request)?;
        let Material::Comparison { r, .. } = &material else {
            return Err(MpcError::Dealer("wrong material".into()));
        };
        let masked: Vec<u64> = x.share().iter().zip(r).map(|(a, b)| add(*a, *b)).collect();
        let c = self.open_vec(&masked)?;
        self.material_end(&request, &mut material)?;
        let Material::Comparison { one_hot, msb, .. } = material else {
            return Err(MpcError::Dealer("wrong material".into()));
        };
        Ok((c, one_hot, msb))
    }

    /// What [`Party::ltz`] takes from the dealer for `n` elements, in order.
    fn ltz_requests(n: usize) -> Vec<Request> {
        let mut out = vec![Request::Comparison { n }];
        let mut blocks = COMPARISON_CHUNKS.len();
        while blocks > 1 {
            // One product per pair for "less than", one per pair but the lowest for "equal".
            out.push(Request::Triples {
                n: (blocks - 1) * n,
            });
            blocks /= 2;
        }
        out.push(Request::Triples { n });
        out
    }

    /// What [`Party::eqz`] takes from the dealer for `n` elements, in order.
    fn eqz_requests(n: usize) -> Vec<Request> {
        let mut out = vec![Request::Comparison { n }];
        let mut blocks = COMPARISON_CHUNKS.len() + 1;
        while blocks > 1 {
            out.push(Request::Triples { n: blocks / 2 * n });
            blocks = blocks / 2 + blocks % 2;
        }
        out
    }

    /// Per element and chunk (least significant first): shares of `[c_j < r_j]` and
    /// `[c_j = r_j]` — linear in the one-hot shares.
    fn chunk_relations(c: &[u64], one_hot: &[u64]) -> (Vec<Vec<u64>>, Vec<Vec<u64>>) {
        let mut lt = vec![Vec::with_capacity(c.len()); COMPARISON_CHUNKS.len()];
        let mut eq = vec![Vec::with_capacity(c.len()); COMPARISON_CHUNKS.len()];
        for (i, c) in c.iter().enumerate() {
            let oh = &one_hot[i * ONE_HOT_LEN..(i + 1) * ONE_HOT_LEN];
            let (mut shift, mut offset) = (0u32, 0usize);
            for (j, w) in COMPARISON_CHUNKS.iter().enumerate() {
                let size = 1usize << w;
                let cj = ((c >> shift) & ((1u64 << w) - 1)) as usize;
                let chunk = &oh[offset..offset + size];
                lt[j].push(chunk[cj + 1..].iter().fold(0u64, |a, b| add(a, *b)));
                eq[j].push(chunk[cj]);
                shift += w;
                offset += size;
            }
        }
        (lt, eq)
    }

    /// Shares of `[x < 0]` (0 or 1) for every element (6 rounds).
    pub fn ltz(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("lt");
        let out = self
            .prefetch(&Self::ltz_requests(x.len()))
            .and_then(|()| self.ltz_prefetched(x));
        self.end(outer);
        out
    }

    /// [`Party::ltz`] once its dealer requests are sent.
    fn ltz_prefetched(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("lt");
        let out = (|| {
            let (c, one_hot, r_msb) = self.masked_open(x)?;
            let (mut lt, mut eq) = Self::chunk_relations(&c, &one_hot);
            let n = c.len();
            // Combine adjacent blocks (hi = odd index) until one remains: 4 rounds. The lowest
            // block's "equal" is never needed (nothing below it to carry into).
            eq[0] = Vec::new();
            while lt.len() > 1 {
                let pairs = lt.len() / 2;
                let mut left = Vec::with_capacity((2 * pairs - 1) * n);
                let mut right = Vec::with_capacity((2 * pairs - 1) * n);
                for p in 0..pairs {
                    // eq_hi · lt_lo
                    left.extend_from_slice(&eq[2 * p + 1]);
                    right.extend_from_slice(&lt[2 * p]);
                }
                for p in 1..pairs {
                    // eq_hi · eq_lo
                    left.extend_from_slice(&eq[2 * p + 1]);
                    right.extend_from_slice(&eq[2 * p]);
                }
                let prod = self.mul_raw(&Shared::from_share(left), &Shared::from_share(right))?;
                let mut next_lt = Vec::with_capacity(pairs);
                let mut next_eq = vec![Vec::new()];
                for p in 0..pairs {
                    let lt_lo_term = &prod.share()[p * n..(p + 1) * n];
                    next_lt.push(
                        lt[2 * p + 1]
                            .iter()
                            .zip(lt_lo_term)
                            .map(|(a, b)| add(*a, *b))
                            .collect(),
                    );
                    if p > 0 {
                        let base = (pairs + p - 1) * n;
                        next_eq.push(prod.share()[base..base + n].to_vec());
                    }
                }
                lt = next_lt;
                eq = next_eq;
            }
            let borrow = lt.pop().unwrap_or_default();
            // msb(x) = s ⊕ borrow with s = msb(c) ⊕ msb(r) (linear in msb(r)); a ⊕ b = a + b - 2ab.
            let me = self.id();
            let s: Vec<u64> = c
                .iter()
                .zip(&r_msb)
                .map(|(c, m)| {
                    if c >> 63 == 0 {
                        *m
                    } else {
                        let one = u64::from(me == 0);
                        one.wrapping_sub(*m)
                    }
                })
                .collect();
            let sb = self.mul_raw(
                &Shared::from_share(s.clone()),
                &Shared::from_share(borrow.clone()),
            )?;
            Ok(Shared::from_share(
                s.iter()
                    .zip(&borrow)
                    .zip(sb.share())
                    .map(|((s, b), p)| add(*s, *b).wrapping_sub(p.wrapping_mul(2)))
                    .collect(),
            ))
        })();
        self.end(outer);
        out
    }

    /// Shares of `[x < y]` element-wise.
    pub fn lt(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        let d = self.sub(x, y)?;
        self.ltz(&d)
    }

    /// Shares of `[x = 0]` (0 or 1) for every element (6 rounds).
    pub fn eqz(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("eq");
        let out = (|| {
            self.prefetch(&Self::eqz_requests(x.len()))?;
            let (c, one_hot, r_msb) = self.masked_open(x)?;
            let (_, mut eq) = Self::chunk_relations(&c, &one_hot);
            let me = self.id();
            // The top bit must match too: [c_63 = r_63].
            eq.push(
                c.iter()
                    .zip(&r_msb)
                    .map(|(c, m)| {
                        if c >> 63 == 1 {
                            *m
                        } else {
                            u64::from(me == 0).wrapping_sub(*m)
                        }
                    })
                    .collect(),
            );
            let n = c.len();
            while eq.len() > 1 {
                let pairs = eq.len() / 2;
                let (mut left, mut right) = (Vec::new(), Vec::new());
                for p in 0..pairs {
                    left.extend_from_slice(&eq[2 * p]);
                    right.extend_from_slice(&eq[2 * p + 1]);
                }
                let prod = self.mul_raw(&Shared::from_share(left), &Shared::from_share(right))?;
                let mut next: Vec<Vec<u64>> =
                    prod.share().chunks(n.max(1)).map(<[u64]>::to_vec).collect();
                next.truncate(pairs);
                if eq.len() % 2 == 1 {
                    if let Some(last) = eq.pop() {
                        next.push(last);
                    }
                }
                eq = next;
            }
            Ok(Shared::from_share(eq.pop().unwrap_or_default()))
        })();
        self.end(outer);
        out
    }

    /// Shares of `[x = y]` element-wise.
    pub fn eq(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        let d = self.sub(x, y)?;
        self.eqz(&d)
    }

    /// The sign of each element: -1, 0 or 1 (as ring integers; 12 rounds, the two tests run
    /// one after the other).
    pub fn sign(&mut self, x: &Shared) -> Result<Shared> {
        let neg = self.ltz(x)?;
        let zero = self.eqz(x)?;
        // sign = 1 - 2·neg - zero
        let one = self.constant_raw(&vec![1; x.len()]);
        let two_neg = self.mul_public_int(&neg, &vec![2; x.len()])?;
        let t = self.sub(&one, &two_neg)?;
        self.sub(&t, &zero)
    }

    /// `b ? x : y` element-wise for shared bits `b` (one round): `y + b·(x - y)`.
    pub fn select(&mut self, b: &Shared, x: &Shared, y: &Shared) -> Result<Shared> {
        let d = self.sub(x, y)?;
        let bd = self.mul_raw(b, &d)?;
        self.add(y, &bd)
    }

    /// `max(x, 0)` element-wise (7 rounds).
    pub fn relu(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("relu");
        let out = (|| {
            let mut requests = Self::ltz_requests(x.len());
            requests.push(Request::Triples { n: x.len() });
            self.prefetch(&requests)?;
            let neg = self.ltz_prefetched(x)?;
            let one = self.constant_raw(&vec![1; x.len()]);
            let pos = self.sub(&one, &neg)?;
            self.mul_raw(x, &pos)
        })();
        self.end(outer);
        out
    }

    /// `max(x, y)` element-wise (7 rounds).
    pub fn max2(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        let x_lt_y = self.lt(x, y)?;
        self.select(&x_lt_y, y, x)
    }

    /// For each of `groups` consecutive groups of `width` elements: the maximum and the
    /// one-hot position of (the first) maximum. A tournament: `⌈log2 width⌉` comparison
    /// levels, all groups in parallel.
    pub fn max_argmax_groups(
        &mut self,
        x: &Shared,
        groups: usize,
        width: usize,
    ) -> Result<(Shared, Shared)> {
        if width == 0 || groups.saturating_mul(width) != x.len() {
            return Err(MpcError::Shape(format!(
                "{} elements are not {groups} groups of {width}",
                x.len()
            )));
        }
        let outer = self.begin("argmax");
        let out = (|| {
            // Candidates: per group, a list of (value, one-hot index vector of length width).
            let me = self.id();
            let mut values: Vec<Vec<u64>> = (0..groups)
                .map(|g| x.share()[g * width..(g + 1) * width].to_vec())
                .collect();
            let mut index: Vec<Vec<Vec<u64>>> = (0..groups)
                .map(|_| {
                    (0..width)
                        .map(|i| {
                            let mut v = vec![0u64; width];
                            v[i] = u64::from(me == 0);
                            v
                        })
                        .collect()
                })
                .collect();
            while values[0].len() > 1 {
                let len = values[0].len();
                let pairs = len / 2;
                // Compare first-of-pair with second-of-pair across all groups.
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for group in &values {
                    for pair in group.chunks_exact(2) {
                        a.push(pair[0]);
                        b.push(pair[1]);
                    }
                }
                let sa = Shared::from_share(a.clone());
                let sb = Shared::from_share(b.clone());
                let a_lt_b = self.lt(&sa, &sb)?;
                // Select values and index vectors in one round.
                let (mut bits, mut diffs) = (Vec::new(), Vec::new());
                for (g, candidates) in index.iter().enumerate() {
                    for (p, pair) in candidates.chunks_exact(2).enumerate() {
                        let k = g * pairs + p;
                        let bit = a_lt_b.share()[k];
                        bits.push(bit);
                        diffs.push(b[k].wrapping_sub(a[k]));
                        for (hi, lo) in pair[1].iter().zip(&pair[0]) {
                            bits.push(bit);
                            diffs.push(hi.wrapping_sub(*lo));
                        }
                    }
                }
                let prod = self.mul_raw(&Shared::from_share(bits), &Shared::from_share(diffs))?;
                let mut at = 0;
                for g in 0..groups {
                    let mut nv = Vec::with_capacity(pairs + 1);
                    let mut ni = Vec::with_capacity(pairs + 1);
                    for p in 0..pairs {
                        nv.push(add(values[g][2 * p], prod.share()[at]));
                        at += 1;
                        let idx: Vec<u64> = (0..width)
                            .map(|i| add(index[g][2 * p][i], prod.share()[at + i]))
                            .collect();
                        at += width;
                        ni.push(idx);
                    }
                    if len % 2 == 1 {
                        nv.push(values[g][len - 1]);
                        ni.push(index[g][len - 1].clone());
                    }
                    values[g] = nv;
                    index[g] = ni;
                }
            }
            let max = Shared::from_share(values.iter().map(|v| v[0]).collect());
            let onehot =
                Shared::from_share(index.into_iter().flat_map(|mut v| v.remove(0)).collect());
            Ok((max, onehot))
        })();
        self.end(outer);
        out
    }

    /// The maximum of a vector (1 element) and the one-hot position of its first maximum.
    pub fn argmax(&mut self, x: &Shared) -> Result<(Shared, Shared)> {
        self.max_argmax_groups(x, 1, x.len())
    }

    /// Max-pooling of a `height × width` row-major image with a `k × k` window and stride `k`
    /// (the edges that do not fill a window are dropped).
    pub fn max_pool2d(
        &mut self,
        x: &Shared,
        height: usize,
        width: usize,
        k: usize,
    ) -> Result<Shared> {
        if k == 0 || height.saturating_mul(width) != x.len() || k > height || k > width {
            return Err(MpcError::Shape(format!(
                "{} elements as {height} × {width} pooled by {k}",
                x.len()
            )));
        }
        let (oh, ow) = (height / k, width / k);
        let mut windows = Vec::with_capacity(oh * ow * k * k);
        for i in 0..oh {
            for j in 0..ow {
                for di in 0..k {
                    for dj in 0..k {
                        windows.push(x.share()[(i * k + di) * width + j * k + dj]);
                    }
                }
            }
        }
        let outer = self.begin("maxpool");
        let out = self
            .max_argmax_groups(&Shared::from_share(windows), oh * ow, k * k)
            .map(|(m, _)| m);
        self.end(outer);
        out
    }
}
