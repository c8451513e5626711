//! The per-conversation change log: every change other than a new message (edits, deletes,
//! receipt cursors, membership) is stored, in the transaction that makes it, as the event
//! it was announced with and who it went to. A node whose bus subscription had a gap hands
//! its sockets the changes it missed ([`replay_window`]); a client catches up on them with
//! `sync` or `GET /messages/conversation/:id/changes` ([`changes_page`]).
//!
//! Each conversation numbers its changes 1, 2, 3, ... (`change_seq`) under its row lock,
//! so they commit in that order without gaps: a client that holds change N has every
//! change before it and asks for what follows. Rows older than the retention are pruned
//! ([`prune_loop`]); a client whose cursor points into the pruned part is told so
//! (`truncated`) and reloads the conversation instead.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, types::Json};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{events, is_participant};
use crate::{
    bus::{BusMessage, Emit, Namespace, room},
    error::{ApiError, ApiResult},
    state::AppState,
};

/// Page size of changes when the client names none.
pub const DEFAULT_CHANGE_PAGE: i64 = 50;
/// Largest page of changes one request (or one conversation of a `sync`) returns.
pub const MAX_CHANGE_PAGE: i64 = 200;

/// Takes the conversation's next change_seq and appends the change, inside the caller's
/// transaction: the bump holds the conversation row's lock until it commits, so the next
/// change of the conversation waits and is numbered after it. For changes made in several
/// statements; single-statement changes fold the same two steps into their own statement.
pub(super) async fn record(
    conn: &mut PgConnection,
    conversation: Uuid,
    event: &str,
    payload: &impl Serialize,
    recipients: &[Uuid],
    joined: &[Uuid],
    left: &[Uuid],
) -> ApiResult<()> {
    sqlx::query(
        "with bump as (update conversations set last_change_seq = last_change_seq + 1 \
           where conversation_id = $1 returning last_change_seq) \
         insert into conversation_changes \
           (conversation_id, change_seq, event, payload, recipients, joined, left_room) \
         select $1, bump.last_change_seq, $2, $3, $4, $5, $6 from bump",
    )
    .bind(conversation)
    .bind(event)
    .bind(Json(payload))
    .bind(recipients)
    .bind(joined)
    .bind(left)
    .execute(conn)
    .await?;
    Ok(())
}

/// The payload of a change row aliased `ch` as it is handed out. A `messageStatus` is
/// stored without its `aggregate` (the message's status as its sender sees it): the
/// statement that moves a cursor cannot see a concurrent receipt's cursor, so the value it
/// could store might be stale, while the live event reads it after commit. It is read now
/// instead, which is what the last live event of a burst of receipts also says. `$event`
/// is the placeholder the event's name is bound to.
macro_rules! change_payload {
    ($event:literal) => {
        concat!(
            "case when ch.event = ",
            $event,
            " then ch.payload || jsonb_build_object('aggregate', \
               coalesce((select ",
            message_status!(),
            " from messages m where m.message_id = (ch.payload->>'messageId')::uuid), 'sent')) \
             else ch.payload end"
        )
    };
}

/// One change as clients get it from `sync` and the changes route.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct ChangeView {
    /// Position in the conversation's change log: 1, 2, 3, ... without gaps.
    pub change_seq: i64,
    /// The Socket.IO event the change was announced as (`messageUpdated`,
    /// `messageDeleted`, `messageStatus`, `conversationCreated`, `participantsAdded`,
    /// `participantRemoved`).
    pub event: String,
    /// The event's payload, as the live event carried it.
    #[schema(value_type = Object)]
    pub data: Json<Value>,
    pub created_at: DateTime<Utc>,
}

/// A page of a conversation's changes after a cursor.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChangesPage {
    /// The changes after the cursor, ascending by `change_seq`; empty when `truncated`.
    pub changes: Vec<ChangeView>,
    /// More follow: ask again from the last one's `change_seq`.
    pub has_more: bool,
    /// The conversation's newest `change_seq`: where a client that reloaded starts from.
    pub last_change_seq: i64,
    /// Changes after the cursor are no longer kept (or the cursor is ahead of the log):
    /// reload the conversation and continue from `last_change_seq`.
    pub truncated: bool,
}

#[derive(sqlx::FromRow)]
struct PageRow {
    head: i64,
    change_seq: Option<i64>,
    event: Option<String>,
    data: Option<Json<Value>>,
    created_at: Option<DateTime<Utc>>,
}

/// The head and the page are read in one statement, so they agree: a change committed
/// between two statements could otherwise look like a pruned one.
const PAGE: &str = concat!(
    "select c.last_change_seq as head, ch.change_seq, ch.event, ch.data, ch.created_at \
     from conversations c left join lateral (select ch.change_seq, ch.event, ",
    change_payload!("$4"),
    " as data, ch.created_at from conversation_changes ch \
       where ch.conversation_id = c.conversation_id and ch.change_seq > $2 \
       order by ch.change_seq limit $3) ch on true \
     where c.conversation_id = $1 order by ch.change_seq"
);

/// The first `limit` changes after `after`, for a participant (404 for anyone else).
pub async fn changes_page(
    db: &PgPool,
    viewer: Uuid,
    conversation_id: Uuid,
    after: i64,
    limit: i64,
) -> ApiResult<ChangesPage> {
    if !is_participant(db, conversation_id, viewer).await? {
        return Err(ApiError::not_found("conversation"));
    }
    changes_after(db, conversation_id, after, limit).await
}

/// [`changes_page`] without the membership check (the caller did it).
pub(super) async fn changes_after(
    db: &PgPool,
    conversation_id: Uuid,
    after: i64,
    limit: i64,
) -> ApiResult<ChangesPage> {
    let limit = limit.clamp(1, MAX_CHANGE_PAGE);
    // One more than the page tells whether more follow.
    let rows: Vec<PageRow> = sqlx::query_as(PAGE)
        .bind(conversation_id)
        .bind(after)
        .bind(limit + 1)
        .bind(events::MESSAGE_STATUS)
        .fetch_all(db)
        .await?;
    let head = rows
        .first()
        .map(|r| r.head)
        .ok_or_else(|| ApiError::not_found("conversation"))?;
    let mut changes: Vec<ChangeView> = rows
        .into_iter()
        .filter_map(|r| {
            Some(ChangeView {
                change_seq: r.change_seq?,
                event: r.event?,
                data: r.data?,
                created_at: r.created_at?,
            })
        })
        .collect();
    let has_more = changes.len() as i64 > limit;
    changes.truncate(limit as usize);
    if truncated(after, head, &changes) {
        return Ok(ChangesPage {
            changes: Vec::new(),
            has_more: false,
            last_change_seq: head,
            truncated: true,
        });
    }
    Ok(ChangesPage {
        changes,
        has_more,
        last_change_seq: head,
        truncated: false,
    })
}

/// Whether the page does not continue the client's cursor without a hole: change_seqs are
/// gap-free as written, so a hole is a pruned change. A cursor ahead of the head (a log
/// restored from an older backup) cannot be continued either.
fn truncated(after: i64, head: i64, page: &[ChangeView]) -> bool {
    if after > head {
        return true;
    }
    if after == head {
        return false;
    }
    let Some(first) = page.first() else {
        return true;
    };
    first.change_seq != after + 1
        || page
            .windows(2)
            .any(|w| w[1].change_seq != w[0].change_seq + 1)
}

#[derive(sqlx::FromRow)]
struct Replayed {
    conversation_id: Uuid,
    change_seq: i64,
    event: String,
    data: Json<Value>,
    recipients: Vec<Uuid>,
    joined: Vec<Uuid>,
    left_room: Vec<Uuid>,
}

/// Changes stored in a window of time, oldest first (the window is a range of
/// `conversation_changes_created_idx`).
const REPLAY: &str = concat!(
    "select ch.conversation_id, ch.change_seq, ch.event, ",
    change_payload!("$4"),
    " as data, ch.recipients, ch.joined, ch.left_room from conversation_changes ch \
     where ch.created_at >= $1 and ch.created_at < $2 \
     order by ch.created_at, ch.conversation_id, ch.change_seq limit $3"
);

/// Adds to `out`, as if from the bus, every change stored between
/// `from` and `to`: each conversation's changes in change_seq order, each followed by the
/// room moves it made (added members' sockets join the conversation's room, a removed
/// member's leave it), as the live path publishes them. At most `max`. Returns how many
/// were added.
pub(super) async fn replay_window(
    state: &AppState,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    max: i64,
    out: &mut Vec<BusMessage>,
) -> Result<usize, sqlx::Error> {
    if max <= 0 {
        return Ok(0);
    }
    let mut rows: Vec<Replayed> = sqlx::query_as(REPLAY)
        .bind(from)
        .bind(to)
        .bind(max)
        .bind(events::MESSAGE_STATUS)
        .fetch_all(&state.db)
        .await?;
    if rows.len() as i64 >= max {
        tracing::warn!(
            changes = rows.len(),
            "change replay capped; clients catch up on the rest through sync"
        );
    }
    rows.sort_unstable_by_key(|r| (r.conversation_id, r.change_seq));
    for r in &rows {
        let rooms = r.recipients.iter().map(|id| room::user(*id)).collect();
        match Emit::new(Namespace::Chat, &r.event, rooms, &r.data) {
            Ok(emit) => out.push(BusMessage::Emit(emit)),
            Err(e) => tracing::error!(error = %e, "event payload cannot be encoded"),
        }
        let conv = vec![room::conversation(r.conversation_id)];
        if !r.joined.is_empty() {
            out.push(BusMessage::Rooms {
                users: r.joined.clone(),
                join: conv.clone(),
                leave: Vec::new(),
            });
        }
        if !r.left_room.is_empty() {
            out.push(BusMessage::Rooms {
                users: r.left_room.clone(),
                join: Vec::new(),
                leave: conv,
            });
        }
    }
    Ok(rows.len())
}

/// Rows deleted per statement, so a prune never holds many locks or one long transaction.
const PRUNE_BATCH: i64 = 5_000;

/// Deletes changes older than `retention`, in batches until none are left. Every node runs
/// it; the batches skip rows another node is deleting, so running it on several nodes at
/// once only shares the work. Returns how many rows this call deleted.
pub async fn prune(db: &PgPool, retention: Duration) -> Result<u64, sqlx::Error> {
    let before =
        Utc::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut total = 0;
    loop {
        let deleted = sqlx::query(
            "delete from conversation_changes where ctid = any(array( \
               select ctid from conversation_changes where created_at < $1 \
               order by created_at limit $2 for update skip locked))",
        )
        .bind(before)
        .bind(PRUNE_BATCH)
        .execute(db)
        .await?
        .rows_affected();
        total += deleted;
        if deleted < PRUNE_BATCH as u64 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Prunes the change log every `every` until `stop`.
pub async fn prune_loop(db: PgPool, retention: Duration, every: Duration, stop: CancellationToken) {
    crate::shutdown::every(every, &stop, || prune_round(&db, retention)).await;
}

async fn prune_round(db: &PgPool, retention: Duration) {
    match prune(db, retention).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(changes = n, "pruned the change log"),
        Err(e) => tracing::warn!(error = %e, "change log prune failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(seqs: &[i64]) -> Vec<ChangeView> {
        seqs.iter()
            .map(|s| ChangeView {
                change_seq: *s,
                event: "messageUpdated".into(),
                data: Json(Value::Null),
                created_at: Utc::now(),
            })
            .collect()
    }

    #[test]
    fn a_page_that_continues_the_cursor_without_a_hole_is_not_truncated() {
        assert!(!truncated(3, 5, &page(&[4, 5])));
        assert!(!truncated(5, 5, &page(&[])));
        assert!(!truncated(0, 0, &page(&[])));
    }

    #[test]
    fn a_hole_after_the_cursor_or_a_cursor_past_the_head_is_truncated() {
        assert!(truncated(3, 9, &page(&[6, 7])));
        assert!(truncated(3, 9, &page(&[4, 6])));
        assert!(truncated(3, 9, &page(&[])));
        assert!(truncated(10, 9, &page(&[])));
    }
}
