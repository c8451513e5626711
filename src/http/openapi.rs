//! OpenAPI document generated from the handler annotations, served as JSON and through a
//! Swagger UI whose assets are bundled at build time, so `/docs` works without network.

use axum::Router;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chatty",
        description = "Real-time chat backend REST API. Socket.IO events are documented in docs/events.md."
    ),
    paths(
        super::health::healthz,
        super::health::readyz,
        super::health::metrics,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
    )
)]
pub struct ApiDoc;

/// Registers the `bearer` scheme that authenticated operations refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// `/openapi.json` and the Swagger UI at `/docs`.
pub fn router() -> Router<AppState> {
    let mut doc = ApiDoc::openapi();
    // The version follows the crate so the document never drifts from the release.
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
}
