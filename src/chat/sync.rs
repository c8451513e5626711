//! Resume after a reconnect: for each conversation a client names with the last `seq` it
//! holds (and, optionally, the last change of the change log it holds), the messages after
//! it, the changes after it, the conversation's `last_seq` and `last_change_seq`, and the
//! participants' read and delivered cursors. What a reconnecting client needs to fill any
//! gap, in one call.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
};

use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::Value;
use uuid::Uuid;

use super::{
    MAX_MESSAGE_PAGE, MessageView,
    changes::{ChangeView, MAX_CHANGE_PAGE, changes_after},
    messages_after,
};
use crate::{
    error::{ApiError, ApiResult, FieldError},
    state::AppState,
};

/// Conversations one `sync` may cover; clients with more sync in several calls.
pub const MAX_SYNC_CONVERSATIONS: usize = 100;

/// `{ conversations: { [id]: last_seen_seq | { seq, changes? } } }`.
#[derive(Debug, Deserialize)]
pub struct SyncRequest {
    /// conversation id → where the client is.
    pub conversations: HashMap<Uuid, SyncFrom>,
}

/// Where a client is in one conversation: a bare number is the highest message seq it
/// holds (the original form); `{ seq, changes }` adds the highest change_seq it holds,
/// asking for the changes after it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncFrom {
    pub seq: i64,
    pub changes: Option<i64>,
}

/// The object form, with every field optional so that a missing one is named.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncFromObject {
    seq: Option<i64>,
    changes: Option<i64>,
}

// By hand rather than an untagged enum, so that a bad field inside the object is reported
// under its own name (`conversations.<id>.changes`), not as the whole entry.
impl<'de> Deserialize<'de> for SyncFrom {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl<'de> de::Visitor<'de> for Visitor {
            type Value = SyncFrom;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a seq, or an object { seq, changes }")
            }

            fn visit_i64<E: de::Error>(self, seq: i64) -> Result<SyncFrom, E> {
                Ok(SyncFrom { seq, changes: None })
            }

            fn visit_u64<E: de::Error>(self, seq: u64) -> Result<SyncFrom, E> {
                let seq = i64::try_from(seq).map_err(|_| E::custom("seq is too large"))?;
                Ok(SyncFrom { seq, changes: None })
            }

            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<SyncFrom, A::Error> {
                let o = SyncFromObject::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let seq = o.seq.ok_or_else(|| de::Error::missing_field("seq"))?;
                Ok(SyncFrom {
                    seq,
                    changes: o.changes,
                })
            }
        }

        d.deserialize_any(Visitor)
    }
}

/// One conversation's catch-up, or why there is none (the REST error shape).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Synced {
    Caught(Box<Caught>),
    Failed { error: Value },
}

/// A conversation caught up.
#[derive(Debug, Serialize)]
pub struct Caught {
    /// The first `MAX_MESSAGE_PAGE` messages after the client's seq.
    pub messages: Vec<MessageView>,
    /// More follow: ask again from the last one.
    pub has_more: bool,
    pub last_seq: i64,
    pub cursors: Vec<Cursor>,
    /// The conversation's newest change_seq: a client that asked without a change cursor
    /// starts from it next time.
    pub last_change_seq: i64,
    /// Asked with a change cursor: the first `MAX_CHANGE_PAGE` changes after it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<ChangeView>>,
    /// More changes follow: ask again from the last one's `change_seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes_has_more: Option<bool>,
    /// The changes after the client's cursor are no longer kept: reload the conversation
    /// (e.g. `GET /conversations/:id` and its history) and continue from `last_change_seq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes_truncated: Option<bool>,
}

/// A participant's receipt cursors.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Cursor {
    pub user_id: Uuid,
    pub last_delivered_seq: i64,
    pub last_read_seq: i64,
}

/// The answer: one entry per conversation asked for.
#[derive(Debug, Serialize)]
pub struct SyncAnswer {
    pub conversations: BTreeMap<Uuid, Synced>,
}

/// Every negative cursor of the request, as one 400 naming each.
fn check_cursors(conversations: &HashMap<Uuid, SyncFrom>) -> ApiResult<()> {
    let mut errs = Vec::new();
    let mut ids: Vec<_> = conversations.iter().collect();
    ids.sort_unstable_by_key(|(id, _)| **id);
    for (id, from) in ids {
        if from.seq < 0 {
            errs.push(FieldError::new(
                format!("conversations.{id}.seq"),
                "must not be negative",
            ));
        }
        if from.changes.is_some_and(|c| c < 0) {
            errs.push(FieldError::new(
                format!("conversations.{id}.changes"),
                "must not be negative",
            ));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Invalid(errs))
    }
}

/// Catches `viewer` up on the conversations of `request`. A conversation the viewer is not
/// a member of answers its own 404 entry; the others are still answered.
pub async fn sync(state: &AppState, viewer: Uuid, request: SyncRequest) -> ApiResult<SyncAnswer> {
    if request.conversations.len() > MAX_SYNC_CONVERSATIONS {
        return Err(ApiError::invalid(
            "conversations",
            format!("at most {MAX_SYNC_CONVERSATIONS} per sync"),
        ));
    }
    check_cursors(&request.conversations)?;
    let mut out = BTreeMap::new();
    for (conversation, from) in request.conversations {
        let messages =
            match messages_after(&state.db, viewer, conversation, from.seq, MAX_MESSAGE_PAGE).await
            {
                Ok(m) => m,
                Err(e @ ApiError::NotFound(_)) => {
                    out.insert(conversation, Synced::Failed { error: e.body() });
                    continue;
                }
                Err(e) => return Err(e),
            };
        let cursors: Vec<Cursor> = sqlx::query_as(
            "select user_id, last_delivered_seq, last_read_seq \
             from conversation_participants where conversation_id = $1",
        )
        .bind(conversation)
        .fetch_all(&state.db)
        .await?;
        let (last_seq, last_change_seq): (i64, i64) = sqlx::query_as(
            "select last_seq, last_change_seq from conversations where conversation_id = $1",
        )
        .bind(conversation)
        .fetch_one(&state.db)
        .await?;
        let has_more = messages.len() as i64 >= MAX_MESSAGE_PAGE;
        let mut caught = Caught {
            messages,
            has_more,
            last_seq,
            cursors,
            last_change_seq,
            changes: None,
            changes_has_more: None,
            changes_truncated: None,
        };
        if let Some(after) = from.changes {
            let page = changes_after(&state.db, conversation, after, MAX_CHANGE_PAGE).await?;
            // The head read with the page, so a client that continues from it skips nothing.
            caught.last_change_seq = page.last_change_seq;
            caught.changes = Some(page.changes);
            caught.changes_has_more = Some(page.has_more);
            caught.changes_truncated = Some(page.truncated);
        }
        out.insert(conversation, Synced::Caught(Box::new(caught)));
    }
    Ok(SyncAnswer { conversations: out })
}
