//! Structured logs, read the way a log shipper reads them: the stdout of a `chatty serve`
//! process started with `CHATTY_LOG_FORMAT=json`.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use chatty_testkit::SioClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{ProcessNode, free_port, name, spawn_app};

/// Lines a child process writes, collected by a reader thread as they come.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Lines {
    fn follow(&self, out: impl std::io::Read + Send + 'static) {
        let lines = self.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                lines.lock().unwrap().push(line);
            }
        });
    }

    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }

    /// Waits for the first line that parses as JSON and satisfies `accept`.
    async fn find(&self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..100 {
            let found = self
                .all()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| accept(v));
            if let Some(v) = found {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "no log line {what}; the node wrote:\n{}",
            self.all().join("\n")
        );
    }
}

#[tokio::test]
async fn json_log_lines_name_the_node_the_request_the_user_and_the_socket() {
    // Arrange: the database and prefix of an in-process node; the node under test is the
    // real binary, without CHATTY_NODE_ID, so its id is generated.
    let app = spawn_app().await;
    let port = free_port();
    let mut cmd = app.process_command(port);
    cmd.env("CHATTY_LOG_FORMAT", "json")
        .env("RUST_LOG", "info,chatty=debug")
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn chatty");
    let lines = Lines::default();
    lines.follow(child.stdout.take().expect("piped stdout"));
    let node = ProcessNode {
        child,
        address: format!("http://127.0.0.1:{port}"),
    };
    node.ready().await;
    let client = reqwest::Client::new();
    let health: Value = client
        .get(format!("{}/healthz", node.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let node_id = health["node"]
        .as_str()
        .expect("node in /healthz")
        .to_owned();
    assert!(!node_id.is_empty());
    let user = app.register(&name("logs")).await;

    // Act: an authenticated request that fails with 404, and a socket event
    let resp = client
        .get(format!("{}/conversations/{}", node.address, Uuid::new_v4()))
        .bearer_auth(&user.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let socket = SioClient::connect(&node.address, "/", json!({ "token": user.token }))
        .await
        .expect("socket connects");
    let ack = socket
        .emit_with_ack(
            "leaveConversation",
            &json!(Uuid::new_v4()),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
    assert_eq!(ack["ok"], true, "{ack}");

    // Assert: the request's line names node, request and user
    let request = lines
        .find("for the request", |v| {
            v["request_id"] == request_id.as_str()
        })
        .await;
    assert_eq!(request["node_id"], node_id.as_str(), "{request}");
    assert_eq!(request["user_id"], user.id.to_string(), "{request}");
    assert_eq!(request["status"], 404, "{request}");
    assert_eq!(request["level"], "INFO", "{request}");
    // ... the socket event's line names node, user and socket
    let event = lines
        .find("for the socket event", |v| {
            v["event"] == "leaveConversation"
        })
        .await;
    assert_eq!(event["node_id"], node_id.as_str(), "{event}");
    assert_eq!(event["user_id"], user.id.to_string(), "{event}");
    assert!(
        event["socket_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{event}"
    );
    // ... and every line the node wrote is a JSON object naming the node
    let all = lines.all();
    assert!(
        all.iter().any(|l| l.contains("listening")),
        "{}",
        all.join("\n")
    );
    for line in &all {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert_eq!(v["node_id"], node_id.as_str(), "{line}");
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }
}
