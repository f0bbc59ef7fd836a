//! What a load run measured: histograms and counters while the bots run, and the
//! [`Report`] made from them at the end.
//!
//! Bots record latencies into [`Histograms`] (HDR, microsecond resolution) and add up
//! their counters in [`Totals`]; [`crate::swarm::run_swarm`] merges them and turns them
//! into a [`Report`]: plain numbers in milliseconds and per-bot-per-second rates, as
//! JSON for machines ([`serde::Serialize`]) and as a short text for people
//! ([`Report::summary`]).
//!
//! Bots scale out as several processes, each writing its own JSON report; [`merge`]
//! combines them. Percentiles cannot be averaged (the p99 of two runs is not the mean
//! of their p99s), so the JSON carries the histograms themselves, in HdrHistogram's
//! portable V2 + DEFLATE encoding as base64 text, and the merge adds the histograms and
//! reads the percentiles again. Counters are summed and rates recomputed from the
//! summed totals, weighted by each bot's connected time.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use hdrhistogram::serialization::{
    DeserializeError, Deserializer, Serializer as _, V2DeflateSerializeError, V2DeflateSerializer,
};
use hdrhistogram::{AdditionError, Histogram};
use serde::{Deserialize, Serialize};

/// Largest latency a histogram tells apart; longer ones are recorded as this. A
/// minute is far beyond any latency worth resolving, and the bound keeps each
/// histogram at about 140 KB.
pub const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;

/// Significant decimal digits kept by the histograms (0.1% relative error).
pub const HISTOGRAM_SIGFIG: u8 = 3;

/// Longest base64 text accepted for one serialized histogram. A histogram of this
/// crate's range compresses to a few KiB; the bound keeps a corrupt or hostile report
/// file from making the merge decode megabytes.
pub const MAX_ENCODED_HISTOGRAM: usize = 1 << 20;

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

    /// Serializes every histogram for the JSON report.
    ///
    /// # Errors
    /// [`HistogramCodecError::Serialize`] if the encoder fails (it writes to memory,
    /// so only on a bug or an absurd histogram).
    pub fn encode(&self) -> Result<SerializedHistograms, HistogramCodecError> {
        Ok(SerializedHistograms {
            rtt: encode_histogram(&self.rtt)?,
            snapshot_gap: encode_histogram(&self.snapshot_gap)?,
            input_ack: encode_histogram(&self.input_ack)?,
            connect: encode_histogram(&self.connect)?,
        })
    }
}

/// The histograms of a [`Report`], each as base64 of HdrHistogram's V2 + DEFLATE
/// encoding: the format every HdrHistogram implementation (Java, Go, Rust, ...) reads,
/// so a report's raw distributions can be loaded by other tools as well.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerializedHistograms {
    /// [`Histograms::rtt`].
    pub rtt: String,
    /// [`Histograms::snapshot_gap`].
    pub snapshot_gap: String,
    /// [`Histograms::input_ack`].
    pub input_ack: String,
    /// [`Histograms::connect`].
    pub connect: String,
}

impl SerializedHistograms {
    /// Decodes every histogram into the bounds of [`Histograms::new`].
    ///
    /// # Errors
    /// [`HistogramCodecError`] naming what was wrong; the first failing histogram's
    /// name is returned alongside.
    pub fn decode(&self) -> Result<Histograms, (&'static str, HistogramCodecError)> {
        let mut out = Histograms::new();
        for (name, into, text) in [
            ("rtt", &mut out.rtt, &self.rtt),
            ("snapshot_gap", &mut out.snapshot_gap, &self.snapshot_gap),
            ("input_ack", &mut out.input_ack, &self.input_ack),
            ("connect", &mut out.connect, &self.connect),
        ] {
            let decoded = decode_histogram(text).map_err(|e| (name, e))?;
            // Adding into our own bounds, rather than keeping the decoded histogram,
            // means every merged histogram has the same layout whatever wrote it.
            into.add(&decoded)
                .map_err(|e| (name, HistogramCodecError::Range(e)))?;
        }
        Ok(out)
    }
}

/// Why a histogram could not be written to or read from a report.
#[derive(Debug, thiserror::Error)]
pub enum HistogramCodecError {
    /// The V2 + DEFLATE encoder failed.
    #[error("serialize: {0}")]
    Serialize(#[from] V2DeflateSerializeError),
    /// The text is longer than [`MAX_ENCODED_HISTOGRAM`].
    #[error("{len} bytes of base64 exceed the limit of {max}")]
    TooLong {
        /// Length of the text.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not base64.
    #[error("base64: {0}")]
    Base64(#[from] base64::DecodeError),
    /// The bytes are not an HdrHistogram V2 (optionally compressed) encoding.
    #[error("deserialize: {0}")]
    Deserialize(#[from] DeserializeError),
    /// The histogram holds values beyond [`HISTOGRAM_MAX_MICROS`].
    #[error("values out of range: {0:?}")]
    Range(AdditionError),
}

/// One histogram as base64 of its V2 + DEFLATE encoding.
///
/// # Errors
/// [`HistogramCodecError::Serialize`] if the encoder fails.
pub fn encode_histogram(h: &Histogram<u64>) -> Result<String, HistogramCodecError> {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(h, &mut bytes)?;
    Ok(BASE64.encode(bytes))
}

/// Reads back what [`encode_histogram`] wrote (uncompressed V2 is accepted too).
///
/// # Errors
/// [`HistogramCodecError`]: too long, not base64, or not a histogram.
pub fn decode_histogram(text: &str) -> Result<Histogram<u64>, HistogramCodecError> {
    if text.len() > MAX_ENCODED_HISTOGRAM {
        return Err(HistogramCodecError::TooLong {
            len: text.len(),
            max: MAX_ENCODED_HISTOGRAM,
        });
    }
    let bytes = BASE64.decode(text.trim())?;
    Ok(Deserializer::new().deserialize(&mut bytes.as_slice())?)
}

/// Records `d` in microseconds, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, d: Duration) {
    let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    histogram.saturating_record(micros.max(1));
}

/// An empty latency histogram: microseconds, 1 µs to [`HISTOGRAM_MAX_MICROS`],
/// [`HISTOGRAM_SIGFIG`] digits. Every histogram of a run has these bounds, which is
/// what makes adding them infallible.
pub fn new_histogram() -> Histogram<u64> {
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
    /// Times a bot lost its connection and the server resumed its player on a new one.
    pub reconnects: u64,
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
        self.reconnects += other.reconnects;
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
    /// Times bots lost their connection and were resumed on a new one (failed
    /// reconnections are in `errors`: `session expired`, `reconnect gave up: ...`).
    #[serde(default)]
    pub reconnects: u64,
    /// Pings sent by all bots.
    #[serde(default)]
    pub pings_sent: u64,
    /// What naive full snapshots of the same scenes would have weighed, in all.
    #[serde(default)]
    pub naive_bytes: u64,
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
    /// How many `tickcast-bots` processes this report covers (more than 1 after a merge).
    #[serde(default = "one")]
    pub processes: u64,
    /// The latency histograms themselves, so that reports can be merged exactly.
    /// Absent in reports of older versions, which therefore cannot be merged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub histograms: Option<SerializedHistograms>,
}

fn one() -> u64 {
    1
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
            reconnects: totals.reconnects,
            pings_sent: totals.pings_sent,
            naive_bytes: totals.naive_bytes,
            connected_bot_s: bot_secs,
            rooms: 1,
            behaviour: String::new(),
            processes: 1,
            histograms: histograms
                .encode()
                .inspect_err(|e| tracing::warn!(error = %e, "report without histograms"))
                .ok(),
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
            naive_bytes: self.naive_bytes,
            inputs_sent: self.inputs_sent,
            pings_sent: self.pings_sent,
            reconnects: self.reconnects,
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
            "  run         {} room{}, behaviour {}, {} reconnects",
            self.rooms,
            if self.rooms == 1 { "" } else { "s" },
            if self.behaviour.is_empty() {
                "?"
            } else {
                &self.behaviour
            },
            self.reconnects
        )?;
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

/// Why reports could not be merged. `index` is the position of the offending report
/// in the list given to [`merge`].
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The list was empty.
    #[error("no reports to merge")]
    Empty,
    /// A report without histograms (from an older tickcast-bots): its percentiles
    /// cannot be combined with anything.
    #[error("report {index} has no histograms (written by an older tickcast-bots?)")]
    NoHistograms {
        /// Which report.
        index: usize,
    },
    /// A histogram of a report could not be decoded.
    #[error("report {index}: histogram {name}: {source}")]
    Histogram {
        /// Which report.
        index: usize,
        /// Which histogram (`rtt`, `connect`, ...).
        name: &'static str,
        /// What was wrong with it.
        source: HistogramCodecError,
    },
    /// A close code key that is not a number.
    #[error("report {index}: close code {code:?} is not a number")]
    BadCloseCode {
        /// Which report.
        index: usize,
        /// The key as written.
        code: String,
    },
    /// A `connected_bot_s` that is negative, not finite or too large.
    #[error("report {index}: connected_bot_s {value} is not a duration")]
    BadConnectedTime {
        /// Which report.
        index: usize,
        /// The value as written.
        value: f64,
    },
}

impl MergeError {
    /// Position of the report at fault in the list given to [`merge`], if one is.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::Empty => None,
            Self::NoHistograms { index }
            | Self::Histogram { index, .. }
            | Self::BadCloseCode { index, .. }
            | Self::BadConnectedTime { index, .. } => Some(*index),
        }
    }
}

/// Combines the reports of several `tickcast-bots` processes into one, as if one
/// process had run all their bots: counters and bots are summed, histograms are added
/// and their percentiles read again, rates are recomputed from the summed totals
/// (per second of summed connected bot time), and the duration is the longest run's
/// (the processes are assumed to run side by side).
///
/// # Errors
/// [`MergeError`] for an empty list, a report without histograms, or a field this
/// tool would not have written.
pub fn merge(reports: &[Report]) -> Result<Report, MergeError> {
    if reports.is_empty() {
        return Err(MergeError::Empty);
    }
    let mut totals = Totals::default();
    let mut histograms = Histograms::new();
    let mut bots_requested = 0;
    let mut duration_s = 0.0f64;
    let mut rooms = 1;
    let mut processes = 0;
    let mut urls: Vec<&str> = Vec::new();
    let mut behaviours: Vec<&str> = Vec::new();
    for (index, report) in reports.iter().enumerate() {
        let encoded = report
            .histograms
            .as_ref()
            .ok_or(MergeError::NoHistograms { index })?;
        let decoded = encoded
            .decode()
            .map_err(|(name, source)| MergeError::Histogram {
                index,
                name,
                source,
            })?;
        histograms.merge(&decoded);
        totals.merge(&report.totals(index)?);
        bots_requested += report.bots_requested;
        if report.duration_s.is_finite() {
            duration_s = duration_s.max(report.duration_s);
        }
        rooms = rooms.max(report.rooms);
        processes += report.processes.max(1);
        push_distinct(&mut urls, &report.url);
        push_distinct(&mut behaviours, &report.behaviour);
    }
    let mut merged = Report::new(
        &urls.join(", "),
        bots_requested,
        Duration::try_from_secs_f64(duration_s).unwrap_or_default(),
        &totals,
        &histograms,
    );
    merged.rooms = rooms;
    merged.behaviour = behaviours.join(",");
    merged.processes = processes;
    Ok(merged)
}

/// Appends `item` unless it is empty or already listed, keeping first-seen order.
fn push_distinct<'a>(list: &mut Vec<&'a str>, item: &'a str) {
    if !item.is_empty() && !list.contains(&item) {
        list.push(item);
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
    fn histograms_survive_serialization() {
        let mut h = Histograms::new();
        for i in 1..=1000 {
            record(&mut h.rtt, Duration::from_micros(i * 37));
            record(&mut h.connect, ms(i % 50 + 1));
        }
        record(&mut h.input_ack, Duration::from_secs(3600)); // clamped to the max
        let encoded = h.encode().expect("encode");
        // Compressed: far smaller than the ~140 KB of counts in memory.
        assert!(encoded.rtt.len() < 8 * 1024, "{}", encoded.rtt.len());
        let back = encoded.decode().expect("decode");
        for (a, b) in [
            (&h.rtt, &back.rtt),
            (&h.snapshot_gap, &back.snapshot_gap),
            (&h.input_ack, &back.input_ack),
            (&h.connect, &back.connect),
        ] {
            assert_eq!(a, b);
            assert_eq!(Percentiles::from_micros(a), Percentiles::from_micros(b));
        }
        // Through JSON too, as a report carries them.
        let json = serde_json::to_string(&encoded).expect("json");
        let again: SerializedHistograms = serde_json::from_str(&json).expect("json back");
        assert_eq!(again, encoded);
    }

    #[test]
    fn corrupt_histograms_are_typed_errors() {
        assert!(matches!(
            decode_histogram("not base64!"),
            Err(HistogramCodecError::Base64(_))
        ));
        assert!(matches!(
            decode_histogram(&BASE64.encode(b"not a histogram")),
            Err(HistogramCodecError::Deserialize(_))
        ));
        assert!(matches!(
            decode_histogram(&"A".repeat(MAX_ENCODED_HISTOGRAM + 4)),
            Err(HistogramCodecError::TooLong { .. })
        ));
        // A histogram with a wider range than ours, holding a value beyond it.
        let mut wide =
            Histogram::<u64>::new_with_bounds(1, HISTOGRAM_MAX_MICROS * 10, 3).expect("bounds");
        wide.record(HISTOGRAM_MAX_MICROS * 5).expect("record");
        let mut encoded = Histograms::new().encode().expect("encode");
        encoded.connect = encode_histogram(&wide).expect("encode");
        assert!(matches!(
            encoded.decode(),
            Err(("connect", HistogramCodecError::Range(_)))
        ));
    }

    /// A report of one process whose bots measured `samples` (ms) for every latency.
    fn process_report(
        samples: std::ops::RangeInclusive<u64>,
        secs: u64,
        code: u16,
    ) -> (Totals, Histograms) {
        let mut h = Histograms::new();
        for i in samples.clone() {
            record(&mut h.rtt, ms(i));
            record(&mut h.snapshot_gap, ms(i % 40 + 1));
            record(&mut h.input_ack, ms(i * 3));
            record(&mut h.connect, ms(i * 7));
        }
        let n = samples.count() as u64;
        let mut totals = Totals {
            bots_connected: n,
            bots_failed: 1,
            connected_time: Duration::from_secs(secs),
            snapshots_received: 30 * secs,
            snapshots_missed: n,
            bytes_received: 1000 * secs,
            naive_bytes: 4000 * secs,
            inputs_sent: 30 * secs,
            pings_sent: secs,
            ..Totals::default()
        };
        totals.close_code(code);
        totals.error("connect: http 409");
        (totals, h)
    }

    #[test]
    fn merging_reports_equals_one_report_over_all_samples() {
        let url = "ws://127.0.0.1:1/ws";
        let (ta, ha) = process_report(1..=50, 20, 1000);
        let (tb, hb) = process_report(51..=300, 60, 4003);
        let a = Report::new(url, 60, Duration::from_secs(30), &ta, &ha);
        let b = Report::new(url, 260, Duration::from_secs(31), &tb, &hb);
        // Through JSON, as files between processes.
        let read = |r: &Report| -> Report {
            serde_json::from_str(&serde_json::to_string(r).expect("write")).expect("read")
        };
        let merged = merge(&[read(&a), read(&b)]).expect("merge");

        let mut all_totals = ta.clone();
        all_totals.merge(&tb);
        let mut all_h = ha.clone();
        all_h.merge(&hb);
        let mut one = Report::new(url, 320, Duration::from_secs(31), &all_totals, &all_h);
        assert_eq!(merged.processes, 2);
        one.processes = 2;
        assert_eq!(merged, one);

        // And the figures are those of all samples, not an average of the two p99s.
        assert_eq!(merged.rtt_ms.count, 300);
        assert!(
            (merged.rtt_ms.p99 - 297.0).abs() < 0.3,
            "{:?}",
            merged.rtt_ms
        );
        let averaged = (a.rtt_ms.p99 + b.rtt_ms.p99) / 2.0;
        assert!((merged.rtt_ms.p99 - averaged).abs() > 50.0);
        // Rates from summed totals: 30 snapshots per bot-second on both sides.
        assert_eq!(merged.snapshots_per_bot_per_s, 30.0);
        assert_eq!(merged.bytes_per_bot_per_s, 1000.0);
        assert_eq!(merged.bots_failed, 2);
        assert_eq!(merged.errors.get("connect: http 409"), Some(&2));
        assert_eq!(merged.close_codes.get("1000"), Some(&1));
        assert_eq!(merged.close_codes.get("4003"), Some(&1));
        assert_eq!(merged.snapshots_missed, 300);
        assert_eq!(merged.duration_s, 31.0);
        assert!(merged.summary().contains("merged      2 processes"));
    }

    #[test]
    fn merge_refuses_what_it_cannot_merge() {
        assert!(matches!(merge(&[]), Err(MergeError::Empty)));
        // A report of an older version: no histograms, none of the new fields.
        let mut v = serde_json::to_value(sample()).expect("json");
        for key in [
            "histograms",
            "reconnects",
            "connected_bot_s",
            "rooms",
            "processes",
        ] {
            v.as_object_mut().expect("object").remove(key);
        }
        let old: Report = serde_json::from_value(v).expect("old reports still parse");
        assert_eq!((old.rooms, old.processes, old.reconnects), (1, 1, 0));
        assert!(matches!(
            merge(&[sample(), old]),
            Err(MergeError::NoHistograms { index: 1 })
        ));
        let mut bad = sample();
        bad.close_codes.insert("bye".into(), 1);
        assert!(matches!(
            merge(&[bad]),
            Err(MergeError::BadCloseCode { index: 0, .. })
        ));
        let mut bad = sample();
        bad.connected_bot_s = -1.0;
        assert!(matches!(
            merge(&[bad]),
            Err(MergeError::BadConnectedTime { index: 0, .. })
        ));
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
