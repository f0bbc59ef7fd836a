//! Graceful drain (SIGTERM): running rooms go on and their players keep receiving
//! snapshots, new joins are refused and `/readyz` turns 503; at the drain timeout every
//! player gets 1001; and the drain ends early once the last player has left.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use tickcast::shared::{ClientMsg, DisconnectReason, Hello, ServerMsg, PROTOCOL_VERSION};

async fn status(addr: std::net::SocketAddr, path: &str) -> u16 {
    http(addr, "GET", path, "").await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_games_go_on_during_the_drain_and_new_joins_are_refused() {
    let mut c = config();
    c.drain_timeout = Duration::from_millis(1500);
    let server = start(c).await;
    let (addr, url) = (server.addr, server.ws_url("match"));
    let mut player = connect(&url).await;
    hello(&mut player, "stays").await;
    recv_snapshot(&mut player).await;
    assert_eq!(status(addr, "/readyz").await, 200);

    let drained_at = Instant::now();
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        status(addr, "/readyz").await,
        503,
        "not ready while draining"
    );
    assert_eq!(status(addr, "/healthz").await, 200, "alive while draining");
    assert_eq!(refused(&url).await, 503, "no new joins");
    assert_eq!(
        refused(&server_url(addr, "new-room")).await,
        503,
        "no new rooms"
    );

    // The running game goes on: a snapshot every tick for the next second.
    let mut last = recv_snapshot(&mut player).await.tick;
    let until = Instant::now() + Duration::from_millis(900);
    let mut during = 0;
    while Instant::now() < until {
        let tick = recv_snapshot(&mut player).await.tick;
        assert_eq!(tick, last + 1, "no snapshot skipped during the drain");
        last = tick;
        during += 1;
    }
    assert!(during >= 20, "{during} snapshots in 0.9 s of drain");

    let (code, _) = expect_close(&mut player).await;
    assert_eq!(code, DisconnectReason::GoingAway.code());
    assert!(
        drained_at.elapsed() >= Duration::from_millis(1400),
        "closed at the drain timeout, not before"
    );
    stopping.await.unwrap().unwrap();
}

fn server_url(addr: std::net::SocketAddr, room: &str) -> String {
    format!("ws://{addr}/ws?room={room}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_when_the_last_player_leaves() {
    let mut c = config();
    c.drain_timeout = Duration::from_secs(60);
    let server = start(c).await;
    let mut player = connect(&server.ws_url("short")).await;
    hello(&mut player, "leaves").await;
    recv_snapshot(&mut player).await;
    let began = Instant::now();
    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!stopping.is_finished(), "a player is still playing");
    player.close(None).await.unwrap();
    stopping.await.unwrap().unwrap();
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "stopped soon after the last player left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_player_resumes_during_the_drain_but_nobody_new_gets_in() {
    let mut c = config();
    c.drain_timeout = Duration::from_secs(3);
    let server = start(c).await;
    let (addr, url) = (server.addr, server.ws_url("blip"));
    let mut player = connect(&url).await;
    let welcome = hello(&mut player, "blip").await;
    recv_snapshot(&mut player).await;

    let stopping = tokio::spawn(server.stop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(status(addr, "/readyz").await, 503);
    drop(player); // the network drops it mid-drain, without a close frame

    // Back with its token: the match is still running, so it gets its avatar back.
    let resume_url = format!("{url}&resume=1");
    let mut back = connect(&resume_url).await;
    send(
        &mut back,
        &ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "blip".into(),
            room: String::new(),
            resume: Some(welcome.session_token),
        }),
    )
    .await;
    match recv(&mut back).await {
        ServerMsg::Welcome(w) => assert_eq!(
            (w.player_id, w.entity_id),
            (welcome.player_id, welcome.entity_id)
        ),
        other => panic!("expected Welcome, got {other:?}"),
    }
    assert_eq!(
        recv_snapshot(&mut back).await.base_tick,
        0,
        "a keyframe first"
    );

    // The hint is not a way in: without a token the Hello is refused with 1001, and
    // a plain join is refused at the handshake.
    let mut stranger = connect(&resume_url).await;
    hello_expecting_close(&mut stranger).await;
    assert_eq!(refused(&url).await, 503);

    let (code, _) = expect_close(&mut back).await;
    assert_eq!(code, DisconnectReason::GoingAway.code());
    stopping.await.unwrap().unwrap();
}

async fn hello_expecting_close(ws: &mut Ws) {
    send(
        ws,
        &ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "stranger".into(),
            room: String::new(),
            resume: None,
        }),
    )
    .await;
    assert_eq!(expect_close(ws).await.0, DisconnectReason::GoingAway.code());
}
