//! The run as a time series: one [`Sample`] per second of what the bots saw, so that a
//! person can see *when* something went wrong (the ramp, a stall, a burst of closes),
//! which the whole-run figures of a [`super::Report`] average away.
//!
//! While bots run, each shard of the swarm adds into an [`Interval`]: interval
//! histograms of snapshot gaps and round-trip times, and plain counters. Once a
//! second the swarm empties every shard's interval into a [`SeriesRecorder`], which
//! reads the percentiles of that second alone (never by differencing cumulative
//! histograms) and appends a sample. The per-snapshot cost is one histogram record and
//! two additions under the lock the bot takes anyway.
//!
//! A sample carries raw sums (snapshots, bytes, bot-seconds) and its two interval
//! histograms in the portable encoding, so that [`merge_series`] can combine the
//! series of several processes exactly, as the whole-run merge does.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::histograms::{decode_histogram, encode_histogram, new_histogram, HistogramCodecError};
use super::server::ServerSeries;
use super::Percentiles;

/// What the bots of one shard measured since the last sample.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Time between consecutive snapshots of a bot, µs.
    pub gap: Histogram<u64>,
    /// Ping round-trip times, µs.
    pub rtt: Histogram<u64>,
    /// Snapshots received.
    pub snapshots: u64,
    /// WebSocket payload bytes received.
    pub bytes_down: u64,
    /// WebSocket payload bytes sent (inputs and pings).
    pub bytes_up: u64,
    /// Failures counted (connect failures, lost connections, ...).
    pub errors: u64,
    /// Close codes received from the server.
    pub closes: BTreeMap<u16, u64>,
}

impl Default for Interval {
    fn default() -> Self {
        Self::new()
    }
}

impl Interval {
    /// An empty interval.
    pub fn new() -> Self {
        Self {
            gap: new_histogram(),
            rtt: new_histogram(),
            snapshots: 0,
            bytes_down: 0,
            bytes_up: 0,
            errors: 0,
            closes: BTreeMap::new(),
        }
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Interval) {
        for (into, from) in [(&mut self.gap, &other.gap), (&mut self.rtt, &other.rtt)] {
            // Cannot fail: both were made by `new_histogram` with the same bounds.
            if let Err(e) = into.add(from) {
                tracing::debug!(error = %e, "interval histogram merge failed");
            }
        }
        self.snapshots += other.snapshots;
        self.bytes_down += other.bytes_down;
        self.bytes_up += other.bytes_up;
        self.errors += other.errors;
        for (code, n) in &other.closes {
            *self.closes.entry(*code).or_default() += n;
        }
    }

    /// Empties the interval, keeping the histograms' memory.
    pub fn reset(&mut self) {
        self.gap.reset();
        self.rtt.reset();
        self.snapshots = 0;
        self.bytes_down = 0;
        self.bytes_up = 0;
        self.errors = 0;
        self.closes.clear();
    }
}

/// One second (or the last, shorter, part of a second) of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the start of the run at the nominal end of this sample: samples
    /// are taken on whole seconds, so this is their index (a late one keeps its
    /// nominal second; the last one, shorter, takes the next whole second).
    pub second: u64,
    /// Length of the interval it covers, in seconds (about 1).
    pub dt_s: f64,
    /// Bots connected at its end (welcomed, not reconnecting, not ended).
    pub connected: u64,
    /// Connected bot-seconds within it (the integral of connected bots over the
    /// interval): the denominator of the per-bot rates.
    pub bot_s: f64,
    /// Snapshots received by all bots.
    pub snapshots: u64,
    /// Payload bytes received by all bots.
    pub bytes_down: u64,
    /// Payload bytes sent by all bots.
    pub bytes_up: u64,
    /// Failures of every kind.
    pub errors: u64,
    /// Close codes received, by code (as a string, for JSON keys).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub closes: BTreeMap<String, u64>,
    /// Snapshot gaps within this second.
    pub gap_ms: Percentiles,
    /// Round-trip times within this second.
    pub rtt_ms: Percentiles,
    /// The gap histogram of this second (portable encoding), for merging; absent
    /// when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap_histogram: Option<String>,
    /// The rtt histogram of this second, likewise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_histogram: Option<String>,
}

impl Sample {
    /// Snapshots per second, all bots together.
    pub fn snapshots_per_s(&self) -> f64 {
        ratio(self.snapshots as f64, self.dt_s)
    }

    /// Payload bytes received per connected bot per second.
    pub fn down_per_bot_s(&self) -> f64 {
        ratio(self.bytes_down as f64, self.bot_s)
    }

    /// Payload bytes sent per connected bot per second.
    pub fn up_per_bot_s(&self) -> f64 {
        ratio(self.bytes_up as f64, self.bot_s)
    }

    /// Close codes of this sample, summed over codes.
    pub fn closes_total(&self) -> u64 {
        self.closes.values().sum()
    }
}

fn ratio(n: f64, d: f64) -> f64 {
    if d > 0.0 {
        n / d
    } else {
        0.0
    }
}

/// The time series of a run (or of a merge of runs).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Series {
    /// Wall-clock time of the run's start, in milliseconds since the Unix epoch: what
    /// aligns the series of separate processes in a merge.
    pub start_unix_ms: u64,
    /// Seconds from the start to the end of the ramp (when the last bot was due to
    /// connect).
    pub ramp_end_s: f64,
    /// One sample per second, in order.
    pub samples: Vec<Sample>,
    /// What was scraped from the servers' `/metrics` pages, one entry per metrics URL
    /// (none without `--metrics-url`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerSeries>,
}

/// Builds a [`Series`] from the intervals the swarm hands it once a second.
#[derive(Debug)]
pub struct SeriesRecorder {
    series: Series,
    /// Elapsed time at the end of the previous sample.
    last: Duration,
}

impl SeriesRecorder {
    /// A recorder for a run that started at `start_unix_ms` with a ramp of `ramp`.
    pub fn new(start_unix_ms: u64, ramp: Duration) -> Self {
        Self {
            series: Series {
                start_unix_ms,
                ramp_end_s: ramp.as_secs_f64(),
                samples: Vec::new(),
                servers: Vec::new(),
            },
            last: Duration::ZERO,
        }
    }

    /// Appends the sample of what happened between the previous call and `elapsed`
    /// (time since the start), with `connected` bots at its end and `bot_time`
    /// connected bot-time within it. `last` marks the final, usually shorter, sample
    /// of the run, which takes the next whole second.
    pub fn push(
        &mut self,
        elapsed: Duration,
        connected: u64,
        bot_time: Duration,
        interval: &Interval,
        last: bool,
    ) {
        let dt = elapsed.saturating_sub(self.last);
        let previous = self.series.samples.last().map(|s| s.second);
        let nominal = if last {
            elapsed.as_secs_f64().ceil() as u64
        } else {
            elapsed.as_secs_f64().round() as u64
        };
        let second = match previous {
            Some(p) => nominal.max(p + 1),
            None => nominal.max(1),
        };
        let bot_s = bot_time.as_secs_f64();
        let encode = |h: &Histogram<u64>| {
            if h.is_empty() {
                return None;
            }
            encode_histogram(h)
                .inspect_err(|e| tracing::debug!(error = %e, "series histogram not kept"))
                .ok()
        };
        self.series.samples.push(Sample {
            second,
            dt_s: dt.as_secs_f64(),
            connected,
            bot_s,
            snapshots: interval.snapshots,
            bytes_down: interval.bytes_down,
            bytes_up: interval.bytes_up,
            errors: interval.errors,
            closes: interval
                .closes
                .iter()
                .map(|(code, n)| (code.to_string(), *n))
                .collect(),
            gap_ms: Percentiles::from_micros(&interval.gap),
            rtt_ms: Percentiles::from_micros(&interval.rtt),
            gap_histogram: encode(&interval.gap),
            rtt_histogram: encode(&interval.rtt),
        });
        self.last = elapsed;
    }

    /// The series recorded so far.
    pub fn finish(self) -> Series {
        self.series
    }
}

/// Why series could not be merged.
#[derive(Debug, thiserror::Error)]
#[error("series of report {index}, second {second}: {name} histogram: {source}")]
pub struct SeriesMergeError {
    /// Which report.
    pub index: usize,
    /// Which sample.
    pub second: u64,
    /// Which histogram (`gap`, `rtt`).
    pub name: &'static str,
    /// What was wrong with it.
    pub source: HistogramCodecError,
}

/// Sums of one wall-clock second over processes.
#[derive(Default)]
struct Bucket {
    dt_s: f64,
    connected: u64,
    bot_s: f64,
    snapshots: u64,
    bytes_down: u64,
    bytes_up: u64,
    errors: u64,
    closes: BTreeMap<String, u64>,
    gap: Option<Histogram<u64>>,
    rtt: Option<Histogram<u64>>,
}

/// Merges the series of several processes (`(report index, series)`) by wall-clock
/// second.
///
/// The alignment rule: a process whose run started at wall-clock time `T` (Unix
/// milliseconds) credits its sample of run-second `k` to wall-clock second
/// `floor(T / 1000) + k`. Samples of different processes that land on the same
/// wall-clock second are combined: counts, bytes, bot-seconds and connected bots are
/// summed, histograms added and their percentiles read again, and the interval length
/// is the longest. Since the fraction of a second of each start is dropped, processes
/// are aligned to within one second. The merged series starts at the earliest
/// process's whole second; its ramp ends when the last process's ramp ends.
/// Server series are merged by [`ServerSeries::merge_into`].
///
/// # Errors
/// [`SeriesMergeError`] if a sample's histogram cannot be decoded.
pub fn merge_series(all: &[(usize, &Series)]) -> Result<Option<Series>, SeriesMergeError> {
    let Some(base) = all.iter().map(|(_, s)| s.start_unix_ms / 1000).min() else {
        return Ok(None);
    };
    let mut buckets: BTreeMap<u64, Bucket> = BTreeMap::new();
    let mut ramp_end_s = 0.0f64;
    let mut servers: Vec<ServerSeries> = Vec::new();
    for (index, series) in all {
        let offset = series.start_unix_ms / 1000 - base;
        if series.ramp_end_s.is_finite() {
            ramp_end_s = ramp_end_s.max(offset as f64 + series.ramp_end_s);
        }
        for sample in &series.samples {
            let b = buckets.entry(offset + sample.second).or_default();
            if sample.dt_s.is_finite() {
                b.dt_s = b.dt_s.max(sample.dt_s);
            }
            b.connected += sample.connected;
            if sample.bot_s.is_finite() {
                b.bot_s += sample.bot_s;
            }
            b.snapshots += sample.snapshots;
            b.bytes_down += sample.bytes_down;
            b.bytes_up += sample.bytes_up;
            b.errors += sample.errors;
            for (code, n) in &sample.closes {
                *b.closes.entry(code.clone()).or_default() += n;
            }
            for (name, into, text) in [
                ("gap", &mut b.gap, &sample.gap_histogram),
                ("rtt", &mut b.rtt, &sample.rtt_histogram),
            ] {
                let Some(text) = text else { continue };
                let err = |source| SeriesMergeError {
                    index: *index,
                    second: sample.second,
                    name,
                    source,
                };
                let decoded = decode_histogram(text).map_err(err)?;
                let into = into.get_or_insert_with(new_histogram);
                into.add(&decoded)
                    .map_err(|e| err(HistogramCodecError::Range(e)))?;
            }
        }
        for server in &series.servers {
            server.merge_into(&mut servers, offset);
        }
    }
    let empty = new_histogram();
    let samples = buckets
        .into_iter()
        .map(|(second, b)| {
            let gap = b.gap.as_ref().unwrap_or(&empty);
            let rtt = b.rtt.as_ref().unwrap_or(&empty);
            let encode =
                |h: &Histogram<u64>| (!h.is_empty()).then(|| encode_histogram(h).ok()).flatten();
            Sample {
                second,
                dt_s: b.dt_s,
                connected: b.connected,
                bot_s: b.bot_s,
                snapshots: b.snapshots,
                bytes_down: b.bytes_down,
                bytes_up: b.bytes_up,
                errors: b.errors,
                closes: b.closes,
                gap_ms: Percentiles::from_micros(gap),
                rtt_ms: Percentiles::from_micros(rtt),
                gap_histogram: encode(gap),
                rtt_histogram: encode(rtt),
            }
        })
        .collect();
    Ok(Some(Series {
        start_unix_ms: base * 1000,
        ramp_end_s,
        samples,
        servers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An interval with `snapshots` snapshots whose gaps are `gaps` ms.
    fn interval(snapshots: u64, gaps: &[u64], rtts: &[u64]) -> Interval {
        let mut i = Interval::new();
        i.snapshots = snapshots;
        i.bytes_down = snapshots * 100;
        i.bytes_up = snapshots * 10;
        for g in gaps {
            record(&mut i.gap, ms(*g));
        }
        for r in rtts {
            record(&mut i.rtt, ms(*r));
        }
        i
    }

    #[test]
    fn samples_take_whole_seconds_and_per_interval_percentiles() {
        let mut rec = SeriesRecorder::new(1_000_000, Duration::from_secs(2));
        // Second 1: 0 -> 10 bots connected; gaps of 10 ms only.
        rec.push(
            ms(1_000),
            10,
            ms(5_000),
            &interval(100, &[10; 50], &[2, 2]),
            false,
        );
        // Second 2, sampled late: 100 ms gaps only. Its p99 is its own, not the run's.
        rec.push(
            ms(2_030),
            10,
            ms(10_300),
            &interval(300, &[100; 50], &[]),
            false,
        );
        // The last, short sample takes the next whole second.
        rec.push(ms(2_400), 0, ms(1_850), &interval(0, &[], &[]), true);
        let s = rec.finish();
        let seconds: Vec<u64> = s.samples.iter().map(|x| x.second).collect();
        assert_eq!(seconds, [1, 2, 3]);
        assert_eq!(s.ramp_end_s, 2.0);
        let [a, b, c] = &s.samples[..] else {
            panic!("three samples")
        };
        assert_eq!(a.bot_s, 5.0); // bots ramping up from 0 to 10
        assert_eq!(a.snapshots_per_s(), 100.0);
        assert_eq!(a.down_per_bot_s(), 10_000.0 / 5.0);
        assert_eq!(a.up_per_bot_s(), 1_000.0 / 5.0);
        // HDR keeps 3 significant digits: 10 ms reads as 10.007.
        assert_eq!(a.gap_ms.count, 50);
        assert!((a.gap_ms.p99 - 10.0).abs() < 0.01, "{:?}", a.gap_ms);
        assert_eq!(a.rtt_ms.count, 2);
        assert!((a.rtt_ms.p50 - 2.0).abs() < 0.01, "{:?}", a.rtt_ms);
        assert!((b.gap_ms.p50 - 100.0).abs() < 0.1, "{:?}", b.gap_ms);
        assert_eq!(b.rtt_ms.count, 0);
        assert!(b.rtt_histogram.is_none());
        assert!((b.dt_s - 1.03).abs() < 1e-9);
        assert_eq!(c.connected, 0);
        assert_eq!(c.bot_s, 1.85);
    }

    /// A series of `n` one-second samples started at `start_ms`, each with `bots`
    /// connected, `snapshots` snapshots and one close 1000 in its last sample.
    fn series(start_ms: u64, n: u64, bots: u64, snapshots: u64, gap: u64) -> Series {
        let mut rec = SeriesRecorder::new(start_ms, Duration::from_secs(1));
        for k in 1..=n {
            let mut i = interval(snapshots, &[gap; 10], &[gap / 10]);
            if k == n {
                i.closes.insert(1000, bots);
            }
            rec.push(
                Duration::from_secs(k),
                bots,
                Duration::from_secs(bots),
                &i,
                false,
            );
        }
        rec.finish()
    }

    #[test]
    fn merge_aligns_processes_by_wall_clock_second() {
        // A started at 100.250 s, B at 102.900 s: B's run-second 1 (ending at
        // 103.900) is wall second 103, which is A's run-second 3.
        let a = series(100_250, 4, 10, 300, 30);
        let b = series(102_900, 3, 5, 150, 300);
        let json = |s: &Series| -> Series {
            serde_json::from_str(&serde_json::to_string(s).expect("write")).expect("read")
        };
        let merged = merge_series(&[(0, &json(&a)), (1, &json(&b))])
            .expect("merge")
            .expect("some");
        assert_eq!(merged.start_unix_ms, 100_000);
        // B's ramp ends 2 + 1 s after the merged start.
        assert_eq!(merged.ramp_end_s, 3.0);
        let rows: Vec<(u64, u64, u64)> = merged
            .samples
            .iter()
            .map(|s| (s.second, s.connected, s.snapshots))
            .collect();
        assert_eq!(
            rows,
            [
                (1, 10, 300),
                (2, 10, 300),
                (3, 15, 450),
                (4, 15, 450),
                (5, 5, 150)
            ]
        );
        // Where both ran, the percentiles are read from the added histograms: 10 gaps
        // of 30 ms and 10 of 300 ms have a p99 of 300, not the mean of 30 and 300.
        let both = &merged.samples[2];
        assert_eq!(both.gap_ms.count, 20);
        assert!((both.gap_ms.p99 - 300.0).abs() < 0.5, "{:?}", both.gap_ms);
        assert_eq!(both.bot_s, 15.0);
        assert_eq!(merged.samples[3].closes.get("1000"), Some(&10));
        assert_eq!(merged.samples[4].closes.get("1000"), Some(&5));
    }

    #[test]
    fn merge_of_nothing_is_none_and_bad_histograms_are_named() {
        assert!(merge_series(&[]).expect("empty").is_none());
        let mut a = series(0, 2, 1, 1, 10);
        a.samples[1].gap_histogram = Some("not base64!".into());
        let err = merge_series(&[(3, &a)]).expect_err("corrupt");
        assert_eq!((err.index, err.second, err.name), (3, 2, "gap"));
    }
}
