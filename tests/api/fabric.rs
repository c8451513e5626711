//! The same behaviour checks against both fabric implementations.

use std::time::Duration;

use chatty::fabric::{Cached, Fabric, Rate, Rotate, Rotation, Session, SocketCap, Verdict};
use chrono::Utc;
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::{Backend, Cleanup, delete_keys, fresh_database, redis_url};

/// Each implementation with its kind, which every failure message names: in process, on
/// a single Redis and on a Redis Cluster. Their sessions have no database: session tests
/// use [`durable_both`].
async fn both() -> Vec<(&'static str, Fabric)> {
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    let mut redis = Vec::new();
    for backend in [Backend::Redis, Backend::RedisCluster] {
        let target = backend.target().expect("a Redis");
        redis.push(Fabric::redis(&target, &prefix).await.expect("redis"));
    }
    [Fabric::memory()]
        .into_iter()
        .chain(redis)
        .map(|f| (f.kind(), f))
        .collect()
}

/// Whether `socket` of `user` may connect under `cap`.
async fn admitted(f: &Fabric, user: Uuid, socket: &str, cap: SocketCap) -> bool {
    f.limits.admit_socket(user, socket, cap).await.unwrap()
}

/// Two sockets per user, each leased for `lease`.
fn two(lease: Duration) -> SocketCap {
    SocketCap { max: 2, lease }
}

/// How long a revoked session stays marked revoked in the cache, in these tests.
const MARK: Duration = Duration::from_secs(60);

/// Sessions kept in one fresh database, cached by one implementation.
struct Durable {
    kind: &'static str,
    backend: Backend,
    fabric: Fabric,
    db: PgPool,
    prefix: String,
}

impl Durable {
    /// This node's fabric after its cache lost everything (revocation marks too): for
    /// Redis, the test's keys are deleted as a restart without persistence would; in
    /// process, the node restarted with an empty memory.
    async fn after_cache_loss(&self) -> Fabric {
        if self.backend != Backend::Memory {
            delete_keys(self.backend, &self.prefix).await;
            self.fabric.clone()
        } else {
            Fabric::memory().with_durable_sessions(self.db.clone(), MARK)
        }
    }

    /// Another node of the cluster `f` belongs to: it shares the cache (Redis) and the
    /// database. In process there is only one node, `f` itself.
    async fn peer_of(&self, f: &Fabric) -> Fabric {
        if let Some(target) = self.backend.target() {
            Fabric::redis(&target, &self.prefix)
                .await
                .expect("redis")
                .with_durable_sessions(self.db.clone(), MARK)
        } else {
            f.clone()
        }
    }
}

/// Sessions in PostgreSQL with each cache, one database for both; the cleanup drops it.
async fn durable_both() -> (Vec<Durable>, Cleanup) {
    let (db, prefix, cleanup) = fresh_database().await;
    let mut both = Vec::new();
    for backend in [Backend::Memory, Backend::Redis, Backend::RedisCluster] {
        let fabric = match backend.target() {
            Some(target) => Fabric::redis(&target, &prefix).await.expect("redis"),
            None => Fabric::memory(),
        };
        both.push(Durable {
            kind: fabric.kind(),
            backend,
            fabric: fabric.with_durable_sessions(db.clone(), MARK),
            db: db.clone(),
            prefix: prefix.clone(),
        });
    }
    (both, cleanup)
}

/// Presents `presented` as `session`'s refresh token, asking to rotate it to `next`.
async fn rotate(
    f: &Fabric,
    session: Uuid,
    presented: &str,
    next: &str,
    lifetime: Duration,
) -> Rotation {
    let to = Rotate {
        presented,
        next,
        lifetime,
    };
    f.sessions.rotate_refresh(session, to).await.unwrap()
}

/// A new user's session living `ttl`, created with the refresh token hash `hash`.
async fn login(d: &Durable, ttl: chrono::Duration, hash: &str) -> (Uuid, Session) {
    let tag = Uuid::new_v4().simple().to_string();
    let user: Uuid = sqlx::query_scalar(
        "insert into users (username, email, password_hash) values ($1, $2, 'x') returning user_id",
    )
    .bind(format!("u{}", &tag[..20]))
    .bind(format!("{tag}@example.com"))
    .fetch_one(&d.db)
    .await
    .expect("user");
    (user, login_again(&d.fabric, user, ttl, hash).await)
}

/// Another session of `user`, as [`login`] makes it.
async fn login_again(f: &Fabric, user: Uuid, ttl: chrono::Duration, hash: &str) -> Session {
    let now = Utc::now();
    let s = Session {
        session_id: Uuid::new_v4(),
        user_id: user,
        device: "test".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + ttl,
    };
    f.sessions.create(&s, hash).await.unwrap();
    s
}

#[tokio::test]
async fn sessions_are_created_touched_listed_and_revoked() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let (k, f) = (d.kind, &d.fabric);
        let (user, s1) = login(d, chrono::Duration::hours(1), "hash-1").await;
        let s2 = login_again(f, user, chrono::Duration::hours(1), "hash-2").await;
        assert!(f.sessions.touch(user, s1.session_id).await.unwrap(), "{k}");
        assert!(
            !f.sessions
                .touch(Uuid::new_v4(), s1.session_id)
                .await
                .unwrap(),
            "{k}: a session under another user"
        );
        assert_eq!(f.sessions.list(user).await.unwrap().len(), 2, "{k}");
        assert!(
            !f.sessions
                .revoke(Uuid::new_v4(), s1.session_id)
                .await
                .unwrap(),
            "{k}: stranger revoked"
        );
        assert!(
            f.sessions.touch(user, s1.session_id).await.unwrap(),
            "{k}: a stranger's attempts left the owner's session alone"
        );
        assert!(f.sessions.revoke(user, s1.session_id).await.unwrap());
        assert!(!f.sessions.touch(user, s1.session_id).await.unwrap(), "{k}");
        assert!(f.sessions.touch(user, s2.session_id).await.unwrap(), "{k}");
        assert_eq!(
            f.sessions.revoke_all(user).await.unwrap(),
            vec![s2.session_id]
        );
        assert!(f.sessions.list(user).await.unwrap().is_empty(), "{k}");
        assert!(!f.sessions.touch(user, s2.session_id).await.unwrap(), "{k}");
    }
}

#[tokio::test]
async fn sessions_expire_by_themselves() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let (k, f) = (d.kind, &d.fabric);
        let (user, s) = login(d, chrono::Duration::milliseconds(300), "hash").await;
        assert!(f.sessions.touch(user, s.session_id).await.unwrap());
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert!(!f.sessions.touch(user, s.session_id).await.unwrap(), "{k}");
        assert!(f.sessions.list(user).await.unwrap().is_empty(), "{k}");
        let late = rotate(f, s.session_id, "hash", "next", Duration::from_secs(60)).await;
        assert_eq!(late, Rotation::Unknown, "{k}: an expired session rotated");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_once_and_a_rotated_one_is_recognised() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let (k, f) = (d.kind, &d.fabric);
        let (user, s) = login(d, chrono::Duration::seconds(2), "first").await;
        let long = Duration::from_secs(3600);

        // The current token rotates, and the session's lifetime starts again.
        let first = rotate(f, s.session_id, "first", "second", long).await;
        assert_eq!(first, Rotation::Rotated { user }, "{k}");
        let listed = f.sessions.list(user).await.unwrap();
        assert!(
            listed[0].expires_at > Utc::now() + chrono::Duration::minutes(50),
            "{k}: {listed:?}"
        );
        // The cache got the new lifetime too: the session outlives its first one.
        tokio::time::sleep(Duration::from_millis(2200)).await;
        assert!(f.sessions.touch(user, s.session_id).await.unwrap(), "{k}");
        // The spent one is reuse; one that never belonged is unknown; so is any token of
        // another session.
        for (session, presented, want) in [
            (s.session_id, "first", Rotation::Reused { user }),
            (s.session_id, "forged", Rotation::Unknown),
            (Uuid::new_v4(), "second", Rotation::Unknown),
        ] {
            let got = rotate(f, session, presented, "third", long).await;
            assert_eq!(got, want, "{k}: {presented}");
        }
        // A revoked session has no token left.
        assert!(f.sessions.revoke(user, s.session_id).await.unwrap());
        let revoked = rotate(f, s.session_id, "second", "third", long).await;
        assert_eq!(revoked, Rotation::Unknown, "{k}");
    }
}

#[tokio::test]
async fn of_two_concurrent_uses_of_one_refresh_token_one_rotates() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let k = d.kind;
        let (user, s) = login(d, chrono::Duration::hours(1), "only").await;
        // Spread over two nodes where there are two.
        let nodes = [d.fabric.clone(), d.peer_of(&d.fabric).await];
        let uses = (0..8).map(|i| {
            let f = nodes[i % 2].clone();
            tokio::spawn(async move {
                let next = format!("next-{i}");
                let got = rotate(&f, s.session_id, "only", &next, Duration::from_secs(60)).await;
                (got, next)
            })
        });
        let mut winners = Vec::new();
        for u in uses {
            match u.await.unwrap() {
                (Rotation::Rotated { .. }, next) => winners.push(next),
                (Rotation::Reused { user: u }, _) => assert_eq!(u, user, "{k}"),
                (Rotation::Unknown, _) => panic!("{k}: the token was forgotten"),
            }
        }
        assert_eq!(winners.len(), 1, "{k}: {winners:?}");
        // The winner's token is the session's current one.
        let after = rotate(
            &d.fabric,
            s.session_id,
            &winners[0],
            "after",
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(after, Rotation::Rotated { user }, "{k}");
    }
}

#[tokio::test]
async fn sessions_outlive_a_cache_that_lost_everything() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let k = d.kind;
        let (user, s) = login(d, chrono::Duration::hours(1), "first").await;
        let other = login_again(&d.fabric, user, chrono::Duration::hours(1), "other").await;
        let rotated = rotate(
            &d.fabric,
            s.session_id,
            "first",
            "second",
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!(rotated, Rotation::Rotated { user }, "{k}");

        // Act: the cache loses every key, revocation marks included
        let f = d.after_cache_loss().await;
        assert_eq!(
            f.session_cache
                .probe(&[(user, s.session_id)])
                .await
                .unwrap(),
            vec![Cached::Unknown],
            "{k}: the cache still knew the session"
        );

        // Assert: the sessions are read back from PostgreSQL and cached again
        assert!(f.sessions.touch(user, s.session_id).await.unwrap(), "{k}");
        assert_eq!(
            f.session_cache
                .probe(&[(user, s.session_id)])
                .await
                .unwrap(),
            vec![Cached::Live],
            "{k}: a miss did not refill the cache"
        );
        let mut live = f
            .sessions
            .live(&[(user, other.session_id), (user, s.session_id)])
            .await
            .unwrap();
        live.sort();
        let mut want = vec![s.session_id, other.session_id];
        want.sort();
        assert_eq!(live, want, "{k}");
        let listed: Vec<Uuid> = f
            .sessions
            .list(user)
            .await
            .unwrap()
            .iter()
            .map(|s| s.session_id)
            .collect();
        assert_eq!(listed, vec![s.session_id, other.session_id], "{k}");
        let again = rotate(
            &f,
            s.session_id,
            "second",
            "third",
            Duration::from_secs(3600),
        )
        .await;
        assert_eq!(again, Rotation::Rotated { user }, "{k}: the refresh token");
        let reuse = rotate(&f, s.session_id, "first", "x", Duration::from_secs(3600)).await;
        assert_eq!(
            reuse,
            Rotation::Reused { user },
            "{k}: reuse after the loss"
        );
    }
}

#[tokio::test]
async fn a_revoked_session_stays_revoked_and_costs_one_lookup_after_the_cache_is_lost() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let k = d.kind;
        let (user, s) = login(d, chrono::Duration::hours(1), "hash").await;
        let peer = d.peer_of(&d.fabric).await;
        assert!(
            peer.sessions.touch(user, s.session_id).await.unwrap(),
            "{k}"
        );

        // Revoked on this node: refused on the other at once, from the cache alone
        assert!(d.fabric.sessions.revoke(user, s.session_id).await.unwrap());
        assert!(
            !peer.sessions.touch(user, s.session_id).await.unwrap(),
            "{k}"
        );
        assert_eq!(
            peer.session_cache
                .probe(&[(user, s.session_id)])
                .await
                .unwrap(),
            vec![Cached::Revoked],
            "{k}"
        );

        // The cache loses the mark too; the first check reads PostgreSQL and marks the
        // session again, so the next ones are answered by the cache
        let f = d.after_cache_loss().await;
        assert!(!f.sessions.touch(user, s.session_id).await.unwrap(), "{k}");
        assert_eq!(
            f.session_cache
                .probe(&[(user, s.session_id)])
                .await
                .unwrap(),
            vec![Cached::Revoked],
            "{k}: a miss on a dead session was not remembered"
        );
        assert!(
            f.sessions
                .live(&[(user, s.session_id)])
                .await
                .unwrap()
                .is_empty()
        );
        // An id no one ever had, under a valid user, is remembered the same way.
        let unknown = Uuid::new_v4();
        assert!(!f.sessions.touch(user, unknown).await.unwrap(), "{k}");
        assert_eq!(
            f.session_cache.touch(user, unknown).await.unwrap(),
            Cached::Revoked,
            "{k}"
        );
    }
}

#[tokio::test]
async fn a_refill_that_read_the_session_before_its_revocation_cannot_bring_it_back() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let k = d.kind;
        let (user, s) = login(d, chrono::Duration::hours(1), "hash").await;
        let f = d.after_cache_loss().await;

        // Arrange: a node missed the cache and read the live row from PostgreSQL...
        let read = f.sessions.list(user).await.unwrap().remove(0);
        assert_eq!(read.session_id, s.session_id);

        // Act: ...the session is revoked before that node refills the cache...
        assert!(f.sessions.revoke(user, s.session_id).await.unwrap(), "{k}");
        let filled = f.session_cache.fill(&read).await.unwrap();

        // Assert: ...and the refill finds the revocation mark and does nothing
        assert!(!filled, "{k}: a stale refill was written");
        assert!(!f.sessions.touch(user, s.session_id).await.unwrap(), "{k}");
        assert!(
            f.sessions
                .live(&[(user, s.session_id)])
                .await
                .unwrap()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn checks_racing_a_revocation_after_a_cache_loss_never_outlive_it() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let k = d.kind;
        for _ in 0..5 {
            let (user, s) = login(d, chrono::Duration::hours(1), "hash").await;
            let f = d.after_cache_loss().await;
            let peer = d.peer_of(&f).await;
            // Every check misses at first and races to refill while the session is revoked.
            let checks: Vec<_> = (0..16)
                .map(|i| {
                    let node = if i % 2 == 0 { f.clone() } else { peer.clone() };
                    tokio::spawn(async move { node.sessions.touch(user, s.session_id).await })
                })
                .collect();
            assert!(f.sessions.revoke(user, s.session_id).await.unwrap(), "{k}");
            for c in checks {
                c.await.unwrap().unwrap();
            }
            for node in [&f, &peer] {
                assert!(
                    !node.sessions.touch(user, s.session_id).await.unwrap(),
                    "{k}: a refill brought a revoked session back"
                );
            }
        }
    }
}

#[tokio::test]
async fn limiters_allow_a_burst_then_refill_evenly_give_back_and_reset() {
    for (k, f) in both().await {
        let key = format!("k:{}", Uuid::new_v4());
        // Three at once, then one every 200 ms.
        let rate = Rate::new(3, Duration::from_millis(600));
        for i in 0..3 {
            assert_eq!(
                f.limits.take(&key, rate).await.unwrap(),
                Verdict::Allowed,
                "{k}: hit {i}"
            );
        }
        let Verdict::Refused { retry_after } = f.limits.take(&key, rate).await.unwrap() else {
            panic!("{k}: a fourth hit went through");
        };
        assert!(
            retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200),
            "{k}: {retry_after:?}"
        );
        tokio::time::sleep(retry_after + Duration::from_millis(30)).await;
        assert_eq!(
            f.limits.take(&key, rate).await.unwrap(),
            Verdict::Allowed,
            "{k}: no refill"
        );
        assert!(matches!(
            f.limits.take(&key, rate).await.unwrap(),
            Verdict::Refused { .. }
        ));
        f.limits.give_back(&key, rate).await.unwrap();
        assert_eq!(
            f.limits.take(&key, rate).await.unwrap(),
            Verdict::Allowed,
            "{k}: a hit given back was not there"
        );
        f.limits.reset(&key).await.unwrap();
        for _ in 0..3 {
            assert_eq!(f.limits.take(&key, rate).await.unwrap(), Verdict::Allowed);
        }
    }
}

#[tokio::test]
async fn concurrent_hits_let_exactly_the_burst_through() {
    for (k, f) in both().await {
        let key = format!("k:{}", Uuid::new_v4());
        let rate = Rate::new(10, Duration::from_secs(3600));
        let hits = (0..40).map(|_| {
            let f = f.clone();
            let key = key.clone();
            tokio::spawn(async move { f.limits.take(&key, rate).await.unwrap() })
        });
        let mut allowed = 0;
        for h in hits {
            if h.await.unwrap() == Verdict::Allowed {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10, "{k}");
    }
}

#[tokio::test]
async fn sockets_are_admitted_up_to_the_cap_released_and_expire() {
    for (k, f) in both().await {
        let user = Uuid::new_v4();
        let ttl = Duration::from_secs(30);
        assert!(admitted(&f, user, "n1:a", two(ttl)).await);
        assert!(admitted(&f, user, "n2:b", two(ttl)).await);
        assert!(
            !admitted(&f, user, "n1:c", two(ttl)).await,
            "{k}: a third socket admitted"
        );
        assert!(
            admitted(&f, Uuid::new_v4(), "n1:c", two(ttl)).await,
            "{k}: another user's cap is their own"
        );
        assert!(
            admitted(&f, user, "n1:a", two(ttl)).await,
            "{k}: a counted socket is counted once"
        );
        f.limits.release_socket(user, "n1:a").await.unwrap();
        assert!(admitted(&f, user, "n1:c", two(ttl)).await);
        // A dead node's sockets stop counting when their leases run out; a heartbeat
        // keeps live ones counted.
        let short = Duration::from_millis(300);
        let other = Uuid::new_v4();
        assert!(admitted(&f, other, "dead:a", two(short)).await);
        assert!(admitted(&f, other, "live:b", two(short)).await);
        tokio::time::sleep(Duration::from_millis(150)).await;
        f.limits
            .renew_sockets(&[(other, "live:b".to_owned())], short)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(admitted(&f, other, "new:c", two(short)).await);
        assert!(
            !admitted(&f, other, "new:d", two(short)).await,
            "{k}: the renewed socket stopped counting"
        );
    }
}

#[tokio::test]
async fn presence_reports_the_first_connection_and_the_last_disconnection_once() {
    for (k, f) in both().await {
        let user = Uuid::new_v4();
        let ttl = Duration::from_secs(30);
        assert!(f.presence.connect(user, "n1:a", ttl).await.unwrap(), "{k}");
        assert!(
            !f.presence.connect(user, "n2:b", ttl).await.unwrap(),
            "{k}: second device"
        );
        assert_eq!(
            f.presence.online(&[user, Uuid::new_v4()]).await.unwrap(),
            vec![user]
        );
        assert!(
            !f.presence.disconnect(user, "n1:a").await.unwrap(),
            "{k}: still on n2"
        );
        assert!(
            f.presence.disconnect(user, "n2:b").await.unwrap(),
            "{k}: last one"
        );
        assert!(
            !f.presence.disconnect(user, "n2:b").await.unwrap(),
            "{k}: reported twice"
        );
        assert!(f.presence.online(&[user]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn expired_leases_are_reaped_once_and_heartbeats_keep_them_alive() {
    for (k, f) in both().await {
        let (dead, alive) = (Uuid::new_v4(), Uuid::new_v4());
        let ttl = Duration::from_millis(300);
        f.presence.connect(dead, "crashed:1", ttl).await.unwrap();
        f.presence.connect(alive, "live:1", ttl).await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            f.presence
                .heartbeat(&[(alive, "live:1".to_owned())], ttl)
                .await
                .unwrap();
        }
        let gone = f.presence.reap().await.unwrap();
        assert_eq!(gone, vec![dead], "{k}");
        assert!(
            f.presence.reap().await.unwrap().is_empty(),
            "{k}: reaped twice"
        );
        assert_eq!(
            f.presence.online(&[dead, alive]).await.unwrap(),
            vec![alive]
        );
    }
}

#[tokio::test]
async fn typing_marks_expire_by_themselves() {
    for (k, f) in both().await {
        let (conv, user) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(
            f.typing
                .start(conv, user, Duration::from_millis(300))
                .await
                .unwrap()
        );
        assert!(
            !f.typing
                .start(conv, user, Duration::from_millis(300))
                .await
                .unwrap(),
            "{k}"
        );
        assert_eq!(f.typing.list(conv).await.unwrap(), vec![user]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(f.typing.list(conv).await.unwrap().is_empty(), "{k}");
        assert!(
            f.typing
                .start(conv, user, Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(f.typing.stop(conv, user).await.unwrap());
        assert!(!f.typing.stop(conv, user).await.unwrap(), "{k}");
        assert!(f.typing.list(conv).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn sessions_an_earlier_build_kept_in_redis_alone_are_carried_over_once() {
    // Arrange: two sessions of a user as the build before durable sessions wrote them
    let (both, _cleanup) = durable_both().await;
    let d = both.iter().find(|d| d.kind == "redis").expect("redis");
    let (user, _) = login(d, chrono::Duration::hours(1), "new").await;
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let (used, refreshed) = (Uuid::new_v4(), Uuid::new_v4());
    let now = Utc::now().timestamp_millis();
    for (sid, refresh) in [(used, "legacy-current"), (refreshed, "legacy-other")] {
        let key = format!("{}session:{sid}", d.prefix);
        let _: () = redis::pipe()
            .cmd("HSET")
            .arg(&key)
            .arg(&[
                ("user", user.to_string()),
                ("device", "old phone".to_owned()),
                ("created", (now - 60_000).to_string()),
                ("last_seen", now.to_string()),
                ("refresh", refresh.to_owned()),
            ])
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(3_600_000)
            .ignore()
            .cmd("SADD")
            .arg(format!("{}rotated:{sid}", d.prefix))
            .arg(format!("{refresh}-spent"))
            .ignore()
            .cmd("ZADD")
            .arg(format!("{}sessions:{user}", d.prefix))
            .arg(now + 3_600_000)
            .arg(sid.to_string())
            .ignore()
            .query_async(&mut c)
            .await
            .unwrap();
    }
    let f = &d.fabric;
    let long = Duration::from_secs(3600);

    // Act + Assert: the first request of one, the first refresh of the other, carry them
    // over with their tokens
    assert!(f.sessions.touch(user, used).await.unwrap());
    let listed = f.sessions.list(user).await.unwrap();
    let old = listed
        .iter()
        .find(|s| s.session_id == used)
        .expect("listed");
    assert_eq!(old.device, "old phone");
    assert!(old.expires_at > Utc::now() + chrono::Duration::minutes(50));
    let first = rotate(f, refreshed, "legacy-other", "next", long).await;
    assert_eq!(first, Rotation::Rotated { user });
    let spent = rotate(f, used, "legacy-current-spent", "x", long).await;
    assert_eq!(spent, Rotation::Reused { user });
    let legacy: i64 = redis::cmd("EXISTS")
        .arg(format!("{}session:{used}", d.prefix))
        .arg(format!("{}session:{refreshed}", d.prefix))
        .arg(format!("{}rotated:{used}", d.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(legacy, 0, "the old keys were left behind");

    // A carried-over session, once revoked, stays revoked when the cache is lost
    assert!(f.sessions.revoke(user, used).await.unwrap());
    let f = d.after_cache_loss().await;
    assert!(!f.sessions.touch(user, used).await.unwrap());
    assert!(f.sessions.touch(user, refreshed).await.unwrap());
}

#[tokio::test]
async fn checks_the_cache_can_answer_never_ask_postgresql() {
    // Arrange: on each cache a live session and a revoked one
    let (both, _cleanup) = durable_both().await;
    let mut sessions = Vec::new();
    for d in &both {
        let (user, live) = login(d, chrono::Duration::hours(1), "live").await;
        let gone = login_again(&d.fabric, user, chrono::Duration::hours(1), "gone").await;
        assert!(
            d.fabric
                .sessions
                .revoke(user, gone.session_id)
                .await
                .unwrap()
        );
        sessions.push((user, live.session_id, gone.session_id));
    }

    // Act: PostgreSQL becomes unreachable
    both[0].db.close().await;

    // Assert: the cache answers every check of both; only a miss needs the database
    for (d, (user, live, gone)) in both.iter().zip(sessions) {
        let (k, f) = (d.kind, &d.fabric);
        assert!(f.sessions.touch(user, live).await.unwrap(), "{k}");
        assert!(!f.sessions.touch(user, gone).await.unwrap(), "{k}");
        let checked = f
            .sessions
            .live(&[(user, live), (user, gone)])
            .await
            .unwrap();
        assert_eq!(checked, vec![live], "{k}");
        assert!(
            f.sessions.touch(user, Uuid::new_v4()).await.is_err(),
            "{k}: a miss was answered without PostgreSQL"
        );
    }
}

#[tokio::test]
async fn the_list_shows_the_last_request_though_only_sign_in_and_refresh_write_it_down() {
    let (both, _cleanup) = durable_both().await;
    for d in &both {
        let k = d.kind;
        let (user, s) = login(d, chrono::Duration::hours(1), "first").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(d.fabric.sessions.touch(user, s.session_id).await.unwrap());
        let seen = d.fabric.sessions.list(user).await.unwrap()[0].last_seen_at;
        assert!(seen > s.created_at, "{k}: the request's time is not shown");
        let stored: chrono::DateTime<Utc> =
            sqlx::query_scalar("select last_seen_at from device_sessions where session_id = $1")
                .bind(s.session_id)
                .fetch_one(&d.db)
                .await
                .unwrap();
        assert!(stored < seen, "{k}: a request wrote to PostgreSQL");
        let rotated = rotate(
            &d.fabric,
            s.session_id,
            "first",
            "second",
            Duration::from_secs(60),
        )
        .await;
        assert_eq!(rotated, Rotation::Rotated { user });
        let stored: chrono::DateTime<Utc> =
            sqlx::query_scalar("select last_seen_at from device_sessions where session_id = $1")
                .bind(s.session_id)
                .fetch_one(&d.db)
                .await
                .unwrap();
        assert!(stored >= seen, "{k}: a refresh did not write it down");
    }
}

#[tokio::test]
async fn sign_ins_delete_dead_rows() {
    let (both, _cleanup) = durable_both().await;
    let d = &both[0];
    let (user, _) = login(d, chrono::Duration::milliseconds(100), "short").await;
    let _ = login_again(
        &d.fabric,
        user,
        chrono::Duration::milliseconds(100),
        "short",
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (other, _) = login(d, chrono::Duration::hours(1), "long").await;
    let users: Vec<Uuid> = sqlx::query_scalar("select user_id from device_sessions")
        .fetch_all(&d.db)
        .await
        .unwrap();
    assert_eq!(users, vec![other]);
}
