//! Prometheus metrics for `veil serve` (section `[metrics]`, route `GET /metrics`).
//!
//! | metric | labels | what |
//! |---|---|---|
//! | `veil_http_requests_total` | `route`, `method`, `status` | requests answered |
//! | `veil_http_request_duration_seconds` | `route` | time to the response's head |
//! | `veil_http_requests_in_flight` | | requests being handled |
//!
//! Labels come from a closed set, never from what a client sends: `route` is the route's
//! pattern (`/inference/contexts/{id}/evaluate`, not the id) or `unmatched`, `method` one of
//! the standard methods or `other`. A client requesting random paths or inventing methods
//! therefore cannot grow the series without bound (a cardinality attack on the server's
//! memory and on the monitoring system), and no id, token or query text reaches a label.
//! With `token_sha256`, `/metrics` needs that bearer token (see [`crate::auth`]).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::auth::{Principal, Principals};
use crate::error::HttpError;

/// Section `[metrics]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// SHA-256 (hex) of the token a scraper must present; without it `/metrics` is open.
    pub token_sha256: Option<String>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    in_flight: Gauge,
    scrapers: Option<Principals>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to ~33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

pub(crate) fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

impl Metrics {
    /// Metrics as `config` describes (a bad token hash is an error).
    pub fn new(config: &MetricsConfig) -> Result<Self, String> {
        let scrapers = match &config.token_sha256 {
            Some(hex) => {
                let hash = crate::auth::parse_token_hash(hex)
                    .ok_or("[metrics] token_sha256 must be 64 hex digits")?;
                let mut p = Principals::default();
                p.add(Principal {
                    name: "metrics".into(),
                    token_sha256: hash,
                })?;
                Some(p)
            }
            None => None,
        };
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::default();
        registry.register(
            "veil_http_requests",
            "HTTP requests answered",
            requests.clone(),
        );
        registry.register(
            "veil_http_request_duration_seconds",
            "Time to the response's head",
            duration.clone(),
        );
        registry.register(
            "veil_http_requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        Ok(Self {
            registry,
            requests,
            duration,
            in_flight,
            scrapers,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            tracing::error!("cannot encode the metrics");
        }
        out
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), HttpError> {
        match &self.scrapers {
            Some(p) => p.owner(headers).map(|_| ()),
            None => Ok(()),
        }
    }
}

/// Adds `GET /metrics` to `app` and counts every request `app` answers.
pub fn instrument(app: Router, metrics: Arc<Metrics>) -> Router {
    let route = Router::new()
        .route("/metrics", get(metrics_route))
        .with_state(metrics.clone());
    app.merge(route)
        .layer(axum::middleware::from_fn_with_state(metrics, track))
}

/// Prometheus metrics (text format).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "the metrics", content_type = "text/plain", body = String),
        (status = 401, description = "a scrape token is configured and was not given", body = crate::ErrorBody)))]
async fn metrics_route(
    State(m): State<Arc<Metrics>>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    m.authorize(&headers)?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.render(),
    )
        .into_response())
}

async fn track(State(m): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    m.in_flight.inc();
    let started = Instant::now();
    let response = next.run(req).await;
    m.in_flight.dec();
    m.duration
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
