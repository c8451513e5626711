//! The OpenAPI document's top level (info, tags, security scheme, error schemas) and its
//! serving, as JSON and through a Swagger UI whose assets are bundled at build time, so
//! `/docs` works without network. The paths are not listed here: `api_router` adds those the
//! feature routers registered with `routes!`, from the handlers' `#[utoipa::path]` attributes.

use std::collections::BTreeMap;

use axum::Router;
use utoipa::{
    IntoResponses, Modify, OpenApi,
    openapi::{
        ContentBuilder, Ref, RefOr, Response, ResponseBuilder,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};
use utoipa_swagger_ui::SwaggerUi;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chatty",
        description = "Real-time chat backend REST API. Socket.IO events are documented in docs/events.md."
    ),
    components(schemas(ErrorBody, ErrorMessage)),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "auth", description = "Registration, login and sessions"),
        (name = "users", description = "User profiles and search"),
        (name = "conversations", description = "Conversations, participants and typing"),
        (name = "messages", description = "Messages, edits, statuses and receipts"),
        (name = "friendships", description = "Friends, requests, blocks, search and suggestions"),
        (name = "notifications", description = "The notification centre"),
    )
)]
pub struct ApiDoc;

/// The body of every error, as `ApiError::body()` builds it.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // only describes the JSON that `ApiError::body()` writes
pub struct ErrorBody {
    /// The HTTP status code.
    #[serde(rename = "statusCode")]
    status_code: u16,
    /// The status' reason phrase.
    error: String,
    message: ErrorMessage,
    /// Machine-readable error code.
    code: String,
    /// The invalid fields, on validation errors only.
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<Vec<String>>,
}

/// One message, or one per invalid field on validation errors.
#[derive(serde::Serialize, utoipa::ToSchema)]
#[allow(dead_code)] // only describes the JSON that `ApiError::body()` writes
#[serde(untagged)]
pub enum ErrorMessage {
    One(String),
    Many(Vec<String>),
}

/// One error answer with an [`ErrorBody`], as `(status = .., description = .., body =
/// ErrorBody)` in a `responses(...)` list would document it.
fn error_response(status: u16, description: &str) -> BTreeMap<String, RefOr<Response>> {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build();
    let response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build();
    BTreeMap::from([(status.to_string(), response.into())])
}

/// Declares a type per shared error answer, so that a `#[utoipa::path]` names the errors of
/// its operation in its `responses(...)` list (`responses((status = 200, ..), NotFound)`)
/// with one wording everywhere. Errors with a meaning of their own stay tuples there.
macro_rules! error_responses {
    ($($name:ident: $status:literal $description:literal;)+) => {$(
        #[doc = concat!("`", $status, "`: ", $description, ".")]
        pub struct $name;

        impl IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                error_response($status, $description)
            }
        }
    )+};
}

error_responses! {
    BadRequest: 400 "Invalid input";
    Unauthorized: 401 "Missing, invalid or revoked token";
    Forbidden: 403 "Forbidden";
    NotAllowed: 403 "Not allowed";
    NotFound: 404 "Not found";
    Conflict: 409 "Conflict";
    TooLarge: 413 "Body too large";
    HashingBusy: 503 "Password hashing at capacity; retry after Retry-After";
}

/// 400, 401, 403, 404 and 409 together: the friendship and notification routes document
/// each of them on every operation.
pub struct SocialErrors;

impl IntoResponses for SocialErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        [
            BadRequest::responses(),
            Unauthorized::responses(),
            Forbidden::responses(),
            NotFound::responses(),
            Conflict::responses(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

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

/// `/openapi.json` and the Swagger UI at `/docs`, serving `doc`: [`ApiDoc`] merged with the
/// paths of the routers.
pub fn router(mut doc: utoipa::openapi::OpenApi) -> Router<AppState> {
    // The version follows the crate so the document never drifts from the release.
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    Router::new().merge(SwaggerUi::new("/docs").url("/openapi.json", doc))
}
