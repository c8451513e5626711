//! REST routes. Each feature module owns its router, an `OpenApiRouter` that registers each
//! handler with its `#[utoipa::path]` attribute; `api_router` merges them, and the OpenAPI
//! document is what the merged router collected. The web client's routes (`web.rs`) are not
//! part of the API and are merged after the document is made.

/// An `OpenApiRouter` registering each handler, or each parenthesized group of handlers that
/// share a path, with `routes!`: `routes_of![list, (get_one, delete)]`.
macro_rules! routes_of {
    ($($handlers:tt),* $(,)?) => {
        ::utoipa_axum::router::OpenApiRouter::new()$(.routes(routes_of!(@one $handlers)))*
    };
    (@one ($($handler:ident),+)) => {
        ::utoipa_axum::routes!($($handler),+)
    };
    (@one $handler:ident) => {
        ::utoipa_axum::routes!($handler)
    };
}

pub mod auth;
pub mod conversations;
pub mod extract;
pub mod friendships;
pub mod health;
pub mod messages;
pub mod notifications;
pub mod openapi;
pub mod typing;
pub mod users;
pub mod web;

use std::time::{Duration, Instant};

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request},
    http::{HeaderName, StatusCode},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::TraceLayer,
};

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::{error::ApiError, state::AppState};

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Every REST route with the layers every request goes through.
pub fn api_router(state: AppState) -> Router {
    let settings = state.settings.clone();
    // Routing and documentation both come from the handlers' `#[utoipa::path]` attributes.
    let (routes, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(health::router(settings.metrics_addr.is_none()))
        .merge(auth::router())
        .merge(users::router())
        .merge(conversations::router())
        .merge(messages::router())
        .merge(typing::router())
        .merge(friendships::router())
        .merge(notifications::router())
        .split_for_parts();
    routes
        .merge(openapi::router(doc))
        .merge(web::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            Duration::from_secs(settings.request_timeout_secs),
        ))
        .layer(middleware::from_fn(crate::metrics::track_http))
        .layer(middleware::from_fn(log_request))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(|req: &Request| {
                            let id = req
                                .headers()
                                .get(REQUEST_ID)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-");
                            // user_id is filled in by the AuthUser extractor once the token checks out.
                            tracing::info_span!(
                                "http",
                                method = %req.method(),
                                uri = %req.uri().path(),
                                request_id = %id,
                                user_id = tracing::field::Empty,
                            )
                        })
                        // log_request writes the one line per request (5xx at warn), and
                        // ApiError logs a server error's cause once.
                        .on_request(())
                        .on_response(())
                        .on_failure(()),
                )
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(panic_response)),
        )
        .with_state(state)
}

/// One line per request, inside the request's span (so it carries the request and user
/// ids). Probes and scrapes log at debug: they arrive every few seconds from every balancer
/// and would drown everything else.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let probe = matches!(req.uri().path(), "/healthz" | "/readyz" | "/metrics");
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let latency_ms = start.elapsed().as_secs_f64() * 1000.0;
    if status >= 500 {
        tracing::warn!(status, latency_ms, "request");
    } else if probe {
        tracing::debug!(status, latency_ms, "request");
    } else {
        tracing::info!(status, latency_ms, "request");
    }
    resp
}

/// 201 with what the request created, or 200 with what existed already: a repeated request
/// answers with the original instead of creating it twice.
pub struct Created<T> {
    pub created: bool,
    pub body: T,
}

impl<T: serde::Serialize> IntoResponse for Created<T> {
    fn into_response(self) -> Response {
        let status = if self.created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        (status, axum::Json(self.body)).into_response()
    }
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("Cannot {} {}", req.method(), req.uri().path()).into())
}

async fn method_not_allowed(req: Request) -> Response {
    let err = ApiError::NotFound(format!("Cannot {} {}", req.method(), req.uri().path()).into());
    let mut body = err.body();
    body["statusCode"] = 405.into();
    body["error"] = "Method Not Allowed".into();
    body["code"] = "method_not_allowed".into();
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::Internal(anyhow::anyhow!("handler panicked")).into_response()
}
