//! The notification centre's REST side: list, read, delete. Notifications are created by
//! `social::notifications` and delivered live on `/notifications`; these routes are how a
//! client catches up and keeps its badge right.

use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgExecutor, PgPool};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    extract::{AppQuery, Caller, CallerAt},
    openapi::SocialErrors,
    users::limit_offset,
};
use crate::{
    error::{ApiError, ApiResult},
    social::notifications::{self, Notification, columns},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    routes_of![
        list,
        list_unread,
        unread_count,
        read_all,
        (get_one, soft_delete),
        mark_read
    ]
}

fn notification_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid("id", "must be a UUID"))
}

/// The one notification `sql` answers with, `$1` being its id and `$2` the caller, whose it
/// must be; none is a 404.
async fn own(
    db: impl PgExecutor<'_>,
    sql: &'static str,
    id: Uuid,
    me: Uuid,
) -> ApiResult<Notification> {
    let query = sqlx::query_as(sql).bind(id).bind(me);
    let found = query.fetch_optional(db).await?;
    found.ok_or_else(|| ApiError::not_found("notification"))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    /// A notification id: list only those older than it (the previous page's last id).
    before: Option<String>,
}

/// The page requested: limit, offset and the `(created_at, id)` the page starts below.
struct Page {
    limit: i64,
    offset: i64,
    before: Option<(DateTime<Utc>, Uuid)>,
}

impl ListParams {
    async fn page(&self, db: &PgPool, user: Uuid) -> ApiResult<Page> {
        let (limit, offset) = limit_offset(self.limit, self.offset)?;
        let before = match self.before.as_deref() {
            None => None,
            Some(raw) => {
                let id = Uuid::parse_str(raw.trim())
                    .map_err(|_| ApiError::invalid("before", "must be a notification id"))?;
                // A deleted notification still marks a valid place in the list.
                let at = sqlx::query_scalar::<_, DateTime<Utc>>(
                    "select created_at from notifications where notification_id = $1 and user_id = $2",
                )
                .bind(id)
                .bind(user)
                .fetch_optional(db)
                .await?
                .ok_or_else(|| ApiError::invalid("before", "is not one of your notifications"))?;
                Some((at, id))
            }
        };
        Ok(Page {
            limit,
            offset,
            before,
        })
    }

    /// The page of `sql`, a [`listing!`].
    async fn fetch(
        &self,
        db: &PgPool,
        user: Uuid,
        sql: &'static str,
    ) -> ApiResult<Vec<Notification>> {
        let page = self.page(db, user).await?;
        Ok(sqlx::query_as::<_, Notification>(sql)
            .bind(user)
            .bind(page.before.map(|b| b.0))
            .bind(page.before.map(|b| b.1))
            .bind(page.limit)
            .bind(page.offset)
            .fetch_all(db)
            .await?)
    }
}

/// A page of the caller's notifications that are not deleted and match `$filter`, newest
/// first, as [`ListParams::fetch`] binds it.
macro_rules! listing {
    ($filter:literal) => {
        concat!(
            "select ",
            columns!(),
            " from notifications where user_id = $1 and ",
            $filter,
            "deleted_at is null \
               and ($2::timestamptz is null or (created_at, notification_id) < ($2::timestamptz, $3::uuid)) \
             order by created_at desc, notification_id desc limit $4 offset $5"
        )
    };
}

/// `GET /notifications`: newest first, deleted ones never.
#[utoipa::path(get, path = "/notifications", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 200, description = "Notifications, newest first, deleted excluded", body = Vec<Notification>),
        SocialErrors))]
async fn list(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<ListParams>,
) -> ApiResult<Json<Vec<Notification>>> {
    let sql = listing!("");
    Ok(Json(p.fetch(&db, auth.user_id, sql).await?))
}

/// `GET /notifications/unread`: the unread ones, newest first.
#[utoipa::path(get, path = "/notifications/unread", tag = "notifications", security(("bearer" = [])),
    responses(
        (status = 200, description = "Unread notifications, newest first", body = Vec<Notification>),
        SocialErrors))]
async fn list_unread(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<ListParams>,
) -> ApiResult<Json<Vec<Notification>>> {
    let sql = listing!("not is_read and ");
    Ok(Json(p.fetch(&db, auth.user_id, sql).await?))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct UnreadCount {
    /// Unread notifications; a collapsed message notification counts once.
    count: i64,
}

/// `GET /notifications/unread-count`: the badge number (a collapsed message notification
/// counts once).
#[utoipa::path(get, path = "/notifications/unread-count", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "Number of unread notifications", body = UnreadCount), SocialErrors))]
async fn unread_count(Caller(auth, AppState { db, .. }): Caller) -> ApiResult<Json<UnreadCount>> {
    let count = sqlx::query_scalar::<_, i64>(
        "select count(*) from notifications where user_id = $1 and not is_read and deleted_at is null",
    )
    .bind(auth.user_id)
    .fetch_one(&db)
    .await?;
    Ok(Json(UnreadCount { count }))
}

#[utoipa::path(get, path = "/notifications/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Notification id")),
    responses((status = 200, description = "One notification", body = Notification), SocialErrors))]
async fn get_one(CallerAt(auth, state, raw): CallerAt<String>) -> ApiResult<Json<Notification>> {
    let id = notification_id(&raw)?;
    let sql = concat!(
        "select ",
        columns!(),
        " from notifications where notification_id = $1 and user_id = $2 and deleted_at is null"
    );
    Ok(Json(own(&state.db, sql, id, auth.user_id).await?))
}

/// `POST /notifications/:id/read`: the notification, now read. Reading one already read
/// changes nothing (not even `updated_at`).
#[utoipa::path(post, path = "/notifications/{id}/read", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Notification id")),
    responses((status = 200, description = "Mark one notification read", body = Notification), SocialErrors))]
async fn mark_read(CallerAt(auth, state, raw): CallerAt<String>) -> ApiResult<Json<Notification>> {
    let id = notification_id(&raw)?;
    let mut tx = state.db.begin().await?;
    // An unread message notification stands for its conversation: reading it covers every
    // message sent before now, including those whose notification is not written yet.
    let conversation = sqlx::query_scalar::<_, Uuid>(
        "select conversation_id from notifications \
         where notification_id = $1 and user_id = $2 and type = 'message' and not is_read \
           and deleted_at is null and conversation_id is not null",
    )
    .bind(id)
    .bind(auth.user_id)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(conversation) = conversation {
        notifications::read_up_to_now(&mut *tx, auth.user_id, Some(conversation)).await?;
    }
    // The second branch reads the statement's starting snapshot: it finds the row only
    // when the update did not touch it, i.e. when it was already read.
    let sql = concat!(
        "with updated as ( \
             update notifications set is_read = true \
             where notification_id = $1 and user_id = $2 and deleted_at is null and not is_read \
             returning ",
        columns!(),
        " ) select ",
        columns!(),
        " from updated union all select ",
        columns!(),
        " from notifications \
         where notification_id = $1 and user_id = $2 and deleted_at is null \
           and not exists (select 1 from updated)"
    );
    let row = own(&mut *tx, sql, id, auth.user_id).await?;
    tx.commit().await?;
    Ok(Json(row))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct MarkedRead {
    /// How many notifications were unread and now are read.
    updated: u64,
}

/// `POST /notifications/read-all`: marks every unread notification read; says how many.
/// It also covers messages sent before it whose notifications are not written yet: they
/// will not be.
#[utoipa::path(post, path = "/notifications/read-all", tag = "notifications", security(("bearer" = [])),
    responses((status = 200, description = "Mark every notification read", body = MarkedRead), SocialErrors))]
async fn read_all(Caller(auth, AppState { db, .. }): Caller) -> ApiResult<Json<MarkedRead>> {
    let mut tx = db.begin().await?;
    notifications::read_up_to_now(&mut *tx, auth.user_id, None).await?;
    let done = sqlx::query(
        "update notifications set is_read = true where user_id = $1 and not is_read and deleted_at is null",
    )
    .bind(auth.user_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Json(MarkedRead {
        updated: done.rows_affected(),
    }))
}

/// `DELETE /notifications/:id`: soft delete; the row stays, it is never listed again. The
/// answer is the deleted notification, as the original's was (a body, not a 204).
#[utoipa::path(delete, path = "/notifications/{id}", tag = "notifications", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(
        (status = 200, description = "Soft-delete a notification; the answer is the deleted notification", body = Notification),
        SocialErrors))]
async fn soft_delete(
    CallerAt(auth, AppState { db, .. }, raw): CallerAt<String>,
) -> ApiResult<Json<Notification>> {
    let id = notification_id(&raw)?;
    let sql = concat!(
        "update notifications set deleted_at = now() \
         where notification_id = $1 and user_id = $2 and deleted_at is null returning ",
        columns!()
    );
    Ok(Json(own(&db, sql, id, auth.user_id).await?))
}
