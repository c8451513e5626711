use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::{Rotate, Rotation, Session, SessionStore};
use crate::fabric::{FabricResult, lock};

/// Sessions of a single node. Expiry is checked on read, as Redis does.
#[derive(Default)]
pub struct MemorySessions(Mutex<Inner>);

#[derive(Default)]
struct Inner {
    sessions: HashMap<Uuid, Session>,
    /// session → (hash of its current refresh token, hashes of its rotated ones).
    refresh: HashMap<Uuid, (String, HashSet<String>)>,
}

impl Inner {
    fn prune(&mut self) {
        let now = Utc::now();
        self.sessions.retain(|_, s| s.expires_at > now);
        let sessions = &self.sessions;
        self.refresh.retain(|sid, _| sessions.contains_key(sid));
    }

    fn of_user(&self, user_id: Uuid) -> impl Iterator<Item = &Session> {
        self.sessions.values().filter(move |s| s.user_id == user_id)
    }
}

#[async_trait]
impl SessionStore for MemorySessions {
    async fn create(&self, session: &Session, refresh_hash: &str) -> FabricResult<()> {
        let mut inner = lock(&self.0);
        inner.prune();
        inner.sessions.insert(session.session_id, session.clone());
        inner.refresh.insert(
            session.session_id,
            (refresh_hash.to_owned(), HashSet::new()),
        );
        Ok(())
    }

    async fn rotate_refresh(&self, session_id: Uuid, r: Rotate<'_>) -> FabricResult<Rotation> {
        let Rotate {
            presented,
            next,
            lifetime,
        } = r;
        let mut inner = lock(&self.0);
        inner.prune();
        let Some(user) = inner.sessions.get(&session_id).map(|s| s.user_id) else {
            return Ok(Rotation::Unknown);
        };
        let Some((current, rotated)) = inner.refresh.get_mut(&session_id) else {
            return Ok(Rotation::Unknown);
        };
        if current == presented {
            rotated.insert(std::mem::replace(current, next.to_owned()));
            let now = Utc::now();
            if let Some(s) = inner.sessions.get_mut(&session_id) {
                s.last_seen_at = now;
                s.expires_at =
                    now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::MAX);
            }
            return Ok(Rotation::Rotated { user });
        }
        Ok(if rotated.contains(presented) {
            Rotation::Reused { user }
        } else {
            Rotation::Unknown
        })
    }

    async fn touch(&self, session_id: Uuid) -> FabricResult<Option<Uuid>> {
        let mut inner = lock(&self.0);
        let now = Utc::now();
        Ok(match inner.sessions.get_mut(&session_id) {
            Some(s) if s.expires_at > now => {
                s.last_seen_at = now;
                Some(s.user_id)
            }
            Some(_) => {
                inner.sessions.remove(&session_id);
                None
            }
            None => None,
        })
    }

    async fn live(&self, sessions: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        let inner = lock(&self.0);
        let now = Utc::now();
        Ok(sessions
            .iter()
            .filter(|s| inner.sessions.get(s).is_some_and(|x| x.expires_at > now))
            .copied()
            .collect())
    }

    async fn list(&self, user_id: Uuid) -> FabricResult<Vec<Session>> {
        let mut inner = lock(&self.0);
        inner.prune();
        let mut list: Vec<Session> = inner.of_user(user_id).cloned().collect();
        list.sort_by_key(|s| s.created_at);
        Ok(list)
    }

    async fn revoke(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool> {
        let mut inner = lock(&self.0);
        inner.prune();
        match inner.sessions.get(&session_id) {
            Some(s) if s.user_id == user_id => {
                inner.sessions.remove(&session_id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_all(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>> {
        let mut inner = lock(&self.0);
        let ids: Vec<Uuid> = inner.of_user(user_id).map(|s| s.session_id).collect();
        for id in &ids {
            inner.sessions.remove(id);
        }
        Ok(ids)
    }
}
