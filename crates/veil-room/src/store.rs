//! A room's state directory: what a room writes so that a restart loses nothing it
//! acknowledged (issue 12, item 19).
//!
//! ```text
//! DIR/lock              held (flock) by the one room server using DIR
//! DIR/room.json         room id, manifest hash, measurement, platform and public keys, and
//!                       the audit and HPKE private keys sealed to the measurement
//! DIR/audit.jsonl       the signed, hash-chained audit log (fsync after every entry)
//! DIR/audit.head.json   the audit key's signed head of the log (entries, last hash)
//! DIR/uploads/P.sealed  party P's accepted upload (salt ‖ data), sealed to the measurement
//! DIR/outputs.sealed    the run's outputs (HPKE-sealed to each recipient), sealed again
//! ```
//!
//! Every file but the log is written whole: to `.NAME.tmp`, `fsync`, renamed over `NAME`,
//! then the directory is `fsync`ed. A room writes each file *before* the answer it backs
//! (receipt, run summary) and the log entry that records it, so a crash leaves either
//! nothing, or a file that no log entry records yet (an unacknowledged upload, discarded
//! and logged on resume; computed outputs, kept and logged on resume).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use veil_attest::error::{Result, TeeError};

/// Format version of `room.json`.
pub(super) const STATE_VERSION: u32 = 1;
pub(super) const META: &str = "room.json";
pub(super) const AUDIT: &str = "audit.jsonl";
pub(super) const HEAD: &str = "audit.head.json";
pub(super) const UPLOADS: &str = "uploads";
pub(super) const OUTPUTS: &str = "outputs.sealed";
const LOCK: &str = "lock";
use veil_attest::util::TMP_SUFFIX;

pub(super) fn storage(why: impl Into<String>) -> TeeError {
    TeeError::RoomStorage(why.into())
}

fn io(path: &Path, e: &std::io::Error) -> TeeError {
    storage(format!("{}: {e}", path.display()))
}

/// `room.json`: who the state belongs to (plaintext, checked for clear errors) and the keys
/// (sealed; the seal is what protects them).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RoomMeta {
    pub version: u32,
    pub room_id: String,
    pub manifest_sha256: String,
    pub measurement: String,
    pub platform_key: String,
    pub audit_key: String,
    pub workload_key: String,
    /// [`SealedKeys`] as JSON, sealed to the measurement on the platform (hex).
    pub sealed_keys: String,
}

/// The room's private keys, sealed inside `room.json`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SealedKeys {
    pub room_id: String,
    pub audit_secret: String,
    pub workload_secret: String,
}

impl Drop for SealedKeys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.audit_secret);
        zeroize::Zeroize::zeroize(&mut self.workload_secret);
    }
}

/// What an upload file holds (sealed): who uploaded what, then the salted plaintext.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UploadMeta {
    pub room_id: String,
    pub party: String,
    pub label: String,
    pub data_sha256: String,
}

/// `u32 BE length ‖ UploadMeta JSON ‖ salt ‖ data`: the plaintext of an upload file.
pub(super) fn upload_record(meta: &UploadMeta, salted: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let head = serde_json::to_vec(meta).map_err(|_| TeeError::Internal("upload meta"))?;
    let len = u32::try_from(head.len()).map_err(|_| TeeError::Internal("upload meta length"))?;
    let mut out = Zeroizing::new(Vec::with_capacity(4 + head.len() + salted.len()));
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&head);
    out.extend_from_slice(salted);
    Ok(out)
}

/// Splits an upload record into its meta and the salted plaintext.
pub(super) fn parse_upload_record(record: &[u8]) -> Option<(UploadMeta, &[u8])> {
    let (len, rest) = record.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() {
        return None;
    }
    let (head, salted) = rest.split_at(len);
    Some((serde_json::from_slice(head).ok()?, salted))
}

/// What `outputs.sealed` holds (sealed): the outputs and the run's log details.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OutputRecord {
    pub room_id: String,
    pub output_sha256: String,
    pub outputs: std::collections::BTreeMap<String, veil_kbs::ReleasedSecret>,
    /// The details of the `run` entry, written to the log on resume if the crash came
    /// between this file and that entry.
    pub run: serde_json::Value,
}

/// An open state directory, locked for one room server.
pub(super) struct Store {
    dir: PathBuf,
    /// Held for the server's lifetime; the OS releases it when the process dies.
    _lock: File,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

impl Store {
    /// Creates `dir` (mode 0700) if needed, locks it, and removes temporary files a crash
    /// left half-written.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(dir).map_err(|e| io(dir, &e))?;
        builder
            .create(dir.join(UPLOADS))
            .map_err(|e| io(&dir.join(UPLOADS), &e))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io(&lock_path, &e))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => storage(format!(
                "{} is in use by another room server (it holds {}); two servers on one state \
                 directory would lose each other's uploads",
                dir.display(),
                lock_path.display()
            )),
            std::fs::TryLockError::Error(e) => io(&lock_path, &e),
        })?;
        let store = Self {
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        store.remove_temporaries(dir)?;
        store.remove_temporaries(&dir.join(UPLOADS))?;
        Ok(store)
    }

    fn remove_temporaries(&self, dir: &Path) -> Result<()> {
        for name in list(dir)? {
            if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
                let path = dir.join(&name);
                std::fs::remove_file(&path).map_err(|e| io(&path, &e))?;
            }
        }
        Ok(())
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `DIR/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `DIR/uploads/P.sealed`.
    pub fn upload_path(&self, party: &str) -> PathBuf {
        self.dir.join(UPLOADS).join(upload_file(party))
    }

    /// The names in `DIR/uploads`.
    pub fn upload_files(&self) -> Result<Vec<String>> {
        list(&self.dir.join(UPLOADS))
    }

    /// Everything in the directory but the lock and `uploads/` itself (uploads as
    /// `uploads/NAME`).
    pub fn names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = list(&self.dir)?
            .into_iter()
            .filter(|n| n != LOCK && n != UPLOADS)
            .collect();
        names.extend(
            self.upload_files()?
                .into_iter()
                .map(|n| format!("{UPLOADS}/{n}")),
        );
        Ok(names)
    }

    /// Writes `DIR/name` crash-safely.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir, name, bytes)
    }

    /// Writes party P's upload file crash-safely.
    pub fn write_upload(&self, party: &str, bytes: &[u8]) -> Result<()> {
        write_atomic(&self.dir.join(UPLOADS), &upload_file(party), bytes)
    }

    /// Reads `path`, naming it in the error.
    pub fn read(path: &Path) -> Result<Vec<u8>> {
        std::fs::read(path).map_err(|e| io(path, &e))
    }

    /// Makes the directory entries (a created log, a removed file) durable.
    pub fn sync(&self) -> Result<()> {
        sync_dir(&self.dir)?;
        sync_dir(&self.dir.join(UPLOADS))
    }
}

pub(super) fn upload_file(party: &str) -> String {
    format!("{party}.sealed")
}

fn list(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, &e))? {
        let entry = entry.map_err(|e| io(dir, &e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A room's storage failure is a room storage error.
fn as_room(e: TeeError) -> TeeError {
    match e {
        TeeError::Store(m) => storage(m),
        other => other,
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    veil_attest::util::sync_dir(dir).map_err(as_room)
}

fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    veil_attest::util::write_atomic(dir, name, bytes).map_err(as_room)
}

/// Cuts a log's last line if a crash left it half-written (no final newline): that entry
/// was never complete, so nothing was acted on it. Returns whether it cut. A cut that
/// removes an entry the room's signed head vouches for is refused later, by the head.
pub(super) fn cut_partial_line(path: &Path) -> Result<bool> {
    let text = std::fs::read(path).map_err(|e| io(path, &e))?;
    if text.is_empty() || text.ends_with(b"\n") {
        return Ok(false);
    }
    let keep = text.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| io(path, &e))?;
    f.set_len(keep as u64)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(path, &e))?;
    Ok(true)
}
