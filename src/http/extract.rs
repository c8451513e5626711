use axum::{
    extract::{
        FromRequest, FromRequestParts, Request,
        rejection::{JsonRejection, PathRejection, QueryRejection},
    },
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::{error::ApiError, state::AppState};

/// `Json` whose rejections answer in the API's error shape (400, 413 or 415).
pub struct AppJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
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

/// The authenticated caller: a valid token whose device session is still live.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub user_id: Uuid,
    pub session_id: Uuid,
}

impl AuthUser {
    /// Checks a bearer token the way every route and socket does.
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state.tokens.verify(token)?;
        match state.fabric.touch_session(claims.sid).await? {
            Some(owner) if owner == claims.sub => Ok(Self {
                user_id: claims.sub,
                session_id: claims.sid,
            }),
            _ => Err(ApiError::Unauthorized(
                "session has been revoked or has expired".into(),
            )),
        }
    }
}

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

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
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
