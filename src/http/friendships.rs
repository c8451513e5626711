//! Friend requests, friends, blocks, and finding people. The original's routes keep their
//! paths and bodies; the rest are what a mobile client needs to show and manage them.

use axum::{
    Json,
    extract::FromRequestParts,
    http::{StatusCode, request::Parts},
};
use serde::{Deserialize, Serialize};
use sqlx::{PgPool, postgres::PgRow};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    extract::{AppJson, AppPath, AppQuery, Caller},
    openapi::SocialErrors,
    users::{PageMeta, PublicUser, SearchPage, contains_pattern, limit_offset},
};
use crate::{
    error::{ApiError, ApiResult},
    social::friendships::{
        self as social, BlockedUser, FriendshipRow, FriendshipView, Relationship, RequestOutcome,
    },
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    routes_of![
        list_friends,
        send_request,
        cancel_request,
        list_requests,
        accept,
        decline,
        block,
        unblock,
        list_blocked,
        search,
        suggestions,
        unfriend
    ]
}

/// The `friendId` path segment as a user id, or a 400 naming it.
fn friend_id(raw: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(raw.trim()).map_err(|_| ApiError::invalid("friendId", "must be a UUID"))
}

/// The other user, named by the `friendId` path segment.
struct Friend(Uuid);

impl<S: Send + Sync> FromRequestParts<S> for Friend {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        let AppPath(raw) = AppPath::<String>::from_request_parts(parts, state).await?;
        friend_id(&raw).map(Self)
    }
}

/// Runs a listing whose `$1`, `$2` and `$3` are the caller, the limit and the offset, and
/// whose `$4`, if any, is `extra`.
async fn fetch_page<T>(
    db: &PgPool,
    sql: &'static str,
    user: Uuid,
    (limit, offset): (i64, i64),
    extra: Option<String>,
) -> ApiResult<Vec<T>>
where
    T: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
{
    let query = sqlx::query_as(sql).bind(user).bind(limit).bind(offset);
    let query = match extra {
        Some(extra) => query.bind(extra),
        None => query,
    };
    Ok(query.fetch_all(db).await?)
}

/// The rows as the caller sees them.
fn views(rows: Vec<FriendshipRow>, me: Uuid) -> Json<Vec<FriendshipView>> {
    Json(rows.into_iter().map(|r| r.view(me)).collect())
}

/// Who to ask: `friendId` (also accepted as `friend_id`) or `username`, not both.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = FriendRequestBody)]
struct RequestBody {
    #[serde(rename = "friendId", alias = "friend_id")]
    #[schema(value_type = Uuid, required = false)]
    friend_id: Option<String>,
    /// Case-insensitive.
    #[schema(value_type = String, required = false)]
    username: Option<String>,
}

/// `POST /friendships/request`: 201 with the pending request, or 200 with the friendship
/// when the other user had already asked.
#[utoipa::path(post, path = "/friendships/request", tag = "friendships", request_body = RequestBody, security(("bearer" = [])),
    responses(
        (status = 201, description = "The pending request", body = FriendshipView),
        (status = 200, description = "The other user had asked already: the accepted friendship", body = FriendshipView),
        SocialErrors))]
async fn send_request(
    Caller(auth, state): Caller,
    AppJson(body): AppJson<RequestBody>,
) -> ApiResult<(StatusCode, Json<FriendshipView>)> {
    let other = match (body.friend_id.as_deref(), body.username.as_deref()) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "friendId",
                "give either friendId or username, not both",
            ));
        }
        (Some(id), None) => friend_id(id)?,
        (None, Some(name)) if name.trim().is_empty() => {
            return Err(ApiError::invalid("username", "must not be empty"));
        }
        (None, Some(name)) => {
            let id = social::user_id_by_name(&state, name).await?;
            if id == auth.user_id {
                return Err(ApiError::invalid("username", "must not be your own"));
            }
            id
        }
        (None, None) => {
            return Err(ApiError::invalid(
                "friendId",
                "is required (or give username)",
            ));
        }
    };
    Ok(
        match social::send_request(&state, auth.user_id, other).await? {
            RequestOutcome::Requested(view) => (StatusCode::CREATED, Json(view)),
            RequestOutcome::Accepted(view) => (StatusCode::OK, Json(view)),
        },
    )
}

#[utoipa::path(post, path = "/friendships/accept/{friendId}", tag = "friendships", security(("bearer" = [])),
    params(("friendId" = Uuid, Path, description = "The other user")),
    responses((status = 200, description = "Accept an incoming request", body = FriendshipView), SocialErrors))]
async fn accept(
    Caller(auth, state): Caller,
    Friend(id): Friend,
) -> ApiResult<Json<FriendshipView>> {
    Ok(Json(social::accept(&state, auth.user_id, id).await?))
}

#[utoipa::path(post, path = "/friendships/decline/{friendId}", tag = "friendships", security(("bearer" = [])),
    params(("friendId" = Uuid, Path, description = "The other user")),
    responses((status = 204, description = "Decline an incoming request"), SocialErrors))]
async fn decline(Caller(auth, state): Caller, Friend(id): Friend) -> ApiResult<StatusCode> {
    social::decline(&state, auth.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/friendships/request/{friendId}", tag = "friendships", security(("bearer" = [])),
    params(("friendId" = Uuid, Path, description = "The other user")),
    responses((status = 204, description = "Cancel an outgoing request"), SocialErrors))]
async fn cancel_request(Caller(auth, state): Caller, Friend(id): Friend) -> ApiResult<StatusCode> {
    social::cancel(&state, auth.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/friendships/{friendId}", tag = "friendships", security(("bearer" = [])),
    params(("friendId" = Uuid, Path, description = "The other user")),
    responses((status = 204, description = "End a friendship"), SocialErrors))]
async fn unfriend(Caller(auth, state): Caller, Friend(id): Friend) -> ApiResult<StatusCode> {
    social::unfriend(&state, auth.user_id, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /friendships/block/:friendId`: 201 when newly blocked, 200 when it already was.
#[utoipa::path(post, path = "/friendships/block/{friendId}", tag = "friendships", security(("bearer" = [])),
    params(("friendId" = Uuid, Path, description = "The other user")),
    responses(
        (status = 200, description = "Block a user (ends any friendship or request); blocking again changes nothing", body = BlockedUser),
        SocialErrors))]
async fn block(Caller(auth, state): Caller, Friend(id): Friend) -> ApiResult<Json<BlockedUser>> {
    // 200 whether or not the block is new, as the original answered.
    let (_created, blocked) = social::block(&state, auth.user_id, id).await?;
    Ok(Json(blocked))
}

#[utoipa::path(delete, path = "/friendships/unblock/{friendId}", tag = "friendships", security(("bearer" = [])),
    params(("friendId" = Uuid, Path, description = "The other user")),
    responses((status = 200, description = "Unblock a user", body = Unblocked), SocialErrors))]
async fn unblock(Caller(auth, state): Caller, Friend(id): Friend) -> ApiResult<Json<Unblocked>> {
    social::unblock(&state, auth.user_id, id).await?;
    Ok(Json(Unblocked {
        message: "User unblocked successfully",
        user_id: id,
    }))
}

/// The answer to an unblock: a body, as the original's clients parse one.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct Unblocked {
    #[schema(value_type = String, example = "User unblocked successfully")]
    message: &'static str,
    /// The user no longer blocked.
    user_id: Uuid,
}

#[derive(Debug, Deserialize)]
struct FriendsParams {
    search: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /friendships`: accepted friends with their presence, online ones first.
#[utoipa::path(get, path = "/friendships", tag = "friendships", security(("bearer" = [])),
    responses((status = 200, description = "Friends with live presence", body = Vec<FriendshipView>), SocialErrors))]
async fn list_friends(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<FriendsParams>,
) -> ApiResult<Json<Vec<FriendshipView>>> {
    let page = limit_offset(p.limit, p.offset)?;
    let pattern = contains_pattern(p.search.as_deref().unwrap_or(""));
    let sql = concat!(
        social::view_select!(),
        "where f.status = 'accepted' and (f.requester_id = $1 or f.addressee_id = $1) \
           and lower(u.username) like $4 \
         order by (u.status = 'online') desc, lower(u.username) \
         limit $2 offset $3"
    );
    let rows = fetch_page(&db, sql, auth.user_id, page, Some(pattern)).await?;
    Ok(views(rows, auth.user_id))
}

/// Pending requests where the caller is in `$column`, newest first.
macro_rules! pending {
    ($column:literal) => {
        concat!(
            social::view_select!(),
            "where f.status = 'pending' and f.",
            $column,
            " = $1 order by f.created_at desc, f.friendship_id limit $2 offset $3"
        )
    };
}

#[derive(Debug, Deserialize)]
struct RequestsParams {
    direction: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /friendships/requests?direction=incoming|outgoing`: pending requests, newest first.
#[utoipa::path(get, path = "/friendships/requests", tag = "friendships", security(("bearer" = [])),
    responses(
        (status = 200, description = "Pending requests (direction=incoming|outgoing)", body = Vec<FriendshipView>),
        SocialErrors))]
async fn list_requests(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<RequestsParams>,
) -> ApiResult<Json<Vec<FriendshipView>>> {
    let page = limit_offset(p.limit, p.offset)?;
    let sql = match p.direction.as_deref().map(str::trim) {
        None | Some("incoming") => pending!("addressee_id"),
        Some("outgoing") => pending!("requester_id"),
        Some(_) => {
            return Err(ApiError::invalid(
                "direction",
                "must be incoming or outgoing",
            ));
        }
    };
    let rows = fetch_page(&db, sql, auth.user_id, page, None).await?;
    Ok(views(rows, auth.user_id))
}

#[derive(Debug, Deserialize)]
struct PageParams {
    limit: Option<i64>,
    offset: Option<i64>,
}

/// `GET /friendships/blocked`: users the caller blocked, most recent first.
#[utoipa::path(get, path = "/friendships/blocked", tag = "friendships", security(("bearer" = [])),
    responses((status = 200, description = "Users the caller blocked", body = Vec<BlockedUser>), SocialErrors))]
async fn list_blocked(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<PageParams>,
) -> ApiResult<Json<Vec<BlockedUser>>> {
    let page = limit_offset(p.limit, p.offset)?;
    let sql = "select u.user_id, u.username, u.status, u.last_seen_at, u.created_at, u.updated_at, \
                b.created_at as blocked_at \
         from user_blocks b join users u on u.user_id = b.blocked_id \
         where b.blocker_id = $1 \
         order by b.created_at desc, b.blocked_id limit $2 offset $3";
    Ok(Json(fetch_page(&db, sql, auth.user_id, page, None).await?))
}

#[derive(Debug, Deserialize)]
struct SearchParams {
    search: Option<String>,
    page: Option<i64>,
    limit: Option<i64>,
    /// Also list users the caller blocked (as `blocked`), e.g. to unblock them from search.
    include_blocked: Option<bool>,
}

/// One page of a friend search.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct FriendSearchPage {
    data: Vec<SearchHit>,
    meta: PageMeta,
}

/// A user found by a friend search, with how they stand with the caller.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SearchHit {
    #[serde(flatten)]
    user: PublicUser,
    relationship: Relationship,
}

#[derive(sqlx::FromRow)]
struct SearchRow {
    #[sqlx(flatten)]
    user: PublicUser,
    relationship: String,
    total: i64,
}

/// `GET /friendships/search`: users matching `search`, each with how they stand with the
/// caller, in the original's paged shape. Users the caller blocked are left out unless
/// `include_blocked=true`; users who blocked the caller are always left out.
#[utoipa::path(get, path = "/friendships/search", tag = "friendships", security(("bearer" = [])),
    responses(
        (status = 200, description = "Search users with their relationship to the caller", body = FriendSearchPage),
        SocialErrors))]
async fn search(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<SearchParams>,
) -> ApiResult<Json<FriendSearchPage>> {
    let q = SearchPage::parse(p.search.as_deref(), p.page, p.limit)?;
    let include_blocked = p.include_blocked.unwrap_or(false);
    let rows = sqlx::query_as::<_, SearchRow>(
        "select u.user_id, u.username, u.status, u.last_seen_at, u.created_at, u.updated_at, \
                case when mine.blocked_id is not null then 'blocked' \
                     when f.status = 'accepted' then 'friends' \
                     when f.requester_id = $2 then 'pending_outgoing' \
                     when f.requester_id is not null then 'pending_incoming' \
                     else 'none' end as relationship, \
                count(*) over () as total \
         from users u \
         left join friendships f \
           on least(f.requester_id, f.addressee_id) = least(u.user_id, $2::uuid) \
          and greatest(f.requester_id, f.addressee_id) = greatest(u.user_id, $2::uuid) \
         left join user_blocks mine on mine.blocker_id = $2 and mine.blocked_id = u.user_id \
         where lower(u.username) like $1 and u.user_id <> $2 \
           and ($5 or mine.blocked_id is null) \
           and not exists (select 1 from user_blocks theirs where theirs.blocker_id = u.user_id and theirs.blocked_id = $2) \
         order by lower(u.username) limit $3 offset $4",
    )
    .bind(&q.pattern)
    .bind(auth.user_id)
    .bind(q.limit)
    .bind(q.offset())
    .bind(include_blocked)
    .fetch_all(&db)
    .await?;
    // Past the last page the window count has no row to ride on.
    let count = sqlx::query_scalar(
        "select count(*) from users u \
         where lower(u.username) like $1 and u.user_id <> $2 \
           and ($3 or not exists (select 1 from user_blocks mine where mine.blocker_id = $2 and mine.blocked_id = u.user_id)) \
           and not exists (select 1 from user_blocks theirs where theirs.blocker_id = u.user_id and theirs.blocked_id = $2)",
    )
    .bind(&q.pattern)
    .bind(auth.user_id)
    .bind(include_blocked)
    .fetch_one(&db);
    let meta = q.meta(rows.first().map(|r| r.total), count).await?;
    let data = rows
        .into_iter()
        .map(|r| SearchHit {
            user: r.user,
            relationship: Relationship::parse(&r.relationship),
        })
        .collect();
    Ok(Json(FriendSearchPage { data, meta }))
}

/// A friend of a friend.
#[derive(Debug, Serialize, sqlx::FromRow, utoipa::ToSchema)]
struct Suggestion {
    #[serde(flatten)]
    #[sqlx(flatten)]
    user: PublicUser,
    /// Friends the caller and this user share.
    mutual_friends: i64,
}

/// `GET /friendships/suggestions`: friends of friends, most mutual friends first, without
/// the caller, their friends, anyone with a pending request either way, and anyone blocked
/// either way.
#[utoipa::path(get, path = "/friendships/suggestions", tag = "friendships", security(("bearer" = [])),
    responses(
        (status = 200, description = "Friends of friends, by mutual friends", body = Vec<Suggestion>),
        SocialErrors))]
async fn suggestions(
    Caller(auth, AppState { db, .. }): Caller,
    AppQuery(p): AppQuery<PageParams>,
) -> ApiResult<Json<Vec<Suggestion>>> {
    let page = limit_offset(p.limit, p.offset)?;
    // Each (friend, their friend) edge appears once, so counting a candidate's rows counts
    // the friends the caller shares with them.
    let sql = "with mine as ( \
             select addressee_id as friend_id from friendships where requester_id = $1 and status = 'accepted' \
             union all \
             select requester_id from friendships where addressee_id = $1 and status = 'accepted' \
         ), candidates as ( \
             select f.addressee_id as user_id from friendships f join mine m on f.requester_id = m.friend_id \
             where f.status = 'accepted' \
             union all \
             select f.requester_id from friendships f join mine m on f.addressee_id = m.friend_id \
             where f.status = 'accepted' \
         ) \
         select u.user_id, u.username, u.status, u.last_seen_at, u.created_at, u.updated_at, \
                count(*) as mutual_friends \
         from candidates c join users u on u.user_id = c.user_id \
         where c.user_id <> $1 \
           and not exists (select 1 from friendships x \
                           where least(x.requester_id, x.addressee_id) = least(c.user_id, $1::uuid) \
                             and greatest(x.requester_id, x.addressee_id) = greatest(c.user_id, $1::uuid)) \
           and not exists (select 1 from user_blocks b \
                           where (b.blocker_id = $1 and b.blocked_id = c.user_id) \
                              or (b.blocker_id = c.user_id and b.blocked_id = $1)) \
         group by u.user_id \
         order by mutual_friends desc, lower(u.username) \
         limit $2 offset $3";
    Ok(Json(fetch_page(&db, sql, auth.user_id, page, None).await?))
}
