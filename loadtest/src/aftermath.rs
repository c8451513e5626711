//! What a failure must not leave behind, checked at the end of a chaos run while the
//! devices are still connected: no device logged out (the token each started with still
//! works, no reconnect was refused for want of a session, no send refused with 401), and
//! every user with a connected device shown online within the presence lease after the
//! last failure. Losing Redis's data, by a restart without persistence or a failover, must
//! do neither: PostgreSQL is the truth and Redis is disposable (DESIGN, "Scaling out").

use std::{
    collections::HashSet,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::stats::{SEND_UNAUTHORIZED, SESSION_REFUSALS};

/// Requests at once: enough to check thousands of devices in seconds, few enough not to
/// queue behind the nodes' password-free but still real request handling.
const CONCURRENCY: usize = 32;
/// Beyond the lease: a node notices an expired lease on its next sweep, and a connection it
/// re-registers is announced on its next heartbeat.
const SLACK: Duration = Duration::from_secs(5);
/// Whatever the lease, presence gets this long once the check starts: a device that came
/// back just before it is announced on the next heartbeat.
const MIN_WAIT: Duration = Duration::from_secs(5);
/// Attempts per token before it counts as unanswered rather than live or logged out.
const ATTEMPTS: u32 = 3;

/// What the check found.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct Aftermath {
    /// Devices whose starting token was tried (every device seeded).
    pub devices_checked: u64,
    /// Of them, refused with 401: logged out.
    pub logged_out: u64,
    /// Of them, with no usable answer after retries (network errors, 5xx): neither live
    /// nor logged out.
    pub unanswered: u64,
    /// Reconnects refused during the run because the device's session was gone.
    pub reconnects_refused_for_session: u64,
    /// Sends refused with 401 during the run.
    pub sends_unauthorized: u64,
    /// Users with a connected device at the end: each must show online.
    pub expected_online: u64,
    /// Of them, not online by the deadline.
    pub not_online: u64,
    /// Seconds after the last failure when all of them showed online (None: never).
    pub presence_settled_after_secs: Option<f64>,
    /// Presence could not be read: no token worked, not even a fresh login.
    pub presence_unread: bool,
    /// Seconds after the last failure presence was given: the lease plus slack.
    pub presence_deadline_secs: f64,
}

impl Aftermath {
    pub fn failed(&self) -> bool {
        self.logged_out > 0
            || self.reconnects_refused_for_session > 0
            || self.sends_unauthorized > 0
            || self.not_online > 0
            || self.presence_unread
    }

    pub fn print(&self) {
        println!(
            "after the failures: {} of {} devices logged out ({} unanswered), {} reconnects refused for a \
             missing session, {} sends refused with 401; {} of {} users with a connected device not online \
             ({}, deadline {:.0}s after the last failure){}",
            self.logged_out,
            self.devices_checked,
            self.unanswered,
            self.reconnects_refused_for_session,
            self.sends_unauthorized,
            self.not_online,
            self.expected_online,
            match (self.presence_unread, self.presence_settled_after_secs) {
                (true, _) => "presence unread: no token worked".to_owned(),
                (false, None) => "never all online".to_owned(),
                (false, Some(s)) => format!("all online {s:.1}s after the last failure"),
            },
            self.presence_deadline_secs,
            if self.failed() { "  FAILED" } else { "" }
        );
    }
}

/// What one answer says about a token: Some(true) live, Some(false) logged out, None no
/// verdict (try again).
fn verdict(status: Option<u16>) -> Option<bool> {
    match status? {
        200..=299 => Some(true),
        401 => Some(false),
        _ => None,
    }
}

/// Until when presence is given: the lease plus slack after the last failure, and never
/// less than `MIN_WAIT` from now.
fn presence_deadline(last_failure: Instant, ttl: Duration, now: Instant) -> Instant {
    (last_failure + ttl + SLACK).max(now + MIN_WAIT)
}

/// The run's devices: (user index, the token it started with).
pub struct Devices<'a> {
    pub tokens: &'a [(usize, String)],
    /// Users with at least one device connected now.
    pub connected_users: &'a HashSet<usize>,
    pub user_ids: &'a [Uuid],
    /// Per user index, to log one in afresh when no starting token works any more.
    pub usernames: &'a [String],
}

/// None when the server has no `/users/me` to ask (the Node.js reference serves Socket.IO
/// only): there is nothing to check a token or presence with.
pub async fn check(
    http: &reqwest::Client,
    url: &str,
    devices: &Devices<'_>,
    last_failure: Instant,
    ttl: Duration,
) -> Option<Aftermath> {
    let (_, first) = devices.tokens.first()?;
    let probe = http
        .get(format!("{url}/users/me"))
        .bearer_auth(first)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    if probe.is_ok_and(|r| r.status() == reqwest::StatusCode::NOT_FOUND) {
        return None;
    }
    let mut out = Aftermath {
        devices_checked: devices.tokens.len() as u64,
        reconnects_refused_for_session: SESSION_REFUSALS.load(Ordering::Relaxed),
        sends_unauthorized: SEND_UNAUTHORIZED.load(Ordering::Relaxed),
        expected_online: devices.connected_users.len() as u64,
        presence_deadline_secs: (ttl + SLACK).as_secs_f64(),
        ..Aftermath::default()
    };
    let verdicts: Vec<Option<bool>> = stream::iter(devices.tokens)
        .map(|(_, token)| token_is_live(http, url, token))
        .buffered(CONCURRENCY)
        .collect()
        .await;
    let mut viewer = None;
    for ((_, token), v) in devices.tokens.iter().zip(&verdicts) {
        match v {
            Some(true) => {
                viewer.get_or_insert(token.as_str());
            }
            Some(false) => out.logged_out += 1,
            None => out.unanswered += 1,
        }
    }

    // Presence as any other user sees it, read with a token known to work.
    let mut pending: Vec<Uuid> = devices
        .connected_users
        .iter()
        .map(|u| devices.user_ids[*u])
        .collect();
    let viewer = match viewer {
        Some(t) => t.to_owned(),
        None => match fresh_login(http, url, devices.usernames).await {
            Some(t) => t,
            None => {
                out.presence_unread = true;
                return Some(out);
            }
        },
    };
    let viewer = viewer.as_str();
    let deadline = presence_deadline(last_failure, ttl, Instant::now());
    loop {
        let online: Vec<bool> = stream::iter(&pending)
            .map(|id| shows_online(http, url, viewer, *id))
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut still = online.iter();
        pending.retain(|_| !still.next().copied().unwrap_or(false));
        if pending.is_empty() {
            out.presence_settled_after_secs = Some(last_failure.elapsed().as_secs_f64());
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    out.not_online = pending.len() as u64;
    Some(out)
}

async fn token_is_live(http: &reqwest::Client, url: &str, token: &str) -> Option<bool> {
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let status = http
            .get(format!("{url}/users/me"))
            .bearer_auth(token)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()
            .map(|r| r.status().as_u16());
        if let Some(v) = verdict(status) {
            return Some(v);
        }
    }
    None
}

/// A token of any seeded user, from a new login (every seeded user has the same password).
async fn fresh_login(http: &reqwest::Client, url: &str, usernames: &[String]) -> Option<String> {
    for name in usernames.iter().take(3) {
        let answer = http
            .post(format!("{url}/auth/login"))
            .json(&serde_json::json!({ "username": name, "password": crate::seed::PASSWORD, "device": "load-observer" }))
            .timeout(Duration::from_secs(30))
            .send()
            .await;
        if let Ok(a) = answer {
            if let Ok(body) = a.json::<Value>().await {
                if let Some(t) = body["access_token"].as_str() {
                    return Some(t.to_owned());
                }
            }
        }
    }
    None
}

async fn shows_online(http: &reqwest::Client, url: &str, token: &str, user: Uuid) -> bool {
    let answer = http
        .get(format!("{url}/users/{user}"))
        .bearer_auth(token)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    let Ok(answer) = answer else { return false };
    answer
        .json::<Value>()
        .await
        .is_ok_and(|u| u["status"] == "online")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_401_says_a_device_was_logged_out_and_errors_get_no_verdict() {
        assert_eq!(verdict(Some(200)), Some(true));
        assert_eq!(verdict(Some(401)), Some(false));
        assert_eq!(verdict(Some(503)), None);
        assert_eq!(verdict(Some(429)), None);
        assert_eq!(verdict(None), None);
    }

    #[test]
    fn presence_gets_the_lease_and_slack_after_the_last_failure_and_a_few_seconds_at_least() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(30);
        assert_eq!(presence_deadline(t0, ttl, t0), t0 + ttl + SLACK);
        let late = t0 + Duration::from_secs(60);
        assert_eq!(presence_deadline(t0, ttl, late), late + MIN_WAIT);
    }

    #[test]
    fn a_logged_out_device_a_refused_reconnect_or_a_user_shown_offline_fails_the_run() {
        let clean = Aftermath {
            devices_checked: 10,
            unanswered: 2,
            expected_online: 5,
            presence_settled_after_secs: Some(3.0),
            ..Aftermath::default()
        };
        assert!(!clean.failed());
        for broken in [
            Aftermath {
                logged_out: 1,
                ..clean.clone()
            },
            Aftermath {
                reconnects_refused_for_session: 1,
                ..clean.clone()
            },
            Aftermath {
                sends_unauthorized: 1,
                ..clean.clone()
            },
            Aftermath {
                not_online: 1,
                ..clean.clone()
            },
            Aftermath {
                presence_unread: true,
                ..clean.clone()
            },
        ] {
            assert!(broken.failed(), "{broken:?}");
        }
    }
}
