//! Bad input closes only the offending connection, with the documented close code, and
//! the other players of the room play on meanwhile: their snapshots keep coming, in tick
//! order, each applying to what they hold, and any tick they do not see is one the server
//! accounts for in `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use glam::Vec2;
use tickcast::shared::codec::decode_server;
use tickcast::shared::delta::World;
use tickcast::shared::{ClientMsg, DisconnectReason, Hello, Input, Ping, ServerMsg};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A well-behaved player of the room, reading in its own task.
struct Watcher {
    /// The newest tick it has received and applied (0 before its first snapshot).
    latest: watch::Receiver<u64>,
    /// Every tick it received, in order, once `stop` fires.
    task: JoinHandle<Vec<u64>>,
}

impl Watcher {
    async fn join(url: &str, stop: &CancellationToken) -> Self {
        let mut ws = connect(url).await;
        hello(&mut ws, "watcher").await;
        let (tx, latest) = watch::channel(0);
        let task = tokio::spawn(watch_snapshots(ws, tx, stop.clone()));
        Self { latest, task }
    }

    /// Waits until it has received a snapshot at least `ticks` ticks newer than the one
    /// it held when called: the room still ticks and this player still hears about it.
    async fn advances(&mut self, ticks: u64) {
        let from = *self.latest.borrow();
        tokio::time::timeout(WAIT, self.latest.wait_for(|t| *t >= from + ticks))
            .await
            .unwrap_or_else(|_| panic!("no snapshot past tick {from} + {ticks} in time"))
            .expect("the watcher stopped (see its panic above)");
    }
}

/// Reads until `stop`, applying every snapshot to a world: a delta whose base is not the
/// world held fails `World::apply`. Panics if the connection ends or a tick is not newer
/// than the previous one; publishes each tick after applying it.
async fn watch_snapshots(
    mut ws: Ws,
    latest: watch::Sender<u64>,
    stop: CancellationToken,
) -> Vec<u64> {
    let mut world = World::default();
    let mut ticks: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let ServerMsg::Snapshot(s) = decode_server(&b).unwrap() {
                        if let Some(prev) = ticks.last() {
                            assert!(s.tick > *prev, "tick {} after {prev}", s.tick);
                        }
                        world.apply(&s).unwrap_or_else(|e| panic!("tick {}: {e}", s.tick));
                        ticks.push(s.tick);
                        latest.send_replace(s.tick);
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("watcher lost its connection: {other:?}"),
            }
        }
    }
    ticks
}

/// The value of one series (name and labels exactly as rendered) in `/metrics` text.
fn sample(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

/// What `/metrics` says the server left out of players' snapshot streams, on purpose.
struct LeftOut {
    /// Catch-up ticks: a late wake-up runs several ticks but broadcasts only the last,
    /// so every player of the room misses the others. The server's only room is `room`.
    catch_up: u64,
    /// Snapshots replaced in a slow player's latest-wins slot before its writer took
    /// them, over all players.
    skipped: u64,
}

async fn left_out(addr: SocketAddr, room: &str) -> LeftOut {
    let read = || async {
        let (status, text) = http(addr, "GET", "/metrics", "").await;
        assert_eq!(status, 200);
        text
    };
    // A wake-up adds its ticks to the total before it counts itself, and one exposition
    // prints the total first: a wake-up finishing in between would be counted without
    // its ticks. So the total comes from a second read, which holds every tick of every
    // wake-up the first one counted (and perhaps more, which only widens the allowance).
    let first = read().await;
    let wakeups = sample(
        &first,
        &format!("tickcast_room_tick_duration_seconds_count{{room=\"{room}\"}}"),
    );
    let ticks = sample(&read().await, "tickcast_ticks_total");
    LeftOut {
        catch_up: ticks - wakeups,
        skipped: sample(&first, "tickcast_snapshots_skipped_total"),
    }
}

/// Ticks missing between the snapshots a player received before tick `upto`, the newest
/// it held when the metrics were read. The gap that ends at `upto` is left out: its
/// wake-up broadcast `upto` but may not have counted itself yet. Every earlier wake-up
/// finished before that one began, and a slot's skips are counted before the next
/// snapshot is written, so all the other gaps are in the metrics.
fn missing_before(ticks: &[u64], upto: u64) -> u64 {
    let before: Vec<u64> = ticks.iter().copied().take_while(|t| *t < upto).collect();
    before.windows(2).map(|w| w[1] - w[0] - 1).sum()
}

/// After an abuser is closed, every watcher hears of a newer tick: the room did not stop
/// for it, and neither did their connections.
async fn play_on(watchers: &mut [Watcher]) {
    for w in watchers {
        w.advances(1).await;
    }
}

async fn joined(url: &str) -> Ws {
    let mut ws = connect(url).await;
    hello(&mut ws, "mallory").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusers_are_closed_with_their_code_and_others_play_on() {
    let mut c = config();
    c.tick_rate = 20;
    c.max_message_bytes = 1024;
    let server = start(c).await;
    let url = server.ws_url("abuse");
    let stop = CancellationToken::new();
    let mut watchers = Vec::new();
    for _ in 0..2 {
        watchers.push(Watcher::join(&url, &stop).await);
    }
    // Both have their first snapshot before the abuse starts.
    play_on(&mut watchers).await;

    let expect = |want: DisconnectReason, got: (u16, String)| {
        assert_eq!(got.0, want.code(), "{want:?}: reason {:?}", got.1);
        assert_eq!(got.1, want.reason());
    };

    // Garbage binary: does not decode.
    let mut ws = joined(&url).await;
    ws.send(Message::Binary(vec![0xff, 0x13, 0x37, 0x00, 0x42].into()))
        .await
        .unwrap();
    expect(
        DisconnectReason::InvalidPayload,
        expect_close(&mut ws).await,
    );
    play_on(&mut watchers).await;

    // Oversized: one message above --max-message-bytes.
    let mut ws = joined(&url).await;
    ws.send(Message::Binary(vec![0u8; 4096].into()))
        .await
        .unwrap();
    expect(DisconnectReason::MessageTooBig, expect_close(&mut ws).await);
    play_on(&mut watchers).await;

    // Oversized across fragments: each frame is under the limit, the message is not.
    let mut ws = joined(&url).await;
    use tokio_tungstenite::tungstenite::protocol::frame::{
        coding::{Data, OpCode},
        Frame,
    };
    let part = |op, fin| Message::Frame(Frame::message(vec![1u8; 600], op, fin));
    ws.send(part(OpCode::Data(Data::Binary), false))
        .await
        .unwrap();
    ws.send(part(OpCode::Data(Data::Continue), true))
        .await
        .unwrap();
    expect(DisconnectReason::MessageTooBig, expect_close(&mut ws).await);
    play_on(&mut watchers).await;

    // A text frame.
    let mut ws = joined(&url).await;
    ws.send(Message::text("hello?")).await.unwrap();
    expect(DisconnectReason::TextFrame, expect_close(&mut ws).await);
    play_on(&mut watchers).await;

    // A second Hello.
    let mut ws = joined(&url).await;
    send(
        &mut ws,
        &ClientMsg::Hello(Hello {
            protocol_version: tickcast::shared::PROTOCOL_VERSION,
            name: "again".into(),
            room: String::new(),
            resume: None,
        }),
    )
    .await;
    expect(
        DisconnectReason::UnexpectedMessage,
        expect_close(&mut ws).await,
    );
    play_on(&mut watchers).await;

    // Input sequence going backwards.
    let mut ws = joined(&url).await;
    for seq in [5, 3] {
        send(
            &mut ws,
            &ClientMsg::Input(Input {
                seq,
                movement: Vec2::X,
                buttons: 0,
                payload: Default::default(),
            }),
        )
        .await;
    }
    expect(
        DisconnectReason::UnexpectedMessage,
        expect_close(&mut ws).await,
    );
    play_on(&mut watchers).await;

    // Non-finite movement.
    let mut ws = joined(&url).await;
    send(
        &mut ws,
        &ClientMsg::Input(Input {
            seq: 1,
            movement: Vec2::new(f32::NAN, 0.0),
            buttons: 0,
            payload: Default::default(),
        }),
    )
    .await;
    expect(
        DisconnectReason::InvalidPayload,
        expect_close(&mut ws).await,
    );
    play_on(&mut watchers).await;

    // The game went on after the abuse too; then compare what the watchers missed with
    // what the server says it left out. On an idle machine both are zero; on a loaded one
    // a late room wakes up, catches up and broadcasts once, and a starved watcher's slot
    // replaces a snapshot. A tick lost any other way (a stall that dropped snapshots
    // uncounted, a stream that jumped) makes the watchers' total exceed the allowance.
    for w in &mut watchers {
        w.advances(10).await;
    }
    let upto: Vec<u64> = watchers.iter().map(|w| *w.latest.borrow()).collect();
    let allowed = left_out(server.addr, "abuse").await;
    stop.cancel();
    let mut missing = 0;
    for (w, upto) in watchers.into_iter().zip(upto) {
        let ticks = w.task.await.unwrap();
        missing += missing_before(&ticks, upto);
    }
    assert!(
        missing <= 2 * allowed.catch_up + allowed.skipped,
        "the watchers missed {missing} ticks; the server accounts for {} catch-up ticks (each \
         missed by both) and {} skipped snapshots",
        allowed.catch_up,
        allowed.skipped
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn protocol_order_and_version_are_enforced() {
    let server = start(config()).await;
    let url = server.ws_url("lobby");

    let mut ws = connect(&url).await;
    send(
        &mut ws,
        &ClientMsg::Input(Input {
            seq: 1,
            movement: Vec2::X,
            buttons: 0,
            payload: Default::default(),
        }),
    )
    .await;
    assert_eq!(
        expect_close(&mut ws).await.0,
        DisconnectReason::UnexpectedMessage.code(),
        "input before hello"
    );

    let mut ws = connect(&url).await;
    send(
        &mut ws,
        &ClientMsg::Hello(Hello {
            protocol_version: 99,
            name: "future".into(),
            room: String::new(),
            resume: None,
        }),
    )
    .await;
    assert_eq!(
        expect_close(&mut ws).await.0,
        DisconnectReason::VersionMismatch.code()
    );

    let mut ws = connect(&url).await;
    send(
        &mut ws,
        &ClientMsg::Hello(Hello {
            protocol_version: tickcast::shared::PROTOCOL_VERSION,
            name: "x".into(),
            room: "elsewhere".into(),
            resume: None,
        }),
    )
    .await;
    assert_eq!(
        expect_close(&mut ws).await.0,
        DisconnectReason::InvalidHello.code(),
        "room differs from the URL"
    );

    let mut ws = connect(&url).await;
    send(
        &mut ws,
        &ClientMsg::Hello(Hello {
            protocol_version: tickcast::shared::PROTOCOL_VERSION,
            name: String::new(),
            room: String::new(),
            resume: None,
        }),
    )
    .await;
    assert_eq!(
        expect_close(&mut ws).await.0,
        DisconnectReason::InvalidHello.code(),
        "empty name"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn timeouts_and_rate_limit_close_with_their_codes() {
    let mut c = config();
    c.hello_timeout = Duration::from_millis(300);
    c.idle_timeout = Duration::from_millis(400);
    c.ping_interval = Duration::from_secs(60); // no pings, so no pongs keep it alive
    c.max_messages_per_sec = 20;
    let server = start(c).await;
    let url = server.ws_url("lobby");

    let mut ws = connect(&url).await;
    assert_eq!(
        expect_close(&mut ws).await.0,
        DisconnectReason::HelloTimeout.code()
    );

    let mut ws = joined(&url).await;
    assert_eq!(
        expect_close(&mut ws).await.0,
        DisconnectReason::IdleTimeout.code()
    );

    let mut ws = joined(&url).await;
    for nonce in 0..100 {
        send(&mut ws, &ClientMsg::Ping(Ping { nonce })).await;
    }
    assert_eq!(
        expect_close(&mut ws).await.0,
        DisconnectReason::RateLimited.code()
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn keepalive_pings_keep_an_answering_client_connected() {
    let mut c = config();
    // An idle timeout far above how long a loaded machine may leave this test's task
    // unscheduled (it answers pings only while it reads).
    c.idle_timeout = Duration::from_millis(1500);
    c.ping_interval = Duration::from_millis(300);
    let server = start(c).await;
    let mut ws = joined(&server.ws_url("lobby")).await;
    // Reading lets tungstenite answer the server's pings; we send nothing else. The pings
    // come at least 300 ms apart, so the 15th comes 4.5 s (3 idle timeouts) after the
    // connection opened, by the server's own clock: receiving it proves the answers kept
    // the connection alive that long, however slowly this machine runs.
    let mut pings = 0;
    while pings < 15 {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Binary(_))) => {}
            other => panic!("connection ended after {pings} pings: {other:?}"),
        }
    }
    server.stop().await.unwrap();
}
