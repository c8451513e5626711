use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::{
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{
    error::{ApiError, ApiResult},
    state::AppState,
};

/// `Json` whose rejections answer in the API's error shape (400, 413 or 415).
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(json_rejection(&JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| match r.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::BadRequest(r.body_text().into()),
            })?;
        // PostgreSQL text cannot hold NUL, and no identifier or message needs one.
        if crate::domain::json_has_nul(&bytes) {
            return Err(nul_in_json(&bytes));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

/// `application/json` or any `+json` type, as axum's `Json` accepts.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The 400 for a body with a NUL in some string, naming the field (the cold path: the
/// body is parsed a second time only to find it).
fn nul_in_json(bytes: &[u8]) -> ApiError {
    let field = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| crate::domain::field_with_nul(&v))
        .unwrap_or_else(|| "body".to_owned());
    ApiError::invalid(field, "must not contain NUL characters")
}

fn json_rejection(r: &JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a request with `Content-Type: application/json`".into(),
        ),
        _ if r.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        JsonRejection::JsonDataError(e) => ApiError::BadRequest(clean(e.body_text()).into()),
        JsonRejection::JsonSyntaxError(e) => ApiError::BadRequest(clean(e.body_text()).into()),
        other => ApiError::BadRequest(other.body_text().into()),
    }
}

/// axum's texts start with a generic preamble; keep the part that names the field.
fn clean(text: String) -> String {
    match text.split_once(": ") {
        Some((_, rest)) if text.starts_with("Failed to") => format!("invalid JSON body: {rest}"),
        _ => text,
    }
}

/// `Path` whose rejections are 400s naming the parameter.
pub struct AppPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for AppPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Self(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                let kind = e.into_kind();
                Err(ApiError::BadRequest(
                    format!("invalid path parameter: {kind}").into(),
                ))
            }
            Err(other) => Err(ApiError::BadRequest(other.body_text().into())),
        }
    }
}

/// `Query` whose rejections are 400s naming the parameter.
pub struct AppQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for AppQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(field) = parts.uri.query().and_then(query_field_with_nul) {
            return Err(ApiError::invalid(field, "must not contain NUL characters"));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Self(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::BadRequest(
                clean(e.body_text())
                    .replace("invalid JSON body", "invalid query")
                    .into(),
            )),
            Err(other) => Err(ApiError::BadRequest(other.body_text().into())),
        }
    }
}

/// The name of the first query parameter whose name or value holds an encoded NUL.
fn query_field_with_nul(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let nul = |s: &str| s.as_bytes().windows(3).any(|w| w == b"%00");
        (nul(name) || nul(value)).then(|| name.replace("%00", "").chars().take(64).collect())
    })
}

/// The client's address as the limits count it: the one the trusted balancer names in
/// `CHATTY_CLIENT_IP_HEADER` when that is set (for `X-Forwarded-For` the last entry,
/// which the balancer appended), else the connection's peer.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let from_header = state.settings.client_ip_header.as_deref().and_then(|name| {
            let value = parts
                .headers
                .get_all(name)
                .iter()
                .next_back()?
                .to_str()
                .ok()?;
            let last = value.rsplit(',').map(str::trim).find(|s| !s.is_empty())?;
            last.parse::<IpAddr>()
                .ok()
                .or_else(|| last.parse::<SocketAddr>().ok().map(|a| a.ip()))
        });
        let peer = || {
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        };
        Ok(Self(
            from_header
                .or_else(peer)
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        ))
    }
}

/// The authenticated caller, extracted from `Authorization: Bearer` below.
pub use crate::auth::AuthUser;

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::Unauthorized("missing Authorization header".into()))?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthorized(
            "expected `Authorization: Bearer <token>`".into(),
        )),
    }
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        if let Some(user) = parts.extensions.get::<Self>() {
            return Ok(*user);
        }
        let user = Self::from_token(state, bearer(parts)?).await?;
        parts.extensions.insert(user);
        // The request span declares the field; from here on every line of the request
        // names its user.
        tracing::Span::current().record("user_id", tracing::field::display(user.user_id));
        Ok(user)
    }
}

/// The authenticated caller and the state to act in: how nearly every handler starts.
pub struct Caller(pub AuthUser, pub AppState);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        Ok(Self(user, state.clone()))
    }
}

/// A [`Caller`] and what the path names (one id unless said otherwise): how the handlers of
/// one resource start. The token is checked before the path, so a stranger learns nothing
/// from a malformed id.
pub struct CallerAt<T = Uuid>(pub AuthUser, pub AppState, pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for CallerAt<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let Caller(user, state) = Caller::from_request_parts(parts, state).await?;
        let AppPath(path) = AppPath::from_request_parts(parts, &state).await?;
        Ok(Self(user, state, path))
    }
}

/// A [`Caller`] and the JSON body it sends: how a handler that creates something starts.
pub struct Sends<B>(pub AuthUser, pub AppState, pub B);

impl<B: DeserializeOwned> FromRequest<AppState> for Sends<B> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        let (Caller(user, state), body) = parts_then_json(req, state).await?;
        Ok(Self(user, state, body))
    }
}

/// A [`CallerAt`] and the JSON body it sends: how a change to one resource starts.
pub struct Change<B, T = Uuid>(pub AuthUser, pub AppState, pub T, pub B);

impl<B: DeserializeOwned, T: DeserializeOwned + Send> FromRequest<AppState> for Change<B, T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> ApiResult<Self> {
        let (CallerAt(user, state, path), body) = parts_then_json(req, state).await?;
        Ok(Self(user, state, path, body))
    }
}

/// `P` from the request's head, then its JSON body: the body is read last, as it is when
/// they are a handler's own arguments, so a refused caller or path never costs a read.
pub async fn parts_then_json<P, B>(req: Request, state: &AppState) -> ApiResult<(P, B)>
where
    P: FromRequestParts<AppState, Rejection = ApiError>,
    B: DeserializeOwned,
{
    let (mut parts, body) = req.into_parts();
    let head = P::from_request_parts(&mut parts, state).await?;
    let AppJson(json) = AppJson::from_request(Request::from_parts(parts, body), state).await?;
    Ok((head, json))
}
