use axum::Json;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    extract::{AppQuery, Caller, CallerAt},
    openapi::{BadRequest, NotFound, Unauthorized},
};
use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    routes_of![list_users, me, search_users, get_user]
}

/// `status` and `last_seen_at` as the viewer may see them: a user who blocked the viewer
/// looks offline, with no last-seen time. Needs `from users u left join user_blocks h on
/// h.blocker_id = u.user_id and h.blocked_id = <viewer>` (the primary key makes it one row
/// at most).
macro_rules! presence_for_viewer {
    () => {
        "case when h.blocker_id is null then u.status else 'offline' end as status, \
         case when h.blocker_id is null then u.last_seen_at end as last_seen_at"
    };
}

pub use crate::users::{PublicUser, User};

pub const DEFAULT_PAGE: i64 = 20;
pub const MAX_PAGE: i64 = 100;

/// `limit` clamped to 1..=MAX_PAGE; anything else is a 400 naming the parameter.
pub fn page_limit(limit: Option<i64>) -> ApiResult<i64> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(l) if (1..=MAX_PAGE).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        )),
    }
}

/// `limit` as [`page_limit`] takes it, and `offset`, which must not be negative.
pub fn limit_offset(limit: Option<i64>, offset: Option<i64>) -> ApiResult<(i64, i64)> {
    let limit = page_limit(limit)?;
    match offset {
        Some(o) if o < 0 => Err(ApiError::invalid("offset", "must not be negative")),
        o => Ok((limit, o.unwrap_or(0))),
    }
}

/// A LIKE pattern matching `needle` anywhere, with the user's wildcards taken literally.
pub fn contains_pattern(needle: &str) -> String {
    let mut p = String::with_capacity(needle.len() + 2);
    p.push('%');
    for c in needle.trim().to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('%');
    p
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListParams {
    /// Part of the username
    search: Option<String>,
    /// 1 to 100, default 20
    limit: Option<i64>,
    /// Rows to skip
    offset: Option<i64>,
}

#[utoipa::path(get, path = "/users", tag = "users", security(("bearer" = [])),
    params(ListParams),
    responses((status = 200, description = "Users by name", body = Vec<PublicUser>), BadRequest, Unauthorized))]
async fn list_users(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<ListParams>,
) -> ApiResult<Json<Vec<PublicUser>>> {
    let (limit, offset) = limit_offset(p.limit, p.offset)?;
    let pattern = contains_pattern(p.search.as_deref().unwrap_or(""));
    let users = sqlx::query_as::<_, PublicUser>(concat!(
        "select u.user_id, u.username, ",
        presence_for_viewer!(),
        ", u.created_at, u.updated_at from users u \
         left join user_blocks h on h.blocker_id = u.user_id and h.blocked_id = $4 \
         where lower(u.username) like $1 order by lower(u.username) limit $2 offset $3"
    ))
    .bind(pattern)
    .bind(limit)
    .bind(offset)
    .bind(auth.user_id)
    .fetch_all(&db)
    .await?;
    Ok(Json(users))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct SearchParams {
    /// Part of the username
    search: Option<String>,
    /// 1-based page
    page: Option<i64>,
    /// 1 to 100, default 20
    limit: Option<i64>,
}

/// Where a page sits in the original's paged answers.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageMeta {
    /// Matches on every page.
    pub total: i64,
    /// 1-based.
    pub page: i64,
    pub limit: i64,
    #[serde(rename = "totalPages")]
    pub total_pages: i64,
}

/// A page of a paged search as asked: what to match, which page (1-based) and its size.
pub struct SearchPage {
    /// The LIKE pattern of `search`, see [`contains_pattern`].
    pub pattern: String,
    pub page: i64,
    pub limit: i64,
}

impl SearchPage {
    pub fn parse(search: Option<&str>, page: Option<i64>, limit: Option<i64>) -> ApiResult<Self> {
        let limit = page_limit(limit)?;
        let page = page.unwrap_or(1);
        if page < 1 {
            return Err(ApiError::invalid("page", "must be 1 or more"));
        }
        let pattern = contains_pattern(search.unwrap_or(""));
        Ok(Self {
            pattern,
            page,
            limit,
        })
    }

    /// Rows before this page.
    pub fn offset(&self) -> i64 {
        (self.page - 1).saturating_mul(self.limit)
    }

    /// Where the page sits. The total rides on the first row's window count; past the last
    /// page there is no row, and only then is `count` run.
    pub async fn meta(
        &self,
        first_row_total: Option<i64>,
        count: impl Future<Output = sqlx::Result<i64>>,
    ) -> ApiResult<PageMeta> {
        let total = match first_row_total {
            Some(total) => total,
            None => count.await?,
        };
        Ok(PageMeta {
            total,
            page: self.page,
            limit: self.limit,
            total_pages: (total + self.limit - 1) / self.limit,
        })
    }
}

/// One page of a user search.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct UserSearchPage {
    data: Vec<PublicUser>,
    meta: PageMeta,
}

/// A user's profile: the public view, plus the email when the user is the caller.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserProfile {
    #[serde(flatten)]
    user: PublicUser,
    /// Only in the caller's own profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<String>,
}

impl From<User> for UserProfile {
    fn from(u: User) -> Self {
        Self {
            email: Some(u.email),
            user: PublicUser {
                user_id: u.user_id,
                username: u.username,
                status: u.status,
                last_seen_at: u.last_seen_at,
                created_at: u.created_at,
                updated_at: u.updated_at,
            },
        }
    }
}

#[derive(sqlx::FromRow)]
struct CountedUser {
    #[sqlx(flatten)]
    user: PublicUser,
    total: i64,
}

/// The original's paged search: `{ data, meta: { total, page, limit, totalPages } }`.
#[utoipa::path(get, path = "/users/search", tag = "users", security(("bearer" = [])),
    params(SearchParams),
    responses(
        (status = 200, description = "A page of users: { data, meta }", body = UserSearchPage),
        BadRequest, Unauthorized))]
async fn search_users(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<SearchParams>,
) -> ApiResult<Json<UserSearchPage>> {
    let q = SearchPage::parse(p.search.as_deref(), p.page, p.limit)?;
    // One round trip: the window count rides along with the page.
    let rows = sqlx::query_as::<_, CountedUser>(concat!(
        "select u.user_id, u.username, ",
        presence_for_viewer!(),
        ", u.created_at, u.updated_at, count(*) over () as total from users u \
         left join user_blocks h on h.blocker_id = u.user_id and h.blocked_id = $2 \
         where lower(u.username) like $1 and u.user_id <> $2 \
         order by lower(u.username) limit $3 offset $4"
    ))
    .bind(&q.pattern)
    .bind(auth.user_id)
    .bind(q.limit)
    .bind(q.offset())
    .fetch_all(&db)
    .await?;
    let count = sqlx::query_scalar(
        "select count(*) from users where lower(username) like $1 and user_id <> $2",
    )
    .bind(&q.pattern)
    .bind(auth.user_id)
    .fetch_one(&db);
    let meta = q.meta(rows.first().map(|r| r.total), count).await?;
    Ok(Json(UserSearchPage {
        data: rows.into_iter().map(|r| r.user).collect(),
        meta,
    }))
}

#[utoipa::path(get, path = "/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "The signed-in user, with email", body = User), Unauthorized, NotFound))]
async fn me(Caller(auth, state): Caller) -> ApiResult<Json<User>> {
    Ok(Json(own_profile(&state.db, auth.user_id).await?))
}

async fn own_profile(db: &PgPool, user_id: Uuid) -> ApiResult<User> {
    sqlx::query_as::<_, User>(
        "select user_id, username, email, status, last_seen_at, created_at, updated_at from users where user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(db)
    .await?
    .ok_or_else(|| ApiError::not_found("user"))
}

#[utoipa::path(get, path = "/users/{id}", tag = "users", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user (with email if it is the caller)", body = UserProfile),
        BadRequest, Unauthorized, NotFound))]
async fn get_user(
    CallerAt(auth, AppState { db, .. }, id): CallerAt,
) -> ApiResult<Json<UserProfile>> {
    if id == auth.user_id {
        return Ok(Json(own_profile(&db, id).await?.into()));
    }
    let user = sqlx::query_as::<_, PublicUser>(concat!(
        "select u.user_id, u.username, ",
        presence_for_viewer!(),
        ", u.created_at, u.updated_at from users u \
         left join user_blocks h on h.blocker_id = u.user_id and h.blocked_id = $2 \
         where u.user_id = $1"
    ))
    .bind(id)
    .bind(auth.user_id)
    .fetch_optional(&db)
    .await?
    .ok_or_else(|| ApiError::not_found("user"))?;
    Ok(Json(UserProfile { user, email: None }))
}
