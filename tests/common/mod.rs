//! Test harness: a real server on 127.0.0.1:0 in-process, and a third-party WebSocket
//! client (tokio-tungstenite) that speaks the protocol through the `shared` crate only.
//!
//! One copy of each helper the test files share: the submodules hold the larger ones
//! (a hand-written WebSocket client, a watching player, the tick accounting against
//! `/metrics`, a TCP proxy that can cut connections); this file the small ones.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod accounting;
pub mod auth;
pub mod bots;
pub mod browser;
pub mod proxy;
pub mod raw;
pub mod redis;
pub mod watcher;

// Re-exported so that `use common::*` brings them too; like the helpers, each test
// binary uses a different part of them.
#[allow(unused_imports)]
pub use accounting::{left_out, missing_before, LeftOut};
#[allow(unused_imports)]
pub use proxy::Proxy;
#[allow(unused_imports)]
pub use raw::RawWs;
#[allow(unused_imports)]
pub use watcher::Watcher;

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use glam::Vec2;
use tickcast::server::Config;
use tickcast::shared::codec::{decode_server, encode_to_vec};
use tickcast::shared::{
    ClientMsg, DisconnectReason, Hello, Input, ServerMsg, SessionToken, Snapshot, Welcome,
    PROTOCOL_VERSION, SUBPROTOCOL,
};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::{Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

/// Generous bound on anything a test waits for; tests finish long before unless broken.
pub const WAIT: Duration = Duration::from_secs(10);

/// How often the pollers ask the server again; only [`WAIT`] bounds how long they ask.
pub const POLL: Duration = Duration::from_millis(10);

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

/// The upgrade request for `url`, offering `protocol` and sending `origin` if given.
fn upgrade_request(
    url: &str,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<Request, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", HeaderValue::from_str(p).unwrap());
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", HeaderValue::from_str(o).unwrap());
    }
    Ok(req)
}

/// Whatever was offered ("chat.v2, tickcast.v2" included), an accepted upgrade must
/// name exactly the one protocol the server speaks: not the whole offer, not another
/// entry of it, and not nothing.
fn assert_echoes_subprotocol(response: &Response, offered: Option<&str>) {
    let echoed = response
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .map(|v| v.to_str().unwrap_or("<not text>"))
        .collect::<Vec<_>>();
    assert_eq!(
        echoed,
        [SUBPROTOCOL],
        "the 101 response to an offer of {offered:?} echoes exactly {SUBPROTOCOL}"
    );
}

/// Opens a WebSocket with tokio-tungstenite, offering `tickcast.v2` unless `protocol`
/// says otherwise, with an optional Origin.
pub async fn connect_with(
    url: &str,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let req = upgrade_request(url, protocol, origin)?;
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(req))
        .await
        .expect("connect timed out")?;
    assert_echoes_subprotocol(&response, protocol);
    Ok(ws)
}

pub async fn connect(url: &str) -> Ws {
    connect_with(url, Some(SUBPROTOCOL), None).await.unwrap()
}

/// The receive buffer [`connect_small_window`] asks the kernel for.
pub const SMALL_WINDOW: u32 = 4096;

/// [`connect`] over a socket whose kernel receive buffer is [`SMALL_WINDOW`] bytes (Linux
/// doubles it), so a server that writes to it and is not read blocks after a few KiB.
/// `addr` is the server's address in `url`.
pub async fn connect_small_window(addr: SocketAddr, url: &str) -> Ws {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(SMALL_WINDOW).unwrap();
    let stream = tokio::time::timeout(WAIT, socket.connect(addr))
        .await
        .expect("connect timed out")
        .unwrap();
    let req = upgrade_request(url, Some(SUBPROTOCOL), None).unwrap();
    let (ws, response) = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::client_async(req, MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("upgrade timed out")
    .unwrap();
    assert_echoes_subprotocol(&response, Some(SUBPROTOCOL));
    ws
}

/// The HTTP status and plain-text body (trimmed) of a refused handshake.
pub fn refusal_of(err: &tungstenite::Error) -> (u16, String) {
    match err {
        tungstenite::Error::Http(response) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .trim()
                .to_owned(),
        ),
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

/// The HTTP status of a refused handshake.
pub fn refused_status(err: &tungstenite::Error) -> u16 {
    refusal_of(err).0
}

/// The status and plain-text body a handshake to `url` (offering `tickcast.v2`) is
/// refused with. Panics if the upgrade succeeds.
pub async fn refusal(url: &str) -> (u16, String) {
    match connect_with(url, Some(SUBPROTOCOL), None).await {
        Ok(_) => panic!("{url}: the upgrade was accepted"),
        Err(e) => refusal_of(&e),
    }
}

/// The HTTP status a handshake to `url` (offering `tickcast.v2`) is refused with.
/// Panics if the upgrade succeeds.
pub async fn refused(url: &str) -> u16 {
    refusal(url).await.0
}

/// A `Hello` that joins as a new player named `name`.
pub fn hello_msg(name: &str) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        room: String::new(),
        resume: None,
        auth_token: None,
    })
}

/// A `Hello` that resumes the session of `token`.
pub fn resume_msg(name: &str, token: SessionToken) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        room: String::new(),
        resume: Some(token),
        auth_token: None,
    })
}

/// An `Input` with no buttons and no game payload.
pub fn input_msg(seq: u32, movement: Vec2) -> ClientMsg {
    ClientMsg::Input(Input {
        seq,
        movement,
        buttons: 0,
        payload: Default::default(),
    })
}

pub async fn send(ws: &mut Ws, msg: &ClientMsg) {
    ws.send(Message::Binary(encode_to_vec(msg).unwrap().into()))
        .await
        .unwrap();
}

/// The next WebSocket message of any kind. Panics on timeout, on the end of the stream
/// and on a connection error.
pub async fn next_message(ws: &mut Ws) -> Message {
    tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("no message in time")
        .expect("stream ended without a close frame")
        .unwrap()
}

/// Next protocol message, skipping control frames. Panics on close or timeout.
pub async fn recv(ws: &mut Ws) -> ServerMsg {
    recv_sized(ws).await.0
}

/// Next protocol message and the size of its WebSocket payload (what the server counts
/// in `tickcast_bytes_sent_total`), skipping control frames. Panics on close or timeout.
pub async fn recv_sized(ws: &mut Ws) -> (ServerMsg, usize) {
    loop {
        match next_message(ws).await {
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

/// The next protocol message, which must be a `Welcome`.
pub async fn recv_welcome(ws: &mut Ws) -> Welcome {
    match recv(ws).await {
        ServerMsg::Welcome(w) => w,
        other => panic!("expected Welcome, got {other:?}"),
    }
}

/// Sends Hello and returns the Welcome.
pub async fn hello(ws: &mut Ws, name: &str) -> Welcome {
    send(ws, &hello_msg(name)).await;
    recv_welcome(ws).await
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

/// The code and reason `reason` stands for, to compare with what a client received.
pub fn close_of(reason: DisconnectReason) -> (u16, String) {
    (reason.code(), reason.reason().to_owned())
}

/// Sends close 1000 without waiting for the server's answer.
pub async fn close_normally(ws: &mut Ws) {
    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .unwrap();
}

/// Leaves as PROTOCOL.md section 3 says a client does: close 1000, and the server
/// echoes it.
pub async fn leave(ws: &mut Ws) {
    close_normally(ws).await;
    assert_eq!(
        expect_close(ws).await.0,
        DisconnectReason::Normal.code(),
        "the server echoes the player's 1000"
    );
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

/// The text of `GET /metrics`; panics unless it answers 200.
pub async fn metrics(addr: SocketAddr) -> String {
    let (status, text) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    text
}

/// The text of the value of one series of a Prometheus text page, named exactly with
/// its labels (`tickcast_ticks_total`, `tickcast_connections_closed_total{code="1007"}`),
/// if the page has it. A series that only starts with `series` does not match.
fn sample_of<'a>(text: &'a str, series: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(str::trim)
}

/// The value of one series, named as for [`sample_of`]; a missing one panics.
pub fn metric(text: &str, series: &str) -> f64 {
    let v = sample_of(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"));
    v.parse()
        .unwrap_or_else(|e| panic!("{series}: {v:?} is not a number: {e}"))
}

/// The value of a counter or gauge that is a whole number, named as for [`sample_of`],
/// if the page has it (a room's series appear only once the room runs, a close code's
/// only once a connection closed with it). A value that is not a count panics.
pub fn value(text: &str, series: &str) -> Option<u64> {
    sample_of(text, series).map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{series}: {v:?} is not a count"))
    })
}

/// [`value`] for a series the page must have.
pub fn count(text: &str, series: &str) -> u64 {
    value(text, series).unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// [`value`] of a fresh `GET /metrics`.
pub async fn server_metric(addr: SocketAddr, series: &str) -> Option<u64> {
    value(&metrics(addr).await, series)
}

/// Calls `probe` every [`POLL`] until it returns `Ok`, and returns that value. Panics
/// after [`WAIT`] with `what` and the last `Err`, which says what was seen instead: the
/// way to wait for a change the server makes on its own time.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if tokio::time::Instant::now() >= deadline => {
                panic!("{what}: not within {WAIT:?}; last seen: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

/// Asks until `ask` answers `want` ([`eventually`] for one value).
pub async fn wait_until<T, F>(what: &str, want: T, mut ask: impl FnMut() -> F)
where
    T: PartialEq + Debug,
    F: Future<Output = T>,
{
    let want = &want;
    eventually(what, || {
        let answer = ask();
        async move {
            let got = answer.await;
            if got == *want {
                Ok(())
            } else {
                Err(format!("still {got:?}, not {want:?}"))
            }
        }
    })
    .await;
}

/// The `players` of `GET /rooms/{room}` (connected ones and those within their
/// reconnect grace), or `None` if there is no such room (404). Any other answer panics.
pub async fn room_players(addr: SocketAddr, room: &str) -> Option<u64> {
    let (status, info) = http_json(addr, "GET", &format!("/rooms/{room}"), "").await;
    match status {
        200 => Some(
            info["players"]
                .as_u64()
                .unwrap_or_else(|| panic!("GET /rooms/{room}: no player count in {info}")),
        ),
        404 => None,
        other => panic!("GET /rooms/{room}: {other} {info}"),
    }
}

/// [`room_players`] of a room that must exist.
pub async fn players(addr: SocketAddr, room: &str) -> u64 {
    room_players(addr, room)
        .await
        .unwrap_or_else(|| panic!("GET /rooms/{room}: no such room"))
}

/// Waits until `room`, which must exist all along, counts `want` players: the server
/// handles a join, a close or an expiry in its own time, and this is where it says so.
pub async fn wait_players(addr: SocketAddr, room: &str, want: u64) {
    wait_until(&format!("players in room {room}"), want, || {
        players(addr, room)
    })
    .await;
}

/// Waits until the server has finished with every connection but `open` of them: a
/// dropped one is noticed on the server's own time (and the room told, which the server
/// does before it counts the connection closed).
pub async fn wait_open(addr: SocketAddr, open: u64) {
    wait_until("connections open", open, || async move {
        count(&metrics(addr).await, "tickcast_connections_open")
    })
    .await;
}
