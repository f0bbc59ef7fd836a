//! Accounting for the ticks a player did not get a snapshot for. Nothing in the tests
//! measures speed: a busy machine makes the server run late ticks back to back
//! (catch-up) and replace snapshots a slow player's writer has not sent yet (slot
//! skips), and both are counted in `/metrics`. So instead of "a snapshot every tick",
//! a test checks that every tick a player missed is one the server accounts for.

use std::net::SocketAddr;

use super::{count, metrics};

/// What `/metrics` says the server left out of players' snapshot streams, on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeftOut {
    /// Catch-up ticks: a late wake-up runs several ticks but broadcasts only the last,
    /// so every player of the room misses the others. The server's only room is the
    /// one [`left_out`] was asked about.
    pub catch_up: u64,
    /// Snapshots replaced in a slow player's latest-wins slot before its writer took
    /// them, over all players.
    pub skipped: u64,
}

/// Reads [`LeftOut`] for the server at `addr`, whose only room is `room`.
pub async fn left_out(addr: SocketAddr, room: &str) -> LeftOut {
    // A wake-up adds its ticks to the total before it counts itself, and one exposition
    // prints the total first: a wake-up finishing in between would be counted without
    // its ticks. So the total comes from a second read, which holds every tick of every
    // wake-up the first one counted (and perhaps more, which only widens the allowance).
    let first = metrics(addr).await;
    let wakeups = count(
        &first,
        &format!("tickcast_room_tick_duration_seconds_count{{room=\"{room}\"}}"),
    );
    let ticks = count(&metrics(addr).await, "tickcast_ticks_total");
    LeftOut {
        catch_up: ticks - wakeups,
        skipped: count(&first, "tickcast_snapshots_skipped_total"),
    }
}

/// Ticks missing between the snapshots a player received before tick `upto`, the newest
/// it held when the metrics were read. The gap that ends at `upto` is left out: its
/// wake-up broadcast `upto` but may not have counted itself yet. Every earlier wake-up
/// finished before that one began, and a slot's skips are counted before the next
/// snapshot is written, so all the other gaps are in the metrics.
pub fn missing_before(ticks: &[u64], upto: u64) -> u64 {
    let before: Vec<u64> = ticks.iter().copied().take_while(|t| *t < upto).collect();
    before.windows(2).map(|w| w[1] - w[0] - 1).sum()
}
