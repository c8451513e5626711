use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
    time::{Duration, Instant},
};

use async_trait::async_trait;
use chrono::Utc;
use uuid::Uuid;

use super::{Fabric, FabricResult, Rate, Rotation, Session, Verdict};

/// The fabric of a single node with no Redis. Expiry is checked on read, as Redis does.
#[derive(Default)]
pub struct MemoryFabric {
    /// std Mutex: never held across an await.
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<Uuid, Session>,
    /// session → (hash of its current refresh token, hashes of its rotated ones).
    refresh: HashMap<Uuid, (String, HashSet<String>)>,
    /// limiter key → theoretical arrival time; entries in the past are spent and pruned.
    limits: HashMap<String, Instant>,
    /// Size of `limits` at which spent entries are next pruned, so a flood of distinct
    /// keys (login names, addresses) cannot grow the map without bound.
    prune_limits_at: usize,
    /// user → socket → lease end.
    sockets: HashMap<Uuid, HashMap<String, Instant>>,
    /// user → connection → lease end.
    presence: HashMap<Uuid, HashMap<String, Instant>>,
    /// conversation → user → mark end.
    typing: HashMap<Uuid, HashMap<Uuid, Instant>>,
}

impl MemoryFabric {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still consistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn prune_sessions(&mut self) {
        let now = Utc::now();
        self.sessions.retain(|_, s| s.expires_at > now);
        let sessions = &self.sessions;
        self.refresh.retain(|sid, _| sessions.contains_key(sid));
    }

    /// One GCRA step; `take` false gives a hit back.
    fn limit(&mut self, key: &str, rate: Rate, take: bool) -> Verdict {
        let now = Instant::now();
        let interval = rate.interval();
        let tat = self
            .limits
            .get(key)
            .copied()
            .filter(|t| *t > now)
            .unwrap_or(now);
        let new_tat = if take {
            let new_tat = tat + interval;
            let ahead = new_tat - now;
            let allowance = interval * rate.burst;
            if ahead > allowance {
                return Verdict::Refused {
                    retry_after: ahead - allowance,
                };
            }
            new_tat
        } else {
            tat.checked_sub(interval).unwrap_or(now)
        };
        if new_tat > now {
            self.limits.insert(key.to_owned(), new_tat);
        } else {
            self.limits.remove(key);
        }
        if self.limits.len() >= self.prune_limits_at.max(1024) {
            self.limits.retain(|_, t| *t > now);
            self.prune_limits_at = self.limits.len() * 2;
        }
        Verdict::Allowed
    }
}

#[async_trait]
impl Fabric for MemoryFabric {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn ping(&self) -> FabricResult<()> {
        Ok(())
    }

    async fn create_session(&self, session: &Session, refresh_hash: &str) -> FabricResult<()> {
        let mut inner = self.lock();
        inner.prune_sessions();
        inner.sessions.insert(session.session_id, session.clone());
        inner.refresh.insert(
            session.session_id,
            (refresh_hash.to_owned(), HashSet::new()),
        );
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        session_id: Uuid,
        presented: &str,
        next: &str,
        lifetime: Duration,
    ) -> FabricResult<Rotation> {
        let mut inner = self.lock();
        inner.prune_sessions();
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

    async fn touch_session(&self, session_id: Uuid) -> FabricResult<Option<Uuid>> {
        let mut inner = self.lock();
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

    async fn live_sessions(&self, sessions: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        let inner = self.lock();
        let now = Utc::now();
        Ok(sessions
            .iter()
            .filter(|s| inner.sessions.get(s).is_some_and(|x| x.expires_at > now))
            .copied()
            .collect())
    }

    async fn list_sessions(&self, user_id: Uuid) -> FabricResult<Vec<Session>> {
        let mut inner = self.lock();
        inner.prune_sessions();
        let mut list: Vec<Session> = inner
            .sessions
            .values()
            .filter(|s| s.user_id == user_id)
            .cloned()
            .collect();
        list.sort_by_key(|s| s.created_at);
        Ok(list)
    }

    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool> {
        let mut inner = self.lock();
        inner.prune_sessions();
        match inner.sessions.get(&session_id) {
            Some(s) if s.user_id == user_id => {
                inner.sessions.remove(&session_id);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn revoke_all_sessions(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>> {
        let mut inner = self.lock();
        let ids: Vec<Uuid> = inner
            .sessions
            .values()
            .filter(|s| s.user_id == user_id)
            .map(|s| s.session_id)
            .collect();
        for id in &ids {
            inner.sessions.remove(id);
        }
        Ok(ids)
    }

    async fn limit_take(&self, key: &str, rate: Rate) -> FabricResult<Verdict> {
        Ok(self.lock().limit(key, rate, true))
    }

    async fn limit_give_back(&self, key: &str, rate: Rate) -> FabricResult<()> {
        self.lock().limit(key, rate, false);
        Ok(())
    }

    async fn limit_reset(&self, key: &str) -> FabricResult<()> {
        self.lock().limits.remove(key);
        Ok(())
    }

    async fn sockets_admit(
        &self,
        user: Uuid,
        conn: &str,
        ttl: Duration,
        cap: usize,
    ) -> FabricResult<bool> {
        let mut inner = self.lock();
        let now = Instant::now();
        let conns = inner.sockets.entry(user).or_default();
        conns.retain(|_, until| *until > now);
        if !conns.contains_key(conn) && conns.len() >= cap {
            return Ok(false);
        }
        conns.insert(conn.to_owned(), now + ttl);
        Ok(true)
    }

    async fn sockets_release(&self, user: Uuid, conn: &str) -> FabricResult<()> {
        let mut inner = self.lock();
        if let Some(conns) = inner.sockets.get_mut(&user) {
            conns.remove(conn);
            if conns.is_empty() {
                inner.sockets.remove(&user);
            }
        }
        Ok(())
    }

    async fn sockets_heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()> {
        let mut inner = self.lock();
        let until = Instant::now() + ttl;
        for (user, conn) in conns {
            inner
                .sockets
                .entry(*user)
                .or_default()
                .insert(conn.clone(), until);
        }
        Ok(())
    }

    async fn presence_connect(&self, user: Uuid, conn: &str, ttl: Duration) -> FabricResult<bool> {
        let mut inner = self.lock();
        let now = Instant::now();
        let conns = inner.presence.entry(user).or_default();
        conns.retain(|_, until| *until > now);
        let first = conns.is_empty();
        conns.insert(conn.to_owned(), now + ttl);
        Ok(first)
    }

    async fn presence_disconnect(&self, user: Uuid, conn: &str) -> FabricResult<bool> {
        let mut inner = self.lock();
        let now = Instant::now();
        let Some(conns) = inner.presence.get_mut(&user) else {
            return Ok(false);
        };
        let removed = conns.remove(conn).is_some();
        conns.retain(|_, until| *until > now);
        if conns.is_empty() {
            inner.presence.remove(&user);
            return Ok(removed);
        }
        Ok(false)
    }

    async fn presence_heartbeat(
        &self,
        conns: &[(Uuid, String)],
        ttl: Duration,
    ) -> FabricResult<()> {
        let mut inner = self.lock();
        let until = Instant::now() + ttl;
        for (user, conn) in conns {
            inner
                .presence
                .entry(*user)
                .or_default()
                .insert(conn.clone(), until);
        }
        Ok(())
    }

    async fn presence_reap(&self) -> FabricResult<Vec<Uuid>> {
        let mut inner = self.lock();
        let now = Instant::now();
        let mut gone = Vec::new();
        inner.presence.retain(|user, conns| {
            conns.retain(|_, until| *until > now);
            if conns.is_empty() {
                gone.push(*user);
            }
            !conns.is_empty()
        });
        Ok(gone)
    }

    async fn online_count(&self) -> FabricResult<u64> {
        let inner = self.lock();
        let now = Instant::now();
        Ok(inner
            .presence
            .values()
            .filter(|c| c.values().any(|until| *until > now))
            .count() as u64)
    }

    async fn online(&self, users: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        let inner = self.lock();
        let now = Instant::now();
        Ok(users
            .iter()
            .filter(|u| {
                inner
                    .presence
                    .get(u)
                    .is_some_and(|c| c.values().any(|until| *until > now))
            })
            .copied()
            .collect())
    }

    async fn typing_start(
        &self,
        conversation: Uuid,
        user: Uuid,
        ttl: Duration,
    ) -> FabricResult<bool> {
        let mut inner = self.lock();
        let now = Instant::now();
        let typists = inner.typing.entry(conversation).or_default();
        typists.retain(|_, until| *until > now);
        Ok(typists.insert(user, now + ttl).is_none())
    }

    async fn typing_stop(&self, conversation: Uuid, user: Uuid) -> FabricResult<bool> {
        let mut inner = self.lock();
        let now = Instant::now();
        let Some(typists) = inner.typing.get_mut(&conversation) else {
            return Ok(false);
        };
        let was = typists.remove(&user).is_some_and(|until| until > now);
        if typists.is_empty() {
            inner.typing.remove(&conversation);
        }
        Ok(was)
    }

    async fn typing_list(&self, conversation: Uuid) -> FabricResult<Vec<Uuid>> {
        let inner = self.lock();
        let now = Instant::now();
        Ok(inner
            .typing
            .get(&conversation)
            .map(|t| {
                t.iter()
                    .filter(|(_, until)| **until > now)
                    .map(|(u, _)| *u)
                    .collect()
            })
            .unwrap_or_default())
    }
}
