//! The same behaviour checks against both fabric implementations.

use std::time::Duration;

use chatty::fabric::{Fabric, Rate, Rotate, Rotation, Session, SocketCap, Verdict};
use chrono::Utc;
use uuid::Uuid;

use crate::helpers::Backend;

/// Each implementation with its kind, which every failure message names: in process, on
/// a single Redis and on a Redis Cluster.
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
    .into_iter()
    .map(|f| (f.kind(), f))
    .collect()
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

/// Whether `socket` of `user` may connect under `cap`.
async fn admitted(f: &Fabric, user: Uuid, socket: &str, cap: SocketCap) -> bool {
    f.limits.admit_socket(user, socket, cap).await.unwrap()
}

/// Two sockets per user, each leased for `lease`.
fn two(lease: Duration) -> SocketCap {
    SocketCap { max: 2, lease }
}

/// A new user's session living `ttl`, created with the refresh token hash `hash`.
async fn login(f: &Fabric, ttl: chrono::Duration, hash: &str) -> (Uuid, Session) {
    let user = Uuid::new_v4();
    (user, login_again(f, user, ttl, hash).await)
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
    for (k, f) in both().await {
        let (user, s1) = login(&f, chrono::Duration::hours(1), "hash-1").await;
        let s2 = login_again(&f, user, chrono::Duration::hours(1), "hash-2").await;
        assert_eq!(
            f.sessions.touch(s1.session_id).await.unwrap(),
            Some(user),
            "{k}"
        );
        assert_eq!(f.sessions.list(user).await.unwrap().len(), 2, "{k}");
        assert!(
            !f.sessions
                .revoke(Uuid::new_v4(), s1.session_id)
                .await
                .unwrap(),
            "{k}: stranger revoked"
        );
        assert!(f.sessions.revoke(user, s1.session_id).await.unwrap());
        assert_eq!(f.sessions.touch(s1.session_id).await.unwrap(), None);
        assert_eq!(f.sessions.touch(s2.session_id).await.unwrap(), Some(user));
        assert_eq!(
            f.sessions.revoke_all(user).await.unwrap(),
            vec![s2.session_id]
        );
        assert!(f.sessions.list(user).await.unwrap().is_empty(), "{k}");
    }
}

#[tokio::test]
async fn sessions_expire_by_themselves() {
    for (k, f) in both().await {
        let (user, s) = login(&f, chrono::Duration::milliseconds(300), "hash").await;
        assert_eq!(f.sessions.touch(s.session_id).await.unwrap(), Some(user));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(f.sessions.touch(s.session_id).await.unwrap(), None, "{k}");
        assert!(f.sessions.list(user).await.unwrap().is_empty(), "{k}");
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_once_and_a_rotated_one_is_recognised() {
    for (k, f) in both().await {
        let (user, s) = login(&f, chrono::Duration::seconds(2), "first").await;
        let long = Duration::from_secs(3600);

        // The current token rotates, and the session's lifetime starts again.
        let first = rotate(&f, s.session_id, "first", "second", long).await;
        assert_eq!(first, Rotation::Rotated { user }, "{k}");
        let listed = f.sessions.list(user).await.unwrap();
        assert!(
            listed[0].expires_at > Utc::now() + chrono::Duration::minutes(50),
            "{k}: {listed:?}"
        );
        // The spent one is reuse; one that never belonged is unknown; so is any token of
        // another session.
        for (session, presented, want) in [
            (s.session_id, "first", Rotation::Reused { user }),
            (s.session_id, "forged", Rotation::Unknown),
            (Uuid::new_v4(), "second", Rotation::Unknown),
        ] {
            let got = rotate(&f, session, presented, "third", long).await;
            assert_eq!(got, want, "{k}: {presented}");
        }
        // A revoked session has no token left.
        assert!(f.sessions.revoke(user, s.session_id).await.unwrap());
        let revoked = rotate(&f, s.session_id, "second", "third", long).await;
        assert_eq!(revoked, Rotation::Unknown, "{k}");
    }
}

#[tokio::test]
async fn of_two_concurrent_uses_of_one_refresh_token_one_rotates() {
    for (k, f) in both().await {
        let (_, s) = login(&f, chrono::Duration::hours(1), "only").await;
        let uses = (0..8).map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                let next = format!("next-{i}");
                rotate(&f, s.session_id, "only", &next, Duration::from_secs(60)).await
            })
        });
        let mut rotated = 0;
        for u in uses {
            match u.await.unwrap() {
                Rotation::Rotated { .. } => rotated += 1,
                Rotation::Reused { .. } => {}
                Rotation::Unknown => panic!("{k}: the token was forgotten"),
            }
        }
        assert_eq!(rotated, 1, "{k}");
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
