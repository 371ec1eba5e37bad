//! # veil-dp-ballista: Veil's DP SQL on Apache Ballista
//!
//! Veil's DP SQL engine ([`veil_dp_sql::Engine`]) plans a query, proves or enforces each
//! person's contribution bound, charges the budget, adds the noise and post-processes the
//! noisy table. With this crate the **bounded statistics plans** — the only part that reads
//! the data — run on an [Apache Ballista](https://datafusion.apache.org/ballista/) cluster
//! (DataFusion's distributed engine, the same DataFusion version as Veil's) over files or
//! directories of partition files the executors read themselves. What comes back from the
//! cluster is the per-group statistics before noise, exactly what the embedded engine
//! computes; the budget, the noise and everything released stay in Veil's process.
//!
//! - [`engine`] connects a DP SQL engine to a scheduler (`ballista://host:port`);
//! - [`run_scheduler`] and [`run_executor`] run the two kinds of Ballista processes (the
//!   `veil-ballista scheduler` and `veil-ballista executor` commands).
//!
//! Threat model: the cluster is run by the data's operator and sees the data (it computes
//! the exact statistics, as PostgreSQL does for the PostgreSQL backend); the analyst sees only
//! what Veil releases. A scheduler that is unreachable fails the query *before* the charge; a
//! job that fails or outlives its timeout (an executor killed, every executor gone) fails the
//! query after the charge, which is made once, atomically, before any statistic is computed —
//! Ballista's own retries of a lost task never reach the ledger. Its error text never quotes
//! the cluster's (which could quote a row): the details go to the operator's log. Veil, the
//! scheduler and the executors speak plain gRPC to each other (Ballista 55's TLS needs
//! endpoint overrides that `veil-ballista` does not configure): run them on loopback or a
//! private network.
//!
//! ```no_run
//! # async fn demo() -> veil_dp_sql::Result<()> {
//! use std::path::Path;
//! use std::time::Duration;
//! use veil_dp::ledger::SqliteLedger;
//! use veil_dp_sql::{Metadata, QueryOptions};
//!
//! let meta = Metadata::load("data/persons.toml")?;
//! let ledger = SqliteLedger::open("data/persons.budget.db")?;
//! let engine = veil_dp_ballista::engine(
//!     meta,
//!     "ballista://127.0.0.1:50050",
//!     &[("persons".into(), Path::new("/data/persons/"))],
//!     Duration::from_secs(600),
//! )
//! .await?;
//! let options = QueryOptions { epsilon: 1.0, delta: 1e-6, ..Default::default() };
//! let r = engine
//!     .query(&ledger, "persons", "alice", "SELECT COUNT(*) FROM persons", options)
//!     .await?;
//! println!("{}", r.to_table()?);
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ballista::prelude::SessionContextExt;
use datafusion::prelude::SessionContext;
use veil_dp_sql::{Cluster, Engine, Metadata, SqlError};

pub mod sample;

/// The scheduler port when a `ballista://` URL names none (Ballista's default).
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// How long one statistics job may run by default before the query fails.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// Whether `spec` names a Ballista scheduler (`ballista://host[:port]`).
pub fn is_ballista_url(spec: &str) -> bool {
    spec.starts_with("ballista://")
}

/// The scheduler's host and port in `ballista://host[:port]`.
pub fn parse_url(url: &str) -> veil_dp_sql::Result<(String, u16)> {
    let bad = |why: &str| {
        SqlError::Cluster(format!(
            "{url:?} is not a Ballista scheduler URL ({why}): give ballista://HOST:PORT"
        ))
    };
    let rest = url
        .strip_prefix("ballista://")
        .ok_or_else(|| bad("it does not start with ballista://"))?;
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains('@') {
        return Err(bad("it must be only a host and a port"));
    }
    // `[::1]:50050`, `host:50050` or `host`.
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && (!h.contains(':') || h.starts_with('[')) => {
            let port = p
                .parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?;
            (h.to_string(), port)
        }
        _ if rest.contains(':') && !rest.starts_with('[') => {
            return Err(bad("write an IPv6 address in brackets"))
        }
        _ => (rest.to_string(), DEFAULT_SCHEDULER_PORT),
    };
    if port == 0 {
        return Err(bad("the port is 0"));
    }
    Ok((host, port))
}

/// A DP SQL engine whose statistics run on the Ballista scheduler at `url`
/// (`ballista://host:port`), over `tables` (each a metadata table's name and a CSV/Parquet
/// file or a directory of partition files, which the executors must be able to read at the
/// same absolute path). A statistics job that takes longer than `timeout` fails its query.
pub async fn engine(
    meta: Metadata,
    url: &str,
    tables: &[(String, &Path)],
    timeout: Duration,
) -> veil_dp_sql::Result<Engine> {
    let (host, port) = parse_url(url)?;
    let state = veil_dp_sql::engine::session_state()?;
    let ctx = SessionContext::remote_with_state(&format!("df://{host}:{port}"), state)
        .await
        .map_err(|e| SqlError::Cluster(format!("cannot make a Ballista session: {e}")))?;
    let cluster = Cluster {
        name: format!("ballista://{host}:{port}"),
        scheduler: format!("{host}:{port}"),
        timeout,
    };
    Engine::cluster(meta, ctx, cluster, tables).await
}

/// How a scheduler runs.
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// The address its gRPC service listens on.
    pub bind: SocketAddr,
    /// Seconds without a heartbeat after which an executor is declared dead and its tasks
    /// are given to the others.
    pub executor_timeout_seconds: u64,
}

impl Default for SchedulerOptions {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], DEFAULT_SCHEDULER_PORT)),
            executor_timeout_seconds: 180,
        }
    }
}

/// Runs a Ballista scheduler (in-memory cluster state) until the process ends.
pub async fn run_scheduler(options: SchedulerOptions) -> anyhow::Result<()> {
    use ballista_scheduler::cluster::BallistaCluster;
    use ballista_scheduler::config::SchedulerConfig;

    let timeout = options.executor_timeout_seconds.max(2);
    let config = SchedulerConfig {
        bind_host: options.bind.ip().to_string(),
        bind_port: options.bind.port(),
        external_host: options.bind.ip().to_string(),
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 3).max(1),
        no_executors_grace_period_seconds: timeout,
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .context("cannot set up the scheduler's cluster state")?;
    ballista_scheduler::scheduler_process::start_server(cluster, options.bind, Arc::new(config))
        .await
        .context("the scheduler stopped")?;
    Ok(())
}

/// How an executor runs.
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// The scheduler's host and port.
    pub scheduler: (String, u16),
    /// The address the executor's services listen on (and advertise).
    pub bind_host: String,
    /// The port of its Arrow Flight service (shuffle data).
    pub flight_port: u16,
    /// The port of its gRPC service (tasks).
    pub grpc_port: u16,
    /// Where it writes shuffle files (default: a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Tasks it runs at once (0: one per core).
    pub vcores: usize,
    /// Seconds between its heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
}

/// Runs a Ballista executor until the process ends.
pub async fn run_executor(options: ExecutorOptions) -> anyhow::Result<()> {
    use ballista_executor::executor_process::{start_executor_process, ExecutorProcessConfig};

    let defaults = ExecutorProcessConfig::default();
    let vcores = if options.vcores == 0 {
        defaults.vcores
    } else {
        options.vcores
    };
    let work_dir = match options.work_dir {
        Some(p) => Some(
            p.to_str()
                .context("the work directory's path is not UTF-8")?
                .to_string(),
        ),
        None => None,
    };
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: Some(options.bind_host),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host: options.scheduler.0,
        scheduler_port: options.scheduler.1,
        scheduler_connect_timeout_seconds: 30,
        vcores,
        work_dir,
        executor_heartbeat_interval_seconds: options.heartbeat_seconds.max(1),
        special_mod_log_level: "WARN".into(),
        ..defaults
    };
    start_executor_process(Arc::new(config))
        .await
        .context("the executor stopped")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduler_urls_are_parsed_or_refused() {
        assert_eq!(
            parse_url("ballista://127.0.0.1:50077").ok(),
            Some(("127.0.0.1".into(), 50077))
        );
        assert_eq!(
            parse_url("ballista://sched/").ok(),
            Some(("sched".into(), DEFAULT_SCHEDULER_PORT))
        );
        assert_eq!(
            parse_url("ballista://[::1]:5").ok(),
            Some(("[::1]".into(), 5))
        );
        for bad in [
            "postgres://x",
            "ballista://",
            "ballista://h:port",
            "ballista://h:0",
            "ballista://u@h:1",
            "ballista://h:1/db",
            "ballista://::1",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} accepted");
        }
    }
}
