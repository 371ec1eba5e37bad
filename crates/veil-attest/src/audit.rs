//! Append-only, hash-chained audit logs (JSON lines).
//!
//! Every entry records its sequence number, time, event and details, plus the SHA-256 of the
//! previous line: editing, dropping or reordering an entry breaks the chain, which
//! [`verify_log`] detects. Both services append one entry per decision (a token issued or
//! refused, a secret released or refused), with the reason.
//!
//! **Threat model.** A chain alone proves nothing against whoever holds the file: the tail
//! can be cut, or the whole log rewritten and re-chained. Two things close that:
//!
//! - a writer with a key ([`AuditLog::with_signer`], Ed25519) signs every entry, so a
//!   rewrite needs the key;
//! - the writer signs **heads** ([`AuditLog::signed_head`], served at `GET /audit/head` by
//!   the attestation service and the key broker): the number of entries and the hash of the
//!   last line at a time. A reader who obtained a head (from the running service, or
//!   published somewhere the operator cannot rewrite) checks a copy of the log against it
//!   with [`verify_against_head`] (`veil attest verify-log`): a copy cut short, or a different
//!   history, does not match.
//!
//! Not protected: the holder of the signing key can sign any history and any head (a single
//! writer is trusted by whoever trusts its key; detecting a writer that shows different
//! heads to different readers needs witnesses that compare heads, as Certificate
//! Transparency's gossip does). Entries after the last head a reader saw are vouched for by
//! the key only.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Result, TeeError};

/// The `prev` of the first entry.
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log, from 0.
    pub seq: u64,
    /// Unix seconds.
    pub time: u64,
    /// What happened (`token_issued`, `attestation_refused`, `secret_released`, …).
    pub event: String,
    /// Details (claims, reasons, names).
    pub details: Value,
    /// SHA-256 (hex) of the previous line, or zeros for the first.
    pub prev: String,
    /// Ed25519 signature (hex) over this entry serialized without `sig`, when the log is
    /// signed (data rooms sign with the workload's attested audit key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<String>,
}

struct State {
    file: Option<File>,
    /// The lines of an in-memory log.
    memory: Vec<String>,
    seq: u64,
    prev: String,
}

/// An audit log appending to a file (or kept in memory only when no file is given).
pub struct AuditLog {
    path: Option<PathBuf>,
    state: Mutex<State>,
    signer: Option<ed25519_dalek::SigningKey>,
    /// Whether each append is flushed to the disk (`fsync`) before it returns.
    durable: bool,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish()
    }
}

impl AuditLog {
    /// Opens (or creates) the log at `path`, verifying the existing chain and continuing it.
    pub fn open(path: &Path) -> Result<Self> {
        let (seq, prev) = if path.exists() {
            let entries = verify_log(path)?;
            let last_line = last_line_hash(path)?;
            (entries.len() as u64, last_line)
        } else {
            (0, GENESIS.to_string())
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| TeeError::Audit(format!("{}: {e}", path.display())))?;
        Ok(Self {
            path: Some(path.to_path_buf()),
            state: Mutex::new(State {
                file: Some(file),
                memory: Vec::new(),
                seq,
                prev,
            }),
            signer: None,
            durable: false,
        })
    }

    /// A log that only chains entries in memory (nothing persisted): for tests and demos.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            state: Mutex::new(State {
                file: None,
                memory: Vec::new(),
                seq: 0,
                prev: GENESIS.to_string(),
            }),
            signer: None,
            durable: false,
        }
    }

    /// Signs every entry appended from now on with `key` (Ed25519).
    #[must_use]
    pub fn with_signer(mut self, key: ed25519_dalek::SigningKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// Makes every append reach the disk (`fsync`) before it returns, so that an entry a
    /// caller acted on survives a crash or power loss (data rooms with a state directory).
    #[must_use]
    pub fn durable(mut self) -> Self {
        self.durable = true;
        self
    }

    /// The number of entries and the SHA-256 (hex) of the last line: what the writer
    /// vouches for, so that a reader can detect a truncated copy.
    pub fn head(&self) -> (u64, String) {
        self.state
            .lock()
            .map_or_else(|_| (0, GENESIS.to_string()), |s| (s.seq, s.prev.clone()))
    }

    /// A signed head of the log as it is now (see [`SignedHead`]); an error for a log
    /// without a signing key.
    pub fn signed_head(&self, time: u64) -> Result<SignedHead> {
        use ed25519_dalek::Signer as _;
        let key = self
            .signer
            .as_ref()
            .ok_or_else(|| TeeError::Audit("this log has no signing key".into()))?;
        let (entries, last_hash) = self.head();
        let signature = key.sign(&SignedHead::message(entries, &last_hash, time));
        Ok(SignedHead {
            entries,
            last_hash,
            time,
            public_key: hex::encode(key.verifying_key().as_bytes()),
            signature: hex::encode(signature.to_bytes()),
        })
    }

    /// The Ed25519 public key entries and heads are signed with, if any.
    pub fn public_key(&self) -> Option<ed25519_dalek::VerifyingKey> {
        self.signer
            .as_ref()
            .map(ed25519_dalek::SigningKey::verifying_key)
    }

    /// The file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Number of entries written.
    pub fn len(&self) -> u64 {
        self.state.lock().map_or(0, |s| s.seq)
    }

    /// Whether nothing was written yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The whole log as text (JSON lines): the file's contents, or the in-memory lines.
    pub fn text(&self) -> Result<String> {
        match &self.path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| TeeError::Audit(format!("{}: {e}", p.display()))),
            None => self
                .state
                .lock()
                .map(|s| s.memory.concat())
                .map_err(|_| TeeError::Audit("a writer panicked".into())),
        }
    }

    /// Appends an entry. A decision must not be acted on if this fails.
    pub fn append(&self, time: u64, event: &str, details: Value) -> Result<()> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| TeeError::Audit("a writer panicked".into()))?;
        let mut entry = AuditEntry {
            seq: s.seq,
            time,
            event: event.to_string(),
            details,
            prev: s.prev.clone(),
            sig: None,
        };
        if let Some(key) = &self.signer {
            use ed25519_dalek::Signer as _;
            let unsigned =
                serde_json::to_vec(&entry).map_err(|e| TeeError::Audit(e.to_string()))?;
            entry.sig = Some(hex::encode(key.sign(&unsigned).to_bytes()));
        }
        let mut line = serde_json::to_string(&entry).map_err(|e| TeeError::Audit(e.to_string()))?;
        let hash = hex::encode(Sha256::digest(line.as_bytes()));
        line.push('\n');
        if let Some(f) = s.file.as_mut() {
            let durable = self.durable;
            f.write_all(line.as_bytes())
                .and_then(|()| f.flush())
                .and_then(|()| if durable { f.sync_data() } else { Ok(()) })
                .map_err(|e| TeeError::Audit(format!("write: {e}")))?;
        } else {
            s.memory.push(line);
        }
        s.seq += 1;
        s.prev = hash;
        Ok(())
    }
}

/// A writer's signed statement of its log: `entries` lines, the last of which hashes to
/// `last_hash`, as of `time`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHead {
    /// Number of entries.
    pub entries: u64,
    /// SHA-256 (hex) of the last line (zeros for an empty log).
    pub last_hash: String,
    /// When the head was signed (Unix seconds).
    pub time: u64,
    /// The writer's Ed25519 public key (hex).
    pub public_key: String,
    /// Ed25519 signature (hex) over [`SignedHead::message`].
    pub signature: String,
}

impl SignedHead {
    /// The signed bytes: a domain label, then the entry count, the time and the last hash.
    pub fn message(entries: u64, last_hash: &str, time: u64) -> Vec<u8> {
        let mut m = b"veil-audit-head v1\0".to_vec();
        m.extend_from_slice(&entries.to_le_bytes());
        m.extend_from_slice(&time.to_le_bytes());
        m.extend_from_slice(last_hash.as_bytes());
        m
    }

    /// Checks the signature with `key` (the writer's key as the reader knows it), or with
    /// the key the head names when `key` is `None` (which proves only that the head is
    /// self-consistent). Returns the key that verified it.
    pub fn verify(
        &self,
        key: Option<&ed25519_dalek::VerifyingKey>,
    ) -> Result<ed25519_dalek::VerifyingKey> {
        let named = parse_public_key(&self.public_key)?;
        let key = match key {
            Some(k) if k.as_bytes() != named.as_bytes() => {
                return Err(TeeError::Audit(format!(
                    "the head is signed by key {}, not the writer's key {}",
                    self.public_key,
                    hex::encode(k.as_bytes())
                )))
            }
            Some(k) => *k,
            None => named,
        };
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| TeeError::Audit("the head's signature is malformed".into()))?;
        key.verify_strict(
            &Self::message(self.entries, &self.last_hash, self.time),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| TeeError::Audit("the head's signature does not verify".into()))?;
        Ok(key)
    }
}

/// An Ed25519 public key from hex.
pub fn parse_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| TeeError::Audit("an Ed25519 public key is 64 hex characters".into()))?;
    ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| TeeError::Audit("not an Ed25519 public key".into()))
}

/// Loads the Ed25519 key a log is signed with from `path` (32 bytes), or creates it there
/// (mode 0600) when absent.
pub fn load_or_create_signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey> {
    if path.exists() {
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|e| TeeError::Audit(format!("{}: {e}", path.display())))?,
        );
        let seed: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            TeeError::Audit(format!("{} is not a 32-byte Ed25519 key", path.display()))
        })?;
        let seed = zeroize::Zeroizing::new(seed);
        return Ok(ed25519_dalek::SigningKey::from_bytes(&seed));
    }
    let mut seed = zeroize::Zeroizing::new([0u8; 32]);
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), seed.as_mut())
        .map_err(|_| TeeError::Crypto("no system randomness"))?;
    crate::util::write_private(path, seed.as_ref())
        .map_err(|e| TeeError::Audit(format!("audit key: {e}")))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(&seed))
}

/// Verifies a log (as text) against a head the reader was given: the chain, the head's
/// signature (by `key`, the writer's key, when given), every entry's signature by that key,
/// and that the log's first `head.entries` lines end with the line the head names. A log cut
/// before the head, or a different history of the same length, is refused; entries after
/// the head (the log went on) are accepted as signed entries. Returns the entries.
pub fn verify_against_head(
    text: &str,
    head: &SignedHead,
    key: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Vec<AuditEntry>> {
    let key = head.verify(key)?;
    let entries = verify_entries(text, Some(&key))?;
    let at_head = usize::try_from(head.entries)
        .map_err(|_| TeeError::Audit("the head's entry count is too large".into()))?;
    if entries.len() < at_head {
        return Err(TeeError::Audit(format!(
            "the log holds {} entries but its head (signed at {}) vouches for {}: the tail \
             was cut",
            entries.len(),
            head.time,
            head.entries
        )));
    }
    let prefix_hash = if at_head == 0 {
        GENESIS.to_string()
    } else {
        text.lines()
            .nth(at_head - 1)
            .map(|l| hex::encode(Sha256::digest(l.as_bytes())))
            .unwrap_or_default()
    };
    if prefix_hash != head.last_hash {
        return Err(TeeError::Audit(format!(
            "entry {} of the log is not the one the head (signed at {}) vouches for: the \
             history was rewritten",
            at_head, head.time
        )));
    }
    Ok(entries)
}

fn last_line_hash(path: &Path) -> Result<String> {
    let file = File::open(path).map_err(|e| TeeError::Audit(e.to_string()))?;
    let mut last = None;
    for line in BufReader::new(file).lines() {
        last = Some(line.map_err(|e| TeeError::Audit(e.to_string()))?);
    }
    Ok(last.map_or_else(
        || GENESIS.to_string(),
        |l| hex::encode(Sha256::digest(l.as_bytes())),
    ))
}

/// Reads and verifies a whole log: sequence numbers from 0, each `prev` the hash of the line
/// before. Returns the entries, or the first line where the chain breaks.
pub fn verify_log(path: &Path) -> Result<Vec<AuditEntry>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| TeeError::Audit(format!("{}: {e}", path.display())))?;
    verify_entries(&text, None)
}

/// The SHA-256 (hex) of the last line of a log's text (zeros for an empty log).
pub fn last_hash(text: &str) -> String {
    text.lines().last().map_or_else(
        || GENESIS.to_string(),
        |l| hex::encode(Sha256::digest(l.as_bytes())),
    )
}

/// Verifies a log given as text: the chain, and, when `signer` is given, that every entry
/// carries a valid signature by that key.
pub fn verify_entries(
    text: &str,
    signer: Option<&ed25519_dalek::VerifyingKey>,
) -> Result<Vec<AuditEntry>> {
    let mut prev = GENESIS.to_string();
    let mut entries = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry: AuditEntry = serde_json::from_str(line)
            .map_err(|e| TeeError::Audit(format!("line {}: not an audit entry: {e}", i + 1)))?;
        if entry.seq != i as u64 {
            return Err(TeeError::Audit(format!(
                "line {}: sequence {} where {i} was expected (entry dropped or reordered)",
                i + 1,
                entry.seq
            )));
        }
        if entry.prev != prev {
            return Err(TeeError::Audit(format!(
                "line {}: chain broken (the previous entry was edited, dropped or reordered)",
                i + 1
            )));
        }
        if let Some(key) = signer {
            check_signature(&entry, key).map_err(|why| {
                TeeError::Audit(format!("line {}: {why} (entry edited or forged)", i + 1))
            })?;
        }
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        entries.push(entry);
    }
    Ok(entries)
}

fn check_signature(
    entry: &AuditEntry,
    key: &ed25519_dalek::VerifyingKey,
) -> std::result::Result<(), &'static str> {
    let sig = entry.sig.as_deref().ok_or("unsigned entry")?;
    let sig: [u8; 64] = hex::decode(sig)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or("malformed signature")?;
    let mut unsigned = entry.clone();
    unsigned.sig = None;
    let bytes = serde_json::to_vec(&unsigned).map_err(|_| "unserializable entry")?;
    key.verify_strict(&bytes, &ed25519_dalek::Signature::from_bytes(&sig))
        .map_err(|_| "bad signature")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chain_detects_edits_drops_and_reorders() {
        let dir = std::env::temp_dir().join(format!("veil-audit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("audit.jsonl");
        let _ = std::fs::remove_file(&path);
        {
            let log = AuditLog::open(&path).unwrap();
            for i in 0..4 {
                log.append(100 + i, "token_issued", json!({"i": i}))
                    .unwrap();
            }
        }
        // Reopening continues the chain.
        AuditLog::open(&path)
            .unwrap()
            .append(200, "x", json!(null))
            .unwrap();
        assert_eq!(verify_log(&path).unwrap().len(), 5);
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let check = |ls: Vec<&str>| {
            let p = dir.join("t.jsonl");
            std::fs::write(&p, ls.join("\n") + "\n").unwrap();
            verify_log(&p)
        };
        let edited = lines[1].replace("\"i\":1", "\"i\":9");
        assert!(check(vec![lines[0], &edited, lines[2], lines[3], lines[4]]).is_err());
        assert!(check(vec![lines[0], lines[2], lines[3], lines[4]]).is_err());
        assert!(check(vec![lines[0], lines[2], lines[1], lines[3], lines[4]]).is_err());
        assert!(check(vec![lines[0], "garbage"]).is_err());
        assert_eq!(check(lines.clone()).unwrap().len(), 5);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
