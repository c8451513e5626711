//! Chat events a client sends: the same operations as the REST routes, through `chat`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::extract::SocketRef;
use uuid::Uuid;

use super::handlers::payload;
use crate::{
    chat::{self, MAX_MESSAGE_PAGE},
    domain::{MessageBody, ReceiptStatus},
    error::{ApiError, ApiResult},
    http::{extract::AuthUser, messages::SendBody, messages::send_input},
    state::AppState,
};

/// Conversations one `sync` may cover; clients with more sync in several calls.
const MAX_SYNC_CONVERSATIONS: usize = 100;

/// `sendMessage` `{ content, conversation_id, client_msg_id? }`: stored exactly like
/// `POST /messages` (same validation and idempotency); the ack carries the stored message.
pub async fn send_message(
    state: AppState,
    user: AuthUser,
    _s: SocketRef,
    v: Value,
) -> ApiResult<Value> {
    let body: SendBody = payload("sendMessage", v)?;
    let (content, conversation, client_msg_id) =
        send_input(&body, state.settings.max_message_chars)?;
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

#[derive(Deserialize)]
struct SyncPayload {
    /// conversation id → the highest seq the client has.
    conversations: HashMap<Uuid, i64>,
}

/// `sync` `{ conversations: { [id]: last_seen_seq } }` → per conversation the messages after
/// that seq (at most 200; `has_more` says to ask again from the last one), the conversation's
/// `last_seq` and the participants' read/delivered cursors. What a reconnecting client
/// needs to fill any gap, in one call.
pub async fn sync(state: AppState, user: AuthUser, _s: SocketRef, v: Value) -> ApiResult<Value> {
    let p: SyncPayload = payload("sync", v)?;
    if p.conversations.len() > MAX_SYNC_CONVERSATIONS {
        return Err(ApiError::invalid(
            "conversations",
            format!("at most {MAX_SYNC_CONVERSATIONS} per sync"),
        ));
    }
    if p.conversations.values().any(|s| *s < 0) {
        return Err(ApiError::invalid(
            "conversations",
            "seqs must not be negative",
        ));
    }
    let mut out = serde_json::Map::new();
    for (conversation, after) in p.conversations {
        let messages = match chat::messages_after(
            &state.db,
            user.user_id,
            conversation,
            after,
            MAX_MESSAGE_PAGE,
        )
        .await
        {
            Ok(m) => m,
            Err(ApiError::NotFound(_)) => {
                out.insert(
                    conversation.to_string(),
                    json!({ "error": { "statusCode": 404, "message": "conversation not found" } }),
                );
                continue;
            }
            Err(e) => return Err(e),
        };
        let cursors: Vec<(Uuid, i64, i64)> = sqlx::query_as(
            "select user_id, last_delivered_seq, last_read_seq from conversation_participants where conversation_id = $1",
        )
        .bind(conversation)
        .fetch_all(&state.db)
        .await?;
        let last_seq: i64 =
            sqlx::query_scalar("select last_seq from conversations where conversation_id = $1")
                .bind(conversation)
                .fetch_one(&state.db)
                .await?;
        let has_more = messages.len() as i64 >= MAX_MESSAGE_PAGE;
        out.insert(
            conversation.to_string(),
            json!({
                "messages": messages,
                "has_more": has_more,
                "last_seq": last_seq,
                "cursors": cursors.iter().map(|(u, d, r)| json!({ "user_id": u, "last_delivered_seq": d, "last_read_seq": r })).collect::<Vec<_>>(),
            }),
        );
    }
    Ok(json!({ "conversations": out }))
}
