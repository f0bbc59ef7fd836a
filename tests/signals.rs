//! Stopping the server by signal, as README.md and docs/HOSTING.md describe it: the first
//! SIGTERM (or Ctrl-C) drains, a second one ends the drain at once, every player then
//! gets close 1001, and the process exits with status 0.
//!
//! In-process, `run_until`'s two tokens stand for the two signals. The `tickcast-server`
//! binary itself, whose `main` handles the real signals, is tested under real SIGTERMs
//! in server/tests/signals.rs, where cargo builds it for the test.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use tickcast::shared::DisconnectReason;
use tokio_util::sync::CancellationToken;

/// The close code and reason every player gets when the server stops.
fn going_away() -> (u16, String) {
    (
        DisconnectReason::GoingAway.code(),
        DisconnectReason::GoingAway.reason().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_at_once() {
    let mut c = config();
    // Far beyond the test's own deadlines: only the second signal can end this drain.
    c.drain_timeout = Duration::from_secs(3600);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(tickcast::server::run_until(
        listener,
        c,
        drain.clone(),
        force.clone(),
    ));
    let mut player = connect(&format!("ws://{addr}/ws?room=signals")).await;
    hello(&mut player, "stays").await;
    recv_snapshot(&mut player).await;

    // The first signal: the server drains, and the game goes on.
    drain.cancel();
    let (status, body) = http(addr, "GET", "/readyz", "").await;
    assert_eq!((status, body.trim()), (503, "draining"));
    // The game goes on (a loaded machine may skip a tick; it never stops them).
    let tick = recv_snapshot(&mut player).await.tick;
    assert!(recv_snapshot(&mut player).await.tick > tick);
    assert!(!task.is_finished(), "the drain holds while a player plays");

    // The second: the player is closed with 1001, and the server returns, within a
    // deadline far shorter than the drain timeout.
    force.cancel();
    assert_eq!(expect_close(&mut player).await, going_away());
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run_until returns once the drain is cut short")
        .unwrap()
        .unwrap();
}
