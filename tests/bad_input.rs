//! Bad input closes only the offending connection, with the documented close code, and
//! the other players of the room miss no snapshot meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use glam::Vec2;
use tickcast::shared::codec::decode_server;
use tickcast::shared::{ClientMsg, DisconnectReason, Hello, Input, Ping, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

/// A well-behaved player that records every snapshot tick it receives until `stop`.
async fn watcher(url: String, stop: tokio_util::sync::CancellationToken) -> Vec<u64> {
    let mut ws = connect(&url).await;
    hello(&mut ws, "watcher").await;
    let mut ticks = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let ServerMsg::Snapshot(s) = decode_server(&b).unwrap() {
                        ticks.push(s.tick);
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("watcher lost its connection: {other:?}"),
            }
        }
    }
    ticks
}

async fn joined(url: &str) -> Ws {
    let mut ws = connect(url).await;
    hello(&mut ws, "mallory").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abusers_are_closed_with_their_code_and_others_miss_nothing() {
    let mut c = config();
    c.tick_rate = 20;
    c.max_message_bytes = 1024;
    let server = start(c).await;
    let url = server.ws_url("abuse");
    let stop = tokio_util::sync::CancellationToken::new();
    let watchers: Vec<_> = (0..2)
        .map(|_| tokio::spawn(watcher(url.clone(), stop.clone())))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

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

    // Oversized: one message above --max-message-bytes.
    let mut ws = joined(&url).await;
    ws.send(Message::Binary(vec![0u8; 4096].into()))
        .await
        .unwrap();
    expect(DisconnectReason::MessageTooBig, expect_close(&mut ws).await);

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

    // A text frame.
    let mut ws = joined(&url).await;
    ws.send(Message::text("hello?")).await.unwrap();
    expect(DisconnectReason::TextFrame, expect_close(&mut ws).await);

    // A second Hello.
    let mut ws = joined(&url).await;
    send(
        &mut ws,
        &ClientMsg::Hello(Hello {
            protocol_version: 1,
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

    // Input sequence going backwards.
    let mut ws = joined(&url).await;
    for seq in [5, 3] {
        send(
            &mut ws,
            &ClientMsg::Input(Input {
                seq,
                movement: Vec2::X,
                buttons: 0,
            }),
        )
        .await;
    }
    expect(
        DisconnectReason::UnexpectedMessage,
        expect_close(&mut ws).await,
    );

    // Non-finite movement.
    let mut ws = joined(&url).await;
    send(
        &mut ws,
        &ClientMsg::Input(Input {
            seq: 1,
            movement: Vec2::new(f32::NAN, 0.0),
            buttons: 0,
        }),
    )
    .await;
    expect(
        DisconnectReason::InvalidPayload,
        expect_close(&mut ws).await,
    );

    // Keep watching a while after the abuse, so a stall it caused would show.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.cancel();
    for w in watchers {
        let ticks = w.await.unwrap();
        assert!(ticks.len() > 10, "watcher got {} snapshots", ticks.len());
        let gaps: Vec<_> = ticks.windows(2).filter(|w| w[1] != w[0] + 1).collect();
        assert!(gaps.is_empty(), "watcher missed snapshots: {gaps:?}");
    }
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
            protocol_version: 1,
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
            protocol_version: 1,
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
    c.idle_timeout = Duration::from_millis(500);
    c.ping_interval = Duration::from_millis(100);
    let server = start(c).await;
    let mut ws = joined(&server.ws_url("lobby")).await;
    // Reading lets tungstenite answer the server's pings; for 3 idle timeouts we send nothing.
    let until = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut pings = 0;
    while tokio::time::Instant::now() < until {
        match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(Message::Binary(_))) => {}
            other => panic!("connection ended: {other:?}"),
        }
    }
    assert!(pings >= 5, "server pinged {pings} times");
    server.stop().await.unwrap();
}
