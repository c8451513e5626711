//! Routed fan-out: a node hears a room's channel only while one of its sockets is in the
//! room, hears it from the moment a join is answered, stops hearing it with the last
//! socket, and takes every channel up again after Redis comes back.

use std::{collections::HashSet, time::Duration};

use chatty::bus::{BusMessage, Emit, Member, Namespace, room};
use serde_json::json;
use uuid::Uuid;

use crate::{
    helpers::{Backend, SocketExt, TestApp, free_port, spawn_configured, two_nodes_on},
    realtime::PrivateRedis,
};

/// How many subscribers Redis counts on the bus channel of `room`: on a Redis Cluster, the
/// master of the channel's slot.
async fn subscribers(app: &TestApp, room: &str) -> i64 {
    let channel = format!("{}bus:{{{room}}}", app.prefix);
    let mut count = redis::cmd("PUBSUB");
    count.arg("SHARDNUMSUB").arg(&channel);
    let reply: (String, i64) = match app.backend {
        Backend::RedisCluster => {
            use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
            let seeds: Vec<String> = crate::helpers::redis_cluster_urls()
                .split(',')
                .map(str::to_owned)
                .collect();
            let client = redis::cluster::ClusterClient::new(seeds).unwrap();
            let mut c = client.get_async_connection().await.unwrap();
            let route = Route::with_key(channel.as_bytes(), SlotAddr::Master);
            let reply = c
                .route_command(
                    count,
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
                .unwrap();
            redis::from_redis_value(reply).unwrap()
        }
        _ => {
            let client = redis::Client::open(crate::helpers::redis_url()).unwrap();
            let mut c = client.get_multiplexed_async_connection().await.unwrap();
            count.query_async(&mut c).await.unwrap()
        }
    };
    reply.1
}

/// Waits (bounded) until Redis counts `want` subscribers on `room`'s channel.
async fn assert_subscribers(app: &TestApp, room: &str, want: i64) {
    let mut n = -1;
    for _ in 0..50 {
        n = subscribers(app, room).await;
        if n == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{room}: {n} subscribers, expected {want}");
}

/// Runs a test of the bus once on a single Redis and once on a Redis Cluster.
macro_rules! on_each_redis {
    ($name:ident) => {
        mod $name {
            use crate::helpers::Backend;

            #[tokio::test]
            async fn redis() {
                super::$name(Backend::Redis).await
            }

            #[tokio::test]
            async fn redis_cluster() {
                super::$name(Backend::RedisCluster).await
            }
        }
    };
}

on_each_redis!(
    an_event_published_right_after_a_join_is_answered_reaches_the_socket_on_another_node
);
on_each_redis!(the_last_socket_leaving_a_room_unsubscribes_the_node_from_it);
on_each_redis!(
    a_message_to_a_500_member_group_reaches_each_connected_member_once_and_each_node_only_its_own
);

async fn an_event_published_right_after_a_join_is_answered_reaches_the_socket_on_another_node(
    backend: Backend,
) {
    // Arrange: bob comes and goes on B, so B subscribes afresh each round
    let (a, b) = two_nodes_on(backend).await;
    let (_alice, bob, conv) = a.alice_and_bob_in_a_conversation().await;

    for round in 0..20 {
        // Act: the moment bob's connect is answered, A publishes to his user room; the
        // moment his join is answered, to the conversation's room
        let mut bob_sock = b.socket(&bob.token).await;
        probe(&a, room::user(bob.id), round).await;
        let joined = bob_sock
            .ack("joinConversation", &json!(conv.to_string()))
            .await;
        assert_eq!(joined["ok"], true, "{joined}");
        probe(&a, room::conversation(conv), round).await;

        // Assert
        for _ in 0..2 {
            assert_eq!(bob_sock.event("probe").await["round"], round);
        }
        drop(bob_sock);
    }
}

/// Publishes a `probe` event to `room` straight on `app`'s bus: no request, no database,
/// nothing between the caller and Redis.
async fn probe(app: &TestApp, room: String, round: i32) {
    let emit = Emit::new(
        Namespace::Chat,
        "probe",
        vec![room],
        &json!({ "round": round }),
    )
    .unwrap();
    app.state.bus.publish(BusMessage::Emit(emit)).await.unwrap();
}

async fn the_last_socket_leaving_a_room_unsubscribes_the_node_from_it(backend: Backend) {
    // Arrange: two sockets of bob's on B
    let (a, b) = two_nodes_on(backend).await;
    let (_alice, bob, conv) = a.alice_and_bob_in_a_conversation().await;
    let user_room = room::user(bob.id);
    let conv_room = room::conversation(conv);
    let first = b.socket(&bob.token).await;
    let second = b.socket(&bob.token).await;
    for s in [&first, &second] {
        s.ack("joinConversation", &json!(conv.to_string())).await;
    }
    assert_subscribers(&b, &user_room, 1).await;
    assert_subscribers(&b, &conv_room, 1).await;
    // A node without sockets of bob's hears none of his rooms.
    assert_subscribers(&a, &room::user(Uuid::new_v4()), 0).await;

    // Act + Assert: one socket leaves the conversation, then closes; the node still hears
    // bob's rooms through the other
    first
        .ack("leaveConversation", &json!(conv.to_string()))
        .await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_subscribers(&b, &user_room, 1).await;
    assert_subscribers(&b, &conv_room, 1).await;

    // ...and leaving with the last one drops them
    second
        .ack("leaveConversation", &json!(conv.to_string()))
        .await;
    assert_subscribers(&b, &conv_room, 0).await;
    drop(second);
    assert_subscribers(&b, &user_room, 0).await;
    for _ in 0..50 {
        if b.state.bus.channels() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.state.bus.channels(), 0);
}

#[tokio::test]
async fn a_redis_restart_with_thousands_of_channels_resubscribes_them_all_and_loses_nothing() {
    // Arrange: two nodes on a private Redis; B hears 3000 rooms besides bob's
    let mut redis = PrivateRedis::start(free_port());
    redis.wait_up().await;
    let url = redis.url();
    let tweak = |s: &mut chatty::config::Settings| s.redis_url = Some(url.clone());
    let a = spawn_configured(true, tweak).await;
    let b = a.spawn_peer_configured(tweak).await;
    let (alice, bob, conv) = a.alice_and_bob_in_a_conversation().await;
    let many: Vec<String> = (0..3000).map(|_| room::user(Uuid::new_v4())).collect();
    b.state
        .bus
        .join(Member::detached(Namespace::Chat), &many)
        .await;
    let mut bob_sock = b.socket(&bob.token).await;
    let before = a.send(&alice, conv, "before").await;
    let mut sent = vec![before["message_id"].clone()];

    // Act: Redis dies and comes back empty of subscriptions; alice keeps sending
    redis.restart().await;
    for i in 0..10 {
        sent.push(a.send(&alice, conv, &format!("during {i}")).await["message_id"].clone());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ready = false;
    for _ in 0..100 {
        if b.state.bus.connected() && a.state.bus.connected() {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "the buses never came back");
    sent.push(a.send(&alice, conv, "after").await["message_id"].clone());

    // Assert: every channel is back, and bob has every message
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("SHARDCHANNELS")
        .arg(format!("{}bus:*", b.prefix))
        .query_async(&mut c)
        .await
        .unwrap();
    let channels: HashSet<String> = channels.into_iter().collect();
    for r in many.iter().chain([&room::user(bob.id)]) {
        assert!(
            channels.contains(&format!("{}bus:{{{r}}}", b.prefix)),
            "{r} not resubscribed ({} channels)",
            channels.len()
        );
    }
    let mut heard = HashSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while heard.len() < sent.len() && tokio::time::Instant::now() < deadline {
        if let Ok(m) = bob_sock
            .next_event("newMessage", Duration::from_secs(1))
            .await
        {
            heard.insert(m["message_id"].clone());
        }
    }
    for id in &sent {
        assert!(heard.contains(id), "message {id} never reached bob");
    }
}

async fn a_message_to_a_500_member_group_reaches_each_connected_member_once_and_each_node_only_its_own(
    backend: Backend,
) {
    // Arrange: 500 members, 10 of them with a socket on A and 10 on B
    let (a, b) = two_nodes_on(backend).await;
    let mut online = Vec::new();
    for i in 0..20 {
        online.push(a.register(&crate::helpers::name(&format!("m{i}"))).await);
    }
    let conv = a.conversation_of(&online.iter().collect::<Vec<_>>()).await;
    let others: Vec<Uuid> = sqlx::query_scalar(
        "with u as (insert into users (username, email, password_hash) \
           select 'quiet' || g || '_' || $2, 'quiet' || g || '_' || $2 || '@example.com', 'x' \
           from generate_series(1, 480) g returning user_id) \
         insert into conversation_participants (conversation_id, user_id) \
         select $1, user_id from u returning user_id",
    )
    .bind(conv)
    .bind(crate::helpers::tag())
    .fetch_all(&a.db)
    .await
    .unwrap();
    assert_eq!(others.len() + online.len(), 500);
    let mut socks = Vec::new();
    for (i, u) in online.iter().enumerate() {
        let node = if i < 10 { &a } else { &b };
        socks.push(node.socket(&u.token).await);
    }
    let mut heard_on_b = b.state.bus.subscribe();

    // Act
    let sent = a.send(&online[0], conv, "to all 500").await;

    // Assert: every connected member gets it once
    for s in &mut socks {
        let got = s.event("newMessage").await;
        assert_eq!(got["message_id"], sent["message_id"]);
    }
    for s in &mut socks {
        s.assert_silent("newMessage", "a second copy").await;
    }
    // Node B heard it for its own ten members' rooms and no other.
    let mine: HashSet<String> = online[10..].iter().map(|u| room::user(u.id)).collect();
    let mut rooms = HashSet::new();
    while let Ok(Ok(msg)) =
        tokio::time::timeout(Duration::from_millis(300), heard_on_b.recv()).await
    {
        if let BusMessage::Emit(e) = msg.as_ref() {
            if e.event == "newMessage"
                && e.data.get().contains(sent["message_id"].as_str().unwrap())
            {
                rooms.extend(e.rooms.iter().cloned());
            }
        }
    }
    assert_eq!(rooms, mine);
}

/// Two publishers' pipelines interleave in Redis, so the copies of two messages for
/// several rooms can arrive crossed (2 for every member, then 1 for every member); each
/// room still gets 1 then 2, and nothing twice or never. Six members: on a node with fewer
/// delivery lanes than that, some share a lane.
#[tokio::test]
async fn crossed_copies_of_two_messages_reach_each_room_in_seq_order() {
    // Arrange
    let app = crate::helpers::spawn_app().await;
    let members = app.users(["m1", "m2", "m3", "m4", "m5", "m6"]).await;
    let conv = app
        .conversation_of(&members.iter().collect::<Vec<_>>())
        .await;
    let mut socks = Vec::new();
    for m in &members {
        socks.push(app.socket(&m.token).await);
    }
    let copy = |seq: i64, to: Uuid| {
        let emit = Emit::new(
            Namespace::Chat,
            "newMessage",
            vec![room::user(to)],
            &json!({ "conversation_id": conv, "seq": seq }),
        )
        .unwrap()
        .ordered(conv, seq);
        BusMessage::Emit(emit)
    };

    // Act
    for seq in [2, 1] {
        for m in &members {
            app.state.bus.deliver_local(copy(seq, m.id));
        }
    }

    // Assert
    for sock in &mut socks {
        let got: Vec<i64> = sock
            .collect("newMessage", Duration::from_millis(500))
            .await
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect();
        assert_eq!(got, [1, 2]);
    }
}
