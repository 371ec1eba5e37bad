//! Append-only, hash-chained audit logs (JSON lines).
//!
//! Every entry records its sequence number, time, event and details, plus the SHA-256 of the
//! previous line: editing, dropping or reordering an entry breaks the chain, which
//! [`verify_log`] detects. Both services append one entry per decision (a token issued or
//! refused, a secret released or refused), with the reason.

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
        }
    }

    /// Signs every entry appended from now on with `key` (Ed25519).
    #[must_use]
    pub fn with_signer(mut self, key: ed25519_dalek::SigningKey) -> Self {
        self.signer = Some(key);
        self
    }

    /// The number of entries and the SHA-256 (hex) of the last line: what the writer
    /// vouches for, so that a reader can detect a truncated copy.
    pub fn head(&self) -> (u64, String) {
        self.state
            .lock()
            .map_or_else(|_| (0, GENESIS.to_string()), |s| (s.seq, s.prev.clone()))
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
            f.write_all(line.as_bytes())
                .and_then(|()| f.flush())
                .map_err(|e| TeeError::Audit(format!("write: {e}")))?;
        } else {
            s.memory.push(line);
        }
        s.seq += 1;
        s.prev = hash;
        Ok(())
    }
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
