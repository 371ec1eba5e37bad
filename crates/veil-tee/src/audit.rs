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
}

struct State {
    file: Option<File>,
    seq: u64,
    prev: String,
}

/// An audit log appending to a file (or kept in memory only when no file is given).
pub struct AuditLog {
    path: Option<PathBuf>,
    state: Mutex<State>,
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
                seq,
                prev,
            }),
        })
    }

    /// A log that only chains entries in memory (nothing persisted): for tests and demos.
    pub fn in_memory() -> Self {
        Self {
            path: None,
            state: Mutex::new(State {
                file: None,
                seq: 0,
                prev: GENESIS.to_string(),
            }),
        }
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

    /// Appends an entry. A decision must not be acted on if this fails.
    pub fn append(&self, time: u64, event: &str, details: Value) -> Result<()> {
        let mut s = self
            .state
            .lock()
            .map_err(|_| TeeError::Audit("a writer panicked".into()))?;
        let entry = AuditEntry {
            seq: s.seq,
            time,
            event: event.to_string(),
            details,
            prev: s.prev.clone(),
        };
        let mut line = serde_json::to_string(&entry).map_err(|e| TeeError::Audit(e.to_string()))?;
        let hash = hex::encode(Sha256::digest(line.as_bytes()));
        line.push('\n');
        if let Some(f) = s.file.as_mut() {
            f.write_all(line.as_bytes())
                .and_then(|()| f.flush())
                .map_err(|e| TeeError::Audit(format!("write: {e}")))?;
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
    let file = File::open(path).map_err(|e| TeeError::Audit(format!("{}: {e}", path.display())))?;
    let mut prev = GENESIS.to_string();
    let mut entries = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| TeeError::Audit(format!("line {}: {e}", i + 1)))?;
        let entry: AuditEntry = serde_json::from_str(&line)
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
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        entries.push(entry);
    }
    Ok(entries)
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
