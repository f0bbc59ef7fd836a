//! Rate limits per client address, I/O-free: one token bucket per address, time
//! passed in.
//!
//! Used for `POST /matchmake` (`--matchmake-per-ip-per-sec`) and for rooms created on
//! demand (`--room-creates-per-ip-per-min`). The map is bounded: an address whose
//! bucket has refilled completely holds no state worth keeping (a fresh bucket is full
//! too), so such entries are evicted; and when the map still reaches its capacity the
//! request is refused as if its bucket were empty, rather than growing the map. The
//! capacity is far above what the connection caps let in at once, so that is a flood of
//! distinct addresses (through a trusted proxy), not players.
//!
//! The bucket is our own rather than `crate::limits::TokenBucket`: rates here are below
//! one per second (30 a minute) and a refusal must say when to retry (`Retry-After`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at once by one [`PerIp`] limiter.
pub const MAX_TRACKED: usize = 65_536;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// A rate per client address.
#[derive(Debug)]
pub struct PerIp {
    rate: f64,
    burst: f64,
    capacity: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl PerIp {
    /// `per_sec` sustained, bursts of `burst`, for at most [`MAX_TRACKED`] addresses.
    pub fn new(per_sec: f64, burst: u32) -> Self {
        Self::with_capacity(per_sec, burst, MAX_TRACKED)
    }

    /// As [`PerIp::new`], tracking at most `capacity` addresses.
    pub fn with_capacity(per_sec: f64, burst: u32, capacity: usize) -> Self {
        Self {
            rate: per_sec.max(f64::MIN_POSITIVE),
            burst: f64::from(burst.max(1)),
            capacity: capacity.max(1),
            buckets: Mutex::default(),
        }
    }

    /// Takes one token for `ip` at `now`.
    ///
    /// # Errors
    /// How long until a token is there, when there is none (round it up for
    /// `Retry-After`).
    pub fn try_take(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if !buckets.contains_key(&ip) && buckets.len() >= self.capacity {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| refilled(b, rate, burst, now) < burst);
            if buckets.len() >= self.capacity {
                // Full of addresses that are all still limited: refuse the newcomer for
                // as long as a fresh token takes, rather than grow.
                return Err(Duration::from_secs_f64(1.0 / self.rate));
            }
        }
        let bucket = buckets.entry(ip).or_insert(Bucket {
            tokens: self.burst,
            last: now,
        });
        bucket.tokens = refilled(bucket, self.rate, self.burst, now);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

fn refilled(b: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let dt = now.saturating_duration_since(b.last).as_secs_f64();
    (b.tokens + dt * rate).min(burst)
}

/// Whole seconds for `Retry-After` (RFC 9110 section 10.2.3): at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let whole = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    whole.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn burst_then_rate_per_address() {
        let t0 = Instant::now();
        let limit = PerIp::new(5.0, 10);
        assert!((0..10).all(|_| limit.try_take(ip(1), t0).is_ok()));
        let wait = limit.try_take(ip(1), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(200));
        assert_eq!(retry_after_secs(wait), 1);
        // Another address has its own bucket.
        assert!(limit.try_take(ip(2), t0).is_ok());
        // 5 a second: one token every 200 ms.
        assert!(limit
            .try_take(ip(1), t0 + Duration::from_millis(200))
            .is_ok());
        assert!(limit
            .try_take(ip(1), t0 + Duration::from_millis(200))
            .is_err());
    }

    #[test]
    fn slow_rates_say_how_long_to_wait() {
        let t0 = Instant::now();
        let per_min = PerIp::new(30.0 / 60.0, 30);
        assert!((0..30).all(|_| per_min.try_take(ip(1), t0).is_ok()));
        let wait = per_min.try_take(ip(1), t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(2));
        assert_eq!(retry_after_secs(wait), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }

    #[test]
    fn the_map_is_bounded_and_evicts_refilled_addresses() {
        let t0 = Instant::now();
        let limit = PerIp::with_capacity(1.0, 2, 3);
        for i in 0..3 {
            assert!(limit.try_take(ip(i), t0).is_ok());
        }
        // Full, and nobody has refilled: a fourth address is refused, not tracked.
        assert!(limit.try_take(ip(3), t0).is_err());
        assert_eq!(limit.tracked(), 3);
        // One second later every bucket is full again: they are evicted to make room.
        let later = t0 + Duration::from_secs(1);
        assert!(limit.try_take(ip(3), later).is_ok());
        assert_eq!(limit.tracked(), 1);
    }
}
