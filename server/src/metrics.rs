//! Process-wide and per-room metrics, served as Prometheus text (format 0.0.4) on
//! `GET /metrics` through `prometheus-client`, the Prometheus project's Rust client: its
//! encoder writes the page, so the format, the `_total` suffixes, label escaping and
//! histogram buckets are the crate's, not ours.
//!
//! Counters on the hot path (frames, bytes, messages) are the crate's [`Counter`]s: one
//! relaxed atomic add each, as the plain atomics they replace cost. Two gauges stay plain
//! atomics because the server reads them to decide, not only to report: connections
//! open (the connection limit and `/readyz`) and players (the drain). They are exported
//! as read at each scrape.
//!
//! Clients create rooms by naming them, so one series per room would let any client
//! grow the page without bound. The first `--max-labelled-rooms` rooms open at once get
//! series labelled with their name; a room opened beyond that reports, for its whole
//! life, into the series labelled `room="_other"` (a room's histogram cannot be split
//! later). A room's series are removed when it ends, which frees its place for the next
//! room; the `_other` series are removed when the last room reporting into them ends.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tickcast_shared::DisconnectReason;

/// The `Content-Type` of the page [`Metrics::render`] writes (Prometheus text 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// The `room` label of the series that rooms beyond `--max-labelled-rooms` share. A
/// room that a client names `_other` reports there too: a series of its own would be
/// indistinguishable from the aggregate.
pub const OTHER_ROOMS: &str = "_other";

/// Upper bounds of the tick histograms' buckets, in seconds: from 50 us to 100 ms, where
/// a 30 Hz tick's whole budget is 33 ms.
pub const TICK_BUCKETS: [f64; 11] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
];

/// A gauge of whole numbers that never go below zero (players, rooms).
pub type CountGauge = Gauge<u64, AtomicU64>;

/// All server metrics.
#[derive(Debug)]
pub struct Metrics {
    /// The cluster directory's counters (`--redis`), set once the directory starts:
    /// rendered under `tickcast_cluster_*`.
    pub cluster: std::sync::OnceLock<crate::cluster::Directory>,
    /// WebSocket connections open now. A plain atomic: the upgrade reserves a slot with
    /// it before answering 101, so the connection limit is never exceeded.
    pub connections_open: AtomicU64,
    /// WebSocket connections accepted since start.
    pub connections_total: Counter,
    /// Upgrade requests refused with an HTTP status.
    pub handshakes_refused: Counter,
    /// TLS handshakes that failed or timed out (only with `--tls-cert`).
    pub tls_handshakes_failed: Counter,
    /// TCP connections on `--listen` holding an admission permit now (players, HTTP
    /// requests, TLS handshakes): what `--max-connections` counts.
    pub tcp_connections_open: CountGauge,
    /// Connections turned away at accept, by the cap that was reached; each reason is
    /// in it from the start.
    connections_refused: Family<ReasonLabels, Counter>,
    /// Requests refused by a per-client limit or deadline, by reason; each reason is in
    /// it from the start.
    requests_limited: Family<ReasonLabels, Counter>,
    /// Rooms open now.
    pub rooms_open: CountGauge,
    /// Players in rooms now. A plain atomic: the drain waits for it to reach zero.
    pub players: AtomicU64,
    /// Ticks simulated (all rooms).
    pub ticks: Counter,
    /// Wake-ups that found more than one tick due.
    pub tick_overruns: Counter,
    /// Ticks dropped because catch-up was capped.
    pub ticks_skipped: Counter,
    /// Time spent inside ticks, in nanoseconds (all rooms).
    pub tick_nanos: Counter,
    /// Snapshot messages written to sockets.
    pub snapshots_sent: Counter,
    /// Snapshots sent as keyframes (joins, far-behind players, or smaller than the delta).
    pub keyframes_sent: Counter,
    /// Snapshots replaced before a slow player's writer could send them.
    pub snapshots_skipped: Counter,
    /// WebSocket frames written (all kinds).
    pub frames_sent: Counter,
    /// WebSocket payload bytes written.
    pub bytes_sent: Counter,
    /// Client messages decoded.
    pub messages_received: Counter,
    /// Inputs stored for a room.
    pub inputs_received: Counter,
    /// Messages refused: inputs out of order or not finite, messages over the rate limit,
    /// undecodable or oversized messages (each also closes its connection).
    pub inputs_rejected: Counter,
    /// Connections closed, by close code; every code is in it from the start, so a
    /// dashboard sees a 0 rather than no series.
    closes_by_code: Family<CloseLabels, Counter>,
    /// The counters of `closes_by_code`, in the order of [`DisconnectReason::ALL`], so
    /// counting a close takes no lock.
    closes: [Counter; DisconnectReason::ALL.len()],
    room_series: RoomSeries,
    /// Which rooms have series of their own. Locked by adding and removing a room, and
    /// while a page is rendered, so the room families on a page agree on the rooms.
    rooms: Mutex<RoomTable>,
}

impl Default for Metrics {
    fn default() -> Self {
        let closes_by_code = Family::<CloseLabels, Counter>::default();
        let closes = DisconnectReason::ALL.map(|reason| {
            closes_by_code.get_or_create_owned(&CloseLabels {
                code: reason.code(),
            })
        });
        Self {
            connections_open: AtomicU64::new(0),
            connections_total: Counter::default(),
            handshakes_refused: Counter::default(),
            tls_handshakes_failed: Counter::default(),
            tcp_connections_open: CountGauge::default(),
            connections_refused: family_of(&REFUSED_REASONS),
            requests_limited: family_of(&LIMITED_REASONS),
            rooms_open: CountGauge::default(),
            players: AtomicU64::new(0),
            ticks: Counter::default(),
            tick_overruns: Counter::default(),
            ticks_skipped: Counter::default(),
            tick_nanos: Counter::default(),
            snapshots_sent: Counter::default(),
            keyframes_sent: Counter::default(),
            snapshots_skipped: Counter::default(),
            frames_sent: Counter::default(),
            bytes_sent: Counter::default(),
            messages_received: Counter::default(),
            inputs_received: Counter::default(),
            inputs_rejected: Counter::default(),
            closes_by_code,
            closes,
            room_series: RoomSeries::default(),
            rooms: Mutex::default(),
            cluster: std::sync::OnceLock::new(),
        }
    }
}

/// The `reason` labels of `tickcast_connections_refused_total` (see
/// [`crate::net::admission::Refused::label`]).
pub const REFUSED_REASONS: [&str; 2] = ["max_connections", "max_connections_per_ip"];

/// The `reason` labels of `tickcast_requests_limited_total`: `matchmake_per_ip`
/// (429), `room_creates_per_ip` (429), `body_timeout` (408), `admin_token` (401).
pub const LIMITED_REASONS: [&str; 4] = [
    "matchmake_per_ip",
    "room_creates_per_ip",
    "body_timeout",
    "admin_token",
];

/// The label of the refusal counters: one of a fixed set, so the series are bounded.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

fn family_of(reasons: &[&'static str]) -> Family<ReasonLabels, Counter> {
    let family = Family::<ReasonLabels, Counter>::default();
    for reason in reasons {
        let _ = family.get_or_create(&ReasonLabels { reason });
    }
    family
}

/// The label of `tickcast_connections_closed_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CloseLabels {
    code: u16,
}

/// The label of every per-room series: the room's name, or [`OTHER_ROOMS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoomLabels {
    room: Arc<str>,
}

fn tick_histogram() -> Histogram {
    Histogram::new(TICK_BUCKETS)
}

/// The four per-room families. A room's [`RoomMetrics`] holds handles to its members.
#[derive(Debug)]
struct RoomSeries {
    tick_duration: Family<RoomLabels, Histogram, fn() -> Histogram>,
    tick_lateness: Family<RoomLabels, Histogram, fn() -> Histogram>,
    tick_overruns: Family<RoomLabels, Counter>,
    players: Family<RoomLabels, CountGauge>,
    /// `room="_other"`, made once.
    other: RoomLabels,
}

impl Default for RoomSeries {
    fn default() -> Self {
        Self {
            tick_duration: Family::new_with_constructor(tick_histogram),
            tick_lateness: Family::new_with_constructor(tick_histogram),
            tick_overruns: Family::default(),
            players: Family::default(),
            other: RoomLabels {
                room: Arc::from(OTHER_ROOMS),
            },
        }
    }
}

impl RoomSeries {
    /// Handles to the series labelled `labels`, made if they are not there.
    fn handles(&self, labels: &RoomLabels, labelled: bool) -> RoomMetrics {
        RoomMetrics {
            tick_duration: TickHistogram(self.tick_duration.get_or_create_owned(labels)),
            tick_lateness: TickHistogram(self.tick_lateness.get_or_create_owned(labels)),
            tick_overruns: self.tick_overruns.get_or_create_owned(labels),
            players: self.players.get_or_create_owned(labels),
            labelled,
            ended: AtomicBool::new(false),
        }
    }

    /// Drops the series labelled `labels` from the page; handles still held update
    /// series that are no longer exported.
    fn remove(&self, labels: &RoomLabels) {
        self.tick_duration.remove(labels);
        self.tick_lateness.remove(labels);
        self.tick_overruns.remove(labels);
        self.players.remove(labels);
    }
}

/// Which rooms report into series of their own, and how many into `_other`.
#[derive(Debug, Default)]
struct RoomTable {
    labelled: HashMap<Arc<str>, Arc<RoomMetrics>>,
    others: usize,
}

/// A tick-time histogram (seconds), with the buckets of [`TICK_BUCKETS`].
#[derive(Debug, Clone)]
pub struct TickHistogram(Histogram);

impl TickHistogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        self.0.observe(d.as_secs_f64());
    }
}

/// The series one room reports into: its own, labelled with its name, or the shared
/// `_other` ones (see the module doc).
#[derive(Debug)]
pub struct RoomMetrics {
    /// Time to compute one tick (catch-up ticks included).
    pub tick_duration: TickHistogram,
    /// How late each wake-up was past its deadline.
    pub tick_lateness: TickHistogram,
    /// Wake-ups with more than one tick due.
    pub tick_overruns: Counter,
    /// Players in the room (in all `_other` rooms, for those): changed by differences
    /// only, through [`RoomMetrics::players_changed`], so rooms sharing it add up.
    players: CountGauge,
    labelled: bool,
    /// Set by the first [`Metrics::remove_room`], so a second one changes nothing.
    ended: AtomicBool,
}

impl RoomMetrics {
    /// The room's player count went from `from` to `to`.
    pub fn players_changed(&self, from: usize, to: usize) {
        if to > from {
            self.players.inc_by((to - from) as u64);
        } else {
            self.players.dec_by((from - to) as u64);
        }
    }

    /// Whether the room has series of its own (rather than reporting into `_other`).
    pub fn is_labelled(&self) -> bool {
        self.labelled
    }
}

impl Metrics {
    fn room_table(&self) -> MutexGuard<'_, RoomTable> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a room's metrics: labelled with `name` while fewer than `max_labelled`
    /// rooms are, else into `_other`. A name already labelled (a room of that name that
    /// has not finished ending) is labelled again, with fresh series: the old room's
    /// later [`Metrics::remove_room`] leaves them alone.
    pub fn add_room(&self, name: Arc<str>, max_labelled: usize) -> Arc<RoomMetrics> {
        let mut table = self.room_table();
        let labelled = &*name != OTHER_ROOMS
            && (table.labelled.contains_key(&name) || table.labelled.len() < max_labelled);
        if !labelled {
            table.others += 1;
            return Arc::new(self.room_series.handles(&self.room_series.other, false));
        }
        let labels = RoomLabels {
            room: Arc::clone(&name),
        };
        self.room_series.remove(&labels);
        let room = Arc::new(self.room_series.handles(&labels, true));
        table.labelled.insert(name, Arc::clone(&room));
        room
    }

    /// Ends a room's reporting: drops its series if `room` is still the one labelled
    /// `name`, or, for a room in `_other`, drops the `_other` series if it was the last
    /// room there. Either way a labelled place may be free for the next room.
    pub fn remove_room(&self, name: &str, room: &Arc<RoomMetrics>) {
        if room.ended.swap(true, Relaxed) {
            return;
        }
        let mut table = self.room_table();
        if !room.labelled {
            table.others = table.others.saturating_sub(1);
            if table.others == 0 {
                self.room_series.remove(&self.room_series.other);
            }
        } else if table
            .labelled
            .get(name)
            .is_some_and(|r| Arc::ptr_eq(r, room))
        {
            if let Some((room, _)) = table.labelled.remove_entry(name) {
                self.room_series.remove(&RoomLabels { room });
            }
        }
    }

    /// Counts a connection closed by the server or the peer with `reason`.
    pub fn count_close(&self, reason: DisconnectReason) {
        if let Some(i) = DisconnectReason::ALL.iter().position(|r| *r == reason) {
            self.closes[i].inc();
        }
    }

    /// Counts a connection turned away at accept; `reason` is one of
    /// [`REFUSED_REASONS`].
    pub fn count_refused(&self, reason: &'static str) {
        debug_assert!(REFUSED_REASONS.contains(&reason), "{reason}");
        self.connections_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Counts a request refused by a per-client limit or deadline; `reason` is one of
    /// [`LIMITED_REASONS`].
    pub fn count_limited(&self, reason: &'static str) {
        debug_assert!(LIMITED_REASONS.contains(&reason), "{reason}");
        self.requests_limited
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// Connections closed with `reason` so far.
    pub fn closes(&self, reason: DisconnectReason) -> u64 {
        DisconnectReason::ALL
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.closes[i].get())
    }

    /// The `/metrics` page, in the Prometheus text exposition format (version 0.0.4).
    ///
    /// The registry is put together for each page: the crate's metrics are shared
    /// handles, so it holds clones of them, next to the two plain gauges as read now.
    /// A scrape every few seconds makes that a few dozen small allocations, off the
    /// hot path.
    ///
    /// # Errors
    ///
    /// If the encoder fails, which writing into a `String` does not.
    pub fn render(&self) -> Result<String, fmt::Error> {
        let _rooms = self.room_table();
        let mut r = Registry::with_prefix("tickcast");
        // Help texts have no final full stop: the registry adds it.
        let open = ConstGauge::new(self.connections_open.load(Relaxed));
        r.register("connections_open", "WebSocket connections open", open);
        let accepted = self.connections_total.clone();
        r.register("connections", "WebSocket connections accepted", accepted);
        r.register(
            "handshakes_refused",
            "Upgrade requests refused with an HTTP error",
            self.handshakes_refused.clone(),
        );
        r.register(
            "tls_handshakes_failed",
            "TLS handshakes that failed or timed out",
            self.tls_handshakes_failed.clone(),
        );
        r.register(
            "tcp_connections_open",
            "TCP connections holding an admission permit",
            self.tcp_connections_open.clone(),
        );
        r.register(
            "connections_refused",
            "Connections turned away at accept, by cap",
            self.connections_refused.clone(),
        );
        r.register(
            "requests_limited",
            "Requests refused by a per-client limit or deadline, by reason",
            self.requests_limited.clone(),
        );
        if let Some(directory) = self.cluster.get() {
            directory.metrics().register(&mut r);
        }
        r.register("rooms_open", "Rooms open", self.rooms_open.clone());
        let players = ConstGauge::new(self.players.load(Relaxed));
        r.register("players", "Players in rooms", players);
        r.register("ticks", "Ticks simulated", self.ticks.clone());
        r.register(
            "tick_overruns",
            "Wake-ups with more than one tick due",
            self.tick_overruns.clone(),
        );
        r.register(
            "ticks_skipped",
            "Ticks dropped by the catch-up cap",
            self.ticks_skipped.clone(),
        );
        r.register(
            "tick_nanoseconds",
            "Nanoseconds spent computing ticks",
            self.tick_nanos.clone(),
        );
        r.register(
            "snapshots_sent",
            "Snapshots written to sockets",
            self.snapshots_sent.clone(),
        );
        r.register(
            "keyframes_sent",
            "Snapshots sent as keyframes",
            self.keyframes_sent.clone(),
        );
        r.register(
            "snapshots_skipped",
            "Snapshots superseded before a slow player's writer sent them",
            self.snapshots_skipped.clone(),
        );
        r.register(
            "frames_sent",
            "WebSocket frames written",
            self.frames_sent.clone(),
        );
        r.register(
            "bytes_sent",
            "WebSocket payload bytes written",
            self.bytes_sent.clone(),
        );
        r.register(
            "messages_received",
            "Client messages decoded",
            self.messages_received.clone(),
        );
        r.register(
            "inputs_received",
            "Inputs accepted",
            self.inputs_received.clone(),
        );
        r.register(
            "inputs_rejected",
            "Messages refused (each closes its connection)",
            self.inputs_rejected.clone(),
        );
        r.register(
            "connections_closed",
            "Connections closed, by close code",
            self.closes_by_code.clone(),
        );
        let rooms = &self.room_series;
        r.register_with_unit(
            "room_tick_duration",
            "Time to compute one tick, per room",
            Unit::Seconds,
            rooms.tick_duration.clone(),
        );
        r.register_with_unit(
            "room_tick_lateness",
            "How late each tick wake-up was, per room",
            Unit::Seconds,
            rooms.tick_lateness.clone(),
        );
        r.register(
            "room_tick_overruns",
            "Wake-ups with more than one tick due, per room",
            rooms.tick_overruns.clone(),
        );
        r.register("room_players", "Players per room", rooms.players.clone());
        let mut page = String::with_capacity(4096);
        prometheus_text::encode(&mut page, &r)?;
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

    use super::*;

    /// The value of the sample named exactly `series` (labels included), if present.
    fn value(text: &str, series: &str) -> Option<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_owned)
    }

    /// Every `room` label on the page, with how many sample lines carry it.
    fn rooms_on(text: &str) -> std::collections::BTreeMap<String, usize> {
        let mut rooms = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            if let Some((_, rest)) = line.split_once("room=\"") {
                let name = rest.split('"').next().unwrap();
                *rooms.entry(name.to_owned()).or_default() += 1;
            }
        }
        rooms
    }

    /// Sample lines of one room across the four families: 13 buckets (11 bounds and
    /// `+Inf`) plus sum and count for each histogram, one overrun and one player line.
    const LINES_PER_ROOM: usize = 2 * (TICK_BUCKETS.len() + 1 + 2) + 2;

    #[test]
    fn histogram_buckets_are_cumulative_and_rooms_are_labelled() {
        let m = Metrics::default();
        let room = m.add_room(Arc::from("arena-1"), 100);
        assert!(room.is_labelled());
        room.tick_duration.observe(Duration::from_micros(30));
        room.tick_duration.observe(Duration::from_micros(700));
        room.tick_duration.observe(Duration::from_secs(1));
        let text = m.render().unwrap();
        let line = |series: &str| value(&text, series);
        let name = "tickcast_room_tick_duration_seconds";
        // The crate writes bucket bounds as Go's client does: 5e-05 for 50 us.
        assert_eq!(
            line(&format!("{name}_bucket{{room=\"arena-1\",le=\"5e-05\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            line(&format!("{name}_bucket{{room=\"arena-1\",le=\"0.0005\"}}")).as_deref(),
            Some("1")
        );
        assert_eq!(
            line(&format!("{name}_bucket{{room=\"arena-1\",le=\"0.001\"}}")).as_deref(),
            Some("2")
        );
        assert_eq!(
            line(&format!("{name}_bucket{{room=\"arena-1\",le=\"0.1\"}}")).as_deref(),
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
        let sum: f64 = line(&format!("{name}_sum{{room=\"arena-1\"}}"))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 1.00073).abs() < 1e-9, "sum {sum}");
        assert_eq!(
            rooms_on(&text),
            [("arena-1".to_owned(), LINES_PER_ROOM)].into()
        );
        m.remove_room("arena-1", &room);
        assert!(!m.render().unwrap().contains("arena-1"));
    }

    #[test]
    fn every_series_keeps_its_name_type_and_unlabelled_value() {
        let m = Metrics::default();
        m.connections_open.store(3, Relaxed);
        m.players.store(2, Relaxed);
        m.rooms_open.inc();
        m.bytes_sent.inc_by(1234);
        m.count_close(DisconnectReason::InvalidPayload);
        m.count_close(DisconnectReason::InvalidPayload);
        assert_eq!(m.closes(DisconnectReason::InvalidPayload), 2);
        let text = m.render().unwrap();
        let samples = [
            ("tickcast_connections_open", "gauge", "3"),
            ("tickcast_connections_total", "counter", "0"),
            ("tickcast_handshakes_refused_total", "counter", "0"),
            ("tickcast_tls_handshakes_failed_total", "counter", "0"),
            ("tickcast_tcp_connections_open", "gauge", "0"),
            ("tickcast_rooms_open", "gauge", "1"),
            ("tickcast_players", "gauge", "2"),
            ("tickcast_ticks_total", "counter", "0"),
            ("tickcast_tick_overruns_total", "counter", "0"),
            ("tickcast_ticks_skipped_total", "counter", "0"),
            ("tickcast_tick_nanoseconds_total", "counter", "0"),
            ("tickcast_snapshots_sent_total", "counter", "0"),
            ("tickcast_keyframes_sent_total", "counter", "0"),
            ("tickcast_snapshots_skipped_total", "counter", "0"),
            ("tickcast_frames_sent_total", "counter", "0"),
            ("tickcast_bytes_sent_total", "counter", "1234"),
            ("tickcast_messages_received_total", "counter", "0"),
            ("tickcast_inputs_received_total", "counter", "0"),
            ("tickcast_inputs_rejected_total", "counter", "0"),
        ];
        for (name, kind, v) in samples {
            assert_eq!(value(&text, name).as_deref(), Some(v), "{name}\n{text}");
            assert!(
                text.contains(&format!("\n# TYPE {name} {kind}\n")),
                "{name} {kind}\n{text}"
            );
        }
        // A family with no series (no room open) is left off the page, help and type
        // lines included.
        assert!(
            !text.contains("tickcast_room_"),
            "no room, no room series\n{text}"
        );
        let room = m.add_room(Arc::from("r"), 1);
        let text = m.render().unwrap();
        for family in [
            "tickcast_connections_closed_total counter",
            "tickcast_room_tick_duration_seconds histogram",
            "tickcast_room_tick_lateness_seconds histogram",
            "tickcast_room_tick_overruns_total counter",
            "tickcast_room_players gauge",
        ] {
            assert!(text.contains(&format!("# TYPE {family}\n")), "{family}");
        }
        // Every close code is on the page from the start.
        for reason in DisconnectReason::ALL {
            let series = format!(
                "tickcast_connections_closed_total{{code=\"{}\"}}",
                reason.code()
            );
            let want = if reason == DisconnectReason::InvalidPayload {
                "2"
            } else {
                "0"
            };
            assert_eq!(value(&text, &series).as_deref(), Some(want), "{series}");
        }
        // One help line per family, ending in one full stop.
        assert!(text.contains("# HELP tickcast_players Players in rooms.\n"));
        assert!(!text.contains(".."));
        m.remove_room("r", &room);
    }

    #[test]
    fn rooms_beyond_the_cap_report_into_other_until_a_place_frees() {
        let m = Metrics::default();
        let a = m.add_room(Arc::from("a"), 2);
        let b = m.add_room(Arc::from("b"), 2);
        let c = m.add_room(Arc::from("c"), 2);
        let d = m.add_room(Arc::from("d"), 2);
        // A client may name a room `_other`; it is counted with the aggregate.
        let named_other = m.add_room(Arc::from(OTHER_ROOMS), 2);
        assert_eq!(
            [&a, &b, &c, &d, &named_other].map(|r| r.is_labelled()),
            [true, true, false, false, false]
        );
        a.players_changed(0, 1);
        b.players_changed(0, 2);
        c.players_changed(0, 3);
        d.players_changed(0, 4);
        d.players_changed(4, 1);
        c.tick_duration.observe(Duration::from_millis(2));
        d.tick_duration.observe(Duration::from_millis(3));
        d.tick_duration.observe(Duration::from_millis(30));
        d.tick_overruns.inc();
        named_other.tick_lateness.observe(Duration::from_micros(1));

        let text = m.render().unwrap();
        for (series, expected) in [
            ("tickcast_room_players{room=\"a\"}", "1"),
            ("tickcast_room_players{room=\"b\"}", "2"),
            ("tickcast_room_players{room=\"_other\"}", "4"),
            (
                "tickcast_room_tick_duration_seconds_count{room=\"_other\"}",
                "3",
            ),
            (
                "tickcast_room_tick_duration_seconds_bucket{room=\"_other\",le=\"0.0025\"}",
                "1",
            ),
            (
                "tickcast_room_tick_duration_seconds_bucket{room=\"_other\",le=\"0.005\"}",
                "2",
            ),
            (
                "tickcast_room_tick_lateness_seconds_count{room=\"_other\"}",
                "1",
            ),
            ("tickcast_room_tick_overruns_total{room=\"_other\"}", "1"),
            ("tickcast_room_tick_duration_seconds_count{room=\"a\"}", "0"),
        ] {
            assert_eq!(value(&text, series).as_deref(), Some(expected), "{series}");
        }
        let three: std::collections::BTreeMap<String, usize> = ["_other", "a", "b"]
            .map(|r| (r.to_owned(), LINES_PER_ROOM))
            .into();
        assert_eq!(rooms_on(&text), three);

        // A labelled room ends: its series go, and its place goes to the next room.
        c.players_changed(3, 0);
        m.remove_room("a", &a);
        m.remove_room("a", &a); // a second removal changes nothing
        let e = m.add_room(Arc::from("e"), 2);
        let f = m.add_room(Arc::from("f"), 2);
        assert_eq!([e.is_labelled(), f.is_labelled()], [true, false]);
        e.players_changed(0, 5);
        f.players_changed(0, 2);
        let text = m.render().unwrap();
        assert_eq!(
            rooms_on(&text).into_keys().collect::<Vec<_>>(),
            ["_other", "b", "e"]
        );
        assert_eq!(
            value(&text, "tickcast_room_players{room=\"e\"}").as_deref(),
            Some("5")
        );
        // c left (0), d has 1, f has 2.
        assert_eq!(
            value(&text, "tickcast_room_players{room=\"_other\"}").as_deref(),
            Some("3")
        );

        // `_other` stays while any room reports into it, and goes with the last one.
        for (name, room) in [("c", &c), ("d", &d), (OTHER_ROOMS, &named_other)] {
            m.remove_room(name, room);
            m.remove_room(name, room);
        }
        let text = m.render().unwrap();
        assert_eq!(
            value(
                &text,
                "tickcast_room_tick_duration_seconds_count{room=\"_other\"}"
            )
            .as_deref(),
            Some("3"),
            "f still reports into _other"
        );
        m.remove_room("f", &f);
        let text = m.render().unwrap();
        assert_eq!(rooms_on(&text).into_keys().collect::<Vec<_>>(), ["b", "e"]);
        // The next room beyond the cap starts `_other` afresh.
        let g = m.add_room(Arc::from("g"), 2);
        assert!(!g.is_labelled());
        let text = m.render().unwrap();
        assert_eq!(
            value(
                &text,
                "tickcast_room_tick_duration_seconds_count{room=\"_other\"}"
            )
            .as_deref(),
            Some("0")
        );
    }

    #[test]
    fn a_room_replacing_one_of_the_same_name_keeps_fresh_series() {
        let m = Metrics::default();
        let old = m.add_room(Arc::from("x"), 1);
        old.tick_overruns.inc();
        old.players_changed(0, 2);
        // The old room has left the registry but not yet ended its reporting; the cap
        // of one is not exceeded by the same name coming back.
        let new = m.add_room(Arc::from("x"), 1);
        assert!(new.is_labelled());
        new.players_changed(0, 1);
        m.remove_room("x", &old);
        old.players_changed(2, 0);
        let text = m.render().unwrap();
        assert_eq!(
            value(&text, "tickcast_room_tick_overruns_total{room=\"x\"}").as_deref(),
            Some("0")
        );
        assert_eq!(
            value(&text, "tickcast_room_players{room=\"x\"}").as_deref(),
            Some("1")
        );
        m.remove_room("x", &new);
        assert!(!m.render().unwrap().contains("room="));
        // And with the place free, a room of another name is labelled.
        assert!(m.add_room(Arc::from("y"), 1).is_labelled());
    }
}
