use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, types::Json};
use uuid::Uuid;

use super::{events, is_participant, publish};
use crate::{
    bus::{self, BusMessage, Emit, Namespace, StreamPosition, room},
    domain::{MessageBody, ReceiptStatus},
    error::{ApiError, ApiResult, FieldError},
    fabric::{Rate, Verdict},
    limits::{self, Limit},
    state::AppState,
};

/// Page size of message history when the client names none.
pub const DEFAULT_MESSAGE_PAGE: i64 = 50;
/// Largest page of message history one request may ask for.
pub const MAX_MESSAGE_PAGE: i64 = 200;

/// A message's status as its sender sees it, aggregated over every other participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MessageStatus {
    /// Stored; not every other participant has it yet (or there is nobody else).
    Sent,
    /// Every other participant's delivered cursor has reached it.
    Delivered,
    /// Every other participant's read cursor has reached it.
    Read,
}

#[derive(Debug, thiserror::Error)]
#[error("unknown message status {0:?}")]
pub struct UnknownStatus(String);

impl TryFrom<String> for MessageStatus {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "sent" => Ok(Self::Sent),
            "delivered" => Ok(Self::Delivered),
            "read" => Ok(Self::Read),
            _ => Err(UnknownStatus(s)),
        }
    }
}

/// A message as every client sees it. Deleted messages are never turned into one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct MessageView {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    /// Position in the conversation: 1, 2, 3, ... with no gaps among stored messages.
    pub seq: i64,
    pub content: String,
    #[sqlx(try_from = "String")]
    pub status: MessageStatus,
    pub is_edited: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub client_msg_id: Option<Uuid>,
}

/// Payload of `messageDeleted` and the answer to a delete.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageDeleted {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub seq: i64,
}

/// Payload of `messageStatus`: `userId`'s cursor now covers every message up to `seq`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageStatusEvent {
    pub message_id: Uuid,
    pub conversation_id: Uuid,
    pub user_id: Uuid,
    /// The reporting user's own status for the message: `delivered` or `read`.
    pub status: &'static str,
    pub seq: i64,
    /// The message's status as its sender sees it, after this change.
    pub aggregate: MessageStatus,
}

/// Whether one participant (other than the sender) has a message.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Receipt {
    pub user_id: Uuid,
    pub username: String,
    pub delivered: bool,
    pub read: bool,
}

/// Which slice of a conversation's history to return, always in ascending `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRange {
    /// Only messages after this seq; the first `limit` of them (filling a gap on resume).
    pub after_seq: Option<i64>,
    /// Only messages before this seq; without `after_seq`, the last `limit` of them (scrolling back).
    pub before_seq: Option<i64>,
    pub limit: i64,
}

impl MessageRange {
    /// The newest `limit` messages.
    pub fn latest(limit: i64) -> Self {
        Self {
            after_seq: None,
            before_seq: None,
            limit,
        }
    }
}

/// A message view plus who must hear about it, read in the same statement.
#[derive(sqlx::FromRow)]
struct Addressed {
    #[sqlx(flatten)]
    message: MessageView,
    recipients: Vec<Uuid>,
}

/// One round trip: the sender's participant row is key-share locked (so a concurrent
/// removal either waits for this send or makes it find no membership), the counter row
/// hands out the next seq under its row lock, and the insert uses it. A failed insert
/// rolls the counter back with it, so seqs stay gap-free. A direct chat between users of
/// whom one blocked the other finds no row either; [`why_not_sent`] tells the two apart
/// off the hot path (a group costs one primary-key probe here).
const SEND: &str = concat!(
    "with member as (select p.conversation_id from conversation_participants p \
       where p.conversation_id = $1 and p.user_id = $2 \
         and not exists (select 1 from conversations dc \
           join conversation_participants o on o.conversation_id = dc.conversation_id and o.user_id <> $2 \
           join user_blocks b on (b.blocker_id = o.user_id and b.blocked_id = $2) \
                              or (b.blocker_id = $2 and b.blocked_id = o.user_id) \
           where dc.conversation_id = $1 and not dc.is_group) \
       for key share), \
     conv as (update conversations c set last_seq = c.last_seq + 1, last_message_at = now() \
       from member where c.conversation_id = member.conversation_id \
       returning c.conversation_id, c.last_seq), \
     m as (insert into messages (message_id, conversation_id, sender_id, seq, content, client_msg_id) \
       select $5, conv.conversation_id, $2, conv.last_seq, $3, $4 from conv returning *) \
     select ",
    message_columns!(),
    ", 'sent' as status, \
       array(select p.user_id from conversation_participants p where p.conversation_id = $1) as recipients \
     from m"
);

/// Stores a message and announces it as `newMessage` to every participant, the sender's
/// other devices included, within the sender's message limit (429 past it). Returns the
/// message and whether it was stored now (`false`: a retry with a `client_msg_id` already
/// used by this sender, answered with the original, which is announced again at most once
/// per `CHATTY_REANNOUNCE_WINDOW_MS`).
#[tracing::instrument(skip_all, fields(%conversation_id, %sender))]
pub async fn send_message(
    state: &AppState,
    sender: Uuid,
    conversation_id: Uuid,
    body: MessageBody,
    client_msg_id: Option<Uuid>,
) -> ApiResult<(MessageView, bool)> {
    limits::take(
        state.fabric.limits.as_ref(),
        Limit::Sends,
        &limits::key::sends(sender),
        state.settings.limit_sends,
    )
    .await?;
    let stored = sqlx::query_as::<_, Addressed>(SEND)
        .bind(conversation_id)
        .bind(sender)
        .bind(body.as_str())
        .bind(client_msg_id)
        // Time-ordered ids make the primary-key index append-only, like the seq index:
        // recent messages share pages, and inserts do not scatter writes across the tree.
        .bind(Uuid::now_v7())
        .fetch_optional(&state.db)
        .await;
    match stored {
        Ok(Some(Addressed {
            message,
            recipients,
        })) => {
            metrics::counter!(crate::metrics::names::MESSAGES_STORED).increment(1);
            announce_new(state, &recipients, &message).await;
            notify_recipients(state, &message, recipients);
            Ok((message, true))
        }
        Ok(None) => Err(why_not_sent(&state.db, sender, conversation_id).await),
        Err(sqlx::Error::Database(e))
            if e.constraint() == Some("messages_sender_client_msg_key") =>
        {
            // The constraint only covers rows that have a client_msg_id, so this is Some.
            let client_msg_id =
                client_msg_id.ok_or_else(|| ApiError::Conflict("duplicate message".into()))?;
            let original =
                original_of_retry(&state.db, sender, conversation_id, client_msg_id).await?;
            // A sender retries when it saw no answer, which is also when the first publish
            // may have died with its node: announcing again repairs that, and receivers
            // already drop a message id and seq they hold. No second notification, and at
            // most one announcement per window however often the client retries.
            let window = Rate::new(
                1,
                Duration::from_millis(state.settings.reannounce_window_ms),
            );
            let again = state
                .fabric
                .limits
                .take(&limits::key::announce(original.message_id), window)
                .await?;
            if again != Verdict::Allowed {
                return Ok((original, false));
            }
            let recipients: Vec<Uuid> = sqlx::query_scalar(
                "select user_id from conversation_participants where conversation_id = $1",
            )
            .bind(conversation_id)
            .fetch_all(&state.db)
            .await?;
            announce_new(state, &recipients, &original).await;
            Ok((original, false))
        }
        Err(e) => Err(e.into()),
    }
}

/// Why [`SEND`] stored nothing: 403 for a member of a direct chat frozen by a block,
/// else 404 (not a participant, or no such conversation).
async fn why_not_sent(db: &PgPool, sender: Uuid, conversation_id: Uuid) -> ApiError {
    let blocked = sqlx::query_scalar::<_, bool>(
        "select exists (select 1 from conversations c \
           join conversation_participants me on me.conversation_id = c.conversation_id and me.user_id = $2 \
           join conversation_participants o on o.conversation_id = c.conversation_id and o.user_id <> $2 \
           join user_blocks b on (b.blocker_id = o.user_id and b.blocked_id = $2) \
                              or (b.blocker_id = $2 and b.blocked_id = o.user_id) \
           where c.conversation_id = $1 and not c.is_group)",
    )
    .bind(conversation_id)
    .bind(sender)
    .fetch_one(db)
    .await;
    match blocked {
        Ok(true) => ApiError::Forbidden(
            "you cannot message this user: one of you has blocked the other".into(),
        ),
        Ok(false) => ApiError::not_found("conversation"),
        Err(e) => e.into(),
    }
}

/// Collapsed notification-centre entries for everyone but the sender, written by the
/// node's notifier (at once, or with the sends queued behind its write in flight), off the
/// send's critical path: the message is stored and announced already.
fn notify_recipients(state: &AppState, message: &MessageView, recipients: Vec<Uuid>) {
    state
        .notifier
        .push(crate::social::notifications::SentMessage {
            conversation_id: message.conversation_id,
            sender_id: message.sender_id,
            seq: message.seq,
            preview: crate::social::notifications::message_preview(&message.content),
            recipients,
        });
}

#[derive(sqlx::FromRow)]
struct Original {
    #[sqlx(flatten)]
    message: MessageView,
    deleted: bool,
    member: bool,
}

/// The message a retried `client_msg_id` first stored.
async fn original_of_retry(
    db: &PgPool,
    sender: Uuid,
    conversation_id: Uuid,
    client_msg_id: Uuid,
) -> ApiResult<MessageView> {
    let original = sqlx::query_as::<_, Original>(concat!(
        "select ",
        message_columns!(),
        ", ",
        message_status!(),
        " as status, m.deleted_at is not null as deleted, \
         exists(select 1 from conversation_participants me \
                where me.conversation_id = $3 and me.user_id = $1) as member \
         from messages m where m.sender_id = $1 and m.client_msg_id = $2"
    ))
    .bind(sender)
    .bind(client_msg_id)
    .bind(conversation_id)
    .fetch_optional(db)
    .await?;
    match original {
        Some(o) if !o.member => Err(ApiError::not_found("conversation")),
        Some(o) if o.message.conversation_id != conversation_id => Err(ApiError::Conflict(
            "client_msg_id was already used for a message in another conversation".into(),
        )),
        Some(o) if o.deleted => Err(ApiError::Conflict(
            "the message with this client_msg_id was deleted".into(),
        )),
        Some(o) => Ok(o.message),
        // The original vanished between the two statements (its conversation was deleted).
        None => Err(ApiError::not_found("conversation")),
    }
}

/// Messages aliased `m` as their sender sees them, with who must hear about each
/// ([`Addressed`]); the caller adds the `where`.
macro_rules! addressed_messages {
    () => {
        concat!(
            "select ",
            message_columns!(),
            ", ",
            message_status!(),
            " as status, \
               array(select p.user_id from conversation_participants p \
                     where p.conversation_id = m.conversation_id) as recipients \
             from messages m "
        )
    };
}

const VIEW: &str = concat!(
    addressed_messages!(),
    "where m.message_id = $1 and m.deleted_at is null \
       and exists(select 1 from conversation_participants me \
                  where me.conversation_id = m.conversation_id and me.user_id = $2)"
);

async fn addressed_view(db: &PgPool, viewer: Uuid, message_id: Uuid) -> ApiResult<Addressed> {
    sqlx::query_as::<_, Addressed>(VIEW)
        .bind(message_id)
        .bind(viewer)
        .fetch_optional(db)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))
}

/// One message, for participants of its conversation; 404 when deleted or not theirs.
pub async fn message_view(db: &PgPool, viewer: Uuid, message_id: Uuid) -> ApiResult<MessageView> {
    Ok(addressed_view(db, viewer, message_id).await?.message)
}

/// `bump`: the next change_seq of the conversation of the one row `$changed` (a CTE with a
/// `conversation_id`) returns, taken under the conversation row's lock, which is held until
/// the statement's transaction commits: the change-log row that uses it commits before the
/// next change of the conversation is numbered. Nothing is bumped when `$changed` is empty.
macro_rules! log_change {
    ($changed:literal) => {
        concat!(
            "bump as (update conversations c set last_change_seq = c.last_change_seq + 1 from ",
            $changed,
            " x where c.conversation_id = x.conversation_id \
               returning c.conversation_id, c.last_change_seq)"
        )
    };
}

/// A message of a conversation `$2` takes part in, not deleted: the row both edit and delete start from.
macro_rules! visible_target {
    () => {
        "target as (select m.message_id, m.conversation_id, m.sender_id, m.seq, m.content from messages m \
           join conversation_participants me on me.conversation_id = m.conversation_id and me.user_id = $2 \
           where m.message_id = $1 and m.deleted_at is null)"
    };
}

#[derive(sqlx::FromRow)]
struct Edited {
    sender_id: Uuid,
    unchanged: bool,
    #[sqlx(json(nullable))]
    message: Option<MessageView>,
    recipients: Vec<Uuid>,
}

/// Replaces a message's text (sender only) and announces it as `messageUpdated`.
/// Participants other than the sender get 403; everyone else, and deleted messages, 404.
#[tracing::instrument(skip(state, body))]
pub async fn edit_message(
    state: &AppState,
    editor: Uuid,
    message_id: Uuid,
    body: MessageBody,
) -> ApiResult<MessageView> {
    // The edit and its change-log row in one statement: the row's payload is the event.
    let edited = sqlx::query_as::<_, Edited>(concat!(
        "with ",
        visible_target!(),
        ", edited as (update messages m set content = $3, is_edited = true from target t \
           where m.message_id = t.message_id and t.sender_id = $2 and t.content <> $3 \
             and m.deleted_at is null \
           returning m.*), \
         shown as (select to_json(v) as message from (select ",
        message_columns!(),
        ", ",
        message_status!(),
        " as status from edited m) v), \
         audience as (select array(select p.user_id from conversation_participants p \
           where p.conversation_id = t.conversation_id) as recipients from target t), ",
        log_change!("edited"),
        ", logged as (insert into conversation_changes (conversation_id, change_seq, event, payload, recipients) \
           select b.conversation_id, b.last_change_seq, $4, s.message::jsonb, a.recipients \
           from bump b, shown s, audience a) \
         select t.sender_id, t.content = $3 as unchanged, (select message from shown) as message, \
           (select recipients from audience) as recipients \
         from target t"
    ))
    .bind(message_id)
    .bind(editor)
    .bind(body.as_str())
    .bind(events::MESSAGE_UPDATED)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    if edited.sender_id != editor {
        return Err(ApiError::Forbidden(
            "only the sender can edit a message".into(),
        ));
    }
    if edited.unchanged {
        return message_view(&state.db, editor, message_id).await;
    }
    // Deleted between the read and the write of the statement above.
    let message = edited
        .message
        .ok_or_else(|| ApiError::not_found("message"))?;
    publish(state, events::MESSAGE_UPDATED, &edited.recipients, &message).await;
    Ok(message)
}

#[derive(sqlx::FromRow)]
struct Deleted {
    sender_id: Uuid,
    conversation_id: Uuid,
    seq: Option<i64>,
    recipients: Vec<Uuid>,
}

/// Soft-deletes a message (sender only) and announces it as `messageDeleted`. Its content
/// stays in the database but is never served again. Same access rules as editing.
#[tracing::instrument(skip(state))]
pub async fn delete_message(
    state: &AppState,
    user: Uuid,
    message_id: Uuid,
) -> ApiResult<MessageDeleted> {
    let deleted = sqlx::query_as::<_, Deleted>(concat!(
        "with ",
        visible_target!(),
        ", deleted as (update messages m set deleted_at = now() from target t \
           where m.message_id = t.message_id and t.sender_id = $2 and m.deleted_at is null \
           returning m.message_id, m.conversation_id, m.seq), \
         audience as (select array(select p.user_id from conversation_participants p \
           where p.conversation_id = t.conversation_id) as recipients from target t), ",
        log_change!("deleted"),
        ", logged as (insert into conversation_changes (conversation_id, change_seq, event, payload, recipients) \
           select b.conversation_id, b.last_change_seq, $3, \
             jsonb_build_object('message_id', d.message_id, 'conversation_id', d.conversation_id, 'seq', d.seq), \
             a.recipients \
           from bump b, deleted d, audience a) \
         select t.sender_id, t.conversation_id, d.seq, (select recipients from audience) as recipients \
         from target t left join deleted d on true"
    ))
    .bind(message_id)
    .bind(user)
    .bind(events::MESSAGE_DELETED)
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    if deleted.sender_id != user {
        return Err(ApiError::Forbidden(
            "only the sender can delete a message".into(),
        ));
    }
    let seq = deleted.seq.ok_or_else(|| ApiError::not_found("message"))?;
    let event = MessageDeleted {
        message_id,
        conversation_id: deleted.conversation_id,
        seq,
    };
    publish(state, events::MESSAGE_DELETED, &deleted.recipients, &event).await;
    Ok(event)
}

#[derive(sqlx::FromRow)]
struct Moved {
    conversation_id: Uuid,
    sender_id: Uuid,
    seq: i64,
    /// The caller's cursors after the update; null when they did not move.
    delivered: Option<i64>,
    read: Option<i64>,
    /// The conversation's newest seq when the cursor moved.
    last_seq: i64,
}

/// Moves the caller's delivered (or read, which implies delivered) cursor up to the
/// message's seq, never backwards, and announces the change as `messageStatus`. The
/// sender of the message gets 400: receipts come from the other participants.
///
/// The cursor moves in one statement and the aggregate is read in the next, after it
/// committed: of two readers finishing at once, the later one always sees both cursors,
/// so the last event carries the true aggregate.
#[tracing::instrument(skip(state))]
pub async fn mark_status(
    state: &AppState,
    user: Uuid,
    message_id: Uuid,
    status: ReceiptStatus,
) -> ApiResult<MessageView> {
    // The cursor and its change-log row in one statement; the row's payload is the event
    // without `aggregate`, which readers of the log add (see `changes::change_payload!`).
    let moved = sqlx::query_as::<_, Moved>(concat!(
        "with target as (select m.conversation_id, m.sender_id, m.seq, c.last_seq from messages m \
           join conversation_participants me on me.conversation_id = m.conversation_id and me.user_id = $2 \
           join conversations c on c.conversation_id = m.conversation_id \
           where m.message_id = $1 and m.deleted_at is null), \
         moved as (update conversation_participants p \
           set last_delivered_seq = greatest(p.last_delivered_seq, t.seq), \
               last_read_seq = case when $3 then greatest(p.last_read_seq, t.seq) else p.last_read_seq end \
           from target t \
           where p.conversation_id = t.conversation_id and p.user_id = $2 and t.sender_id <> $2 \
             and (p.last_delivered_seq < t.seq or ($3 and p.last_read_seq < t.seq)) \
           returning p.conversation_id, p.last_delivered_seq, p.last_read_seq), ",
        log_change!("moved"),
        ", logged as (insert into conversation_changes (conversation_id, change_seq, event, payload, recipients) \
           select b.conversation_id, b.last_change_seq, $4, \
             jsonb_build_object('messageId', $1::uuid, 'conversationId', t.conversation_id, 'userId', $2::uuid, \
               'status', case when m.last_read_seq >= t.seq then $5 else $6 end, 'seq', t.seq), \
             array(select p.user_id from conversation_participants p where p.conversation_id = t.conversation_id) \
           from bump b, target t, moved m) \
         select t.conversation_id, t.sender_id, t.seq, t.last_seq, \
           m.last_delivered_seq as delivered, m.last_read_seq as read \
         from target t left join moved m on true"
    ))
    .bind(message_id)
    .bind(user)
    .bind(status == ReceiptStatus::Read)
    .bind(events::MESSAGE_STATUS)
    .bind(ReceiptStatus::Read.as_str())
    .bind(ReceiptStatus::Delivered.as_str())
    .fetch_optional(&state.db)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    if moved.sender_id == user {
        return Err(ApiError::BadRequest(
            "the sender of a message cannot set its status".into(),
        ));
    }
    let Addressed {
        message,
        recipients,
    } = addressed_view(&state.db, user, message_id).await?;
    if let (Some(_), Some(read)) = (moved.delivered, moved.read) {
        let event = MessageStatusEvent {
            message_id,
            conversation_id: moved.conversation_id,
            user_id: user,
            status: if read >= moved.seq {
                ReceiptStatus::Read.as_str()
            } else {
                ReceiptStatus::Delivered.as_str()
            },
            seq: moved.seq,
            aggregate: message.status,
        };
        publish(state, events::MESSAGE_STATUS, &recipients, &event).await;
        if read >= moved.last_seq {
            read_conversation_notification(state, user, moved.conversation_id).await;
        }
    }
    Ok(message)
}

/// The user has read the whole conversation: its collapsed message notification is read
/// too, and every device of theirs hears so (their badges drop at once). The receipt has
/// been stored already, so a failure here is logged, not returned.
async fn read_conversation_notification(state: &AppState, user: Uuid, conversation: Uuid) {
    use crate::social::notifications;
    match notifications::mark_conversation_read(&state.db, user, conversation).await {
        Ok(rows) => notifications::publish_all(state.bus.as_ref(), &rows).await,
        Err(e) => tracing::warn!(error = %e, %conversation, "message notification not marked read"),
    }
}

/// Per participant other than the sender: whether they have the message and have read it.
pub async fn receipts(db: &PgPool, viewer: Uuid, message_id: Uuid) -> ApiResult<Vec<Receipt>> {
    let receipts = sqlx::query_scalar::<_, Json<Vec<Receipt>>>(
        "with target as (select m.message_id, m.conversation_id, m.sender_id, m.seq from messages m \
           join conversation_participants me on me.conversation_id = m.conversation_id and me.user_id = $2 \
           where m.message_id = $1 and m.deleted_at is null) \
         select coalesce(json_agg(json_build_object('user_id', p.user_id, 'username', u.username, \
             'delivered', p.last_delivered_seq >= t.seq, 'read', p.last_read_seq >= t.seq) \
             order by lower(u.username)) filter (where p.user_id is not null), '[]'::json) \
         from target t \
         left join conversation_participants p on p.conversation_id = t.conversation_id and p.user_id <> t.sender_id \
         left join users u on u.user_id = p.user_id \
         group by t.message_id",
    )
    .bind(message_id)
    .bind(viewer)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ApiError::not_found("message"))?;
    Ok(receipts.0)
}

/// A slice of history for a participant (404 for anyone else), ascending by seq, deleted
/// messages left out.
pub async fn messages_page(
    db: &PgPool,
    viewer: Uuid,
    conversation_id: Uuid,
    range: MessageRange,
) -> ApiResult<Vec<MessageView>> {
    if !is_participant(db, conversation_id, viewer).await? {
        return Err(ApiError::not_found("conversation"));
    }
    page(db, conversation_id, range).await
}

/// The first `limit` messages after `after_seq`: what a reconnecting client missed.
pub async fn messages_after(
    db: &PgPool,
    viewer: Uuid,
    conversation_id: Uuid,
    after_seq: i64,
    limit: i64,
) -> ApiResult<Vec<MessageView>> {
    messages_page(
        db,
        viewer,
        conversation_id,
        MessageRange {
            after_seq: Some(after_seq),
            before_seq: None,
            limit,
        },
    )
    .await
}

/// The page is one range scan of `messages_conversation_seq_key` in the direction that
/// reaches the wanted end first; statuses are aggregated once per distinct sender.
macro_rules! page_sql {
    ($order:literal) => {
        concat!(
            "with page as (select ",
            message_columns!(),
            " from messages m \
               where m.conversation_id = $1 and m.seq > $2 and m.seq < $3 and m.deleted_at is null \
               order by m.seq ",
            $order,
            " limit $4), \
             agg as (select s.sender_id, count(p.user_id) as others, \
                 min(p.last_read_seq) as min_read, min(p.last_delivered_seq) as min_delivered \
               from (select distinct sender_id from page) s \
               left join conversation_participants p on p.conversation_id = $1 and p.user_id <> s.sender_id \
               group by s.sender_id) \
             select ",
            message_columns!(),
            ", case when a.others = 0 then 'sent' when a.min_read >= m.seq then 'read' \
                    when a.min_delivered >= m.seq then 'delivered' else 'sent' end as status \
             from page m join agg a on a.sender_id = m.sender_id order by m.seq"
        )
    };
}

/// A slice of history without the membership check (the caller did it).
pub(super) async fn page(
    db: &PgPool,
    conversation_id: Uuid,
    range: MessageRange,
) -> ApiResult<Vec<MessageView>> {
    let sql = if range.after_seq.is_some() {
        page_sql!("asc")
    } else {
        page_sql!("desc")
    };
    Ok(sqlx::query_as::<_, MessageView>(sql)
        .bind(conversation_id)
        .bind(range.after_seq.unwrap_or(0))
        .bind(range.before_seq.unwrap_or(i64::MAX))
        .bind(range.limit.clamp(1, MAX_MESSAGE_PAGE))
        .fetch_all(db)
        .await?)
}

/// Messages stored in a window, oldest id first, with who must hear about each. The ids
/// are time-ordered (UUIDv7), so the window is a range of the primary key, not a scan.
const REPLAY: &str = concat!(
    addressed_messages!(),
    "where m.message_id >= $1 and m.message_id < $2 and m.deleted_at is null \
     order by m.message_id \
     limit $3"
);

/// Most messages and changes one replay hands over; beyond it clients resume with `sync`.
/// Well below the node's local channel capacity, which the replay shares with live events.
const REPLAY_MAX: i64 = 5_000;

/// How far ahead of this node's clock another node's message ids may run.
const REPLAY_SKEW: Duration = Duration::from_secs(5);

/// The smallest UUIDv7 of a millisecond: a bound for a range of time-ordered ids.
fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    uuid::Builder::from_unix_timestamp_millis(ms, &[0; 10]).into_uuid()
}

/// What a replay handed over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    pub messages: usize,
    pub changes: usize,
}

/// Adds to `out`, as if from the bus, what was published within
/// `window` before now: after its bus subscription was down, none of it reached the node.
/// First the `newMessage` of every message stored in the window, each conversation's in
/// seq order (so they also close the gaps its live events are waiting on), then every
/// change of the change log in the window (edits, deletes, receipts, membership with its
/// room moves), each conversation's in change order. Clients drop what they hold (by
/// message id and seq; edits, deletes, receipts and membership apply idempotently).
/// Messages and changes share one cap, [`REPLAY_MAX`].
pub async fn replay_recent(
    state: &AppState,
    window: Duration,
    out: &mut Vec<BusMessage>,
) -> Result<Replayed, sqlx::Error> {
    let now = Utc::now();
    let from = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    let to = now + chrono::Duration::from_std(REPLAY_SKEW).unwrap_or(chrono::Duration::zero());
    let mut rows: Vec<Addressed> = sqlx::query_as(REPLAY)
        .bind(v7_floor(from))
        .bind(v7_floor(to))
        .bind(REPLAY_MAX)
        .fetch_all(&state.db)
        .await?;
    if rows.len() as i64 >= REPLAY_MAX {
        tracing::warn!(
            messages = rows.len(),
            "replay capped; clients catch up on the rest through sync"
        );
    }
    rows.sort_unstable_by_key(|a| (a.message.conversation_id, a.message.seq));
    for Addressed {
        message,
        recipients,
    } in &rows
    {
        let rooms = recipients.iter().map(|id| room::user(*id)).collect();
        match Emit::new(Namespace::Chat, events::NEW_MESSAGE, rooms, message) {
            Ok(emit) => out.push(BusMessage::Emit(
                emit.ordered(message.conversation_id, message.seq),
            )),
            Err(e) => tracing::error!(error = %e, "event payload cannot be encoded"),
        }
    }
    let budget = REPLAY_MAX - rows.len() as i64;
    let changes = super::changes::replay_window(state, from, to, budget, out).await?;
    Ok(Replayed {
        messages: rows.len(),
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_floor_bounds_every_id_of_its_millisecond_and_none_before() {
        let at = Utc::now();
        let ms = u64::try_from(at.timestamp_millis()).unwrap();
        let floor = v7_floor(at);
        for _ in 0..100 {
            let same = uuid::Builder::from_unix_timestamp_millis(ms, &rand_bytes()).into_uuid();
            let before =
                uuid::Builder::from_unix_timestamp_millis(ms - 1, &rand_bytes()).into_uuid();
            assert!(floor <= same && before < floor);
        }
    }

    fn rand_bytes() -> [u8; 10] {
        let mut b = [0; 10];
        b.copy_from_slice(&Uuid::new_v4().as_bytes()[..10]);
        b
    }
}

/// Announces a stored message to every device of `recipients` as `seq` of its
/// conversation's stream: nodes deliver a stream in seq order even when two publishes race
/// on the bus.
async fn announce_new(state: &AppState, recipients: &[Uuid], message: &MessageView) {
    let rooms = recipients.iter().map(|id| room::user(*id)).collect();
    let order = StreamPosition {
        stream: message.conversation_id,
        seq: message.seq,
    };
    let bus = state.bus.as_ref();
    bus::announce(
        bus,
        Namespace::Chat,
        events::NEW_MESSAGE,
        rooms,
        message,
        Some(order),
    )
    .await;
}

// Fields are optional in Rust so that every bad one is reported in one 400; the schema
// says what a valid request holds.
/// A message to store (the `sendMessage` socket event takes the same payload).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = SendMessageBody)]
pub struct SendBody {
    /// The text, at most `CHATTY_MAX_MESSAGE_CHARS` (4000) characters after trimming.
    #[schema(value_type = String, required = true)]
    content: Option<String>,
    /// Also accepted as `conversationId`.
    #[serde(alias = "conversationId")]
    #[schema(value_type = Uuid, required = true)]
    conversation_id: Option<String>,
    /// Client-chosen id that makes retries idempotent: a repeat answers 200 with the
    /// message stored the first time. Also accepted as `clientMsgId`.
    #[serde(alias = "clientMsgId")]
    #[schema(value_type = Uuid, required = false)]
    client_msg_id: Option<String>,
}

/// A UUID field of a request; what is wrong with it joins `errs`.
fn uuid_field(
    raw: &Option<String>,
    field: &'static str,
    required: bool,
    errs: &mut Vec<FieldError>,
) -> Option<Uuid> {
    let reason = match raw.as_deref().map(|s| s.trim().parse::<Uuid>()) {
        Some(Ok(id)) => return Some(id),
        Some(Err(_)) => "must be a UUID",
        None if required => "is required",
        None => return None,
    };
    errs.push(FieldError::new(field, reason));
    None
}

/// One 400 listing every bad field, as the original's validation pipe did.
pub fn send_input(
    body: &SendBody,
    max_chars: usize,
) -> ApiResult<(MessageBody, Uuid, Option<Uuid>)> {
    let mut errs = Vec::new();
    let content = match body
        .content
        .as_deref()
        .map(|c| MessageBody::parse(c, max_chars))
    {
        Some(Ok(c)) => Some(c),
        Some(Err(ApiError::Invalid(mut e))) => {
            errs.append(&mut e);
            None
        }
        Some(Err(other)) => return Err(other),
        None => {
            errs.push(FieldError::new("content", "is required"));
            None
        }
    };
    let conversation_id = uuid_field(&body.conversation_id, "conversation_id", true, &mut errs);
    let client_msg_id = uuid_field(&body.client_msg_id, "client_msg_id", false, &mut errs);
    match (content, conversation_id) {
        (Some(content), Some(conversation_id)) if errs.is_empty() => {
            Ok((content, conversation_id, client_msg_id))
        }
        _ => Err(ApiError::Invalid(errs)),
    }
}
