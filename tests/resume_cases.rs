//! Resuming a session (PROTOCOL.md section 3, *Reconnecting*; HOSTING.md, `DELETE
//! /rooms/{id}`) in the cases the basic reconnect tests leave out: after the server's
//! idle timeout (4003), twice with the same token, with a token from another room, and
//! after the room was deleted. A resume gets back the same player, entity and token,
//! keyframe first; a token that names no session of the room is closed with 4008.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use glam::Vec2;
use tickcast::shared::codec::{decode_server, encode_to_vec};
use tickcast::shared::delta::{QEntity, World};
use tickcast::shared::{
    ClientMsg, DisconnectReason, EntityKind, Hello, Input, ServerMsg, SessionToken, Snapshot,
    Welcome, PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// The example key of RFC 6455 section 1.3 and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A WebSocket client written out by hand over a TCP stream. Unlike a WebSocket
/// library it does nothing on its own: reading a ping frame does not answer it, which
/// is how a client whose game froze looks to the server.
struct RawWs {
    stream: TcpStream,
    /// Bytes read but not yet parsed.
    buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades `path` with `tickcast.v2`.
    async fn connect(addr: SocketAddr, path: &str) -> Self {
        let mut stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
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
        ws
    }

    async fn read_more(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.unwrap();
        assert_ne!(n, 0, "the server ended the stream without a close frame");
    }

    /// Sends one protocol message as a single binary frame, masked as a client must.
    async fn send(&mut self, msg: &ClientMsg) {
        let payload = encode_to_vec(msg).unwrap();
        assert!(payload.len() < 126, "only short messages are sent here");
        let mask = [0x5a, 0x01, 0xc3, 0x7e];
        let mut frame = vec![0x82, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next frame from the server: its opcode and payload (unmasked, unfragmented).
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

    /// The next protocol message; ping frames are read and ignored (never answered).
    /// Panics on any other frame.
    async fn recv(&mut self) -> ServerMsg {
        loop {
            match self.frame().await {
                (0x2, payload) => return decode_server(&payload).unwrap(),
                (0x9, _) => continue,
                (op, payload) => panic!("expected a message, got opcode {op:#x}: {payload:?}"),
            }
        }
    }

    /// Reads up to the server's close frame, answering nothing; returns its code and
    /// reason and how many ping frames went unanswered on the way.
    async fn expect_close(&mut self) -> ((u16, String), usize) {
        let mut pings = 0;
        loop {
            match self.frame().await {
                (0x8, p) => {
                    assert!(p.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    return ((code, String::from_utf8(p[2..].to_vec()).unwrap()), pings);
                }
                (0x9, _) => pings += 1,
                (0x2, _) => {}
                (op, payload) => panic!("unexpected opcode {op:#x}: {payload:?}"),
            }
        }
    }
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
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of the metric line named `series` (name and labels) in `GET /metrics`.
async fn server_metric(addr: SocketAddr, series: &str) -> Option<u64> {
    let (status, text) = http(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits until the server has finished with every connection but `open` of them: a
/// dropped one is noticed on the server's own time.
async fn wait_open(addr: SocketAddr, open: u64) {
    wait_until("connections open", Some(open), || {
        server_metric(addr, "tickcast_connections_open")
    })
    .await;
}

/// The `players` of `GET /rooms/{room}`: connected ones and those within their grace.
async fn players(addr: SocketAddr, room: &str) -> u64 {
    let (status, info) = http_json(addr, "GET", &format!("/rooms/{room}"), "").await;
    assert_eq!(status, 200, "{info}");
    info["players"].as_u64().unwrap()
}

fn resume_msg(token: SessionToken) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: "again".into(),
        room: String::new(),
        resume: Some(token),
    })
}

fn input(seq: u32, movement: Vec2) -> ClientMsg {
    ClientMsg::Input(Input {
        seq,
        movement,
        buttons: 0,
        payload: Default::default(),
    })
}

fn session_expired() -> (u16, String) {
    let r = DisconnectReason::SessionExpired;
    (r.code(), r.reason().to_owned())
}

/// The entity `id` of a keyframe, which must hold it.
fn entity_in(keyframe: &Snapshot, id: u32) -> QEntity {
    assert_eq!(keyframe.base_tick, 0, "not a keyframe: {keyframe:?}");
    let mut world = World::default();
    world.apply(keyframe).unwrap();
    world
        .entities
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("entity {id} is not in the keyframe"))
}

/// Resumes `token` on a new connection to `url` and checks the answer: a `Welcome` for
/// the same player, entity and token as `first`, then at once a keyframe holding the
/// avatar, from a tick after `after`. Returns the connection and that keyframe.
async fn resume(url: &str, token: SessionToken, first: &Welcome, after: u64) -> (Ws, Snapshot) {
    let mut ws = connect(url).await;
    send(&mut ws, &resume_msg(token)).await;
    let again = match recv(&mut ws).await {
        ServerMsg::Welcome(w) => w,
        other => panic!("expected Welcome, got {other:?}"),
    };
    assert_eq!(
        (again.player_id, again.entity_id, again.session_token),
        (first.player_id, first.entity_id, first.session_token),
        "the same player, avatar and token"
    );
    assert_eq!(again.protocol_version, first.protocol_version);
    assert_eq!(again.tick_rate, first.tick_rate);
    // The very next message, not just the next snapshot: keyframe first.
    let keyframe = match recv(&mut ws).await {
        ServerMsg::Snapshot(s) => s,
        other => panic!("expected the keyframe, got {other:?}"),
    };
    assert_eq!(keyframe.base_tick, 0, "the first snapshot after a resume");
    assert!(
        keyframe.tick > after,
        "tick {} after {after}",
        keyframe.tick
    );
    assert_eq!(
        keyframe.last_input_seq, 0,
        "no input of this connection yet"
    );
    assert_eq!(
        entity_in(&keyframe, first.entity_id).kind,
        EntityKind::Avatar
    );
    (ws, keyframe)
}

/// Sends `Input` `seq` and reads until the server reports it applied.
async fn applied(ws: &mut Ws, seq: u32, movement: Vec2) -> Snapshot {
    send(ws, &input(seq, movement)).await;
    loop {
        let s = recv_snapshot(ws).await;
        if s.last_input_seq == seq {
            return s;
        }
        assert!(s.last_input_seq < seq, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_closed_for_idleness_resumes_its_avatar_keyframe_first() {
    let mut c = config();
    // Long enough that the watcher, which answers every ping, is never idle even when
    // a loaded machine leaves its task waiting (500 ms was not, under a parallel test
    // run and a busy loop); the frozen client below never answers.
    c.idle_timeout = Duration::from_secs(2);
    c.ping_interval = Duration::from_millis(250);
    let server = start(c).await;
    let url = server.ws_url("idle");
    let mut watcher = Watcher::join(&url).await;

    let mut frozen = RawWs::connect(server.addr, "/ws?room=idle").await;
    frozen
        .send(&ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "frozen".into(),
            room: String::new(),
            resume: None,
        }))
        .await;
    let welcome = match frozen.recv().await {
        ServerMsg::Welcome(w) => w,
        other => panic!("expected Welcome, got {other:?}"),
    };
    let first = match frozen.recv().await {
        ServerMsg::Snapshot(s) => s,
        other => panic!("expected the keyframe, got {other:?}"),
    };
    let avatar = entity_in(&first, welcome.entity_id);
    // From here on it sends nothing and answers no ping: the server gives up on it.
    let (close, unanswered) = frozen.expect_close().await;
    assert_eq!(
        close,
        (
            DisconnectReason::IdleTimeout.code(),
            DisconnectReason::IdleTimeout.reason().to_owned()
        ),
        "after {unanswered} unanswered pings"
    );
    let closed_at = watcher.wait_past(first.tick).await;
    // 4003 is not a leave: the player keeps its seat and its avatar for the grace.
    assert_eq!(players(server.addr, "idle").await, 2);
    drop(frozen);

    let (mut back, keyframe) = resume(&url, welcome.session_token, &welcome, first.tick).await;
    let me = entity_in(&keyframe, welcome.entity_id);
    assert_eq!(
        (me.pos, me.vel),
        (avatar.pos, [0, 0]),
        "the avatar waited where it stood"
    );
    // Controllable again, with input sequence numbers starting over at 1.
    let s = applied(&mut back, 1, Vec2::X).await;
    assert!(s.tick > keyframe.tick);
    assert_eq!(players(server.addr, "idle").await, 2);

    // The watcher was never disturbed.
    watcher.wait_past(closed_at + 3).await;
    watcher.finish().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_resumes_the_same_avatar_after_each_of_two_drops() {
    let server = start(config()).await;
    let url = server.ws_url("twice");
    let mut ws = connect(&url).await;
    let welcome = hello(&mut ws, "twice").await;
    let first = recv_snapshot(&mut ws).await;
    let spawned = entity_in(&first, welcome.entity_id);
    let mut last_tick = first.tick;

    for round in 1..=2 {
        // The TCP connection goes away without a close frame, and the server notices.
        drop(ws);
        wait_open(server.addr, 0).await;
        assert_eq!(players(server.addr, "twice").await, 1, "round {round}");

        let (mut back, keyframe) = resume(&url, welcome.session_token, &welcome, last_tick).await;
        let me = entity_in(&keyframe, welcome.entity_id);
        assert_eq!(me.pos, spawned.pos, "round {round}: still where it spawned");
        // Each connection numbers its inputs from 1. A zero movement keeps the avatar
        // where it is for the next round.
        let s = applied(&mut back, 1, Vec2::ZERO).await;
        last_tick = s.tick;
        ws = back;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_refused_with_4008_in_any_room_but_its_own() {
    let server = start(config()).await;
    let url_a = server.ws_url("alpha");
    let mut player = connect(&url_a).await;
    let welcome = hello(&mut player, "alpha").await;
    let mut beta = Watcher::join(&server.ws_url("beta")).await;
    let tick = beta.wait_past(0).await;

    // Another running room does not know the token, whatever the resume hint says.
    for url in [
        server.ws_url("beta"),
        format!("{}&resume=1", server.ws_url("beta")),
    ] {
        let mut ws = connect(&url).await;
        send(&mut ws, &resume_msg(welcome.session_token)).await;
        assert_eq!(expect_close(&mut ws).await, session_expired(), "{url}");
    }
    // Nor does a room that does not exist, and the attempt does not create it.
    let mut ws = connect(&format!("{}&resume=1", server.ws_url("gamma"))).await;
    send(&mut ws, &resume_msg(welcome.session_token)).await;
    assert_eq!(expect_close(&mut ws).await, session_expired(), "gamma");
    let (status, _) = http(server.addr, "GET", "/rooms/gamma", "").await;
    assert_eq!(status, 404, "a refused resume creates no room");
    assert_eq!(players(server.addr, "beta").await, 1);

    // The refusals did not touch the session: the player plays on, and after a drop
    // its token still resumes it in its own room.
    let s = applied(&mut player, 1, Vec2::ZERO).await;
    drop(player);
    wait_open(server.addr, 1).await;
    let (_back, _) = resume(&url_a, welcome.session_token, &welcome, s.tick).await;

    let tick = beta.wait_past(tick).await;
    beta.wait_past(tick + 3).await;
    beta.finish().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_room_takes_its_sessions_with_it() {
    let server = start(config()).await;
    let (status, room) = http_json(server.addr, "POST", "/rooms", "{}").await;
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap().to_owned();
    let url = server.ws_url(&id);

    let mut stayer = connect(&url).await;
    let stayed = hello(&mut stayer, "stayer").await;
    recv_snapshot(&mut stayer).await;
    let mut dropper = connect(&url).await;
    let dropped = hello(&mut dropper, "dropper").await;
    recv_snapshot(&mut dropper).await;
    drop(dropper);
    wait_open(server.addr, 1).await;
    assert_eq!(
        players(server.addr, &id).await,
        2,
        "the dropped one is in its grace"
    );

    let (status, body) = http(server.addr, "DELETE", &format!("/rooms/{id}"), "").await;
    assert_eq!((status, body.as_str()), (204, ""));
    let r = DisconnectReason::RoomClosed;
    assert_eq!(
        expect_close(&mut stayer).await,
        (r.code(), r.reason().to_owned())
    );

    // Neither the player in its grace nor the one the deletion closed can come back.
    for (who, welcome) in [("dropped", &dropped), ("closed", &stayed)] {
        let mut ws = connect(&format!("{url}&resume=1")).await;
        send(&mut ws, &resume_msg(welcome.session_token)).await;
        assert_eq!(expect_close(&mut ws).await, session_expired(), "{who}");
    }
    let (status, _) = http(server.addr, "GET", &format!("/rooms/{id}"), "").await;
    assert_eq!(status, 404, "the resumes did not bring the room back");
    server.stop().await.unwrap();
}
