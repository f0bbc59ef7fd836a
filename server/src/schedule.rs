//! When ticks are due: a fixed schedule on absolute deadlines, with bounded catch-up.
//!
//! Tick `n` is due at `origin + n * period`. Deadlines are computed from the origin,
//! never by adding a period to "now", so sleeping late does not push the schedule back
//! and the tick count does not drift from wall time.
//!
//! When the room wakes late by more than one period (the machine was busy, a tick was
//! slow), it runs the missed ticks back to back, but at most `max_catch_up` of them per
//! wake-up; any more are dropped and counted as skipped, and the schedule jumps to the
//! present. Game time then runs behind wall time by the skipped ticks, which is better
//! for players than a burst of dozens of ticks. Time is passed in, so this is tested
//! without a runtime.

use std::time::{Duration, Instant};

/// What to do at one wake-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    /// Ticks to run now, back to back (0 if woken early).
    pub run: u32,
    /// Ticks dropped because more than `max_catch_up` were due.
    pub skipped: u64,
    /// How far past the first due deadline this wake-up is.
    pub lateness: Duration,
}

/// The fixed-rate schedule of one room.
#[derive(Debug, Clone)]
pub struct TickClock {
    origin: Instant,
    period: Duration,
    /// Index of the next deadline on the schedule.
    next: u64,
    max_catch_up: u32,
}

impl TickClock {
    /// A schedule whose first tick is due one period after `origin`.
    ///
    /// # Panics
    /// If `tick_rate` or `max_catch_up` is zero (configuration checks this first).
    pub fn new(origin: Instant, tick_rate: u16, max_catch_up: u32) -> Self {
        assert!(
            tick_rate > 0 && max_catch_up > 0,
            "tick rate and catch-up must be positive"
        );
        Self {
            origin,
            period: Duration::from_secs(1) / u32::from(tick_rate),
            next: 1,
            max_catch_up,
        }
    }

    /// The length of one tick.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// When the next tick is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next)
    }

    fn deadline(&self, index: u64) -> Instant {
        // u32 is enough for over four years of ticks at 30 Hz per multiplication step;
        // split to stay exact for longer-lived rooms.
        let whole = u32::try_from(index).unwrap_or(u32::MAX);
        self.origin + self.period * whole
    }

    /// Decides what to run at `now` and advances the schedule past it.
    pub fn poll(&mut self, now: Instant) -> Due {
        let first = self.next_deadline();
        if now < first {
            return Due {
                run: 0,
                skipped: 0,
                lateness: Duration::ZERO,
            };
        }
        let elapsed = now.duration_since(self.origin);
        // Number of deadlines at or before `now`, minus those already handled.
        let passed = (elapsed.as_nanos() / self.period.as_nanos()) as u64;
        let due = passed + 1 - self.next;
        let run = due.min(u64::from(self.max_catch_up));
        self.next = passed + 1;
        Due {
            run: run as u32,
            skipped: due - run,
            lateness: now - first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn on_time_ticks_run_one_each() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, 50, 3); // 20 ms
        assert_eq!(c.next_deadline(), t0 + 20 * MS);
        assert_eq!(c.poll(t0 + 19 * MS).run, 0);
        assert_eq!(
            c.poll(t0 + 21 * MS),
            Due {
                run: 1,
                skipped: 0,
                lateness: MS
            }
        );
        assert_eq!(c.next_deadline(), t0 + 40 * MS);
        assert_eq!(c.poll(t0 + 40 * MS).run, 1);
    }

    #[test]
    fn schedule_does_not_drift_with_late_wakeups() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, 30, 3);
        let mut ran = 0u64;
        let mut now = t0;
        // Wake 3 ms late every time for 10 simulated seconds.
        while now < t0 + Duration::from_secs(10) {
            now = c.next_deadline() + 3 * MS;
            ran += u64::from(c.poll(now).run);
        }
        let expected = (now - t0).as_nanos() / c.period().as_nanos();
        assert_eq!(u128::from(ran), expected);
    }

    #[test]
    fn catch_up_is_bounded_and_the_rest_skipped() {
        let t0 = Instant::now();
        let mut c = TickClock::new(t0, 100, 3); // 10 ms
                                                // Woken at 2 periods: ticks 1 and 2 due.
        assert_eq!(
            c.poll(t0 + 25 * MS),
            Due {
                run: 2,
                skipped: 0,
                lateness: 15 * MS
            }
        );
        // Stalled until 105 ms: ticks 3..=10 due (8), run 3, skip 5.
        let d = c.poll(t0 + 105 * MS);
        assert_eq!((d.run, d.skipped), (3, 5));
        assert_eq!(c.next_deadline(), t0 + 110 * MS);
    }
}
