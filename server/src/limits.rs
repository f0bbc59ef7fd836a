//! Per-connection rate limiting, I/O-free: a token bucket with time passed in.
//!
//! Inputs are latest-wins, so a flood never grows memory, but every message still
//! costs a decode. The bucket bounds that cost per connection: `rate` messages per
//! second sustained, bursts up to `burst`. A client that keeps exceeding it is closed
//! with [`tickcast_shared::DisconnectReason::RateLimited`].

use std::time::Instant;

/// A token bucket.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` per second, holding at most `burst`.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token; `false` when the bucket is empty (the message is over the limit).
    pub fn try_take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_sustained_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(100, 10, t0);
        assert!((0..10).all(|_| b.try_take(t0)));
        assert!(!b.try_take(t0));
        // 100/s: one token every 10 ms.
        assert!(b.try_take(t0 + Duration::from_millis(10)));
        assert!(!b.try_take(t0 + Duration::from_millis(10)));
        // A second at exactly the rate never runs dry.
        let mut t = t0 + Duration::from_millis(10);
        for _ in 0..100 {
            t += Duration::from_millis(10);
            assert!(b.try_take(t));
        }
        // Idle time refills at most to the burst.
        let later = t + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.try_take(later)).count(), 10);
    }
}
