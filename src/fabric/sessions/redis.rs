use std::collections::HashMap;

use anyhow::Context;
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use uuid::Uuid;

use super::{Rotate, Rotation, Session, SessionStore};
use crate::fabric::{
    FabricResult, RedisConn,
    redis::{from_ms, ms, now_ms},
    ttl_ms,
};

pub(crate) struct RedisSessions(pub RedisConn);

#[async_trait]
impl SessionStore for RedisSessions {
    #[tracing::instrument(skip_all, fields(session_id = %s.session_id))]
    async fn create(&self, s: &Session, refresh_hash: &str) -> FabricResult<()> {
        let keys = &self.0.keys;
        let ttl_ms = (s.expires_at - Utc::now()).num_milliseconds().max(1);
        let key = keys.session(s.session_id);
        let list = keys.sessions(s.user_id);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("HSET")
            .arg(&key)
            .arg("user")
            .arg(s.user_id.to_string())
            .arg("device")
            .arg(&s.device)
            .arg("created")
            .arg(ms(s.created_at))
            .arg("last_seen")
            .arg(ms(s.last_seen_at))
            .arg("refresh")
            .arg(refresh_hash)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ttl_ms)
            .ignore()
            .cmd("ZADD")
            .arg(&list)
            .arg(ms(s.expires_at))
            .arg(s.session_id.to_string())
            .ignore()
            // Expired members are dropped on read; this drops the set once all have expired.
            .cmd("PEXPIRE")
            .arg(&list)
            .arg(ttl_ms)
            .arg("GT")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&list)
            .arg(ttl_ms)
            .arg("NX")
            .ignore();
        self.0.query(&pipe).await
    }

    async fn rotate_refresh(&self, session_id: Uuid, r: Rotate<'_>) -> FabricResult<Rotation> {
        let keys = &self.0.keys;
        let key = keys.session(session_id);
        // The user's session list is a key of the script too, so it is read first.
        let mut read = redis::pipe();
        read.cmd("HGET").arg(&key).arg("user");
        let (user,): (Option<String>,) = self.0.query(&read).await?;
        let Some(user) = user.and_then(|u| u.parse::<Uuid>().ok()) else {
            return Ok(Rotation::Unknown);
        };
        let outcome: i64 = self
            .0
            .invoke(
                self.0
                    .scripts
                    .refresh_rotate
                    .key(&key)
                    .key(keys.sessions(user))
                    .key(keys.rotated(session_id))
                    .arg(r.presented)
                    .arg(r.next)
                    .arg(session_id.to_string())
                    .arg(ttl_ms(r.lifetime))
                    .arg(now_ms()),
            )
            .await?;
        Ok(match outcome {
            1 => Rotation::Rotated { user },
            2 => Rotation::Reused { user },
            _ => Rotation::Unknown,
        })
    }

    async fn touch(&self, session_id: Uuid) -> FabricResult<Option<Uuid>> {
        let user: Option<String> = self
            .0
            .invoke_hot(
                self.0
                    .scripts
                    .touch_session
                    .key(self.0.keys.session(session_id))
                    .arg(now_ms()),
            )
            .await?;
        Ok(user.and_then(|u| u.parse().ok()))
    }

    async fn live(&self, sessions: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for s in sessions {
            pipe.cmd("EXISTS").arg(self.0.keys.session(*s));
        }
        let exists: Vec<i64> = self.0.query(&pipe).await?;
        Ok(sessions
            .iter()
            .zip(exists)
            .filter(|(_, e)| *e == 1)
            .map(|(s, _)| *s)
            .collect())
    }

    async fn list(&self, user_id: Uuid) -> FabricResult<Vec<Session>> {
        let keys = &self.0.keys;
        let list = keys.sessions(user_id);
        let mut read = redis::pipe();
        read.cmd("ZREMRANGEBYSCORE")
            .arg(&list)
            .arg("-inf")
            .arg(now_ms())
            .ignore()
            .cmd("ZRANGE")
            .arg(&list)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let (members,): (Vec<(String, i64)>,) = self.0.query(&read).await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (sid, _) in &members {
            let sid: Uuid = sid.parse().context("malformed session id in Redis")?;
            pipe.cmd("HGETALL").arg(keys.session(sid));
        }
        let hashes: Vec<HashMap<String, String>> = self.0.query(&pipe).await?;
        let mut sessions: Vec<Session> = members
            .iter()
            .zip(hashes)
            .filter(|(_, h)| !h.is_empty())
            .filter_map(|((sid, expiry), h)| {
                Some(Session {
                    session_id: sid.parse().ok()?,
                    user_id,
                    device: h.get("device").cloned().unwrap_or_default(),
                    created_at: from_ms(h.get("created"))?,
                    last_seen_at: from_ms(h.get("last_seen"))?,
                    expires_at: Utc.timestamp_millis_opt(*expiry).single()?,
                })
            })
            .collect();
        sessions.sort_by_key(|s| s.created_at);
        Ok(sessions)
    }

    async fn revoke(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool> {
        let removed: i64 = self
            .0
            .invoke(
                self.0
                    .scripts
                    .revoke_session
                    .key(self.0.keys.sessions(user_id))
                    .key(self.0.keys.session(session_id))
                    .arg(session_id.to_string()),
            )
            .await?;
        Ok(removed == 1)
    }

    async fn revoke_all(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>> {
        let keys = &self.0.keys;
        let list = keys.sessions(user_id);
        let mut read = redis::pipe();
        read.cmd("ZRANGE").arg(&list).arg(0).arg(-1);
        let (ids,): (Vec<String>,) = self.0.query(&read).await?;
        let ids: Vec<Uuid> = ids.iter().filter_map(|s| s.parse().ok()).collect();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for id in &ids {
            pipe.cmd("DEL").arg(keys.session(*id)).ignore();
        }
        pipe.cmd("DEL").arg(&list).ignore();
        self.0.query::<()>(&pipe).await?;
        Ok(ids)
    }
}
