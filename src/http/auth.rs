use std::net::IpAddr;

use axum::{
    Json,
    extract::{FromRequest, FromRequestParts, Request, State},
    http::{StatusCode, header, request::Parts},
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use super::{
    extract::{AppJson, Caller, CallerAt, ClientAddr, parts_then_json},
    openapi::{BadRequest, Conflict, ErrorBody, HashingBusy, NotFound, TooLarge, Unauthorized},
    users::User,
};
use crate::{
    auth::RefreshToken,
    bus::{self, BusMessage},
    domain::{DeviceName, Email, Password, Username},
    error::{ApiError, ApiResult, FieldError, ResultExt},
    fabric::{FabricResult, Rate, Rotate, Rotation, Session},
    limits::{self, Limit, key},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    routes_of![
        register,
        login,
        refresh,
        logout,
        logout_all,
        list_sessions,
        revoke_session
    ]
}

/// A signed-in device: its tokens and the user behind it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuthResponse {
    /// Short-lived HS256 JWT carrying `sub` (user), `sid` (device session) and `exp`.
    pub access_token: String,
    #[schema(value_type = String, example = "Bearer")]
    pub token_type: &'static str,
    /// When the access token expires; renew it with `POST /auth/refresh` before then.
    pub expires_at: DateTime<Utc>,
    /// Opaque, single use: `POST /auth/refresh` answers with a new one. Presenting one that
    /// was already used revokes the device session.
    pub refresh_token: String,
    /// When the device session ends unless refreshed (each refresh starts it again).
    pub refresh_expires_at: DateTime<Utc>,
    /// This device's session, for `DELETE /auth/sessions/{sid}`.
    pub session_id: Uuid,
    pub user: User,
}

// Fields are optional in Rust so that every missing one is reported in one 400; the
// schema says what a valid request holds.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RegisterBody {
    /// 3 to 32 letters, digits, `_`, `.` or `-`; unique regardless of case.
    #[schema(value_type = String, required = true)]
    username: Option<String>,
    #[schema(value_type = String, required = true, format = Email)]
    email: Option<String>,
    /// 8 to 128 characters.
    #[schema(value_type = String, required = true, format = Password)]
    password: Option<String>,
    /// A name for this device in `GET /auth/sessions`; defaults to the User-Agent.
    #[schema(value_type = String, required = false)]
    device: Option<String>,
}

fn required<'a>(
    field: &'static str,
    v: Option<&'a str>,
    errs: &mut Vec<FieldError>,
) -> Option<&'a str> {
    if v.is_none() {
        errs.push(FieldError::new(field, "is required"));
    }
    v
}

/// Runs every field's parser and reports all failures at once, as the original did.
fn collect<T>(r: Result<T, ApiError>, errs: &mut Vec<FieldError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(ApiError::Invalid(mut e)) => {
            errs.append(&mut e);
            None
        }
        Err(other) => {
            errs.push(FieldError::new("body", other.to_string()));
            None
        }
    }
}

/// Where a sign-in comes from: the address the limits count, and the User-Agent (its first
/// 64 characters) that names the device when the body does not.
struct Client {
    addr: IpAddr,
    user_agent: Option<String>,
}

impl FromRequestParts<AppState> for Client {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Ok(ClientAddr(addr)) = ClientAddr::from_request_parts(parts, state).await;
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(64).collect::<String>());
        Ok(Self { addr, user_agent })
    }
}

/// A request that signs a device in: the state, where it comes from, and its JSON body.
struct SignIn<B>(AppState, Client, B);

impl<B: DeserializeOwned> FromRequest<AppState> for SignIn<B> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        let (client, body) = parts_then_json(req, state).await?;
        Ok(Self(state.clone(), client, body))
    }
}

/// The device name: the client's, else its User-Agent, else a placeholder.
fn device_name(
    given: Option<&str>,
    client: &Client,
    errs: &mut Vec<FieldError>,
) -> Option<DeviceName> {
    let ua = client.user_agent.as_deref();
    match given {
        Some(d) => collect(DeviceName::parse(Some(d)), errs),
        None => collect(DeviceName::parse(ua), errs).or_else(|| DeviceName::parse(None).ok()),
    }
}

#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = RegisterBody,
    responses(
        (status = 201, description = "Registered and signed in", body = AuthResponse),
        (status = 429, description = "Too many sign-ups from this address", body = ErrorBody),
        BadRequest, Conflict, TooLarge, HashingBusy))]
async fn register(
    SignIn(state, client, body): SignIn<RegisterBody>,
) -> ApiResult<(StatusCode, Json<AuthResponse>)> {
    let mut errs = Vec::new();
    let username = required("username", body.username.as_deref(), &mut errs)
        .and_then(|u| collect(Username::parse(u), &mut errs));
    let email = required("email", body.email.as_deref(), &mut errs)
        .and_then(|e| collect(Email::parse(e), &mut errs));
    let password = required("password", body.password.as_deref(), &mut errs)
        .and_then(|p| collect(Password::parse(p.to_owned()), &mut errs));
    let device = device_name(body.device.as_deref(), &client, &mut errs);
    let (Some(username), Some(email), Some(password), Some(device), true) =
        (username, email, password, device, errs.is_empty())
    else {
        return Err(ApiError::Invalid(errs));
    };

    limits::take(
        state.fabric.limits.as_ref(),
        Limit::SignupAddress,
        &key::signup_address(client.addr),
        state.settings.limit_address_signups,
    )
    .await?;
    let hash = state.hasher.hash(password).await?;
    let user = sqlx::query_as::<_, User>(
        "insert into users (username, email, password_hash) values ($1, $2, $3) \
         returning user_id, username, email, status, last_seen_at, created_at, updated_at",
    )
    .bind(username.as_str())
    .bind(email.as_str())
    .bind(hash)
    .fetch_one(&state.db)
    .await
    .on_constraint("users_username_key", |_| {
        ApiError::Conflict("username is already taken".into())
    })
    .on_constraint("users_email_key", |_| {
        ApiError::Conflict("email is already registered".into())
    })?;

    let resp = start_session(&state, user, device).await?;
    Ok((StatusCode::CREATED, Json(resp)))
}

async fn start_session(
    state: &AppState,
    user: User,
    device: DeviceName,
) -> ApiResult<AuthResponse> {
    let session_id = Uuid::new_v4();
    let now = Utc::now();
    let refresh_expires_at = now + lifetime(state);
    let (refresh_token, refresh_hash) = RefreshToken::issue(session_id);
    state
        .fabric
        .sessions
        .create(
            &Session {
                session_id,
                user_id: user.user_id,
                device: device.as_str().to_owned(),
                created_at: now,
                last_seen_at: now,
                expires_at: refresh_expires_at,
            },
            &refresh_hash,
        )
        .await?;
    signed_in(state, user, session_id, refresh_token, refresh_expires_at)
}

/// A device session's lifetime, which every refresh starts again.
fn lifetime(state: &AppState) -> chrono::Duration {
    chrono::Duration::from_std(state.settings.token_ttl()).unwrap_or(chrono::Duration::days(7))
}

/// The answer for a device with a live session: a fresh access token beside the refresh
/// token it holds now.
fn signed_in(
    state: &AppState,
    user: User,
    session_id: Uuid,
    refresh_token: String,
    refresh_expires_at: DateTime<Utc>,
) -> ApiResult<AuthResponse> {
    let (access_token, claims) = state.tokens.issue(user.user_id, session_id)?;
    Ok(AuthResponse {
        access_token,
        token_type: "Bearer",
        expires_at: DateTime::from_timestamp(claims.exp, 0).unwrap_or_else(Utc::now),
        refresh_token,
        refresh_expires_at,
        session_id,
        user,
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct RefreshBody {
    /// The refresh token of the last sign-in or refresh.
    #[serde(alias = "refreshToken")]
    #[schema(value_type = String, required = true)]
    refresh_token: Option<String>,
}

/// Longest refresh token accepted: ours are 97 characters.
const MAX_REFRESH_TOKEN_CHARS: usize = 128;

/// Trades a refresh token for a new access token and a new refresh token (rotation). The
/// old refresh token is spent: presenting it again means two parties hold it, so the device
/// session is revoked on every node, as the OAuth 2.0 security best practice asks.
#[utoipa::path(post, path = "/auth/refresh", tag = "auth", request_body = RefreshBody,
    responses(
        (status = 200, description = "New access and refresh tokens", body = AuthResponse),
        (status = 401, description = "Unknown, expired or already used refresh token (a reused one also ends the session)", body = ErrorBody),
        BadRequest))]
async fn refresh(
    State(state): State<AppState>,
    AppJson(body): AppJson<RefreshBody>,
) -> ApiResult<Json<AuthResponse>> {
    let raw = match body.refresh_token.as_deref().map(str::trim) {
        None | Some("") => return Err(ApiError::invalid("refresh_token", "is required")),
        Some(t) if t.len() > MAX_REFRESH_TOKEN_CHARS => {
            return Err(ApiError::invalid("refresh_token", "is not a refresh token"));
        }
        Some(t) => t,
    };
    let invalid = || ApiError::Unauthorized("refresh token is invalid or has expired".into());
    let (session_id, presented) = RefreshToken::parse(raw).ok_or_else(invalid)?;
    let (next_token, next_hash) = RefreshToken::issue(session_id);
    let rotation = state
        .fabric
        .sessions
        .rotate_refresh(
            session_id,
            Rotate {
                presented: &presented,
                next: &next_hash,
                lifetime: state.settings.token_ttl(),
            },
        )
        .await?;
    match rotation {
        Rotation::Rotated { user } => {
            let user = sqlx::query_as::<_, User>(
                "select user_id, username, email, status, last_seen_at, created_at, updated_at \
                 from users where user_id = $1",
            )
            .bind(user)
            .fetch_optional(&state.db)
            .await?
            .ok_or_else(invalid)?;
            metrics::counter!(crate::metrics::names::AUTH_REFRESHES, "outcome" => "ok")
                .increment(1);
            let expires = Utc::now() + lifetime(&state);
            Ok(Json(signed_in(
                &state, user, session_id, next_token, expires,
            )?))
        }
        Rotation::Reused { user } => {
            metrics::counter!(crate::metrics::names::AUTH_REFRESHES, "outcome" => "reused")
                .increment(1);
            tracing::warn!(%user, %session_id, "a rotated refresh token was presented again; revoking the session");
            if state.fabric.sessions.revoke(user, session_id).await? {
                disconnect(&state, vec![session_id]).await;
            }
            Err(ApiError::Unauthorized(
                "refresh token was already used: the session has been revoked, sign in again"
                    .into(),
            ))
        }
        Rotation::Unknown => {
            metrics::counter!(crate::metrics::names::AUTH_REFRESHES, "outcome" => "invalid")
                .increment(1);
            Err(invalid())
        }
    }
}

/// `username` or `email` identifies the user (a username field may hold an email).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
struct LoginBody {
    #[schema(value_type = String, required = false)]
    username: Option<String>,
    #[schema(value_type = String, required = false)]
    email: Option<String>,
    #[schema(value_type = String, required = true, format = Password)]
    password: Option<String>,
    /// A name for this device in `GET /auth/sessions`; defaults to the User-Agent.
    #[schema(value_type = String, required = false)]
    device: Option<String>,
}

#[derive(sqlx::FromRow)]
struct Credentials {
    #[sqlx(flatten)]
    user: User,
    password_hash: String,
}

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = LoginBody,
    responses(
        (status = 200, description = "Signed in", body = AuthResponse),
        (status = 429, description = "Too many failed attempts for this account or from this address", body = ErrorBody),
        BadRequest, Unauthorized, TooLarge, HashingBusy))]
async fn login(SignIn(state, client, body): SignIn<LoginBody>) -> ApiResult<Json<AuthResponse>> {
    let mut errs = Vec::new();
    let identifier = body
        .username
        .as_deref()
        .or(body.email.as_deref())
        .map(str::trim)
        .filter(|s| !s.is_empty());
    match identifier {
        None => errs.push(FieldError::new(
            "username",
            "is required (a username or an email)",
        )),
        Some(id) if id.len() > MAX_LOGIN_NAME_BYTES => errs.push(FieldError::new(
            "username",
            "must be at most 254 characters (a username or an email)",
        )),
        Some(_) => {}
    }
    let password = match body.password {
        Some(p) if !p.is_empty() && p.chars().count() <= 128 => Some(p),
        Some(_) => {
            errs.push(FieldError::new(
                "password",
                "must be 1 to 128 characters long",
            ));
            None
        }
        None => {
            errs.push(FieldError::new("password", "is required"));
            None
        }
    };
    let device = device_name(body.device.as_deref(), &client, &mut errs);
    let (Some(identifier), Some(password), Some(device), true) =
        (identifier, password, device, errs.is_empty())
    else {
        return Err(ApiError::Invalid(errs));
    };

    // Each attempt takes its failure from both limiters before any password is evaluated,
    // so parallel attempts cannot all slip under a check; a success gives them back.
    let rates = &state.settings;
    let address = Attempts {
        limit: Limit::LoginAddress,
        key: key::login_address(client.addr),
        rate: rates.limit_address_login_failures,
    };
    address.take(&state).await?;
    let found = sqlx::query_as::<_, Credentials>(
        "select user_id, username, email, status, last_seen_at, created_at, updated_at, password_hash \
         from users where lower(username) = lower($1) or lower(email) = lower($1) limit 1",
    )
    .bind(identifier)
    .fetch_optional(&state.db)
    .await?;
    let account = Attempts {
        limit: Limit::LoginAccount,
        // Counted on the account however it was spelled (username, email, any case).
        key: match &found {
            Some(c) => key::login_account(c.user.user_id),
            None => key::login_unknown(&identifier.to_lowercase()),
        },
        rate: rates.limit_login_failures,
    };
    account.take(&state).await?;
    let (user, hash) = match found {
        Some(c) => (Some(c.user), Some(c.password_hash)),
        None => (None, None),
    };
    let ok = match state.hasher.verify(password, hash).await {
        Ok(ok) => ok,
        Err(e) => {
            // No password was evaluated: the attempt does not count.
            let _ = account.give_back(&state).await;
            let _ = address.give_back(&state).await;
            return Err(e);
        }
    };
    let (true, Some(user)) = (ok, user) else {
        metrics::counter!(crate::metrics::names::AUTH_LOGINS, "outcome" => "invalid").increment(1);
        return Err(ApiError::Unauthorized(
            "invalid username or password".into(),
        ));
    };
    state.fabric.limits.reset(&account.key).await?;
    address.give_back(&state).await?;
    metrics::counter!(crate::metrics::names::AUTH_LOGINS, "outcome" => "ok").increment(1);
    Ok(Json(start_session(&state, user, device).await?))
}

/// One budget a login attempt draws on: the address's or the account's failures.
struct Attempts {
    limit: Limit,
    key: String,
    rate: Rate,
}

impl Attempts {
    /// Takes the attempt's failure before it is known; a refusal counts as a rate-limited
    /// login.
    async fn take(&self, state: &AppState) -> ApiResult<()> {
        let store = state.fabric.limits.as_ref();
        let taken = limits::take(store, self.limit, &self.key, self.rate).await;
        if let Err(ApiError::TooManyRequests { .. }) = taken {
            metrics::counter!(crate::metrics::names::AUTH_LOGINS, "outcome" => "rate_limited")
                .increment(1);
        }
        taken
    }

    /// Gives the failure back: the attempt succeeded, or never got to a password.
    async fn give_back(&self, state: &AppState) -> FabricResult<()> {
        state.fabric.limits.give_back(&self.key, self.rate).await
    }
}

/// Longest login name: an email address can be 254 bytes, a username is shorter.
const MAX_LOGIN_NAME_BYTES: usize = 254;

/// Drops the sockets of revoked sessions on every node.
async fn disconnect(state: &AppState, sessions: Vec<Uuid>) {
    if sessions.is_empty() {
        return;
    }
    metrics::counter!(crate::metrics::names::AUTH_SESSIONS_REVOKED)
        .increment(sessions.len() as u64);
    bus::publish_or_log(
        state.bus.as_ref(),
        BusMessage::DisconnectSessions { sessions },
    )
    .await;
}

#[utoipa::path(post, path = "/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "This session is revoked", body = LoggedOut), Unauthorized))]
async fn logout(Caller(auth, state): Caller) -> ApiResult<Json<LoggedOut>> {
    if state
        .fabric
        .sessions
        .revoke(auth.user_id, auth.session_id)
        .await?
    {
        disconnect(&state, vec![auth.session_id]).await;
    }
    Ok(Json(LoggedOut {
        message: "Successfully logged out",
        session_id: auth.session_id,
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LoggedOut {
    #[schema(value_type = String, example = "Successfully logged out")]
    message: &'static str,
    /// The session that ended.
    session_id: Uuid,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
struct LoggedOutEverywhere {
    #[schema(value_type = String, example = "logged out everywhere")]
    message: &'static str,
    /// How many sessions ended.
    revoked: usize,
}

#[utoipa::path(post, path = "/auth/logout-all", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every session of the user is revoked", body = LoggedOutEverywhere),
        Unauthorized))]
async fn logout_all(Caller(auth, state): Caller) -> ApiResult<Json<LoggedOutEverywhere>> {
    let revoked = state.fabric.sessions.revoke_all(auth.user_id).await?;
    let count = revoked.len();
    disconnect(&state, revoked).await;
    Ok(Json(LoggedOutEverywhere {
        message: "logged out everywhere",
        revoked: count,
    }))
}

/// One of the user's devices.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SessionView {
    #[serde(flatten)]
    session: Session,
    /// True for the session of the token that asked.
    current: bool,
}

#[utoipa::path(get, path = "/auth/sessions", tag = "auth", security(("bearer" = [])),
    responses((status = 200, description = "The user's sessions", body = Vec<SessionView>), Unauthorized))]
async fn list_sessions(Caller(auth, state): Caller) -> ApiResult<Json<Vec<SessionView>>> {
    let sessions = state.fabric.sessions.list(auth.user_id).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionView {
                current: s.session_id == auth.session_id,
                session: s,
            })
            .collect(),
    ))
}

#[utoipa::path(delete, path = "/auth/sessions/{sid}", tag = "auth", security(("bearer" = [])),
    params(("sid" = Uuid, Path, description = "Session id")),
    responses((status = 204, description = "Session revoked"), BadRequest, Unauthorized, NotFound))]
async fn revoke_session(CallerAt(auth, state, sid): CallerAt) -> ApiResult<StatusCode> {
    if state.fabric.sessions.revoke(auth.user_id, sid).await? {
        disconnect(&state, vec![sid]).await;
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("session"))
    }
}
