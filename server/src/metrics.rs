//! Process-wide counters, updated with relaxed atomics from the tick and connection
//! tasks and rendered as Prometheus text on `GET /metrics`.
//!
//! Counters only need to be eventually consistent with each other, so `Relaxed` is
//! enough and costs one uncontended atomic add on the hot path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
    /// TLS handshakes that failed or timed out (only with `--tls-cert`).
    pub tls_handshakes_failed: AtomicU64,
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
    /// Messages refused: inputs out of order or not finite, messages over the rate limit,
    /// undecodable or oversized messages (each also closes its connection).
    pub inputs_rejected: AtomicU64,
    closes: [AtomicU64; DisconnectReason::ALL.len()],
    rooms: Mutex<BTreeMap<Arc<str>, Arc<RoomMetrics>>>,
}

/// Upper bounds of the tick histograms' buckets, in seconds: from 50 us to 100 ms, where
/// a 30 Hz tick's whole budget is 33 ms.
pub const TICK_BUCKETS: [f64; 11] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// A Prometheus histogram with fixed buckets, updated lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Non-cumulative counts per bucket; the last one is `+Inf`.
    buckets: [AtomicU64; TICK_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = TICK_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(TICK_BUCKETS.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.count.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bucket) in self.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = TICK_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
        }
        let sum = self.sum_nanos.load(Relaxed) as f64 / 1e9;
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {sum}\n{name}_count{{{labels}}} {}",
            self.count()
        );
    }
}

/// The counters of one room, labelled with its name.
#[derive(Debug, Default)]
pub struct RoomMetrics {
    /// Time to compute one tick (catch-up ticks included).
    pub tick_duration: Histogram,
    /// How late each wake-up was past its deadline.
    pub tick_lateness: Histogram,
    /// Wake-ups with more than one tick due.
    pub tick_overruns: AtomicU64,
    /// Players in the room now.
    pub players: AtomicU64,
}

impl Metrics {
    /// Registers a room's metrics under its name (replacing a previous room's).
    pub fn add_room(&self, name: Arc<str>) -> Arc<RoomMetrics> {
        let room = Arc::new(RoomMetrics::default());
        self.rooms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, Arc::clone(&room));
        room
    }

    /// Drops a room's series, if `room` is still the one registered under `name`.
    pub fn remove_room(&self, name: &str, room: &Arc<RoomMetrics>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if rooms.get(name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(name);
        }
    }

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
        put(
            "tls_handshakes_failed_total",
            "counter",
            "TLS handshakes that failed or timed out.",
            &self.tls_handshakes_failed,
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
            "keyframes_sent_total",
            "counter",
            "Snapshots sent as keyframes.",
            &self.keyframes_sent,
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
        put(
            "inputs_rejected_total",
            "counter",
            "Messages refused (each closes its connection).",
            &self.inputs_rejected,
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
        // Room names are validated to [A-Za-z0-9._-], so they need no label escaping.
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let family = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(
            &mut out,
            "tickcast_room_tick_duration_seconds",
            "histogram",
            "Time to compute one tick, per room.",
        );
        for (name, room) in rooms.iter() {
            room.tick_duration.render(
                &mut out,
                "tickcast_room_tick_duration_seconds",
                &format!("room=\"{name}\""),
            );
        }
        family(
            &mut out,
            "tickcast_room_tick_lateness_seconds",
            "histogram",
            "How late each tick wake-up was, per room.",
        );
        for (name, room) in rooms.iter() {
            room.tick_lateness.render(
                &mut out,
                "tickcast_room_tick_lateness_seconds",
                &format!("room=\"{name}\""),
            );
        }
        family(
            &mut out,
            "tickcast_room_tick_overruns_total",
            "counter",
            "Wake-ups with more than one tick due, per room.",
        );
        for (name, room) in rooms.iter() {
            let _ = writeln!(
                out,
                "tickcast_room_tick_overruns_total{{room=\"{name}\"}} {}",
                room.tick_overruns.load(Relaxed)
            );
        }
        family(
            &mut out,
            "tickcast_room_players",
            "gauge",
            "Players per room.",
        );
        for (name, room) in rooms.iter() {
            let _ = writeln!(
                out,
                "tickcast_room_players{{room=\"{name}\"}} {}",
                room.players.load(Relaxed)
            );
        }
        drop(rooms);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_rooms_are_labelled() {
        let m = Metrics::default();
        let room = m.add_room(Arc::from("arena-1"));
        room.tick_duration.observe(Duration::from_micros(30));
        room.tick_duration.observe(Duration::from_micros(700));
        room.tick_duration.observe(Duration::from_secs(1));
        let text = m.render();
        let line = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .map(|l| l.rsplit(' ').next().unwrap_or("").to_owned())
        };
        let name = "tickcast_room_tick_duration_seconds";
        assert_eq!(
            line(&format!("{name}_bucket{{room=\"arena-1\",le=\"0.00005\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            line(&format!("{name}_bucket{{room=\"arena-1\",le=\"0.001\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            line(&format!("{name}_bucket{{room=\"arena-1\",le=\"+Inf\"}}")).as_deref(),
            Some("3")
        );
        assert_eq!(
            line(&format!("{name}_count{{room=\"arena-1\"}}")).as_deref(),
            Some("3")
        );
        m.remove_room("arena-1", &room);
        assert!(!m.render().contains("arena-1"));
    }
}
