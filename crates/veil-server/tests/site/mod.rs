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
    keep_dir: bool,
}

impl Site {
    /// Stops the server and keeps `dir` (to start another server on it).
    pub fn stop_keeping_dir(mut self) {
        self.keep_dir = true;
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

/// Serves the configuration `text` (relative paths from `dir`).
pub async fn serve(text: &str, dir: &Path) -> Site {
    let config = ServeConfig::parse(text).unwrap();
    let app = router(&config, dir).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(veil_server::serve(listener, app, async move {
        let _ = rx.await;
    }));
    Site {
        dir: dir.to_path_buf(),
        url,
        stop: Some(stop),
        keep_dir: false,
    }
}
