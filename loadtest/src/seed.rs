use std::time::Duration;

use anyhow::Context;
use chatty::{
    auth::{Hasher, RefreshToken, Tokens},
    domain::Password,
    fabric::{Fabric, RedisTarget, Session},
};
use chatty_testkit::Api;
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{Args, Device, World};

pub const PASSWORD: &str = "load-test-password";

/// Group index of each user: consecutive users share a group; a short tail joins the last.
fn grouping(users: usize, group_size: usize) -> (usize, Vec<usize>) {
    let groups = (users / group_size).max(1);
    (
        groups,
        (0..users)
            .map(|u| (u / group_size).min(groups - 1))
            .collect(),
    )
}

/// Registers `name` through the API (waiting out 429s: registrations are limited per
/// client address, and every load tool request comes from the same one); its user id and
/// access token.
pub async fn register(
    http: &reqwest::Client,
    url: &str,
    name: String,
    device: &str,
) -> anyhow::Result<(Uuid, String)> {
    let signed = api(http, url)
        .sign_up(&name, "load.test", PASSWORD, Some(device))
        .await?;
    Ok((signed.user_id, signed.access_token))
}

/// Creates a group conversation of `token`'s user with `others`; its id.
pub async fn create_group(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    name: String,
    others: Vec<Uuid>,
) -> anyhow::Result<Uuid> {
    api(http, url).create_group(token, &name, &others).await
}

/// The typed client of `url` over the run's shared HTTP client.
fn api(http: &reqwest::Client, url: &str) -> Api {
    Api::from_client(url, http.clone())
}

/// Through the public API, as real clients would: register, log in extra devices, create groups.
pub async fn by_api(args: &Args, http: &reqwest::Client, run: &str) -> anyhow::Result<World> {
    let users = args.users as usize;
    // Registration is dominated by argon2 on the server; more parallelism only queues.
    let registered: Vec<anyhow::Result<(Uuid, String)>> = stream::iter(0..users)
        .map(|i| register(http, &args.url, format!("lt{run}_{i}"), "load-0"))
        .buffered(8)
        .collect()
        .await;
    let mut user_ids = Vec::with_capacity(users);
    let mut devices = Vec::with_capacity(users * args.devices as usize);
    for (i, r) in registered.into_iter().enumerate() {
        let (id, token) = r?;
        user_ids.push(id);
        devices.push(Device { user: i, token });
    }
    if args.devices > 1 {
        let logins: Vec<anyhow::Result<Device>> = stream::iter((0..users).flat_map(|u| (1..args.devices).map(move |d| (u, d))))
            .map(|(u, d)| {
                let http = http.clone();
                let url = format!("{}/auth/login", args.url);
                let name = format!("lt{run}_{u}");
                async move {
                    let body: Value = http
                        .post(url)
                        .json(&json!({ "username": name, "password": PASSWORD, "device": format!("load-{d}") }))
                        .send()
                        .await?
                        .error_for_status()?
                        .json()
                        .await?;
                    Ok(Device { user: u, token: body["access_token"].as_str().context("token")?.to_owned() })
                }
            })
            .buffered(8)
            .collect()
            .await;
        for d in logins {
            devices.push(d?);
        }
    }
    let (group_count, group_of) = grouping(users, args.group_size as usize);
    let creators: Vec<(usize, Vec<Uuid>)> = (0..group_count)
        .map(|g| {
            let members: Vec<usize> = (0..users).filter(|u| group_of[*u] == g).collect();
            (
                members[0],
                members[1..].iter().map(|m| user_ids[*m]).collect(),
            )
        })
        .collect();
    let groups: Vec<anyhow::Result<Uuid>> = stream::iter(creators.into_iter().enumerate())
        .map(|(g, (creator, others))| {
            let token = &devices[creator].token;
            create_group(http, &args.url, token, format!("load {run} {g}"), others)
        })
        .buffered(16)
        .collect()
        .await;
    let groups = groups.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(World {
        usernames: (0..users).map(|i| format!("lt{run}_{i}")).collect(),
        user_ids,
        devices,
        group_of,
        groups,
    })
}

/// Straight into PostgreSQL and Redis: one shared password hash, sessions written the way a
/// node writes them (durable in PostgreSQL, cached in the nodes' Redis or Redis Cluster),
/// tokens signed with the cluster's key.
pub async fn by_sql(args: &Args, run: &str) -> anyhow::Result<World> {
    let db_url = args
        .database_url
        .as_deref()
        .context("--seed-sql needs DATABASE_URL")?;
    let target = if args.on_redis_cluster() {
        RedisTarget::Cluster(args.redis_urls())
    } else {
        RedisTarget::Single(args.redis_url.clone().context(
            "--seed-sql needs REDIS_URL or REDIS_CLUSTER_URLS (the nodes' session cache)",
        )?)
    };
    let secret = args
        .jwt_secret
        .as_deref()
        .context("--seed-sql needs JWT_SECRET")?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(db_url)
        .await
        .context("PostgreSQL")?;
    // Seeded tokens live a day, so that no run outlives them; a revocation would be marked
    // in the cache as long.
    let token_ttl = Duration::from_secs(24 * 3600);
    let sessions = Fabric::redis(&target, &args.redis_prefix)
        .await?
        .with_durable_sessions(pool.clone(), token_ttl)
        .sessions;
    let tokens = Tokens::new(secret, token_ttl);
    let hash = Hasher::new(1, Duration::from_secs(60))
        .hash(Password::parse(PASSWORD.to_owned()).map_err(|e| anyhow::anyhow!("{e}"))?)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    let users = args.users as usize;
    let names: Vec<String> = (0..users).map(|i| format!("lt{run}_{i}")).collect();
    let emails: Vec<String> = names.iter().map(|n| format!("{n}@load.test")).collect();
    let user_ids: Vec<Uuid> = sqlx::query_scalar(
        "insert into users (username, email, password_hash) \
         select n, e, $3 from unnest($1::text[], $2::text[]) with ordinality as t(n, e, i) order by i \
         returning user_id",
    )
    .bind(&names)
    .bind(&emails)
    .bind(&hash)
    .fetch_all(&pool)
    .await
    .context("inserting users")?;
    // `returning` keeps insert order for a single-statement insert from an ordered select.
    let (group_count, group_of) = grouping(users, args.group_size as usize);
    let group_names: Vec<String> = (0..group_count)
        .map(|g| format!("load {run} {g}"))
        .collect();
    let creators: Vec<Uuid> = (0..group_count)
        .map(|g| user_ids[group_of.iter().position(|x| *x == g).unwrap_or(0)])
        .collect();
    let groups: Vec<Uuid> = sqlx::query_scalar(
        "insert into conversations (name, is_group, created_by) \
         select n, true, c from unnest($1::text[], $2::uuid[]) with ordinality as t(n, c, i) order by i \
         returning conversation_id",
    )
    .bind(&group_names)
    .bind(&creators)
    .fetch_all(&pool)
    .await
    .context("inserting groups")?;
    let member_conv: Vec<Uuid> = group_of.iter().map(|g| groups[*g]).collect();
    let roles: Vec<&str> = (0..users)
        .map(|u| {
            if creators.contains(&user_ids[u]) {
                "owner"
            } else {
                "member"
            }
        })
        .collect();
    sqlx::query(
        "insert into conversation_participants (conversation_id, user_id, role) \
         select * from unnest($1::uuid[], $2::uuid[], $3::text[])",
    )
    .bind(&member_conv)
    .bind(&user_ids)
    .bind(&roles)
    .execute(&pool)
    .await
    .context("inserting participants")?;

    let now = chrono::Utc::now();
    let pairs: Vec<(usize, u32)> = (0..users)
        .flat_map(|u| (0..args.devices).map(move |d| (u, d)))
        .collect();
    let devices: Vec<anyhow::Result<Device>> = stream::iter(pairs)
        .map(|(u, d)| {
            let sessions = sessions.clone();
            let tokens = tokens.clone();
            let user = user_ids[u];
            async move {
                let sid = Uuid::new_v4();
                let (token, claims) = tokens
                    .issue(user, sid)
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                sessions
                    .create(
                        &Session {
                            session_id: sid,
                            user_id: user,
                            device: format!("load-{d}"),
                            created_at: now,
                            last_seen_at: now,
                            expires_at: chrono::DateTime::from_timestamp(claims.exp, 0)
                                .unwrap_or(now),
                        },
                        &RefreshToken::issue(sid).1,
                    )
                    .await?;
                Ok(Device { user: u, token })
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let devices = devices.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    Ok(World {
        usernames: names,
        user_ids,
        devices,
        group_of,
        groups,
    })
}
