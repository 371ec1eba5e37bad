//! Encrypted inference over HTTP (`veil serve`, section `[inference]`): ML predictions on data
//! the server never sees.
//!
//! | route | what |
//! |---|---|
//! | `GET /inference/models` | the registered models ([`ModelInfo`]) |
//! | `GET /inference/models/{name}/plan` | the model's plan **without its weights** ([`Plan::without_weights`]), from which a client makes keys, encrypts and decrypts |
//! | `POST /inference/models/{name}/contexts` | a client's **public** context (`veil ml keygen`) → `{"context": id}` (201) |
//! | `POST /inference/contexts/{id}/evaluate` | encrypted samples → encrypted answers (both `application/octet-stream`) |
//! | `DELETE /inference/contexts/{id}` | forget a context |
//!
//! Every route needs a client's API token ([`crate::auth`]). A context belongs to the client
//! that uploaded it: another client's context id is answered exactly as an unknown one (404),
//! so ids cannot be probed. The server holds public keys only — the upload format cannot
//! carry a secret key — and checks a context against the plan when it arrives (parameters,
//! every Galois key the plan rotates by), so an evaluation never fails half-way.
//!
//! Resources are bounded: the body limits of uploads and queries are their own
//! (`max_context_bytes`, `max_query_bytes`); each client keeps at most `contexts_per_client`
//! contexts (an upload beyond evicts that client's least recently used one, never another
//! client's); all clients together at most `max_contexts` (beyond: 503 with `Retry-After`);
//! contexts unused for `context_ttl_secs` are dropped. Evaluations run on `workers` blocking
//! threads with a bounded queue; a full queue is 503 with `Retry-After`, not an unbounded pile.
//!
//! What a client learns is the encrypted result of the plan (decrypted with noise flooding on
//! its side) — the model's predictions, which over many queries can reveal the model (model
//! extraction, as with any prediction API): the operator limits who holds a token.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use veil_he::ckks::VectorContext;
use veil_ml::he::{EncryptedSamples, Plan};

use crate::auth::{Principal, Principals};
use crate::error::{ErrorBody, HttpError};

/// Limits of the inference service.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceLimits {
    /// Largest public context upload (bytes; Galois keys make contexts large).
    pub max_context_bytes: usize,
    /// Largest encrypted query (bytes).
    pub max_query_bytes: usize,
    /// Contexts one client may hold (an upload beyond evicts the client's least recently used).
    pub contexts_per_client: usize,
    /// Contexts all clients together may hold.
    pub max_contexts: usize,
    /// Seconds after which an unused context is dropped.
    pub context_ttl_secs: u64,
    /// Evaluations run at once (0: one per core).
    pub workers: usize,
    /// Evaluations that may wait for a worker; beyond, 503.
    pub queue: usize,
}

impl Default for InferenceLimits {
    fn default() -> Self {
        Self {
            max_context_bytes: 512 << 20,
            max_query_bytes: 256 << 20,
            contexts_per_client: 4,
            max_contexts: 64,
            context_ttl_secs: 3600,
            workers: 0,
            queue: 64,
        }
    }
}

/// One model in `GET /inference/models`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelInfo {
    /// The model's name.
    pub name: String,
    /// `single` (one ciphertext per sample) or `batch` (samples across the slots).
    pub packing: String,
    /// Values per input sample.
    pub input_len: usize,
    /// Values per output.
    pub output_len: usize,
    /// Samples one evaluation handles.
    pub samples_per_evaluation: usize,
    /// The ring degree N.
    pub degree: usize,
    /// SHA-256 (hex) of the weightless plan the server hands out.
    pub plan_sha256: String,
}

/// `POST /inference/models/{name}/contexts` answer.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ContextCreated {
    /// The context's id (for `/inference/contexts/{id}/…`).
    pub context: String,
    /// The model it is for.
    pub model: String,
    /// Seconds it lives unused.
    pub ttl_secs: u64,
}

struct Model {
    plan: Arc<Plan>,
    bytes: Arc<Vec<u8>>,
    info: ModelInfo,
}

struct Stored {
    owner: String,
    model: String,
    ctx: Arc<VectorContext>,
    last_used: Instant,
}

/// The encrypted-inference service: models, clients, their public contexts.
pub struct InferenceService {
    models: BTreeMap<String, Model>,
    clients: Principals,
    contexts: Mutex<HashMap<String, Stored>>,
    limits: InferenceLimits,
    running: Semaphore,
    admitted: Semaphore,
}

impl std::fmt::Debug for InferenceService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferenceService")
            .field("models", &self.models.keys().collect::<Vec<_>>())
            .field("clients", &self.clients)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn not_found(kind: &'static str, what: &str) -> HttpError {
    HttpError::new(StatusCode::NOT_FOUND, kind, what.to_string())
}

fn bad(e: impl std::fmt::Display) -> HttpError {
    HttpError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
}

fn busy(what: &str) -> HttpError {
    let mut e = HttpError::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", what);
    e.retry_after = Some(1);
    e
}

fn internal(e: impl std::fmt::Display) -> HttpError {
    tracing::error!(error = %e, "inference failed");
    HttpError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "evaluation_failed",
        "the evaluation failed",
    )
}

impl InferenceService {
    /// The models served.
    pub fn models(&self) -> Vec<ModelInfo> {
        self.models.values().map(|m| m.info.clone()).collect()
    }

    /// The public contexts held now (all clients).
    pub fn contexts_held(&self) -> usize {
        self.contexts.lock().map_or(0, |c| c.len())
    }

    /// A service with no model and no client yet.
    pub fn new(limits: InferenceLimits) -> Self {
        let workers = if limits.workers == 0 {
            std::thread::available_parallelism().map_or(1, usize::from)
        } else {
            limits.workers
        };
        Self {
            models: BTreeMap::new(),
            clients: Principals::default(),
            contexts: Mutex::new(HashMap::new()),
            limits,
            running: Semaphore::new(workers),
            admitted: Semaphore::new(workers + limits.queue),
        }
    }

    /// Serves the compiled plan `bytes` (`veil ml compile`) as model `name`.
    pub fn add_model(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), String> {
        if name.is_empty() || self.models.contains_key(name) {
            return Err(format!(
                "model names must be non-empty and distinct ({name:?})"
            ));
        }
        let plan = Plan::from_bytes(&bytes).map_err(|e| format!("model {name:?}: {e}"))?;
        plan.parameters()
            .map_err(|e| format!("model {name:?}: {e}"))?;
        if plan.is_weight_free() {
            return Err(format!(
                "model {name:?}: this is a client plan (no weights): register the plan \
                 `veil ml compile --out` wrote"
            ));
        }
        // Clients get the plan's shape, never the model's weights.
        let bytes = plan.without_weights().to_bytes();
        let info = ModelInfo {
            name: name.to_string(),
            packing: plan.packing().name().to_string(),
            input_len: plan.input_len(),
            output_len: plan.output_len(),
            samples_per_evaluation: plan.samples_per_evaluation(),
            degree: plan.parameter_choice().degree,
            plan_sha256: hex::encode(Sha256::digest(&bytes)),
        };
        self.models.insert(
            name.to_string(),
            Model {
                plan: Arc::new(plan),
                bytes: Arc::new(bytes),
                info,
            },
        );
        Ok(())
    }

    /// Admits a client (names must be non-empty and distinct).
    pub fn add_client(&mut self, client: Principal) -> Result<(), String> {
        self.clients.add(client)
    }

    fn model(&self, name: &str) -> Result<&Model, HttpError> {
        self.models.get(name).ok_or_else(|| {
            not_found(
                "unknown_model",
                &format!("no model {name:?} here (GET /inference/models lists them)"),
            )
        })
    }

    fn contexts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stored>> {
        // A panic elsewhere cannot leave the map half-updated (every update is one call).
        self.contexts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The caller's context `id` (touched), with its model: another client's context is
    /// answered exactly as a missing one.
    fn context(&self, owner: &str, id: &str) -> Result<(Arc<VectorContext>, String), HttpError> {
        let ttl = Duration::from_secs(self.limits.context_ttl_secs);
        let mut map = self.contexts();
        match map.get_mut(id) {
            Some(s) if s.owner == owner && s.last_used.elapsed() < ttl => {
                s.last_used = Instant::now();
                Ok((s.ctx.clone(), s.model.clone()))
            }
            _ => Err(not_found(
                "unknown_context",
                "no such context (it may have expired: upload the public context again)",
            )),
        }
    }

    /// Stores a checked context for `owner`, evicting expired ones and, past the per-client
    /// cap, the owner's least recently used.
    fn store(
        &self,
        owner: &str,
        model: &str,
        ctx: Arc<VectorContext>,
    ) -> Result<String, HttpError> {
        let ttl = Duration::from_secs(self.limits.context_ttl_secs);
        let mut map = self.contexts();
        map.retain(|_, s| s.last_used.elapsed() < ttl);
        let mut own: Vec<(Instant, String)> = map
            .iter()
            .filter(|(_, s)| s.owner == owner)
            .map(|(id, s)| (s.last_used, id.clone()))
            .collect();
        own.sort();
        let cap = self.limits.contexts_per_client.max(1);
        while own.len() >= cap {
            let (_, id) = own.remove(0);
            map.remove(&id);
        }
        if map.len() >= self.limits.max_contexts.max(1) {
            return Err(busy(
                "the server holds as many contexts as it may: retry later",
            ));
        }
        let mut raw = [0u8; 16];
        rand_core::TryRngCore::try_fill_bytes(&mut rand_core::OsRng, &mut raw)
            .map_err(|_| internal("no system randomness"))?;
        let id = hex::encode(raw);
        map.insert(
            id.clone(),
            Stored {
                owner: owner.to_string(),
                model: model.to_string(),
                ctx,
                last_used: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Runs `work` on a blocking thread once a worker is free; 503 when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, HttpError> + Send + 'static,
    ) -> Result<T, HttpError> {
        let _admitted = self
            .admitted
            .try_acquire()
            .map_err(|_| busy("too many evaluations are waiting: retry later"))?;
        let _running = self
            .running
            .acquire()
            .await
            .map_err(|_| busy("shutting down"))?;
        tokio::task::spawn_blocking(work).await.map_err(internal)?
    }
}

/// The inference routes, with their own body limits.
pub fn router(service: Arc<InferenceService>) -> Router {
    let limits = service.limits;
    Router::new()
        .route("/inference/models", get(models_route))
        .route("/inference/models/{name}/plan", get(plan_route))
        .route(
            "/inference/models/{name}/contexts",
            post(context_route).layer(DefaultBodyLimit::max(limits.max_context_bytes)),
        )
        .route(
            "/inference/contexts/{id}/evaluate",
            post(evaluate_route).layer(DefaultBodyLimit::max(limits.max_query_bytes)),
        )
        .route("/inference/contexts/{id}", delete(delete_route))
        .with_state(service)
}

fn require_octets(headers: &HeaderMap) -> Result<(), HttpError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/octet-stream"))
        });
    if ok {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the bytes as Content-Type: application/octet-stream",
        ))
    }
}

fn octets(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

/// The registered models.
#[utoipa::path(get, path = "/inference/models", tag = "inference", security(("bearer" = [])),
    responses((status = 200, body = [ModelInfo]), (status = 401, description = "no valid API token", body = ErrorBody)))]
async fn models_route(
    State(s): State<Arc<InferenceService>>,
    headers: HeaderMap,
) -> Result<Json<Vec<ModelInfo>>, HttpError> {
    s.clients.owner(&headers)?;
    Ok(Json(s.models()))
}

/// The model's plan without its weights (`veil ml keygen|encrypt|decrypt` take it).
#[utoipa::path(get, path = "/inference/models/{name}/plan", tag = "inference",
    security(("bearer" = [])), params(("name" = String, Path, description = "the model")),
    responses((status = 200, description = "the plan", content_type = "application/octet-stream", body = String),
        (status = 401, description = "no valid API token", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn plan_route(
    State(s): State<Arc<InferenceService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    s.clients.owner(&headers)?;
    Ok(octets(s.model(&name)?.bytes.as_ref().clone()))
}

/// Stores the caller's public context (`veil ml keygen --public`) for this model.
#[utoipa::path(post, path = "/inference/models/{name}/contexts", tag = "inference",
    security(("bearer" = [])), params(("name" = String, Path, description = "the model")),
    request_body(content = String, description = "the public context", content_type = "application/octet-stream"),
    responses((status = 201, body = ContextCreated),
        (status = 400, description = "not a public context for this plan", body = ErrorBody),
        (status = 401, description = "no valid API token", body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, description = "too large"),
        (status = 503, description = "too many contexts or evaluations: retry", body = ErrorBody)))]
async fn context_route(
    State(s): State<Arc<InferenceService>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let owner = s.clients.owner(&headers)?.to_string();
    require_octets(&headers)?;
    let plan = s.model(&name)?.plan.clone();
    let ctx = s
        .run(move || {
            let ctx = VectorContext::from_public_bytes(&body, None).map_err(bad)?;
            plan.check_context(&ctx).map_err(bad)?;
            Ok(ctx)
        })
        .await?;
    let id = s.store(&owner, &name, ctx)?;
    tracing::info!(client = %owner, model = %name, "inference context stored");
    let created = ContextCreated {
        context: id,
        model: name,
        ttl_secs: s.limits.context_ttl_secs,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Evaluates encrypted samples (`veil ml encrypt`) under the caller's context.
#[utoipa::path(post, path = "/inference/contexts/{id}/evaluate", tag = "inference",
    security(("bearer" = [])), params(("id" = String, Path, description = "the context")),
    request_body(content = String, description = "encrypted samples", content_type = "application/octet-stream"),
    responses((status = 200, description = "encrypted answers (`veil ml decrypt`)", content_type = "application/octet-stream", body = String),
        (status = 400, body = ErrorBody), (status = 401, description = "no valid API token", body = ErrorBody),
        (status = 404, description = "no such context of the caller's", body = ErrorBody),
        (status = 413, description = "too large"),
        (status = 503, description = "the queue is full: retry", body = ErrorBody)))]
async fn evaluate_route(
    State(s): State<Arc<InferenceService>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let owner = s.clients.owner(&headers)?.to_string();
    require_octets(&headers)?;
    let (ctx, model) = s.context(&owner, &id)?;
    let plan = s.model(&model)?.plan.clone();
    let started = Instant::now();
    let (samples, answer) = s
        .run(move || {
            let query = EncryptedSamples::from_bytes(&ctx, &body).map_err(bad)?;
            let answer = plan.evaluate_samples(&query).map_err(|e| match e {
                veil_ml::MlError::Input { .. } => bad(e),
                other => internal(other),
            })?;
            Ok((query.samples(), answer.to_bytes()))
        })
        .await?;
    tracing::info!(
        client = %owner,
        model = %model,
        samples,
        ms = started.elapsed().as_secs_f64() * 1e3,
        "encrypted inference"
    );
    Ok(octets(answer))
}

/// Forgets the caller's context.
#[utoipa::path(delete, path = "/inference/contexts/{id}", tag = "inference",
    security(("bearer" = [])), params(("id" = String, Path, description = "the context")),
    responses((status = 204, description = "forgotten"), (status = 401, description = "no valid API token", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_route(
    State(s): State<Arc<InferenceService>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, HttpError> {
    let owner = s.clients.owner(&headers)?.to_string();
    s.context(&owner, &id)?;
    s.contexts().remove(&id);
    Ok(StatusCode::NO_CONTENT)
}
