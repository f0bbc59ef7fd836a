//! A player that reads slowly skips snapshots (its writer's latest-wins slot replaces
//! unsent ones), still reconstructs exactly the state it is sent (each delta is against
//! what it really received), and the other players play on meanwhile: every tick any
//! player does not see is one the server accounts for in `/metrics`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use tickcast::client::{ConnectOptions, Connection, Event};
use tickcast::shared::codec::decode_server;
use tickcast::shared::delta::{QEntity, World};
use tickcast::shared::ServerMsg;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// What a fast player saw: its ticks in order of arrival, and its reconstruction at each.
struct Seen {
    ticks: Vec<u64>,
    worlds: HashMap<u64, Vec<QEntity>>,
}

/// A fast player: reads everything with the client library (which refuses a delta whose
/// base is not the world it holds), checks that ticks strictly increase, publishes the
/// newest one, and records its reconstruction at every tick until `stop`.
async fn fast(mut conn: Connection, latest: watch::Sender<u64>, stop: CancellationToken) -> Seen {
    let mut seen = Seen {
        ticks: Vec::new(),
        worlds: HashMap::new(),
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            event = conn.next_event() => match event.unwrap() {
                Event::Snapshot(s) => {
                    if let Some(prev) = seen.ticks.last() {
                        assert!(s.tick > *prev, "tick {} after {prev}", s.tick);
                    }
                    seen.ticks.push(s.tick);
                    seen.worlds.insert(s.tick, conn.session().world().entities.clone());
                    latest.send_replace(s.tick);
                }
                Event::Pong { .. } | Event::Game(_) => {}
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
    let mut fast_players = Vec::new();
    for _ in 0..2 {
        let conn = Connection::connect(ConnectOptions::new(url.clone(), "fast"))
            .await
            .unwrap();
        let (tx, latest) = watch::channel(0);
        let task = tokio::spawn(fast(conn, tx, stop.clone()));
        fast_players.push((latest, task));
    }

    // The slow player: a small receive window, and long pauses between reads. The pauses
    // are what makes it slow, not a way to wait for something.
    let mut ws = connect_small_window(server.addr, &url).await;
    hello(&mut ws, "slow").await;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let mut world = World::default();
    let mut received: Vec<(u64, Vec<QEntity>)> = Vec::new();
    let until = tokio::time::Instant::now() + Duration::from_millis(2500);
    while tokio::time::Instant::now() < until {
        let Message::Binary(bytes) = next_message(&mut ws).await else {
            continue;
        };
        let ServerMsg::Snapshot(s) = decode_server(&bytes).unwrap() else {
            continue;
        };
        if let Some((prev, _)) = received.last() {
            assert!(s.tick > *prev, "tick {} after {prev}", s.tick);
        }
        world
            .apply(&s)
            .unwrap_or_else(|e| panic!("tick {}: {e}", s.tick));
        received.push((s.tick, world.entities.clone()));
        tokio::time::sleep(Duration::from_millis(40)).await; // slower than the 33 ms tick
    }
    // The fast players are still connected and reading: the room went on for them.
    let upto: Vec<u64> = fast_players
        .iter()
        .map(|(latest, _)| *latest.borrow())
        .collect();
    let allowed = left_out(server.addr, "slow").await;
    stop.cancel();

    // Its writer was stuck on the ~30 KB keyframe, which the 4 KB buffers cannot hold,
    // for the whole 800 ms pause, while the room offered a snapshot every 33 ms: the slot
    // replaced some (two offers in 800 ms are enough). So the slot counted skips, and the
    // slow reader's second snapshot is at least two ticks after its first.
    assert!(allowed.skipped >= 1, "no snapshot was skipped");
    assert!(received.len() >= 2, "{} snapshots read", received.len());
    let ticks: Vec<u64> = received.iter().map(|(t, _)| *t).collect();
    assert!(
        ticks[1] >= ticks[0] + 2,
        "the slow reader skipped snapshots: {ticks:?}"
    );
    assert_eq!(received[0].1.len(), 3000 + 3, "NPCs and three avatars");

    // Every tick a player did not see is accounted for: a catch-up tick (missed by all
    // three) or a skip counted by some slot. On an idle machine the fast players miss
    // nothing and only the slow reader's skips are counted; a snapshot lost any other way
    // makes the total exceed the allowance.
    let mut missing = missing_before(&ticks, *ticks.last().unwrap());
    let mut seen = Vec::new();
    for ((_, task), upto) in fast_players.into_iter().zip(upto) {
        let fast = task.await.unwrap();
        missing += missing_before(&fast.ticks, upto);
        seen.push(fast);
    }
    assert!(
        missing <= 3 * allowed.catch_up + allowed.skipped,
        "the players missed {missing} ticks; the server accounts for {} catch-up ticks \
         (each missed by all three) and {} skipped snapshots",
        allowed.catch_up,
        allowed.skipped
    );

    // What the slow reader reconstructed is what the fast players hold at the same tick.
    // A fast player only lacks one of these ticks if its own slot skipped it (counted
    // above), which a loaded machine may do now and then but not for most of them.
    let mut compared = 0;
    for (tick, entities) in &received {
        let mut held = false;
        for fast in &seen {
            if let Some(theirs) = fast.worlds.get(tick) {
                assert_eq!(
                    entities, theirs,
                    "tick {tick}: the slow reader holds what everyone was sent"
                );
                held = true;
            }
        }
        compared += usize::from(held);
    }
    assert!(
        2 * compared >= received.len(),
        "only {compared} of the slow reader's {} ticks were seen by a fast player",
        received.len()
    );
    server.stop().await.unwrap();
}
