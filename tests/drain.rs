//! Graceful drain (SIGTERM): running rooms go on and their players keep receiving
//! snapshots, new joins are refused and `/readyz` turns 503; at the drain timeout every
//! player gets 1001; and the drain ends early once the last player has left.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use tickcast::shared::DisconnectReason;

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
