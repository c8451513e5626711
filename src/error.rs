use std::borrow::Cow;

use axum::{
    Json,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// One invalid input field: which one, and what is wrong with it.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: Cow<'static, str>,
    pub reason: Cow<'static, str>,
}

impl FieldError {
    pub fn new(field: impl Into<Cow<'static, str>>, reason: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The error every route and socket handler answers with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(Cow<'static, str>),
    #[error("{0}")]
    Unauthorized(Cow<'static, str>),
    #[error("{0}")]
    Forbidden(Cow<'static, str>),
    #[error("{0}")]
    NotFound(Cow<'static, str>),
    #[error("{0}")]
    Conflict(Cow<'static, str>),
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("{0}")]
    UnsupportedMediaType(Cow<'static, str>),
    /// A limit refused the request; the client may try again after `retry_after_secs`.
    #[error("{message}")]
    TooManyRequests {
        message: &'static str,
        retry_after_secs: u64,
    },
    /// Bounded work (password hashing) is at capacity; try again shortly.
    #[error("{message}")]
    Busy {
        message: &'static str,
        retry_after_secs: u64,
    },
    /// The database failed; details are logged, never sent.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// Redis or another dependency failed; details are logged, never sent.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn invalid(
        field: impl Into<Cow<'static, str>>,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::Invalid(vec![FieldError::new(field, reason)])
    }

    /// 429 for a limit, waiting at least a second (`Retry-After` counts whole seconds).
    pub fn rate_limited(message: &'static str, retry_after: std::time::Duration) -> Self {
        Self::TooManyRequests {
            message,
            retry_after_secs: u64::try_from(retry_after.as_millis().div_ceil(1000))
                .unwrap_or(u64::MAX)
                .max(1),
        }
    }

    /// When the client may try again, for 429 and 503 answers.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests {
                retry_after_secs, ..
            }
            | Self::Busy {
                retry_after_secs, ..
            } => Some((*retry_after_secs).max(1)),
            _ => None,
        }
    }

    pub fn not_found(what: &'static str) -> Self {
        Self::NotFound(Cow::Owned(format!("{what} not found")))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Invalid(_) | Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Sqlx(_) | Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable name, for clients that branch on errors.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation_failed",
            Self::BadRequest(_) => "bad_request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::TooManyRequests { .. } => "rate_limited",
            Self::Busy { .. } => "busy",
            Self::Sqlx(_) | Self::Internal(_) => "internal",
        }
    }

    /// The NestJS-shaped body: `{ statusCode, error, message, code }` (+ `fields` for 400s).
    pub fn body(&self) -> Value {
        let status = self.status();
        let message: Value = match self {
            Self::Invalid(errs) => Value::from(
                errs.iter()
                    .map(|e| format!("{} {}", e.field, e.reason))
                    .collect::<Vec<_>>(),
            ),
            Self::Sqlx(_) | Self::Internal(_) => Value::from("Internal server error"),
            other => Value::from(other.to_string()),
        };
        let mut body = json!({
            "statusCode": status.as_u16(),
            "error": status.canonical_reason().unwrap_or("Error"),
            "message": message,
            "code": self.code(),
        });
        if let Self::Invalid(errs) = self {
            body["fields"] = errs.iter().map(|e| Value::from(e.field.as_ref())).collect();
        }
        // Socket clients have no Retry-After header; the body says it for them.
        if let Some(secs) = self.retry_after_secs() {
            body["retryAfter"] = secs.into();
        }
        body
    }

    /// The same error as a Socket.IO acknowledgement payload.
    pub fn to_ack(&self) -> Value {
        self.log();
        json!({ "ok": false, "error": self.body() })
    }

    fn log(&self) {
        match self {
            Self::Sqlx(e) => tracing::error!(error = %e, "database error"),
            Self::Internal(e) => tracing::error!(error = format!("{e:#}"), "internal error"),
            _ => {}
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let mut resp = (self.status(), Json(self.body())).into_response();
        if let Some(secs) = self.retry_after_secs() {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// Maps a named constraint violation to a client error where the query is called.
pub trait ResultExt<T> {
    fn on_constraint(
        self,
        name: &str,
        f: impl FnOnce(Box<dyn sqlx::error::DatabaseError>) -> ApiError,
    ) -> ApiResult<T>;
}

impl<T, E: Into<ApiError>> ResultExt<T> for Result<T, E> {
    fn on_constraint(
        self,
        name: &str,
        f: impl FnOnce(Box<dyn sqlx::error::DatabaseError>) -> ApiError,
    ) -> ApiResult<T> {
        self.map_err(|e| match e.into() {
            ApiError::Sqlx(sqlx::Error::Database(dbe)) if dbe.constraint() == Some(name) => f(dbe),
            other => other,
        })
    }
}
