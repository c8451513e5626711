use axum::{Json, extract::State, http::StatusCode, response::IntoResponse};
use serde::Serialize;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::state::AppState;

/// Probes, and `/metrics` unless it has a listener of its own (`CHATTY_METRICS_ADDR`).
pub fn router(serve_metrics: bool) -> OpenApiRouter<AppState> {
    let router = OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz));
    if serve_metrics {
        router.routes(routes!(metrics))
    } else {
        router
    }
}

/// What `/healthz` answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(value_type = String, example = "ok")]
    status: &'static str,
    /// This node's id (`CHATTY_NODE_ID`, or the one it generated).
    node: String,
}

/// What `/readyz` answers, ready or not.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// `ready` or `unavailable`.
    #[schema(value_type = String, example = "ready")]
    status: &'static str,
    node: String,
    /// True from SIGTERM on.
    draining: bool,
    /// `ok` or `unreachable`.
    #[schema(value_type = String, example = "ok")]
    postgres: &'static str,
    /// Sessions, presence and rate limits: `redis` or `memory`; `ok` or `unreachable`.
    fabric: Dependency,
    /// The event bus: `redis` or `memory`; `subscribed` or `reconnecting`.
    bus: Dependency,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Dependency {
    #[schema(value_type = String)]
    kind: &'static str,
    #[schema(value_type = String)]
    status: &'static str,
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Health)))]
/// Liveness: the process answers. Never checks dependencies, so a Redis outage does not
/// get every pod restarted.
async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "ok",
        node: state.node_id.to_string(),
    })
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every dependency answers", body = Readiness),
        (status = 503, description = "A dependency is down or the node is draining", body = Readiness),
    ))]
/// Readiness: PostgreSQL, the fabric and the event bus answer and the node is not draining.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let db = sqlx::query_scalar::<_, i32>("select 1")
        .fetch_one(&state.db)
        .await;
    let fabric = state.fabric.ping().await;
    let draining = state.draining.is_draining();
    let bus = state.bus.connected();
    let ok = db.is_ok() && fabric.is_ok() && bus && !draining;
    let body = Readiness {
        status: if ok { "ready" } else { "unavailable" },
        node: state.node_id.to_string(),
        draining,
        postgres: if db.is_ok() { "ok" } else { "unreachable" },
        fabric: Dependency {
            kind: state.fabric.kind(),
            status: if fabric.is_ok() { "ok" } else { "unreachable" },
        },
        bus: Dependency {
            kind: state.bus.kind(),
            status: if bus { "subscribed" } else { "reconnecting" },
        },
    };
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(body),
    )
}

/// Prometheus metrics; a named wrapper so the route has a documented operation.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String)))]
async fn metrics() -> axum::response::Response {
    crate::metrics::render().await.into_response()
}
