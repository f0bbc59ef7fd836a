//! A player that reads slowly skips snapshots (its writer's latest-wins slot replaces
//! unsent ones), still reconstructs exactly the state it is sent (each delta is against
//! what it really received), and the other players miss nothing meanwhile.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use tickcast::client::{ConnectOptions, Connection, Event};
use tickcast::shared::codec::decode_server;
use tickcast::shared::delta::{QEntity, World};
use tickcast::shared::{ServerMsg, SUBPROTOCOL};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// A fast player: reads everything, and records its reconstruction at every tick.
async fn fast(url: String, stop: CancellationToken) -> HashMap<u64, Vec<QEntity>> {
    let mut conn = Connection::connect(ConnectOptions::new(url, "fast"))
        .await
        .unwrap();
    let mut seen = HashMap::new();
    let mut last: Option<u64> = None;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            event = conn.next_event() => match event.unwrap() {
                Event::Snapshot(s) => {
                    if let Some(prev) = last {
                        assert_eq!(s.tick, prev + 1, "a fast reader misses nothing");
                    }
                    last = Some(s.tick);
                    seen.insert(s.tick, conn.session().world().entities.clone());
                }
                Event::Pong { .. } => {}
                Event::Closed { code, reason } => panic!("fast player closed: {code} {reason}"),
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_skips_snapshots_but_reconstructs_exactly_what_it_is_sent() {
    let mut c = config();
    c.npcs = 3000; // a keyframe of ~30 KB: more than the buffers below hold
    c.send_buffer = 4096;
    let server = start(c).await;
    let url = server.ws_url("slow");
    let stop = CancellationToken::new();
    let fast_players: Vec<_> = (0..2)
        .map(|_| tokio::spawn(fast(url.clone(), stop.clone())))
        .collect();

    // The slow player: a small receive window, and long pauses between reads.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(server.addr).await.unwrap();
    let mut req = url.as_str().into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    hello(&mut ws, "slow").await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut world = World::default();
    let mut received: Vec<(u64, Vec<QEntity>)> = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Binary(bytes) = msg else {
            continue;
        };
        let ServerMsg::Snapshot(s) = decode_server(&bytes).unwrap() else {
            continue;
        };
        world
            .apply(&s)
            .unwrap_or_else(|e| panic!("tick {}: {e}", s.tick));
        received.push((s.tick, world.entities.clone()));
        tokio::time::sleep(Duration::from_millis(40)).await; // slower than the 33 ms tick
    }
    stop.cancel();

    let ticks: Vec<u64> = received.iter().map(|(t, _)| *t).collect();
    assert!(
        ticks.windows(2).any(|w| w[1] > w[0] + 1),
        "the slow reader skipped snapshots: {ticks:?}"
    );
    let mut compared = 0;
    for fast in fast_players {
        let seen = fast.await.unwrap();
        for (tick, entities) in &received {
            if let Some(theirs) = seen.get(tick) {
                assert_eq!(
                    entities, theirs,
                    "tick {tick}: the slow reader holds what everyone was sent"
                );
                compared += 1;
            }
        }
    }
    assert!(
        compared >= received.len(),
        "compared {compared} of {} ticks",
        received.len()
    );
    assert_eq!(received[0].1.len(), 3000 + 3, "NPCs and three avatars");
    server.stop().await.unwrap();
}
