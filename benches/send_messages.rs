//! Stored messages per second through `POST /messages`.
//!
//! Starts one node in-process on a fresh database (`chatty_bench_<uuid>` on
//! `CHATTY_BENCH_PG`, default `postgres://postgres@127.0.0.1:5432`) and a fresh Redis
//! prefix (`CHATTY_BENCH_REDIS`, default `redis://127.0.0.1:6379`; `none` runs the node
//! without Redis, with in-process sessions and fan-out), registers users, puts
//! them in groups, then lets concurrent senders post messages over keep-alive HTTP with
//! TCP_NODELAY for a fixed time. Prints stored messages per second (counted in
//! PostgreSQL) and request latency percentiles, then drops the database and the keys.
//!
//! `cargo bench --bench send_messages`; tune with `CHATTY_BENCH_SENDERS` (100),
//! `CHATTY_BENCH_GROUP_SIZE` (5), `CHATTY_BENCH_SECS` (10), `CHATTY_BENCH_WARMUP_SECS` (2),
//! `CHATTY_BENCH_DB_CONNS` (20).

use std::{
    env,
    str::FromStr,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chatty::{config::Settings, startup::Application};
use chatty_testkit::Api;
use clap::Parser;
use futures_util::{StreamExt, future::join_all, stream};
use serde_json::{Value, json};
use uuid::Uuid;

const JWT_SECRET: &str = "bench-secret-that-is-long-enough-for-hs256-0123456789";

#[derive(Parser)]
struct Wrapper {
    #[command(flatten)]
    settings: Settings,
}

fn var<T: FromStr>(name: &str, default: T) -> T {
    env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Config {
    pg: String,
    redis: String,
    senders: usize,
    group_size: usize,
    secs: u64,
    warmup_secs: u64,
    db_conns: u32,
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; this binary takes its knobs from the environment.
    let cfg = Config {
        pg: env::var("CHATTY_BENCH_PG")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
        redis: env::var("CHATTY_BENCH_REDIS")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
        senders: var("CHATTY_BENCH_SENDERS", 100usize).max(2),
        group_size: var("CHATTY_BENCH_GROUP_SIZE", 5usize).max(2),
        secs: var("CHATTY_BENCH_SECS", 10u64).max(1),
        warmup_secs: var("CHATTY_BENCH_WARMUP_SECS", 2u64),
        db_conns: var("CHATTY_BENCH_DB_CONNS", 20u32).max(1),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(cfg))
}

async fn run(cfg: Config) -> anyhow::Result<()> {
    let id = Uuid::new_v4().simple().to_string();
    let db_name = format!("chatty_bench_{id}");
    let prefix = format!("bench:{id}:");
    let result = bench(&cfg, &db_name, &prefix).await;
    cleanup(&cfg, &db_name, &prefix).await;
    result
}

async fn bench(cfg: &Config, db_name: &str, prefix: &str) -> anyhow::Result<()> {
    let mut args = vec![
        "chatty".to_owned(),
        "--database-url".to_owned(),
        format!("{}/{db_name}", cfg.pg),
        "--redis-prefix".to_owned(),
        prefix.to_owned(),
        "--addr".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--jwt-secret".to_owned(),
        JWT_SECRET.to_owned(),
        "--db-max-connections".to_owned(),
        cfg.db_conns.to_string(),
        // Each sender posts back to back, far past a person's message limit; the limit's
        // own cost (one Redis round trip per send) is still paid.
        "--limit-sends".to_owned(),
        "1000000/1s".to_owned(),
        "--limit-address-signups".to_owned(),
        "1000000/1h".to_owned(),
    ];
    if cfg.redis != "none" {
        args.extend(["--redis-url".to_owned(), cfg.redis.clone()]);
    }
    let settings = Wrapper::try_parse_from(args)?.settings;
    let app = Application::build(settings)
        .await
        .context("starting the node")?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let db = app.state().db.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));

    let api = Api::with_pool(base.clone(), cfg.senders * 2);
    let http = api.http().clone();

    // Users: one per sender (registration is argon2-bound; a few at a time is fastest).
    let setup = Instant::now();
    let users: Vec<anyhow::Result<(Uuid, String)>> = stream::iter(0..cfg.senders)
        .map(|i| {
            let api = api.clone();
            let name = format!("b{}_{i}", &prefix[6..14]);
            async move {
                let signed = api
                    .sign_up(&name, "bench.test", "bench-password", None)
                    .await?;
                Ok((signed.user_id, signed.access_token))
            }
        })
        .buffered(4)
        .collect()
        .await;
    let users = users.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    // Groups of `group_size` consecutive users; each sender posts into its own group.
    let mut sender_conv = Vec::with_capacity(users.len());
    for chunk in users.chunks(cfg.group_size) {
        let (_, owner_token) = &chunk[0];
        let others: Vec<Uuid> = chunk[1..].iter().map(|(id, _)| *id).collect();
        let resp = http
            .post(format!("{base}/conversations"))
            .bearer_auth(owner_token)
            .json(&json!({ "name": "bench", "is_group": true, "participant_ids": others }))
            .send()
            .await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        if !status.is_success() {
            bail!("create group: {status} {body}");
        }
        let conv: Uuid = body["conversation_id"]
            .as_str()
            .context("conversation id")?
            .parse()?;
        sender_conv.extend(chunk.iter().map(|(_, token)| (token.clone(), conv)));
    }
    let conversations = users.len().div_ceil(cfg.group_size);
    eprintln!(
        "setup: {} users in {conversations} groups in {:.1}s",
        users.len(),
        setup.elapsed().as_secs_f64()
    );

    // Warm-up (connections, statement caches), then the measured run.
    drive(
        &http,
        &base,
        &sender_conv,
        Duration::from_secs(cfg.warmup_secs),
    )
    .await?;
    let before = stored(&db).await?;
    let started = Instant::now();
    let (mut latencies, errors) =
        drive(&http, &base, &sender_conv, Duration::from_secs(cfg.secs)).await?;
    let elapsed = started.elapsed();
    let after = stored(&db).await?;

    let stored_now = after - before;
    latencies.sort_unstable();
    let pct = |p: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let i = ((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i] as f64 / 1000.0
    };
    println!(
        "send_messages: {} senders, {conversations} group conversations of {}, redis {}",
        cfg.senders, cfg.group_size, cfg.redis
    );
    println!("  duration          {:.2} s", elapsed.as_secs_f64());
    println!("  requests ok       {}", latencies.len());
    println!("  errors            {errors}");
    println!("  stored messages   {stored_now}");
    println!(
        "  stored msgs/s     {:.0}",
        stored_now as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  latency ms        p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.50),
        pct(0.90),
        pct(0.99),
        pct(1.0)
    );

    let _ = stop_tx.send(());
    let _ = server.await;
    if errors > 0 {
        bail!("{errors} requests failed");
    }
    Ok(())
}

/// Every sender posts back to back until `duration` is over. Returns the latencies (µs) of
/// successful requests and the number of failures.
async fn drive(
    http: &reqwest::Client,
    base: &str,
    senders: &[(String, Uuid)],
    duration: Duration,
) -> anyhow::Result<(Vec<u64>, usize)> {
    let deadline = Instant::now() + duration;
    let url = format!("{base}/messages");
    let tasks = senders.iter().enumerate().map(|(i, (token, conv))| {
        let (http, url, token, conv) = (http.clone(), url.clone(), token.clone(), *conv);
        tokio::spawn(async move {
            let mut lat = Vec::with_capacity(4096);
            let mut errors = 0usize;
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = json!({
                    "content": format!("message {n} from sender {i}"),
                    "conversation_id": conv,
                    "client_msg_id": Uuid::new_v4(),
                });
                let t = Instant::now();
                match http.post(&url).bearer_auth(&token).json(&body).send().await {
                    Ok(resp) if resp.status() == reqwest::StatusCode::CREATED => {
                        // Read the body: the request is over when the client has the message.
                        let _ = resp.bytes().await;
                        lat.push(t.elapsed().as_micros() as u64);
                    }
                    Ok(resp) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!(
                                "sender {i}: {} {}",
                                resp.status(),
                                resp.text().await.unwrap_or_default()
                            );
                        }
                    }
                    Err(e) => {
                        errors += 1;
                        if errors == 1 {
                            eprintln!("sender {i}: {e}");
                        }
                    }
                }
            }
            (lat, errors)
        })
    });
    let mut latencies = Vec::new();
    let mut errors = 0;
    for r in join_all(tasks).await {
        let (lat, e) = r?;
        latencies.extend(lat);
        errors += e;
    }
    Ok((latencies, errors))
}

async fn stored(db: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar::<_, i64>("select count(*) from messages")
            .fetch_one(db)
            .await?,
    )
}

/// Drops the bench database and Redis keys, whatever happened before.
async fn cleanup(cfg: &Config, db_name: &str, prefix: &str) {
    if let Ok(mut conn) =
        <sqlx::PgConnection as sqlx::Connection>::connect(&format!("{}/postgres", cfg.pg)).await
    {
        let sql = format!("drop database if exists \"{db_name}\" with (force)");
        if let Err(e) = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
        {
            eprintln!("cannot drop {db_name}: {e}");
        }
    }
    if cfg.redis == "none" {
        return;
    }
    let keys = async {
        let client = redis::Client::open(cfg.redis.as_str())?;
        let mut c = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut c)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut c)
                .await?;
        }
        redis::RedisResult::Ok(())
    };
    if let Err(e) = keys.await {
        eprintln!("cannot delete Redis keys under {prefix}: {e}");
    }
}
