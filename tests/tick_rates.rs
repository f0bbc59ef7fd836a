//! Rooms tick on their own schedules: two rooms at different tick rates, one of them
//! loaded with a heavy world, each advance at their own rate.
//!
//! # What is asserted, and why it cannot flake
//! A room's tick `n` is due at `origin + n * period` (server/src/schedule.rs). At each
//! wake-up at time `w` the room runs or skips every deadline passed so far, so
//! `tick(w) + skipped(w) == floor((w - origin) / period)` exactly: ticks are never
//! run ahead of the schedule, and ticks a late room drops are counted in
//! `tickcast_ticks_skipped_total`. Between two wake-ups `w1 < w2`:
//!
//! - `tick(w2) - tick(w1) < (w2 - w1) / period + 1` (no faster than the rate), and
//! - `tick(w2) - tick(w1) + skipped(w2) - skipped(w1) > (w2 - w1) / period - 1`
//!   (every tick the rate owes is either run or counted as skipped).
//!
//! The test cannot read a wake-up time, but it can bracket one: it sends an input at
//! `sent`, waits for the snapshot that acknowledges it, then for the next snapshot after
//! that one, received at `received`. That next snapshot's wake-up began after the room
//! had applied the input (the room's ticks run one after another), so after `sent`, and
//! it was written before `received`. With `w1 in [sent1, received1]` and
//! `w2 in [sent2, received2]`, the bounds above hold with `received2 - sent1` and
//! `sent2 - received1` in place of `w2 - w1`. A loaded machine widens the brackets,
//! which loosens the bounds but never breaks them; on a calm one they are about three
//! ticks wide. The skip counter is server-wide, which only loosens the lower bound.
//!
//! The rooms' rates are told apart by these bounds: each room is checked against its
//! own period, and neither 60 Hz nor 20 Hz fits the other's bounds over two seconds
//! unless the server reports the difference as skipped ticks. Whether the 60 Hz room
//! outpaces the 20 Hz one is NOT asserted: on a starved machine both may skip.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use glam::Vec2;
use tickcast::shared::{ClientMsg, Input, Snapshot};

/// A wake-up of the room bracketed in wall time: it began at or after `sent` and its
/// snapshot, of tick `tick`, was received at `received`.
#[derive(Debug, Clone, Copy)]
struct Mark {
    sent: Instant,
    tick: u64,
    received: Instant,
}

/// The player's stream of snapshots, checked as it is read: ticks strictly increase,
/// every snapshot is a delta against the previous one or a keyframe, and no snapshot
/// acknowledges an input that was not sent.
struct Stream {
    ws: Ws,
    last: Snapshot,
    seq: u32,
}

impl Stream {
    async fn join(url: &str) -> Stream {
        let mut ws = connect(url).await;
        let welcome = hello(&mut ws, "counter").await;
        let first = recv_snapshot(&mut ws).await;
        assert_eq!(first.base_tick, 0, "the first snapshot is a keyframe");
        assert!(
            first.tick > welcome.server_tick,
            "the first snapshot ({}) comes from a tick after the join ({})",
            first.tick,
            welcome.server_tick
        );
        Stream {
            ws,
            last: first,
            seq: 0,
        }
    }

    async fn next(&mut self) -> &Snapshot {
        let s = recv_snapshot(&mut self.ws).await;
        assert!(
            s.tick > self.last.tick,
            "tick {} after {}",
            s.tick,
            self.last.tick
        );
        assert!(
            s.base_tick == self.last.tick || s.base_tick == 0,
            "tick {} is a delta against {}, but the player holds {}",
            s.tick,
            s.base_tick,
            self.last.tick
        );
        assert!(
            s.last_input_seq <= self.seq,
            "input {} acknowledged, only {} sent",
            s.last_input_seq,
            self.seq
        );
        self.last = s;
        &self.last
    }

    /// Sends the next input and brackets a wake-up that began after it (see the
    /// module doc).
    async fn mark(&mut self) -> Mark {
        self.seq += 1;
        let sent = Instant::now();
        send(
            &mut self.ws,
            &ClientMsg::Input(Input {
                seq: self.seq,
                movement: Vec2::ZERO,
                buttons: 0,
                payload: Default::default(),
            }),
        )
        .await;
        while self.next().await.last_input_seq < self.seq {}
        let tick = self.next().await.tick;
        Mark {
            sent,
            tick,
            received: Instant::now(),
        }
    }
}

/// Two bracketed wake-ups of the room at `url`, at least `ticks` ticks apart.
async fn two_marks(url: String, ticks: u64) -> (Mark, Mark) {
    let mut stream = Stream::join(&url).await;
    let a = stream.mark().await;
    while stream.next().await.tick < a.tick + ticks {}
    let b = stream.mark().await;
    (a, b)
}

/// Checks the two bounds of the module doc for one room.
fn assert_rate(room: &str, tick_rate: u32, (a, b): (Mark, Mark), skipped: u64) {
    let period = (Duration::from_secs(1) / tick_rate).as_secs_f64();
    let ran = b.tick - a.tick;
    let longest = b.received.duration_since(a.sent).as_secs_f64() / period;
    let shortest = b.sent.duration_since(a.received).as_secs_f64() / period;
    assert!(
        (ran as f64) < longest + 1.0,
        "{room}: {ran} ticks ran in at most {longest:.1} periods of {tick_rate} Hz"
    );
    assert!(
        (ran + skipped) as f64 > shortest - 1.0,
        "{room}: {ran} ticks ran and at most {skipped} were skipped in at least \
         {shortest:.1} periods of {tick_rate} Hz"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_keep_their_own_tick_rates_while_one_is_loaded() {
    let mut c = config();
    // The heavy room is above the default bound for rooms asked for over the API.
    c.max_room_npcs = 20_000;
    let server = start(c).await;
    let addr = server.addr;
    let (status, fast) = http_json(addr, "POST", "/rooms", r#"{"tick_rate":60,"npcs":16}"#).await;
    assert_eq!(status, 201, "{fast}");
    let (status, heavy) =
        http_json(addr, "POST", "/rooms", r#"{"tick_rate":20,"npcs":20000}"#).await;
    assert_eq!(status, 201, "{heavy}");
    // Read before any bracket opens, so it counts no skip of the window.
    let skipped_before = count(&metrics(addr).await, "tickcast_ticks_skipped_total");

    // About two seconds of each room, measured at the same time.
    let fast = tokio::spawn(two_marks(server.ws_url(fast["id"].as_str().unwrap()), 120));
    let heavy = tokio::spawn(two_marks(server.ws_url(heavy["id"].as_str().unwrap()), 40));
    let (fast, heavy) = (fast.await.unwrap(), heavy.await.unwrap());
    // Read after every bracket closed, so it counts every skip of the window.
    let skipped = count(&metrics(addr).await, "tickcast_ticks_skipped_total") - skipped_before;

    assert_rate("the 60 Hz room", 60, fast, skipped);
    assert_rate("the 20 Hz room", 20, heavy, skipped);
    server.stop().await.unwrap();
}
