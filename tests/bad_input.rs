//! Bad input closes only the offending connection, with the documented close code, and
//! the other players of the room play on meanwhile: their snapshots keep coming, in tick
//! order, each applying to what they hold, and any tick they do not see is one the server
//! accounts for in `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use glam::Vec2;
use tickcast::shared::{ClientMsg, DisconnectReason, Hello, Ping, PROTOCOL_VERSION};
use tokio_tungstenite::tungstenite::Message;

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
    let mut watchers = Vec::new();
    for _ in 0..2 {
        watchers.push(Watcher::join(&url).await);
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
    send(&mut ws, &hello_msg("again")).await;
    expect(
        DisconnectReason::UnexpectedMessage,
        expect_close(&mut ws).await,
    );
    play_on(&mut watchers).await;

    // Input sequence going backwards.
    let mut ws = joined(&url).await;
    for seq in [5, 3] {
        send(&mut ws, &input_msg(seq, Vec2::X)).await;
    }
    expect(
        DisconnectReason::UnexpectedMessage,
        expect_close(&mut ws).await,
    );
    play_on(&mut watchers).await;

    // Non-finite movement.
    let mut ws = joined(&url).await;
    send(&mut ws, &input_msg(1, Vec2::new(f32::NAN, 0.0))).await;
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
    let upto: Vec<u64> = watchers.iter().map(Watcher::latest).collect();
    let allowed = left_out(server.addr, "abuse").await;
    let mut missing = 0;
    for (w, upto) in watchers.into_iter().zip(upto) {
        let ticks = w.finish().await;
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
    send(&mut ws, &input_msg(1, Vec2::X)).await;
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
            auth_token: None,
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
            protocol_version: PROTOCOL_VERSION,
            name: "x".into(),
            room: "elsewhere".into(),
            resume: None,
            auth_token: None,
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
            protocol_version: PROTOCOL_VERSION,
            name: String::new(),
            room: String::new(),
            resume: None,
            auth_token: None,
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
