use std::{collections::HashMap, time::Duration};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use redis::FromRedisValue;
use uuid::Uuid;

use super::{Cached, LegacySession, Session, SessionCache};
use crate::fabric::{
    FabricResult, RedisConn,
    redis::{from_ms, ms, now_ms},
    ttl_ms,
};

/// The cluster's session cache: `session:{user}:sid` hashes and `revoked:{user}:sid`
/// marks, both expiring by themselves.
pub(crate) struct RedisSessions(pub RedisConn);

fn cached(reply: i64) -> Cached {
    match reply {
        1 => Cached::Live,
        0 => Cached::Revoked,
        _ => Cached::Unknown,
    }
}

#[async_trait]
impl SessionCache for RedisSessions {
    async fn touch(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<Cached> {
        let keys = &self.0.keys;
        let reply: i64 = self
            .0
            .invoke_hot(
                self.0
                    .scripts
                    .touch_session
                    .key(keys.session(user_id, session_id))
                    .key(keys.session_revoked(user_id, session_id))
                    .arg(now_ms()),
            )
            .await?;
        Ok(cached(reply))
    }

    async fn probe(&self, sessions: &[(Uuid, Uuid)]) -> FabricResult<Vec<Cached>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.0.keys;
        // Sessions of many users: on a Redis Cluster their keys lie in many slots.
        let mut cmds = Vec::with_capacity(sessions.len() * 2);
        for (user, sid) in sessions {
            for key in [keys.session(*user, *sid), keys.session_revoked(*user, *sid)] {
                let mut exists = redis::cmd("EXISTS");
                exists.arg(key);
                cmds.push(exists);
            }
        }
        let exists = self
            .0
            .scatter(cmds)
            .await?
            .into_iter()
            .map(i64::from_redis_value)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(exists
            .chunks(2)
            .map(|e| match e {
                [1, _] => Cached::Live,
                [_, 1] => Cached::Revoked,
                _ => Cached::Unknown,
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(session_id = %s.session_id))]
    async fn fill(&self, s: &Session) -> FabricResult<bool> {
        let keys = &self.0.keys;
        let ttl = (s.expires_at - Utc::now()).num_milliseconds();
        if ttl <= 0 {
            return Ok(false);
        }
        let filled: i64 = self
            .0
            .invoke_hot(
                self.0
                    .scripts
                    .session_fill
                    .key(keys.session(s.user_id, s.session_id))
                    .key(keys.session_revoked(s.user_id, s.session_id))
                    .arg(&s.device)
                    .arg(ms(s.created_at))
                    .arg(ms(s.last_seen_at))
                    .arg(ms(s.expires_at))
                    .arg(ttl),
            )
            .await?;
        Ok(filled == 1)
    }

    async fn forget(
        &self,
        user_id: Uuid,
        sessions: &[Uuid],
        mark: Duration,
    ) -> FabricResult<usize> {
        if sessions.is_empty() {
            return Ok(0);
        }
        let keys = &self.0.keys;
        // One slot (the user's), one MULTI: a fill runs wholly before it (and its entry is
        // deleted here) or wholly after it (and finds the mark).
        let mut pipe = redis::pipe();
        pipe.atomic();
        for sid in sessions {
            pipe.cmd("SET")
                .arg(keys.session_revoked(user_id, *sid))
                .arg(1)
                .arg("PX")
                .arg(ttl_ms(mark))
                .ignore();
            pipe.cmd("DEL").arg(keys.session(user_id, *sid));
        }
        let deleted: Vec<i64> = self.0.query(&pipe).await?;
        Ok(deleted.iter().filter(|d| **d > 0).count())
    }

    async fn legacy(&self, session_id: Uuid) -> FabricResult<Option<LegacySession>> {
        let keys = &self.0.keys;
        // Each command names one key: legacy keys carry no hash tag, so in Redis Cluster
        // they may sit on different shards.
        let key = keys.legacy_session(session_id);
        let mut read = redis::pipe();
        read.cmd("HGETALL").arg(&key).cmd("PTTL").arg(&key);
        let (hash, pttl): (HashMap<String, String>, i64) = self.0.query(&read).await?;
        let owner = hash.get("user").and_then(|u| u.parse::<Uuid>().ok());
        let (Some(refresh), Some(user_id), true) = (hash.get("refresh"), owner, pttl > 0) else {
            return Ok(None);
        };
        let mut rotated = redis::pipe();
        rotated.cmd("SMEMBERS").arg(keys.legacy_rotated(session_id));
        let (rotated,): (Vec<String>,) = self.0.query(&rotated).await?;
        let now = Utc::now();
        let session = Session {
            session_id,
            user_id,
            device: hash.get("device").cloned().unwrap_or_default(),
            created_at: from_ms(hash.get("created")).unwrap_or(now),
            last_seen_at: from_ms(hash.get("last_seen")).unwrap_or(now),
            expires_at: now + chrono::Duration::milliseconds(pttl),
        };
        Ok(Some(LegacySession {
            session,
            refresh_hash: refresh.clone(),
            rotated,
        }))
    }

    async fn drop_legacy(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<()> {
        let keys = &self.0.keys;
        // Keys of several slots, without a hash tag.
        let mut del_session = redis::cmd("DEL");
        del_session.arg(keys.legacy_session(session_id));
        let mut del_rotated = redis::cmd("DEL");
        del_rotated.arg(keys.legacy_rotated(session_id));
        let mut unlist = redis::cmd("ZREM");
        unlist
            .arg(keys.legacy_sessions(user_id))
            .arg(session_id.to_string());
        self.0
            .scatter(vec![del_session, del_rotated, unlist])
            .await
            .map(drop)
    }

    async fn last_seen(
        &self,
        user_id: Uuid,
        sessions: &[Uuid],
    ) -> FabricResult<Vec<Option<DateTime<Utc>>>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for sid in sessions {
            pipe.cmd("HGET")
                .arg(self.0.keys.session(user_id, *sid))
                .arg("last_seen");
        }
        let seen: Vec<Option<String>> = self.0.query(&pipe).await?;
        Ok(seen.iter().map(|s| from_ms(s.as_ref())).collect())
    }
}
