use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    Created,
    extract::{AppJson, AppQuery, Caller, CallerAt, Change},
    openapi::{BadRequest, NotAllowed, NotFound, TooLarge, Unauthorized},
    users::page_limit,
};
use crate::{
    chat::{self, ConversationDetails, ConversationSummary, ConversationView, NewConversation},
    error::{ApiError, ApiResult},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    routes_of![
        (list, create),
        details,
        add_participants,
        remove_participant
    ]
}

/// Ids as strings, so that a malformed one is a 400 naming `field` and the bad value.
pub(super) fn parse_ids(field: &'static str, raw: &[String]) -> ApiResult<Vec<Uuid>> {
    let mut ids = Vec::with_capacity(raw.len());
    let mut bad = Vec::new();
    for s in raw {
        match s.trim().parse::<Uuid>() {
            Ok(id) => ids.push(id),
            Err(_) => bad.push(format!("{s:?}")),
        }
    }
    if bad.is_empty() {
        Ok(ids)
    } else {
        Err(ApiError::invalid(
            field,
            format!("must contain only UUIDs; not: {}", bad.join(", ")),
        ))
    }
}

/// An optional integer query parameter; anything unparsable is a 400 naming it.
pub(super) fn int_param(
    field: &'static str,
    raw: Option<&str>,
    min: i64,
) -> ApiResult<Option<i64>> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    match raw.parse::<i64>() {
        Ok(v) if v >= min => Ok(Some(v)),
        _ => Err(ApiError::invalid(
            field,
            format!("must be an integer of at least {min}"),
        )),
    }
}

/// A new conversation. Without `is_group`, one other participant makes a direct chat.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = CreateConversationBody)]
struct CreateBody {
    /// The group's name; direct chats have none.
    name: Option<String>,
    /// Also accepted as `isGroup`.
    #[serde(alias = "isGroup")]
    is_group: Option<bool>,
    /// The other members (the caller is added as owner); also accepted as `participantIds`.
    #[serde(default, alias = "participantIds")]
    #[schema(value_type = Vec<Uuid>)]
    participant_ids: Vec<String>,
}

/// 201 with the new conversation, or 200 with the existing direct chat between the two users.
#[utoipa::path(post, path = "/conversations", tag = "conversations", request_body = CreateBody, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = ConversationSummary),
        (status = 200, description = "The direct chat between the two users exists already", body = ConversationSummary),
        BadRequest, Unauthorized, NotFound, TooLarge))]
async fn create(
    Caller(auth, state): Caller,
    AppJson(body): AppJson<CreateBody>,
) -> ApiResult<Created<ConversationSummary>> {
    let ids = parse_ids("participant_ids", &body.participant_ids)?;
    let new = NewConversation::parse(
        auth.user_id,
        body.name.as_deref(),
        body.is_group.unwrap_or(false),
        &ids,
    )?;
    let (body, created) = chat::create_conversation(&state, auth.user_id, new).await?;
    Ok(Created { created, body })
}

// Strings, so that `int_param` names a malformed one.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Page size
    #[param(value_type = Option<i64>)]
    limit: Option<String>,
    /// Rows to skip
    #[param(value_type = Option<i64>)]
    offset: Option<String>,
}

#[utoipa::path(get, path = "/conversations", tag = "conversations", security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "The caller's conversations", body = Vec<ConversationSummary>),
        BadRequest, Unauthorized))]
async fn list(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<ListParams>,
) -> ApiResult<Json<Vec<ConversationSummary>>> {
    let limit = page_limit(int_param("limit", p.limit.as_deref(), 1)?)?;
    let offset = int_param("offset", p.offset.as_deref(), 0)?.unwrap_or(0);
    let page = chat::list_conversations(&db, auth.user_id, limit, offset).await?;
    Ok(Json(page))
}

#[utoipa::path(get, path = "/conversations/{id}", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "Conversation with participants", body = ConversationDetails),
        BadRequest, Unauthorized, NotFound))]
async fn details(CallerAt(auth, state, id): CallerAt) -> ApiResult<Json<ConversationDetails>> {
    Ok(Json(
        chat::conversation_details(&state.db, auth.user_id, id).await?,
    ))
}

/// Users to add to a group.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = AddParticipantsBody)]
struct AddBody {
    /// Also accepted as `user_ids`.
    #[serde(default, alias = "user_ids")]
    #[serde(rename = "userIds")]
    #[schema(value_type = Vec<Uuid>, required = true)]
    user_ids: Vec<String>,
}

#[utoipa::path(post, path = "/conversations/{id}/participants", tag = "conversations", request_body = AddBody, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "The conversation after adding", body = ConversationView),
        BadRequest, Unauthorized, NotAllowed, NotFound, TooLarge))]
async fn add_participants(
    Change(auth, state, id, body): Change<AddBody>,
) -> ApiResult<Json<ConversationView>> {
    let ids = parse_ids("userIds", &body.user_ids)?;
    Ok(Json(
        chat::add_participants(&state, auth.user_id, id, &ids).await?,
    ))
}

#[utoipa::path(post, path = "/conversations/{id}/participants/{user_id}/remove", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id"), ("user_id" = Uuid, Path, description = "Participant to remove")),
    responses(
        (status = 200, description = "The conversation after removing", body = ConversationView),
        BadRequest, Unauthorized, NotAllowed, NotFound))]
async fn remove_participant(
    CallerAt(auth, state, (id, user_id)): CallerAt<(Uuid, Uuid)>,
) -> ApiResult<Json<ConversationView>> {
    Ok(Json(
        chat::remove_participant(&state, auth.user_id, id, user_id).await?,
    ))
}
