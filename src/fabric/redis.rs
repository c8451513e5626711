use std::{collections::HashMap, time::Duration};

use anyhow::Context;
use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_redis::{Pool, Runtime};
use redis::Script;
use uuid::Uuid;

use super::{Fabric, FabricResult, Rate, RedisKeys, Rotation, Session, Verdict};

/// The fabric of a cluster: every node of one cluster shares the Redis and the prefix.
pub struct RedisFabric {
    /// Command connections; each call borrows one for the duration of the call.
    pool: Pool,
    /// The per-request session check and the limiters run on this one multiplexed,
    /// self-reconnecting connection instead of the pool: concurrent checks pipeline on one
    /// socket, and it skips the UNWATCH+PING round trip with which the pool recycles every
    /// checkout.
    hot: redis::aio::ConnectionManager,
    keys: RedisKeys,
    touch_session: Script,
    revoke_session: Script,
    rate_limit: Script,
    sockets_admit: Script,
    refresh_rotate: Script,
    presence_connect: Script,
    presence_disconnect: Script,
    presence_reap: Script,
    typing_start: Script,
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
            touch_session: Script::new(include_str!("lua/touch_session.lua")),
            revoke_session: Script::new(include_str!("lua/revoke_session.lua")),
            rate_limit: Script::new(include_str!("lua/rate_limit.lua")),
            sockets_admit: Script::new(include_str!("lua/sockets_admit.lua")),
            refresh_rotate: Script::new(include_str!("lua/refresh_rotate.lua")),
            presence_connect: Script::new(include_str!("lua/presence_connect.lua")),
            presence_disconnect: Script::new(include_str!("lua/presence_disconnect.lua")),
            presence_reap: Script::new(include_str!("lua/presence_reap.lua")),
            typing_start: Script::new(include_str!("lua/typing_start.lua")),
        };
        fabric
            .ping()
            .await
            .with_context(|| format!("Redis at {} does not answer", redact(url)))?;
        Ok(fabric)
    }

    pub fn keys(&self) -> &RedisKeys {
        &self.keys
    }

    async fn conn(&self) -> FabricResult<deadpool_redis::Connection> {
        Ok(self.pool.get().await?)
    }

    /// One call of the limiter script: (allowed, ms until the next hit fits).
    /// Runs on the hot connection: a limit is checked on every send, and the pool's
    /// checkout would add a round trip to each. After Redis went away the first call
    /// notices and is asked once more; at worst that takes one hit twice, which errs on
    /// the side of the limit.
    async fn run_limit(&self, key: &str, rate: Rate, cost: i64) -> FabricResult<(i64, i64)> {
        let interval = u64::try_from(rate.interval().as_millis()).unwrap_or(u64::MAX / 4);
        let key = self.keys.ratelimit(key);
        let mut c = self.hot.clone();
        let mut invocation = self.rate_limit.key(&key);
        invocation.arg(interval).arg(rate.burst).arg(cost);
        match invocation.invoke_async(&mut c).await {
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                Ok(invocation.invoke_async(&mut c).await?)
            }
            other => Ok(other?),
        }
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
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_ms(v: Option<&String>) -> Option<DateTime<Utc>> {
    v.and_then(|s| s.parse::<i64>().ok())
        .and_then(|m| Utc.timestamp_millis_opt(m).single())
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
    async fn create_session(&self, s: &Session, refresh_hash: &str) -> FabricResult<()> {
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
            .ignore()
            .query_async::<()>(&mut c)
            .await?;
        Ok(())
    }

    async fn rotate_refresh(
        &self,
        session_id: Uuid,
        presented: &str,
        next: &str,
        lifetime: Duration,
    ) -> FabricResult<Rotation> {
        let key = self.keys.session(session_id);
        let mut c = self.conn().await?;
        // The user's session list is a key of the script too, so it is read first.
        let user: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("user")
            .query_async(&mut c)
            .await?;
        let Some(user) = user.and_then(|u| u.parse::<Uuid>().ok()) else {
            return Ok(Rotation::Unknown);
        };
        let outcome: i64 = self
            .refresh_rotate
            .key(&key)
            .key(self.keys.sessions(user))
            .key(self.keys.rotated(session_id))
            .arg(presented)
            .arg(next)
            .arg(session_id.to_string())
            .arg(ttl_ms(lifetime))
            .arg(ms(Utc::now()))
            .invoke_async(&mut c)
            .await?;
        Ok(match outcome {
            1 => Rotation::Rotated { user },
            2 => Rotation::Reused { user },
            _ => Rotation::Unknown,
        })
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

    async fn live_sessions(&self, sessions: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        if sessions.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for s in sessions {
            pipe.cmd("EXISTS").arg(self.keys.session(*s));
        }
        let mut c = self.conn().await?;
        let exists: Vec<i64> = pipe.query_async(&mut c).await?;
        Ok(sessions
            .iter()
            .zip(exists)
            .filter(|(_, e)| *e == 1)
            .map(|(s, _)| *s)
            .collect())
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
        let ids: Vec<String> = redis::cmd("ZRANGE")
            .arg(&list)
            .arg(0)
            .arg(-1)
            .query_async(&mut c)
            .await?;
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

    async fn limit_take(&self, key: &str, rate: Rate) -> FabricResult<Verdict> {
        let (allowed, wait_ms) = self.run_limit(key, rate, 1).await?;
        Ok(if allowed == 1 {
            Verdict::Allowed
        } else {
            Verdict::Refused {
                retry_after: Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)),
            }
        })
    }

    async fn limit_give_back(&self, key: &str, rate: Rate) -> FabricResult<()> {
        self.run_limit(key, rate, -1).await.map(drop)
    }

    async fn limit_reset(&self, key: &str) -> FabricResult<()> {
        let mut c = self.conn().await?;
        let _: i64 = redis::cmd("DEL")
            .arg(self.keys.ratelimit(key))
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn sockets_admit(
        &self,
        user: Uuid,
        conn: &str,
        ttl: Duration,
        cap: usize,
    ) -> FabricResult<bool> {
        let now = Utc::now().timestamp_millis();
        let ttl_ms = ttl_ms(ttl);
        let mut c = self.conn().await?;
        let admitted: i64 = self
            .sockets_admit
            .key(self.keys.sockets(user))
            .arg(now)
            .arg(now + ttl_ms)
            .arg(conn)
            .arg(cap)
            .arg(ttl_ms)
            .invoke_async(&mut c)
            .await?;
        Ok(admitted == 1)
    }

    async fn sockets_release(&self, user: Uuid, conn: &str) -> FabricResult<()> {
        let mut c = self.conn().await?;
        let _: i64 = redis::cmd("ZREM")
            .arg(self.keys.sockets(user))
            .arg(conn)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    async fn sockets_heartbeat(&self, conns: &[(Uuid, String)], ttl: Duration) -> FabricResult<()> {
        if conns.is_empty() {
            return Ok(());
        }
        let ttl_ms = ttl_ms(ttl);
        let expiry = Utc::now().timestamp_millis() + ttl_ms;
        let mut pipe = redis::pipe();
        for (user, conn) in conns {
            let key = self.keys.sockets(*user);
            pipe.cmd("ZADD").arg(&key).arg(expiry).arg(conn).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    async fn presence_connect(&self, user: Uuid, conn: &str, ttl: Duration) -> FabricResult<bool> {
        let now = Utc::now().timestamp_millis();
        let ttl_ms = ttl_ms(ttl);
        let mut c = self.conn().await?;
        let first: i64 = self
            .presence_connect
            .key(self.keys.presence(user))
            .key(self.keys.presence_index())
            .arg(now)
            .arg(now + ttl_ms)
            .arg(conn)
            .arg(user.to_string())
            .arg(ttl_ms)
            .invoke_async(&mut c)
            .await?;
        Ok(first == 1)
    }

    async fn presence_disconnect(&self, user: Uuid, conn: &str) -> FabricResult<bool> {
        let mut c = self.conn().await?;
        let last: i64 = self
            .presence_disconnect
            .key(self.keys.presence(user))
            .key(self.keys.presence_index())
            .arg(Utc::now().timestamp_millis())
            .arg(conn)
            .arg(user.to_string())
            .invoke_async(&mut c)
            .await?;
        Ok(last == 1)
    }

    async fn presence_heartbeat(
        &self,
        conns: &[(Uuid, String)],
        ttl: Duration,
    ) -> FabricResult<()> {
        if conns.is_empty() {
            return Ok(());
        }
        let ttl_ms = ttl_ms(ttl);
        let expiry = Utc::now().timestamp_millis() + ttl_ms;
        let index = self.keys.presence_index();
        let mut pipe = redis::pipe();
        for (user, conn) in conns {
            let key = self.keys.presence(*user);
            pipe.cmd("ZADD").arg(&key).arg(expiry).arg(conn).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
            pipe.cmd("ZADD")
                .arg(&index)
                .arg("GT")
                .arg(expiry)
                .arg(user.to_string())
                .ignore();
        }
        let mut c = self.conn().await?;
        pipe.query_async::<()>(&mut c).await?;
        Ok(())
    }

    async fn presence_reap(&self) -> FabricResult<Vec<Uuid>> {
        let mut c = self.conn().await?;
        let gone: Vec<String> = self
            .presence_reap
            .key(self.keys.presence_index())
            .arg(Utc::now().timestamp_millis())
            .arg(self.keys.presence_prefix())
            .invoke_async(&mut c)
            .await?;
        Ok(gone.iter().filter_map(|u| u.parse().ok()).collect())
    }

    async fn online_count(&self) -> FabricResult<u64> {
        let mut c = self.conn().await?;
        Ok(redis::cmd("ZCARD")
            .arg(self.keys.presence_index())
            .query_async(&mut c)
            .await?)
    }

    async fn online(&self, users: &[Uuid]) -> FabricResult<Vec<Uuid>> {
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let now = Utc::now().timestamp_millis();
        let mut pipe = redis::pipe();
        for user in users {
            pipe.cmd("ZCOUNT")
                .arg(self.keys.presence(*user))
                .arg(now)
                .arg("+inf");
        }
        let mut c = self.conn().await?;
        let counts: Vec<i64> = pipe.query_async(&mut c).await?;
        Ok(users
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(u, _)| *u)
            .collect())
    }

    async fn typing_start(
        &self,
        conversation: Uuid,
        user: Uuid,
        ttl: Duration,
    ) -> FabricResult<bool> {
        let now = Utc::now().timestamp_millis();
        let ttl_ms = ttl_ms(ttl);
        let mut c = self.conn().await?;
        let added: i64 = self
            .typing_start
            .key(self.keys.typing(conversation))
            .arg(now)
            .arg(now + ttl_ms)
            .arg(user.to_string())
            .arg(ttl_ms)
            .invoke_async(&mut c)
            .await?;
        Ok(added == 1)
    }

    async fn typing_stop(&self, conversation: Uuid, user: Uuid) -> FabricResult<bool> {
        let key = self.keys.typing(conversation);
        let mut c = self.conn().await?;
        let (score, _): (Option<f64>, i64) = redis::pipe()
            .cmd("ZSCORE")
            .arg(&key)
            .arg(user.to_string())
            .cmd("ZREM")
            .arg(&key)
            .arg(user.to_string())
            .query_async(&mut c)
            .await?;
        let live = score.is_some_and(|s| s > Utc::now().timestamp_millis() as f64);
        Ok(live)
    }

    async fn typing_list(&self, conversation: Uuid) -> FabricResult<Vec<Uuid>> {
        let mut c = self.conn().await?;
        let users: Vec<String> = redis::cmd("ZRANGEBYSCORE")
            .arg(self.keys.typing(conversation))
            .arg(Utc::now().timestamp_millis())
            .arg("+inf")
            .query_async(&mut c)
            .await?;
        Ok(users.iter().filter_map(|u| u.parse().ok()).collect())
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}
