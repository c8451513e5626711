//! chatty-load: drives a Chatty cluster (or any server speaking its API) with many
//! Socket.IO clients and proves delivery while it measures.
//!
//! Every message carries its send time; every receiving device checks that each message of
//! its conversations arrives exactly once and in `seq` order. The run is bounded in count
//! and time, and targets loopback addresses unless `--allow-remote` is given.

mod seed;
mod stats;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::bail;
use chatty::sio_client::SioClient;
use clap::{Parser, ValueEnum};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::stats::{DeviceStats, Report};

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
}

impl Args {
    fn socket_nodes(&self) -> Vec<String> {
        if self.nodes.is_empty() {
            vec![self.url.clone()]
        } else {
            self.nodes.clone()
        }
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

/// What seeding produced.
pub struct World {
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
    for n in args.socket_nodes() {
        check_target(&n, args.allow_remote)?;
    }
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .build()?;
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();
    let nodes = args.socket_nodes();

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

    let rss_before = stats::node_memory(&http, &nodes).await;

    // Connect storm, bounded.
    let connect_started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let mut connecting = Vec::with_capacity(world.devices.len());
    for (i, d) in world.devices.iter().enumerate() {
        let node = nodes[i % nodes.len()].clone();
        let token = d.token.clone();
        let gate = gate.clone();
        let transport = match args.transport {
            Transport::Websocket => chatty::sio_client::Transport::WebSocket,
            Transport::Polling => chatty::sio_client::Transport::Polling,
        };
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.ok()?;
            SioClient::connect_with(&node, "/", json!({ "token": token }), &[], transport)
                .await
                .ok()
        }));
    }
    let mut clients = Vec::with_capacity(connecting.len());
    let mut connect_errors = 0u64;
    for c in connecting {
        match c.await.ok().flatten() {
            Some(client) => clients.push(Some(client)),
            None => {
                connect_errors += 1;
                clients.push(None);
            }
        }
    }
    let connect_secs = connect_started.elapsed().as_secs_f64();
    let connected = clients.iter().filter(|c| c.is_some()).count();
    eprintln!(
        "connected {connected}/{} sockets in {connect_secs:.1}s ({connect_errors} errors)",
        clients.len()
    );

    if let Some(hold) = args.idle {
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let rss_after = stats::node_memory(&http, &nodes).await;
        let report = Report::idle(
            &args,
            connected,
            connect_errors,
            connect_secs,
            &rss_before,
            &rss_after,
        );
        report.print(args.json);
        drop(clients);
        return Ok(());
    }

    // Receivers: one task per device; senders use the first device of each user.
    let clock = Instant::now();
    let acked: Arc<Mutex<HashMap<Uuid, Vec<u64>>>> = Arc::default();
    let stop = tokio_util::sync::CancellationToken::new();
    let mut receivers = Vec::new();
    let mut senders: Vec<Option<chatty::sio_client::SioSender>> = vec![None; world.user_ids.len()];
    for (i, client) in clients.into_iter().enumerate() {
        let Some(client) = client else { continue };
        let device = &world.devices[i];
        let (sender, events) = client.split();
        if senders[device.user].is_none() {
            senders[device.user] = Some(sender.clone());
        }
        let conversation = world.groups[world.group_of[device.user]];
        receivers.push(tokio::spawn(stats::receive(
            events,
            sender,
            conversation,
            clock,
            stop.clone(),
        )));
    }

    let sent = Arc::new(AtomicU64::new(0));
    let ack_ok = Arc::new(AtomicU64::new(0));
    let ack_err = Arc::new(AtomicU64::new(0));
    let ack_hist = Arc::new(Mutex::new(stats::histogram()));
    let progress = tokio::spawn(stats::progress(
        sent.clone(),
        ack_ok.clone(),
        ack_err.clone(),
        args.json,
    ));

    let rate = args.total_rate();
    let duration = Duration::from_secs(args.duration);
    let ramp = Duration::from_secs(args.ramp_up).min(duration);
    let senders: Vec<(usize, chatty::sio_client::SioSender)> = senders
        .into_iter()
        .enumerate()
        .filter_map(|(u, s)| s.map(|s| (u, s)))
        .collect();
    if senders.is_empty() {
        bail!("no socket connected; nothing to send");
    }
    eprintln!(
        "sending {rate:.0} msg/s for {}s from {} senders",
        args.duration,
        senders.len()
    );
    let padding = "x".repeat(args.size as usize);
    let send_started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut issued: u64 = 0;
    let mut next_sender = 0usize;
    let mut in_flight = Vec::new();
    while send_started.elapsed() < duration {
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
            let stamp = clock.elapsed().as_nanos();
            let mut content = format!("{stamp}|");
            content.push_str(&padding[..padding.len().saturating_sub(content.len()).max(1)]);
            let payload = json!({ "content": content, "conversation_id": conversation, "client_msg_id": Uuid::new_v4() });
            let sender = sender.clone();
            let (acked, ack_ok, ack_err, ack_hist) = (
                acked.clone(),
                ack_ok.clone(),
                ack_err.clone(),
                ack_hist.clone(),
            );
            sent.fetch_add(1, Ordering::Relaxed);
            in_flight.push(tokio::spawn(async move {
                let t0 = Instant::now();
                match sender
                    .emit_with_ack("sendMessage", &payload, Duration::from_secs(30))
                    .await
                {
                    Ok(ack) if ack["ok"] == true => {
                        let seq = ack["data"]["seq"].as_u64().unwrap_or(0);
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
                    Ok(_) | Err(_) => {
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
    for h in in_flight {
        let _ = h.await;
    }

    // Let deliveries still in flight land, then stop the receivers.
    let expected_total = stats::expected_deliveries(&acked, &world);
    let deadline = Instant::now() + Duration::from_secs(args.drain);
    while Instant::now() < deadline && stats::DELIVERED.load(Ordering::Relaxed) < expected_total {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress.abort();
    stop.cancel();
    let mut devices: Vec<DeviceStats> = Vec::with_capacity(receivers.len());
    for r in receivers {
        if let Ok(d) = r.await {
            devices.push(d);
        }
    }
    let rss_after = stats::node_memory(&http, &nodes).await;
    let acked = acked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let ack_hist = ack_hist
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let report = Report::run(
        &args,
        stats::RunFigures {
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
    );
    report.print(args.json);
    if report.lost > 0 || report.duplicated > 0 || report.out_of_order > 0 {
        std::process::exit(2);
    }
    Ok(())
}

/// The parts of a `newMessage` the checker needs.
pub fn parse_new_message(v: &Value) -> Option<(Uuid, u64, u128)> {
    let conv = v["conversation_id"].as_str()?.parse().ok()?;
    let seq = v["seq"].as_u64()?;
    let stamp = v["content"].as_str()?.split('|').next()?.parse().ok()?;
    Some((conv, seq, stamp))
}
