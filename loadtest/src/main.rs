//! chatty-load: drives a Chatty cluster (or any server speaking its API) with many
//! Socket.IO clients and proves delivery while it measures.
//!
//! Every message carries its send time; every receiving device checks that each message of
//! its conversations arrives exactly once and in `seq` order. The run is bounded in count
//! and time, and targets loopback addresses unless `--allow-remote` is given.
//!
//! With `--chaos-*` (or `--resume`) devices behave like real clients across failures: they
//! reconnect, resume with `sync` from the last seq they hold, and retry unacknowledged sends
//! with the same `client_msg_id`; the check then holds at the application level (each seq
//! surfaced once) and transport-level redeliveries are counted apart.
//!
//! With `--notifications` every device also holds a `/notifications` socket and measures
//! how long a message takes to show up as a `notification` event (see `notifications.rs`).

mod aftermath;
mod chaos;
mod device;
mod hostile;
mod notifications;
mod resources;
mod seed;
mod stats;
mod storm;

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use chatty_testkit::{SioClient, SioSender};
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use uuid::Uuid;

use crate::{
    device::DeviceStats,
    resources::Probes,
    stats::{Report, SEND_RETRIES},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Transport {
    Websocket,
    Polling,
}

#[derive(Debug, Parser)]
#[command(
    name = "chatty-load",
    about = "Load generator and delivery checker for Chatty"
)]
pub struct Args {
    /// Base URL for REST calls (a node or the balancer).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    pub url: String,

    /// Socket.IO targets, comma-separated; devices are spread over them round-robin.
    /// Defaults to `--url`.
    #[arg(long, value_delimiter = ',')]
    pub nodes: Vec<String>,

    /// Where to read each node's `/metrics` (memory, connections, CPU), comma-separated.
    /// Defaults to `--nodes`; give the nodes themselves when `--nodes` is a balancer.
    #[arg(long, value_delimiter = ',')]
    pub metrics: Vec<String>,

    /// Users to create.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(2..=200_000))]
    pub users: u32,

    /// Connected devices per user (each its own login and socket).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub devices: u32,

    /// Members per group conversation; users are split into groups of this size.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub group_size: u32,

    /// Total messages per second across all senders.
    #[arg(long, conflicts_with = "rate_per_user")]
    pub rate: Option<f64>,

    /// Messages per second per user.
    #[arg(long)]
    pub rate_per_user: Option<f64>,

    /// Message size in bytes (at least the timestamp header).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(24..=4000))]
    pub size: u32,

    /// Seconds of sending.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,

    /// Seconds over which the send rate climbs to its target.
    #[arg(long, default_value_t = 1)]
    pub ramp_up: u64,

    /// Socket transport.
    #[arg(long, value_enum, default_value_t = Transport::Websocket)]
    transport: Transport,

    /// Sockets connecting at once during the connect storm.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Connect every device, hold the connections this many seconds, measure memory, send
    /// nothing.
    #[arg(long)]
    pub idle: Option<u64>,

    /// Seed users, sessions and groups straight into PostgreSQL and Redis instead of through
    /// the API (fast for thousands of users). Needs the cluster's DATABASE_URL, REDIS_URL,
    /// CHATTY_REDIS_PREFIX and JWT_SECRET.
    #[arg(long)]
    pub seed_sql: bool,

    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Seed nodes of the cluster's Redis Cluster, comma-separated (what the nodes were given
    /// as REDIS_CLUSTER_URLS). When given, `--seed-sql` and the Redis figures use it, not
    /// REDIS_URL (which deploy/local/env.sh always sets).
    #[arg(long, env = "REDIS_CLUSTER_URLS", value_delimiter = ',')]
    pub redis_cluster_urls: Vec<String>,

    #[arg(long, env = "CHATTY_REDIS_PREFIX", default_value = "chatty:")]
    pub redis_prefix: String,

    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Seconds to wait after the last send for deliveries still in flight.
    #[arg(long, default_value_t = 5)]
    pub drain: u64,

    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Allow targets outside the loopback range.
    #[arg(long)]
    pub allow_remote: bool,

    /// Behave like real clients across failures: reconnect, resume with `sync`, retry
    /// unacknowledged sends with the same client_msg_id. On with any --chaos option.
    #[arg(long)]
    pub resume: bool,

    /// Crash (SIGKILL) a random node every SECS seconds of sending and start it again,
    /// through the launcher's `kill-node K` and `restart-node K`.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub chaos_kill_every: Option<u64>,

    /// Seconds a killed node stays down before it is restarted.
    #[arg(long, value_name = "SECS", default_value_t = 1.0)]
    pub chaos_down: f64,

    /// Crash and restart Redis once, this many seconds into sending, through the
    /// launcher's `restart-redis` (a cluster started with `--redis-port`).
    #[arg(long, value_name = "SECS")]
    pub chaos_restart_redis_at: Option<u64>,

    /// With --chaos-restart-redis-at: Redis comes back with no data at all (the launcher's
    /// `restart-redis --empty`), as a Redis without persistence does after a crash.
    #[arg(long, requires = "chaos_restart_redis_at")]
    pub chaos_redis_empty: bool,

    /// Fail over one master of the cluster's Redis Cluster once, this many seconds into
    /// sending, through the launcher's `kill-redis-master K` (a cluster started with
    /// `--redis-cluster`): the master is killed, its replica takes over, writes not yet
    /// replicated are lost.
    #[arg(long, value_name = "SECS", conflicts_with = "chaos_restart_redis_at")]
    pub chaos_redis_failover_at: Option<u64>,

    /// Which shard's master --chaos-redis-failover-at kills, 1 to 3 (default: one at random).
    #[arg(long, value_name = "K", requires = "chaos_redis_failover_at",
          value_parser = clap::value_parser!(u32).range(1..=3))]
    pub chaos_redis_master: Option<u32>,

    /// The nodes' presence lease (their CHATTY_PRESENCE_TTL_MS): after the last failure a
    /// chaos run injects, every user with a connected device must show online within it.
    #[arg(
        long,
        env = "CHATTY_PRESENCE_TTL_MS",
        value_name = "MS",
        default_value_t = 30_000
    )]
    pub presence_ttl_ms: u64,

    /// The local launcher that --chaos options drive.
    #[arg(
        long,
        env = "CHATTY_CLUSTER_CTL",
        default_value = "deploy/local/cluster.sh"
    )]
    pub cluster_ctl: PathBuf,

    /// Kill (SIGKILL) one node once, this many seconds into sending, and leave it down: its
    /// sockets reconnect to the others all at once (a reconnect storm; see `--storm`).
    #[arg(long, value_name = "SECS", conflicts_with = "chaos_kill_every")]
    pub chaos_kill_node_at: Option<u64>,

    /// Which node --chaos-kill-node-at kills, from 1 (default: one at random).
    #[arg(long, value_name = "K", requires = "chaos_kill_node_at",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub chaos_kill_node: Option<u32>,

    /// Restart every node in turn this many seconds into sending, through the launcher's
    /// `rolling-restart` (SIGTERM, wait for the exit, start, wait until ready; node after
    /// node). Sending goes on until it is over, however long `--duration` is.
    #[arg(long, value_name = "SECS", conflicts_with = "chaos_kill_every")]
    pub chaos_rolling_restart_at: Option<u64>,

    /// Report the reconnect storm: the sockets that dropped within 2 s of the kill, how
    /// long until 99% and all of them were back and resumed, and the latency of the other
    /// users' sends issued in the `--storm-window` seconds from the kill. For the load
    /// processes that share a storm without killing the node themselves (with
    /// --chaos-kill-node-at it is on). Turns resume on.
    #[arg(long)]
    pub storm: bool,

    /// With --storm: the node is killed (by another load process) this many seconds into
    /// sending. The storm's clock starts at the kill time the killing process writes into
    /// --ready-dir, or failing that at this estimate, not at this process's first drop,
    /// which an overloaded machine may cause earlier by missed heartbeats.
    #[arg(long, value_name = "SECS", requires = "storm")]
    pub storm_at: Option<f64>,

    /// Seconds from the kill over which the others' sends are measured.
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub storm_window: f64,

    /// Open every socket from these local addresses in turn (e.g. 127.0.0.2,127.0.0.3):
    /// one (local address, server address) pair has only about 28,000 ephemeral ports.
    #[arg(long, value_delimiter = ',', value_name = "ADDRS")]
    pub source_addrs: Vec<IpAddr>,

    /// Several load processes of one run start sending together: each, once its sockets
    /// are connected, leaves a file in DIR and waits (up to 10 minutes) until
    /// `--ready-count` files are there.
    #[arg(long, value_name = "DIR", requires = "ready_count")]
    pub ready_dir: Option<PathBuf>,

    /// How many load processes `--ready-dir` waits for, this one included.
    #[arg(long, value_name = "N", requires = "ready_dir")]
    pub ready_count: Option<usize>,

    /// How many nodes the launcher has (default: counted from its `status`).
    #[arg(long, value_name = "N")]
    pub chaos_nodes: Option<u32>,

    /// Hostile client: one socket emits `--hostile-events` acknowledged events as fast as it
    /// can while another user of its group measures REST and socket latency (see
    /// `hostile.rs`). Registers its two users through the API.
    #[arg(long, conflicts_with_all = ["seed_sql", "idle", "chaos_kill_every", "chaos_restart_redis_at", "chaos_redis_failover_at"])]
    pub hostile: bool,

    /// Events in the hostile burst.
    #[arg(long, value_name = "N", default_value_t = 15_000, value_parser = clap::value_parser!(u32).range(1..=200_000))]
    pub hostile_events: u32,

    /// Seconds to wait for one send's acknowledgement (default 30; 5 when resuming, then
    /// the send is retried).
    #[arg(long, value_name = "SECS")]
    pub ack_timeout: Option<u64>,

    /// Every device also opens a `/notifications` socket (same token) and measures message
    /// notification latency: from the send of the message a `notification` event's preview
    /// shows to the event's arrival. Notifications collapse per conversation, so fewer of
    /// them than deliveries is not a loss.
    #[arg(long, conflicts_with_all = ["idle", "hostile"])]
    pub notifications: bool,
}

impl Args {
    fn socket_nodes(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            vec![self.url.clone()]
        } else {
            self.nodes.clone()
        }
    }

    fn metrics_nodes(&self) -> Vec<String> {
        if self.metrics.is_empty() {
            self.socket_nodes()
        } else {
            self.metrics.clone()
        }
    }

    /// The probes every mode samples its cost with, over the nodes `--metrics` names.
    async fn probes(&self, http: &reqwest::Client) -> Probes {
        Probes::new(
            http.clone(),
            self.metrics_nodes(),
            &self.redis_urls(),
            self.database_url.as_deref(),
        )
        .await
    }

    /// The Redis the nodes use: every seed node of a Redis Cluster, or the one Redis.
    pub fn redis_urls(&self) -> Vec<String> {
        if self.on_redis_cluster() {
            self.redis_cluster_urls
                .iter()
                .filter(|u| !u.is_empty())
                .cloned()
                .collect()
        } else {
            self.redis_url.iter().cloned().collect()
        }
    }

    /// Whether the nodes run on a Redis Cluster (an empty REDIS_CLUSTER_URLS says no).
    pub fn on_redis_cluster(&self) -> bool {
        self.redis_cluster_urls.iter().any(|u| !u.is_empty())
    }

    fn chaos_on(&self) -> bool {
        self.chaos_kill_every.is_some()
            || self.chaos_restart_redis_at.is_some()
            || self.chaos_redis_failover_at.is_some()
            || self.chaos_kill_node_at.is_some()
            || self.chaos_rolling_restart_at.is_some()
    }

    pub fn resume_on(&self) -> bool {
        self.resume || self.chaos_on() || self.storm
    }

    /// Whether the storm figures are reported (this process killed the node, or shares a
    /// storm another one caused).
    pub fn storm_on(&self) -> bool {
        self.storm || self.chaos_kill_node_at.is_some()
    }

    /// Whether sessions and presence are checked at the end: after failures this process
    /// caused, or a storm it shares.
    fn aftermath_on(&self) -> bool {
        self.chaos_on() || self.storm
    }

    /// The local address device `i` opens its sockets from.
    fn source_of(&self, i: usize) -> Option<IpAddr> {
        (!self.source_addrs.is_empty()).then(|| self.source_addrs[i % self.source_addrs.len()])
    }

    fn ack_timeout(&self) -> Duration {
        Duration::from_secs(
            self.ack_timeout
                .unwrap_or(if self.resume_on() { 5 } else { 30 }),
        )
    }

    fn total_rate(&self) -> f64 {
        match (self.rate, self.rate_per_user) {
            (Some(r), _) => r,
            (None, Some(per)) => per * f64::from(self.users),
            (None, None) => f64::from(self.users),
        }
    }
}

/// A user's device: its token, and where its socket goes.
#[derive(Debug, Clone)]
pub struct Device {
    pub user: usize,
    pub token: String,
}

/// How long the `/notifications` sockets must stay silent after the deliveries are in
/// before the run ends: message notifications may be written a moment after the message.
const NOTIFICATIONS_SETTLE: Duration = Duration::from_secs(2);

/// What seeding produced.
pub struct World {
    /// Per user index; devices log in again with it when their session is gone.
    pub usernames: Vec<String>,
    pub user_ids: Vec<Uuid>,
    pub devices: Vec<Device>,
    /// Group per user index.
    pub group_of: Vec<usize>,
    pub groups: Vec<Uuid>,
}

fn check_target(url: &str, allow_remote: bool) -> anyhow::Result<()> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = if host.starts_with('[') {
        host.split(']').next().unwrap_or("").trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if !loopback && !allow_remote {
        bail!(
            "{url} is not a loopback address; pass --allow-remote to load a remote cluster you own"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    if let Err(e) = run(args).await {
        eprintln!("chatty-load: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    check_target(&args.url, args.allow_remote)?;
    for n in args.socket_nodes().iter().chain(&args.metrics) {
        check_target(n, args.allow_remote)?;
    }
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    if args.hostile {
        return hostile::run(&args, &http).await;
    }
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let nodes = args.socket_nodes();
    let chaos_plan = chaos_plan(&args).await?;
    let aftermath_on = args.aftermath_on();

    let started = Instant::now();
    eprintln!(
        "seeding {} users x {} devices in groups of {} ({})",
        args.users,
        args.devices,
        args.group_size,
        if args.seed_sql {
            "SQL fast path"
        } else {
            "through the API"
        }
    );
    let world = if args.seed_sql {
        seed::by_sql(&args, &run_id).await?
    } else {
        seed::by_api(&args, &http, &run_id).await?
    };
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded in {seed_secs:.1}s: {} devices, {} groups",
        world.devices.len(),
        world.groups.len()
    );

    let probes = args.probes(&http).await;
    let rss_before = resources::node_samples(&http, &args.metrics_nodes()).await;

    // Connect storm, bounded.
    let transport = match args.transport {
        Transport::Websocket => chatty_testkit::Transport::WebSocket,
        Transport::Polling => chatty_testkit::Transport::Polling,
    };
    let connect_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let with_notifications = args.notifications;
    let mut connecting = Vec::with_capacity(world.devices.len());
    for (i, d) in world.devices.iter().enumerate() {
        let node = nodes[i % nodes.len()].clone();
        let token = d.token.clone();
        let gate = gate.clone();
        let source = args.source_of(i);
        connecting.push(tokio::spawn(async move {
            let Ok(_permit) = gate.acquire_owned().await else {
                return (None, None);
            };
            let auth = json!({ "token": token });
            let chat = SioClient::connect_from(&node, "/", auth.clone(), &[], transport, source)
                .await
                .ok();
            // The notification socket of a device whose chat socket failed would measure
            // nothing the run reports; it is not opened.
            let notes = if with_notifications && chat.is_some() {
                SioClient::connect_from(
                    &node,
                    notifications::NAMESPACE,
                    auth,
                    &[],
                    transport,
                    source,
                )
                .await
                .ok()
            } else {
                None
            };
            (chat, notes)
        }));
    }
    let mut clients = Vec::with_capacity(connecting.len());
    let mut notification_clients = Vec::with_capacity(connecting.len());
    let (mut connect_errors, mut notification_connect_errors) = (0u64, 0u64);
    for c in connecting {
        let (chat, notes) = c.await.unwrap_or((None, None));
        if chat.is_none() {
            connect_errors += 1;
        } else if with_notifications && notes.is_none() {
            notification_connect_errors += 1;
        }
        clients.push(chat);
        notification_clients.push(notes);
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let connected = clients.iter().filter(|c| c.is_some()).count();
    eprintln!(
        "connected {connected}/{} sockets in {connect_secs:.1}s ({connect_errors} errors)",
        clients.len()
    );
    let notification_sockets = notification_clients.iter().filter(|c| c.is_some()).count();
    if with_notifications {
        eprintln!(
            "connected {notification_sockets} {} sockets ({notification_connect_errors} errors)",
            notifications::NAMESPACE
        );
    }

    if let Some(hold) = args.idle {
        let usage_before = probes.sample().await;
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let usage_after = probes.sample().await;
        let mut report = Report::idle(
            &args,
            connected,
            connect_errors,
            connect_secs,
            &rss_before,
            &usage_after.nodes,
        );
        #[allow(clippy::cast_precision_loss)]
        let held = hold as f64;
        report.usage = Some(resources::Usage::between(
            &usage_before,
            &usage_after,
            held,
            0,
        ));
        report.print(args.json);
        drop(clients);
        return Ok(());
    }

    // One task per device; each user sends through its first connected device.
    let resume = args.resume_on();
    let link = Arc::new(device::Link {
        nodes: nodes.clone(),
        transport,
        gate,
        clock: Instant::now(),
        resume,
        relogin: resume.then(|| device::Relogin {
            http: http.clone(),
            url: args.url.clone(),
            password: seed::PASSWORD,
        }),
        keep_deliveries: args.storm_on(),
    });
    let clock = link.clock;
    let finish = tokio_util::sync::CancellationToken::new();
    let mut receivers = Vec::new();
    let connected_devices: Vec<bool> = clients.iter().map(Option::is_some).collect();
    let mut senders: Vec<Option<watch::Receiver<Option<SioSender>>>> =
        vec![None; world.user_ids.len()];
    let mut watchers = Vec::new();
    // Every connected device's current socket, for the check after the failures.
    let mut sockets = Vec::new();
    for (i, (client, notes)) in clients.into_iter().zip(notification_clients).enumerate() {
        let Some(client) = client else { continue };
        let d = &world.devices[i];
        let (current, watching) = watch::channel(None);
        sockets.push((d.user, watching.clone()));
        if senders[d.user].is_none() {
            senders[d.user] = Some(watching);
        }
        let spec = device::Spec {
            home: i % nodes.len(),
            salt: i / nodes.len(),
            source: args.source_of(i),
            user: d.user,
            username: world.usernames[d.user].clone(),
            token: d.token.clone(),
            conversation: world.groups[world.group_of[d.user]],
        };
        if let Some(notes) = notes {
            watchers.push(tokio::spawn(notifications::run(
                link.clone(),
                spec.clone(),
                notes,
                finish.clone(),
            )));
        }
        receivers.push(tokio::spawn(device::run(
            link.clone(),
            spec,
            client,
            current,
            finish.clone(),
        )));
    }

    let sent = Arc::new(AtomicU64::new(0));
    let ack_ok = Arc::new(AtomicU64::new(0));
    let ack_err = Arc::new(AtomicU64::new(0));
    let acked: Arc<Mutex<HashMap<Uuid, Vec<u64>>>> = Arc::default();
    let ack_hist = Arc::new(Mutex::new(stats::histogram()));
    let progress = tokio::spawn(stats::progress(
        sent.clone(),
        ack_ok.clone(),
        ack_err.clone(),
        args.json,
        resume,
    ));

    let rate = args.total_rate();
    let duration = Duration::from_secs(args.duration);
    let ramp = Duration::from_secs(args.ramp_up).min(duration);
    let senders: Vec<(usize, watch::Receiver<Option<SioSender>>)> = senders
        .into_iter()
        .enumerate()
        .filter_map(|(u, s)| s.map(|s| (u, s)))
        .collect();
    if senders.is_empty() {
        bail!("no socket connected; nothing to send");
    }
    eprintln!(
        "sending {rate:.0} msg/s for {}s from {} senders{}",
        args.duration,
        senders.len(),
        if resume {
            " (resume on: reconnect, sync, retry)"
        } else {
            ""
        }
    );
    if let (Some(dir), Some(count)) = (&args.ready_dir, args.ready_count) {
        wait_for_peers(dir, count, &run_id).await?;
    }
    let usage_before = probes.sample().await;
    let padding = "x".repeat(args.size as usize);
    let send_started = Instant::now();
    let send_started_epoch = device::epoch_secs();
    // A rolling restart keeps the sender going until it is over.
    let chaos_busy = Arc::new(AtomicBool::new(args.chaos_rolling_restart_at.is_some()));
    let chaos = chaos_plan.map(|plan| {
        tokio::spawn(chaos::run(
            plan,
            send_started,
            duration,
            finish.clone(),
            args.json && std::env::var_os("CHATTY_LOAD_PROGRESS").is_none(),
            chaos_busy.clone(),
        ))
    });
    // Every send's issue time, sender and acknowledgement, for the storm figures.
    let send_log: Option<Arc<Mutex<Vec<storm::SendRecord>>>> = args.storm_on().then(Arc::default);
    let ack_timeout = args.ack_timeout();
    // A send is retried until this long after it was first issued.
    let retry_window = Duration::from_secs(30);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut issued: u64 = 0;
    let mut next_sender = 0usize;
    let mut in_flight = Vec::new();
    while send_started.elapsed() < duration || chaos_busy.load(Ordering::Relaxed) {
        tick.tick().await;
        let t = send_started.elapsed();
        // Linear ramp: the area under the rate curve so far is how many sends are due.
        let due_secs = if t < ramp {
            t.as_secs_f64() * t.as_secs_f64() / (2.0 * ramp.as_secs_f64())
        } else {
            t.as_secs_f64() - ramp.as_secs_f64() / 2.0
        };
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let due = (due_secs * rate) as u64;
        while issued < due {
            issued += 1;
            let (user, sender) = &senders[next_sender % senders.len()];
            next_sender += 1;
            let conversation = world.groups[world.group_of[*user]];
            let content = message_content(clock.elapsed().as_nanos(), issued, &padding);
            let payload = json!({ "content": content, "conversation_id": conversation, "client_msg_id": Uuid::new_v4() });
            let sender = sender.clone();
            let (acked, ack_ok, ack_err, ack_hist) = (
                acked.clone(),
                ack_ok.clone(),
                ack_err.clone(),
                ack_hist.clone(),
            );
            let (send_log, user, send) = (send_log.clone(), *user, issued);
            sent.fetch_add(1, Ordering::Relaxed);
            in_flight.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let issued_at = device::epoch_secs();
                let give_up = t0 + retry_window;
                let seq = send_with_retries(sender, &payload, ack_timeout, resume, give_up).await;
                if let Some(log) = send_log {
                    log.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(storm::SendRecord {
                            send,
                            user,
                            issued: issued_at,
                            ack_ms: seq.map(|_| t0.elapsed().as_secs_f64() * 1000.0),
                        });
                }
                match seq {
                    Some(seq) => {
                        acked
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .entry(conversation)
                            .or_default()
                            .push(seq);
                        ack_ok.fetch_add(1, Ordering::Relaxed);
                        #[allow(clippy::cast_possible_truncation)]
                        let us = t0.elapsed().as_micros() as u64;
                        let _ = ack_hist
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .record(us.max(1));
                    }
                    None => {
                        ack_err.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        if in_flight.len() > 10_000 {
            in_flight.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
        }
    }
    let send_secs = send_started.elapsed().as_secs_f64();
    let usage_after = probes.sample().await;
    let delivered_in_window = stats::DELIVERED.load(Ordering::Relaxed);
    for h in in_flight {
        let _ = h.await;
    }
    // A node killed near the end comes back before the final check.
    let chaos_events = match chaos {
        Some(h) => h.await.unwrap_or_default(),
        None => Vec::new(),
    };

    // Let deliveries still in flight land, then stop the devices (resuming, each runs one
    // last sync first).
    let acked = acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let expected_total = stats::expected_deliveries(&acked, &world, &connected_devices);
    let deadline = Instant::now() + Duration::from_secs(args.drain);
    while Instant::now() < deadline && stats::DELIVERED.load(Ordering::Relaxed) < expected_total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if notification_sockets > 0 {
        // Then the notifications of the last messages, until none has come for a while.
        let deadline = Instant::now() + Duration::from_secs(args.drain);
        let (mut seen, mut quiet_since) = (stats::NOTIFIED.load(Ordering::Relaxed), Instant::now());
        while Instant::now() < deadline && quiet_since.elapsed() < NOTIFICATIONS_SETTLE {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let now_seen = stats::NOTIFIED.load(Ordering::Relaxed);
            if now_seen != seen {
                (seen, quiet_since) = (now_seen, Instant::now());
            }
        }
    }
    // While every device that came back is still connected.
    let aftermath = if aftermath_on {
        let connected_users = sockets
            .iter()
            .filter(|(_, s)| s.borrow().is_some())
            .map(|(u, _)| *u)
            .collect();
        let tokens: Vec<(usize, String)> = world
            .devices
            .iter()
            .map(|d| (d.user, d.token.clone()))
            .collect();
        // A storm another process caused is over here once the last socket dropped here;
        // the check allows presence its lease from then, as after a failure of its own.
        let last_failure = chaos::settled_at_secs(&chaos_events)
            .map_or(send_started, |s| send_started + Duration::from_secs_f64(s))
            .max(stats::last_drop().unwrap_or(send_started));
        eprintln!("checking every device's token and everyone's presence after the failures");
        let found = aftermath::check(
            &http,
            &args.url,
            &aftermath::Devices {
                tokens: &tokens,
                connected_users: &connected_users,
                user_ids: &world.user_ids,
                usernames: &world.usernames,
            },
            last_failure,
            Duration::from_millis(args.presence_ttl_ms),
        )
        .await;
        if found.is_none() {
            eprintln!("not checked: the server has no /users/me");
        }
        found
    } else {
        None
    };
    finish.cancel();
    let mut devices: Vec<DeviceStats> = Vec::with_capacity(receivers.len());
    for r in receivers {
        if let Ok(d) = r.await {
            devices.push(d);
        }
    }
    let mut notified = Vec::with_capacity(watchers.len());
    for w in watchers {
        if let Ok(n) = w.await {
            notified.push(n);
        }
    }
    progress.abort();
    // Memory and connections as they were while every socket was still up.
    let rss_after = usage_after.nodes.clone();
    let ack_hist = ack_hist
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let usage =
        resources::Usage::between(&usage_before, &usage_after, send_secs, delivered_in_window);
    let mut report = Report::run(
        &args,
        stats::RunFigures {
            delivered_in_window,
            connected,
            connect_errors,
            connect_secs,
            seed_secs,
            send_secs,
            sent: sent.load(Ordering::Relaxed),
            ack_ok: ack_ok.load(Ordering::Relaxed),
            ack_err: ack_err.load(Ordering::Relaxed),
        },
        &acked,
        &devices,
        &ack_hist,
        (&rss_before, &rss_after),
        chaos_events,
        Some(usage),
        with_notifications.then(|| {
            stats::Notifications::of(notification_sockets, notification_connect_errors, &notified)
        }),
    );
    report.aftermath = aftermath;
    let outages: Vec<device::Outage> = devices.iter().flat_map(|d| d.outages.clone()).collect();
    report.reconnect_rate = storm::ReconnectRate::of(&outages);
    if args.storm_on() {
        let sends = send_log.map_or_else(Vec::new, |l| {
            l.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        });
        let kill_at = report
            .chaos
            .iter()
            .find(|e| e.action == "kill-node")
            .map(|e| e.at_epoch)
            .or_else(|| {
                let dir = args.ready_dir.as_ref()?;
                chaos::read_mark(&dir.join(KILL_MARK))
            })
            .or_else(|| args.storm_at.map(|at| send_started_epoch + at));
        report.storm = storm::Storm::of(
            &devices,
            &sends,
            args.storm_window,
            report.resume.as_ref().map_or(0, |r| r.reconnect_failures),
            kill_at,
        );
    }
    report.print(args.json);
    if report.failed() {
        std::process::exit(2);
    }
    Ok(())
}

/// The file in `--ready-dir` where the process that kills the node writes when it did.
const KILL_MARK: &str = "kill.epoch";

/// Leaves this process's mark in `dir` and waits until `count` load processes have left
/// theirs, so that processes that connected at different speeds start sending (and the
/// storm's clock starts) together.
async fn wait_for_peers(dir: &Path, count: usize, run_id: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(dir.join(format!("{run_id}.ready")), b"")
        .with_context(|| format!("writing into {}", dir.display()))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let ready = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".ready"))
            .count();
        if ready >= count {
            eprintln!("{ready} of {count} load processes connected; sending");
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "only {ready} of {count} load processes connected after 10 minutes; sending anyway"
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The chaos plan, checked before anything is seeded: the launcher must exist and know
/// its nodes.
async fn chaos_plan(args: &Args) -> anyhow::Result<Option<chaos::Plan>> {
    if !args.chaos_on() {
        return Ok(None);
    }
    let ctl = &args.cluster_ctl;
    if !ctl.is_file() {
        bail!(
            "--chaos needs the local launcher: {} does not exist (run from the repository root or pass --cluster-ctl)",
            ctl.display()
        );
    }
    let nodes = match args.chaos_nodes {
        Some(n) => n,
        None => chaos::count_nodes(ctl).await?,
    };
    if args.chaos_kill_node.is_some_and(|k| k > nodes) {
        bail!("--chaos-kill-node must be a node from 1 to {nodes}");
    }
    if args.chaos_kill_every.is_some() && nodes < 2 {
        eprintln!("chaos: only one node: every kill is a full outage until it restarts");
    }
    if !(0.0..=60.0).contains(&args.chaos_down) {
        bail!("--chaos-down must be 0 to 60 seconds");
    }
    Ok(Some(chaos::Plan {
        ctl: ctl.clone(),
        nodes,
        kill_every: args.chaos_kill_every.map(Duration::from_secs),
        down: Duration::from_secs_f64(args.chaos_down),
        redis_at: args.chaos_restart_redis_at.map(Duration::from_secs),
        redis_empty: args.chaos_redis_empty,
        redis_failover_at: args.chaos_redis_failover_at.map(Duration::from_secs),
        redis_master: args.chaos_redis_master,
        kill_node_at: args
            .chaos_kill_node_at
            .map(|at| (Duration::from_secs(at), args.chaos_kill_node)),
        kill_mark: args.ready_dir.as_ref().map(|d| d.join(KILL_MARK)),
        rolling_at: args.chaos_rolling_restart_at.map(Duration::from_secs),
    }))
}

/// Sends once, or (resuming) until acknowledged: on the device's current socket, again
/// with the same payload and so the same `client_msg_id` after a lost acknowledgement or a
/// 5xx, so the server stores it once. The seq it was stored under, or None.
async fn send_with_retries(
    mut sender: watch::Receiver<Option<SioSender>>,
    payload: &Value,
    ack_timeout: Duration,
    resume: bool,
    give_up: Instant,
) -> Option<u64> {
    for attempt in 0u32.. {
        if attempt > 0 {
            if !resume || Instant::now() >= give_up {
                return None;
            }
            SEND_RETRIES.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(
                Duration::from_millis(200) + device::jitter(Duration::from_millis(300)),
            )
            .await;
        }
        let socket = {
            let wait = tokio::time::timeout_at(give_up.into(), sender.wait_for(Option::is_some));
            match wait.await {
                Ok(Ok(s)) => s.clone(),
                _ => return None,
            }
        };
        let Some(socket) = socket else { continue };
        match socket
            .emit_with_ack("sendMessage", payload, ack_timeout)
            .await
        {
            Ok(ack) if ack["ok"] == true => return ack["data"]["seq"].as_u64(),
            // Refused on its merits (4xx): retrying cannot help.
            Ok(ack)
                if ack["error"]["statusCode"]
                    .as_u64()
                    .is_some_and(|s| (400..500).contains(&s)) =>
            {
                if ack["error"]["statusCode"] == 401 {
                    stats::SEND_UNAUTHORIZED.fetch_add(1, Ordering::Relaxed);
                }
                return None;
            }
            Ok(_) | Err(_) => {}
        }
    }
    None
}

/// The content of send number `send`, issued at `stamp` (ns on the load tool's clock),
/// padded to `padding`'s length. Send time and send number travel in the content: the
/// receivers measure latency with the first and spot a send stored twice with the
/// second. The send time comes first, so that it is also the start of the server's
/// notification preview (the content's first 100 characters).
pub fn message_content(stamp: u128, send: u64, padding: &str) -> String {
    let mut content = format!("{stamp}|{send}|");
    content.push_str(&padding[..padding.len().saturating_sub(content.len()).max(1)]);
    content
}

/// The parts of a `newMessage` the checker needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed {
    pub conversation: Uuid,
    pub seq: u64,
    /// Send time on the load tool's clock, in ns.
    pub stamp: u128,
    /// Send number, when the content carries one.
    pub send: Option<u64>,
}

/// Reads a `newMessage` (or a message of a `sync` answer) written by this tool.
pub fn parse_new_message(v: &Value) -> Option<Parsed> {
    let conversation = v["conversation_id"].as_str()?.parse().ok()?;
    let seq = v["seq"].as_u64()?;
    let mut parts = v["content"].as_str()?.split('|');
    let stamp = parts.next()?.parse().ok()?;
    let send = parts.next().and_then(|s| s.parse().ok());
    Some(Parsed {
        conversation,
        seq,
        stamp,
        send,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_of_this_tool_gives_its_stamp_and_send_number() {
        let conv = Uuid::new_v4();
        let m = json!({ "conversation_id": conv, "seq": 4, "content": "123|9|xxxx" });
        assert_eq!(
            parse_new_message(&m),
            Some(Parsed {
                conversation: conv,
                seq: 4,
                stamp: 123,
                send: Some(9)
            })
        );
        let old = json!({ "conversation_id": conv, "seq": 4, "content": "123|xxxx" });
        assert_eq!(parse_new_message(&old).and_then(|p| p.send), None);
    }

    #[test]
    fn a_message_of_this_tool_starts_with_its_send_time_and_keeps_its_size() {
        let padding = "x".repeat(64);
        let content = message_content(123_456, 7, &padding);
        assert!(content.starts_with("123456|7|"));
        assert_eq!(content.len(), 64);
        let m = json!({ "conversation_id": Uuid::new_v4(), "seq": 1, "content": content });
        let p = parse_new_message(&m).expect("parsed");
        assert_eq!((p.stamp, p.send), (123_456, Some(7)));
    }

    #[test]
    fn notifications_are_off_by_default_and_excluded_from_idle_and_hostile_runs() {
        assert!(!Args::parse_from(["chatty-load"]).notifications);
        assert!(Args::parse_from(["chatty-load", "--notifications"]).notifications);
        assert!(Args::try_parse_from(["chatty-load", "--notifications", "--idle", "5"]).is_err());
        assert!(Args::try_parse_from(["chatty-load", "--notifications", "--hostile"]).is_err());
    }

    #[test]
    fn only_loopback_targets_are_allowed_by_default() {
        assert!(check_target("http://127.0.0.1:8080", false).is_ok());
        assert!(check_target("http://localhost:3000/x", false).is_ok());
        assert!(check_target("http://[::1]:3000", false).is_ok());
        assert!(check_target("http://10.0.0.1:3000", false).is_err());
        assert!(check_target("http://10.0.0.1:3000", true).is_ok());
    }

    #[test]
    fn chaos_options_turn_resume_on() {
        let args = Args::parse_from(["chatty-load", "--chaos-kill-every", "5"]);
        assert!(args.resume_on());
        assert_eq!(args.ack_timeout(), Duration::from_secs(5));
        let args = Args::parse_from(["chatty-load"]);
        assert!(!args.resume_on());
        assert_eq!(args.ack_timeout(), Duration::from_secs(30));
    }

    #[test]
    fn a_redis_failover_is_chaos_and_names_one_of_three_masters() {
        let args = Args::parse_from(["chatty-load", "--chaos-redis-failover-at", "8"]);
        assert!(args.chaos_on() && args.resume_on());
        assert_eq!(args.chaos_redis_master, None);
        let args = Args::parse_from([
            "chatty-load",
            "--chaos-redis-failover-at",
            "8",
            "--chaos-redis-master",
            "3",
        ]);
        assert_eq!(args.chaos_redis_master, Some(3));
        for bad in [
            vec![
                "chatty-load",
                "--chaos-redis-failover-at",
                "8",
                "--chaos-redis-master",
                "4",
            ],
            vec![
                "chatty-load",
                "--chaos-redis-failover-at",
                "8",
                "--chaos-redis-master",
                "0",
            ],
            vec!["chatty-load", "--chaos-redis-master", "1"],
            vec![
                "chatty-load",
                "--chaos-redis-failover-at",
                "8",
                "--chaos-restart-redis-at",
                "8",
            ],
            vec!["chatty-load", "--chaos-redis-failover-at", "8", "--hostile"],
        ] {
            assert!(Args::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_empty_redis_restart_needs_a_redis_restart() {
        let args = Args::parse_from([
            "chatty-load",
            "--chaos-restart-redis-at",
            "5",
            "--chaos-redis-empty",
        ]);
        assert!(args.chaos_redis_empty && args.chaos_on());
        assert!(Args::try_parse_from(["chatty-load", "--chaos-redis-empty"]).is_err());
    }

    #[test]
    fn a_redis_cluster_wins_over_the_single_redis_for_seeding_and_figures() {
        let args = Args::parse_from([
            "chatty-load",
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--redis-cluster-urls",
            "redis://127.0.0.1:7001,redis://127.0.0.1:7002",
        ]);
        assert_eq!(
            args.redis_urls(),
            ["redis://127.0.0.1:7001", "redis://127.0.0.1:7002"]
        );
        let args = Args::parse_from([
            "chatty-load",
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--redis-cluster-urls",
            "",
        ]);
        assert_eq!(args.redis_urls(), ["redis://127.0.0.1:6379"]);
    }

    #[test]
    fn a_node_killed_for_good_or_a_rolling_restart_is_chaos_and_a_storm_resumes() {
        let args = Args::parse_from(["chatty-load", "--chaos-kill-node-at", "10"]);
        assert!(args.chaos_on() && args.resume_on() && args.storm_on());
        assert_eq!(args.chaos_kill_node, None);
        let args = Args::parse_from(["chatty-load", "--storm", "--storm-at", "10"]);
        assert!(!args.chaos_on() && args.resume_on() && args.storm_on() && args.aftermath_on());
        let args = Args::parse_from(["chatty-load", "--chaos-rolling-restart-at", "5"]);
        assert!(args.chaos_on() && args.resume_on() && !args.storm_on());
        for bad in [
            vec!["chatty-load", "--chaos-kill-node", "1"],
            vec![
                "chatty-load",
                "--chaos-kill-node-at",
                "5",
                "--chaos-kill-node",
                "0",
            ],
            vec![
                "chatty-load",
                "--chaos-kill-node-at",
                "5",
                "--chaos-kill-every",
                "5",
            ],
            vec!["chatty-load", "--storm-at", "10"],
            vec!["chatty-load", "--ready-dir", "/tmp/x"],
            vec!["chatty-load", "--ready-count", "3"],
        ] {
            assert!(Args::try_parse_from(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn devices_take_the_source_addresses_in_turn() {
        let args = Args::parse_from(["chatty-load", "--source-addrs", "127.0.0.2,127.0.0.3"]);
        let ip = |s: &str| Some(s.parse::<IpAddr>().expect("address"));
        assert_eq!(
            (0..3).map(|i| args.source_of(i)).collect::<Vec<_>>(),
            [ip("127.0.0.2"), ip("127.0.0.3"), ip("127.0.0.2")]
        );
        assert_eq!(Args::parse_from(["chatty-load"]).source_of(5), None);
        assert!(Args::try_parse_from(["chatty-load", "--source-addrs", "nope"]).is_err());
    }

    #[test]
    fn hostile_defaults_to_fifteen_thousand_events_and_excludes_the_sql_seed() {
        let args = Args::parse_from(["chatty-load", "--hostile"]);
        assert!(args.hostile);
        assert_eq!(args.hostile_events, 15_000);
        assert!(Args::try_parse_from(["chatty-load", "--hostile", "--seed-sql"]).is_err());
    }
}
