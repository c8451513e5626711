use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_redis::{Pool, Runtime};
use redis::Script;
use uuid::Uuid;

use super::{Fabric, FabricResult, RedisKeys, Session, Window};

/// Returns the session's owner and refreshes its last-seen time, without resurrecting a
/// key that has just expired (HSET on a missing key would create it).
const TOUCH_SESSION: &str = r"
local user = redis.call('HGET', KEYS[1], 'user')
if user then redis.call('HSET', KEYS[1], 'last_seen', ARGV[1]) end
return user";

/// Deletes a session only when it is listed under the user who asks.
const REVOKE_SESSION: &str = r"
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0";

/// Fixed window: the first hit sets the expiry, later hits only count.
const HIT_COUNTER: &str = r"
local c = redis.call('INCR', KEYS[1])
if c == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return {c, redis.call('PTTL', KEYS[1])}";

/// The fabric of a cluster: every node of one cluster shares the Redis and the prefix.
pub struct RedisFabric {
    /// Command connections; each call borrows one for the duration of the call.
    pool: Pool,
    /// The per-request session check runs on this one multiplexed, self-reconnecting
    /// connection instead of the pool: concurrent checks pipeline on one socket, and it
    /// skips the UNWATCH+PING round trip with which the pool recycles every checkout.
    hot: redis::aio::ConnectionManager,
    keys: RedisKeys,
    touch_session: Script,
    revoke_session: Script,
    hit_counter: Script,
}

impl RedisFabric {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let pool = deadpool_redis::Config::from_url(url)
            .builder()
            .context("REDIS_URL is not a valid Redis URL")?
            .max_size(32)
            .wait_timeout(Some(Duration::from_secs(2)))
            .create_timeout(Some(Duration::from_secs(2)))
            .recycle_timeout(Some(Duration::from_secs(2)))
            .runtime(Runtime::Tokio1)
            .build()
            .context("building the Redis pool")?;
        let hot = hot_connection(url).await?;
        let fabric = Self {
            pool,
            hot,
            keys: RedisKeys::new(prefix),
            touch_session: Script::new(TOUCH_SESSION),
            revoke_session: Script::new(REVOKE_SESSION),
            hit_counter: Script::new(HIT_COUNTER),
        };
        fabric.ping().await.with_context(|| format!("Redis at {} does not answer", redact(url)))?;
        Ok(fabric)
    }

    /// The command pool, shared with the event bus.
    pub fn pool(&self) -> deadpool_redis::Pool {
        self.pool.clone()
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    async fn conn(&self) -> FabricResult<deadpool_redis::Connection> {
        Ok(self.pool.get().await?)
    }
}

/// A multiplexed connection that reconnects by itself after Redis restarts, with the
/// same time limits as the pool.
async fn hot_connection(url: &str) -> anyhow::Result<redis::aio::ConnectionManager> {
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(2)))
        .set_max_delay(Duration::from_secs(2));
    redis::Client::open(url)
        .context("REDIS_URL is not a valid Redis URL")?
        .get_connection_manager_with_config(config)
        .await
        .with_context(|| format!("Redis at {} does not answer", redact(url)))
}

/// The URL without its password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: Option<&String>) -> Option<DateTime<Utc>> {
    v.and_then(|s| s.parse::<i64>().ok()).and_then(|m| Utc.timestamp_millis_opt(m).single())
}

#[async_trait]
impl Fabric for RedisFabric {
    fn kind(&self) -> &'static str {
        "redis"
    }

    async fn ping(&self) -> FabricResult<()> {
        let mut c = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(session_id = %s.session_id))]
    async fn create_session(&self, s: &Session) -> FabricResult<()> {
        let ttl_ms = (s.expires_at - Utc::now()).num_milliseconds().max(1);
        let key = self.keys.session(s.session_id);
        let list = self.keys.sessions(s.user_id);
        let mut c = self.conn().await?;
        redis::pipe()
            .atomic()
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
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn touch_session(&self, session_id: Uuid) -> FabricResult<Option<Uuid>> {
        let key = self.keys.session(session_id);
        let now = ms(Utc::now());
        let mut c = self.hot.clone();
        let user: Option<String> = match self
            .touch_session
            .key(&key)
            .arg(now)
            .invoke_async(&mut c)
            .await
        {
            // The first command after Redis went away is the one that notices; the manager
            // reconnects, and the (idempotent) check is asked once more, as the pool's
            // recycle check would have done.
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                self.touch_session
                    .key(&key)
                    .arg(now)
                    .invoke_async(&mut c)
                    .await?
            }
            other => other?,
        };
        Ok(user.and_then(|u| u.parse().ok()))
    }

    async fn list_sessions(&self, user_id: Uuid) -> FabricResult<Vec<Session>> {
        let list = self.keys.sessions(user_id);
        let mut c = self.conn().await?;
        let (members,): (Vec<(String, i64)>,) = redis::pipe()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&list)
            .arg("-inf")
            .arg(ms(Utc::now()))
            .ignore()
            .cmd("ZRANGE")
            .arg(&list)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut c)
            .await?;
        if members.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (sid, _) in &members {
            let sid: Uuid = sid.parse().context("malformed session id in Redis")?;
            pipe.cmd("HGETALL").arg(self.keys.session(sid));
        }
        let hashes: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
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

    async fn revoke_session(&self, user_id: Uuid, session_id: Uuid) -> FabricResult<bool> {
        let mut c = self.conn().await?;
        let removed: i64 = self
            .revoke_session
            .key(self.keys.sessions(user_id))
            .key(self.keys.session(session_id))
            .arg(session_id.to_string())
            .invoke_async(&mut c)
            .await?;
        Ok(removed == 1)
    }

    async fn revoke_all_sessions(&self, user_id: Uuid) -> FabricResult<Vec<Uuid>> {
        let list = self.keys.sessions(user_id);
        let mut c = self.conn().await?;
        let ids: Vec<String> = redis::cmd("ZRANGE").arg(&list).arg(0).arg(-1).query_async(&mut c).await?;
        let ids: Vec<Uuid> = ids.iter().filter_map(|s| s.parse().ok()).collect();
        let mut pipe = redis::pipe();
        pipe.atomic();
        for id in &ids {
            pipe.cmd("DEL").arg(self.keys.session(*id)).ignore();
        }
        pipe.cmd("DEL").arg(&list).ignore();
        pipe.query_async::<()>(&mut c).await?;
        Ok(ids)
    }

    async fn read_counter(&self, key: &str) -> FabricResult<Window> {
        let key = self.keys.ratelimit(key);
        let mut c = self.conn().await?;
        let (count, pttl): (Option<u64>, i64) =
            redis::pipe().cmd("GET").arg(&key).cmd("PTTL").arg(&key).query_async(&mut c).await?;
        Ok(window(count.unwrap_or(0), pttl))
    }

    async fn hit_counter(&self, key: &str, window_len: Duration) -> FabricResult<Window> {
        let mut c = self.conn().await?;
        let (count, pttl): (u64, i64) = self
            .hit_counter
            .key(self.keys.ratelimit(key))
            .arg(u64::try_from(window_len.as_millis()).unwrap_or(u64::MAX).max(1))
            .invoke_async(&mut c)
            .await?;
        Ok(window(count, pttl))
    }

    async fn reset_counter(&self, key: &str) -> FabricResult<()> {
        let mut c = self.conn().await?;
        let _: i64 = redis::cmd("DEL").arg(self.keys.ratelimit(key)).query_async(&mut c).await?;
        Ok(())
    }
}

fn window(count: u64, pttl_ms: i64) -> Window {
    Window { count, resets_in: Duration::from_millis(u64::try_from(pttl_ms).unwrap_or(0)) }
}
