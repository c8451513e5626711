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
        Arc::new(RedisFabric::connect(&redis_url(), &prefix).await.expect("redis")),
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
        assert_eq!(f.touch_session(s1.session_id).await.unwrap(), Some(user), "{}", f.kind());
        assert_eq!(f.list_sessions(user).await.unwrap().len(), 2, "{}", f.kind());
        assert!(!f.revoke_session(Uuid::new_v4(), s1.session_id).await.unwrap(), "{}: stranger revoked", f.kind());
        assert!(f.revoke_session(user, s1.session_id).await.unwrap());
        assert_eq!(f.touch_session(s1.session_id).await.unwrap(), None);
        assert_eq!(f.touch_session(s2.session_id).await.unwrap(), Some(user));
        assert_eq!(f.revoke_all_sessions(user).await.unwrap(), vec![s2.session_id]);
        assert!(f.list_sessions(user).await.unwrap().is_empty(), "{}", f.kind());
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
        assert_eq!(f.touch_session(s.session_id).await.unwrap(), None, "{}", f.kind());
        assert!(f.list_sessions(user).await.unwrap().is_empty(), "{}", f.kind());
    }
}

#[tokio::test]
async fn counters_count_within_a_window_and_reset() {
    for f in both().await {
        let key = format!("k:{}", Uuid::new_v4());
        assert_eq!(f.read_counter(&key).await.unwrap().count, 0);
        for i in 1..=3 {
            assert_eq!(f.hit_counter(&key, Duration::from_millis(400)).await.unwrap().count, i, "{}", f.kind());
        }
        let w = f.read_counter(&key).await.unwrap();
        assert_eq!(w.count, 3);
        assert!(w.resets_in > Duration::ZERO && w.resets_in <= Duration::from_millis(400), "{}: {w:?}", f.kind());
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(f.read_counter(&key).await.unwrap().count, 0, "{}: window did not end", f.kind());
        f.hit_counter(&key, Duration::from_secs(10)).await.unwrap();
        f.reset_counter(&key).await.unwrap();
        assert_eq!(f.read_counter(&key).await.unwrap().count, 0);
    }
}
