use std::{sync::Arc, time::Duration};

use anyhow::Context;
use argon2::{
    Argon2,
    password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash},
};
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::{domain::Password, error::ApiError, limits::Limit};

/// What an access token says: who, which device session, until when.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub iat: i64,
    pub exp: i64,
    /// Makes every token distinct, even two issued in the same second for one session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<Uuid>,
}

/// Signs and checks access tokens. Cheap to clone: keys are reference counted inside.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: Uuid, session_id: Uuid) -> Result<(String, Claims), ApiError> {
        let now = Utc::now().timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: user_id,
            sid: session_id,
            iat: now,
            exp: now + ttl,
            jti: Some(Uuid::new_v4()),
        };
        let token = encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .context("signing a token")?;
        Ok((token, claims))
    }

    /// Checks signature and expiry; the caller still checks that the session is live.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                ApiError::Unauthorized(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "token expired",
                        ErrorKind::InvalidSignature => "token signature is invalid",
                        _ => "token is malformed",
                    }
                    .into(),
                )
            })
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
    pub async fn from_token(state: &crate::state::AppState, token: &str) -> Result<Self, ApiError> {
        let claims = state.tokens.verify(token)?;
        if state.fabric.sessions.touch(claims.sub, claims.sid).await? {
            Ok(Self {
                user_id: claims.sub,
                session_id: claims.sid,
            })
        } else {
            Err(ApiError::Unauthorized(
                "session has been revoked or has expired".into(),
            ))
        }
    }
}

/// An opaque refresh token: `<session id>.<secret>`, 244 random bits of secret. Only its
/// SHA-256 is stored, so a copy of the database cannot be replayed; the session id in front
/// finds the session without an index.
pub struct RefreshToken;

impl RefreshToken {
    /// A new token for `session_id`, and the hash to store.
    pub fn issue(session_id: Uuid) -> (String, String) {
        let token = format!(
            "{}.{}{}",
            session_id.simple(),
            Uuid::new_v4().simple(),
            Uuid::new_v4().simple()
        );
        let hash = Self::hash(&token);
        (token, hash)
    }

    /// The session a presented token names, and its hash; `None` for a malformed token.
    pub fn parse(raw: &str) -> Option<(Uuid, String)> {
        let (sid, secret) = raw.split_once('.')?;
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        Some((Uuid::try_parse(sid).ok()?, Self::hash(raw)))
    }

    fn hash(token: &str) -> String {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(token.as_bytes()))
    }
}

/// Runs password hashing, which is the most expensive thing an anonymous client can ask
/// for: argon2id with the crate's defaults holds 19 MiB and a core for tens of
/// milliseconds. At most `slots` run at once, on the blocking pool so a login never stalls
/// the sockets served by the same worker; a request that finds no slot within `wait`
/// gets 503 with `Retry-After` instead of queueing behind a flood. Cheap to clone.
#[derive(Clone)]
pub struct Hasher {
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl Hasher {
    pub fn new(slots: usize, wait: Duration) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(slots.max(1))),
            wait,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let permit = match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) | Err(_) => {
                Limit::HashBusy.refused();
                return Err(ApiError::Busy {
                    message: Limit::HashBusy.message(),
                    retry_after_secs: 1,
                });
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f()
        })
        .await
        .context(what)
        .map_err(ApiError::Internal)
    }

    pub async fn hash(&self, password: Password) -> Result<String, ApiError> {
        self.run("password hashing task", move || {
            Argon2::default()
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))
        })
        .await?
        .map_err(ApiError::Internal)
    }

    /// Whether `password` matches `hash` (or, with no hash, spend the same time and say no).
    pub async fn verify(&self, password: String, hash: Option<String>) -> Result<bool, ApiError> {
        self.run("password verification task", move || {
            let stored = hash.as_deref().unwrap_or(DUMMY_HASH.as_str());
            let ok = PasswordHash::new(stored)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false);
            ok && hash.is_some()
        })
        .await
    }
}

/// A hash computed once, so that logins for unknown users cost as much as real ones and
/// do not reveal which usernames exist by their timing.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    Argon2::default()
        .hash_password(b"chatty-timing-equaliser")
        .map(|h| h.to_string())
        .unwrap_or_default()
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_names_its_session_and_is_stored_only_as_a_hash() {
        let sid = Uuid::new_v4();
        let (token, hash) = RefreshToken::issue(sid);
        assert!(!token.contains(&hash) && hash.len() == 64);
        assert_eq!(RefreshToken::parse(&token), Some((sid, hash.clone())));
        let (other, _) = RefreshToken::issue(sid);
        assert_ne!(RefreshToken::parse(&other).map(|p| p.1), Some(hash));
        for bad in [
            "",
            "x",
            "abc.def",
            &format!("{}.zz", sid.simple()),
            &token[1..],
        ] {
            assert!(RefreshToken::parse(bad).is_none(), "{bad} accepted");
        }
    }
}
