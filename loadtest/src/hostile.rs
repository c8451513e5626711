//! `--hostile`: what one abusive socket costs everyone else.
//!
//! An attacker opens one Socket.IO connection and emits `--hostile-events` events (mostly
//! `sendMessage`, some `sync` from seq 0 and `joinConversation`) as fast as it can, each
//! asking for an acknowledgement, without waiting for any. Meanwhile a victim, another user
//! of the same group conversation with its own HTTP client and its own socket (connected
//! before the burst), measures what a real user would feel: `GET /users/me` with one request
//! in flight about every 10 ms, and the round trip of an acknowledged `joinConversation`
//! about every 60 ms (under the per-socket event limit). The victim measures for one second
//! before the burst (the baseline) and from the burst's first emit until every attacker event is settled (answered, or given up after
//! `ACK_WAIT`, or once no answer came for `ACK_IDLE`), plus `TAIL`.
//!
//! The server may refuse events (`{ ok: false, error: { statusCode: 429, code:
//! "rate_limited" } }`), send the attacker an `error` event (e.g. `slow_consumer`) or drop
//! its socket: all of that is counted, none of it fails the run. The exit code is 0 unless
//! the tool itself could not do its job.
//!
//! Both sockets go to the first of `--nodes` (default `--url`): given a node's address, the
//! victim shares the attacked node; given the balancer, nginx places them.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chatty_testkit::{Incoming, SioClient, SioSender, Transport};
use futures_util::{StreamExt, stream::FuturesUnordered};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{Args, resources::Usage, seed, stats};

/// The whole measurement (connects, baseline, burst, tail) must end within this; past it the
/// tool has failed.
const HARD_LIMIT: Duration = Duration::from_secs(60);
/// How long one attacker event may wait for its acknowledgement, from its emit.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// The burst is over once no acknowledgement has come for this long: whatever is still
/// outstanding then counts as unacked (a server that drops acks would otherwise stretch
/// the victim's window, and thin its percentiles, to `ACK_WAIT`).
const ACK_IDLE: Duration = Duration::from_secs(10);
/// How long the victim keeps measuring after the burst is settled.
const TAIL: Duration = Duration::from_secs(2);
/// How long the victim measures before the burst.
const BASELINE: Duration = Duration::from_secs(1);
/// Pace of each victim probe (one in flight; a slow answer delays the next).
const PROBE_EVERY: Duration = Duration::from_millis(10);
/// Pace of the victim's socket probe: a real client's, under the server's per-socket event
/// limit (`CHATTY_LIMIT_SOCKET_EVENTS`, 200 per 10 s by default), so that the victim
/// measures the attacker's effect and not its own refusals.
const SOCKET_PROBE_EVERY: Duration = Duration::from_millis(60);
/// Time limit of one victim probe; a probe past it counts as a timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The events of the burst, in the mix the attacker sends them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    SendMessage,
    Sync,
    JoinConversation,
}

impl Kind {
    /// Event `i` of the burst: eight in ten are `sendMessage`, one `sync`, one `joinConversation`.
    fn nth(i: u32) -> Self {
        match i % 10 {
            8 => Self::Sync,
            9 => Self::JoinConversation,
            _ => Self::SendMessage,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::SendMessage => "sendMessage",
            Self::Sync => "sync",
            Self::JoinConversation => "joinConversation",
        }
    }

    fn payload(self, i: u32, conversation: Uuid) -> Value {
        match self {
            Self::SendMessage => {
                json!({ "content": format!("hostile {i}"), "conversation_id": conversation })
            }
            Self::Sync => json!({ "conversations": { conversation.to_string(): 0 } }),
            Self::JoinConversation => json!({ "conversationId": conversation }),
        }
    }
}

/// How one acknowledged emit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// `ok: false` with this `error.statusCode` (0 when the answer carries none).
    Refused(u16),
    /// No acknowledgement: it timed out, or the connection closed first.
    Unacked,
}

impl Outcome {
    /// Reads an acknowledgement (or the failure to get one).
    pub fn of(ack: &anyhow::Result<Value>) -> Self {
        match ack {
            Ok(v) if v["ok"] == true => Self::Ok,
            Ok(v) => Self::Refused(
                v["error"]["statusCode"]
                    .as_u64()
                    .and_then(|s| u16::try_from(s).ok())
                    .unwrap_or(0),
            ),
            Err(_) => Self::Unacked,
        }
    }
}

/// What became of the attacker's events (of one kind, or all).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub sent: u64,
    pub ok: u64,
    /// Refused with 429 (rate limited).
    pub limited: u64,
    /// Refused with 503 (the server shedding load).
    pub unavailable: u64,
    /// Refused with any other status.
    pub refused_other: u64,
    /// Those other refusals by status ("0": an answer without a status).
    pub refused_by_status: BTreeMap<u16, u64>,
    pub unacked: u64,
}

impl Counters {
    pub fn count(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Refused(429) => self.limited += 1,
            Outcome::Refused(503) => self.unavailable += 1,
            Outcome::Refused(s) => {
                self.refused_other += 1;
                *self.refused_by_status.entry(s).or_default() += 1;
            }
            Outcome::Unacked => self.unacked += 1,
        }
    }

    /// Events whose fate is known (every one, once the burst is settled).
    pub fn settled(&self) -> u64 {
        self.ok + self.limited + self.unavailable + self.refused_other + self.unacked
    }

    fn add(&mut self, other: &Self) {
        self.sent += other.sent;
        self.ok += other.ok;
        self.limited += other.limited;
        self.unavailable += other.unavailable;
        self.refused_other += other.refused_other;
        for (s, n) in &other.refused_by_status {
            *self.refused_by_status.entry(*s).or_default() += n;
        }
        self.unacked += other.unacked;
    }
}

/// Latency of one victim probe, with what went wrong.
#[derive(Debug, Serialize)]
pub struct Probe {
    /// Answers received (any status); the percentiles are over these.
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// p99 corrected for coordinated omission: a probe that took longer than the pace stands
    /// also for the probes that would have been sent while it was out (hdrhistogram's
    /// `record_correct`). With one probe in flight, a 5 s stall is one sample in `p99_ms`;
    /// here it is the 500 a user clicking every 10 ms would have waited on.
    pub p99_corrected_ms: f64,
    /// Answers that were not a success, by HTTP or ack status, and probes that got no
    /// answer ("timeout", "closed" for a socket that went away, "transport").
    pub failures: BTreeMap<String, u64>,
}

/// A probe's raw figures while it runs.
struct ProbeRecord {
    hist: Histogram<u64>,
    /// The same answers, corrected for coordinated omission at `every`.
    corrected: Histogram<u64>,
    failures: BTreeMap<String, u64>,
    /// The probe's pace.
    every: Duration,
}

impl ProbeRecord {
    fn new(every: Duration) -> Self {
        Self {
            every,
            hist: stats::histogram(),
            corrected: stats::histogram(),
            failures: BTreeMap::new(),
        }
    }

    fn answered(&mut self, took: Duration) {
        #[allow(clippy::cast_possible_truncation)]
        let us = (took.as_micros() as u64).max(1);
        let _ = self.hist.record(us);
        #[allow(clippy::cast_possible_truncation)]
        let _ = self
            .corrected
            .record_correct(us, self.every.as_micros() as u64);
    }

    fn failed(&mut self, why: impl Into<String>) {
        *self.failures.entry(why.into()).or_default() += 1;
    }

    fn summary(&self) -> Probe {
        #[allow(clippy::cast_precision_loss)]
        let ms = |v: u64| v as f64 / 1000.0;
        Probe {
            count: self.hist.len(),
            p50_ms: ms(self.hist.value_at_quantile(0.50)),
            p99_ms: ms(self.hist.value_at_quantile(0.99)),
            max_ms: ms(self.hist.max()),
            p99_corrected_ms: ms(self.corrected.value_at_quantile(0.99)),
            failures: self.failures.clone(),
        }
    }
}

/// What the victim measured over one window.
#[derive(Debug, Serialize)]
pub struct VictimWindow {
    pub secs: f64,
    /// `GET /users/me`.
    pub rest: Probe,
    /// `joinConversation` emitted, acknowledgement received.
    pub socket_rtt: Probe,
}

#[derive(Debug, Serialize)]
pub struct Attacker {
    /// Seconds from the first emit until the last was handed to the socket.
    pub emit_secs: f64,
    /// Seconds from the first emit until every event was acknowledged or given up.
    pub settled_secs: f64,
    /// Seconds from the first emit to the last acknowledgement received.
    pub last_ack_secs: f64,
    pub total: Counters,
    pub by_event: BTreeMap<&'static str, Counters>,
    /// Acknowledgement time of the events that got one (refusals included).
    pub ack_latency: Probe,
    /// `newMessage` events the attacker's socket received (its own messages coming back).
    pub new_messages_received: u64,
    /// `error` events the server sent, and the first one (`{ code, message }`), with when.
    pub error_events: u64,
    pub first_error: Option<Value>,
    pub first_error_at_secs: Option<f64>,
    /// When the server ended the namespace connection (`disconnect`) or the transport
    /// closed, in seconds from the first emit; None if the socket lived through the run.
    pub disconnected_at_secs: Option<f64>,
    pub disconnected_by: Option<&'static str>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    pub events: u32,
    pub seed_secs: f64,
    pub attacker: Attacker,
    pub victim_baseline: VictimWindow,
    pub victim_burst: VictimWindow,
    /// `newMessage` events the victim's socket received during the burst window.
    pub victim_new_messages: u64,
    /// When the victim's socket went away, in seconds from the first emit (it should not).
    pub victim_disconnected_at_secs: Option<f64>,
    /// Nodes, Redis, PostgreSQL and the machine over the burst window.
    pub usage: Option<Usage>,
}

/// The victim: its own HTTP client (its own connection pool), token and socket.
struct Victim {
    http: reqwest::Client,
    url: String,
    token: String,
    socket: SioSender,
    conversation: Uuid,
}

/// Runs the hostile scenario and prints its report.
pub async fn run(args: &Args, http: &reqwest::Client) -> anyhow::Result<()> {
    let node = args.socket_nodes()[0].clone();
    let transport = match args.transport {
        crate::Transport::Websocket => Transport::WebSocket,
        crate::Transport::Polling => Transport::Polling,
    };
    let run_id = Uuid::new_v4().simple().to_string()[..8].to_owned();

    let started = Instant::now();
    eprintln!("hostile: registering an attacker and a victim through the API");
    let (attacker_id, attacker_token) =
        seed::register(http, &args.url, format!("lt{run_id}_attacker"), "load-0").await?;
    let (victim_id, victim_token) =
        seed::register(http, &args.url, format!("lt{run_id}_victim"), "load-0").await?;
    let conversation = seed::create_group(
        http,
        &args.url,
        &attacker_token,
        format!("hostile {run_id}"),
        vec![victim_id],
    )
    .await?;
    let seed_secs = started.elapsed().as_secs_f64();
    eprintln!("hostile: attacker {attacker_id}, victim {victim_id}, group {conversation}");

    let measured = tokio::time::timeout(
        HARD_LIMIT,
        measure(
            args,
            &node,
            transport,
            (&attacker_token, &victim_token),
            conversation,
            http,
        ),
    )
    .await
    .with_context(|| format!("the hostile run did not end within {HARD_LIMIT:?}"))??;
    let report = Report {
        seed_secs,
        ..measured
    };
    report.print(args.json);
    Ok(())
}

async fn measure(
    args: &Args,
    node: &str,
    transport: Transport,
    (attacker_token, victim_token): (&str, &str),
    conversation: Uuid,
    http: &reqwest::Client,
) -> anyhow::Result<Report> {
    let connect =
        |token: &str| SioClient::connect_with(node, "/", json!({ "token": token }), &[], transport);
    let (victim_socket, mut victim_events) = connect(victim_token)
        .await
        .context("victim socket")?
        .split();
    let (attacker_socket, attacker_events) = connect(attacker_token)
        .await
        .context("attacker socket")?
        .split();
    let victim = Arc::new(Victim {
        http: reqwest::Client::builder()
            .tcp_nodelay(true)
            .no_proxy()
            .timeout(PROBE_TIMEOUT)
            .build()?,
        url: args.url.clone(),
        token: victim_token.to_owned(),
        socket: victim_socket,
        conversation,
    });
    // Both sockets answer before anything is measured.
    for (who, s) in [("victim", &victim.socket), ("attacker", &attacker_socket)] {
        let ack = s
            .emit_with_ack(
                "joinConversation",
                &json!({ "conversationId": conversation }),
                PROBE_TIMEOUT,
            )
            .await
            .with_context(|| format!("{who} joinConversation"))?;
        if ack["ok"] != true {
            bail!("{who} joinConversation refused: {ack}");
        }
    }

    eprintln!("hostile: baseline for {BASELINE:?}");
    let (_, baseline_end) = watch::channel(Some(tokio::time::Instant::now() + BASELINE));
    let victim_baseline = victim_window(victim.clone(), baseline_end).await;

    let probes = args.probes(http).await;
    let usage_before = probes.sample().await;

    // The victim's socket keeps being read all along: what the burst fans out to it and
    // whether it survives.
    let burst_start = Instant::now();
    let (victim_gone_tx, victim_gone) = watch::channel(None::<f64>);
    let victim_messages = Arc::new(AtomicU64::new(0));
    let victim_reader = {
        let victim_messages = victim_messages.clone();
        tokio::spawn(async move {
            while let Some(ev) = victim_events.recv().await {
                match ev {
                    Incoming::Event { name, .. } if name == "newMessage" => {
                        victim_messages.fetch_add(1, Ordering::Relaxed);
                    }
                    Incoming::Event { .. } => {}
                    Incoming::Disconnected | Incoming::Closed => {
                        let _ = victim_gone_tx.send(Some(burst_start.elapsed().as_secs_f64()));
                        break;
                    }
                }
            }
        })
    };
    let (end_tx, end_rx) = watch::channel(None);
    let victim_burst = tokio::spawn(victim_window(victim.clone(), end_rx));
    let stop_watching = CancellationToken::new();
    let watcher = tokio::spawn(watch_attacker(
        attacker_events,
        burst_start,
        stop_watching.clone(),
    ));

    eprintln!(
        "hostile: attacker emits {} events on one socket",
        args.hostile_events
    );
    let (settled, emit_secs) = burst(
        &attacker_socket,
        args.hostile_events,
        conversation,
        burst_start,
    )
    .await;
    let settled_secs = burst_start.elapsed().as_secs_f64();
    eprintln!("hostile: burst settled in {settled_secs:.1}s; victim measures {TAIL:?} more");
    let _ = end_tx.send(Some(tokio::time::Instant::now() + TAIL));
    let victim_burst = victim_burst.await.context("victim task")?;
    let window_secs = burst_start.elapsed().as_secs_f64();
    let usage_after = probes.sample().await;
    // Stop watching before closing the socket ourselves: only the server's doing counts.
    stop_watching.cancel();
    let seen = watcher.await.context("attacker reader")?;
    drop(attacker_socket);
    victim_reader.abort();
    let victim_disconnected_at_secs = *victim_gone.borrow();

    let mut total = Counters::default();
    for c in settled.by_event.values() {
        total.add(c);
    }
    if total.settled() != total.sent {
        bail!(
            "{} events sent but {} accounted for",
            total.sent,
            total.settled()
        );
    }
    Ok(Report {
        scenario: "hostile",
        events: args.hostile_events,
        seed_secs: 0.0,
        attacker: Attacker {
            emit_secs,
            settled_secs,
            last_ack_secs: settled.last_ack_secs,
            total,
            by_event: settled
                .by_event
                .into_iter()
                .map(|(k, c)| (k.name(), c))
                .collect(),
            ack_latency: settled.ack.summary(),
            new_messages_received: seen.new_messages,
            error_events: seen.error_events,
            first_error: seen.first_error.as_ref().map(|(_, e)| e.clone()),
            first_error_at_secs: seen.first_error.map(|(t, _)| t),
            disconnected_at_secs: seen.disconnected.map(|(t, _)| t),
            disconnected_by: seen.disconnected.map(|(_, by)| by),
        },
        victim_baseline,
        victim_burst,
        victim_new_messages: victim_messages.load(Ordering::Relaxed),
        victim_disconnected_at_secs,
        usage: Some(Usage::between(&usage_before, &usage_after, window_secs, 0)),
    })
}

/// What the attacker's events came to.
struct Settled {
    by_event: BTreeMap<Kind, Counters>,
    ack: ProbeRecord,
    last_ack_secs: f64,
}

/// Emits `events` acknowledged events on one socket without waiting between them, then
/// waits until every one is answered or lost (`ACK_WAIT` each, and no more than `ACK_IDLE`
/// without any answer). Returns the counts and the seconds it took to hand every emit to
/// the socket.
async fn burst(socket: &SioSender, events: u32, conversation: Uuid, t0: Instant) -> (Settled, f64) {
    let emitted = AtomicU64::new(0);
    let emit_done = OnceLock::new();
    let mut pending = FuturesUnordered::new();
    let mut by_event: BTreeMap<Kind, Counters> = BTreeMap::new();
    for i in 0..events {
        let kind = Kind::nth(i);
        by_event.entry(kind).or_default().sent += 1;
        let payload = kind.payload(i, conversation);
        let (emitted, emit_done) = (&emitted, &emit_done);
        pending.push(async move {
            // The first poll of `emit_with_ack` queues the frame, right after this count;
            // FuturesUnordered polls every new future on its first turns, so all of them go
            // out back to back, none waiting for an answer.
            let sent = Instant::now();
            if emitted.fetch_add(1, Ordering::Relaxed) + 1 == u64::from(events) {
                let _ = emit_done.set(t0.elapsed().as_secs_f64());
            }
            let ack = socket.emit_with_ack(kind.name(), &payload, ACK_WAIT).await;
            (kind, Outcome::of(&ack), sent.elapsed())
        });
    }
    let mut ack = ProbeRecord::new(PROBE_EVERY);
    let mut last_ack_secs = 0.0;
    while let Ok(Some((kind, outcome, took))) = tokio::time::timeout(ACK_IDLE, pending.next()).await
    {
        by_event.entry(kind).or_default().count(outcome);
        if outcome != Outcome::Unacked {
            ack.answered(took);
            last_ack_secs = t0.elapsed().as_secs_f64();
        }
    }
    drop(pending);
    // Given up after `ACK_IDLE` of silence: the rest will not be answered.
    for c in by_event.values_mut() {
        c.unacked += c.sent - c.settled();
    }
    let emit_secs = emit_done.get().copied().unwrap_or_default();
    (
        Settled {
            by_event,
            ack,
            last_ack_secs,
        },
        emit_secs,
    )
}

/// What the attacker's socket received.
#[derive(Default)]
struct Seen {
    new_messages: u64,
    error_events: u64,
    /// Seconds from the first emit, and the event's payload.
    first_error: Option<(f64, Value)>,
    /// Seconds from the first emit, and who ended it: "server" (a Socket.IO `disconnect`)
    /// or "transport" (the connection closed).
    disconnected: Option<(f64, &'static str)>,
}

/// Reads the attacker's socket until it closes or `stop`.
async fn watch_attacker(
    mut events: mpsc::UnboundedReceiver<Incoming>,
    t0: Instant,
    stop: CancellationToken,
) -> Seen {
    let mut seen = Seen::default();
    loop {
        let ev = tokio::select! {
            () = stop.cancelled() => break,
            ev = events.recv() => match ev {
                Some(ev) => ev,
                None => break,
            },
        };
        match ev {
            Incoming::Event { name, .. } if name == "newMessage" => seen.new_messages += 1,
            Incoming::Event { name, data } if name == "error" => {
                seen.error_events += 1;
                if seen.first_error.is_none() {
                    seen.first_error = Some((t0.elapsed().as_secs_f64(), data));
                }
            }
            Incoming::Event { .. } => {}
            Incoming::Disconnected => {
                seen.disconnected
                    .get_or_insert((t0.elapsed().as_secs_f64(), "server"));
            }
            Incoming::Closed => {
                seen.disconnected
                    .get_or_insert((t0.elapsed().as_secs_f64(), "transport"));
                break;
            }
        }
    }
    seen
}

/// Runs both victim probes until the deadline `end` holds (once it holds one).
async fn victim_window(
    victim: Arc<Victim>,
    end: watch::Receiver<Option<tokio::time::Instant>>,
) -> VictimWindow {
    let started = Instant::now();
    let (rest, socket_rtt) = tokio::join!(
        probe_loop(end.clone(), PROBE_EVERY, || rest_probe(&victim)),
        probe_loop(end, SOCKET_PROBE_EVERY, || socket_probe(&victim)),
    );
    VictimWindow {
        secs: started.elapsed().as_secs_f64(),
        rest: rest.summary(),
        socket_rtt: socket_rtt.summary(),
    }
}

/// Runs `probe` about every `every`, one at a time, until `end`'s deadline passes.
/// A probe gives how long its answer took, or why there was none (which ends the loop when
/// the socket is gone).
async fn probe_loop<F, Fut>(
    mut end: watch::Receiver<Option<tokio::time::Instant>>,
    every: Duration,
    mut probe: F,
) -> ProbeRecord
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Duration, (Duration, String)>>,
{
    let mut record = ProbeRecord::new(every);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let hard = tokio::time::Instant::now() + HARD_LIMIT;
    loop {
        let deadline = end.borrow_and_update().unwrap_or(hard);
        tokio::select! {
            _ = tick.tick() => {}
            () = tokio::time::sleep_until(deadline) => break,
            Ok(()) = end.changed() => continue,
        }
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        match probe().await {
            Ok(took) => record.answered(took),
            Err((took, why)) => {
                let gone = why == "closed";
                if why.parse::<u16>().is_ok() {
                    // A refusal is an answer too: its time counts.
                    record.answered(took);
                }
                record.failed(why);
                if gone {
                    break;
                }
            }
        }
    }
    record
}

/// `GET /users/me`: Ok(latency) on 2xx, else the status (or "timeout"/"transport").
async fn rest_probe(v: &Victim) -> Result<Duration, (Duration, String)> {
    let t = Instant::now();
    let resp = v
        .http
        .get(format!("{}/users/me", v.url))
        .bearer_auth(&v.token)
        .send()
        .await;
    let result = match resp {
        Ok(r) => {
            let status = r.status();
            // The body is part of the answer.
            match r.bytes().await {
                Ok(_) if status.is_success() => return Ok(t.elapsed()),
                Ok(_) => status.as_u16().to_string(),
                Err(e) if e.is_timeout() => "timeout".to_owned(),
                Err(_) => "transport".to_owned(),
            }
        }
        Err(e) if e.is_timeout() => "timeout".to_owned(),
        Err(_) => "transport".to_owned(),
    };
    Err((t.elapsed(), result))
}

/// `joinConversation` with an acknowledgement: Ok(round trip) when `ok`, else the refusal's
/// status (or "timeout"/"closed").
async fn socket_probe(v: &Victim) -> Result<Duration, (Duration, String)> {
    let t = Instant::now();
    let ack = v
        .socket
        .emit_with_ack(
            "joinConversation",
            &json!({ "conversationId": v.conversation }),
            PROBE_TIMEOUT,
        )
        .await;
    let took = t.elapsed();
    match (Outcome::of(&ack), ack) {
        (Outcome::Ok, _) => Ok(took),
        (Outcome::Refused(s), _) => Err((took, s.to_string())),
        (Outcome::Unacked, Err(e)) if format!("{e:#}").contains("timed out") => {
            Err((took, "timeout".to_owned()))
        }
        (Outcome::Unacked, _) => Err((took, "closed".to_owned())),
    }
}

fn failures(f: &BTreeMap<String, u64>) -> String {
    if f.is_empty() {
        return "-".to_owned();
    }
    f.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Report {
    pub fn print(&self, json: bool) {
        if json {
            println!("{}", serde_json::to_string_pretty(self).unwrap_or_default());
            return;
        }
        let a = &self.attacker;
        println!(
            "== chatty-load: hostile scenario ({} events from one socket)",
            self.events
        );
        println!(
            "emitted in {:.2}s, settled in {:.1}s; attacker acks p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
            a.emit_secs,
            a.settled_secs,
            a.ack_latency.p50_ms,
            a.ack_latency.p99_ms,
            a.ack_latency.max_ms
        );
        println!(
            "{:<18} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
            "attacker event", "sent", "ok", "429", "503", "other", "unacked"
        );
        let row = |name: &str, c: &Counters| {
            println!(
                "{name:<18} {:>7} {:>7} {:>7} {:>7} {:>7} {:>8}",
                c.sent, c.ok, c.limited, c.unavailable, c.refused_other, c.unacked
            );
        };
        for (name, c) in &a.by_event {
            row(name, c);
        }
        row("total", &a.total);
        if !a.total.refused_by_status.is_empty() {
            println!("other refusals by status: {:?}", a.total.refused_by_status);
        }
        println!(
            "attacker socket: {} newMessage received, {} error events{}; {}",
            a.new_messages_received,
            a.error_events,
            a.first_error
                .as_ref()
                .zip(a.first_error_at_secs)
                .map(|(e, t)| format!(" (first at {t:.2}s: {e})"))
                .unwrap_or_default(),
            match (a.disconnected_at_secs, a.disconnected_by) {
                (Some(t), Some(by)) => format!("disconnected by the {by} at {t:.2}s"),
                _ => "never disconnected".to_owned(),
            }
        );
        println!(
            "{:<28} {:>7} {:>9} {:>9} {:>9} {:>12}  failures",
            "victim probe", "count", "p50 ms", "p99 ms", "max ms", "p99 CO-corr"
        );
        for (window, w) in [
            ("baseline", &self.victim_baseline),
            ("burst", &self.victim_burst),
        ] {
            for (name, p) in [("GET /users/me", &w.rest), ("socket RTT", &w.socket_rtt)] {
                println!(
                    "{:<28} {:>7} {:>9.1} {:>9.1} {:>9.1} {:>12.1}  {}",
                    format!("{name} ({window} {:.1}s)", w.secs),
                    p.count,
                    p.p50_ms,
                    p.p99_ms,
                    p.max_ms,
                    p.p99_corrected_ms,
                    failures(&p.failures)
                );
            }
        }
        println!(
            "victim socket: {} newMessage received during the burst; {}",
            self.victim_new_messages,
            self.victim_disconnected_at_secs
                .map_or("never disconnected".to_owned(), |t| format!(
                    "DISCONNECTED at {t:.2}s"
                ))
        );
        if let Some(u) = &self.usage {
            let cpu = u.node_cpu_pcts();
            println!(
                "burst window {:.1}s: node CPU (of one core) {}{}; machine {} busy",
                u.secs,
                if cpu.is_empty() {
                    "-".to_owned()
                } else {
                    cpu.join(" ")
                },
                u.cpu_resolution_note(),
                u.machine_busy_pct
                    .map_or("-".to_owned(), |b| format!("{b:.0}%"))
            );
        }
        println!("seeded in {:.1}s", self.seed_secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_are_classified_by_ok_and_status() {
        assert_eq!(
            Outcome::of(&Ok(json!({ "ok": true, "data": {} }))),
            Outcome::Ok
        );
        let limited = json!({ "ok": false, "error": { "statusCode": 429, "code": "rate_limited", "message": "slow down" } });
        assert_eq!(Outcome::of(&Ok(limited)), Outcome::Refused(429));
        assert_eq!(
            Outcome::of(&Ok(json!({ "ok": false }))),
            Outcome::Refused(0)
        );
        assert_eq!(
            Outcome::of(&Err(anyhow::anyhow!("ack timed out"))),
            Outcome::Unacked
        );
    }

    #[test]
    fn counters_sort_refusals_and_add_up() {
        let mut send = Counters {
            sent: 5,
            ..Counters::default()
        };
        for o in [
            Outcome::Ok,
            Outcome::Refused(429),
            Outcome::Refused(503),
            Outcome::Refused(400),
            Outcome::Unacked,
        ] {
            send.count(o);
        }
        assert_eq!(
            (
                send.ok,
                send.limited,
                send.unavailable,
                send.refused_other,
                send.unacked
            ),
            (1, 1, 1, 1, 1)
        );
        assert_eq!(send.refused_by_status, BTreeMap::from([(400, 1)]));
        assert_eq!(send.settled(), send.sent);
        let mut sync = Counters {
            sent: 1,
            ..Counters::default()
        };
        sync.count(Outcome::Refused(400));
        let mut total = Counters::default();
        total.add(&send);
        total.add(&sync);
        assert_eq!((total.sent, total.refused_other), (6, 2));
        assert_eq!(total.refused_by_status, BTreeMap::from([(400, 2)]));
    }

    #[test]
    fn a_stall_counts_once_in_p99_but_for_every_probe_it_held_up_once_corrected() {
        let mut r = ProbeRecord::new(PROBE_EVERY);
        for _ in 0..999 {
            r.answered(Duration::from_millis(1));
        }
        r.answered(Duration::from_secs(5));
        let p = r.summary();
        assert!(p.p99_ms < 2.0, "{p:?}");
        assert!(p.max_ms >= 4_990.0, "{p:?}");
        // 5 s at one probe per 10 ms: ~500 probes waited, a third of all of them.
        assert!(p.p99_corrected_ms > 4_000.0, "{p:?}");
    }

    #[test]
    fn the_burst_is_mostly_send_message() {
        let mix: Vec<Kind> = (0..1000).map(Kind::nth).collect();
        let count = |k| mix.iter().filter(|m| **m == k).count();
        assert_eq!(count(Kind::SendMessage), 800);
        assert_eq!(count(Kind::Sync), 100);
        assert_eq!(count(Kind::JoinConversation), 100);
        let conv = Uuid::new_v4();
        assert_eq!(
            Kind::Sync.payload(8, conv),
            json!({ "conversations": { conv.to_string(): 0 } })
        );
    }
}
