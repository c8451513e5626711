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

/// Where a cluster's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One Redis server (`REDIS_URL`).
    Single(String),
    /// A Redis Cluster, found from these seed nodes (`REDIS_CLUSTER_URLS`).
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// From the two settings; naming both is a mistake, not a preference.
    pub fn from_settings(url: Option<&str>, cluster: Option<&str>) -> Result<Option<Self>, String> {
        let seeds: Option<Vec<String>> = cluster.map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        });
        match (url.filter(|u| !u.trim().is_empty()), seeds) {
            (Some(_), Some(_)) => Err(
                "REDIS_URL and REDIS_CLUSTER_URLS are both set: give REDIS_URL for one Redis \
                 or REDIS_CLUSTER_URLS for a Redis Cluster, not both"
                    .to_owned(),
            ),
            (None, Some(seeds)) if seeds.is_empty() => {
                Err("REDIS_CLUSTER_URLS names no node".to_owned())
            }
            (None, Some(seeds)) => Ok(Some(Self::Cluster(seeds))),
            (Some(url), None) => Ok(Some(Self::Single(url.trim().to_owned()))),
            (None, None) => Ok(None),
        }
    }

    /// "redis" or "redis-cluster", for logs and `/readyz`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Single(_) => "redis",
            Self::Cluster(_) => "redis-cluster",
        }
    }

    /// The addresses without passwords, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Single(url) => redact(url),
            Self::Cluster(seeds) => seeds
                .iter()
                .map(|s| redact(s))
                .collect::<Vec<_>>()
                .join(","),
        }
    }

    /// A Redis Cluster client; `push` receives what subscriptions carry (RESP3).
    pub(crate) fn cluster_client(
        seeds: &[String],
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> anyhow::Result<redis::cluster::ClusterClient> {
        let mut builder = redis::cluster::ClusterClientBuilder::new(seeds.to_vec())
            .connection_timeout(Duration::from_secs(2))
            .response_timeout(Duration::from_secs(2))
            // A failover takes the cluster's node timeout plus an election; commands for the
            // failed master's slots retry through it rather than failing at once.
            .retries(8)
            .min_retry_wait(50)
            .max_retry_wait(1000);
        if let Some(push) = push {
            builder = builder
                .use_protocol(redis::ProtocolVersion::RESP3)
                .push_sender(push);
        }
        builder
            .build()
            .context("REDIS_CLUSTER_URLS holds an invalid Redis URL")
    }
}

/// How often a cluster connection is checked, and after how many failed checks in a row
/// it is replaced.
const CLUSTER_CHECK_EVERY: Duration = Duration::from_secs(1);
const CLUSTER_CHECK_FAILURES: u32 = 3;

/// A Redis Cluster connection that replaces itself when it stops answering. Under load,
/// a cluster connection that lived through a failover was seen to time out every command
/// for minutes after the cluster had healed; a fresh one, built from the seeds, finds the
/// new topology at once. A watchdog pings every master each second and, after a few
/// failures in a row, swaps in a fresh connection (and keeps trying while the cluster is
/// still electing).
#[derive(Clone)]
pub(crate) struct ClusterHandle(Arc<ClusterShared>);

struct ClusterShared {
    client: redis::cluster::ClusterClient,
    conn: std::sync::RwLock<redis::cluster_async::ClusterConnection>,
}

impl ClusterHandle {
    pub async fn connect(seeds: &[String]) -> anyhow::Result<Self> {
        let client = RedisTarget::cluster_client(seeds, None)?;
        let conn = client.get_async_connection().await.with_context(|| {
            format!(
                "Redis Cluster at {} does not answer",
                RedisTarget::Cluster(seeds.to_vec()).describe()
            )
        })?;
        let shared = Arc::new(ClusterShared {
            client,
            conn: std::sync::RwLock::new(conn),
        });
        tokio::spawn(watch_cluster(Arc::downgrade(&shared)));
        Ok(Self(shared))
    }

    /// The current connection (a cheap clone of its handle).
    pub fn get(&self) -> redis::cluster_async::ClusterConnection {
        self.0
            .conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Pings every master through the shared connection until the handle is dropped, and
/// replaces the connection after [`CLUSTER_CHECK_FAILURES`] failed pings in a row.
async fn watch_cluster(shared: std::sync::Weak<ClusterShared>) {
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(CLUSTER_CHECK_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut conn = shared
            .conn
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if ping_masters(&mut conn).await {
            failures = 0;
            continue;
        }
        failures += 1;
        if failures < CLUSTER_CHECK_FAILURES {
            continue;
        }
        match tokio::time::timeout(Duration::from_secs(2), shared.client.get_async_connection())
            .await
        {
            Ok(Ok(fresh)) => {
                *shared
                    .conn
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = fresh;
                failures = 0;
                metrics::counter!(crate::metrics::names::REDIS_RECONNECTS).increment(1);
                tracing::warn!("Redis Cluster connection stopped answering; replaced it");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "Redis Cluster not reachable yet"),
            Err(_) => tracing::warn!("Redis Cluster not reachable yet: connecting timed out"),
        }
    }
}

/// Whether every master answers a PING within a second.
pub(crate) async fn ping_masters(conn: &mut redis::cluster_async::ClusterConnection) -> bool {
    use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
    let ping = conn.route_command(
        redis::cmd("PING"),
        RoutingInfo::MultiNode((
            MultipleNodeRoutingInfo::AllMasters,
            Some(ResponsePolicy::AllSucceeded),
        )),
    );
    matches!(
        tokio::time::timeout(Duration::from_secs(1), ping).await,
        Ok(Ok(_))
    )
}

/// Cheap to clone: the connections and the scripts are shared.
#[derive(Clone)]
pub(crate) struct RedisConn {
    commands: Commands,
    pub keys: RedisKeys,
    pub scripts: Arc<Scripts>,
}

#[derive(Clone)]
enum Commands {
    Single {
        /// Command connections; each call borrows one for the duration of the call.
        pool: Pool,
        /// The per-request session check and the limiters run on this one multiplexed,
        /// self-reconnecting connection instead of the pool: concurrent checks pipeline on
        /// one socket, and it skips the UNWATCH+PING round trip with which the pool recycles
        /// every checkout.
        hot: redis::aio::ConnectionManager,
    },
    /// Multiplexed connections to every master, routed by hash slot, following the
    /// cluster's topology through failovers and resharding.
    Cluster(ClusterHandle),
}

impl RedisConn {
    pub async fn connect(target: &RedisTarget, prefix: &str) -> anyhow::Result<Self> {
        let commands = match target {
            RedisTarget::Single(url) => Commands::Single {
                pool: deadpool_redis::Config::from_url(url)
                    .builder()
                    .context("REDIS_URL is not a valid Redis URL")?
                    .max_size(32)
                    .wait_timeout(Some(Duration::from_secs(2)))
                    .create_timeout(Some(Duration::from_secs(2)))
                    .recycle_timeout(Some(Duration::from_secs(2)))
                    .runtime(Runtime::Tokio1)
                    .build()
                    .context("building the Redis pool")?,
                hot: hot_connection(url).await?,
            },
            RedisTarget::Cluster(seeds) => Commands::Cluster(ClusterHandle::connect(seeds).await?),
        };
        let conn = Self {
            commands,
            keys: RedisKeys::new(prefix),
            scripts: Arc::new(Scripts::load()),
        };
        conn.ping()
            .await
            .with_context(|| format!("Redis at {} does not answer", target.describe()))?;
        Ok(conn)
    }

    pub async fn ping(&self) -> FabricResult<()> {
        let _: String = self.run(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Runs one command.
    async fn run<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> FabricResult<T> {
        Ok(match &self.commands {
            Commands::Single { pool, .. } => cmd.query_async(&mut pool.get().await?).await?,
            Commands::Cluster(c) => cmd.query_async(&mut c.get()).await?,
        })
    }

    /// Runs an idempotent (or harmlessly repeatable) script on the hot connection. The
    /// first command after Redis went away is the one that notices; the manager
    /// reconnects, and the script is asked once more, as the pool's recycle check would
    /// have done. A cluster connection retries by itself.
    pub async fn invoke_hot<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> FabricResult<T> {
        match &self.commands {
            Commands::Single { hot, .. } => {
                let mut c = hot.clone();
                match invocation.invoke_async(&mut c).await {
                    Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                        Ok(invocation.invoke_async(&mut c).await?)
                    }
                    other => Ok(other?),
                }
            }
            Commands::Cluster(c) => Ok(invocation.invoke_async(&mut c.get()).await?),
        }
    }

    /// Runs a script; its keys share one hash slot.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> FabricResult<T> {
        Ok(match &self.commands {
            Commands::Single { pool, .. } => {
                invocation.invoke_async(&mut pool.get().await?).await?
            }
            Commands::Cluster(c) => invocation.invoke_async(&mut c.get()).await?,
        })
    }

    /// Runs a pipeline (or a single command) whose keys share one hash slot.
    pub async fn query<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> FabricResult<T> {
        Ok(match &self.commands {
            Commands::Single { pool, .. } => pipe.query_async(&mut pool.get().await?).await?,
            Commands::Cluster(c) => pipe.query_async(&mut c.get()).await?,
        })
    }

    /// Runs commands whose keys (each command's first argument) may lie in different hash
    /// slots, and answers their replies in order: one pipeline on a single Redis, one per
    /// slot, all at once, on a Redis Cluster.
    pub async fn scatter(&self, cmds: Vec<redis::Cmd>) -> FabricResult<Vec<redis::Value>> {
        match &self.commands {
            Commands::Single { .. } => {
                let mut pipe = redis::pipe();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                self.query(&pipe).await
            }
            Commands::Cluster(conn) => Ok(scatter_cluster(&conn.get(), cmds).await?),
        }
    }

    /// Renews `(owner, member)` leases in one round trip, each in the owner's ZSET of
    /// member → lease end, re-creating entries Redis lost. `index` also raises the owner's
    /// latest lease end in the index ZSET it names (in the owner's key's hash slot).
    pub async fn renew_leases(
        &self,
        leases: &[(uuid::Uuid, String)],
        ttl: Duration,
        key: impl Fn(uuid::Uuid) -> String,
        index: Option<&(dyn Fn(uuid::Uuid) -> String + Sync)>,
    ) -> FabricResult<()> {
        if leases.is_empty() {
            return Ok(());
        }
        let ttl_ms = ttl_ms(ttl);
        let expiry = now_ms() + ttl_ms;
        let mut cmds = Vec::with_capacity(leases.len() * 3);
        for (owner, member) in leases {
            let key = key(*owner);
            let mut add = redis::cmd("ZADD");
            add.arg(&key).arg(expiry).arg(member);
            let mut expire = redis::cmd("PEXPIRE");
            expire.arg(&key).arg(ttl_ms);
            cmds.extend([add, expire]);
            if let Some(index) = index {
                let mut raise = redis::cmd("ZADD");
                raise
                    .arg(index(*owner))
                    .arg("GT")
                    .arg(expiry)
                    .arg(owner.to_string());
                cmds.push(raise);
            }
        }
        self.scatter(cmds).await.map(drop)
    }
}

/// [`RedisConn::scatter`] on a Redis Cluster. A pipeline must stay within one slot there;
/// the cluster connection multiplexes the per-slot pipelines of one master on one socket,
/// so they still travel together.
pub(crate) async fn scatter_cluster(
    conn: &redis::cluster_async::ClusterConnection,
    cmds: Vec<redis::Cmd>,
) -> redis::RedisResult<Vec<redis::Value>> {
    use std::collections::HashMap;

    use redis::cluster_routing::Slot;

    let n = cmds.len();
    let mut by_slot: HashMap<Slot, (Vec<usize>, redis::Pipeline)> = HashMap::new();
    for (i, cmd) in cmds.into_iter().enumerate() {
        let key = match cmd.args_iter().nth(1) {
            Some(redis::Arg::Simple(key)) => key.to_vec(),
            _ => Vec::new(),
        };
        let (at, pipe) = by_slot
            .entry(Slot::for_key(&key))
            .or_insert_with(|| (Vec::new(), redis::pipe()));
        at.push(i);
        pipe.add_command(cmd);
    }
    let replies =
        futures_util::future::try_join_all(by_slot.into_values().map(|(at, pipe)| async move {
            let replies: Vec<redis::Value> = pipe.query_async(&mut conn.clone()).await?;
            redis::RedisResult::Ok((at, replies))
        }))
        .await?;
    let mut out = vec![redis::Value::Nil; n];
    for (at, values) in replies {
        for (i, v) in at.into_iter().zip(values) {
            out[i] = v;
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    use super::RedisTarget;

    #[test]
    fn one_redis_setting_picks_the_target_and_both_are_refused_by_name() {
        assert_eq!(
            RedisTarget::from_settings(Some("redis://r:6379"), None),
            Ok(Some(RedisTarget::Single("redis://r:6379".into())))
        );
        assert_eq!(
            RedisTarget::from_settings(None, Some("redis://a:7001, redis://b:7002,")),
            Ok(Some(RedisTarget::Cluster(vec![
                "redis://a:7001".into(),
                "redis://b:7002".into()
            ])))
        );
        assert_eq!(RedisTarget::from_settings(None, None), Ok(None));
        let both = RedisTarget::from_settings(Some("redis://r"), Some("redis://a")).unwrap_err();
        assert!(
            both.contains("REDIS_URL") && both.contains("REDIS_CLUSTER_URLS"),
            "{both}"
        );
        let empty = RedisTarget::from_settings(None, Some(" , ")).unwrap_err();
        assert!(empty.contains("REDIS_CLUSTER_URLS"), "{empty}");
    }

    #[test]
    fn passwords_stay_out_of_descriptions() {
        let t = RedisTarget::Cluster(vec![
            "redis://:secret@a:7001".into(),
            "redis://b:7002".into(),
        ]);
        assert_eq!(t.describe(), "redis://…@a:7001,redis://b:7002");
    }
}
