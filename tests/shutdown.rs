//! Graceful shutdown: every connected client gets close 1001, and `run` returns.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use tickcast::shared::DisconnectReason;

#[tokio::test]
async fn shutdown_sends_going_away_to_every_client() {
    let server = start(config()).await;
    let mut players = Vec::new();
    for (i, room) in ["a", "a", "b"].iter().enumerate() {
        let mut ws = connect(&server.ws_url(room)).await;
        hello(&mut ws, &format!("p{i}")).await;
        recv_snapshot(&mut ws).await;
        players.push(ws);
    }
    // One connection that upgraded but never said hello is closed the same way.
    let mut lurker = connect(&server.ws_url("a")).await;
    let stopping = tokio::spawn(server.stop());
    for ws in players.iter_mut().chain(std::iter::once(&mut lurker)) {
        let (code, reason) = expect_close(ws).await;
        assert_eq!(code, DisconnectReason::GoingAway.code());
        assert_eq!(reason, DisconnectReason::GoingAway.reason());
    }
    // `stop` returns an error if `run` has not returned within WAIT.
    stopping.await.unwrap().unwrap();
}
