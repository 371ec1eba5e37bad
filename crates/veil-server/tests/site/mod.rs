//! A `veil serve` for a test: a configuration served on a loopback port.

#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "test support; each test uses a part"
)]

use std::path::{Path, PathBuf};

use veil_server::app::{router, ServeConfig};

/// A running server over `dir`; dropping it stops the server and deletes `dir`.
pub struct Site {
    /// The directory the configuration's relative paths start from.
    pub dir: PathBuf,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    keep_dir: bool,
}

impl Site {
    /// Stops the server, waits until it has let go of its state (a room's locked state
    /// directory), and keeps `dir` (to start another server on it).
    pub async fn stop_keeping_dir(mut self) {
        self.keep_dir = true;
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if !self.keep_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A fresh, empty directory for test `name`.
pub fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("veil-serve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the sample dataset `persons` (`rows` rows drawn from `seed`: `persons.csv`,
/// `persons.toml`) into `dir` and registers it in `ledger` with total ε = `total`, δ = 10⁻³.
pub fn persons_dataset(
    dir: &Path,
    rows: u64,
    seed: u64,
    ledger: &dyn veil_dp::ledger::Ledger,
    total: f64,
) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(dir.join("persons.csv")).unwrap());
    veil_dp_sql::sample::write_persons(&mut f, rows, seed).unwrap();
    std::io::Write::flush(&mut f).unwrap();
    drop(f);
    let metadata = veil_dp_sql::sample::PERSONS_METADATA;
    std::fs::write(dir.join("persons.toml"), metadata).unwrap();
    ledger
        .register(
            "persons",
            &veil_dp_sql::dataset::metadata_sha256(metadata.as_bytes()),
            total,
            1e-3,
        )
        .unwrap();
}

/// Serves the configuration `text` (relative paths from `dir`).
pub async fn serve(text: &str, dir: &Path) -> Site {
    let config = ServeConfig::parse(text).unwrap();
    let app = router(&config, dir).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        veil_server::serve(listener, app, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Site {
        dir: dir.to_path_buf(),
        url,
        stop: Some(stop),
        task: Some(task),
        keep_dir: false,
    }
}
