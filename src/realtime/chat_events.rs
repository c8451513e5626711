//! Chat events a client sends: the same operations as the REST routes, through `chat`.

use serde_json::Value;
use socketioxide::extract::SocketRef;
use uuid::Uuid;

use super::handlers::payload;
use crate::{
    auth::AuthUser,
    chat,
    domain::{MessageBody, ReceiptStatus},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// `sendMessage` `{ content, conversation_id, client_msg_id? }`: stored exactly like
/// `POST /messages` (same validation and idempotency); the ack carries the stored message.
pub async fn send_message(
    state: AppState,
    user: AuthUser,
    _s: SocketRef,
    v: Value,
) -> ApiResult<Value> {
    let body: chat::SendBody = payload("sendMessage", v)?;
    let (content, conversation, client_msg_id) =
        chat::send_input(&body, state.settings.max_message_chars)?;
    let (message, _created) =
        chat::send_message(&state, user.user_id, conversation, content, client_msg_id).await?;
    Ok(serde_json::to_value(message).map_err(anyhow::Error::from)?)
}

fn message_id(v: &Value) -> ApiResult<Uuid> {
    let raw = v
        .get("messageId")
        .or_else(|| v.get("message_id"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("messageId", "is required"))?;
    raw.parse()
        .map_err(|_| ApiError::invalid("messageId", "must be a UUID"))
}

/// `updateMessageStatus` `{ messageId, status: "delivered" | "read" }`: `PUT /messages/:id/status`.
pub async fn update_status(
    state: AppState,
    user: AuthUser,
    _s: SocketRef,
    v: Value,
) -> ApiResult<Value> {
    let id = message_id(&v)?;
    let status = ReceiptStatus::parse(v.get("status").and_then(Value::as_str).unwrap_or(""))?;
    let message = chat::mark_status(&state, user.user_id, id, status).await?;
    Ok(serde_json::to_value(message).map_err(anyhow::Error::from)?)
}

/// `editMessage` `{ messageId, content }`: `PUT /messages/:id`.
pub async fn edit_message(
    state: AppState,
    user: AuthUser,
    _s: SocketRef,
    v: Value,
) -> ApiResult<Value> {
    let id = message_id(&v)?;
    let raw = v
        .get("content")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid("content", "is required"))?;
    let content = MessageBody::parse(raw, state.settings.max_message_chars)?;
    let message = chat::edit_message(&state, user.user_id, id, content).await?;
    Ok(serde_json::to_value(message).map_err(anyhow::Error::from)?)
}

/// `deleteMessage` `{ messageId }`: `DELETE /messages/:id`.
pub async fn delete_message(
    state: AppState,
    user: AuthUser,
    _s: SocketRef,
    v: Value,
) -> ApiResult<Value> {
    let id = message_id(&v)?;
    let deleted = chat::delete_message(&state, user.user_id, id).await?;
    Ok(serde_json::to_value(deleted).map_err(anyhow::Error::from)?)
}

/// `sync` `{ conversations: { [id]: last_seen_seq } }`: see [`chat::sync`].
pub async fn sync(state: AppState, user: AuthUser, _s: SocketRef, v: Value) -> ApiResult<Value> {
    let request: chat::SyncRequest = payload("sync", v)?;
    let answer = chat::sync(&state, user.user_id, request).await?;
    Ok(serde_json::to_value(answer).map_err(anyhow::Error::from)?)
}
