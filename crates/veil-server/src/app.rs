//! `veil serve`: one process mounting what its configuration enables, behind one set of limits.
//!
//! ```toml
//! listen = "127.0.0.1:8080"        # loopback by default
//!
//! [tls]                            # see `veil_server::tls`
//! mode = "self-signed"             # the default; or "files" (cert, key), or "off" (loopback only)
//!
//! [limits]
//! max_body_bytes = 1048576         # larger bodies get 413
//! request_timeout_secs = 30        # slower requests get 408
//! header_read_timeout_secs = 10    # connections slower to send their headers are closed
//! max_connections_per_ip = 256     # a connection beyond is closed at once
//!
//! [dp]
//! ledger = "budget.db"             # or postgres://user@host/db, shared by several servers
//!
//! [[dp.datasets]]
//! metadata = "persons.toml"        # registered in the ledger (`veil dp register`)
//! tables = { persons = "persons.csv" }
//!
//! [[dp.analysts]]
//! name = "alice"
//! token_sha256 = "…"               # `veil serve token alice` prints a token and this line
//! epsilon = 1.0                    # alice's own budget on every dataset (optional)
//! delta = 1e-6
//!
//! [mpc]                            # MPC coordination: sessions for `veil mpc party|dealer`
//! dir = "veil-mpc-sessions"
//! [[mpc.organisers]]
//! name = "consortium"
//! token_sha256 = "…"               # `veil serve token consortium --for mpc`
//!
//! [metrics]                        # Prometheus at /metrics (optional token_sha256)
//!
//! [attest]                         # the attestation service at /attest (see `mount`)
//! policy = "policy.toml"
//! sim_platform_keys = ["…"]
//!
//! [kbs]                            # the key broker at /kbs, trusting [attest]'s tokens
//! store = "veil-kbs"
//!
//! [[inference.models]]
//! name = "digits"
//! plan = "digits.plan"             # `veil ml compile`
//!
//! [[inference.clients]]
//! name = "clinic"
//! token_sha256 = "…"               # `veil serve token clinic --for inference`
//!
//! [inference.limits]               # all optional; see `InferenceLimits`
//! contexts_per_client = 4
//!
//! [[console.operators]]            # the web console at /console/ (see `console`)
//! name = "ops"
//! token_sha256 = "…"               # `veil serve token ops --for console`
//! ```
//!
//! Relative paths are relative to the configuration file. Nothing secret is in the file: API
//! tokens appear only as their SHA-256.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use serde::Deserialize;

use crate::dp::{Analyst, DpService};

/// Why a configuration cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The configuration is malformed or inconsistent.
    #[error("configuration: {0}")]
    Config(String),
    /// A dataset cannot be opened or is not registered.
    #[error(transparent)]
    Dp(#[from] veil_dp_sql::SqlError),
    /// The ledger refused an analyst budget.
    #[error(transparent)]
    Ledger(#[from] veil_dp::DpError),
    /// The attestation service or key broker cannot start.
    #[error(transparent)]
    Tee(#[from] veil_attest::TeeError),
}

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Where to listen (default `127.0.0.1:8080`).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// TLS (default: a self-signed certificate; see [`crate::tls`]).
    #[serde(default)]
    pub tls: crate::tls::TlsConfig,
    /// DP SQL for analysts.
    pub dp: Option<DpConfig>,
    /// Encrypted inference.
    pub inference: Option<InferenceConfig>,
    /// The attestation service, mounted at `/attest`.
    pub attest: Option<crate::mount::AttestConfig>,
    /// The key broker, mounted at `/kbs`.
    pub kbs: Option<crate::mount::KbsConfig>,
    /// Prometheus metrics at `/metrics`.
    pub metrics: Option<crate::metrics::MetricsConfig>,
    /// MPC coordination.
    pub mpc: Option<MpcConfig>,
    /// Data rooms, each at `/rooms/{name}`.
    #[serde(default)]
    pub rooms: Vec<crate::mount::RoomConfig>,
    /// The operator's web console at `/console/`.
    pub console: Option<ConsoleConfig>,
}

/// Section `[console]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Who may read the console's API (a name and a token's SHA-256 each).
    #[serde(default)]
    pub operators: Vec<ClientConfig>,
}

/// Section `[mpc]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MpcConfig {
    /// Where sessions are kept (default `veil-mpc-sessions`).
    #[serde(default = "default_mpc_dir")]
    pub dir: PathBuf,
    /// Most sessions kept at once (default 64).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// Who may create sessions.
    #[serde(default)]
    pub organisers: Vec<ClientConfig>,
}

fn default_mpc_dir() -> PathBuf {
    "veil-mpc-sessions".into()
}

fn default_max_sessions() -> usize {
    64
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

/// Request limits.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body (bytes).
    pub max_body_bytes: usize,
    /// Longest a request may take (seconds).
    pub request_timeout_secs: u64,
    /// Longest a client may take to send a request's headers (seconds; slowloris).
    pub header_read_timeout_secs: u64,
    /// Open connections one IP address may hold (a connection beyond is closed at once).
    pub max_connections_per_ip: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            request_timeout_secs: 30,
            header_read_timeout_secs: crate::HEADER_READ_TIMEOUT.as_secs(),
            max_connections_per_ip: 256,
        }
    }
}

/// Section `[dp]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpConfig {
    /// The ledger: a SQLite file or a PostgreSQL URL.
    pub ledger: String,
    /// The datasets served.
    #[serde(default)]
    pub datasets: Vec<DatasetConfig>,
    /// The analysts admitted.
    #[serde(default)]
    pub analysts: Vec<AnalystConfig>,
}

/// One `[[dp.datasets]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetConfig {
    /// The metadata file (its stem is the dataset's name in the ledger).
    pub metadata: PathBuf,
    /// Table name → CSV or Parquet file.
    pub tables: BTreeMap<String, PathBuf>,
}

/// Section `[inference]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceConfig {
    /// The models served.
    #[serde(default)]
    pub models: Vec<ModelConfig>,
    /// The clients admitted (same form as analysts: a name and a token's SHA-256).
    #[serde(default)]
    pub clients: Vec<ClientConfig>,
    /// Body limits, context caps, workers.
    #[serde(default)]
    pub limits: crate::inference::InferenceLimits,
}

/// One `[[inference.models]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The model's name in the routes.
    pub name: String,
    /// The compiled plan (`veil ml compile`).
    pub plan: PathBuf,
}

/// One `[[inference.clients]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client's name (in logs).
    pub name: String,
    /// SHA-256 (hex) of the client's API token.
    pub token_sha256: String,
}

/// One `[[dp.analysts]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalystConfig {
    /// The analyst's name in the ledger.
    pub name: String,
    /// SHA-256 (hex) of the analyst's API token.
    pub token_sha256: String,
    /// The analyst's own ε on every dataset (without it only the dataset's total binds).
    pub epsilon: Option<f64>,
    /// The analyst's own δ (default 0).
    pub delta: Option<f64>,
}

impl ServeConfig {
    /// Parses a configuration file's text.
    pub fn parse(text: &str) -> Result<Self, ServeError> {
        toml::from_str(text).map_err(|e| ServeError::Config(e.to_string()))
    }
}

fn resolve(base: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}

/// Opens the DP service `[dp]` describes: every dataset must be registered in the ledger with
/// exactly this metadata file, and analyst budgets are set (again) in the ledger.
pub async fn dp_service(config: &DpConfig, base: &Path) -> Result<DpService, ServeError> {
    let ledger_spec = if veil_dp_sql::dataset::is_postgres_url(&config.ledger) {
        config.ledger.clone()
    } else {
        resolve(base, Path::new(&config.ledger))
            .display()
            .to_string()
    };
    let ledger = veil_dp_sql::dataset::open_ledger(&ledger_spec)?;
    let mut analysts = Vec::new();
    for a in &config.analysts {
        let hash = crate::auth::parse_token_hash(&a.token_sha256).ok_or_else(|| {
            ServeError::Config(format!(
                "analyst {:?}: token_sha256 must be 64 hex digits",
                a.name
            ))
        })?;
        analysts.push(Analyst {
            name: a.name.clone(),
            token_sha256: hash,
        });
    }
    let mut engines = Vec::new();
    for d in &config.datasets {
        let metadata = resolve(base, &d.metadata);
        let reg = veil_dp_sql::dataset::registered(&metadata, ledger.as_ref())?;
        for a in &config.analysts {
            if let Some(epsilon) = a.epsilon {
                ledger.set_budget(&reg.name, Some(&a.name), epsilon, a.delta.unwrap_or(0.0))?;
            }
        }
        let tables: Vec<(String, PathBuf)> = d
            .tables
            .iter()
            .map(|(n, p)| (n.clone(), resolve(base, p)))
            .collect();
        let pairs: Vec<(String, &Path)> = tables
            .iter()
            .map(|(n, p)| (n.clone(), p.as_path()))
            .collect();
        let engine = veil_dp_sql::Engine::embedded(reg.meta, &pairs).await?;
        engines.push((reg.name, engine));
    }
    let mut service = DpService::new(ledger);
    for (name, engine) in engines {
        service.add_dataset(&name, engine);
    }
    for a in analysts {
        service
            .add_analyst(a)
            .map_err(|e| ServeError::Config(format!("[[dp.analysts]]: {e}")))?;
    }
    Ok(service)
}

/// The principals a `[[section]]` list of clients names.
fn principals(list: &[ClientConfig], section: &str) -> Result<crate::auth::Principals, ServeError> {
    let mut out = crate::auth::Principals::default();
    for c in list {
        let hash = crate::auth::parse_token_hash(&c.token_sha256).ok_or_else(|| {
            ServeError::Config(format!(
                "{section} {:?}: token_sha256 must be 64 hex digits",
                c.name
            ))
        })?;
        out.add(crate::auth::Principal {
            name: c.name.clone(),
            token_sha256: hash,
        })
        .map_err(|e| ServeError::Config(format!("{section}: {e}")))?;
    }
    Ok(out)
}

/// Opens the inference service `[inference]` describes: every plan must load.
pub fn inference_service(
    config: &InferenceConfig,
    base: &Path,
) -> Result<crate::inference::InferenceService, ServeError> {
    let mut service = crate::inference::InferenceService::new(config.limits);
    for m in &config.models {
        let path = resolve(base, &m.plan);
        let bytes = std::fs::read(&path).map_err(|e| {
            ServeError::Config(format!(
                "model {:?}: cannot read {}: {e}",
                m.name,
                path.display()
            ))
        })?;
        service
            .add_model(&m.name, bytes)
            .map_err(ServeError::Config)?;
    }
    for c in &config.clients {
        let hash = crate::auth::parse_token_hash(&c.token_sha256).ok_or_else(|| {
            ServeError::Config(format!(
                "client {:?}: token_sha256 must be 64 hex digits",
                c.name
            ))
        })?;
        service
            .add_client(crate::auth::Principal {
                name: c.name.clone(),
                token_sha256: hash,
            })
            .map_err(|e| ServeError::Config(format!("[[inference.clients]]: {e}")))?;
    }
    Ok(service)
}

impl Limits {
    /// The header-read timeout (at least a second).
    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_secs.max(1))
    }
}

/// The whole service's router: the enabled sections, `/health`, and the limits.
pub async fn router(config: &ServeConfig, base: &Path) -> Result<Router, ServeError> {
    let mounted = crate::openapi::Mounted {
        dp: config.dp.is_some(),
        inference: config.inference.is_some(),
        attest: config.attest.is_some(),
        kbs: config.kbs.is_some(),
        metrics: config.metrics.is_some(),
        mpc: config.mpc.is_some(),
        rooms: !config.rooms.is_empty(),
        console: config.console.is_some(),
    };
    let mut app = crate::openapi::router(mounted);
    let mut console = match &config.console {
        Some(c) => Some(crate::console::Console::new(principals(
            &c.operators,
            "[[console.operators]]",
        )?)),
        None => None,
    };
    if let Some(dp) = &config.dp {
        let service = Arc::new(dp_service(dp, base).await?);
        if let Some(c) = console.as_mut() {
            c.with_dp(service.clone());
        }
        app = app.merge(crate::dp::router(service));
    }
    let attest = match &config.attest {
        Some(a) => {
            let built = crate::mount::attestation_service(a, base)?;
            if built.new_signing_key {
                tracing::info!("made a new token signing key");
            }
            Some(Arc::new(built.service))
        }
        None => None,
    };
    if let Some(k) = &config.kbs {
        let (broker, _) = crate::mount::key_broker(k, base, attest.as_deref()).await?;
        let broker = Arc::new(broker);
        if let Some(c) = console.as_mut() {
            c.with_audit("kbs", crate::console::AuditSource::Kbs(broker.clone()));
        }
        app = app.nest("/kbs", crate::kbs::router(broker));
    }
    if let Some(service) = attest {
        if let Some(c) = console.as_mut() {
            c.with_audit(
                "attest",
                crate::console::AuditSource::Attest(service.clone()),
            );
        }
        app = app.nest("/attest", crate::attest::router(service));
    }
    if let Some(m) = &config.mpc {
        let organisers = principals(&m.organisers, "[[mpc.organisers]]")?;
        let service =
            crate::mpc::MpcService::new(resolve(base, &m.dir), organisers, m.max_sessions)
                .map_err(ServeError::Config)?;
        app = app.merge(crate::mpc::router(Arc::new(service)));
    }
    let mut names = std::collections::BTreeSet::new();
    for r in &config.rooms {
        if !names.insert(r.name.as_str()) {
            return Err(ServeError::Config(format!("two rooms named {:?}", r.name)));
        }
        let room = crate::mount::room_server(r, base)?;
        if room.resumed() {
            tracing::info!(room = %r.name, "room resumed from its state");
        }
        let room = Arc::new(room);
        if let Some(c) = console.as_mut() {
            c.with_room(&r.name, room.clone());
        }
        app = app.nest(&format!("/rooms/{}", r.name), crate::room::router(room));
    }
    if let Some(inference) = &config.inference {
        let service = Arc::new(inference_service(inference, base)?);
        if let Some(c) = console.as_mut() {
            c.with_inference(service.clone());
        }
        app = app.merge(crate::inference::router(service));
    }
    if let Some(c) = console {
        app = app.merge(crate::console::router(Arc::new(c)));
    }
    if let Some(m) = &config.metrics {
        let metrics = crate::metrics::Metrics::new(m).map_err(ServeError::Config)?;
        app = crate::metrics::instrument(app, Arc::new(metrics));
    }
    Ok(app
        .layer(axum::middleware::from_fn(log_request))
        .layer(DefaultBodyLimit::max(config.limits.max_body_bytes))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(config.limits.request_timeout_secs.max(1)),
        )))
}

/// One structured event per request (target `veil::http`, level info): the method, the route's
/// pattern (never the path the client sent, which may carry ids or names), the status and the
/// time to the response's head. Shown with `VEIL_LOG=veil::http=info`.
async fn log_request(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = crate::metrics::method_label(req.method());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        target: "veil::http",
        method = %method,
        route = %route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "request"
    );
    response
}
