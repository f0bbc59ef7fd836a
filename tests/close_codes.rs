//! Close codes of PROTOCOL.md section 7 that need a misbehaving client: 1002 for a broken
//! WebSocket frame, 4002 for an input `seq` that does not increase, 4005 for a client
//! that lets its reliable queue overflow. Each closes only the offender, with the
//! documented code and reason, while another player of the room keeps receiving
//! snapshots.
//!
//! 1011 (`InternalError`) has no test: the server sends it only when encoding its own
//! `Welcome`, `Pong` or snapshot into a `Vec` fails (server/src/net/connection.rs,
//! `write_loop`), which bincode never does for these types, so no input provokes it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;

use common::*;
use futures_util::StreamExt;
use glam::Vec2;
use tickcast::shared::codec::{decode_server, encode_to_vec};
use tickcast::shared::{
    ClientMsg, DisconnectReason, Hello, Input, Ping, ServerMsg, Welcome, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The example key of RFC 6455 section 1.3 and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket client written out by hand over a TCP stream. It sends exactly the bytes
/// it is given (reserved bits, unknown opcodes, fragments out of order), and it never
/// answers or reads anything on its own, which no WebSocket library allows.
struct RawWs {
    stream: TcpStream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades `path` with `tickcast.v2`; `recv_buffer` sets SO_RCVBUF before connecting.
    async fn connect(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: tickcast.v2\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut ws = Self {
            stream,
            buf: Vec::new(),
        };
        let end = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                ws.read_more().await;
            }
        })
        .await
        .expect("no upgrade response in time");
        let head = String::from_utf8(ws.buf[..end].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        ws.buf.drain(..end + 4);
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains(&format!(
                "sec-websocket-accept: {}",
                ACCEPT.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(
            head.contains("sec-websocket-protocol: tickcast.v2"),
            "{head}"
        );
        ws
    }

    async fn read_more(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.unwrap();
        assert_ne!(n, 0, "the server ended the stream without a close frame");
    }

    /// Writes one frame, masked as every client frame must be. `head` is its first byte:
    /// FIN, RSV1-3 and the opcode.
    async fn send_frame(&mut self, head: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![head];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= 0xffff => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Sends one protocol message as a single binary frame.
    async fn send(&mut self, msg: &ClientMsg) {
        self.send_frame(0x82, &encode_to_vec(msg).unwrap()).await;
    }

    /// The next frame from the server: its opcode and payload. Server frames are never
    /// masked, and tickcast's server never fragments.
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        tokio::time::timeout(WAIT, async {
            while self.buf.len() < 2 {
                self.read_more().await;
            }
            let (b0, b1) = (self.buf[0], self.buf[1]);
            assert_eq!(b0 & 0xf0, 0x80, "FIN set, no reserved bits: {b0:#04x}");
            assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
            // Where the payload starts: after a 16- or 64-bit length, or right away.
            let at = match b1 & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            while self.buf.len() < at {
                self.read_more().await;
            }
            let len = match at {
                4 => usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                10 => usize::try_from(u64::from_be_bytes(self.buf[2..10].try_into().unwrap()))
                    .unwrap(),
                _ => usize::from(b1 & 0x7f),
            };
            while self.buf.len() < at + len {
                self.read_more().await;
            }
            let payload = self.buf[at..at + len].to_vec();
            self.buf.drain(..at + len);
            (b0 & 0x0f, payload)
        })
        .await
        .expect("no frame in time")
    }

    /// Sends `Hello` and returns the `Welcome`, ignoring pings.
    async fn hello(&mut self, name: &str) -> Welcome {
        self.send(&hello_msg(name)).await;
        loop {
            match self.frame().await {
                (0x2, payload) => match decode_server(&payload).unwrap() {
                    ServerMsg::Welcome(w) => return w,
                    other => panic!("expected Welcome, got {other:?}"),
                },
                (0x9, _) => continue,
                (op, payload) => panic!("expected Welcome, got opcode {op:#x}: {payload:?}"),
            }
        }
    }

    /// Reads (without answering anything) up to the server's close frame; returns its
    /// code and reason.
    async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match self.frame().await {
                (0x8, p) => {
                    assert!(p.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    return (code, String::from_utf8(p[2..].to_vec()).unwrap());
                }
                (0x2 | 0x9, _) => continue,
                (op, payload) => panic!("unexpected opcode {op:#x}: {payload:?}"),
            }
        }
    }
}

fn hello_msg(name: &str) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        room: String::new(),
        resume: None,
    })
}

fn input(seq: u32) -> ClientMsg {
    ClientMsg::Input(Input {
        seq,
        movement: Vec2::X,
        buttons: 0,
        payload: Default::default(),
    })
}

/// The code and reason `reason` stands for, to compare with what a client received.
fn expected(reason: DisconnectReason) -> (u16, String) {
    (reason.code(), reason.reason().to_owned())
}

/// A well-behaved player in the room under test. It reads everything (tungstenite
/// answers the server's pings) and publishes the newest snapshot tick it received; its
/// task panics if the connection ends or a tick does not increase.
struct Watcher {
    latest: watch::Receiver<u64>,
    stop: CancellationToken,
    task: JoinHandle<usize>,
}

impl Watcher {
    /// Joins `url`; the player is in the room when this returns.
    async fn join(url: &str) -> Self {
        let mut ws = connect(url).await;
        hello(&mut ws, "watcher").await;
        let (tx, latest) = watch::channel(0);
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let mut received = 0;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => break received,
                        msg = ws.next() => match msg {
                            Some(Ok(Message::Binary(b))) => {
                                if let ServerMsg::Snapshot(s) = decode_server(&b).unwrap() {
                                    assert!(s.tick > *tx.borrow(), "ticks go back: {}", s.tick);
                                    tx.send_replace(s.tick);
                                    received += 1;
                                }
                            }
                            Some(Ok(_)) => {}
                            other => panic!("the watcher lost its connection: {other:?}"),
                        }
                    }
                }
            }
        });
        Self { latest, stop, task }
    }

    /// Waits until the watcher has received a snapshot of a tick after `tick`; returns
    /// that tick.
    async fn wait_past(&mut self, tick: u64) -> u64 {
        let seen = tokio::time::timeout(WAIT, self.latest.wait_for(|t| *t > tick))
            .await
            .unwrap_or_else(|_| panic!("the watcher received nothing after tick {tick}"))
            .expect("the watcher's task ended");
        *seen
    }

    /// Stops the watcher; returns how many snapshots it received.
    async fn finish(self) -> usize {
        self.stop.cancel();
        self.task.await.expect("the watcher failed")
    }
}

/// The `players` of `GET /rooms/{room}`.
async fn players(addr: SocketAddr, room: &str) -> u64 {
    let (status, info) = http_json(addr, "GET", &format!("/rooms/{room}"), "").await;
    assert_eq!(status, 200, "{info}");
    info["players"].as_u64().unwrap()
}

/// Asks until `ask` answers `want`, for at most [`WAIT`]: the way to wait for a change
/// the server makes on its own time and only shows through HTTP.
async fn wait_until<T, F>(what: &str, want: T, mut ask: impl FnMut() -> F)
where
    T: PartialEq + std::fmt::Debug,
    F: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = ask().await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still {got:?}, not {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// The value of the metric line named `series` (name and labels) in `GET /metrics`.
async fn server_metric(addr: SocketAddr, series: &str) -> Option<u64> {
    let (status, text) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_websocket_frames_close_with_1002_and_the_room_plays_on() {
    let server = start(config()).await;
    let url = server.ws_url("frames");
    let mut watcher = Watcher::join(&url).await;
    let mut tick = watcher.wait_past(0).await;
    let path = "/ws?room=frames";
    let ping = encode_to_vec(&ClientMsg::Ping(Ping { nonce: 7 })).unwrap();

    // Each case: what is wrong with the one frame sent after a Hello, the frame's first
    // byte (FIN, RSV1-3, opcode) and its payload.
    let cases: [(&str, u8, &[u8]); 7] = [
        ("RSV1 set on a binary frame", 0xc2, &ping),
        ("RSV3 set on a binary frame", 0x92, &ping),
        ("reserved data opcode 0x3", 0x83, &ping),
        ("reserved control opcode 0xB", 0x8b, b""),
        ("a fragmented ping", 0x09, b"x"),
        ("a ping of 126 bytes", 0x89, &[0u8; 126]),
        ("a continuation with no message", 0x80, &ping),
    ];
    for (what, head, payload) in cases {
        let mut ws = RawWs::connect(server.addr, path, None).await;
        ws.hello("mallory").await;
        ws.send_frame(head, payload).await;
        assert_eq!(
            ws.expect_close().await,
            expected(DisconnectReason::ProtocolError),
            "{what}"
        );
        tick = watcher.wait_past(tick).await;
    }

    // A new message started inside a fragmented one.
    let mut ws = RawWs::connect(server.addr, path, None).await;
    ws.hello("mallory").await;
    ws.send_frame(0x02, &ping[..1]).await;
    ws.send_frame(0x82, &ping).await;
    assert_eq!(
        ws.expect_close().await,
        expected(DisconnectReason::ProtocolError),
        "a binary frame inside a fragmented message"
    );

    // A broken frame before Hello is a framing error too, not an unexpected message.
    let mut ws = RawWs::connect(server.addr, path, None).await;
    ws.send_frame(0xa2, &encode_to_vec(&hello_msg("early")).unwrap())
        .await;
    assert_eq!(
        ws.expect_close().await,
        expected(DisconnectReason::ProtocolError),
        "RSV2 on the Hello"
    );

    // The watcher was never disturbed and still receives new ticks; the offenders left.
    let tick = watcher.wait_past(tick).await;
    watcher.wait_past(tick + 3).await;
    wait_until("players", 1, || players(server.addr, "frames")).await;
    assert!(watcher.finish().await > 3);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_seq_that_does_not_increase_closes_with_4002() {
    let server = start(config()).await;
    let url = server.ws_url("seq");
    let mut watcher = Watcher::join(&url).await;
    let mut tick = watcher.wait_past(0).await;

    for (what, seqs) in [
        ("repeated", [1, 2, 3, 3]),
        ("decreasing", [1, 2, 7, 4]),
        ("back to zero", [1, 2, 3, 0]),
    ] {
        let mut ws = connect(&url).await;
        hello(&mut ws, "mallory").await;
        // The increasing ones are fine: the server applies them (the newest wins)...
        for seq in &seqs[..3] {
            send(&mut ws, &input(*seq)).await;
        }
        loop {
            let s = recv_snapshot(&mut ws).await;
            if s.last_input_seq == seqs[2] {
                break;
            }
            assert!(s.last_input_seq < seqs[2], "{what}: {s:?}");
        }
        // ...and the one that does not increase ends the connection.
        send(&mut ws, &input(seqs[3])).await;
        let (code, reason) = expect_close(&mut ws).await;
        assert_eq!(
            (code, reason),
            expected(DisconnectReason::UnexpectedMessage),
            "{what}: {seqs:?}"
        );
        tick = watcher.wait_past(tick).await;
    }

    // The room went on for the watcher, and the offenders left it.
    watcher.wait_past(tick + 3).await;
    wait_until("players", 1, || players(server.addr, "seq")).await;
    watcher.finish().await;
    server.stop().await.unwrap();
}

/// A server whose writers block on a keyframe that a client with a small receive
/// buffer does not read, and whose reliable queue holds 4 messages.
async fn slow_consumer_server() -> TestServer {
    let mut c = config();
    // A keyframe of about 30 KB, far more than the 4 KiB socket buffers on both sides
    // (the kernel doubles them) hold: the writer of a client that does not read stays
    // blocked in it, so the Pongs it owes can only queue.
    c.npcs = 3000;
    c.send_buffer = 4096;
    c.reliable_queue = 4;
    // The pings must overflow the queue, not the rate limit (1008).
    c.max_messages_per_sec = 100_000;
    start(c).await
}

/// Joins room `queue` with a client that then reads nothing, waits until the server's
/// writer is blocked on its keyframe, lets a watcher join, and overflows the reliable
/// queue: 4 pings are queued and the player stays, the fifth closes it.
async fn overflow(server: &TestServer) -> (RawWs, Watcher) {
    let mut ws = RawWs::connect(server.addr, "/ws?room=queue", Some(4096)).await;
    ws.send(&hello_msg("deaf")).await;
    // The writer has started on the keyframe (counted before it is written), and the
    // client is alone in the room, so that is the write that cannot finish.
    wait_until("snapshots started", Some(1), || {
        server_metric(server.addr, "tickcast_snapshots_sent_total")
    })
    .await;
    let mut watcher = Watcher::join(&server.ws_url("queue")).await;
    watcher.wait_past(0).await;
    for nonce in 0..4 {
        ws.send(&ClientMsg::Ping(Ping { nonce })).await;
    }
    // An input queues nothing. The reader handles messages in order, so once it has
    // read the input (two Hellos, four pings, one input) the four Pongs have fitted.
    ws.send(&input(1)).await;
    wait_until("messages read past a full queue", Some(7), || {
        server_metric(server.addr, "tickcast_messages_received_total")
    })
    .await;
    assert_eq!(players(server.addr, "queue").await, 2);
    ws.send(&ClientMsg::Ping(Ping { nonce: 4 })).await;
    wait_until("players after the fifth ping", 1, || {
        players(server.addr, "queue")
    })
    .await;
    (ws, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_lets_its_reliable_queue_overflow_is_closed_with_4005() {
    let server = slow_consumer_server().await;
    let (mut ws, mut watcher) = overflow(&server).await;
    let tick = watcher.wait_past(0).await;
    // The close frame waits behind what the client did not read; reading lets it out.
    assert_eq!(
        ws.expect_close().await,
        expected(DisconnectReason::SlowConsumer)
    );
    let tick = watcher.wait_past(tick).await;
    watcher.wait_past(tick + 3).await;
    watcher.finish().await;
    // Counted once the connection's tasks are done, just after the close frame went out.
    wait_until("4005 closes", Some(1), || {
        server_metric(
            server.addr,
            "tickcast_connections_closed_total{code=\"4005\"}",
        )
    })
    .await;
    server.stop().await.unwrap();
}

/// A slow consumer still sends what a game client sends every tick. The close frame
/// must reach it all the same: the server has to take in (and drop) what the client
/// sent after the overflow while its last frames drain, or the kernel answers the
/// unread bytes with a reset that discards the unsent keyframe tail and the close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_kept_sending_still_receives_its_4005() {
    let server = slow_consumer_server().await;
    let (mut ws, watcher) = overflow(&server).await;
    ws.send(&input(2)).await;
    // Reads as a slow client does, a little at a time, until the server has counted the
    // close (its socket is closed then) or ended the stream.
    let closed = || {
        server_metric(
            server.addr,
            "tickcast_connections_closed_total{code=\"4005\"}",
        )
    };
    let drained = tokio::time::timeout(WAIT, async {
        while closed().await != Some(1) {
            let mut chunk = [0u8; 512];
            match ws.stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => ws.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await
    .expect("the server neither closed nor stopped sending");
    if let Err(e) = drained {
        panic!(
            "the connection failed before the close frame arrived ({e}); {} bytes read",
            ws.buf.len()
        );
    }
    let read_rest = async {
        loop {
            let mut chunk = [0u8; 4096];
            match ws.stream.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => ws.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    };
    if let Err(e) = tokio::time::timeout(WAIT, read_rest).await.expect("no EOF") {
        panic!(
            "the connection was reset before the close frame arrived ({e}); {} bytes read",
            ws.buf.len()
        );
    }
    assert_eq!(
        ws.expect_close().await,
        expected(DisconnectReason::SlowConsumer)
    );
    watcher.finish().await;
    server.stop().await.unwrap();
}
