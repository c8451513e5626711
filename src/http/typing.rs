use axum::Json;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    extract::CallerAt,
    openapi::{BadRequest, NotFound, Unauthorized},
};
use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    routes_of![who_is_typing]
}

#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Typist {
    user_id: Uuid,
    username: String,
}

/// Who is typing in a conversation now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Typing {
    conversation_id: Uuid,
    /// Members with a live typing mark, by username.
    typing: Vec<Typist>,
}

/// Who is typing in a conversation now, from the fabric's expiring marks. Members only;
/// anyone else gets 404, as if the conversation did not exist.
#[utoipa::path(get, path = "/conversations/{id}/typing", tag = "conversations", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Conversation id")),
    responses((status = 200, description = "Who is typing now", body = Typing), BadRequest, Unauthorized, NotFound))]
async fn who_is_typing(CallerAt(auth, state, id): CallerAt) -> ApiResult<Json<Typing>> {
    if !crate::chat::is_participant(&state.db, id, auth.user_id).await? {
        return Err(ApiError::not_found("conversation"));
    }
    let ids = state.fabric.typing.list(id).await?;
    let typing = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as::<_, Typist>(
            "select u.user_id, u.username from users u \
             join conversation_participants p on p.user_id = u.user_id and p.conversation_id = $2 \
             where u.user_id = any($1) order by u.username",
        )
        .bind(&ids)
        .bind(id)
        .fetch_all(&state.db)
        .await?
    };
    Ok(Json(Typing {
        conversation_id: id,
        typing,
    }))
}
