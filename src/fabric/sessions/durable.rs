use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use chrono::Utc;
use futures_util::{StreamExt, TryStreamExt, stream};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Cached, LegacySession, Rotate, Rotation, Session, SessionCache, SessionStore};
use crate::{
    fabric::{FabricError, FabricResult},
    metrics::names,
};

/// How many rotated-away refresh tokens a session remembers, to tell a copied token (the
/// session ends) from a forged one. A client refreshing every access-token lifetime (15
/// minutes by default) is covered for eight hours back.
const ROTATED_KEPT: i32 = 32;

/// Most dead rows one sign-in deletes.
const PRUNED_PER_SIGN_IN: i64 = 16;

/// Most sessions read back from PostgreSQL in one query.
const RELOAD_CHUNK: usize = 1000;

/// Most cache refills of one reload in flight at once.
const REFILLS_IN_FLIGHT: usize = 16;

/// Sessions kept in PostgreSQL and read through a [`SessionCache`] (see the module doc).
pub struct DurableSessions {
    /// The truth. `None` only in a fabric not yet given a database: sessions can then be
    /// created and checked in the cache alone (enough for a seeding tool), not rotated,
    /// listed or revoked en masse. Nodes always have one.
    db: Option<PgPool>,
    cache: Arc<dyn SessionCache>,
    /// How long a revocation mark lasts: as long as an access token of the session can
    /// still pass its signature and expiry checks.
    mark: Duration,
}

impl DurableSessions {
    pub fn new(cache: Arc<dyn SessionCache>, db: Option<PgPool>, mark: Duration) -> Self {
        Self { db, cache, mark }
    }

    fn db(&self) -> FabricResult<&PgPool> {
        self.db.as_ref().ok_or_else(|| {
            FabricError(anyhow::anyhow!(
                "device sessions need PostgreSQL (Fabric::with_durable_sessions)"
            ))
        })
    }

    /// Puts a session PostgreSQL just changed into the cache. The row is already the
    /// truth: a cache that cannot be written only costs the next check a miss.
    async fn refill(&self, session: &Session) {
        if let Err(e) = self.cache.fill(session).await {
            tracing::warn!(error = %e, session_id = %session.session_id, "session not cached; the next check reads PostgreSQL");
        }
    }

    /// Reads the sessions the cache did not know from PostgreSQL: caches the live ones
    /// (`seen_now`: as seen at this moment) and marks the others revoked, so that their
    /// next check does not ask again. Returns the live ones. After the cache lost
    /// everything, a node's heartbeat brings all its sockets' sessions here at once: they
    /// are read a chunk per query and cached a few dozen at a time, which the multiplexed
    /// Redis connection pipelines.
    async fn reload(&self, sessions: &[(Uuid, Uuid)], seen_now: bool) -> FabricResult<Vec<Uuid>> {
        let Some(db) = &self.db else {
            return Ok(Vec::new());
        };
        let now = Utc::now();
        let mut live = Vec::new();
        for chunk in sessions.chunks(RELOAD_CHUNK) {
            let ids: Vec<Uuid> = chunk.iter().map(|(_, sid)| *sid).collect();
            let rows: HashMap<Uuid, Session> = sqlx::query_as::<_, Session>(
                "select session_id, user_id, device, created_at, last_seen_at, expires_at \
                 from device_sessions where session_id = any($1) and expires_at > $2",
            )
            .bind(&ids)
            .bind(now)
            .fetch_all(db)
            .await?
            .into_iter()
            .map(|row| (row.session_id, row))
            .collect();
            let checks: Vec<_> = chunk
                .iter()
                .map(|&(user, sid)| {
                    let row = rows.get(&sid).filter(|r| r.user_id == user).cloned();
                    let row = row.map(|row| Session {
                        last_seen_at: if seen_now { now } else { row.last_seen_at },
                        ..row
                    });
                    self.recache(user, sid, row)
                })
                .collect();
            let checked: Vec<Option<Uuid>> = stream::iter(checks)
                .buffered(REFILLS_IN_FLIGHT)
                .try_collect()
                .await?;
            live.extend(checked.into_iter().flatten());
        }
        Ok(live)
    }

    /// Rotates the refresh token of a session PostgreSQL holds (see
    /// [`SessionStore::rotate_refresh`]).
    async fn rotate_stored(&self, session_id: Uuid, r: Rotate<'_>) -> FabricResult<Rotation> {
        let db = self.db()?;
        let now = Utc::now();
        let expires = chrono::Duration::from_std(r.lifetime)
            .ok()
            .and_then(|l| now.checked_add_signed(l))
            .unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);
        // Under READ COMMITTED a second concurrent update waits for the first's row lock,
        // then re-checks its WHERE against the new row: the hash no longer matches, so
        // exactly one use of a token rotates it.
        let rotated: Option<Session> = sqlx::query_as(
            "update device_sessions set refresh_hash = $3, \
               rotated_hashes = (array[refresh_hash] || rotated_hashes)[1:$4], \
               last_seen_at = $5, expires_at = $6 \
             where session_id = $1 and refresh_hash = $2 and expires_at > $5 \
             returning session_id, user_id, device, created_at, last_seen_at, expires_at",
        )
        .bind(session_id)
        .bind(r.presented)
        .bind(r.next)
        .bind(ROTATED_KEPT)
        .bind(now)
        .bind(expires)
        .fetch_optional(db)
        .await?;
        if let Some(s) = rotated {
            self.refill(&s).await;
            return Ok(Rotation::Rotated { user: s.user_id });
        }
        let known: Option<(Uuid, bool)> = sqlx::query_as(
            "select user_id, $2 = any(rotated_hashes) from device_sessions \
             where session_id = $1 and expires_at > $3",
        )
        .bind(session_id)
        .bind(r.presented)
        .bind(now)
        .fetch_optional(db)
        .await?;
        Ok(match known {
            Some((user, true)) => Rotation::Reused { user },
            _ => Rotation::Unknown,
        })
    }

    /// Stores a session that an earlier build kept in Redis alone, caches it, and drops
    /// the old keys, so that it cannot be adopted again after a revocation. Whether it is
    /// live now. Two nodes adopting one session at once both succeed: the second insert
    /// does nothing.
    async fn adopt(&self, legacy: LegacySession) -> FabricResult<bool> {
        let db = self.db()?;
        let s = &legacy.session;
        sqlx::query(
            "insert into device_sessions (session_id, user_id, device, refresh_hash, \
               rotated_hashes, created_at, last_seen_at, expires_at) \
             select $1, $2, $3, $4, ($5::text[])[1:$6], $7, $8, $9 \
             where exists (select 1 from users where user_id = $2) \
             on conflict (session_id) do nothing",
        )
        .bind(s.session_id)
        .bind(s.user_id)
        .bind(&s.device)
        .bind(&legacy.refresh_hash)
        .bind(&legacy.rotated)
        .bind(ROTATED_KEPT)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .execute(db)
        .await?;
        self.cache.drop_legacy(s.user_id, s.session_id).await?;
        tracing::info!(session_id = %s.session_id, "session of an earlier build moved into PostgreSQL");
        // Read back: the user may be gone, or the session revoked meanwhile.
        let stored: Option<Session> = sqlx::query_as(
            "select session_id, user_id, device, created_at, last_seen_at, expires_at \
             from device_sessions where session_id = $1 and user_id = $2 and expires_at > $3",
        )
        .bind(s.session_id)
        .bind(s.user_id)
        .bind(Utc::now())
        .fetch_optional(db)
        .await?;
        match stored {
            Some(row) => {
                if self.cache.fill(&row).await? {
                    return Ok(true);
                }
                // Marked revoked while it was being moved: the revocation may have
                // deleted the row before the insert above, so it is deleted again.
                sqlx::query("delete from device_sessions where session_id = $1")
                    .bind(s.session_id)
                    .execute(db)
                    .await?;
                Ok(false)
            }
            None => {
                self.cache
                    .forget(s.user_id, &[s.session_id], self.mark)
                    .await?;
                Ok(false)
            }
        }
    }

    /// Caches what PostgreSQL said of one session: its live row, or that it has none.
    /// The session id when it is live.
    async fn recache(
        &self,
        user: Uuid,
        sid: Uuid,
        row: Option<Session>,
    ) -> FabricResult<Option<Uuid>> {
        let live = match row {
            // False when revoked between the read and now: the mark won.
            Some(row) => self.cache.fill(&row).await?,
            None => match self.cache.legacy(sid).await? {
                Some(legacy) if legacy.session.user_id == user => self.adopt(legacy).await?,
                _ => {
                    self.cache.forget(user, &[sid], self.mark).await?;
                    false
                }
            },
        };
        let outcome = if live { "live" } else { "gone" };
        metrics::counter!(names::SESSION_CACHE_MISSES, "outcome" => outcome).increment(1);
        Ok(live.then_some(sid))
    }
}

#[async_trait]
impl SessionStore for DurableSessions {
    #[tracing::instrument(skip_all, fields(session_id = %s.session_id))]
    async fn create(&self, s: &Session, refresh_hash: &str) -> FabricResult<()> {
        let Some(db) = &self.db else {
            self.cache.fill(s).await?;
            return Ok(());
        };
        // Every sign-in deletes a few dead rows: sessions die at most as often as they are
        // created, so the table holds live ones and a bounded tail.
        sqlx::query(
            "with pruned as (delete from device_sessions where session_id in \
               (select session_id from device_sessions where expires_at <= $8 \
                order by expires_at limit $9 for update skip locked)) \
             insert into device_sessions \
               (session_id, user_id, device, refresh_hash, created_at, last_seen_at, expires_at) \
             values ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.session_id)
        .bind(s.user_id)
        .bind(&s.device)
        .bind(refresh_hash)
        .bind(s.created_at)
        .bind(s.last_seen_at)
        .bind(s.expires_at)
        .bind(Utc::now())
        .bind(PRUNED_PER_SIGN_IN)
        .execute(db)
        .await?;
        self.refill(s).await;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(session_id = %session_id))]
    async fn rotate_refresh(&self, session_id: Uuid, r: Rotate<'_>) -> FabricResult<Rotation> {
        let rotation = self.rotate_stored(session_id, r).await?;
        if rotation != Rotation::Unknown {
            return Ok(rotation);
        }
        // A device of an earlier build whose first request after the upgrade is a refresh.
        match self.cache.legacy(session_id).await? {
            Some(legacy) => {
                self.adopt(legacy).await?;
                self.rotate_stored(session_id, r).await
            }
            None => Ok(rotation),
        }
    }

    async fn touch(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool> {
        Ok(match self.cache.touch(user_id, session_id).await? {
            Cached::Live => true,
            Cached::Revoked => false,
            Cached::Unknown => !self
                .reload(&[(user_id, session_id)], true)
                .await?
                .is_empty(),
        })
    }

    async fn live(&self, sessions: &[(Uuid, Uuid)]) -> FabricResult<Vec<Uuid>> {
        let known = self.cache.probe(sessions).await?;
        let mut live = Vec::with_capacity(sessions.len());
        let mut unknown = Vec::new();
        for (pair, state) in sessions.iter().zip(known) {
            match state {
                Cached::Live => live.push(pair.1),
                Cached::Revoked => {}
                Cached::Unknown => unknown.push(*pair),
            }
        }
        if !unknown.is_empty() {
            live.extend(self.reload(&unknown, false).await?);
        }
        Ok(live)
    }

    async fn list(&self, user_id: Uuid) -> FabricResult<Vec<Session>> {
        let mut sessions: Vec<Session> = sqlx::query_as(
            "select session_id, user_id, device, created_at, last_seen_at, expires_at from device_sessions \
             where user_id = $1 and expires_at > $2 order by created_at, session_id",
        )
        .bind(user_id)
        .bind(Utc::now())
        .fetch_all(self.db()?)
        .await?;
        let ids: Vec<Uuid> = sessions.iter().map(|s| s.session_id).collect();
        // The row's last-seen time is that of the last refresh; the cache has the last
        // request's. Without the cache the list is still right, only coarser.
        match self.cache.last_seen(user_id, &ids).await {
            Ok(seen) => {
                for (s, seen) in sessions.iter_mut().zip(seen) {
                    s.last_seen_at = s.last_seen_at.max(seen.unwrap_or(s.last_seen_at));
                }
            }
            Err(e) => tracing::debug!(error = %e, "cached last-seen times unavailable"),
        }
        Ok(sessions)
    }

    async fn revoke(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool> {
        // The cache first, so that every node refuses the session from the moment a
        // revocation starts, as when sessions lived in Redis alone. Refills cannot undo it:
        // one that read the row before the delete below finds the mark. Should the delete
        // fail, the caller gets the error and the mark still refuses the session for its
        // lifetime; a retry completes it.
        let cached = self.cache.forget(user_id, &[session_id], self.mark).await?;
        let stored = match &self.db {
            Some(db) => {
                sqlx::query("delete from device_sessions where session_id = $1 and user_id = $2")
                    .bind(session_id)
                    .bind(user_id)
                    .execute(db)
                    .await?
                    .rows_affected()
                    > 0
            }
            None => false,
        };
        Ok(stored || cached > 0)
    }

    async fn revoke_all(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>> {
        let db = self.db()?;
        let now = Utc::now();
        // Marked before they are deleted, as in `revoke`.
        let listed: Vec<Uuid> =
            sqlx::query_scalar("select session_id from device_sessions where user_id = $1")
                .bind(user_id)
                .fetch_all(db)
                .await?;
        self.cache.forget(user_id, &listed, self.mark).await?;
        let ended: Vec<(Uuid, chrono::DateTime<Utc>)> = sqlx::query_as(
            "delete from device_sessions where user_id = $1 returning session_id, expires_at",
        )
        .bind(user_id)
        .fetch_all(db)
        .await?;
        // A sign-in between the two statements ends too.
        let late: Vec<Uuid> = ended
            .iter()
            .map(|(sid, _)| *sid)
            .filter(|sid| !listed.contains(sid))
            .collect();
        self.cache.forget(user_id, &late, self.mark).await?;
        Ok(ended
            .into_iter()
            .filter(|(_, expires)| *expires > now)
            .map(|(sid, _)| sid)
            .collect())
    }
}
