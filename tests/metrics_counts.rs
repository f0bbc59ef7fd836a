//! What `/metrics` counts, checked against what a test can know for certain: tick
//! overruns and skipped ticks in a room that cannot keep up (and the per-room series
//! agreeing with the global ones), snapshots skipped for a player that does not read
//! (while a reading player misses none), and the player gauges, global and per room,
//! against the exact number of players in each room.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tickcast::shared::codec::decode_server;
use tickcast::shared::ServerMsg;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overruns_and_skipped_ticks_are_counted_and_agree_per_room() {
    let mut c = config();
    // A tick period of 1 ms, and a world whose every tick walks 100,000 NPCs: a tick
    // costs milliseconds even in a release build (docs/PERFORMANCE.md measured the tick
    // task at 173 us for 1,000 NPCs; a debug build takes about 20 ms for 100,000), so
    // the wake-ups after the first find ticks overdue.
    c.tick_rate = 1000;
    c.npcs = 100_000;
    // Above the bound for rooms that clients ask for; the operator may go beyond it.
    c.max_room_npcs = 100_000;
    // One tick per wake-up: a late wake-up then always drops the overdue ticks, so every
    // overrun skips at least one tick, and every wake-up runs exactly one.
    c.max_catch_up_ticks = 1;
    let server = start(c).await;
    let addr = server.addr;
    // The room is created by its first player, who leaves at once (its snapshots of a
    // hundred thousand entities are not what this test is about); the room ticks on.
    let mut player = connect(&server.ws_url("heavy")).await;
    hello(&mut player, "p").await;
    close_normally(&mut player).await;

    // How many overruns a machine sees depends on its speed, so the counts themselves
    // are only known to be positive. How they relate is exact; but the room's task
    // updates them one after another, and a rendering may fall between two of those
    // updates (a window of a few instructions per wake-up), so the test waits for a
    // rendering that does not.
    eventually("overruns and skipped ticks, consistent", || async {
        let text = metrics(addr).await;
        let overruns = count(&text, "tickcast_tick_overruns_total");
        let skipped = count(&text, "tickcast_ticks_skipped_total");
        let ticks = count(&text, "tickcast_ticks_total");
        let room_overruns = count(&text, "tickcast_room_tick_overruns_total{room=\"heavy\"}");
        let room_ticks = count(
            &text,
            "tickcast_room_tick_duration_seconds_count{room=\"heavy\"}",
        );
        let seen = format!(
            "overruns {overruns}, room overruns {room_overruns}, skipped {skipped}, \
             ticks {ticks}, room tick observations {room_ticks}"
        );
        // One room: its series are the whole server's. With one tick per wake-up,
        // every overrun skipped one tick or more, and every tick was observed once.
        if overruns > 0 && room_overruns == overruns && skipped >= overruns && room_ticks == ticks {
            Ok(seen)
        } else {
            Err(seen)
        }
    })
    .await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_a_stalled_player_does_not_read_are_skipped_and_counted() {
    let mut c = config();
    // A keyframe of about 30 KB, more than the kernel buffers on both sides hold
    // (4 KiB asked for each; Linux doubles it): the stalled player's writer blocks on its
    // first snapshot.
    c.npcs = 3000;
    c.send_buffer = 4096;
    // The reading player's writer has a whole period to take each snapshot before the
    // next replaces it: 100 ms, so that even a loaded machine does not make it skip.
    c.tick_rate = 10;
    let server = start(c).await;
    let addr = server.addr;
    let url = server.ws_url("skips");

    // (A loaded machine may make even the reading player skip a tick: the room's
    // catch-up runs late ticks back to back and offers only the last. Skips only add to
    // the counter the test reads, which it bounds from below.)
    let mut reading = Watcher::join(&url).await;

    let mut stalled = connect_small_window(addr, &url).await;
    let stalled_from = hello(&mut stalled, "stalls").await.server_tick;
    let before = count(&metrics(addr).await, "tickcast_snapshots_skipped_total");
    let catch_up_before = catch_up_at_most(addr, "skips").await;

    // The stalled player reads nothing for 15 ticks of the room, as the reading
    // player sees them.
    let stalled_until = reading.wait_past(stalled_from + 14).await;

    // Then it reads again: first the keyframe its writer was stuck on, then whatever is
    // newest, which jumps over every tick it did not read.
    let mut ticks = Vec::new();
    let mut first_is_keyframe = None;
    while ticks.len() < 2 {
        if let Message::Binary(bytes) = next_message(&mut stalled).await {
            if let ServerMsg::Snapshot(s) = decode_server(&bytes).unwrap() {
                first_is_keyframe.get_or_insert(s.base_tick == 0);
                ticks.push(s.tick);
            }
        }
    }
    assert_eq!(
        first_is_keyframe,
        Some(true),
        "a connection starts with a keyframe"
    );
    let jumped = ticks[1] - ticks[0] - 1;
    assert!(
        ticks[1] >= stalled_until,
        "after the keyframe (tick {}), the newest snapshot, from after the stall \
         (tick {stalled_until} or later), not the next one: {ticks:?}",
        ticks[0]
    );
    // The writer counts the snapshots it skipped when it takes the next one, which it
    // did before sending that one: they are all in the metric by now.
    // Ticks it jumped over were either offered and replaced (skipped, counted) or never
    // offered at all: catch-up ticks, which a late wake-up runs back to back while
    // broadcasting only the last, as a loaded machine makes the room do.
    let after = count(&metrics(addr).await, "tickcast_snapshots_skipped_total");
    let catch_up = left_out(addr, "skips")
        .await
        .catch_up
        .saturating_sub(catch_up_before);
    assert!(
        (after - before) + catch_up >= jumped,
        "{jumped} ticks jumped by the stalled player, but the skipped metric grew by {} \
         and the room ran {catch_up} catch-up ticks",
        after - before
    );
    // The reading player played through the stall (it saw 15 ticks go by, in order)
    // and was not disconnected.
    let received = reading.finish().await.len();
    assert!(
        received >= 2,
        "the reading player received {received} snapshots"
    );
    server.stop().await.unwrap();
}

/// Waits until the global player gauge is `total` and each room's gauge is as listed.
async fn wait_gauges(addr: SocketAddr, total: u64, rooms: &[(&str, u64)]) {
    eventually(&format!("{total} players, by room {rooms:?}"), || async {
        let text = metrics(addr).await;
        let global = count(&text, "tickcast_players");
        let per_room: Vec<Option<u64>> = rooms
            .iter()
            .map(|(room, _)| value(&text, &format!("tickcast_room_players{{room=\"{room}\"}}")))
            .collect();
        let wanted: Vec<Option<u64>> = rooms.iter().map(|(_, n)| Some(*n)).collect();
        if global == total && per_room == wanted {
            Ok(())
        } else {
            Err(format!("{global} players, by room {per_room:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn player_gauges_equal_the_players_in_each_room() {
    let mut c = config();
    c.reconnect_grace = Duration::from_millis(300);
    let server = start(c).await;
    let addr = server.addr;
    wait_gauges(addr, 0, &[]).await;

    let mut a = Vec::new();
    for i in 0..3 {
        let mut ws = connect(&server.ws_url("a")).await;
        hello(&mut ws, &format!("a{i}")).await;
        a.push(ws);
    }
    let mut b = Vec::new();
    for i in 0..2 {
        let mut ws = connect(&server.ws_url("b")).await;
        hello(&mut ws, &format!("b{i}")).await;
        b.push(ws);
    }
    wait_gauges(addr, 5, &[("a", 3), ("b", 2)]).await;

    // A player who leaves is gone at once.
    leave(&mut a[0]).await;
    wait_gauges(addr, 4, &[("a", 2), ("b", 2)]).await;

    // A player whose connection drops without a close frame is removed when its
    // reconnect grace (300 ms here) runs out.
    drop(b.pop());
    wait_gauges(addr, 3, &[("a", 2), ("b", 1)]).await;

    for ws in a.iter_mut().skip(1).chain(b.iter_mut()) {
        leave(ws).await;
    }
    wait_gauges(addr, 0, &[("a", 0), ("b", 0)]).await;
    server.stop().await.unwrap();
}

/// Catch-up ticks the room has run so far, never more than it has (the opposite bound
/// of [`left_out`]): the tick total of one page minus the wake-ups of a later page,
/// which may count wake-ups whose ticks the first page did not hold yet.
async fn catch_up_at_most(addr: SocketAddr, room: &str) -> u64 {
    let ticks = count(&metrics(addr).await, "tickcast_ticks_total");
    let wakeups = count(
        &metrics(addr).await,
        &format!("tickcast_room_tick_duration_seconds_count{{room=\"{room}\"}}"),
    );
    ticks.saturating_sub(wakeups)
}
