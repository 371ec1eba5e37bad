//! DP SQL for analysts over HTTP (`veil serve`, section `[dp]`).
//!
//! | route | what |
//! |---|---|
//! | `GET /dp/datasets` | the datasets, with what the dataset and the caller have left |
//! | `POST /dp/query` | [`QueryRequest`] → a noisy answer (JSON, or CSV with `Accept: text/csv`), or with `"dry_run": true` its cost and accuracy ([`veil_dp_sql::Preview`]) without reading data or charging |
//!
//! Every route needs `Authorization: Bearer <API token>` ([`crate::auth`]). The analyst is the
//! token's owner, never a field of the request: nobody spends another analyst's budget.
//!
//! Every answer is charged to the dataset's registered total and to the analyst's own budget,
//! atomically, before any statistic is computed (the engine's guarantee; the ledger may be
//! PostgreSQL, shared by several server processes). Errors after the plan is accepted (a
//! backend failure) are reported as `query_failed` without their detail, which goes to the
//! server's log: an error message must not become a channel for records.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use veil_dp::DpError;
use veil_dp_sql::dataset::SharedLedger;
use veil_dp_sql::{Engine, QueryOptions, SqlError};

use crate::error::{ErrorBody, HttpError};

/// Longest SQL text accepted.
pub const MAX_SQL_LEN: usize = 16 * 1024;

use crate::auth::Principals;
pub use crate::auth::{token_sha256, Principal as Analyst};

/// The DP SQL service: registered datasets, one ledger, the analysts.
pub struct DpService {
    ledger: SharedLedger,
    datasets: BTreeMap<String, Engine>,
    analysts: Principals,
}

impl std::fmt::Debug for DpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpService")
            .field("datasets", &self.datasets.keys().collect::<Vec<_>>())
            .field("analysts", &self.analysts)
            .finish_non_exhaustive()
    }
}

/// `POST /dp/query` body.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryRequest {
    /// The dataset's name (`GET /dp/datasets`).
    pub dataset: String,
    /// The SQL query.
    pub sql: String,
    /// ε of the whole query.
    pub epsilon: f64,
    /// δ (spent only when grouping by a private key set); default 0.
    #[serde(default)]
    pub delta: f64,
    /// Only say what the query would cost and how accurate it would be.
    #[serde(default)]
    pub dry_run: bool,
    /// Groups one privacy unit may fall into (L0); default: the metadata's.
    #[serde(default)]
    pub max_groups_per_unit: Option<u64>,
    /// Rows one privacy unit may bring to one group (L∞); default: the metadata's.
    #[serde(default)]
    pub max_rows_per_group: Option<u64>,
    /// `laplace` or `gaussian` (zCDP-accounted, needs δ > 0); default: the metadata's.
    #[serde(default)]
    #[schema(example = "gaussian")]
    pub noise: Option<String>,
}

/// One dataset in `GET /dp/datasets`.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetInfo {
    /// The dataset's name.
    pub name: String,
    /// ε the dataset has left (all analysts together).
    pub remaining_epsilon: f64,
    /// δ the dataset has left.
    pub remaining_delta: f64,
    /// ρ the dataset has left (zCDP accounting; 0 otherwise).
    pub remaining_rho: f64,
    /// How the dataset's budget composes: `approx` or `zcdp`.
    pub accounting: String,
    /// ε the caller's own budget has left (`null`: no own budget, the dataset's total binds).
    pub analyst_remaining_epsilon: Option<f64>,
    /// δ the caller's own budget has left.
    pub analyst_remaining_delta: Option<f64>,
    /// ρ the caller's own budget has left.
    pub analyst_remaining_rho: Option<f64>,
}

impl DpService {
    /// A service over `ledger` with no dataset and no analyst yet.
    pub fn new(ledger: SharedLedger) -> Self {
        Self {
            ledger,
            datasets: BTreeMap::new(),
            analysts: Principals::default(),
        }
    }

    /// Serves `engine` as dataset `name` (registered in the ledger: see
    /// [`veil_dp_sql::dataset::registered`]).
    pub fn add_dataset(&mut self, name: &str, engine: Engine) {
        self.datasets.insert(name.to_string(), engine);
    }

    /// Admits an analyst (names must be non-empty and distinct).
    pub fn add_analyst(&mut self, analyst: Analyst) -> Result<(), String> {
        self.analysts.add(analyst)
    }

    /// The names of the datasets served.
    pub fn dataset_names(&self) -> Vec<String> {
        self.datasets.keys().cloned().collect()
    }

    /// The ledger.
    pub fn ledger(&self) -> &SharedLedger {
        &self.ledger
    }

    /// The analyst owning the bearer token in `headers` (see [`crate::auth`]).
    fn analyst(&self, headers: &HeaderMap) -> Result<&str, HttpError> {
        self.analysts.owner(headers)
    }

    fn engine(&self, dataset: &str) -> Result<&Engine, HttpError> {
        self.datasets.get(dataset).ok_or_else(|| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                "unknown_dataset",
                format!("no dataset {dataset:?} here (GET /dp/datasets lists them)"),
            )
        })
    }

    fn datasets(&self, analyst: &str) -> Result<Vec<DatasetInfo>, HttpError> {
        let mut out = Vec::new();
        for name in self.datasets.keys() {
            let all = self.ledger.remaining(name, None).map_err(dp_error)?;
            let own = match self.ledger.remaining(name, Some(analyst)) {
                Ok(r) => Some(r),
                Err(DpError::UnknownDataset(_)) => None,
                Err(e) => return Err(dp_error(e)),
            };
            out.push(DatasetInfo {
                name: name.clone(),
                remaining_epsilon: all.epsilon,
                remaining_delta: all.delta,
                remaining_rho: all.rho,
                accounting: all.accounting.name().to_string(),
                analyst_remaining_epsilon: own.map(|r| r.epsilon),
                analyst_remaining_delta: own.map(|r| r.delta),
                analyst_remaining_rho: own.map(|r| r.rho),
            });
        }
        Ok(out)
    }
}

/// The DP routes.
pub fn router(service: Arc<DpService>) -> Router {
    Router::new()
        .route("/dp/datasets", get(datasets_route))
        .route("/dp/query", post(query_route))
        .with_state(service)
}

/// The datasets, with what the dataset and the caller have left.
#[utoipa::path(get, path = "/dp/datasets", tag = "dp", security(("bearer" = [])),
    responses((status = 200, body = [DatasetInfo]), (status = 401, description = "no valid API token", body = ErrorBody)))]
async fn datasets_route(
    State(s): State<Arc<DpService>>,
    headers: HeaderMap,
) -> Result<Json<Vec<DatasetInfo>>, HttpError> {
    let analyst = s.analyst(&headers)?.to_string();
    let s2 = s.clone();
    let list = tokio::task::spawn_blocking(move || s2.datasets(&analyst))
        .await
        .map_err(|_| HttpError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "task"))??;
    Ok(Json(list))
}

/// Parses a JSON body, insisting on the JSON content type.
pub fn json_body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, HttpError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(HttpError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request as JSON (Content-Type: application/json)",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("request body: {e}"),
        )
    })
}

fn wants_csv(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

/// A noisy answer (JSON, or CSV with `Accept: text/csv`), charged first; with `dry_run`, its
/// cost and accuracy without reading data or charging.
#[utoipa::path(post, path = "/dp/query", tag = "dp", security(("bearer" = [])),
    request_body = QueryRequest,
    responses(
        (status = 200, description = "the answer (columns, rows, charge, accuracy) or the dry run's preview", content(
            (Object = "application/json"), (String = "text/csv"))),
        (status = 400, description = "malformed, or the engine refuses the query (nothing charged)", body = ErrorBody),
        (status = 401, description = "no valid API token", body = ErrorBody),
        (status = 403, description = "budget exhausted", body = ErrorBody),
        (status = 503, description = "the ledger is unavailable (nothing released)", body = ErrorBody)))]
async fn query_route(
    State(s): State<Arc<DpService>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, HttpError> {
    let analyst = s.analyst(&headers)?.to_string();
    let req: QueryRequest = json_body(&headers, &body)?;
    if req.sql.len() > MAX_SQL_LEN {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "query_too_long",
            format!("SQL is limited to {MAX_SQL_LEN} bytes"),
        ));
    }
    let engine = s.engine(&req.dataset)?;
    let options = QueryOptions {
        epsilon: req.epsilon,
        delta: req.delta,
        max_groups_per_unit: req.max_groups_per_unit,
        max_rows_per_group: req.max_rows_per_group,
        noise: req
            .noise
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(sql_error)?,
    };
    let ledger = s.ledger.as_ref();
    // `EXPLAIN <query>` is the dry run of the query.
    let (sql, dry_run) = match veil_dp_sql::explained(&req.sql).map_err(sql_error)? {
        Some(inner) => (inner, true),
        None => (req.sql.as_str(), req.dry_run),
    };
    if dry_run {
        let preview = engine
            .preview(ledger, &req.dataset, &analyst, sql, options)
            .await
            .map_err(sql_error)?;
        return Ok(Json(preview).into_response());
    }
    let result = engine
        .query(ledger, &req.dataset, &analyst, &req.sql, options)
        .await
        .map_err(sql_error)?;
    tracing::info!(
        analyst = %analyst,
        dataset = %req.dataset,
        epsilon = result.epsilon,
        delta = result.delta,
        "dp query answered"
    );
    if wants_csv(&headers) {
        let csv = result.to_csv().map_err(sql_error)?;
        let mut response =
            ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], csv).into_response();
        for (name, value) in [
            ("veil-epsilon", result.epsilon),
            ("veil-delta", result.delta),
            ("veil-remaining-epsilon", result.remaining_epsilon),
            ("veil-charged-rho", result.charged.rho),
        ] {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value.to_string()) {
                response.headers_mut().insert(name, v);
            }
        }
        return Ok(response);
    }
    Ok(Json(result.to_json().map_err(sql_error)?).into_response())
}

fn dp_error(e: DpError) -> HttpError {
    match e {
        DpError::BudgetExhausted { .. } => {
            HttpError::new(StatusCode::FORBIDDEN, "budget_exhausted", e.to_string())
        }
        DpError::UnknownDataset(_) => {
            HttpError::new(StatusCode::NOT_FOUND, "unknown_dataset", e.to_string())
        }
        DpError::InvalidParameter(_) => {
            HttpError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
        }
        other => {
            tracing::error!(error = %other, "ledger error");
            HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "the budget ledger is unavailable: nothing was released; retry later",
            )
        }
    }
}

/// The HTTP form of a DP SQL error: refusals say why (they depend only on the query and the
/// public metadata); failures after the plan was accepted say nothing of their detail.
pub fn sql_error(e: SqlError) -> HttpError {
    match e {
        SqlError::Rejected(_) | SqlError::Sql(_) | SqlError::RejectedAfterEstimate(_) => {
            HttpError::new(StatusCode::BAD_REQUEST, "query_rejected", e.to_string())
        }
        SqlError::Dp(d) => dp_error(d),
        other => {
            tracing::error!(error = %other, "dp query failed");
            HttpError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "query_failed",
                "the query failed after it was accepted; nothing was released",
            )
        }
    }
}
