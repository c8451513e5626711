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
        super::auth::register,
        super::auth::login,
        super::auth::refresh,
        super::auth::logout,
        super::auth::logout_all,
        super::auth::list_sessions,
        super::auth::revoke_session,
        super::users::list_users,
        super::users::me,
        super::users::search_users,
        super::users::get_user,
        super::typing::who_is_typing,
        super::conversations::create,
        super::conversations::list,
        super::conversations::details,
        super::conversations::add_participants,
        super::conversations::remove_participant,
        super::messages::send,
        super::messages::history,
        super::messages::one,
        super::messages::edit,
        super::messages::remove,
        super::messages::status,
        super::messages::receipts,
        super::friendships::list_friends,
        super::friendships::send_request,
        super::friendships::cancel_request,
        super::friendships::list_requests,
        super::friendships::accept,
        super::friendships::decline,
        super::friendships::block,
        super::friendships::unblock,
        super::friendships::list_blocked,
        super::friendships::search,
        super::friendships::suggestions,
        super::friendships::unfriend,
        super::notifications::list,
        super::notifications::list_unread,
        super::notifications::unread_count,
        super::notifications::read_all,
        super::notifications::get_one,
        super::notifications::soft_delete,
        super::notifications::mark_read,
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
