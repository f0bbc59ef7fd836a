//! What a load run measured: histograms and counters while the bots run, and the
//! [`Report`] made from them at the end.
//!
//! Bots record latencies into [`Histograms`] (HDR, microsecond resolution) and add up
//! their counters in [`Totals`]; [`crate::swarm::run_swarm`] merges them and turns them
//! into a [`Report`]: plain numbers in milliseconds and per-bot-per-second rates, as
//! JSON for machines ([`serde::Serialize`]) and as a short text for people
//! ([`Report::summary`]).
//!
//! Bots scale out as several processes, each writing its own JSON report; [`merge()`]
//! combines them. Percentiles cannot be averaged (the p99 of two runs is not the mean
//! of their p99s), so the JSON carries the histograms themselves, in HdrHistogram's
//! portable V2 + DEFLATE encoding as base64 text, and the merge adds the histograms and
//! reads the percentiles again. Counters are summed and rates recomputed from the
//! summed totals, weighted by each bot's connected time.
//!
//! The parts, by job: `histograms` (the latency histograms, recording into them, and
//! their text form in a report), `totals` (the counters), this file (the [`Report`]
//! itself, its percentiles and its text), and `merge` (combining several processes'
//! reports).

mod histograms;
pub mod html;
mod merge;
pub mod prometheus;
pub mod series;
pub mod server;
pub mod svg;
mod totals;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

pub use histograms::{
    decode_histogram, encode_histogram, new_histogram, record, HistogramCodecError, Histograms,
    SerializedHistograms, HISTOGRAM_MAX_MICROS, HISTOGRAM_SIGFIG, MAX_ENCODED_HISTOGRAM,
};
pub use merge::{merge, MergeError};
pub use series::{merge_series, Interval, Sample, Series, SeriesRecorder};
pub use server::{ServerRecorder, ServerSample, ServerSeries};
pub use totals::Totals;

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
    /// scene would have cost per bot per second: the baseline for `bytes_per_bot_per_s`,
    /// measured by the verifying bots (per second of their connected time).
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
    /// Times bots lost their connection and were resumed on a new one (failed
    /// reconnections are in `errors`: `session expired`, `reconnect gave up: ...`).
    #[serde(default)]
    pub reconnects: u64,
    /// Game events received by all bots (reliable messages from the room's game).
    #[serde(default)]
    pub game_events: u64,
    /// Pings sent by all bots.
    #[serde(default)]
    pub pings_sent: u64,
    /// What naive full snapshots of the same scenes would have weighed, in all: the
    /// verifying bots' measure, scaled to every connected bot's time when only a
    /// sample verified (`verified_naive_bytes` is the measure itself).
    #[serde(default)]
    pub naive_bytes: u64,
    /// The share of bots asked to rebuild the world from every snapshot
    /// (`--verify-fraction`); the others read only snapshot headers. 1 in reports of
    /// older versions, where every bot did; after a merge of runs with different
    /// fractions, `bots_verified / bots_connected`.
    #[serde(default = "one_f64")]
    pub verify_fraction: f64,
    /// Connected bots that rebuilt the world from every snapshot, and so checked that
    /// every delta applied (one that does not is an error, `delta: ...`).
    #[serde(default)]
    pub bots_verified: u64,
    /// Connected time of the verifying bots, in seconds (absent in reports of older
    /// versions: every bot verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_bot_s: Option<f64>,
    /// What naive full snapshots weighed for the verifying bots, measured (absent in
    /// reports of older versions: `naive_bytes`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_naive_bytes: Option<u64>,
    /// Sum over connected bots of their connected time, in seconds: the denominator
    /// of every per-bot rate, kept so that a merge can recompute the rates.
    #[serde(default)]
    pub connected_bot_s: f64,
    /// Rooms the bots were spread over (per process; processes with the same URL and
    /// prefix share their rooms, so a merge keeps the largest).
    #[serde(default = "one")]
    pub rooms: u64,
    /// How the bots steered (`random-walk`, `chase`, ...; several, comma-separated,
    /// in a merge of different runs).
    #[serde(default)]
    pub behaviour: String,
    /// The bad network the bots' links were conditioned with (`--link`, `--latency`,
    /// ...); absent when they ran on the network as it is. What it did shows in the
    /// figures the bots measured: `rtt_ms`, `snapshot_gap_ms`, `reconnects`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<crate::link::LinkSpec>,
    /// Set by a merge of reports whose links were not all the same (then `link` is
    /// absent): the merged figures mix bots on different networks.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub links_differ: bool,
    /// How many `tickcast-bots` processes this report covers (more than 1 after a merge).
    #[serde(default = "one")]
    pub processes: u64,
    /// The latency histograms themselves, so that reports can be merged exactly.
    /// Absent in reports of older versions, which therefore cannot be merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<SerializedHistograms>,
    /// The run second by second (and the server's metrics, when scraped); absent in
    /// reports of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub series: Option<Series>,
    /// The command line that produced the report (several, `; `-separated, after a
    /// merge), shown in the HTML report.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub command: String,
    /// With `--matchmake`: the bots that connected, by the node (`scheme://host:port`)
    /// matchmaking sent them to. Empty (absent) for direct joins.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_node: BTreeMap<String, u64>,
}

fn one() -> u64 {
    1
}

fn one_f64() -> f64 {
    1.0
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
        let verified_secs = if totals.verified_time.is_zero() {
            bot_secs
        } else {
            totals.verified_time.as_secs_f64()
        };
        let naive_per_s = if verified_secs > 0.0 {
            totals.naive_bytes as f64 / verified_secs
        } else {
            0.0
        };
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
            naive_bytes_per_bot_per_s: naive_per_s,
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
            reconnects: totals.reconnects,
            game_events: totals.game_events,
            pings_sent: totals.pings_sent,
            naive_bytes: (naive_per_s * bot_secs).round() as u64,
            verify_fraction: if totals.bots_connected > 0 {
                totals.bots_verified as f64 / totals.bots_connected as f64
            } else {
                1.0
            },
            bots_verified: totals.bots_verified,
            verified_bot_s: Some(verified_secs),
            verified_naive_bytes: Some(totals.naive_bytes),
            connected_bot_s: bot_secs,
            rooms: 1,
            behaviour: String::new(),
            link: None,
            links_differ: false,
            processes: 1,
            histograms: histograms
                .encode()
                .inspect_err(|e| tracing::warn!(error = %e, "report without histograms"))
                .ok(),
            series: None,
            command: String::new(),
            per_node: BTreeMap::new(),
        }
    }

    /// The counters of this report, as [`Report::new`] was given them.
    ///
    /// # Errors
    /// [`MergeError::BadCloseCode`] or [`MergeError::BadConnectedTime`] for a report
    /// whose fields were not written by this tool (`index` names it in the error).
    pub fn totals(&self, index: usize) -> Result<Totals, MergeError> {
        let connected_time = Duration::try_from_secs_f64(self.connected_bot_s).map_err(|_| {
            MergeError::BadConnectedTime {
                index,
                value: self.connected_bot_s,
            }
        })?;
        let close_codes = self
            .close_codes
            .iter()
            .map(|(code, n)| {
                code.parse::<u16>()
                    .map(|code| (code, *n))
                    .map_err(|_| MergeError::BadCloseCode {
                        index,
                        code: code.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Totals {
            bots_connected: self.bots_connected,
            bots_failed: self.bots_failed,
            bots_disconnected: self.bots_disconnected,
            connected_time,
            snapshots_received: self.snapshots_received,
            snapshots_missed: self.snapshots_missed,
            bytes_received: self.bytes_received,
            // Older reports: every bot verified, and measured the naive size itself.
            naive_bytes: self.verified_naive_bytes.unwrap_or(self.naive_bytes),
            bots_verified: match self.verified_bot_s {
                Some(_) => self.bots_verified,
                None => self.bots_connected,
            },
            verified_time: match self.verified_bot_s {
                Some(s) => Duration::try_from_secs_f64(s)
                    .map_err(|_| MergeError::BadConnectedTime { index, value: s })?,
                None => connected_time,
            },
            inputs_sent: self.inputs_sent,
            pings_sent: self.pings_sent,
            reconnects: self.reconnects,
            game_events: self.game_events,
            close_codes,
            errors: self.errors.clone(),
        })
    }

    /// A few lines for a person: what connected, what came back, how fast, what failed.
    pub fn summary(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "tickcast-bots against {}", self.url)?;
        if self.processes > 1 {
            writeln!(f, "  merged      {} processes", self.processes)?;
        }
        writeln!(
            f,
            "  run         {} room{}, behaviour {}, {} reconnects, {} game events",
            self.rooms,
            if self.rooms == 1 { "" } else { "s" },
            if self.behaviour.is_empty() {
                "?"
            } else {
                &self.behaviour
            },
            self.reconnects,
            self.game_events
        )?;
        writeln!(
            f,
            "  verified    {} of {} connected bots rebuilt the world from every snapshot (verify fraction {})",
            self.bots_verified, self.bots_connected, self.verify_fraction
        )?;
        if let Some(link) = &self.link {
            writeln!(f, "  link        {link}, each direction")?;
        } else if self.links_differ {
            writeln!(f, "  link        differs between the merged reports")?;
        }
        writeln!(
            f,
            "  bots        {} requested, {} connected, {} failed, {} disconnected early; {:.1} s",
            self.bots_requested,
            self.bots_connected,
            self.bots_failed,
            self.bots_disconnected,
            self.duration_s
        )?;
        if !self.per_node.is_empty() {
            let nodes: Vec<String> = self
                .per_node
                .iter()
                .map(|(node, bots)| format!("{node} {bots}"))
                .collect();
            writeln!(f, "  per node    {}", nodes.join(", "))?;
        }
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

    /// `n` milliseconds (the merge tests use it too).
    pub(super) fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A small report of one process, with known counters (the merge tests use it too).
    pub(super) fn sample() -> Report {
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
        for key in [
            "reconnects",
            "connected_bot_s",
            "rooms",
            "behaviour",
            "processes",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        for key in ["rtt", "snapshot_gap", "input_ack", "connect"] {
            assert!(v["histograms"][key].is_string(), "histograms.{key}");
        }
        assert_eq!(v["close_codes"]["1000"], 2);
        assert_eq!(v["errors"]["connect: http 409"], 2);
        assert_eq!(v["bots_requested"], 3);
        // And it reads back.
        let back: Report = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, sample());
    }

    #[test]
    fn the_naive_rate_comes_from_the_verifying_bots() {
        // 20 bots for 10 s each; 2 of them verified and measured 4,000 naive bytes.
        let totals = Totals {
            bots_connected: 20,
            connected_time: Duration::from_secs(200),
            bots_verified: 2,
            verified_time: Duration::from_secs(20),
            naive_bytes: 4000,
            ..Totals::default()
        };
        let r = Report::new("ws://x/ws", 20, ms(10_000), &totals, &Histograms::new());
        assert_eq!(r.naive_bytes_per_bot_per_s, 200.0);
        assert_eq!(r.naive_bytes, 40_000, "scaled to every bot's time");
        assert_eq!((r.bots_verified, r.verify_fraction), (2, 0.1));
        assert_eq!(r.totals(0).expect("totals"), totals);
        assert!(r.summary().contains("verified    2 of 20 connected bots"));
        // A report written before sampling: every connected bot verified.
        let mut old = serde_json::to_value(sample()).expect("serialize");
        for key in [
            "verify_fraction",
            "bots_verified",
            "verified_bot_s",
            "verified_naive_bytes",
        ] {
            old.as_object_mut().expect("object").remove(key);
        }
        let old: Report = serde_json::from_value(old).expect("an older report reads");
        assert_eq!(old.verify_fraction, 1.0);
        let t = old.totals(0).expect("totals");
        assert_eq!(
            (t.bots_verified, t.verified_time),
            (old.bots_connected, t.connected_time)
        );
    }

    #[test]
    fn summary_mentions_the_essentials() {
        let s = sample().summary();
        assert!(s.contains("3 requested, 2 connected, 1 failed"), "{s}");
        assert!(s.contains("1000 x2"), "{s}");
        assert!(s.contains("connect: http 409 x2"), "{s}");
        assert!(s.contains("rtt"), "{s}");
        assert!(s.contains("0 reconnects"), "{s}");
    }
}
