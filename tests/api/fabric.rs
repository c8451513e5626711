//! The same behaviour checks against both fabric implementations.

use std::{sync::Arc, time::Duration};

use chatty::fabric::{Fabric, MemoryFabric, RedisFabric, Session};
use chrono::Utc;
use uuid::Uuid;

use crate::helpers::redis_url;

async fn both() -> Vec<Arc<dyn Fabric>> {
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    vec![
        Arc::new(MemoryFabric::new()),
        Arc::new(
            RedisFabric::connect(&redis_url(), &prefix)
                .await
                .expect("redis"),
        ),
    ]
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
        f.create_session(&s1).await.unwrap();
        f.create_session(&s2).await.unwrap();
        assert_eq!(
            f.touch_session(s1.session_id).await.unwrap(),
            Some(user),
            "{}",
            f.kind()
        );
        assert_eq!(
            f.list_sessions(user).await.unwrap().len(),
            2,
            "{}",
            f.kind()
        );
        assert!(
            !f.revoke_session(Uuid::new_v4(), s1.session_id)
                .await
                .unwrap(),
            "{}: stranger revoked",
            f.kind()
        );
        assert!(f.revoke_session(user, s1.session_id).await.unwrap());
        assert_eq!(f.touch_session(s1.session_id).await.unwrap(), None);
        assert_eq!(f.touch_session(s2.session_id).await.unwrap(), Some(user));
        assert_eq!(
            f.revoke_all_sessions(user).await.unwrap(),
            vec![s2.session_id]
        );
        assert!(
            f.list_sessions(user).await.unwrap().is_empty(),
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
        f.create_session(&s).await.unwrap();
        assert_eq!(f.touch_session(s.session_id).await.unwrap(), Some(user));
        tokio::time::sleep(Duration::from_millis(450)).await;
        assert_eq!(
            f.touch_session(s.session_id).await.unwrap(),
            None,
            "{}",
            f.kind()
        );
        assert!(
            f.list_sessions(user).await.unwrap().is_empty(),
            "{}",
            f.kind()
        );
    }
}

#[tokio::test]
async fn counters_count_within_a_window_and_reset() {
    for f in both().await {
        let key = format!("k:{}", Uuid::new_v4());
        assert_eq!(f.read_counter(&key).await.unwrap().count, 0);
        for i in 1..=3 {
            assert_eq!(
                f.hit_counter(&key, Duration::from_millis(400))
                    .await
                    .unwrap()
                    .count,
                i,
                "{}",
                f.kind()
            );
        }
        let w = f.read_counter(&key).await.unwrap();
        assert_eq!(w.count, 3);
        assert!(
            w.resets_in > Duration::ZERO && w.resets_in <= Duration::from_millis(400),
            "{}: {w:?}",
            f.kind()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(
            f.read_counter(&key).await.unwrap().count,
            0,
            "{}: window did not end",
            f.kind()
        );
        f.hit_counter(&key, Duration::from_secs(10)).await.unwrap();
        f.reset_counter(&key).await.unwrap();
        assert_eq!(f.read_counter(&key).await.unwrap().count, 0);
    }
}

#[tokio::test]
async fn presence_reports_the_first_connection_and_the_last_disconnection_once() {
    for f in both().await {
        let user = Uuid::new_v4();
        let ttl = Duration::from_secs(30);
        assert!(
            f.presence_connect(user, "n1:a", ttl).await.unwrap(),
            "{}",
            f.kind()
        );
        assert!(
            !f.presence_connect(user, "n2:b", ttl).await.unwrap(),
            "{}: second device",
            f.kind()
        );
        assert_eq!(f.online(&[user, Uuid::new_v4()]).await.unwrap(), vec![user]);
        assert!(
            !f.presence_disconnect(user, "n1:a").await.unwrap(),
            "{}: still on n2",
            f.kind()
        );
        assert!(
            f.presence_disconnect(user, "n2:b").await.unwrap(),
            "{}: last one",
            f.kind()
        );
        assert!(
            !f.presence_disconnect(user, "n2:b").await.unwrap(),
            "{}: reported twice",
            f.kind()
        );
        assert!(f.online(&[user]).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn expired_leases_are_reaped_once_and_heartbeats_keep_them_alive() {
    for f in both().await {
        let (dead, alive) = (Uuid::new_v4(), Uuid::new_v4());
        let ttl = Duration::from_millis(300);
        f.presence_connect(dead, "crashed:1", ttl).await.unwrap();
        f.presence_connect(alive, "live:1", ttl).await.unwrap();
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            f.presence_heartbeat(&[(alive, "live:1".to_owned())], ttl)
                .await
                .unwrap();
        }
        let gone = f.presence_reap().await.unwrap();
        assert_eq!(gone, vec![dead], "{}", f.kind());
        assert!(
            f.presence_reap().await.unwrap().is_empty(),
            "{}: reaped twice",
            f.kind()
        );
        assert_eq!(f.online(&[dead, alive]).await.unwrap(), vec![alive]);
    }
}

#[tokio::test]
async fn typing_marks_expire_by_themselves() {
    for f in both().await {
        let (conv, user) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(
            f.typing_start(conv, user, Duration::from_millis(300))
                .await
                .unwrap()
        );
        assert!(
            !f.typing_start(conv, user, Duration::from_millis(300))
                .await
                .unwrap(),
            "{}",
            f.kind()
        );
        assert_eq!(f.typing_list(conv).await.unwrap(), vec![user]);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(
            f.typing_list(conv).await.unwrap().is_empty(),
            "{}",
            f.kind()
        );
        assert!(
            f.typing_start(conv, user, Duration::from_secs(5))
                .await
                .unwrap()
        );
        assert!(f.typing_stop(conv, user).await.unwrap());
        assert!(!f.typing_stop(conv, user).await.unwrap(), "{}", f.kind());
        assert!(f.typing_list(conv).await.unwrap().is_empty());
    }
}
