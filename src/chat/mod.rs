//! Conversation and message operations shared by REST and Socket.IO. Both transports parse
//! their input into domain types, call these functions and serialize the returned views, so
//! a client cannot tell which transport caused a change.
//!
//! Every state change publishes exactly one `BusMessage::Emit` on the chat namespace,
//! addressed to the `user:` rooms of the conversation's participants, after the change is
//! committed. Nothing is published when nothing changed (idempotent retries, cursors that
//! did not move, edits to the same text). Event names and payloads: `docs/events.md`.
//! Every change other than a new message (which has its `seq`) is also appended, with its
//! event, to the conversation's change log in the transaction that makes it ([`changes`]),
//! for whoever misses the publish.
//!
//! Access rule: whoever is not a participant of a conversation right now (a stranger or a
//! removed member) gets 404 for it and for its messages, so its existence is not revealed.

/// The columns of a message view, for a `messages` row aliased `m`.
macro_rules! message_columns {
    () => {
        "m.message_id, m.conversation_id, m.sender_id, m.seq, m.content, m.is_edited, m.created_at, \
         m.updated_at, m.client_msg_id"
    };
}

/// The status of a message aliased `m` as its sender sees it: `read` once every other
/// participant's read cursor reached its seq, `delivered` once every delivered cursor did,
/// else (or with nobody else in the conversation) `sent`.
macro_rules! message_status {
    () => {
        "(select case when count(*) = 0 then 'sent' \
                      when min(p.last_read_seq) >= m.seq then 'read' \
                      when min(p.last_delivered_seq) >= m.seq then 'delivered' \
                      else 'sent' end \
          from conversation_participants p \
          where p.conversation_id = m.conversation_id and p.user_id <> m.sender_id)"
    };
}

mod changes;
mod conversations;
mod messages;
mod sync;
mod typing;

use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

pub use self::changes::{
    ChangeView, ChangesPage, DEFAULT_CHANGE_PAGE, MAX_CHANGE_PAGE, changes_page, prune, prune_loop,
};
pub use self::conversations::{
    ConversationDetails, ConversationSummary, ConversationView, MAX_PARTICIPANTS_PER_REQUEST,
    NewConversation, ParticipantRemoved, ParticipantView, ParticipantsAdded, add_participants,
    conversation_details, conversation_summary, conversation_view, create_conversation,
    list_conversations, remove_participant,
};
pub use self::messages::{
    DEFAULT_MESSAGE_PAGE, MAX_MESSAGE_PAGE, MessageDeleted, MessageRange, MessageStatus,
    MessageStatusEvent, MessageView, Receipt, Replayed, SendBody, delete_message, edit_message,
    mark_status, message_view, messages_after, messages_page, receipts, replay_recent, send_input,
    send_message,
};
pub use self::sync::{
    Caught, MAX_SYNC_CONVERSATIONS, SyncAnswer, SyncFrom, SyncRequest, Synced, sync,
};
pub use self::typing::set_typing;
use crate::{
    bus::{self, BusMessage, Namespace, room},
    error::ApiResult,
    state::AppState,
};

/// Names of the events this module publishes on the chat namespace.
pub mod events {
    pub const NEW_MESSAGE: &str = "newMessage";
    pub const MESSAGE_UPDATED: &str = "messageUpdated";
    pub const MESSAGE_DELETED: &str = "messageDeleted";
    pub const MESSAGE_STATUS: &str = "messageStatus";
    pub const CONVERSATION_CREATED: &str = "conversationCreated";
    pub const PARTICIPANTS_ADDED: &str = "participantsAdded";
    pub const PARTICIPANT_REMOVED: &str = "participantRemoved";
}

/// Whether `user` is a participant of `conversation` right now.
pub async fn is_participant(db: &PgPool, conversation: Uuid, user: Uuid) -> ApiResult<bool> {
    Ok(sqlx::query_scalar::<_, bool>(
        "select exists(select 1 from conversation_participants where conversation_id = $1 and user_id = $2)",
    )
    .bind(conversation)
    .bind(user)
    .fetch_one(db)
    .await?)
}

/// Publishes one event to every device of `recipients` (see [`bus::announce`]).
async fn publish(
    state: &AppState,
    event: &'static str,
    recipients: &[Uuid],
    data: &impl Serialize,
) {
    if recipients.is_empty() {
        return;
    }
    let rooms = recipients.iter().map(|id| room::user(*id)).collect();
    bus::announce(
        state.bus.as_ref(),
        Namespace::Chat,
        event,
        rooms,
        data,
        None,
    )
    .await;
}

/// Moves sockets of `users` in or out of the conversation's room on every node.
async fn publish_rooms(state: &AppState, users: Vec<Uuid>, conversation: Uuid, join: bool) {
    if users.is_empty() {
        return;
    }
    let rooms = vec![room::conversation(conversation)];
    let (join, leave) = if join {
        (rooms, Vec::new())
    } else {
        (Vec::new(), rooms)
    };
    bus::publish_or_log(state.bus.as_ref(), BusMessage::Rooms { users, join, leave }).await;
}
