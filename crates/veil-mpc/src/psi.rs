//! Private set intersection (Diffie–Hellman over Ristretto255, `curve25519-dalek`).
//!
//! The receiver hashes its identifiers to the group and blinds them with a secret `a`; the
//! sender blinds those again with its secret `b` and sends them back (in order — or shuffled
//! for `cardinality_only`), together with its own identifiers hashed and blinded by `b`,
//! shuffled. The receiver raises the latter to `a` and compares: `a·b·H(x) = b·a·H(y)` exactly
//! when `x = y`. The receiver learns the intersection (or only its size) and the sender's set
//! size; the sender learns the receiver's set size and nothing else (semi-honest parties; the
//! messages travel over the same mutually authenticated TLS transport as the other
//! protocols). Two rounds.
//!
//! **Normalisation.** Identifiers match only if their bytes are equal after hashing, so
//! `Ann@Example.com` and `ann@example.com` are different unless both sides map them to the
//! same form first. [`Normalization`] makes that explicit and selectable: trimming white
//! space, case folding, Unicode NFKC. Both sides must use the same — the CLI puts it in the
//! session's program, which every participant compares at connection time — and a party
//! that normalises differently simply finds fewer matches (nothing else is revealed).
//! Normalisation is not canonicalisation of e-mail addresses (dots and `+tags` of some
//! providers, internationalised domain names are left as they are).

use std::collections::HashSet;

use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::Scalar;
use rand_core::{RngCore, TryRngCore};
use rayon::prelude::*;
use sha2::Sha512;
use zeroize::Zeroizing;

use crate::error::{MpcError, Result};
use crate::protocol::Exchange;

/// Largest set a party may bring.
pub const MAX_SET: usize = 1 << 24;

/// How identifiers are normalised before they are hashed. Every side of an intersection must
/// use the same. The default is [`Normalization::TRIM`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Normalization {
    /// Remove leading and trailing white space (Unicode `White_Space`).
    pub trim: bool,
    /// Fold case: the full Unicode uppercase mapping, then the lowercase one, so that
    /// `Ann`, `ANN` and `ann` match, as do `STRASSE`, `Straße` and `strasse`, and `ς`/`σ`.
    /// (Locale-independent: Turkish dotted and dotless `i` stay apart.)
    pub case_fold: bool,
    /// Unicode normalisation form NFKC (compatibility composition): full-width `ａｎｎ` is
    /// `ann`, the ligature `ﬁ` is `fi`, a precomposed `é` equals `e` + combining accent.
    pub nfkc: bool,
}

impl Default for Normalization {
    fn default() -> Self {
        Self::TRIM
    }
}

impl Normalization {
    /// Bytes as given.
    pub const NONE: Self = Self {
        trim: false,
        case_fold: false,
        nfkc: false,
    };
    /// White space trimmed (what `veil psi` always did).
    pub const TRIM: Self = Self {
        trim: true,
        case_fold: false,
        nfkc: false,
    };
    /// Everything: trimmed, NFKC, case folded — for e-mail addresses and names.
    pub const ALL: Self = Self {
        trim: true,
        case_fold: true,
        nfkc: true,
    };

    /// Parses a comma-separated list of `trim`, `casefold`, `nfkc` (or `none`).
    pub fn parse(text: &str) -> Result<Self> {
        let mut n = Self::NONE;
        for part in text
            .split([',', '+'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            match part {
                "none" => {}
                "trim" => n.trim = true,
                "casefold" | "case-fold" | "lowercase" => n.case_fold = true,
                "nfkc" => n.nfkc = true,
                other => {
                    return Err(MpcError::InvalidParameter(format!(
                        "unknown normalisation {other:?}: use trim, casefold, nfkc or none"
                    )))
                }
            }
        }
        Ok(n)
    }

    /// Normalises one identifier: NFKC, then case folding (and NFKC again, as folding can
    /// undo it), then trimming.
    pub fn apply(&self, item: &str) -> String {
        use unicode_normalization::UnicodeNormalization;
        let mut s = if self.nfkc {
            item.nfkc().collect()
        } else {
            item.to_string()
        };
        if self.case_fold {
            s = s.to_uppercase().to_lowercase();
            if self.nfkc {
                s = s.nfkc().collect();
            }
        }
        if self.trim {
            s = s.trim().to_string();
        }
        s
    }

    /// A party's set as it is intersected: each identifier normalised, the empty ones
    /// dropped (`veil psi` reads one per line; Python's `veil.mpc.psi` takes a list).
    pub fn identifiers<'a>(&self, items: impl IntoIterator<Item = &'a str>) -> Vec<Vec<u8>> {
        items
            .into_iter()
            .map(|i| self.apply(i))
            .filter(|i| !i.is_empty())
            .map(String::into_bytes)
            .collect()
    }
}

/// The canonical name (`trim+casefold+nfkc`, `none`), as it goes into a session's program.
impl std::fmt::Display for Normalization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<&str> = [
            (self.trim, "trim"),
            (self.case_fold, "casefold"),
            (self.nfkc, "nfkc"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        if parts.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&parts.join("+"))
        }
    }
}

/// The session program of an intersection (or of its size only) under `normalization`: what
/// both sides announce when they connect, so that a side with other options is refused
/// before anything is sent (`veil psi` and Python's `veil.mpc.psi` use the same).
pub fn program(normalization: Normalization, cardinality_only: bool) -> String {
    format!(
        "psi{} normalize={normalization}",
        if cardinality_only { " cardinality" } else { "" }
    )
}

/// What the receiver learns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PsiOutcome {
    /// The common identifiers (empty when only the size was asked for).
    pub intersection: Vec<Vec<u8>>,
    /// How many identifiers the sets share.
    pub size: usize,
    /// How many (distinct) identifiers the other party has.
    pub other_set_size: usize,
}

fn secret_scalar() -> Result<Zeroizing<Scalar>> {
    let mut wide = Zeroizing::new([0u8; 64]);
    rand_core::OsRng
        .try_fill_bytes(wide.as_mut())
        .map_err(|e| MpcError::InvalidParameter(format!("no system randomness: {e}")))?;
    Ok(Zeroizing::new(Scalar::from_bytes_mod_order_wide(&wide)))
}

fn hash_to_group(item: &[u8]) -> RistrettoPoint {
    use sha2::Digest;
    RistrettoPoint::from_hash(
        Sha512::new()
            .chain_update(b"veil-psi-v1\0")
            .chain_update(item),
    )
}

/// Half of a secret scalar: `P · (s/2)` is computed, and doubling it on the way to the
/// compressed encoding (batched, one field inversion per batch instead of one per point)
/// gives `P · s`.
fn halve(s: &Scalar) -> Zeroizing<Scalar> {
    Zeroizing::new(s * Scalar::from(2u8).invert())
}

/// Points per batch of compression.
const BATCH: usize = 256;

/// `compress(P · s)` for every `P`, given `half = s/2`.
fn blind_all(points: &[RistrettoPoint], half: &Scalar) -> Vec<CompressedRistretto> {
    points
        .par_chunks(BATCH)
        .flat_map_iter(|chunk| {
            let halves: Vec<RistrettoPoint> = chunk.iter().map(|p| p * half).collect();
            RistrettoPoint::double_and_compress_batch(&halves)
        })
        .collect()
}

/// `compress(H(x) · s)` for every item, given `half = s/2`.
fn hash_and_blind(items: &[Vec<u8>], half: &Scalar) -> Vec<CompressedRistretto> {
    items
        .par_chunks(BATCH)
        .flat_map_iter(|chunk| {
            let halves: Vec<RistrettoPoint> =
                chunk.iter().map(|x| hash_to_group(x) * half).collect();
            RistrettoPoint::double_and_compress_batch(&halves)
        })
        .collect()
}

fn to_words(points: &[CompressedRistretto]) -> Vec<u64> {
    let mut out = Vec::with_capacity(points.len() * 4);
    for p in points {
        out.extend(p.as_bytes().chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        }));
    }
    out
}

/// Encodings of group elements, unchecked (for comparison only).
fn encodings(words: &[u64], party: usize, phase: &str) -> Result<Vec<[u8; 32]>> {
    if !words.len().is_multiple_of(4) || words.len() / 4 > MAX_SET {
        return Err(MpcError::Malformed {
            party,
            phase: phase.into(),
            why: "not a list of group elements".into(),
        });
    }
    Ok(words
        .chunks_exact(4)
        .map(|c| {
            let mut bytes = [0u8; 32];
            for (i, w) in c.iter().enumerate() {
                bytes[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
            }
            bytes
        })
        .collect())
}

fn from_words(words: &[u64], party: usize, phase: &str) -> Result<Vec<RistrettoPoint>> {
    encodings(words, party, phase)?
        .into_par_iter()
        .map(|bytes| {
            CompressedRistretto(bytes)
                .decompress()
                .ok_or_else(|| MpcError::Malformed {
                    party,
                    phase: phase.into(),
                    why: "a value is not a Ristretto255 point".into(),
                })
        })
        .collect()
}

fn dedup(items: &[Vec<u8>]) -> Result<Vec<Vec<u8>>> {
    let mut seen = HashSet::new();
    let out: Vec<Vec<u8>> = items.iter().filter(|i| seen.insert(*i)).cloned().collect();
    if out.len() > MAX_SET {
        return Err(MpcError::InvalidParameter(format!(
            "sets are limited to {MAX_SET} items"
        )));
    }
    Ok(out)
}

fn shuffle<T>(v: &mut [T]) -> Result<()> {
    let mut seed = [0u8; 32];
    rand_core::OsRng
        .try_fill_bytes(&mut seed)
        .map_err(|e| MpcError::InvalidParameter(format!("no system randomness: {e}")))?;
    let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::from_seed(seed);
    for i in (1..v.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    Ok(())
}

fn message_to(ex: &impl Exchange, to: usize, msg: Vec<u64>) -> Vec<Vec<u64>> {
    (0..ex.parties())
        .map(|j| if j == to { msg.clone() } else { Vec::new() })
        .collect()
}

/// The receiver's side: learns the intersection of `items` with the sender's set (or only
/// its size).
pub fn receive(
    ex: &mut impl Exchange,
    sender: usize,
    items: &[Vec<u8>],
    cardinality_only: bool,
) -> Result<PsiOutcome> {
    let items = dedup(items)?;
    let a = halve(&*secret_scalar()?);
    let blinded = hash_and_blind(&items, &a);
    ex.exchange("psi", message_to(ex, sender, to_words(&blinded)))?;
    let reply = ex.exchange("psi", message_to(ex, sender, Vec::new()))?;
    let msg = reply
        .get(sender)
        .ok_or_else(|| MpcError::InvalidParameter(format!("no party {sender}")))?;
    // [count of double-blinded receiver items][those][the sender's blinded items]
    let (&count, rest) = msg.split_first().ok_or_else(|| MpcError::Malformed {
        party: sender,
        phase: "psi".into(),
        why: "empty reply".into(),
    })?;
    if count as usize != items.len() || rest.len() < 4 * items.len() {
        return Err(MpcError::Malformed {
            party: sender,
            phase: "psi".into(),
            why: format!("{count} double-blinded items for {} sent", items.len()),
        });
    }
    let (double, theirs) = rest.split_at(4 * items.len());
    // Encodings are canonical: equal points have equal bytes, so the double-blinded items
    // are compared as received (a value that is no point matches nothing).
    let double = encodings(double, sender, "psi")?;
    let theirs = from_words(theirs, sender, "psi")?;
    let theirs: HashSet<[u8; 32]> = blind_all(&theirs, &a)
        .into_iter()
        .map(|c| c.to_bytes())
        .collect();
    let hits: Vec<usize> = double
        .iter()
        .enumerate()
        .filter(|(_, p)| theirs.contains(*p))
        .map(|(i, _)| i)
        .collect();
    Ok(PsiOutcome {
        size: hits.len(),
        intersection: if cardinality_only {
            Vec::new()
        } else {
            hits.into_iter().map(|i| items[i].clone()).collect()
        },
        other_set_size: theirs.len(),
    })
}

/// The sender's side: helps the receiver and learns only the receiver's set size.
pub fn send(
    ex: &mut impl Exchange,
    receiver: usize,
    items: &[Vec<u8>],
    cardinality_only: bool,
) -> Result<usize> {
    let items = dedup(items)?;
    let b = halve(&*secret_scalar()?);
    // The sender's own items do not depend on the receiver's message: blind them while the
    // receiver blinds its own.
    let mut mine = hash_and_blind(&items, &b);
    shuffle(&mut mine)?;
    let first = ex.exchange("psi", message_to(ex, receiver, Vec::new()))?;
    let theirs = from_words(
        first
            .get(receiver)
            .ok_or_else(|| MpcError::InvalidParameter(format!("no party {receiver}")))?,
        receiver,
        "psi",
    )?;
    let mut double = blind_all(&theirs, &b);
    if cardinality_only {
        shuffle(&mut double)?;
    }
    let mut msg = vec![double.len() as u64];
    msg.extend(to_words(&double));
    msg.extend(to_words(&mine));
    ex.exchange("psi", message_to(ex, receiver, msg))?;
    Ok(theirs.len())
}
