use axum::Json;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;

use super::{
    Created,
    conversations::int_param,
    extract::{AppQuery, CallerAt, Change, Sends},
    openapi::{BadRequest, NotAllowed, NotFound, TooLarge, Unauthorized},
};
use crate::{
    chat::{
        self, ChangesPage, DEFAULT_CHANGE_PAGE, DEFAULT_MESSAGE_PAGE, MAX_CHANGE_PAGE,
        MAX_MESSAGE_PAGE, MessageDeleted, MessageRange, MessageView, Receipt, SendBody, send_input,
    },
    domain::{MessageBody, ReceiptStatus},
    error::{ApiError, ApiResult},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    routes_of![
        send,
        history,
        changes,
        (one, edit, remove),
        status,
        receipts
    ]
}

/// 201 with the stored message, or 200 with the original when `client_msg_id` repeats.
#[utoipa::path(post, path = "/messages", tag = "messages", request_body = SendBody, security(("bearer" = [])),
    responses(
        (status = 201, description = "Stored message", body = MessageView),
        (status = 200, description = "The message stored earlier with this `client_msg_id`", body = MessageView),
        BadRequest, Unauthorized, NotFound, TooLarge))]
async fn send(Sends(auth, state, body): Sends<SendBody>) -> ApiResult<Created<MessageView>> {
    let (content, conversation_id, client_msg_id) =
        send_input(&body, state.settings.max_message_chars)?;
    let (body, created) = chat::send_message(
        &state,
        auth.user_id,
        conversation_id,
        content,
        client_msg_id,
    )
    .await?;
    Ok(Created { created, body })
}

#[derive(Debug, Deserialize)]
struct HistoryParams {
    before_seq: Option<String>,
    after_seq: Option<String>,
    limit: Option<String>,
}

/// Ascending by seq. `after_seq`: the first `limit` after it; `before_seq`: the last
/// `limit` before it; both: that range from its start; neither: the newest `limit`.
#[utoipa::path(get, path = "/messages/conversation/{conversation_id}", tag = "messages", security(("bearer" = [])),
    params(("conversation_id" = Uuid, Path, description = "Conversation id")),
    responses(
        (status = 200, description = "Messages of a conversation", body = Vec<MessageView>),
        BadRequest, Unauthorized, NotFound))]
async fn history(
    CallerAt(auth, AppState { db, .. }, conversation_id): CallerAt,
    AppQuery(p): AppQuery<HistoryParams>,
) -> ApiResult<Json<Vec<MessageView>>> {
    let before_seq = int_param("before_seq", p.before_seq.as_deref(), 1)?;
    let after_seq = int_param("after_seq", p.after_seq.as_deref(), 0)?;
    let limit = match int_param("limit", p.limit.as_deref(), 1)? {
        None => DEFAULT_MESSAGE_PAGE,
        Some(l) if l <= MAX_MESSAGE_PAGE => l,
        Some(_) => {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_MESSAGE_PAGE}"),
            ));
        }
    };
    let range = MessageRange {
        after_seq,
        before_seq,
        limit,
    };
    Ok(Json(
        chat::messages_page(&db, auth.user_id, conversation_id, range).await?,
    ))
}

#[derive(Debug, Deserialize)]
struct ChangesParams {
    after: Option<String>,
    limit: Option<String>,
}

/// The conversation's change log after `after` (a `change_seq`; 0 or none: from the
/// start): edits, deletes, receipts and membership changes as the events they were
/// announced with, ascending. `truncated`: changes after `after` are no longer kept;
/// reload the conversation and continue from `last_change_seq`.
#[utoipa::path(get, path = "/messages/conversation/{conversation_id}/changes", tag = "messages", security(("bearer" = [])),
    params(
        ("conversation_id" = Uuid, Path, description = "Conversation id"),
        ("after" = Option<i64>, Query, description = "The last change_seq the client holds"),
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 200 (default 50)")),
    responses(
        (status = 200, description = "Changes of a conversation after a cursor", body = ChangesPage),
        BadRequest, Unauthorized, NotFound))]
async fn changes(
    CallerAt(auth, AppState { db, .. }, conversation_id): CallerAt,
    AppQuery(p): AppQuery<ChangesParams>,
) -> ApiResult<Json<ChangesPage>> {
    let after = int_param("after", p.after.as_deref(), 0)?.unwrap_or(0);
    let limit = match int_param("limit", p.limit.as_deref(), 1)? {
        None => DEFAULT_CHANGE_PAGE,
        Some(l) if l <= MAX_CHANGE_PAGE => l,
        Some(_) => {
            return Err(ApiError::invalid(
                "limit",
                format!("must be between 1 and {MAX_CHANGE_PAGE}"),
            ));
        }
    };
    Ok(Json(
        chat::changes_page(&db, auth.user_id, conversation_id, after, limit).await?,
    ))
}

#[utoipa::path(get, path = "/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Message id")),
    responses((status = 200, description = "The message", body = MessageView), BadRequest, Unauthorized, NotFound))]
async fn one(CallerAt(auth, state, id): CallerAt) -> ApiResult<Json<MessageView>> {
    Ok(Json(chat::message_view(&state.db, auth.user_id, id).await?))
}

/// The new text of a message.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = EditMessageBody)]
struct EditBody {
    #[schema(value_type = String, required = true)]
    content: Option<String>,
}

#[utoipa::path(put, path = "/messages/{id}", tag = "messages", request_body = EditBody, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "The edited message", body = MessageView),
        BadRequest, Unauthorized, NotAllowed, NotFound, TooLarge))]
async fn edit(Change(auth, state, id, body): Change<EditBody>) -> ApiResult<Json<MessageView>> {
    let raw = required("content", body.content)?;
    let content = MessageBody::parse(&raw, state.settings.max_message_chars)?;
    Ok(Json(
        chat::edit_message(&state, auth.user_id, id, content).await?,
    ))
}

#[utoipa::path(delete, path = "/messages/{id}", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Deleted", body = MessageDeleted),
        BadRequest, Unauthorized, NotAllowed, NotFound))]
async fn remove(CallerAt(auth, state, id): CallerAt) -> ApiResult<Json<MessageDeleted>> {
    Ok(Json(chat::delete_message(&state, auth.user_id, id).await?))
}

/// A field the body must hold, or a 400 naming it.
fn required(field: &'static str, value: Option<String>) -> ApiResult<String> {
    value.ok_or_else(|| ApiError::invalid(field, "is required"))
}

/// How far the caller has got: `delivered` or `read` (read implies delivered).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = MessageStatusBody)]
struct StatusBody {
    #[schema(value_type = String, required = true, example = "read")]
    status: Option<String>,
}

/// Answers with the message and its aggregate status after the change.
#[utoipa::path(put, path = "/messages/{id}/status", tag = "messages", request_body = StatusBody, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "The message with its new status", body = MessageView),
        BadRequest, Unauthorized, NotFound, TooLarge))]
async fn status(Change(auth, state, id, body): Change<StatusBody>) -> ApiResult<Json<MessageView>> {
    let status = ReceiptStatus::parse(&required("status", body.status)?)?;
    Ok(Json(
        chat::mark_status(&state, auth.user_id, id, status).await?,
    ))
}

#[utoipa::path(get, path = "/messages/{id}/receipts", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Message id")),
    responses(
        (status = 200, description = "Per-recipient delivery and read receipts", body = Vec<Receipt>),
        BadRequest, Unauthorized, NotFound))]
async fn receipts(CallerAt(auth, state, id): CallerAt) -> ApiResult<Json<Vec<Receipt>>> {
    Ok(Json(chat::receipts(&state.db, auth.user_id, id).await?))
}
