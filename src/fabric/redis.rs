//! The Redis connections every store of a cluster's fabric shares.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use chrono::{DateTime, TimeZone, Utc};
use deadpool_redis::{Pool, Runtime};
use redis::{FromRedisValue, Script, ScriptInvocation};

use super::{FabricResult, RedisKeys};

/// Every Lua script of the fabric (`lua/*.lua`, each documenting its KEYS and ARGV),
/// hashed once per node; calls send the hash and the script only when Redis lacks it.
pub(crate) struct Scripts {
    pub touch_session: Script,
    pub session_fill: Script,
    pub rate_limit: Script,
    pub sockets_admit: Script,
    pub typing_start: Script,
    pub presence_connect: Script,
    pub presence_disconnect: Script,
    pub presence_reap: Script,
}

impl Scripts {
    fn load() -> Self {
        Self {
            touch_session: Script::new(include_str!("lua/touch_session.lua")),
            session_fill: Script::new(include_str!("lua/session_fill.lua")),
            rate_limit: Script::new(include_str!("lua/rate_limit.lua")),
            sockets_admit: Script::new(include_str!("lua/sockets_admit.lua")),
            typing_start: Script::new(include_str!("lua/typing_start.lua")),
            presence_connect: Script::new(include_str!("lua/presence_connect.lua")),
            presence_disconnect: Script::new(include_str!("lua/presence_disconnect.lua")),
            presence_reap: Script::new(include_str!("lua/presence_reap.lua")),
        }
    }
}

/// Cheap to clone: the pool, the multiplexed connection and the scripts are shared.
#[derive(Clone)]
pub(crate) struct RedisConn {
    /// Command connections; each call borrows one for the duration of the call.
    pool: Pool,
    /// The per-request session check and the limiters run on this one multiplexed,
    /// self-reconnecting connection instead of the pool: concurrent checks pipeline on one
    /// socket, and it skips the UNWATCH+PING round trip with which the pool recycles every
    /// checkout.
    hot: redis::aio::ConnectionManager,
    pub keys: RedisKeys,
    pub scripts: Arc<Scripts>,
}

impl RedisConn {
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
        let conn = Self {
            pool,
            hot: hot_connection(url).await?,
            keys: RedisKeys::new(prefix),
            scripts: Arc::new(Scripts::load()),
        };
        conn.ping()
            .await
            .with_context(|| format!("Redis at {} does not answer", redact(url)))?;
        Ok(conn)
    }

    pub async fn pooled(&self) -> FabricResult<deadpool_redis::Connection> {
        Ok(self.pool.get().await?)
    }

    pub async fn ping(&self) -> FabricResult<()> {
        let mut c = self.pooled().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Runs an idempotent (or harmlessly repeatable) script on the hot connection. The
    /// first command after Redis went away is the one that notices; the manager
    /// reconnects, and the script is asked once more, as the pool's recycle check would
    /// have done.
    pub async fn invoke_hot<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> FabricResult<T> {
        let mut c = self.hot.clone();
        match invocation.invoke_async(&mut c).await {
            Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                Ok(invocation.invoke_async(&mut c).await?)
            }
            other => Ok(other?),
        }
    }

    /// Runs a script on a pooled connection.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> FabricResult<T> {
        let mut c = self.pooled().await?;
        Ok(invocation.invoke_async(&mut c).await?)
    }

    /// Runs a pipeline (or a single command) on a pooled connection.
    pub async fn query<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> FabricResult<T> {
        let mut c = self.pooled().await?;
        Ok(pipe.query_async(&mut c).await?)
    }

    /// Renews `(owner, member)` leases in one round trip, each in the owner's ZSET of
    /// member → lease end, re-creating entries Redis lost. `index` also raises the owner's
    /// latest lease end in an index ZSET.
    pub async fn renew_leases(
        &self,
        leases: &[(uuid::Uuid, String)],
        ttl: Duration,
        key: impl Fn(uuid::Uuid) -> String,
        index: Option<&str>,
    ) -> FabricResult<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let ttl_ms = ttl_ms(ttl);
        let expiry = now_ms() + ttl_ms;
        let mut pipe = redis::pipe();
        for (owner, member) in leases {
            let key = key(*owner);
            pipe.cmd("ZADD").arg(&key).arg(expiry).arg(member).ignore();
            pipe.cmd("PEXPIRE").arg(&key).arg(ttl_ms).ignore();
            if let Some(index) = index {
                pipe.cmd("ZADD")
                    .arg(index)
                    .arg("GT")
                    .arg(expiry)
                    .arg(owner.to_string())
                    .ignore();
            }
        }
        self.query(&pipe).await
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

pub(crate) fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub(crate) fn now_ms() -> i64 {
    ms(Utc::now())
}

pub(crate) fn from_ms(v: Option<&String>) -> Option<DateTime<Utc>> {
    v.and_then(|s| s.parse::<i64>().ok())
        .and_then(|m| Utc.timestamp_millis_opt(m).single())
}

/// Scripts and PEXPIRE take milliseconds; a lease is at least one.
pub(crate) fn ttl_ms(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_millis())
        .unwrap_or(i64::MAX / 4)
        .max(1)
}
