//! Small helpers every Veil service shares: the clock, base64 fields, private files.

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;

use crate::error::{Result, TeeError};

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A clock (Unix seconds); tests substitute their own.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(unix_now)
}

/// Decodes base64url (or standard base64), with or without padding.
pub fn decode_b64(field: &str, text: &str) -> Result<Vec<u8>> {
    let t = text.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
        .map_err(|e| TeeError::BadRequest(format!("{field} is not base64: {e}")))
}

/// Encodes base64url without padding.
pub fn encode_b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Creates `path` (which must not exist) readable by its owner only (mode 0600 on Unix) and
/// writes `bytes`: for keys and secrets.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(path)
        .map_err(|e| TeeError::Store(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| TeeError::Store(format!("{}: {e}", path.display())))
}

/// Suffix of the temporary files [`write_atomic`] renames into place (`.NAME.tmp`): a crash
/// may leave one behind, which a store removes when it opens.
pub const TMP_SUFFIX: &str = ".tmp";

/// Makes a directory's entries (created, renamed, removed files) durable. Only Unix lets a
/// directory be opened and synced; elsewhere the rename is as durable as the OS makes it.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| TeeError::Store(format!("{}: {e}", dir.display())))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `dir/name` so that a crash leaves the old file or the new one, never a mix: to a
/// temporary file (mode 0600), `fsync`, rename, `fsync` the directory.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!(".{name}{TMP_SUFFIX}"));
    let path = dir.join(name);
    let io = |p: &Path, e: std::io::Error| TeeError::Store(format!("{}: {e}", p.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&tmp).map_err(|e| io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
    sync_dir(dir)
}
