//! The events a client sends on `/`, one payload type each: the same operations as the
//! REST routes, through the core (`chat`). Names, payloads and answers: `docs/events.md`.

use serde::{Deserialize, Serialize, de::IgnoredAny};
use socketioxide::extract::SocketRef;
use uuid::Uuid;

use super::envelope::{Call, dispatch};
use crate::{
    auth::AuthUser,
    bus::{Member, Namespace, room},
    chat::{self, MessageDeleted, MessageView, SendBody, SyncAnswer, SyncRequest},
    domain::{MessageBody, ReceiptStatus},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// Registers every chat event on a new socket.
pub(super) fn register(s: &SocketRef) {
    s.on_fallback(dispatch);
}

/// Runs the handler of `event`; an event Chatty does not know is ignored.
pub(super) async fn route(event: &str, call: Call) {
    match event {
        "joinConversation" => call.run("joinConversation", join_conversation).await,
        "leaveConversation" => call.run("leaveConversation", leave_conversation).await,
        "typing" => call.run("typing", typing).await,
        "sendMessage" => call.run("sendMessage", send_message).await,
        "updateMessageStatus" => call.run("updateMessageStatus", update_status).await,
        "editMessage" => call.run("editMessage", edit_message).await,
        "deleteMessage" => call.run("deleteMessage", delete_message).await,
        "sync" => call.run("sync", sync).await,
        _ => tracing::debug!(event, "unknown socket event ignored"),
    }
}

/// `joinConversation` / `leaveConversation`: a conversation id, bare or as
/// `{ conversationId }` (or `conversation_id`).
#[derive(Deserialize)]
#[serde(untagged)]
enum ConversationRef {
    Bare(String),
    Object {
        #[serde(rename = "conversationId", alias = "conversation_id")]
        conversation_id: String,
    },
    /// Anything else: answered as a missing id, naming the field.
    Other(IgnoredAny),
}

impl ConversationRef {
    /// The id, as the answer to joining or leaving.
    fn ack(&self) -> ApiResult<ConversationAck> {
        let raw = match self {
            Self::Bare(raw)
            | Self::Object {
                conversation_id: raw,
            } => raw,
            Self::Other(_) => return Err(ApiError::invalid("conversationId", "is required")),
        };
        let conversation_id = raw
            .parse()
            .map_err(|_| ApiError::invalid("conversationId", "must be a UUID"))?;
        Ok(ConversationAck { conversation_id })
    }
}

/// The answer to joining or leaving.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConversationAck {
    conversation_id: Uuid,
}

/// `joinConversation`: the socket hears the conversation's `conv:` room (typing, status).
/// Members only.
async fn join_conversation(
    state: AppState,
    user: AuthUser,
    s: SocketRef,
    p: ConversationRef,
) -> ApiResult<ConversationAck> {
    let ack = p.ack()?;
    if !chat::is_participant(&state.db, ack.conversation_id, user.user_id).await? {
        return Err(ApiError::not_found("conversation"));
    }
    let rooms = [room::conversation(ack.conversation_id)];
    s.join(rooms.clone());
    // Answered once this node hears the room: what is published after the answer arrives.
    state
        .bus
        .join(Member::new(Namespace::Chat, s.id), &rooms)
        .await;
    Ok(ack)
}

async fn leave_conversation(
    state: AppState,
    _user: AuthUser,
    s: SocketRef,
    p: ConversationRef,
) -> ApiResult<ConversationAck> {
    let ack = p.ack()?;
    let rooms = [room::conversation(ack.conversation_id)];
    s.leave(rooms.clone());
    state.bus.leave(Member::new(Namespace::Chat, s.id), &rooms);
    Ok(ack)
}

/// `typing` `{ conversationId, isTyping }`, answered with itself.
#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct Typing {
    #[serde(alias = "conversation_id")]
    conversation_id: Uuid,
    #[serde(alias = "is_typing")]
    is_typing: bool,
}

/// See [`chat::set_typing`].
async fn typing(state: AppState, user: AuthUser, _s: SocketRef, p: Typing) -> ApiResult<Typing> {
    chat::set_typing(&state, user.user_id, p.conversation_id, p.is_typing).await?;
    Ok(p)
}

/// Before an event that writes: whether the socket's device session still stands. A logout
/// disconnects the device's sockets on every node through the bus, but an event the device
/// sent just after the logout was answered can reach its node first; it must change
/// nothing. One cache lookup, as every REST request makes.
async fn still_signed_in(state: &AppState, user: AuthUser, s: &SocketRef) -> ApiResult<()> {
    if state
        .fabric
        .sessions
        .touch(user.user_id, user.session_id)
        .await?
    {
        return Ok(());
    }
    let _ = s.clone().disconnect();
    Err(ApiError::Unauthorized(
        "session has been revoked or has expired".into(),
    ))
}

/// `sendMessage` `{ content, conversation_id, client_msg_id? }`: stored exactly like
/// `POST /messages` (same validation and idempotency); the ack carries the stored message.
async fn send_message(
    state: AppState,
    user: AuthUser,
    s: SocketRef,
    body: SendBody,
) -> ApiResult<MessageView> {
    still_signed_in(&state, user, &s).await?;
    let (content, conversation, client_msg_id) =
        chat::send_input(&body, state.settings.max_message_chars)?;
    let (message, _created) =
        chat::send_message(&state, user.user_id, conversation, content, client_msg_id).await?;
    Ok(message)
}

/// A message id as `messageId` (or `message_id`).
fn message_id(raw: Option<&str>) -> ApiResult<Uuid> {
    raw.ok_or_else(|| ApiError::invalid("messageId", "is required"))?
        .parse()
        .map_err(|_| ApiError::invalid("messageId", "must be a UUID"))
}

/// `updateMessageStatus` `{ messageId, status: "delivered" | "read" }`.
#[derive(Deserialize)]
struct StatusUpdate {
    #[serde(rename = "messageId", alias = "message_id")]
    message_id: Option<String>,
    #[serde(default)]
    status: String,
}

/// `PUT /messages/:id/status`.
async fn update_status(
    state: AppState,
    user: AuthUser,
    s: SocketRef,
    p: StatusUpdate,
) -> ApiResult<MessageView> {
    still_signed_in(&state, user, &s).await?;
    let id = message_id(p.message_id.as_deref())?;
    let status = ReceiptStatus::parse(&p.status)?;
    chat::mark_status(&state, user.user_id, id, status).await
}

/// `editMessage` `{ messageId, content }`.
#[derive(Deserialize)]
struct Edit {
    #[serde(rename = "messageId", alias = "message_id")]
    message_id: Option<String>,
    content: Option<String>,
}

/// `PUT /messages/:id`.
async fn edit_message(
    state: AppState,
    user: AuthUser,
    s: SocketRef,
    p: Edit,
) -> ApiResult<MessageView> {
    still_signed_in(&state, user, &s).await?;
    let id = message_id(p.message_id.as_deref())?;
    let raw = p
        .content
        .ok_or_else(|| ApiError::invalid("content", "is required"))?;
    let content = MessageBody::parse(&raw, state.settings.max_message_chars)?;
    chat::edit_message(&state, user.user_id, id, content).await
}

/// `deleteMessage` `{ messageId }`.
#[derive(Deserialize)]
struct Delete {
    #[serde(rename = "messageId", alias = "message_id")]
    message_id: Option<String>,
}

/// `DELETE /messages/:id`.
async fn delete_message(
    state: AppState,
    user: AuthUser,
    s: SocketRef,
    p: Delete,
) -> ApiResult<MessageDeleted> {
    still_signed_in(&state, user, &s).await?;
    let id = message_id(p.message_id.as_deref())?;
    chat::delete_message(&state, user.user_id, id).await
}

/// `sync` `{ conversations: { [id]: last_seen_seq | { seq, changes } } }`: see [`chat::sync`].
async fn sync(
    state: AppState,
    user: AuthUser,
    _s: SocketRef,
    request: SyncRequest,
) -> ApiResult<SyncAnswer> {
    chat::sync(&state, user.user_id, request).await
}
