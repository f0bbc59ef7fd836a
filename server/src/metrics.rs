//! Process-wide counters, updated with relaxed atomics from the tick and connection
//! tasks and rendered as Prometheus text on `GET /metrics`.
//!
//! Counters only need to be eventually consistent with each other, so `Relaxed` is
//! enough and costs one uncontended atomic add on the hot path.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use tickcast_shared::DisconnectReason;

/// All server counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// WebSocket connections open now.
    pub connections_open: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_total: AtomicU64,
    /// Upgrade requests refused with an HTTP status.
    pub handshakes_refused: AtomicU64,
    /// Rooms open now.
    pub rooms_open: AtomicU64,
    /// Players in rooms now.
    pub players: AtomicU64,
    /// Ticks simulated (all rooms).
    pub ticks: AtomicU64,
    /// Wake-ups that found more than one tick due.
    pub tick_overruns: AtomicU64,
    /// Ticks dropped because catch-up was capped.
    pub ticks_skipped: AtomicU64,
    /// Time spent inside ticks, in nanoseconds (all rooms).
    pub tick_nanos: AtomicU64,
    /// Snapshot messages written to sockets.
    pub snapshots_sent: AtomicU64,
    /// Snapshots sent as keyframes (joins, far-behind players, or smaller than the delta).
    pub keyframes_sent: AtomicU64,
    /// Snapshots replaced before a slow player's writer could send them.
    pub snapshots_skipped: AtomicU64,
    /// WebSocket frames written (all kinds).
    pub frames_sent: AtomicU64,
    /// WebSocket payload bytes written.
    pub bytes_sent: AtomicU64,
    /// Client messages decoded.
    pub messages_received: AtomicU64,
    /// Inputs stored for a room.
    pub inputs_received: AtomicU64,
    closes: [AtomicU64; DisconnectReason::ALL.len()],
}

impl Metrics {
    /// Counts a connection closed by the server or the peer with `reason`.
    pub fn count_close(&self, reason: DisconnectReason) {
        if let Some(i) = DisconnectReason::ALL.iter().position(|r| *r == reason) {
            self.closes[i].fetch_add(1, Relaxed);
        }
    }

    /// Connections closed with `reason` so far.
    pub fn closes(&self, reason: DisconnectReason) -> u64 {
        DisconnectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.closes[i].load(Relaxed))
    }

    /// Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut put = |name: &str, kind: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP tickcast_{name} {help}\n# TYPE tickcast_{name} {kind}\ntickcast_{name} {}",
                value.load(Relaxed)
            );
        };
        put(
            "connections_open",
            "gauge",
            "WebSocket connections open.",
            &self.connections_open,
        );
        put(
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            &self.connections_total,
        );
        put(
            "handshakes_refused_total",
            "counter",
            "Upgrade requests refused with an HTTP error.",
            &self.handshakes_refused,
        );
        put("rooms_open", "gauge", "Rooms open.", &self.rooms_open);
        put("players", "gauge", "Players in rooms.", &self.players);
        put("ticks_total", "counter", "Ticks simulated.", &self.ticks);
        put(
            "tick_overruns_total",
            "counter",
            "Wake-ups with more than one tick due.",
            &self.tick_overruns,
        );
        put(
            "ticks_skipped_total",
            "counter",
            "Ticks dropped by the catch-up cap.",
            &self.ticks_skipped,
        );
        put(
            "tick_nanoseconds_total",
            "counter",
            "Nanoseconds spent computing ticks.",
            &self.tick_nanos,
        );
        put(
            "snapshots_sent_total",
            "counter",
            "Snapshots written to sockets.",
            &self.snapshots_sent,
        );
        put(
            "snapshots_skipped_total",
            "counter",
            "Snapshots superseded before a slow player's writer sent them.",
            &self.snapshots_skipped,
        );
        put(
            "frames_sent_total",
            "counter",
            "WebSocket frames written.",
            &self.frames_sent,
        );
        put(
            "bytes_sent_total",
            "counter",
            "WebSocket payload bytes written.",
            &self.bytes_sent,
        );
        put(
            "messages_received_total",
            "counter",
            "Client messages decoded.",
            &self.messages_received,
        );
        put(
            "inputs_received_total",
            "counter",
            "Inputs accepted.",
            &self.inputs_received,
        );
        let _ = writeln!(out, "# HELP tickcast_connections_closed_total Connections closed, by close code.\n# TYPE tickcast_connections_closed_total counter");
        for (reason, count) in DisconnectReason::ALL.iter().zip(&self.closes) {
            let _ = writeln!(
                out,
                "tickcast_connections_closed_total{{code=\"{}\"}} {}",
                reason.code(),
                count.load(Relaxed)
            );
        }
        out
    }
}
