//! Client-driven costs and their limits (DESIGN "Limits"): the names the cluster-wide
//! limiters count under, the refusal counter, and the per-socket bounds. Every limit is a
//! setting with a documented default (`docs/security.md`); every refusal is counted in
//! `limit_refusals_total` by `reason`.

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::{
    error::{ApiError, ApiResult},
    fabric::{LimitStore, Rate, Verdict},
};

/// What refused a request: the `reason` label of `limit_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Messages per user (REST and sockets, all devices).
    Sends,
    /// Typing events per user and conversation.
    Typing,
    /// Client events per socket.
    SocketEvents,
    /// Client events one socket has in flight.
    SocketInFlight,
    /// A socket that could not take its acknowledgements, disconnected.
    AckOverflow,
    /// Sockets per user across the cluster.
    SocketsPerUser,
    /// Failed logins per account.
    LoginAccount,
    /// Failed logins per client address.
    LoginAddress,
    /// Sign-ups per client address.
    SignupAddress,
    /// Password hashing at capacity.
    HashBusy,
}

impl Limit {
    pub const ALL: [Self; 10] = [
        Self::Sends,
        Self::Typing,
        Self::SocketEvents,
        Self::SocketInFlight,
        Self::AckOverflow,
        Self::SocketsPerUser,
        Self::LoginAccount,
        Self::LoginAddress,
        Self::SignupAddress,
        Self::HashBusy,
    ];

    pub fn reason(self) -> &'static str {
        match self {
            Self::Sends => "sends",
            Self::Typing => "typing",
            Self::SocketEvents => "socket_events",
            Self::SocketInFlight => "socket_in_flight",
            Self::AckOverflow => "ack_overflow",
            Self::SocketsPerUser => "sockets_per_user",
            Self::LoginAccount => "login_account",
            Self::LoginAddress => "login_address",
            Self::SignupAddress => "signup_address",
            Self::HashBusy => "hash_busy",
        }
    }

    /// What the client is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::Sends => "too many messages: slow down",
            Self::Typing => "too many typing events",
            Self::SocketEvents => "too many events on this connection: slow down",
            Self::SocketInFlight => "slow down: too many events still being processed",
            Self::AckOverflow => {
                "acknowledgements could not be delivered: the client reads too slowly"
            }
            Self::SocketsPerUser => "too many connections for this user",
            Self::LoginAccount => "too many failed logins for this account: try again later",
            Self::LoginAddress => "too many failed logins from this address: try again later",
            Self::SignupAddress => "too many sign-ups from this address: try again later",
            Self::HashBusy => "too many logins at once: retry shortly",
        }
    }

    /// Counts one refusal.
    pub fn refused(self) {
        metrics::counter!(crate::metrics::names::LIMIT_REFUSALS, "reason" => self.reason())
            .increment(1);
    }

    /// Counts the refusal and builds its 429.
    pub fn refusal(self, retry_after: Duration) -> ApiError {
        self.refused();
        ApiError::rate_limited(self.message(), retry_after)
    }
}

/// Takes one hit from the cluster-wide limiter `key`, or answers 429 for `limit`.
pub async fn take(store: &dyn LimitStore, limit: Limit, key: &str, rate: Rate) -> ApiResult<()> {
    match store.take(key, rate).await? {
        Verdict::Allowed => Ok(()),
        Verdict::Refused { retry_after } => Err(limit.refusal(retry_after)),
    }
}

/// Limiter names. One function each, so that every caller of a limit counts under the
/// same name.
pub mod key {
    use super::{IpAddr, Uuid};

    pub fn sends(user: Uuid) -> String {
        format!("sends:{user}")
    }

    pub fn typing(user: Uuid, conversation: Uuid) -> String {
        format!("typing:{user}:{conversation}")
    }

    /// Re-announcements of one message by retried sends.
    pub fn announce(message: Uuid) -> String {
        format!("announce:{message}")
    }

    /// Failed logins of an existing account, whichever spelling named it.
    pub fn login_account(user: Uuid) -> String {
        format!("login:account:{user}")
    }

    /// Failed logins naming no account; `name` is bounded and lowercased by the caller.
    pub fn login_unknown(name: &str) -> String {
        format!("login:name:{name}")
    }

    pub fn login_address(addr: IpAddr) -> String {
        format!("login:address:{}", address(addr))
    }

    pub fn signup_address(addr: IpAddr) -> String {
        format!("signup:address:{}", address(addr))
    }

    /// An address as the limits count it: IPv4 whole, IPv6 by its /64, which one client
    /// usually holds all of.
    fn address(addr: IpAddr) -> String {
        match addr {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
        }
    }
}

/// One socket's own bounds: events per period and events in flight. A socket lives on one
/// node, so these are exact without a round trip. Shared by the socket's handlers through
/// its extensions; dropped with the socket.
#[derive(Debug)]
pub struct SocketBudget {
    rate: Rate,
    max_in_flight: u32,
    in_flight: AtomicU32,
    /// The event limiter's theoretical arrival time; std Mutex, never held across an await.
    tat: Mutex<Instant>,
    /// Set once the socket could not take an acknowledgement: it is being disconnected,
    /// and later events are not answered.
    overflowed: AtomicBool,
}

impl SocketBudget {
    pub fn new(rate: Rate, max_in_flight: u32) -> Arc<Self> {
        Arc::new(Self {
            rate,
            max_in_flight: max_in_flight.max(1),
            in_flight: AtomicU32::new(0),
            tat: Mutex::new(Instant::now()),
            overflowed: AtomicBool::new(false),
        })
    }

    /// Admits one event, or says which bound refused it. The returned guard holds the
    /// event's in-flight slot until the event is answered.
    pub fn admit(self: &Arc<Self>) -> Result<InFlight, ApiError> {
        {
            let mut tat = self
                .tat
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let interval = self.rate.interval();
            let next = (*tat).max(now) + interval;
            let allowance = interval * self.rate.burst;
            if next - now > allowance {
                return Err(Limit::SocketEvents.refusal(next - now - allowance));
            }
            *tat = next;
        }
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let guard = InFlight(self.clone());
        if before >= self.max_in_flight {
            return Err(Limit::SocketInFlight.refusal(Duration::from_secs(1)));
        }
        Ok(guard)
    }

    /// Marks the socket as unable to take its acknowledgements; true the first time.
    pub fn overflow(&self) -> bool {
        !self.overflowed.swap(true, Ordering::AcqRel)
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Acquire)
    }
}

/// One event's in-flight slot, released when dropped.
#[derive(Debug)]
pub struct InFlight(Arc<SocketBudget>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_budget_refuses_past_its_burst_and_its_in_flight_bound() {
        let budget = SocketBudget::new(Rate::new(5, Duration::from_secs(60)), 3);
        let held: Vec<_> = (0..3)
            .map(|_| budget.admit().expect("within bounds"))
            .collect();
        let err = budget.admit().expect_err("fourth in flight");
        assert_eq!(err.body()["message"], Limit::SocketInFlight.message());
        drop(held);
        budget.admit().expect("a slot is free again");
        let err = budget.admit().expect_err("burst of 5 spent");
        assert_eq!(err.body()["message"], Limit::SocketEvents.message());
        assert!(err.retry_after_secs().is_some_and(|s| s >= 1));
    }

    #[test]
    fn addresses_count_whole_for_ipv4_and_by_prefix_for_ipv6() {
        let v4: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(key::login_address(v4), "login:address:203.0.113.7");
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        assert_eq!(key::signup_address(a), key::signup_address(b));
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert_eq!(key::login_address(mapped), key::login_address(v4));
    }
}
