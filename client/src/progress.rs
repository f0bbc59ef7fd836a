//! What a running swarm looks like right now, for a live progress line.
//!
//! [`crate::swarm::run_swarm_with_progress`] hands a [`Progress`] sample to its caller
//! about twice a second; the caller turns consecutive samples into a line with
//! [`progress_line`]. Drawing it is the binary's business (indicatif, and only on a
//! terminal); this module has no I/O, so the arithmetic is tested here.

use std::time::Duration;

/// Counters of a running swarm at one moment. Totals only grow, except `connected`,
/// which is the number of bots connected at that moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Time since the swarm started.
    pub elapsed: Duration,
    /// Bots in the run.
    pub bots: u64,
    /// Bots connected now (welcomed, not reconnecting, and not yet ended).
    pub connected: u64,
    /// Bots whose connect failed so far.
    pub failed: u64,
    /// Snapshots received by all bots so far.
    pub snapshots_received: u64,
    /// WebSocket payload bytes received by all bots so far.
    pub bytes_received: u64,
    /// 99th percentile of the round-trip times measured since the previous sample;
    /// `None` when no pong arrived in between.
    pub rtt_p99: Option<Duration>,
}

/// One line for a person: connected and failed bots, and the rates between `prev`
/// and `now` (all bots together). Without `prev`, rates are averaged from the start.
pub fn progress_line(prev: Option<&Progress>, now: &Progress) -> String {
    let base = prev.copied().unwrap_or_default();
    let dt = now.elapsed.saturating_sub(base.elapsed).as_secs_f64();
    let rate = |now: u64, before: u64| {
        if dt > 0.0 {
            now.saturating_sub(before) as f64 / dt
        } else {
            0.0
        }
    };
    let snapshots = rate(now.snapshots_received, base.snapshots_received);
    let mbytes = rate(now.bytes_received, base.bytes_received) / 1e6;
    let rtt = now.rtt_p99.map_or_else(
        || "-".to_owned(),
        |d| format!("{:.1} ms", d.as_secs_f64() * 1000.0),
    );
    format!(
        "connected {}/{}  failed {}  {snapshots:.0} snapshots/s  {mbytes:.2} MB/s  rtt p99 {rtt}",
        now.connected, now.bots, now.failed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_the_difference_between_samples() {
        let prev = Progress {
            elapsed: Duration::from_secs(2),
            bots: 100,
            connected: 50,
            failed: 0,
            snapshots_received: 1_000,
            bytes_received: 1_000_000,
            rtt_p99: None,
        };
        let now = Progress {
            elapsed: Duration::from_millis(2500),
            connected: 98,
            failed: 2,
            snapshots_received: 2_500,
            bytes_received: 2_000_000,
            rtt_p99: Some(Duration::from_micros(2_340)),
            ..prev
        };
        assert_eq!(
            progress_line(Some(&prev), &now),
            "connected 98/100  failed 2  3000 snapshots/s  2.00 MB/s  rtt p99 2.3 ms"
        );
        // First sample: averaged from the start; no pong yet shows a dash.
        assert_eq!(
            progress_line(None, &prev),
            "connected 50/100  failed 0  500 snapshots/s  0.50 MB/s  rtt p99 -"
        );
        // Two samples at the same instant: no division by zero.
        assert!(progress_line(Some(&now), &now).contains(" 0 snapshots/s"));
    }
}
