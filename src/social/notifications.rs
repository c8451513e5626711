//! Creating notifications: each is stored in PostgreSQL first, then announced once on the
//! cluster bus as a `notification` event to the recipient's `user:` room on
//! `/notifications`. A client that missed the event finds the row through the REST routes.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{PgExecutor, PgPool};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    bus::{self, Bus, BusMessage, Emit, Namespace, room},
    state::AppState,
};

/// Values of `notifications.type`.
pub mod kind {
    pub const MESSAGE: &str = "message";
    pub const FRIEND_REQUEST: &str = "friend_request";
    pub const GROUP_INVITE: &str = "group_invite";
    pub const SYSTEM: &str = "system";
}

/// Longest message preview kept in a message notification, in characters.
pub const PREVIEW_CHARS: usize = 100;

/// Publishes of a broadcast in flight at once: enough to hide Redis round trips, few enough
/// not to starve the node's other publishers of pooled connections.
const PUBLISH_CONCURRENCY: usize = 16;

/// The columns of a `Notification`, in one place so every query returns the same shape.
macro_rules! columns {
    () => {
        "notification_id, user_id, type, title, content, metadata, conversation_id, count, \
         is_read, created_at, updated_at, deleted_at"
    };
}
pub(crate) use columns;

/// A notification as stored, and as clients receive it (REST and the `notification` event).
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Notification {
    pub notification_id: Uuid,
    /// The recipient; implied by the room or the token, so not repeated to clients.
    #[serde(skip)]
    pub user_id: Uuid,
    /// `message`, `friend_request`, `group_invite` or `system` (see [`kind`]).
    #[serde(rename = "type")]
    #[sqlx(rename = "type")]
    pub kind: String,
    pub title: String,
    pub content: String,
    /// Kind-specific details, e.g. `conversation_id` and `sender_id` of message
    /// notifications, `requester_id` of friend requests.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// Already in `metadata` for clients; kept for routing on the server.
    #[serde(skip)]
    pub conversation_id: Option<Uuid>,
    /// How many messages a collapsed message notification stands for; 1 for other kinds.
    pub count: i32,
    pub is_read: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Always null in what clients receive: deleted notifications are never listed.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// Announces a stored notification to every device of its recipient, on every node.
pub async fn publish(bus: &dyn Bus, notification: &Notification) {
    let rooms = vec![room::user(notification.user_id)];
    bus::announce(
        bus,
        Namespace::Notifications,
        "notification",
        rooms,
        notification,
        None,
    )
    .await;
}

/// Announces each notification to its own recipient (payloads differ, so one event each).
pub async fn publish_all(bus: &dyn Bus, notifications: &[Notification]) {
    for n in notifications {
        publish(bus, n).await;
    }
}

/// Notification events per bus message when many are announced together.
const EMITS_PER_BUS_MESSAGE: usize = 256;

/// Announces many notifications with one bus message per [`EMITS_PER_BUS_MESSAGE`], so a
/// batch costs every node one decode instead of one per recipient.
pub async fn publish_batch(bus: &dyn Bus, notifications: &[Notification]) {
    for chunk in notifications.chunks(EMITS_PER_BUS_MESSAGE) {
        let emits: Vec<Emit> = chunk
            .iter()
            .filter_map(|n| {
                Emit::new(
                    Namespace::Notifications,
                    "notification",
                    vec![room::user(n.user_id)],
                    n,
                )
                .map_err(|e| tracing::error!(error = %e, "cannot encode a notification"))
                .ok()
            })
            .collect();
        match emits.len() {
            0 => {}
            1 => {
                let emit = emits.into_iter().next().expect("one emit");
                bus::publish_or_log(bus, BusMessage::Emit(emit)).await;
            }
            _ => bus::publish_or_log(bus, BusMessage::EmitMany(emits)).await,
        }
    }
}

/// What a friend-request notification tells its recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FriendNote {
    /// The sender asked to be friends.
    Request,
    /// The sender accepted the recipient's request.
    Accepted,
}

impl FriendNote {
    /// Title, what follows the sender's name, and the `action` in the metadata.
    fn parts(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Self::Request => (
                "New friend request",
                " sent you a friend request",
                "request",
            ),
            Self::Accepted => (
                "Friend request accepted",
                " accepted your friend request",
                "accepted",
            ),
        }
    }
}

/// Stores `note` from `from` for `to`; publish it once the caller's transaction commits.
pub async fn store_friend_note<'c>(
    db: impl PgExecutor<'c>,
    note: FriendNote,
    from: Uuid,
    to: Uuid,
) -> Result<Notification, sqlx::Error> {
    let (title, text, action) = note.parts();
    sqlx::query_as::<_, Notification>(concat!(
        "insert into notifications (user_id, type, title, content, metadata) \
         select $2, 'friend_request', $3, u.username || $4, \
                jsonb_build_object('sender_id', u.user_id, 'sender_name', u.username, 'action', $5::text) \
         from users u where u.user_id = $1 \
         returning ",
        columns!()
    ))
    .bind(from)
    .bind(to)
    .bind(title)
    .bind(text)
    .bind(action)
    .fetch_one(db)
    .await
}

/// The request notification `addressee` got from `requester` has been accepted: it stays
/// as history but no longer asks for attention.
pub async fn mark_friend_request_read<'c>(
    db: impl PgExecutor<'c>,
    addressee: Uuid,
    requester: Uuid,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "update notifications set is_read = true \
         where user_id = $1 and type = 'friend_request' and not is_read and deleted_at is null \
           and metadata->>'action' = 'request' and metadata->>'sender_id' = $2::text",
    )
    .bind(addressee)
    .bind(requester)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Removes the friend-request notifications between two users whose request no longer
/// exists (declined, cancelled, or wiped by a block), so nobody is offered to accept a ghost.
pub async fn withdraw_friend_requests<'c>(
    db: impl PgExecutor<'c>,
    a: Uuid,
    b: Uuid,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "update notifications set deleted_at = now() \
         where type = 'friend_request' and deleted_at is null and metadata->>'action' = 'request' \
           and ((user_id = $1 and metadata->>'sender_id' = $2::text) \
             or (user_id = $2 and metadata->>'sender_id' = $1::text))",
    )
    .bind(a)
    .bind(b)
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Tells each invitee (not the inviter, not twice, not those who blocked the inviter) that
/// they were added to the group.
pub async fn notify_group_invite(
    state: &AppState,
    conversation_id: Uuid,
    group_name: &str,
    inviter: Uuid,
    invitees: &[Uuid],
) -> Result<Vec<Notification>, sqlx::Error> {
    let invitees = recipients_sorted(inviter, invitees);
    if invitees.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query_as::<_, Notification>(concat!(
        "insert into notifications (user_id, type, title, content, metadata, conversation_id) \
         select r.user_id, 'group_invite', $2, u.username || ' added you to ' || $2, \
                jsonb_build_object('conversation_id', $1::uuid, 'group_name', $2::text, \
                                   'sender_id', u.user_id, 'sender_name', u.username), \
                $1 \
         from unnest($4::uuid[]) as r(user_id) \
         join users u on u.user_id = $3 \
         where exists (select 1 from users x where x.user_id = r.user_id) \
           and not exists (select 1 from user_blocks b where b.blocker_id = r.user_id and b.blocked_id = $3) \
         returning ",
        columns!()
    ))
    .bind(conversation_id)
    .bind(group_name)
    .bind(inviter)
    .bind(&invitees)
    .fetch_all(&state.db)
    .await?;
    publish_all(state.bus.as_ref(), &rows).await;
    Ok(rows)
}

/// Records a new message for its recipients in ONE statement, collapsing into each
/// recipient's unread notification for the conversation: the count goes up by one and the
/// preview, sender and title become the latest. A recipient without one (none yet, or the
/// last one was read or deleted) gets a fresh notification with count 1.
///
/// The sender is never notified, nor are recipients who blocked the sender. Run it in the
/// sending transaction or after it; publish the returned rows (with [`publish_all`]) after
/// the commit.
pub async fn notify_message<'c>(
    db: impl PgExecutor<'c>,
    conversation_id: Uuid,
    sender_id: Uuid,
    sender_name: &str,
    preview: &str,
    recipients: &[Uuid],
) -> Result<Vec<Notification>, sqlx::Error> {
    let recipients = recipients_sorted(sender_id, recipients);
    if recipients.is_empty() {
        return Ok(Vec::new());
    }
    // Rows are upserted in user-id order (`with ordinality` + `order by`), so concurrent
    // sends to the same members lock the same rows in the same order and cannot deadlock.
    sqlx::query_as::<_, Notification>(concat!(
        "insert into notifications (user_id, type, title, content, metadata, conversation_id) \
         select r.user_id, 'message', \
                case when c.is_group then c.name else $3 end, \
                case when c.is_group then $3 || ': ' || $4 else $4 end, \
                jsonb_build_object('conversation_id', $1::uuid, 'sender_id', $2::uuid, \
                                   'sender_name', $3::text, 'message_preview', $4::text), \
                $1 \
         from unnest($5::uuid[]) with ordinality as r(user_id, ord) \
         join conversations c on c.conversation_id = $1 \
         where exists (select 1 from users x where x.user_id = r.user_id) \
           and not exists (select 1 from user_blocks b where b.blocker_id = r.user_id and b.blocked_id = $2) \
         order by r.ord \
         on conflict (user_id, conversation_id) where type = 'message' and not is_read and deleted_at is null \
         do update set count = notifications.count + 1, title = excluded.title, content = excluded.content, \
                       metadata = excluded.metadata, updated_at = now() \
         returning ",
        columns!()
    ))
    .bind(conversation_id)
    .bind(sender_id)
    .bind(sender_name)
    .bind(message_preview(preview))
    .bind(&recipients)
    .fetch_all(db)
    .await
}

/// A stored message, as its recipients' notification centres need it.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub conversation_id: Uuid,
    pub sender_id: Uuid,
    pub seq: i64,
    /// Already cut by [`message_preview`].
    pub preview: String,
    /// Every participant; the sender is skipped.
    pub recipients: Vec<Uuid>,
}

/// [`notify_message`] for many messages in ONE statement. Per recipient and conversation
/// the messages of others collapse into one upsert: the count goes up by their number and
/// the preview, sender and title become those of the latest (highest seq). The same rules
/// hold: the sender is never notified, nor are recipients who blocked that sender, nor
/// those no longer in the conversation. Nor is a recipient who has read the message
/// already, by read cursor (`last_read_seq` ≥ its seq) or by reading their notifications
/// after it was stored (`notifications_read_seq` ≥ its seq, see [`read_up_to_now`]): batches
/// are written a moment after the send, and a reader who caught up in that moment must
/// not find it unread nor hear of it.
///
/// Both checks read the recipient's participant row under a share lock, inside this one
/// statement. A read that commits first is seen (a locking read returns the newest
/// version of the row, whatever the statement's snapshot); a read that comes while the
/// statement runs waits for it to commit, then finds its rows and marks them read. So no
/// check-then-write gap is left.
pub async fn notify_messages<'c>(
    db: impl PgExecutor<'c>,
    messages: &[SentMessage],
) -> Result<Vec<Notification>, sqlx::Error> {
    let mut conversations = Vec::with_capacity(messages.len());
    let mut senders = Vec::with_capacity(messages.len());
    let mut previews = Vec::with_capacity(messages.len());
    let mut seqs = Vec::with_capacity(messages.len());
    let (mut users, mut of_message) = (Vec::new(), Vec::new());
    for (i, m) in messages.iter().enumerate() {
        conversations.push(m.conversation_id);
        senders.push(m.sender_id);
        previews.push(m.preview.as_str());
        seqs.push(m.seq);
        for r in recipients_sorted(m.sender_id, &m.recipients) {
            users.push(r);
            of_message.push(i64::try_from(i + 1).unwrap_or(i64::MAX));
        }
    }
    if users.is_empty() {
        return Ok(Vec::new());
    }
    // Participant rows are locked in (conversation, user) order and notification rows
    // upserted in (user, conversation) order, every lock of the first kind before any of
    // the second (`latest` sorts all of `r`): concurrent batches from several nodes and
    // readers (see [`read_up_to_now`]) take them in the same order and cannot deadlock.
    sqlx::query_as::<_, Notification>(concat!(
        "with m as (select * from unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[]) \
                    with ordinality as m(conversation_id, sender_id, preview, seq, i)), \
              p as (select x.user_id, m.conversation_id, m.sender_id, m.preview, m.seq \
                    from unnest($5::uuid[], $6::bigint[]) as x(user_id, i) join m on m.i = x.i), \
              cp as materialized (select cp.conversation_id, cp.user_id, cp.last_read_seq, cp.notifications_read_seq \
                    from conversation_participants cp \
                    where (cp.conversation_id, cp.user_id) in (select conversation_id, user_id from p) \
                    order by cp.conversation_id, cp.user_id \
                    for share of cp), \
              r as (select p.user_id, p.conversation_id, p.sender_id, p.preview, p.seq \
                    from p join cp on cp.conversation_id = p.conversation_id and cp.user_id = p.user_id \
                    where p.seq > cp.last_read_seq and p.seq > cp.notifications_read_seq \
                      and not exists (select 1 from user_blocks b \
                                      where b.blocker_id = p.user_id and b.blocked_id = p.sender_id)), \
              latest as (select distinct on (user_id, conversation_id) user_id, conversation_id, \
                           sender_id, preview, count(*) over (partition by user_id, conversation_id) as n \
                         from r order by user_id, conversation_id, seq desc) \
         insert into notifications (user_id, type, title, content, metadata, conversation_id, count) \
         select l.user_id, 'message', \
                case when c.is_group then c.name else u.username end, \
                case when c.is_group then u.username || ': ' || l.preview else l.preview end, \
                jsonb_build_object('conversation_id', l.conversation_id, 'sender_id', l.sender_id, \
                                   'sender_name', u.username, 'message_preview', l.preview), \
                l.conversation_id, l.n \
         from latest l \
         join conversations c on c.conversation_id = l.conversation_id \
         join users u on u.user_id = l.sender_id \
         order by l.user_id, l.conversation_id \
         on conflict (user_id, conversation_id) where type = 'message' and not is_read and deleted_at is null \
         do update set count = notifications.count + excluded.count, title = excluded.title, \
                       content = excluded.content, metadata = excluded.metadata, updated_at = now() \
         returning ",
        columns!()
    ))
    .bind(&conversations)
    .bind(&senders)
    .bind(&previews)
    .bind(&seqs)
    .bind(&users)
    .bind(&of_message)
    .fetch_all(db)
    .await
}

/// Recipient rows in one statement at most; a larger batch is written in parts.
const MAX_ROWS_PER_STATEMENT: usize = 20_000;

/// Tries of a batch's statement that PostgreSQL aborted as a deadlock victim.
const WRITE_ATTEMPTS: u32 = 3;

/// SQLSTATE `deadlock_detected`.
const DEADLOCK_DETECTED: &str = "40P01";

/// Hands sent messages to this node's notification writer ([`run_message_notifier`]).
/// Cheap to clone; sending never waits.
#[derive(Clone)]
pub struct MessageNotifier {
    tx: mpsc::UnboundedSender<SentMessage>,
}

/// The writer's end of a [`MessageNotifier`]; owned by the node's notifier task.
pub struct MessageNotifierInbox(mpsc::UnboundedReceiver<SentMessage>);

impl MessageNotifier {
    pub fn new() -> (Self, MessageNotifierInbox) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Self { tx }, MessageNotifierInbox(rx))
    }

    /// Queues a stored message's notifications. Once the node has stopped they are
    /// dropped: the message itself is stored and delivered either way.
    pub fn push(&self, message: SentMessage) {
        let _ = self.tx.send(message);
    }
}

/// Shortest time between the starts of two writes. Pure group commit wrote almost every
/// message alone at a few hundred messages a second (a write takes a few milliseconds), and
/// those statements tripled PostgreSQL's CPU per message (docs/benchmarks.md,
/// "Notifications"); with this floor a busy node writes at most 20 batches a second, while
/// a message that finds the notifier idle for this long is still written at once.
const MIN_WRITE_SPACING: Duration = Duration::from_millis(50);

/// Writes queued message notifications by group commit, and announces the rows they
/// produced. A message that finds no write in flight or recent is written at once (an
/// idle node adds no delay); messages that queue meanwhile go out together in the next
/// write, at most one per [`MIN_WRITE_SPACING`], one statement per batch (split past
/// [`MAX_ROWS_PER_STATEMENT`]). So a busy group writes each member's row once per write,
/// not once per message. On `stop` it writes what is queued, then returns.
pub async fn run_message_notifier(
    inbox: MessageNotifierInbox,
    db: PgPool,
    bus: Arc<dyn Bus>,
    stop: CancellationToken,
) {
    let mut rx = inbox.0;
    let mut last_write: Option<tokio::time::Instant> = None;
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m {
                Some(m) => m,
                None => return,
            },
            () = stop.cancelled() => {
                let rest = drain(&mut rx, Vec::new());
                write_batch(&db, bus.as_ref(), &rest).await;
                return;
            }
        };
        if let Some(ready) = last_write.map(|t| t + MIN_WRITE_SPACING) {
            tokio::select! {
                () = tokio::time::sleep_until(ready) => {}
                () = stop.cancelled() => {}
            }
        }
        // Whatever queued behind the previous write joins this one.
        let batch = drain(&mut rx, vec![first]);
        last_write = Some(tokio::time::Instant::now());
        write_batch(&db, bus.as_ref(), &batch).await;
    }
}

fn drain(
    rx: &mut mpsc::UnboundedReceiver<SentMessage>,
    mut batch: Vec<SentMessage>,
) -> Vec<SentMessage> {
    while let Ok(m) = rx.try_recv() {
        batch.push(m);
    }
    batch
}

async fn write_batch(db: &PgPool, bus: &dyn Bus, batch: &[SentMessage]) {
    let mut start = 0;
    while start < batch.len() {
        let mut rows = 0;
        let mut end = start;
        while end < batch.len()
            && (end == start || rows + batch[end].recipients.len() <= MAX_ROWS_PER_STATEMENT)
        {
            rows += batch[end].recipients.len();
            end += 1;
        }
        let part = &batch[start..end];
        let mut attempt = 1;
        loop {
            match notify_messages(db, part).await {
                Ok(stored) => publish_batch(bus, &stored).await,
                // The batch's participant-row locks can meet a statement that takes the
                // same rows in another order (deleting a conversation, removing members);
                // PostgreSQL then aborts one of the two. Try again.
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some(DEADLOCK_DETECTED)
                        && attempt < WRITE_ATTEMPTS =>
                {
                    attempt += 1;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, messages = part.len(), "message notifications not stored")
                }
            }
            break;
        }
        start = end;
    }
}

/// Records that `user` read their notifications now: in every conversation with a message
/// neither read nor covered by an earlier such read (`conversation`: that one only), the
/// watermark `notifications_read_seq` moves to the conversation's `last_seq`, so messages
/// stored before now are left out of batches written later ([`notify_messages`]); a
/// message stored after it has a higher seq and notifies. Run it in the
/// reading transaction, BEFORE the statement that marks rows read: it locks the
/// participant rows, so it waits for any batch writing to them, and the next statement
/// (a fresh snapshot) then finds and marks that batch's rows too. Rows are locked in
/// conversation order, the order batches lock them in.
pub async fn read_up_to_now<'c>(
    db: impl PgExecutor<'c>,
    user: Uuid,
    conversation: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    // A conversation whose messages are all read or covered already has nothing a batch
    // could still write, so repeated reads touch only conversations with news. A message
    // still being stored is not in this snapshot's last_seq: it is concurrent with the
    // read, and notifies.
    sqlx::query(
        "with due as (select p.conversation_id, c.last_seq from conversation_participants p \
                      join conversations c on c.conversation_id = p.conversation_id \
                      where p.user_id = $1 and ($2::uuid is null or p.conversation_id = $2) \
                        and c.last_seq > greatest(p.last_read_seq, p.notifications_read_seq) \
                      order by p.conversation_id \
                      for no key update of p) \
         update conversation_participants p \
         set notifications_read_seq = greatest(p.notifications_read_seq, due.last_seq) \
         from due where p.conversation_id = due.conversation_id and p.user_id = $1",
    )
    .bind(user)
    .bind(conversation)
    .execute(db)
    .await?;
    Ok(())
}

/// Marks `user`'s unread message notification for the conversation read (they have read
/// the conversation up to its last message). Returns the rows it marked (none or one), to
/// publish so the user's other devices see it read.
pub async fn mark_conversation_read<'c>(
    db: impl PgExecutor<'c>,
    user: Uuid,
    conversation_id: Uuid,
) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as::<_, Notification>(concat!(
        "update notifications set is_read = true \
         where user_id = $1 and conversation_id = $2 and type = 'message' and not is_read and deleted_at is null \
         returning ",
        columns!()
    ))
    .bind(user)
    .bind(conversation_id)
    .fetch_all(db)
    .await
}

/// A system notification for one user (`Some`) or every user (`None`); returns how many
/// were created (0 when the one user does not exist).
pub async fn notify_system(
    state: &AppState,
    user: Option<Uuid>,
    title: &str,
    text: &str,
) -> Result<u64, sqlx::Error> {
    send_system(&state.db, state.bus.as_ref(), user, title, text).await
}

/// [`notify_system`] for callers without a node's state (the `chatty notify` command).
pub async fn send_system(
    db: &PgPool,
    bus: &dyn Bus,
    user: Option<Uuid>,
    title: &str,
    text: &str,
) -> Result<u64, sqlx::Error> {
    // One insert for everybody; rows stream back and are published as they arrive, so a
    // broadcast to many users never sits in memory at once.
    let rows = sqlx::query_as::<_, Notification>(concat!(
        "insert into notifications (user_id, type, title, content) \
         select user_id, 'system', $2, $3 from users where $1::uuid is null or user_id = $1 \
         returning ",
        columns!()
    ))
    .bind(user)
    .bind(title)
    .bind(text)
    .fetch(db);
    let mut created = 0u64;
    rows.try_for_each_concurrent(PUBLISH_CONCURRENCY, |n| {
        created += 1;
        async move {
            publish(bus, &n).await;
            Ok(())
        }
    })
    .await?;
    Ok(created)
}

/// The message text as a one-line preview of at most [`PREVIEW_CHARS`] characters.
pub fn message_preview(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(PREVIEW_CHARS * 4));
    let mut chars = 0;
    for word in text.split_whitespace() {
        if chars > 0 {
            out.push(' ');
            chars += 1;
        }
        out.push_str(word);
        chars += word.chars().count();
        if chars > PREVIEW_CHARS {
            break;
        }
    }
    if chars > PREVIEW_CHARS {
        let mut cut: String = out.chars().take(PREVIEW_CHARS - 1).collect();
        cut.truncate(cut.trim_end().len());
        cut.push('…');
        return cut;
    }
    out
}

/// Distinct recipients other than `sender`, in ascending order (the lock order).
fn recipients_sorted(sender: Uuid, users: &[Uuid]) -> Vec<Uuid> {
    let mut v: Vec<Uuid> = users.iter().copied().filter(|u| *u != sender).collect();
    v.sort_unstable();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_is_one_line_and_at_most_a_hundred_characters() {
        assert_eq!(message_preview("  hello \n  world  "), "hello world");
        let long = "word ".repeat(50);
        let p = message_preview(&long);
        assert!(p.chars().count() <= PREVIEW_CHARS, "{p}");
        assert!(p.ends_with('…'));
        let exact = "x".repeat(PREVIEW_CHARS);
        assert_eq!(message_preview(&exact), exact);
        let accents = "é".repeat(150);
        assert_eq!(message_preview(&accents).chars().count(), PREVIEW_CHARS);
    }

    #[test]
    fn the_sender_and_duplicates_are_not_recipients() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let r = recipients_sorted(a, &[b, a, c, b]);
        assert_eq!(r.len(), 2);
        assert!(!r.contains(&a));
        assert!(r.windows(2).all(|w| w[0] < w[1]));
    }
}
