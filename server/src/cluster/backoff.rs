//! How long to wait before the next try at Redis after a failure: exponential, capped,
//! with jitter. I/O-free: the caller passes the random draw, so tests are exact.
//!
//! Jitter matters when Redis comes back: every node failed at once, and without it they
//! would all retry in the same millisecond, again and again.

use std::time::Duration;

/// Exponential backoff from `base`, doubling per failure up to `cap`.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    /// Starts at `base` and never exceeds `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap: cap.max(base),
            failures: 0,
        }
    }

    /// The wait after one more failure. `draw` is a uniform random number in `[0, 1)`:
    /// the wait is between half and all of `min(cap, base * 2^failures)` ("equal
    /// jitter": never less than half, so the backoff still grows).
    pub fn next(&mut self, draw: f64) -> Duration {
        let step = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let draw = draw.clamp(0.0, 1.0);
        step.mul_f64(0.5 + draw / 2.0)
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn doubles_up_to_the_cap() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        let waits: Vec<Duration> = (0..6).map(|_| b.next(1.0)).collect();
        assert_eq!(
            waits,
            [100 * MS, 200 * MS, 400 * MS, 800 * MS, 1000 * MS, 1000 * MS]
        );
        assert_eq!(b.failures(), 6);
    }

    #[test]
    fn jitter_keeps_at_least_half() {
        let mut b = Backoff::new(100 * MS, 1000 * MS);
        assert_eq!(b.next(0.0), 50 * MS);
        assert_eq!(b.next(0.5), 150 * MS);
    }

    #[test]
    fn reset_starts_again_and_many_failures_do_not_overflow() {
        let mut b = Backoff::new(100 * MS, 5000 * MS);
        for _ in 0..100 {
            b.next(1.0);
        }
        assert_eq!(b.next(1.0), 5000 * MS);
        b.reset();
        assert_eq!(b.failures(), 0);
        assert_eq!(b.next(1.0), 100 * MS);
    }
}
