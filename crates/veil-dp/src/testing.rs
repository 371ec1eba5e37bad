//! Test support: a throwaway PostgreSQL server of one's own, on a loopback port, in a
//! temporary directory.
//!
//! It uses Debian's `postgresql` package (`initdb` and `pg_ctl` under
//! `/usr/lib/postgresql/*/bin`) and runs as the `postgres` user when the caller is root, since
//! PostgreSQL refuses to run as root. The server listens on 127.0.0.1 only, trusts local
//! connections as user `veil`, and is stopped and deleted on drop.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A running test server.
#[derive(Debug)]
pub struct PostgresServer {
    dir: PathBuf,
    bin: PathBuf,
    data: PathBuf,
    root: bool,
    /// Connection string (`host=127.0.0.1 port=… user=veil dbname=postgres`).
    pub url: String,
    /// The port it listens on.
    pub port: u16,
}

impl PostgresServer {
    /// Whether `initdb` is installed (the server can be started at all).
    pub fn available() -> bool {
        Self::bin().is_some()
    }

    fn bin() -> Option<PathBuf> {
        std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").exists())
            .max()
    }

    fn cmd(&self, tool: &str) -> Command {
        let mut c = if self.root {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join(tool));
            c
        } else {
            Command::new(self.bin.join(tool))
        };
        c.stdout(Stdio::null());
        c
    }

    /// Initializes and starts a server named `name` (part of its directory name). `Ok(None)`
    /// when PostgreSQL is not installed.
    pub fn start(name: &str) -> Result<Option<Self>, String> {
        let Some(bin) = Self::bin() else {
            return Ok(None);
        };
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let dir = std::env::temp_dir().join(format!("veil-pg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if root {
            let ok = Command::new("chown")
                .arg("postgres:")
                .arg(&dir)
                .status()
                .map_err(|e| format!("chown: {e}"))?;
            if !ok.success() {
                return Err("chown of the PostgreSQL directory failed".into());
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("no free port: {e}"))?
            .port();
        let server = Self {
            data: dir.join("data"),
            url: format!("host=127.0.0.1 port={port} user=veil dbname=postgres"),
            port,
            dir,
            bin,
            root,
        };
        let ok = server
            .cmd("initdb")
            .arg("-D")
            .arg(&server.data)
            .args(["-U", "veil", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .status()
            .map_err(|e| format!("initdb: {e}"))?;
        if !ok.success() {
            return Err("initdb failed".into());
        }
        server.pg_ctl_start()?;
        Ok(Some(server))
    }

    /// [`PostgresServer::start`] for a test: `None` (the test skips) only outside CI when
    /// PostgreSQL is not installed; under CI (`CI` set) a missing server fails the test, and
    /// a server that does not start fails it anywhere. (Test support: failing a test is what
    /// a panic here is for.)
    #[allow(clippy::panic, reason = "a test helper fails the test that calls it")]
    pub fn for_test(name: &str) -> Option<Self> {
        match Self::start(name) {
            Ok(Some(server)) => Some(server),
            Ok(None) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: PostgreSQL is not installed (apt-get install postgresql)");
                None
            }
            Ok(None) => panic!("PostgreSQL (initdb, pg_ctl) is not installed"),
            Err(e) => panic!("PostgreSQL did not start: {e}"),
        }
    }
}

impl PostgresServer {
    /// Stops the server (fast shutdown: open transactions are rolled back, connections cut),
    /// keeping its data: an outage.
    pub fn stop(&self) -> Result<(), String> {
        let ok = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "fast", "stop"])
            .status()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        ok.success()
            .then_some(())
            .ok_or_else(|| "pg_ctl stop failed".into())
    }

    /// Starts the stopped server again on the same port and data.
    pub fn start_again(&self) -> Result<(), String> {
        self.pg_ctl_start()
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let ok = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(self.dir.join("log"))
            .args(["-w", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {} -c fsync=off -c max_connections=100",
                self.port,
                self.dir.display()
            ))
            .arg("start")
            .status()
            .map_err(|e| format!("pg_ctl: {e}"))?;
        if !ok.success() {
            return Err(format!(
                "pg_ctl start failed: {}",
                std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
            ));
        }
        Ok(())
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self
            .cmd("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
