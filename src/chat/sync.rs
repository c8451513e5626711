//! Resume after a reconnect: for each conversation a client names with the last `seq` it
//! holds, the messages after it, the conversation's `last_seq` and the participants'
//! read and delivered cursors. What a reconnecting client needs to fill any gap, in one call.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::{MAX_MESSAGE_PAGE, MessageView, messages_after};
use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
};

/// Conversations one `sync` may cover; clients with more sync in several calls.
pub const MAX_SYNC_CONVERSATIONS: usize = 100;

/// `{ conversations: { [id]: last_seen_seq } }`.
#[derive(Debug, Deserialize)]
pub struct SyncRequest {
    /// conversation id → the highest seq the client has.
    pub conversations: HashMap<Uuid, i64>,
}

/// One conversation's catch-up, or why there is none (the REST error shape).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Synced {
    Caught {
        /// The first `MAX_MESSAGE_PAGE` messages after the client's seq.
        messages: Vec<MessageView>,
        /// More follow: ask again from the last one.
        has_more: bool,
        last_seq: i64,
        cursors: Vec<Cursor>,
    },
    Failed {
        error: Value,
    },
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

/// Catches `viewer` up on the conversations of `request`. A conversation the viewer is not
/// a member of answers its own 404 entry; the others are still answered.
pub async fn sync(state: &AppState, viewer: Uuid, request: SyncRequest) -> ApiResult<SyncAnswer> {
    if request.conversations.len() > MAX_SYNC_CONVERSATIONS {
        return Err(ApiError::invalid(
            "conversations",
            format!("at most {MAX_SYNC_CONVERSATIONS} per sync"),
        ));
    }
    if request.conversations.values().any(|s| *s < 0) {
        return Err(ApiError::invalid(
            "conversations",
            "seqs must not be negative",
        ));
    }
    let mut out = BTreeMap::new();
    for (conversation, after) in request.conversations {
        let messages =
            match messages_after(&state.db, viewer, conversation, after, MAX_MESSAGE_PAGE).await {
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
        let last_seq: i64 =
            sqlx::query_scalar("select last_seq from conversations where conversation_id = $1")
                .bind(conversation)
                .fetch_one(&state.db)
                .await?;
        let has_more = messages.len() as i64 >= MAX_MESSAGE_PAGE;
        out.insert(
            conversation,
            Synced::Caught {
                messages,
                has_more,
                last_seq,
                cursors,
            },
        );
    }
    Ok(SyncAnswer { conversations: out })
}
