//! Typing: expiring marks in the fabric, announced as `userTyping` to the conversation's
//! room (except the typist's own devices) only when the state changes.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::is_participant;
use crate::{
    bus::{self, BusMessage, Emit, Namespace, room},
    error::{ApiError, ApiResult},
    fabric::Rate,
    limits::{self, Limit},
    state::AppState,
};

/// Typing events a user may send per conversation before 429: ten a second.
const TYPING_RATE: Rate = Rate {
    burst: 10,
    per: Duration::from_secs(1),
};

/// Marks `user` as typing in `conversation` (or not), for `CHATTY_TYPING_TTL_MS` at most.
/// Members only: anyone else gets 404, as if the conversation did not exist.
pub async fn set_typing(
    state: &AppState,
    user: Uuid,
    conversation: Uuid,
    is_typing: bool,
) -> ApiResult<()> {
    limits::take(
        state.fabric.limits.as_ref(),
        Limit::Typing,
        &limits::key::typing(user, conversation),
        TYPING_RATE,
    )
    .await?;
    if !is_participant(&state.db, conversation, user).await? {
        return Err(ApiError::not_found("conversation"));
    }
    let changed = if is_typing {
        state
            .fabric
            .typing
            .start(conversation, user, state.settings.typing_ttl())
            .await?
    } else {
        state.fabric.typing.stop(conversation, user).await?
    };
    if changed {
        let data = json!({ "userId": user, "conversationId": conversation, "isTyping": is_typing });
        let emit = Emit::new(
            Namespace::Chat,
            "userTyping",
            vec![room::conversation(conversation)],
            &data,
        )
        .map_err(anyhow::Error::from)?
        .except(vec![room::user(user)]);
        bus::publish_or_log(state.bus.as_ref(), BusMessage::Emit(emit)).await;
    }
    Ok(())
}
