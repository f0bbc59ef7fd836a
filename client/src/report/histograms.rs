//! The latency histograms of a run: HDR histograms in microseconds with one set of
//! bounds for every bot and every process, which is what makes adding them exact and
//! infallible, and their portable text form, which is what lets reports of separate
//! processes be merged into true percentiles rather than averaged ones.

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

/// The histograms of a [`super::Report`], each as base64 of HdrHistogram's V2 + DEFLATE
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Percentiles;

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
}
