use std::{collections::HashMap, sync::Mutex, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Cached, Session, SessionCache};
use crate::fabric::{FabricResult, lock};

/// The session cache of a single node with no Redis. Expiry is checked on read, as Redis
/// does; expired entries are pruned by writes, at most once a second (a node restarting
/// under 100,000 sockets refills as many sessions at once).
#[derive(Default)]
pub struct MemorySessions(Mutex<Inner>);

/// Keyed by (user, session), as Redis keys are: a session asked for under another user is
/// unknown, and marking it revoked there leaves the owner's entry alone.
#[derive(Default)]
struct Inner {
    live: HashMap<(Uuid, Uuid), Session>,
    /// Revocation marks and when they lapse.
    revoked: HashMap<(Uuid, Uuid), DateTime<Utc>>,
    /// When expired entries were last dropped.
    pruned_at: Option<DateTime<Utc>>,
}

impl Inner {
    fn prune(&mut self, now: DateTime<Utc>) {
        if self
            .pruned_at
            .is_some_and(|at| now - at < chrono::Duration::seconds(1))
        {
            return;
        }
        self.pruned_at = Some(now);
        self.live.retain(|_, s| s.expires_at > now);
        self.revoked.retain(|_, until| *until > now);
    }

    fn state(&self, key: (Uuid, Uuid), now: DateTime<Utc>) -> Cached {
        if self.live.get(&key).is_some_and(|s| s.expires_at > now) {
            Cached::Live
        } else if self.revoked.get(&key).is_some_and(|until| *until > now) {
            Cached::Revoked
        } else {
            Cached::Unknown
        }
    }
}

#[async_trait]
impl SessionCache for MemorySessions {
    async fn touch(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<Cached> {
        let now = Utc::now();
        let mut inner = lock(&self.0);
        let state = inner.state((user_id, session_id), now);
        if state == Cached::Live {
            if let Some(s) = inner.live.get_mut(&(user_id, session_id)) {
                s.last_seen_at = now;
            }
        }
        Ok(state)
    }

    async fn probe(&self, sessions: &[(Uuid, Uuid)]) -> FabricResult<Vec<Cached>> {
        let now = Utc::now();
        let inner = lock(&self.0);
        Ok(sessions.iter().map(|k| inner.state(*k, now)).collect())
    }

    async fn fill(&self, session: &Session) -> FabricResult<bool> {
        let now = Utc::now();
        let key = (session.user_id, session.session_id);
        let mut inner = lock(&self.0);
        inner.prune(now);
        if inner.revoked.get(&key).is_some_and(|until| *until > now) {
            return Ok(false);
        }
        let mut s = session.clone();
        if let Some(cached) = inner.live.get(&key) {
            s.last_seen_at = s.last_seen_at.max(cached.last_seen_at);
        }
        inner.live.insert(key, s);
        Ok(true)
    }

    async fn forget(
        &self,
        user_id: Uuid,
        sessions: &[Uuid],
        mark: Duration,
    ) -> FabricResult<usize> {
        let now = Utc::now();
        let until = chrono::Duration::from_std(mark)
            .ok()
            .and_then(|m| now.checked_add_signed(m))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let mut inner = lock(&self.0);
        inner.prune(now);
        let mut cached = 0;
        for sid in sessions {
            let key = (user_id, *sid);
            cached += usize::from(inner.live.remove(&key).is_some());
            inner.revoked.insert(key, until);
        }
        Ok(cached)
    }

    async fn last_seen(
        &self,
        user_id: Uuid,
        sessions: &[Uuid],
    ) -> FabricResult<Vec<Option<DateTime<Utc>>>> {
        let inner = lock(&self.0);
        Ok(sessions
            .iter()
            .map(|sid| inner.live.get(&(user_id, *sid)).map(|s| s.last_seen_at))
            .collect())
    }
}
