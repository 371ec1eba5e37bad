//! The OpenAPI 3 description of what a `veil serve` mounts, generated from the handlers'
//! annotations and the wire types (`utoipa`), served at `GET /openapi.json`. Only the sections
//! the configuration enables appear.

use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::OpenApi as Doc;
use utoipa::OpenApi;

/// `GET /health`.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "`ok`", body = String)))]
pub async fn health() -> &'static str {
    "ok"
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "veil serve",
        description = "Veil's service: DP SQL, encrypted inference, attestation and key release"
    ),
    paths(health, openapi_json),
    components(schemas(crate::ErrorBody))
)]
struct Base;

#[derive(OpenApi)]
#[openapi(
    paths(crate::dp::datasets_route, crate::dp::query_route),
    components(schemas(crate::dp::QueryRequest, crate::dp::DatasetInfo))
)]
struct Dp;

#[derive(OpenApi)]
#[openapi(
    paths(
        crate::inference::models_route,
        crate::inference::plan_route,
        crate::inference::context_route,
        crate::inference::evaluate_route,
        crate::inference::delete_route
    ),
    components(schemas(crate::inference::ModelInfo, crate::inference::ContextCreated))
)]
struct Inference;

#[derive(OpenApi)]
#[openapi(paths(
    crate::attest::nonce_route,
    crate::attest::attest_route,
    crate::attest::jwks_route
))]
struct Attest;

#[derive(OpenApi)]
#[openapi(paths(crate::kbs::release_route))]
struct Kbs;

#[derive(OpenApi)]
#[openapi(paths(crate::metrics::metrics_route))]
struct Metrics;

#[derive(OpenApi)]
#[openapi(
    paths(
        crate::mpc::create_route,
        crate::mpc::status_route,
        crate::mpc::enroll_route,
        crate::mpc::file_route
    ),
    components(schemas(
        crate::mpc::CreateSession,
        crate::mpc::SessionCreated,
        crate::mpc::SessionStatus
    ))
)]
struct Mpc;

#[derive(OpenApi)]
#[openapi(paths(
    crate::room::info_route,
    crate::room::attest_route,
    crate::room::upload_route,
    crate::room::run_route,
    crate::room::output_route,
    crate::room::audit_route
))]
struct Rooms;

#[derive(OpenApi)]
#[openapi(
    paths(crate::console::overview_route, crate::console::audit_route),
    components(schemas(
        crate::console::Overview,
        crate::console::DatasetOverview,
        crate::console::AnalystCharges,
        crate::console::RoomOverview,
        crate::console::AuditView
    ))
)]
struct Console;

/// Which sections are mounted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mounted {
    /// `[dp]`.
    pub dp: bool,
    /// `[inference]`.
    pub inference: bool,
    /// `[attest]`.
    pub attest: bool,
    /// `[kbs]`.
    pub kbs: bool,
    /// `[metrics]`.
    pub metrics: bool,
    /// `[mpc]`.
    pub mpc: bool,
    /// `[[rooms]]`.
    pub rooms: bool,
    /// `[console]`.
    pub console: bool,
}

/// The description of what is mounted.
pub fn document(mounted: Mounted) -> Doc {
    let mut doc = Base::openapi();
    for (on, part) in [
        (mounted.dp, Dp::openapi as fn() -> Doc),
        (mounted.inference, Inference::openapi),
        (mounted.attest, Attest::openapi),
        (mounted.kbs, Kbs::openapi),
        (mounted.metrics, Metrics::openapi),
        (mounted.mpc, Mpc::openapi),
        (mounted.rooms, Rooms::openapi),
        (mounted.console, Console::openapi),
    ] {
        if on {
            doc.merge(part());
        }
    }
    if mounted.dp || mounted.inference || mounted.mpc || mounted.console {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("an API token from `veil serve token`"))
                    .build(),
            ),
        );
    }
    doc
}

/// `GET /openapi.json`: this description.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "the OpenAPI 3 description of this server", body = Object)))]
async fn openapi_json(
    axum::extract::State(doc): axum::extract::State<std::sync::Arc<serde_json::Value>>,
) -> Json<serde_json::Value> {
    Json(doc.as_ref().clone())
}

/// The routes `/health` and `/openapi.json`.
pub fn router(mounted: Mounted) -> Router {
    let doc = serde_json::to_value(document(mounted)).unwrap_or_default();
    Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi_json))
        .with_state(std::sync::Arc::new(doc))
}
