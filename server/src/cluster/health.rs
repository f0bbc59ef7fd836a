//! Whether the directory is in step with Redis, and the counters `/metrics` shows.
//!
//! Degraded is not down: a node whose Redis is unreachable keeps running its rooms and
//! taking direct joins; only the cluster-wide view (listing, matchmaking, placement)
//! waits for Redis. `/readyz` reports the reason in its body.

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The directory's state, as `/readyz` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Registered, and the last call to Redis succeeded.
    Healthy,
    /// Not in step with Redis, and why (the last error, or "not registered yet"); writes
    /// are kept and retried with backoff.
    Degraded(String),
}

impl Health {
    /// True for [`Health::Healthy`].
    pub fn is_healthy(&self) -> bool {
        matches!(self, Self::Healthy)
    }
}

/// Counters of the directory, to register in the server's `/metrics` registry.
#[derive(Debug, Default)]
pub struct DirectoryMetrics {
    /// Calls to Redis that failed (unreachable, timed out, or an error reply).
    pub redis_errors: Counter,
    /// Full registrations after the first: Redis had lost the node (restarted, or the
    /// node stalled past its TTL), or writes had failed.
    pub reregistrations: Counter,
    /// Seats reserved by matchmaking on this node.
    pub reservations: Counter,
    /// Matchmaking requests that found no free seat in the cluster.
    pub reservations_none: Counter,
    /// New rooms placed by this node.
    pub placements: Counter,
    /// 1 while degraded, 0 while healthy.
    pub degraded: Gauge<i64, std::sync::atomic::AtomicI64>,
    /// Calls to Redis made (each is one round trip: one command or one script).
    pub redis_calls: Counter<u64, AtomicU64>,
}

impl DirectoryMetrics {
    /// Registers every counter under `cluster_` in `registry` (so with the server's
    /// `tickcast` prefix: `tickcast_cluster_redis_errors_total`, ...).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cluster");
        r.register(
            "redis_errors",
            "Calls to Redis that failed",
            self.redis_errors.clone(),
        );
        r.register(
            "redis_calls",
            "Calls to Redis (round trips)",
            self.redis_calls.clone(),
        );
        r.register(
            "reregistrations",
            "Re-registrations after Redis lost this node",
            self.reregistrations.clone(),
        );
        r.register(
            "reservations",
            "Seats reserved by matchmaking on this node",
            self.reservations.clone(),
        );
        r.register(
            "reservations_none",
            "Matchmaking requests that found no free seat",
            self.reservations_none.clone(),
        );
        r.register(
            "placements",
            "New rooms placed by this node",
            self.placements.clone(),
        );
        r.register(
            "degraded",
            "1 while the room directory is out of step with Redis",
            self.degraded.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_appear_under_the_cluster_prefix() {
        let m = DirectoryMetrics::default();
        m.redis_errors.inc();
        m.degraded.set(1);
        let mut registry = Registry::with_prefix("tickcast");
        m.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(
            text.contains("tickcast_cluster_redis_errors_total 1\n"),
            "{text}"
        );
        assert!(text.contains("tickcast_cluster_degraded 1\n"), "{text}");
        assert!(
            text.contains("tickcast_cluster_placements_total 0\n"),
            "{text}"
        );
    }
}
