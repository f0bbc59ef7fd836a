//! What a load run measured: histograms and counters while the bots run, and the
//! [`Report`] made from them at the end.
//!
//! Bots record latencies into [`Histograms`] (HDR, microsecond resolution) and add up
//! their counters in [`Totals`]; [`crate::swarm::run_swarm`] merges them and turns them
//! into a [`Report`]: plain numbers in milliseconds and per-bot-per-second rates, as
//! JSON for machines ([`serde::Serialize`]) and as a short text for people
//! ([`Report::summary`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency a histogram tells apart; longer ones are recorded as this. A
/// minute is far beyond any latency worth resolving, and the bound keeps each
/// histogram at about 140 KB.
pub const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;

/// Significant decimal digits kept by the histograms (0.1% relative error).
pub const HISTOGRAM_SIGFIG: u8 = 3;

/// The latency distributions of a run, in microseconds.
#[derive(Debug, Clone)]
pub struct Histograms {
    /// Ping to pong.
    pub rtt: Histogram<u64>,
    /// Time between consecutive snapshots of one bot (jitter shows as spread around
    /// `1 / tick_rate`).
    pub snapshot_gap: Histogram<u64>,
    /// Input sent to first snapshot acknowledging it.
    pub input_ack: Histogram<u64>,
    /// TCP connect to `Welcome`.
    pub connect: Histogram<u64>,
}

impl Default for Histograms {
    fn default() -> Self {
        Self::new()
    }
}

impl Histograms {
    /// Empty histograms, 1 µs to [`HISTOGRAM_MAX_MICROS`].
    pub fn new() -> Self {
        Self {
            rtt: new_histogram(),
            snapshot_gap: new_histogram(),
            input_ack: new_histogram(),
            connect: new_histogram(),
        }
    }

    /// Adds every sample of `other` into `self`.
    pub fn merge(&mut self, other: &Histograms) {
        for (into, from) in [
            (&mut self.rtt, &other.rtt),
            (&mut self.snapshot_gap, &other.snapshot_gap),
            (&mut self.input_ack, &other.input_ack),
            (&mut self.connect, &other.connect),
        ] {
            // Cannot fail: both sides were made by `new_histogram` with the same bounds.
            if let Err(e) = into.add(from) {
                tracing::warn!(error = %e, "histogram merge failed");
            }
        }
    }
}

/// Records `d` in microseconds, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

fn new_histogram() -> Histogram<u64> {
    // Only fails for invalid bounds (low < 1, high < 2 * low, sigfig > 5): these
    // constants are valid, and a test below builds them.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, HISTOGRAM_SIGFIG)
        .expect("constant histogram bounds are valid")
}

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
    /// What the snapshots would have weighed as naive full snapshots.
    pub naive_bytes: u64,
    /// Inputs sent.
    pub inputs_sent: u64,
    /// Pings sent.
    pub pings_sent: u64,
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
        self.inputs_sent += other.inputs_sent;
        self.pings_sent += other.pings_sent;
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

/// p50, p99 and max of one latency, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Percentiles {
    /// Number of samples (all figures are 0 when there are none).
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Percentiles {
    /// Reads the percentiles of a microsecond histogram.
    pub fn from_micros(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50: ms(h.value_at_quantile(0.50)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }
}

/// The result of a load run, as written by `tickcast-bots --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Server URL the bots joined.
    pub url: String,
    /// Bots asked for.
    pub bots_requested: u64,
    /// Bots that were welcomed.
    pub bots_connected: u64,
    /// Bots whose connect failed (see `errors` for why).
    pub bots_failed: u64,
    /// Connected bots that ended before the run did (closed by the server, or lost).
    pub bots_disconnected: u64,
    /// Wall-clock length of the run, ramp included.
    pub duration_s: f64,
    /// Snapshots received by all bots.
    pub snapshots_received: u64,
    /// Snapshots per connected bot per second of its connected time; the tick rate
    /// when every snapshot arrives.
    pub snapshots_per_bot_per_s: f64,
    /// Ticks that bots never got a snapshot for (the server skipped them).
    pub snapshots_missed: u64,
    /// WebSocket payload bytes received by all bots.
    pub bytes_received: u64,
    /// Payload bytes per connected bot per second of its connected time.
    pub bytes_per_bot_per_s: f64,
    /// What naive full snapshots (every entity the bot holds, `f32` fields) of the same
    /// scene would have cost per bot per second: the baseline for `bytes_per_bot_per_s`.
    #[serde(default)]
    pub naive_bytes_per_bot_per_s: f64,
    /// Inputs sent by all bots.
    pub inputs_sent: u64,
    /// Ping round-trip time.
    pub rtt_ms: Percentiles,
    /// Time between consecutive snapshots of a bot.
    pub snapshot_gap_ms: Percentiles,
    /// Input sent to first snapshot acknowledging it.
    pub input_ack_ms: Percentiles,
    /// TCP connect to `Welcome`.
    pub connect_ms: Percentiles,
    /// Close codes received from the server, by code (as a string, for JSON keys).
    pub close_codes: BTreeMap<String, u64>,
    /// Failures by kind, e.g. `"connect: http 409"`, `"io: connection reset"`.
    pub errors: BTreeMap<String, u64>,
}

impl Report {
    /// Builds the report of a run of `bots_requested` bots that took `elapsed`.
    pub fn new(
        url: &str,
        bots_requested: u64,
        elapsed: Duration,
        totals: &Totals,
        histograms: &Histograms,
    ) -> Self {
        let bot_secs = totals.connected_time.as_secs_f64();
        let per_bot_s = |n: u64| {
            if bot_secs > 0.0 {
                n as f64 / bot_secs
            } else {
                0.0
            }
        };
        Self {
            url: url.to_owned(),
            bots_requested,
            bots_connected: totals.bots_connected,
            bots_failed: totals.bots_failed,
            bots_disconnected: totals.bots_disconnected,
            duration_s: elapsed.as_secs_f64(),
            snapshots_received: totals.snapshots_received,
            snapshots_per_bot_per_s: per_bot_s(totals.snapshots_received),
            snapshots_missed: totals.snapshots_missed,
            bytes_received: totals.bytes_received,
            bytes_per_bot_per_s: per_bot_s(totals.bytes_received),
            naive_bytes_per_bot_per_s: per_bot_s(totals.naive_bytes),
            inputs_sent: totals.inputs_sent,
            rtt_ms: Percentiles::from_micros(&histograms.rtt),
            snapshot_gap_ms: Percentiles::from_micros(&histograms.snapshot_gap),
            input_ack_ms: Percentiles::from_micros(&histograms.input_ack),
            connect_ms: Percentiles::from_micros(&histograms.connect),
            close_codes: totals
                .close_codes
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            errors: totals.errors.clone(),
        }
    }

    /// A few lines for a person: what connected, what came back, how fast, what failed.
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tickcast-bots against {}", self.url)?;
        writeln!(
            f,
            "  bots        {} requested, {} connected, {} failed, {} disconnected early; {:.1} s",
            self.bots_requested,
            self.bots_connected,
            self.bots_failed,
            self.bots_disconnected,
            self.duration_s
        )?;
        writeln!(
            f,
            "  snapshots   {} received, {:.1} per bot per s, {} missed",
            self.snapshots_received, self.snapshots_per_bot_per_s, self.snapshots_missed
        )?;
        writeln!(
            f,
            "  bandwidth   {:.1} KiB per bot per s ({} bytes in all); naive full snapshots {:.1} KiB, {:.1}x more",
            self.bytes_per_bot_per_s / 1024.0,
            self.bytes_received,
            self.naive_bytes_per_bot_per_s / 1024.0,
            if self.bytes_per_bot_per_s > 0.0 { self.naive_bytes_per_bot_per_s / self.bytes_per_bot_per_s } else { 0.0 },
        )?;
        writeln!(f, "  latency ms        p50      p99      max    count")?;
        for (name, p) in [
            ("rtt", &self.rtt_ms),
            ("snapshot gap", &self.snapshot_gap_ms),
            ("input ack", &self.input_ack_ms),
            ("connect", &self.connect_ms),
        ] {
            writeln!(
                f,
                "    {name:<13} {:>8.2} {:>8.2} {:>8.2} {:>8}",
                p.p50, p.p99, p.max, p.count
            )?;
        }
        write!(f, "  close codes")?;
        write_counts(f, &self.close_codes)?;
        write!(f, "  errors     ")?;
        write_counts(f, &self.errors)
    }
}

fn write_counts(f: &mut fmt::Formatter<'_>, counts: &BTreeMap<String, u64>) -> fmt::Result {
    if counts.is_empty() {
        return writeln!(f, " none");
    }
    for (key, n) in counts {
        write!(f, " {key} x{n};")?;
    }
    writeln!(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn merged_histograms_give_percentiles_of_all_samples() {
        let mut a = Histograms::new();
        let mut b = Histograms::new();
        for i in 1..=50 {
            record(&mut a.rtt, ms(i));
        }
        for i in 51..=100 {
            record(&mut b.rtt, ms(i));
        }
        a.merge(&b);
        let p = Percentiles::from_micros(&a.rtt);
        assert_eq!(p.count, 100);
        // 3 significant digits: within 0.1%.
        assert!((p.p50 - 50.0).abs() < 0.1, "{p:?}");
        assert!((p.p99 - 99.0).abs() < 0.1, "{p:?}");
        assert!((p.max - 100.0).abs() < 0.1, "{p:?}");
    }

    #[test]
    fn out_of_range_samples_are_clamped() {
        let mut h = Histograms::new();
        record(&mut h.connect, Duration::ZERO);
        record(&mut h.connect, Duration::from_secs(3600));
        let p = Percentiles::from_micros(&h.connect);
        assert_eq!(p.count, 2);
        assert!(p.max <= 60_100.0 && p.max >= 59_900.0, "{p:?}");
        assert_eq!(Percentiles::from_micros(&h.rtt), Percentiles::default());
    }

    fn sample() -> Report {
        let mut totals = Totals {
            bots_connected: 2,
            bots_failed: 1,
            connected_time: Duration::from_secs(20),
            snapshots_received: 600,
            bytes_received: 20_000,
            ..Totals::default()
        };
        totals.close_code(1000);
        totals.close_code(1000);
        totals.error("connect: http 409");
        let mut other = Totals::default();
        other.close_code(4003);
        other.error("connect: http 409");
        totals.merge(&other);
        let mut h = Histograms::new();
        record(&mut h.rtt, ms(2));
        Report::new(
            "ws://127.0.0.1:1/ws",
            3,
            Duration::from_secs(10),
            &totals,
            &h,
        )
    }

    #[test]
    fn rates_are_per_connected_bot_second() {
        let r = sample();
        assert_eq!(r.snapshots_per_bot_per_s, 30.0);
        assert_eq!(r.bytes_per_bot_per_s, 1000.0);
        assert_eq!(r.close_codes.get("1000"), Some(&2));
        assert_eq!(r.close_codes.get("4003"), Some(&1));
        assert_eq!(r.errors.get("connect: http 409"), Some(&2));
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(sample()).expect("serialize");
        for key in [
            "bots_requested",
            "bots_connected",
            "bots_failed",
            "duration_s",
            "snapshots_received",
            "snapshots_per_bot_per_s",
            "bytes_per_bot_per_s",
            "snapshots_missed",
            "close_codes",
            "errors",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["rtt_ms", "snapshot_gap_ms", "input_ack_ms", "connect_ms"] {
            for field in ["p50", "p99", "max"] {
                assert!(v[key][field].is_f64(), "{key}.{field} is not a float");
            }
        }
        assert_eq!(v["close_codes"]["1000"], 2);
        assert_eq!(v["errors"]["connect: http 409"], 2);
        assert_eq!(v["bots_requested"], 3);
        // And it reads back.
        let back: Report = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, sample());
    }

    #[test]
    fn summary_mentions_the_essentials() {
        let s = sample().summary();
        assert!(s.contains("3 requested, 2 connected, 1 failed"), "{s}");
        assert!(s.contains("1000 x2"), "{s}");
        assert!(s.contains("connect: http 409 x2"), "{s}");
        assert!(s.contains("rtt"), "{s}");
    }
}
