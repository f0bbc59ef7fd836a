//! A bad network between a bot and the server, emulated inside the bot process: the
//! I/O-free model of one direction of a link ([`LinkModel`]), what a link is
//! ([`LinkSpec`], the `--latency --jitter --bandwidth --loss-stall` flags and the
//! `--link` profiles), and in [`stream`] the async shell that runs the bot's TCP
//! stream through two models, one per direction.
//!
//! The model works on the bytes of a TCP stream, not on packets, because that is all a
//! process sees above the kernel. TCP delivers every byte, once, in order, so:
//! - **latency** is a fixed one-way delay added to every byte, in each direction (an
//!   rtt is then about `2 × latency` plus the server's time);
//! - **jitter** adds to each segment's delay a draw from the uniform distribution on
//!   `[-jitter, +jitter]` (netem's default `delay L J`), the total never below zero;
//!   a segment whose draw would make it overtake an earlier one waits for it instead
//!   (head-of-line blocking, as TCP does);
//! - **bandwidth** is a token bucket in bytes per second, [`burst_bytes`] deep: bytes
//!   leave no faster than the rate, and bytes the link cannot send yet wait in a
//!   bottleneck queue of [`LinkSpec::queue_limit`] bytes; while it is full the stream
//!   stops reading, so the sender (the server) meets backpressure as on a real link;
//! - **loss** cannot lose bytes, so it shows as a **stall**: each segment, with the
//!   given probability, is held for the stall time (a retransmission timeout: Linux
//!   waits at least 200 ms), and everything behind it waits too.
//!
//! A segment is at most [`SEGMENT_BYTES`] (one Ethernet MSS): what a read or a write
//! hands over is cut into segments, so jitter and stalls have the granularity of
//! packets, and the probability of a stall is per segment. Time is passed in, and the
//! random draws come from a seeded generator, so a run is reproducible per bot.

pub mod stream;

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Largest segment the model delays as one: the TCP payload of a 1500-byte Ethernet
/// frame with timestamps (1500 − 20 IP − 32 TCP).
pub const SEGMENT_BYTES: usize = 1448;

/// Time at the link's rate that its token bucket holds: an idle link may send this
/// much at once.
const BURST_TIME: Duration = Duration::from_millis(10);

/// Depth of the token bucket of a link of `rate` bytes per second: [`BURST_TIME`] at
/// its rate (a policer's usual depth), at least one segment.
pub fn burst_bytes(rate: u64) -> u64 {
    (rate.saturating_mul(BURST_TIME.as_millis() as u64) / 1000).max(SEGMENT_BYTES as u64)
}

/// Bytes a link holds in all (queued and in flight) before it stops reading, whatever
/// its rate: a bound on the memory of one direction of one bot.
pub const MAX_HELD_BYTES: usize = 4 << 20;

/// Smallest bottleneck queue of a rate-limited link.
const MIN_QUEUE_BYTES: usize = 2 * SEGMENT_BYTES;

/// Time at the link's rate that its bottleneck queue holds.
const QUEUE_TIME: Duration = Duration::from_millis(100);

/// Stalls: with probability `per_million / 10⁶` per segment, the stream stops for
/// `stall`. The probability is an integer so that options holding it stay `Eq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LossStall {
    /// Probability of a stall per segment, in millionths (0 to 1 000 000).
    pub per_million: u32,
    /// How long the stream stops.
    #[serde(rename = "stall_ms", with = "millis")]
    pub stall: Duration,
}

impl LossStall {
    /// The probability in percent.
    pub fn percent(&self) -> f64 {
        f64::from(self.per_million) / 10_000.0
    }
}

/// The conditions of a link, the same in both directions (each direction has its own
/// model and its own random draws). The default is a perfect link.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LinkSpec {
    /// The `--link` profile these values started from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// One-way delay of every byte.
    #[serde(rename = "latency_ms", with = "millis")]
    pub latency: Duration,
    /// Half-width of the uniform spread added to each segment's delay.
    #[serde(rename = "jitter_ms", with = "millis")]
    pub jitter: Duration,
    /// Rate limit in bytes per second; `None`: unlimited.
    #[serde(rename = "bandwidth_bytes_per_s", default)]
    pub bandwidth: Option<u64>,
    /// Loss, as stalls.
    #[serde(default)]
    pub loss_stall: Option<LossStall>,
}

/// A link to put under one connection: its conditions and the seed of its draws.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conditioning {
    /// The link.
    pub spec: LinkSpec,
    /// Seeds the uplink's random draws (the downlink's are derived from it): a bot of a
    /// swarm uses its index, so a run's draws are the same every time.
    pub seed: u64,
}

/// A named profile: typical figures of a kind of network (see docs/BAD-NETWORKS.md for
/// where they come from).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// The name given to `--link`.
    pub name: &'static str,
    /// What it stands for.
    pub about: &'static str,
    latency_ms: u64,
    jitter_ms: u64,
    bandwidth_bits: Option<u64>,
    /// Stall probability per segment in hundredths of a percent, and stall time.
    stall: Option<(u32, u64)>,
}

/// The profiles of `--link`.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "lte",
        about: "a phone on a good 4G/LTE cell: 60-80 ms rtt, 10 Mbit/s, rare stalls",
        latency_ms: 35,
        jitter_ms: 10,
        bandwidth_bits: Some(10_000_000),
        stall: Some((20, 200)),
    },
    Profile {
        name: "wifi-busy",
        about: "a shared Wi-Fi network at a busy time: short path, large jitter, stalls",
        latency_ms: 5,
        jitter_ms: 20,
        bandwidth_bits: Some(5_000_000),
        stall: Some((100, 100)),
    },
    Profile {
        name: "transatlantic",
        about: "wired, London to New York: ~75 ms rtt, little jitter, rare stalls",
        latency_ms: 37,
        jitter_ms: 2,
        bandwidth_bits: Some(100_000_000),
        stall: Some((5, 300)),
    },
];

impl Profile {
    /// The profile named `name`.
    pub fn named(name: &str) -> Option<&'static Profile> {
        PROFILES.iter().find(|p| p.name == name)
    }

    /// The link this profile describes.
    pub fn spec(&self) -> LinkSpec {
        LinkSpec {
            profile: Some(self.name.to_owned()),
            latency: Duration::from_millis(self.latency_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            bandwidth: self.bandwidth_bits.map(|bits| bits / 8),
            loss_stall: self.stall.map(|(hundredths, ms)| LossStall {
                per_million: hundredths * 100,
                stall: Duration::from_millis(ms),
            }),
        }
    }
}

impl LinkSpec {
    /// Whether this link changes nothing (then no model is put in the way at all).
    pub fn is_perfect(&self) -> bool {
        self.latency.is_zero()
            && self.jitter.is_zero()
            && self.bandwidth.is_none()
            && self
                .loss_stall
                .is_none_or(|s| s.per_million == 0 || s.stall.is_zero())
    }

    /// Bytes that wait for a rate-limited link before the stream stops reading:
    /// [`QUEUE_TIME`] at its rate, at least two segments. Without a rate limit
    /// nothing waits to be sent, and only [`MAX_HELD_BYTES`] bounds what is in flight.
    pub fn queue_limit(&self) -> usize {
        match self.bandwidth {
            Some(rate) => {
                let at_rate = rate.saturating_mul(QUEUE_TIME.as_millis() as u64) / 1000;
                usize::try_from(at_rate)
                    .unwrap_or(MAX_HELD_BYTES)
                    .clamp(MIN_QUEUE_BYTES, MAX_HELD_BYTES)
            }
            None => MAX_HELD_BYTES,
        }
    }
}

impl fmt::Display for LinkSpec {
    /// One line for a report: `lte: 35 ms ± 10 ms one-way, 1250000 B/s, stalls 0.2% × 200 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = &self.profile {
            write!(f, "{name}: ")?;
        }
        write!(
            f,
            "{} ms ± {} ms one-way",
            self.latency.as_millis(),
            self.jitter.as_millis()
        )?;
        match self.bandwidth {
            Some(rate) => write!(f, ", {rate} B/s")?,
            None => write!(f, ", unlimited")?,
        }
        match &self.loss_stall {
            Some(s) => write!(f, ", stalls {}% × {} ms", s.percent(), s.stall.as_millis()),
            None => write!(f, ", no stalls"),
        }
    }
}

/// Parses a `--bandwidth` value: bits per second with an SI prefix (`1mbit`, `500kbit`,
/// `2gbit`, `64000bit`, as `tc` writes them) or bytes per second (`125kB`, `1MB`,
/// `900B`). Returns bytes per second.
pub fn parse_bandwidth(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("{text:?}: give a unit, e.g. 1mbit or 125kB"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
    let bytes_per_unit = match unit {
        "bit" => 1.0 / 8.0,
        "kbit" => 1e3 / 8.0,
        "mbit" => 1e6 / 8.0,
        "gbit" => 1e9 / 8.0,
        "B" => 1.0,
        "kB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        _ => {
            return Err(format!(
                "{text:?}: unit {unit:?} is none of bit, kbit, mbit, gbit, B, kB, MB, GB"
            ))
        }
    };
    let rate = (value * bytes_per_unit).round();
    if !(1.0..=1e12).contains(&rate) {
        return Err(format!("{text:?}: not between 1 B/s and 1 TB/s"));
    }
    Ok(rate as u64)
}

impl FromStr for LossStall {
    type Err = String;

    /// `1%@200ms`: a stall of 200 ms with probability 1% per segment.
    fn from_str(text: &str) -> Result<Self, String> {
        let (percent, stall) = text
            .split_once('@')
            .ok_or_else(|| format!("{text:?}: expected PERCENT%@DURATION, e.g. 1%@200ms"))?;
        let percent = percent
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| format!("{text:?}: the probability ends with %"))?;
        let percent: f64 = percent
            .parse()
            .map_err(|_| format!("{text:?}: {percent:?} is not a number"))?;
        if !(0.0..=100.0).contains(&percent) {
            return Err(format!("{text:?}: the probability is between 0% and 100%"));
        }
        let stall = humantime::parse_duration(stall.trim())
            .map_err(|e| format!("{text:?}: stall time: {e}"))?;
        Ok(Self {
            per_million: (percent * 10_000.0).round() as u32,
            stall,
        })
    }
}

/// One segment in the model: its bytes and when it reaches the other end.
#[derive(Debug)]
struct Segment {
    bytes: Bytes,
    /// When its last byte has left through the token bucket.
    departs: Instant,
    /// When it is handed to the other end.
    arrives: Instant,
}

/// One direction of a link: bytes in with the time they were sent, bytes out at the
/// time they arrive. Driven like quinn's state machines: [`LinkModel::handle_bytes`]
/// takes what the sender wrote, [`LinkModel::poll_timeout`] says when something is
/// next due and [`LinkModel::poll_transmit`] hands out what is due.
#[derive(Debug)]
pub struct LinkModel {
    spec: LinkSpec,
    queue_limit: usize,
    rng: SmallRng,
    /// Segments not yet handed out, in order (their `arrives` never decreases).
    segments: VecDeque<Segment>,
    /// Bytes in `segments`.
    held: usize,
    /// Tokens of the bucket (may be negative: a debt later bytes wait for) at `tokens_at`.
    tokens: f64,
    /// Depth of the bucket.
    burst: f64,
    tokens_at: Option<Instant>,
    /// Arrival of the newest segment, which no later one may precede.
    last_arrival: Option<Instant>,
    /// Stalls drawn so far.
    stalls: u64,
}

impl LinkModel {
    /// A model of one direction of `spec`, its draws seeded with `seed`.
    pub fn new(spec: &LinkSpec, seed: u64) -> Self {
        Self {
            queue_limit: spec.queue_limit(),
            spec: spec.clone(),
            rng: SmallRng::seed_from_u64(seed),
            segments: VecDeque::new(),
            held: 0,
            tokens: spec.bandwidth.map_or(0.0, |rate| burst_bytes(rate) as f64),
            burst: spec.bandwidth.map_or(0.0, |rate| burst_bytes(rate) as f64),
            tokens_at: None,
            last_arrival: None,
            stalls: 0,
        }
    }

    /// Whether the sender may hand over more bytes at `now`: the bottleneck queue (bytes
    /// not yet sent at the link's rate) is below its limit, and the whole link below
    /// [`MAX_HELD_BYTES`].
    pub fn has_room(&self, now: Instant) -> bool {
        self.room(now) > 0
    }

    /// How many bytes the sender may hand over at `now`: what is left of the bottleneck
    /// queue and of [`MAX_HELD_BYTES`]. A reader that takes no more than this keeps the
    /// queue within its limit, so the link holds no more than a real one would.
    pub fn room(&self, now: Instant) -> usize {
        let queued: usize = self
            .segments
            .iter()
            .filter(|s| s.departs > now)
            .map(|s| s.bytes.len())
            .sum();
        self.queue_limit
            .saturating_sub(queued)
            .min(MAX_HELD_BYTES.saturating_sub(self.held))
    }

    /// Takes `bytes` that the sender wrote at `now`, cut into segments.
    pub fn handle_bytes(&mut self, now: Instant, mut bytes: Bytes) {
        while !bytes.is_empty() {
            let segment = bytes.split_to(bytes.len().min(SEGMENT_BYTES));
            self.push_segment(now, segment);
        }
    }

    fn push_segment(&mut self, now: Instant, bytes: Bytes) {
        let departs = self.depart(now, bytes.len());
        let mut delay = self.spec.latency;
        if !self.spec.jitter.is_zero() {
            let spread = self.spec.jitter.as_secs_f64();
            let draw = self.rng.random_range(-spread..=spread);
            delay = Duration::from_secs_f64((delay.as_secs_f64() + draw).max(0.0));
        }
        if let Some(loss) = self.spec.loss_stall {
            if loss.per_million > 0
                && self
                    .rng
                    .random_ratio(loss.per_million.min(1_000_000), 1_000_000)
            {
                delay += loss.stall;
                self.stalls += 1;
            }
        }
        let mut arrives = departs + delay;
        // TCP never reorders: a segment drawn earlier than the one before waits for it.
        if let Some(last) = self.last_arrival {
            arrives = arrives.max(last);
        }
        self.last_arrival = Some(arrives);
        self.held += bytes.len();
        self.segments.push_back(Segment {
            bytes,
            departs,
            arrives,
        });
    }

    /// When the last byte of a segment of `len` bytes handed over at `now` leaves
    /// through the token bucket; takes its tokens.
    fn depart(&mut self, now: Instant, len: usize) -> Instant {
        let Some(rate) = self.spec.bandwidth.filter(|r| *r > 0) else {
            return now;
        };
        let rate = rate as f64;
        // Segments leave in order: this one not before the previous one has.
        let start = match self.tokens_at {
            Some(at) if at > now => at,
            Some(at) => {
                let refill = (now - at).as_secs_f64() * rate;
                self.tokens = (self.tokens + refill).min(self.burst);
                now
            }
            None => now,
        };
        // Wait until the bucket holds the whole segment (or is full, for a segment
        // larger than the bucket), then take it.
        let need = (len as f64).min(self.burst);
        let wait = if self.tokens < need {
            Duration::from_secs_f64((need - self.tokens) / rate)
        } else {
            Duration::ZERO
        };
        let departs = start + wait;
        self.tokens = self.tokens + wait.as_secs_f64() * rate - len as f64;
        self.tokens_at = Some(departs);
        departs
    }

    /// When the bottleneck queue next frees room, if bytes wait in it at `now`: the
    /// time to look at [`LinkModel::has_room`] again.
    pub fn poll_room(&self, now: Instant) -> Option<Instant> {
        self.segments
            .iter()
            .map(|s| s.departs)
            .find(|departs| *departs > now)
    }

    /// When the next segment arrives, if any is held.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.segments.front().map(|s| s.arrives)
    }

    /// The next segment that has arrived by `now`, in order.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Bytes> {
        if self.segments.front()?.arrives > now {
            return None;
        }
        let segment = self.segments.pop_front()?;
        self.held -= segment.bytes.len();
        Some(segment.bytes)
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.segments.is_empty()
    }

    /// Stalls drawn so far.
    pub fn stalls(&self) -> u64 {
        self.stalls
    }
}

/// Durations as whole or fractional milliseconds in JSON.
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Everything that arrives up to `until`, stepping a manual clock by 1 ms: each
    /// segment's length and arrival time in ms after `t0`.
    fn drain(model: &mut LinkModel, t0: Instant, until: u64) -> Vec<(usize, u64)> {
        let mut out = Vec::new();
        for t in 0..=until {
            while let Some(b) = model.poll_transmit(t0 + ms(t)) {
                out.push((b.len(), t));
            }
        }
        out
    }

    #[test]
    fn latency_delays_every_byte_by_exactly_that() {
        let spec = LinkSpec {
            latency: ms(40),
            ..LinkSpec::default()
        };
        let mut model = LinkModel::new(&spec, 1);
        let t0 = Instant::now();
        model.handle_bytes(t0, Bytes::from_static(b"hello"));
        model.handle_bytes(t0 + ms(10), Bytes::from_static(b"world!"));
        assert_eq!(model.poll_timeout(), Some(t0 + ms(40)));
        assert_eq!(model.poll_transmit(t0 + ms(39)), None);
        assert_eq!(drain(&mut model, t0, 100), [(5, 40), (6, 50)]);
        assert!(model.is_empty());
    }

    #[test]
    fn writes_are_cut_into_segments_in_order() {
        let spec = LinkSpec {
            latency: ms(1),
            ..LinkSpec::default()
        };
        let mut model = LinkModel::new(&spec, 1);
        let t0 = Instant::now();
        let data: Vec<u8> = (0..4000u32).map(|i| i as u8).collect();
        model.handle_bytes(t0, Bytes::from(data.clone()));
        let mut out = Vec::new();
        while let Some(b) = model.poll_transmit(t0 + ms(1)) {
            assert!(b.len() <= SEGMENT_BYTES);
            out.extend_from_slice(&b);
        }
        assert_eq!(out, data);
    }

    #[test]
    fn jitter_stays_in_its_range_and_never_reorders() {
        let spec = LinkSpec {
            latency: ms(50),
            jitter: ms(20),
            ..LinkSpec::default()
        };
        let mut model = LinkModel::new(&spec, 7);
        let t0 = Instant::now();
        // One small segment every 5 ms, numbered, for a second.
        for i in 0..200u64 {
            model.handle_bytes(t0 + ms(5 * i), Bytes::copy_from_slice(&i.to_le_bytes()));
        }
        let mut seen = Vec::new();
        let mut delays = Vec::new();
        for t in 0..=2000u64 {
            while let Some(b) = model.poll_transmit(t0 + ms(t)) {
                let i = u64::from_le_bytes(b.as_ref().try_into().expect("8 bytes"));
                seen.push(i);
                delays.push(t - 5 * i);
            }
        }
        assert_eq!(seen, (0..200).collect::<Vec<_>>(), "in order, none lost");
        // At least the smallest draw (30 ms); at most the largest (70 ms), since only
        // waiting for an earlier segment adds to it and that one was at most 70 too.
        assert!(delays.iter().all(|d| (30..=70).contains(d)), "{delays:?}");
        let min = delays.iter().min().copied();
        let max = delays.iter().max().copied();
        // 200 uniform draws over 40 ms spread out: the extremes are near the ends.
        assert!(min <= Some(33) && max >= Some(67), "{min:?} {max:?}");
    }

    #[test]
    fn the_same_seed_draws_the_same_delays() {
        let spec = LinkSpec {
            latency: ms(20),
            jitter: ms(10),
            loss_stall: Some(LossStall {
                per_million: 50_000,
                stall: ms(200),
            }),
            ..LinkSpec::default()
        };
        let t0 = Instant::now();
        let run = |seed| {
            let mut model = LinkModel::new(&spec, seed);
            for i in 0..100 {
                model.handle_bytes(t0 + ms(10 * i), Bytes::from_static(b"x"));
            }
            drain(&mut model, t0, 5000)
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn bandwidth_lets_bytes_out_no_faster_than_the_rate() {
        // 100 kB/s: 100 bytes per ms once the burst (1 ms at that rate is less than a
        // segment, so one segment) is spent.
        let spec = LinkSpec {
            bandwidth: Some(100_000),
            ..LinkSpec::default()
        };
        let mut model = LinkModel::new(&spec, 1);
        let t0 = Instant::now();
        let total = 200 * SEGMENT_BYTES;
        let burst = burst_bytes(100_000);
        assert_eq!(burst, SEGMENT_BYTES as u64);
        model.handle_bytes(t0, Bytes::from(vec![0u8; total]));
        let out = drain(&mut model, t0, 5000);
        assert_eq!(out.iter().map(|(n, _)| n).sum::<usize>(), total);
        // By any time t, at most the burst plus t × rate has left.
        let mut sent = 0u64;
        for (n, t) in &out {
            sent += *n as u64;
            assert!(sent <= burst + 100 * t, "{sent} bytes by {t} ms");
        }
        // And the link is kept busy: the last byte leaves when the rate says.
        let last = out.last().map(|(_, t)| *t).unwrap_or_default();
        let expected = (total as u64 - burst) / 100;
        assert!(last.abs_diff(expected) <= 1, "{last} vs {expected}");
    }

    #[test]
    fn a_full_bottleneck_queue_stops_the_sender() {
        let spec = LinkSpec {
            bandwidth: Some(100_000),
            ..LinkSpec::default()
        };
        // 100 ms at 100 kB/s.
        assert_eq!(spec.queue_limit(), 10_000);
        let mut model = LinkModel::new(&spec, 1);
        let t0 = Instant::now();
        assert!(model.has_room(t0));
        // The burst leaves at once; the rest waits in the queue.
        let burst = burst_bytes(100_000) as usize;
        model.handle_bytes(t0, Bytes::from(vec![0u8; burst + 10_000]));
        assert!(!model.has_room(t0));
        // The first queued segment has left after 1448 bytes' time (14.48 ms): room.
        assert!(!model.has_room(t0 + ms(14)));
        assert_eq!(
            model.poll_room(t0),
            Some(t0 + Duration::from_micros(14_480))
        );
        assert!(model.has_room(t0 + ms(15)));
        // Room is what the queue has left: one segment has left it.
        assert_eq!(model.room(t0 + ms(15)), SEGMENT_BYTES);
        assert_eq!(model.room(t0), 0);
        assert_eq!(LinkSpec::default().queue_limit(), MAX_HELD_BYTES);
    }

    #[test]
    fn a_stall_holds_its_segment_and_everything_behind_it() {
        let spec = LinkSpec {
            latency: ms(10),
            loss_stall: Some(LossStall {
                per_million: 1_000_000,
                stall: ms(200),
            }),
            ..LinkSpec::default()
        };
        let mut model = LinkModel::new(&spec, 1);
        let t0 = Instant::now();
        model.handle_bytes(t0, Bytes::from_static(b"a"));
        assert_eq!(model.poll_timeout(), Some(t0 + ms(210)));
        assert_eq!(model.stalls(), 1);

        // At 1%, a stall comes about once per hundred segments.
        let spec = LinkSpec {
            loss_stall: Some("1%@200ms".parse().expect("valid")),
            ..LinkSpec::default()
        };
        let mut model = LinkModel::new(&spec, 9);
        for i in 0..10_000 {
            model.handle_bytes(t0 + ms(i), Bytes::from_static(b"x"));
        }
        assert!((60..=140).contains(&model.stalls()), "{}", model.stalls());
    }

    #[test]
    fn flags_parse() {
        assert_eq!(parse_bandwidth("1mbit"), Ok(125_000));
        assert_eq!(parse_bandwidth("500kbit"), Ok(62_500));
        assert_eq!(parse_bandwidth("1.5mbit"), Ok(187_500));
        assert_eq!(parse_bandwidth("125kB"), Ok(125_000));
        assert_eq!(parse_bandwidth("900B"), Ok(900));
        for bad in ["1", "mbit", "1 furlong", "0kbit", "-1mbit"] {
            assert!(parse_bandwidth(bad).is_err(), "{bad}");
        }
        let stall: LossStall = "0.5%@250ms".parse().expect("valid");
        assert_eq!((stall.per_million, stall.stall), (5_000, ms(250)));
        assert_eq!(stall.percent(), 0.5);
        for bad in ["1%", "1@200ms", "101%@1s", "x%@1s", "1%@soon"] {
            assert!(bad.parse::<LossStall>().is_err(), "{bad}");
        }
    }

    #[test]
    fn profiles_are_named_and_imperfect() {
        for p in &PROFILES {
            let spec = p.spec();
            assert_eq!(Profile::named(p.name), Some(p));
            assert!(!spec.is_perfect(), "{}", p.name);
            assert!(spec.to_string().starts_with(p.name), "{spec}");
        }
        assert_eq!(Profile::named("dialup"), None);
        assert!(LinkSpec::default().is_perfect());
        let lte = Profile::named("lte").map(Profile::spec).unwrap_or_default();
        assert_eq!(lte.bandwidth, Some(1_250_000));
        let json = serde_json::to_value(&lte).expect("json");
        assert_eq!(json["latency_ms"], 35.0);
        assert_eq!(json["loss_stall"]["stall_ms"], 200.0);
        let back: LinkSpec = serde_json::from_value(json).expect("back");
        assert_eq!(back, lte);
    }
}
