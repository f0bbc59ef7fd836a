//! The counters of a run, added up over bots (and over processes by a merge): plain
//! sums, kept apart from the [`super::Report`] so that rates are computed once, from
//! the final totals, and never averaged.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counters added up over bots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Totals {
    /// Bots that received a `Welcome`.
    pub bots_connected: u64,
    /// Bots whose connect failed.
    pub bots_failed: u64,
    /// Connected bots that the server closed, or that lost their connection, before
    /// the end of the run.
    pub bots_disconnected: u64,
    /// Sum over connected bots of the time from `Welcome` to the end of their run.
    pub connected_time: Duration,
    /// Snapshots received.
    pub snapshots_received: u64,
    /// Ticks skipped between consecutive snapshots.
    pub snapshots_missed: u64,
    /// WebSocket payload bytes received.
    pub bytes_received: u64,
    /// What the snapshots of the verifying bots (those that rebuild the world, see
    /// [`crate::SwarmConfig::verify_fraction`]) would have weighed as naive full
    /// snapshots: only a bot that holds the world knows its size.
    pub naive_bytes: u64,
    /// Bots that connected and rebuilt the world from every snapshot.
    pub bots_verified: u64,
    /// Sum of the verifying bots' connected time: the denominator of the naive rate.
    /// Zero is read as "every bot verified" (`connected_time`), as in totals made
    /// before verification was sampled.
    pub verified_time: Duration,
    /// Inputs sent.
    pub inputs_sent: u64,
    /// Pings sent.
    pub pings_sent: u64,
    /// Times a bot lost its connection and the server resumed its player on a new one.
    pub reconnects: u64,
    /// Game events received (reliable messages from the room's game).
    pub game_events: u64,
    /// Close codes received from the server, by code.
    pub close_codes: BTreeMap<u16, u64>,
    /// Failures by [`crate::ClientError::kind`], prefixed with the stage (`"connect: "`).
    pub errors: BTreeMap<String, u64>,
}

impl Totals {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: &Totals) {
        self.bots_connected += other.bots_connected;
        self.bots_failed += other.bots_failed;
        self.bots_disconnected += other.bots_disconnected;
        self.connected_time += other.connected_time;
        self.snapshots_received += other.snapshots_received;
        self.snapshots_missed += other.snapshots_missed;
        self.bytes_received += other.bytes_received;
        self.naive_bytes += other.naive_bytes;
        self.bots_verified += other.bots_verified;
        self.verified_time += other.verified_time;
        self.inputs_sent += other.inputs_sent;
        self.pings_sent += other.pings_sent;
        self.reconnects += other.reconnects;
        self.game_events += other.game_events;
        for (code, n) in &other.close_codes {
            *self.close_codes.entry(*code).or_default() += n;
        }
        for (kind, n) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }

    /// Counts one close code received.
    pub fn close_code(&mut self, code: u16) {
        *self.close_codes.entry(code).or_default() += 1;
    }

    /// Counts one failure.
    pub fn error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }
}
