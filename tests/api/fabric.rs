//! The same behaviour checks against both fabric implementations.

use std::time::Duration;

use chatty::fabric::{Fabric, Rate, Rotate, Rotation, Session, SocketCap, Verdict};
use chrono::Utc;
use uuid::Uuid;

use crate::helpers::redis_url;

async fn both() -> Vec<Fabric> {
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    vec![
        Fabric::memory(),
        Fabric::redis(&redis_url(), &prefix).await.expect("redis"),
    ]
}

fn rotate<'a>(presented: &'a str, next: &'a str, lifetime: Duration) -> Rotate<'a> {
    Rotate {
        presented,
        next,
        lifetime,
    }
}

/// Two sockets per user, each leased for `lease`.
fn two(lease: Duration) -> SocketCap {
    SocketCap { max: 2, lease }
}

fn session(user: Uuid, ttl: chrono::Duration) -> Session {
    let now = Utc::now();
    Session {
        session_id: Uuid::new_v4(),
        user_id: user,
        device: "test".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now + ttl,
    }
}

#[tokio::test]
async fn sessions_are_created_touched_listed_and_revoked() {
    for f in both().await {
        let user = Uuid::new_v4();
        let s1 = session(user, chrono::Duration::hours(1));
        let s2 = session(user, chrono::Duration::hours(1));
        f.sessions.create(&s1, "hash-1").await.unwrap();
        f.sessions.create(&s2, "hash-2").await.unwrap();
        assert_eq!(
            f.sessions.touch(s1.session_id).await.unwrap(),
            Some(user),
            "{}",
            f.kind()
        );
        assert_eq!(
            f.sessions.list(user).await.unwrap().len(),
            2,
            "{}",
            f.kind()
        );
        assert!(
            !f.sessions
                .revoke(Uuid::new_v4(), s1.session_id)
                .await
                .unwrap(),
            "{}: stranger revoked",
            f.kind()
        );
        assert!(f.sessions.revoke(user, s1.session_id).await.unwrap());
        assert_eq!(f.sessions.touch(s1.session_id).await.unwrap(), None);
        assert_eq!(f.sessions.touch(s2.session_id).await.unwrap(), Some(user));
        assert_eq!(
            f.sessions.revoke_all(user).await.unwrap(),
            vec![s2.session_id]
        );
        assert!(
            f.sessions.list(user).await.unwrap().is_empty(),
            "{}",
            f.kind()
        );
    }
}

#[tokio::test]
async fn sessions_expire_by_themselves() {
    for f in both().await {
        let user = Uuid::new_v4();
        let s = session(user, chrono::Duration::milliseconds(300));
        f.sessions.create(&s, "hash").await.unwrap();
        assert_eq!(f.sessions.touch(s.session_id).await.unwrap(), Some(user));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            f.sessions.touch(s.session_id).await.unwrap(),
            None,
            "{}",
            f.kind()
        );
        assert!(
            f.sessions.list(user).await.unwrap().is_empty(),
            "{}",
            f.kind()
        );
    }
}

#[tokio::test]
async fn refresh_tokens_rotate_once_and_a_rotated_one_is_recognised() {
    for f in both().await {
        let user = Uuid::new_v4();
        let s = session(user, chrono::Duration::seconds(2));
        f.sessions.create(&s, "first").await.unwrap();
        let long = Duration::from_secs(3600);

        // The current token rotates, and the session's lifetime starts again.
        assert_eq!(
            f.sessions
                .rotate_refresh(s.session_id, rotate("first", "second", long))
                .await
                .unwrap(),
            Rotation::Rotated { user },
            "{}",
            f.kind()
        );
        let listed = f.sessions.list(user).await.unwrap();
        assert!(
            listed[0].expires_at > Utc::now() + chrono::Duration::minutes(50),
            "{}: {listed:?}",
            f.kind()
        );
        // The spent one is reuse; one that never belonged is unknown; so is any token of
        // another session.
        assert_eq!(
            f.sessions
                .rotate_refresh(s.session_id, rotate("first", "third", long))
                .await
                .unwrap(),
            Rotation::Reused { user },
            "{}",
            f.kind()
        );
        assert_eq!(
            f.sessions
                .rotate_refresh(s.session_id, rotate("forged", "third", long))
                .await
                .unwrap(),
            Rotation::Unknown
        );
        assert_eq!(
            f.sessions
                .rotate_refresh(Uuid::new_v4(), rotate("second", "third", long))
                .await
                .unwrap(),
            Rotation::Unknown
        );
        // A revoked session has no token left.
        assert!(f.sessions.revoke(user, s.session_id).await.unwrap());
        assert_eq!(
            f.sessions
                .rotate_refresh(s.session_id, rotate("second", "third", long))
                .await
                .unwrap(),
            Rotation::Unknown,
            "{}",
            f.kind()
        );
    }
}

#[tokio::test]
async fn of_two_concurrent_uses_of_one_refresh_token_one_rotates() {
    for f in both().await {
        let user = Uuid::new_v4();
        let s = session(user, chrono::Duration::hours(1));
        f.sessions.create(&s, "only").await.unwrap();
        let uses = (0..8).map(|i| {
            let f = f.clone();
            tokio::spawn(async move {
                f.sessions
                    .rotate_refresh(
                        s.session_id,
                        rotate("only", &format!("next-{i}"), Duration::from_secs(60)),
                    )
                    .await
                    .unwrap()
            })
        });
        let mut rotated = 0;
        for u in uses {
            match u.await.unwrap() {
                Rotation::Rotated { .. } => rotated += 1,
                Rotation::Reused { .. } => {}
                Rotation::Unknown => panic!("{}: the token was forgotten", f.kind()),
            }
        }
        assert_eq!(rotated, 1, "{}", f.kind());
    }
}

#[tokio::test]
async fn limiters_allow_a_burst_then_refill_evenly_give_back_and_reset() {
    for f in both().await {
        let key = format!("k:{}", Uuid::new_v4());
        // Three at once, then one every 200 ms.
        let rate = Rate::new(3, Duration::from_millis(600));
        for i in 0..3 {
            assert_eq!(
                f.limits.take(&key, rate).await.unwrap(),
                Verdict::Allowed,
                "{}: hit {i}",
                f.kind()
            );
        }
        let Verdict::Refused { retry_after } = f.limits.take(&key, rate).await.unwrap() else {
            panic!("{}: a fourth hit went through", f.kind());
        };
        assert!(
            retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200),
            "{}: {retry_after:?}",
            f.kind()
        );
        tokio::time::sleep(retry_after + Duration::from_millis(30)).await;
        assert_eq!(
            f.limits.take(&key, rate).await.unwrap(),
            Verdict::Allowed,
            "{}: no refill",
            f.kind()
        );
        assert!(matches!(
            f.limits.take(&key, rate).await.unwrap(),
            Verdict::Refused { .. }
        ));
        f.limits.give_back(&key, rate).await.unwrap();
        assert_eq!(
            f.limits.take(&key, rate).await.unwrap(),
            Verdict::Allowed,
            "{}: a hit given back was not there",
            f.kind()
        );
        f.limits.reset(&key).await.unwrap();
        for _ in 0..3 {
            assert_eq!(f.limits.take(&key, rate).await.unwrap(), Verdict::Allowed);
        }
    }
}

#[tokio::test]
async fn concurrent_hits_let_exactly_the_burst_through() {
    for f in both().await {
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
        assert_eq!(allowed, 10, "{}", f.kind());
    }
}

#[tokio::test]
async fn sockets_are_admitted_up_to_the_cap_released_and_expire() {
    for f in both().await {
        let user = Uuid::new_v4();
        let ttl = Duration::from_secs(30);
        assert!(f.limits.admit_socket(user, "n1:a", two(ttl)).await.unwrap());
        assert!(f.limits.admit_socket(user, "n2:b", two(ttl)).await.unwrap());
        assert!(
            !f.limits.admit_socket(user, "n1:c", two(ttl)).await.unwrap(),
            "{}: a third socket admitted",
            f.kind()
        );
        assert!(
            f.limits
                .admit_socket(Uuid::new_v4(), "n1:c", two(ttl))
                .await
                .unwrap(),
            "{}: another user's cap is their own",
            f.kind()
        );
        assert!(
            f.limits.admit_socket(user, "n1:a", two(ttl)).await.unwrap(),
            "{}: a counted socket is counted once",
            f.kind()
        );
        f.limits.release_socket(user, "n1:a").await.unwrap();
        assert!(f.limits.admit_socket(user, "n1:c", two(ttl)).await.unwrap());
        // A dead node's sockets stop counting when their leases run out; a heartbeat
        // keeps live ones counted.
        let short = Duration::from_millis(300);
        let other = Uuid::new_v4();
        assert!(
            f.limits
                .admit_socket(other, "dead:a", two(short))
                .await
                .unwrap()
        );
        assert!(
            f.limits
                .admit_socket(other, "live:b", two(short))
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        f.limits
            .renew_sockets(&[(other, "live:b".to_owned())], short)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert!(
            f.limits
                .admit_socket(other, "new:c", two(short))
                .await
                .unwrap()
        );
        assert!(
            !f.limits
                .admit_socket(other, "new:d", two(short))
                .await
                .unwrap(),
            "{}: the renewed socket stopped counting",
            f.kind()
        );
    }
}

#[tokio::test]
async fn presence_reports_the_first_connection_and_the_last_disconnection_once() {
    for f in both().await {
        let user = Uuid::new_v4();
        let ttl = Duration::from_secs(30);
        assert!(
            f.presence.connect(user, "n1:a", ttl).await.unwrap(),
            "{}",
            f.kind()
        );
        assert!(
            !f.presence.connect(user, "n2:b", ttl).await.unwrap(),
            "{}: second device",
            f.kind()
        );
        assert_eq!(
            f.presence.online(&[user, Uuid::new_v4()]).await.unwrap(),
            vec![user]
        );
        assert!(
            !f.presence.disconnect(user, "n1:a").await.unwrap(),
            "{}: still on n2",
            f.kind()
        );
        assert!(
            f.presence.disconnect(user, "n2:b").await.unwrap(),
            "{}: last one",
            f.kind()
        );
        assert!(
            !f.presence.disconnect(user, "n2:b").await.unwrap(),
            "{}: reported twice",
            f.kind()
        );
        assert!(f.presence.online(&[user]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn expired_leases_are_reaped_once_and_heartbeats_keep_them_alive() {
    for f in both().await {
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
        assert_eq!(gone, vec![dead], "{}", f.kind());
        assert!(
            f.presence.reap().await.unwrap().is_empty(),
            "{}: reaped twice",
            f.kind()
        );
        assert_eq!(
            f.presence.online(&[dead, alive]).await.unwrap(),
            vec![alive]
        );
    }
}

#[tokio::test]
async fn typing_marks_expire_by_themselves() {
    for f in both().await {
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
            "{}",
            f.kind()
        );
        assert_eq!(f.typing.list(conv).await.unwrap(), vec![user]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            f.typing.list(conv).await.unwrap().is_empty(),
            "{}",
            f.kind()
        );
        assert!(
            f.typing
                .start(conv, user, Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(f.typing.stop(conv, user).await.unwrap());
        assert!(!f.typing.stop(conv, user).await.unwrap(), "{}", f.kind());
        assert!(f.typing.list(conv).await.unwrap().is_empty());
    }
}
