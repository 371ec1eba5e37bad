//! Comparisons and what is built on them: `<`, `=`, sign, ReLU, max, argmax, max-pooling.
//!
//! The sign of `x` is its top bit. With a dealer mask `r` the parties open `c = x + r`
//! (uniformly random: it reveals nothing), so `x = c - r` and
//! `msb(x) = msb(c) ⊕ msb(r) ⊕ [c mod 2^63 < r mod 2^63]`. The dealer also gives `r`'s bits as
//! XOR shares, **bit-sliced** ([`crate::bits`]: one 64-bit word holds one bit of 64
//! elements). Against the *public* bits of `c`, "less than" and "equal" of each bit are local
//! (`r_i ∧ ¬c_i`, `r_i ⊕ c_i ⊕ 1`); the 63 bits combine in a tree of AND gates
//! (`lt = lt_hi ⊕ eq_hi ∧ lt_lo`, `eq = eq_hi ∧ eq_lo`), six rounds, each AND gate evaluated
//! for 64 elements by one word operation with a binary Beaver triple. The resulting XOR-shared
//! bit becomes an additive one with a daBit (one more round). A comparison takes **8 rounds**
//! (open, six tree levels, the conversion), sends about 38 bytes per party and takes about 31
//! bytes of correction from the dealer, for every `x` in the ring with no range assumption.
//! Results are shared bits (0 or 1 as ring integers), usable directly as multiplicands.

use crate::bits;
use crate::dealer::{Material, Request};
use crate::error::{MpcError, Result};
use crate::protocol::{Exchange, Party, Shared};

fn add(a: u64, b: u64) -> u64 {
    a.wrapping_add(b)
}

/// XOR-shared bit planes of one block of a comparison tree: "less than" and (unless the
/// block is the lowest, whose "equal" is never needed) "equal".
type Block = (Vec<u64>, Option<Vec<u64>>);

impl<E: Exchange> Party<E> {
    /// Broadcasts XOR shares and returns their XOR (a binary opening).
    fn open_xor(&mut self, mine: &[u64]) -> Result<Vec<u64>> {
        self.open_with(mine, |t, x| *t ^= x)
    }

    /// `x ∧ y` on XOR-shared bit-words, 64 gates per word (one round, binary Beaver triple).
    fn and_bits(&mut self, x: &[u64], y: &[u64]) -> Result<Vec<u64>> {
        let words = x.len();
        if y.len() != words {
            return Err(MpcError::Shape(format!(
                "AND of {words} and {} words",
                y.len()
            )));
        }
        let request = Request::BinaryTriples { words };
        let mut material = self.material_begin(&request)?;
        let Material::BinaryTriple { a, b, .. } = &material else {
            return Err(MpcError::Dealer("wrong material".into()));
        };
        let mut mine = Vec::with_capacity(2 * words);
        mine.extend(x.iter().zip(a).map(|(x, a)| x ^ a));
        mine.extend(y.iter().zip(b).map(|(y, b)| y ^ b));
        let opened = self.open_xor(&mine)?;
        self.material_end(&request, &mut material)?;
        let Material::BinaryTriple { a, b, c } = material else {
            return Err(MpcError::Dealer("wrong material".into()));
        };
        let (d, e) = opened.split_at(words);
        let first = self.id() == 0;
        Ok((0..words)
            .map(|k| {
                // x ∧ y = (d ⊕ a) ∧ (e ⊕ b) = c ⊕ d∧b ⊕ e∧a ⊕ d∧e
                let z = c[k] ^ (d[k] & b[k]) ^ (e[k] & a[k]);
                if first {
                    z ^ (d[k] & e[k])
                } else {
                    z
                }
            })
            .collect())
    }

    /// Opens `x + r` for a comparison mask; returns `c` and the mask material.
    fn masked_open(&mut self, x: &Shared) -> Result<(Vec<u64>, Material)> {
        let n = x.len();
        let request = Request::Comparison { n };
        let mut material = self.material_begin(&request)?;
        let Material::Comparison { r, .. } = &material else {
            return Err(MpcError::Dealer("wrong material".into()));
        };
        let masked: Vec<u64> = x.share().iter().zip(r).map(|(a, b)| add(*a, *b)).collect();
        let c = self.open_vec(&masked)?;
        self.material_end(&request, &mut material)?;
        Ok((c, material))
    }

    /// The additive share (0 or 1 as a ring element) of each XOR-shared bit of `plane`, with
    /// the mask's daBits: opens `e = b ⊕ s` (one round) and computes `e + s - 2·e·s`.
    fn bits_to_ring(&mut self, plane: &[u64], mask: &Material, n: usize) -> Result<Shared> {
        let Material::Comparison { s_bits, s, .. } = mask else {
            return Err(MpcError::Dealer("wrong material".into()));
        };
        let masked: Vec<u64> = plane.iter().zip(s_bits).map(|(b, s)| b ^ s).collect();
        let e = self.open_xor(&masked)?;
        let first = u64::from(self.id() == 0);
        Ok(Shared::from_share(
            (0..n)
                .map(|i| {
                    if bits::bit(&e, i) == 1 {
                        first.wrapping_sub(s[i])
                    } else {
                        s[i]
                    }
                })
                .collect(),
        ))
    }

    /// Combines blocks (least significant first) pairwise until one remains; returns its
    /// "less than". One round per level; an odd top block passes up unchanged.
    fn lt_tree(&mut self, mut blocks: Vec<Block>, w: usize) -> Result<Vec<u64>> {
        while blocks.len() > 1 {
            let pairs = blocks.len() / 2;
            let mut left = Vec::with_capacity(2 * pairs * w);
            let mut right = Vec::with_capacity(2 * pairs * w);
            let missing = || MpcError::Dealer("comparison tree out of shape".into());
            for p in 0..pairs {
                // eq_hi ∧ lt_lo
                left.extend_from_slice(blocks[2 * p + 1].1.as_ref().ok_or_else(missing)?);
                right.extend_from_slice(&blocks[2 * p].0);
            }
            for p in 1..pairs {
                // eq_hi ∧ eq_lo
                left.extend_from_slice(blocks[2 * p + 1].1.as_ref().ok_or_else(missing)?);
                right.extend_from_slice(blocks[2 * p].1.as_ref().ok_or_else(missing)?);
            }
            let prod = self.and_bits(&left, &right)?;
            let mut next: Vec<Block> = Vec::with_capacity(pairs + 1);
            for p in 0..pairs {
                let lt: Vec<u64> = blocks[2 * p + 1]
                    .0
                    .iter()
                    .zip(&prod[p * w..(p + 1) * w])
                    .map(|(a, b)| a ^ b)
                    .collect();
                let eq = (p > 0).then(|| {
                    let base = (pairs + p - 1) * w;
                    prod[base..base + w].to_vec()
                });
                next.push((lt, eq));
            }
            if blocks.len() % 2 == 1 {
                if let Some(top) = blocks.pop() {
                    next.push(top);
                }
            }
            blocks = next;
        }
        Ok(blocks.pop().map(|b| b.0).unwrap_or_default())
    }

    /// ANDs planes pairwise until one remains (one round per level).
    fn and_tree(&mut self, mut planes: Vec<Vec<u64>>, w: usize) -> Result<Vec<u64>> {
        while planes.len() > 1 {
            let pairs = planes.len() / 2;
            let (mut left, mut right) = (Vec::new(), Vec::new());
            for p in 0..pairs {
                left.extend_from_slice(&planes[2 * p]);
                right.extend_from_slice(&planes[2 * p + 1]);
            }
            let prod = self.and_bits(&left, &right)?;
            let mut next: Vec<Vec<u64>> = prod.chunks(w.max(1)).map(<[u64]>::to_vec).collect();
            next.truncate(pairs);
            if planes.len() % 2 == 1 {
                if let Some(top) = planes.pop() {
                    next.push(top);
                }
            }
            planes = next;
        }
        Ok(planes.pop().unwrap_or_default())
    }

    /// What [`Party::ltz`] takes from the dealer for `n` elements, in order.
    fn ltz_requests(n: usize) -> Vec<Request> {
        let w = bits::words(n);
        let mut out = vec![Request::Comparison { n }];
        let mut blocks = 63;
        while blocks > 1 {
            let pairs = blocks / 2;
            out.push(Request::BinaryTriples {
                words: (2 * pairs - 1) * w,
            });
            blocks = pairs + blocks % 2;
        }
        out
    }

    /// What [`Party::eqz`] takes from the dealer for `n` elements, in order.
    fn eqz_requests(n: usize) -> Vec<Request> {
        let w = bits::words(n);
        let mut out = vec![Request::Comparison { n }];
        let mut planes = 64;
        while planes > 1 {
            out.push(Request::BinaryTriples {
                words: planes / 2 * w,
            });
            planes = planes / 2 + planes % 2;
        }
        out
    }

    /// Shares of `[x < 0]` (0 or 1) for every element (8 rounds).
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
            let n = x.len();
            let w = bits::words(n);
            let (c, mask) = self.masked_open(x)?;
            let Material::Comparison { r_bits, .. } = &mask else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let c_bits = bits::to_planes(&c);
            let first = self.id() == 0;
            // Bit i of the low 63: lt_i = r_i ∧ ¬c_i, eq_i = r_i ⊕ c_i ⊕ 1 (c public).
            let blocks: Vec<Block> = (0..63)
                .map(|i| {
                    let (r, c) = (&r_bits[i * w..(i + 1) * w], &c_bits[i * w..(i + 1) * w]);
                    let lt = r.iter().zip(c).map(|(r, c)| r & !c).collect();
                    let eq = (i > 0).then(|| {
                        r.iter()
                            .zip(c)
                            .map(|(r, c)| if first { r ^ !c } else { *r })
                            .collect()
                    });
                    (lt, eq)
                })
                .collect();
            let borrow = self.lt_tree(blocks, w)?;
            // msb(x) = msb(c) ⊕ msb(r) ⊕ borrow.
            let msb: Vec<u64> = (0..w)
                .map(|k| {
                    let v = r_bits[63 * w + k] ^ borrow[k];
                    if first {
                        v ^ c_bits[63 * w + k]
                    } else {
                        v
                    }
                })
                .collect();
            self.bits_to_ring(&msb, &mask, n)
        })();
        self.end(outer);
        out
    }

    /// Shares of `[x < y]` element-wise.
    pub fn lt(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        let d = self.sub(x, y)?;
        self.ltz(&d)
    }

    /// Shares of `[x = 0]` (0 or 1) for every element (8 rounds): `x = 0` exactly when all 64
    /// bits of `c = x + r` equal those of `r`.
    pub fn eqz(&mut self, x: &Shared) -> Result<Shared> {
        let outer = self.begin("eq");
        let out = (|| {
            let n = x.len();
            let w = bits::words(n);
            self.prefetch(&Self::eqz_requests(n))?;
            let (c, mask) = self.masked_open(x)?;
            let Material::Comparison { r_bits, .. } = &mask else {
                return Err(MpcError::Dealer("wrong material".into()));
            };
            let c_bits = bits::to_planes(&c);
            let first = self.id() == 0;
            let planes: Vec<Vec<u64>> = (0..64)
                .map(|i| {
                    let (r, c) = (&r_bits[i * w..(i + 1) * w], &c_bits[i * w..(i + 1) * w]);
                    r.iter()
                        .zip(c)
                        .map(|(r, c)| if first { r ^ !c } else { *r })
                        .collect()
                })
                .collect();
            let eq = self.and_tree(planes, w)?;
            self.bits_to_ring(&eq, &mask, n)
        })();
        self.end(outer);
        out
    }

    /// Shares of `[x = y]` element-wise.
    pub fn eq(&mut self, x: &Shared, y: &Shared) -> Result<Shared> {
        let d = self.sub(x, y)?;
        self.eqz(&d)
    }

    /// The sign of each element: -1, 0 or 1 (as ring integers; 16 rounds, the two tests run
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

    /// `max(x, 0)` element-wise (9 rounds).
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

    /// `max(x, y)` element-wise (9 rounds).
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

    /// For each of `groups` consecutive groups of `width` elements, the maximum: a
    /// tournament of `⌈log2 width⌉` levels (a comparison and a selection each, 9 rounds), all
    /// groups in parallel. Cheaper than [`Party::max_argmax_groups`], which also carries the
    /// position. Exact when the differences of the compared values stay below `2^62` ring
    /// units.
    pub fn max_groups(&mut self, x: &Shared, groups: usize, width: usize) -> Result<Shared> {
        if width == 0 || groups.saturating_mul(width) != x.len() {
            return Err(MpcError::Shape(format!(
                "{} elements are not {groups} groups of {width}",
                x.len()
            )));
        }
        let outer = self.begin("max");
        let out = (|| {
            let mut values: Vec<Vec<u64>> = x.share().chunks(width).map(<[u64]>::to_vec).collect();
            let mut len = width;
            while len > 1 {
                let pairs = len / 2;
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for group in &values {
                    for pair in group.chunks_exact(2) {
                        a.push(pair[0]);
                        b.push(pair[1]);
                    }
                }
                let diffs: Vec<u64> = a.iter().zip(&b).map(|(x, y)| y.wrapping_sub(*x)).collect();
                let a_lt_b = self.lt(&Shared::from_share(a.clone()), &Shared::from_share(b))?;
                let prod = self.mul_raw(&a_lt_b, &Shared::from_share(diffs))?;
                for (g, group) in values.iter_mut().enumerate() {
                    let mut next: Vec<u64> = (0..pairs)
                        .map(|p| add(a[g * pairs + p], prod.share()[g * pairs + p]))
                        .collect();
                    if len % 2 == 1 {
                        next.push(group[len - 1]);
                    }
                    *group = next;
                }
                len = len.div_ceil(2);
            }
            Ok(Shared::from_share(values.iter().map(|v| v[0]).collect()))
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
        let out = self.max_groups(&Shared::from_share(windows), oh * ow, k * k);
        self.end(outer);
        out
    }
}
