//! Test harness: a real server on 127.0.0.1:0 in-process, and a third-party WebSocket
//! client (tokio-tungstenite) that speaks the protocol through the `shared` crate only.
#![allow(dead_code)] // each test binary uses a different part of the harness

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tickcast::server::Config;
use tickcast::shared::codec::{decode_server, encode_to_vec};
use tickcast::shared::{
    ClientMsg, Hello, ServerMsg, Snapshot, Welcome, PROTOCOL_VERSION, SUBPROTOCOL,
};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Generous bound on anything a test waits for; tests finish long before unless broken.
pub const WAIT: Duration = Duration::from_secs(10);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server running in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub fn ws_url(&self, room: &str) -> String {
        format!("ws://{}/ws?room={room}", self.addr)
    }

    /// Starts the drain (like SIGTERM) and waits for `run` to return.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(WAIT, self.task).await??
    }
}

/// Default test configuration: loopback, port 0, a small world, and no drain (stopping
/// closes every player at once; the drain has its own tests).
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        npcs: 16,
        drain_timeout: Duration::ZERO,
        ..Config::default()
    }
}

pub async fn start(config: Config) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tickcast::server::run(listener, config, shutdown.clone()));
    TestServer {
        addr,
        shutdown,
        task,
    }
}

/// Opens a WebSocket with tokio-tungstenite, offering `tickcast.v2` unless `protocol`
/// says otherwise, with an optional Origin.
pub async fn connect_with(
    url: &str,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")?;
    // Whatever was offered ("chat.v2, tickcast.v2" included), an accepted upgrade must
    // name exactly the one protocol the server speaks: not the whole offer, not another
    // entry of it, and not nothing.
    let echoed = response
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .map(|v| v.to_str().unwrap_or("<not text>"))
        .collect::<Vec<_>>();
    assert_eq!(
        echoed,
        [SUBPROTOCOL],
        "the 101 response to an offer of {protocol:?} echoes exactly {SUBPROTOCOL}"
    );
    Ok(ws)
}

pub async fn connect(url: &str) -> Ws {
    connect_with(url, Some(SUBPROTOCOL), None).await.unwrap()
}

/// The HTTP status of a refused handshake.
pub fn refused_status(err: &tungstenite::Error) -> u16 {
    match err {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// The HTTP status a handshake to `url` (offering `tickcast.v2`) is refused with.
/// Panics if the upgrade succeeds.
pub async fn refused(url: &str) -> u16 {
    match connect_with(url, Some(SUBPROTOCOL), None).await {
        Ok(_) => panic!("{url}: the upgrade was accepted"),
        Err(e) => refused_status(&e),
    }
}

pub async fn send(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::Binary(encode_to_vec(msg).unwrap().into()))
        .await
        .unwrap();
}

/// Next protocol message, skipping control frames. Panics on close or timeout.
pub async fn recv(ws: &mut Ws) -> ServerMsg {
    recv_sized(ws).await.0
}

/// Next protocol message and the size of its WebSocket payload (what the server counts
/// in `tickcast_bytes_sent_total`), skipping control frames. Panics on close or timeout.
pub async fn recv_sized(ws: &mut Ws) -> (ServerMsg, usize) {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no message in time")
            .expect("stream ended")
            .unwrap();
        match msg {
            Message::Binary(bytes) => return (decode_server(&bytes).unwrap(), bytes.len()),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

pub async fn recv_snapshot(ws: &mut Ws) -> Snapshot {
    loop {
        if let ServerMsg::Snapshot(s) = recv(ws).await {
            return s;
        }
    }
}

/// Sends Hello and returns the Welcome.
pub async fn hello(ws: &mut Ws, name: &str) -> Welcome {
    send(
        ws,
        &ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            name: name.into(),
            room: String::new(),
            resume: None,
        }),
    )
    .await;
    match recv(ws).await {
        ServerMsg::Welcome(w) => w,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// Reads until the server's close frame and returns its code and reason. Snapshots
/// that were already in flight are skipped.
pub async fn expect_close(ws: &mut Ws) -> (u16, String) {
    loop {
        let next = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no close in time");
        match next {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
            None => panic!("stream ended without a close frame"),
        }
    }
}

/// One HTTP/1.1 request over a fresh connection; returns the status and the body.
pub async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    parse_response(&out)
}

/// The status and body of a whole HTTP/1.1 response (`Connection: close`, read to EOF).
pub fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The text of `GET /metrics`; panics unless it answers 200.
pub async fn metrics(addr: SocketAddr) -> String {
    let (status, text) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    text
}

/// The value of one series of a Prometheus text page, named exactly with its labels
/// (`tickcast_ticks_total`, `tickcast_connections_closed_total{code="1007"}`). A
/// series that only starts with `series` does not match; a missing one panics.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{series}: {v:?} is not a number: {e}"))
        })
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// [`metric`] for a counter or gauge that is a whole number.
pub fn count(text: &str, series: &str) -> u64 {
    let v = metric(text, series);
    assert!(
        v >= 0.0 && v.fract() == 0.0,
        "{series} = {v} is not a count"
    );
    v as u64
}

/// `http` with a JSON answer.
pub async fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let (status, text) = http(addr, method, path, body).await;
    let value = if text.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    };
    (status, value)
}
