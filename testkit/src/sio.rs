//! A small Socket.IO v4 client over WebSocket or long-polling (Engine.IO 4), used by the tests
//! and the load generator. It speaks exactly what Chatty's clients do: one namespace per
//! connection, `auth` on connect, events, acknowledgements, and heartbeat replies.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// Something the server sent.
#[derive(Debug, Clone)]
pub enum Incoming {
    Event {
        name: String,
        data: Value,
    },
    /// The server ended the namespace connection (`41`), e.g. after a logout.
    Disconnected,
    /// The transport closed.
    Closed,
}

type AckMap = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One connected namespace. Dropping it (and every `SioSender` split from it) closes the
/// WebSocket.
pub struct SioClient {
    sender: SioSender,
    /// Engine.IO session id, for logs.
    pub sid: String,
    events: mpsc::UnboundedReceiver<Incoming>,
}

/// The sending half: cheap to clone, usable from many tasks while another reads events.
#[derive(Clone)]
pub struct SioSender {
    inner: Arc<SenderInner>,
}

struct SenderInner {
    ns: String,
    out: mpsc::UnboundedSender<String>,
    acks: AckMap,
    next_ack: AtomicU64,
    /// Transport and protocol tasks; aborted when the last handle goes.
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for SenderInner {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl std::ops::Deref for SioClient {
    type Target = SioSender;

    fn deref(&self) -> &SioSender {
        &self.sender
    }
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server's `connect_error` message.
    #[error("connect_error: {0}")]
    Refused(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

fn ns_prefix(ns: &str) -> String {
    if ns == "/" {
        String::new()
    } else {
        format!("{ns},")
    }
}

/// How the client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    /// HTTP long-polling only (no upgrade), as `socket.io-client` with `transports: ["polling"]`.
    Polling,
}

impl SioClient {
    /// Connects to `base` (e.g. `http://127.0.0.1:3000`), namespace `ns`, with `auth` as
    /// the handshake payload, over WebSocket, and waits for the namespace's answer.
    pub async fn connect(base: &str, ns: &str, auth: Value) -> Result<Self, ConnectError> {
        Self::connect_with(base, ns, auth, &[], Transport::WebSocket).await
    }

    pub async fn connect_with_headers(
        base: &str,
        ns: &str,
        auth: Value,
        headers: &[(&str, &str)],
    ) -> Result<Self, ConnectError> {
        Self::connect_with(base, ns, auth, headers, Transport::WebSocket).await
    }

    pub async fn connect_with(
        base: &str,
        ns: &str,
        auth: Value,
        headers: &[(&str, &str)],
        transport: Transport,
    ) -> Result<Self, ConnectError> {
        Self::connect_from(base, ns, auth, headers, transport, None).await
    }

    /// As `connect_with`, from local address `local` when given (port chosen by the
    /// kernel). A load tool opening tens of thousands of sockets to one server address
    /// spreads them over several local addresses so that ephemeral ports do not run out:
    /// each (local address, server address) pair has only about 28,000 of them.
    pub async fn connect_from(
        base: &str,
        ns: &str,
        auth: Value,
        headers: &[(&str, &str)],
        transport: Transport,
        local: Option<IpAddr>,
    ) -> Result<Self, ConnectError> {
        let (mut inbound, out, mut tasks) = match transport {
            Transport::WebSocket => websocket(base, headers, local).await?,
            Transport::Polling => polling(base, headers, local).await?,
        };

        // Engine.IO open packet.
        let open = next_packet(&mut inbound).await?;
        let Some(open) = open.strip_prefix('0') else {
            return Err(anyhow::anyhow!("expected an open packet, got {open}").into());
        };
        let open: Value = serde_json::from_str(open).context("open packet")?;
        let sid = open["sid"].as_str().unwrap_or_default().to_owned();

        let prefix = ns_prefix(ns);
        out.send(format!("40{prefix}{auth}"))
            .map_err(|_| anyhow::anyhow!("connection closed"))?;
        loop {
            let text = next_packet(&mut inbound).await?;
            if text == "2" {
                let _ = out.send("3".to_owned());
                continue;
            }
            if text.starts_with(&format!("40{prefix}")) {
                break;
            }
            if let Some(rest) = text.strip_prefix(&format!("44{prefix}")) {
                let v: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
                return Err(ConnectError::Refused(
                    v["message"].as_str().unwrap_or(rest).to_owned(),
                ));
            }
        }

        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let acks: AckMap = Arc::default();
        tasks.push(tokio::spawn(read_loop(
            inbound,
            prefix,
            out.clone(),
            ev_tx,
            acks.clone(),
        )));
        let inner = SenderInner {
            ns: ns.to_owned(),
            out,
            acks,
            next_ack: AtomicU64::new(1),
            tasks,
        };
        Ok(Self {
            sender: SioSender {
                inner: Arc::new(inner),
            },
            sid,
            events: ev_rx,
        })
    }

    /// Splits into a sender (clonable) and the stream of what the server sends.
    pub fn split(self) -> (SioSender, mpsc::UnboundedReceiver<Incoming>) {
        (self.sender, self.events)
    }

    /// The next event named `name` within `timeout`, skipping others.
    pub async fn next_event(&mut self, name: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => bail!("no {name} event within {timeout:?}"),
                Ok(None) => bail!("connection closed while waiting for {name}"),
                Ok(Some(Incoming::Event { name: n, data })) if n == name => return Ok(data),
                Ok(Some(_)) => {}
            }
        }
    }

    /// The next thing received, whatever it is.
    pub async fn next(&mut self, timeout: Duration) -> Option<Incoming> {
        tokio::time::timeout(timeout, self.events.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every event named `name` that arrives within `window`.
    pub async fn collect(&mut self, name: &str, window: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, self.events.recv()).await {
            if let Incoming::Event { name: n, data } = m {
                if n == name {
                    got.push(data);
                }
            }
        }
        got
    }

    /// Waits until the server disconnects this namespace or the transport closes.
    pub async fn wait_disconnected(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Err(_) => return false,
                Ok(None | Some(Incoming::Disconnected | Incoming::Closed)) => return true,
                Ok(Some(_)) => {}
            }
        }
    }
}

type Wire = (
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedSender<String>,
    Vec<tokio::task::JoinHandle<()>>,
);

/// A TCP connection to `url`'s host and port from `local` (any port).
async fn tcp_from(
    url: &tokio_tungstenite::tungstenite::http::Uri,
    local: IpAddr,
) -> anyhow::Result<tokio::net::TcpStream> {
    let host = url.host().context("url without a host")?;
    let port = url.port_u16().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let remote: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .context("resolving the server")?
        .find(|a| a.is_ipv4() == local.is_ipv4())
        .context("no server address of the local address's family")?;
    let socket = if local.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket
        .bind(SocketAddr::new(local, 0))
        .with_context(|| format!("binding to {local}"))?;
    let stream = socket.connect(remote).await.context("connecting")?;
    // Nagle off: small frames must not wait for the previous ACK.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Engine.IO over a WebSocket: one frame per packet.
async fn websocket(
    base: &str,
    headers: &[(&str, &str)],
    local: Option<IpAddr>,
) -> anyhow::Result<Wire> {
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replacen("http", "ws", 1)
    );
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        ws_url.as_str(),
    )
    .context("bad url")?;
    for (k, v) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                .context("header name")?,
            tokio_tungstenite::tungstenite::http::HeaderValue::from_str(v)
                .context("header value")?,
        );
    }
    let ws = if let Some(local) = local {
        let stream = tcp_from(req.uri(), local).await?;
        let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
        tokio_tungstenite::client_async_with_config(req, stream, None)
            .await
            .context("websocket handshake")?
            .0
    } else {
        // Nagle off: small frames must not wait for the previous ACK.
        tokio_tungstenite::connect_async_with_config(req, None, true)
            .await
            .context("websocket handshake")?
            .0
    };
    let (mut sink, mut stream) = ws.split();
    let (in_tx, in_rx) = mpsc::unbounded_channel::<String>();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Some(Ok(msg)) = stream.next().await {
            match msg {
                Message::Text(t) if in_tx.send(t.to_string()).is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            if sink.send(Message::text(m)).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    Ok((in_rx, out_tx, vec![reader, writer]))
}

/// Engine.IO over HTTP long-polling: a GET loop receives packets separated by 0x1e, POSTs
/// carry what the client sends (batched the same way).
async fn polling(
    base: &str,
    headers: &[(&str, &str)],
    local: Option<IpAddr>,
) -> anyhow::Result<Wire> {
    let mut default_headers = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        default_headers.insert(
            reqwest::header::HeaderName::from_bytes(k.as_bytes()).context("header name")?,
            reqwest::header::HeaderValue::from_str(v).context("header value")?,
        );
    }
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .no_proxy()
        .local_address(local)
        .default_headers(default_headers)
        .build()?;
    let url = format!("{base}/socket.io/?EIO=4&transport=polling");
    let body = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let open = body.split('\u{1e}').next().unwrap_or_default().to_owned();
    let sid = open
        .strip_prefix('0')
        .and_then(|o| serde_json::from_str::<Value>(o).ok())
        .and_then(|v| v["sid"].as_str().map(str::to_owned))
        .context("polling open packet")?;
    let session_url = format!("{url}&sid={sid}");
    let (in_tx, in_rx) = mpsc::unbounded_channel::<String>();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    in_tx.send(open).map_err(|_| anyhow::anyhow!("closed"))?;
    let (get_http, get_url) = (http.clone(), session_url.clone());
    let reader = tokio::spawn(async move {
        loop {
            let Ok(resp) = get_http.get(&get_url).send().await else {
                break;
            };
            if !resp.status().is_success() {
                break;
            }
            let Ok(body) = resp.text().await else { break };
            for packet in body.split('\u{1e}') {
                if packet == "1" || in_tx.send(packet.to_owned()).is_err() {
                    return;
                }
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(first) = out_rx.recv().await {
            let mut batch = first;
            while let Ok(more) = out_rx.try_recv() {
                batch.push('\u{1e}');
                batch.push_str(&more);
            }
            let sent = http
                .post(&session_url)
                .header("content-type", "text/plain;charset=UTF-8")
                .body(batch)
                .send()
                .await;
            if !sent.is_ok_and(|r| r.status().is_success()) {
                break;
            }
        }
    });
    Ok((in_rx, out_tx, vec![reader, writer]))
}

async fn next_packet(inbound: &mut mpsc::UnboundedReceiver<String>) -> anyhow::Result<String> {
    match tokio::time::timeout(Duration::from_secs(10), inbound.recv()).await {
        Err(_) => bail!("timed out waiting for the server"),
        Ok(None) => bail!("connection closed"),
        Ok(Some(t)) => Ok(t),
    }
}

impl SioSender {
    /// Sends an event without asking for an acknowledgement.
    pub fn emit(&self, event: &str, data: &Value) -> anyhow::Result<()> {
        let payload = serde_json::to_string(&(event, data))?;
        self.inner
            .out
            .send(format!("42{}{payload}", ns_prefix(&self.inner.ns)))
            .map_err(|_| anyhow::anyhow!("connection closed"))
    }

    /// Sends raw Socket.IO event arguments (for malformed-payload tests).
    pub fn emit_raw(&self, args_json: &str) -> anyhow::Result<()> {
        self.inner
            .out
            .send(format!("42{}{args_json}", ns_prefix(&self.inner.ns)))
            .map_err(|_| anyhow::anyhow!("connection closed"))
    }

    /// Sends an event and waits for its acknowledgement's first argument.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        data: &Value,
        timeout: Duration,
    ) -> anyhow::Result<Value> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .acks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id, tx);
        let payload = serde_json::to_string(&(event, data))?;
        self.inner
            .out
            .send(format!("42{}{id}{payload}", ns_prefix(&self.inner.ns)))
            .map_err(|_| anyhow::anyhow!("connection closed"))?;
        tokio::time::timeout(timeout, rx)
            .await
            .context("ack timed out")?
            .context("connection closed")
    }
}

async fn read_loop(
    mut inbound: mpsc::UnboundedReceiver<String>,
    prefix: String,
    out: mpsc::UnboundedSender<String>,
    events: mpsc::UnboundedSender<Incoming>,
    acks: AckMap,
) {
    let event_prefix = format!("42{prefix}");
    let ack_prefix = format!("43{prefix}");
    let disconnect = format!("41{prefix}");
    while let Some(text) = inbound.recv().await {
        let text = text.as_str();
        if text == "2" {
            let _ = out.send("3".to_owned());
        } else if text == "1" {
            break;
        } else if let Some(rest) = text.strip_prefix(&event_prefix) {
            let rest = rest.trim_start_matches(|c: char| c.is_ascii_digit());
            if let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(rest) {
                if let Some(Value::String(name)) = args.first().cloned() {
                    let data = if args.len() > 1 {
                        args.swap_remove(1)
                    } else {
                        Value::Null
                    };
                    let _ = events.send(Incoming::Event { name, data });
                }
            }
        } else if let Some(rest) = text.strip_prefix(&ack_prefix) {
            let split = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            let (id, body) = rest.split_at(split);
            if let (Ok(id), Ok(Value::Array(mut args))) =
                (id.parse::<u64>(), serde_json::from_str::<Value>(body))
            {
                let first = if args.is_empty() {
                    Value::Null
                } else {
                    args.swap_remove(0)
                };
                if let Some(tx) = acks
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&id)
                {
                    let _ = tx.send(first);
                }
            }
        } else if text.starts_with(&disconnect) {
            let _ = events.send(Incoming::Disconnected);
        }
    }
    // No acknowledgement can come any more: waiters learn it now instead of at their
    // timeout (a resuming client retries on its next socket at once).
    acks.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clear();
    let _ = events.send(Incoming::Closed);
}
