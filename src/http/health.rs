use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::{Value, json};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process answers", body = Object)))]
/// Liveness: the process answers. Never checks dependencies, so a Redis outage does not
/// get every pod restarted.
async fn healthz(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "status": "ok", "node": &*state.node_id }))
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Every dependency answers", body = Object),
        (status = 503, description = "A dependency is down or the node is draining", body = Object),
    ))]
/// Readiness: PostgreSQL, the fabric and the event bus answer and the node is not draining.
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let db = sqlx::query_scalar::<_, i32>("select 1")
        .fetch_one(&state.db)
        .await;
    let fabric = state.fabric.ping().await;
    let draining = state.draining.is_draining();
    let bus = state.broker.connected();
    let ok = db.is_ok() && fabric.is_ok() && bus && !draining;
    let body = json!({
        "status": if ok { "ready" } else { "unavailable" },
        "node": &*state.node_id,
        "draining": draining,
        "postgres": if db.is_ok() { "ok" } else { "unreachable" },
        "fabric": { "kind": state.fabric.kind(), "status": if fabric.is_ok() { "ok" } else { "unreachable" } },
        "bus": { "kind": state.broker.kind(), "status": if bus { "subscribed" } else { "reconnecting" } },
    });
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
