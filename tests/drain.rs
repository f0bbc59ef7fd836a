//! Graceful drain (SIGTERM): running rooms go on and their players keep receiving
//! snapshots, new joins are refused and `/readyz` turns 503; at the drain timeout every
//! player gets 1001; and the drain ends early once the last player has left.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use tickcast::shared::codec::decode_server;
use tickcast::shared::delta::World;
use tickcast::shared::{DisconnectReason, ServerMsg, Snapshot};
use tokio_tungstenite::tungstenite::Message;

async fn status(addr: SocketAddr, path: &str) -> u16 {
    http(addr, "GET", path, "").await.0
}

/// Asks `path` until it answers `want`: the drain starts in the task that `stop` spawns,
/// so the test waits for the server to say so instead of guessing how long that takes.
async fn until_status(addr: SocketAddr, path: &str, want: u16) {
    wait_until(&format!("GET {path}"), want, || status(addr, path)).await;
}

/// The next snapshot or the close, whichever comes: `Ok(snapshot)` or `Err(close code)`.
async fn snapshot_or_close(ws: &mut Ws) -> Result<Snapshot, u16> {
    loop {
        match next_message(ws).await {
            Message::Binary(b) => {
                if let ServerMsg::Snapshot(s) = decode_server(&b).unwrap() {
                    return Ok(s);
                }
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(Some(frame)) => return Err(u16::from(frame.code)),
            other => panic!("unexpected message {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_games_go_on_during_the_drain_and_new_joins_are_refused() {
    let drain_timeout = Duration::from_secs(3);
    let mut c = config();
    c.drain_timeout = drain_timeout;
    let server = start(c).await;
    let (addr, url) = (server.addr, server.ws_url("match"));
    let mut player = connect(&url).await;
    hello(&mut player, "stays").await;
    assert_eq!(status(addr, "/readyz").await, 200);
    let mut world = World::default();
    let first = recv_snapshot(&mut player).await;
    world.apply(&first).unwrap();
    let mut ticks = vec![first.tick];

    let drained_at = Instant::now();
    let stopping = tokio::spawn(server.stop());
    until_status(addr, "/readyz", 503).await;
    assert_eq!(status(addr, "/healthz").await, 200, "alive while draining");
    assert_eq!(refused(&url).await, 503, "no new joins");
    assert_eq!(
        refused(&server_url(addr, "new-room")).await,
        503,
        "no new rooms"
    );

    // The running game goes on: snapshots keep coming until the drain timeout closes the
    // player, in tick order, each applying to the world it holds. Twenty of them take
    // 0.7 s of the 3 s drain at 30 Hz; the few that were already on their way when the
    // drain began (we read one just before) cannot make up twenty, so a room that
    // stopped with the drain fails here.
    let mut accounted = None;
    let code = loop {
        let s = match snapshot_or_close(&mut player).await {
            Ok(s) => s,
            Err(code) => break code,
        };
        let prev = *ticks.last().unwrap();
        assert!(s.tick > prev, "tick {} after {prev}", s.tick);
        world
            .apply(&s)
            .unwrap_or_else(|e| panic!("tick {}: {e}", s.tick));
        ticks.push(s.tick);
        if ticks.len() == 1 + 20 {
            // Read while the room still exists: its series go when it closes.
            accounted = Some((s.tick, left_out(addr, "match").await));
        }
    };
    assert_eq!(code, DisconnectReason::GoingAway.code());
    assert!(
        drained_at.elapsed() >= drain_timeout,
        "closed at the drain timeout, not before"
    );
    let (upto, LeftOut { catch_up, skipped }) =
        accounted.expect("twenty snapshots during the drain");

    // Nothing was lost: every tick the player did not see is a catch-up tick (a late
    // wake-up broadcasts only its last tick) or a snapshot its slot replaced, both
    // counted by the server. On an idle machine both are zero and so is the gap.
    let missing = missing_before(&ticks, upto);
    assert!(
        missing <= catch_up + skipped,
        "missed {missing} ticks; the server accounts for {catch_up} catch-up ticks and \
         {skipped} skipped snapshots"
    );
    stopping.await.unwrap().unwrap();
}

fn server_url(addr: SocketAddr, room: &str) -> String {
    format!("ws://{addr}/ws?room={room}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_ends_when_the_last_player_leaves() {
    let mut c = config();
    c.drain_timeout = Duration::from_secs(60);
    let server = start(c).await;
    let addr = server.addr;
    let mut player = connect(&server.ws_url("short")).await;
    hello(&mut player, "leaves").await;
    recv_snapshot(&mut player).await;
    let stopping = tokio::spawn(server.stop());
    until_status(addr, "/readyz", 503).await;
    // Draining, and the game goes on for the player: `recv` fails on a close.
    let before = recv_snapshot(&mut player).await.tick;
    assert!(recv_snapshot(&mut player).await.tick > before);
    assert!(!stopping.is_finished(), "a player is still playing");
    player.close(None).await.unwrap();
    // `stop` gives up after WAIT (10 s), far below the 60 s drain timeout: that it
    // returns Ok at all means the drain ended when the player left.
    stopping.await.unwrap().unwrap();
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
    until_status(addr, "/readyz", 503).await;
    drop(player); // the network drops it mid-drain, without a close frame
                  // The server has seen the connection go (its avatar waits for the grace).
    wait_open(addr, 0).await;
    assert_eq!(
        count(&metrics(addr).await, "tickcast_players"),
        1,
        "the avatar is kept"
    );

    // Back with its token: the match is still running, so it gets its avatar back.
    let resume_url = format!("{url}&resume=1");
    let mut back = connect(&resume_url).await;
    send(&mut back, &resume_msg("blip", welcome.session_token)).await;
    let again = recv_welcome(&mut back).await;
    assert_eq!(
        (again.player_id, again.entity_id),
        (welcome.player_id, welcome.entity_id)
    );
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
    send(ws, &hello_msg("stranger")).await;
    assert_eq!(expect_close(ws).await.0, DisconnectReason::GoingAway.code());
}
