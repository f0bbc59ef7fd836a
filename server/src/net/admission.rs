//! Admission at accept: the connection caps, checked before TLS and HTTP.
//!
//! Every accepted TCP connection takes a [`Permit`] before anything else happens to it,
//! so a peer that opens sockets and sends nothing (or half a TLS handshake) holds a
//! permit like any other and counts against `--max-connections` and
//! `--max-connections-per-ip`. The permit gives itself back when dropped: it lives in
//! the connection's task (and, after an upgrade, in the WebSocket's), so no path can
//! forget it. At accept only the TCP peer's address exists; `X-Forwarded-For` is read
//! later, per request (see [`super::client_ip`]).
//!
//! The `connections_open` gauge (WebSocket connections) comes from the same permit: an
//! upgrade turns it into an [`OpenWebSocket`], which counts itself open until dropped.
//!
//! This module holds counts only, no socket: the accept loop asks, and writes the
//! refusal ([`Refused::canned_response`]) itself.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::metrics::{CountGauge, Metrics};

/// Which cap turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `--max-connections`: the server holds as many connections as it may.
    Total,
    /// `--max-connections-per-ip`: this address holds as many as it may.
    PerIp,
}

impl Refused {
    /// The `reason` label of `tickcast_connections_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Total => "max_connections",
            Self::PerIp => "max_connections_per_ip",
        }
    }

    /// The whole HTTP/1.1 response written to a refused plain-text connection, before
    /// its request is read: a 503 that names the cap, and `Connection: close`.
    pub fn canned_response(self) -> &'static [u8] {
        match self {
            Self::Total => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Content-Length: 54\r\nConnection: close\r\n\r\n\
                  too many connections to this server (max-connections)\n"
            }
            Self::PerIp => {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n\
                  Content-Length: 64\r\nConnection: close\r\n\r\n\
                  too many connections from your address (max-connections-per-ip)\n"
            }
        }
    }
}

/// The caps of one listener and what it holds now. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Admission {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    max_total: usize,
    /// 0: no per-address limit.
    max_per_ip: usize,
    held: Mutex<Held>,
    /// Mirrors `Held::total` for `/metrics`.
    gauge: CountGauge,
}

/// The permits out now. An address is in `per_ip` only while it holds one, so the map
/// is never larger than `total` (itself at most `max_total`).
#[derive(Debug, Default)]
struct Held {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    /// Caps of `max_total` connections, and `max_per_ip` from one address (0: none).
    /// `gauge` is set to the number of permits out.
    pub fn new(max_total: usize, max_per_ip: usize, gauge: CountGauge) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_total,
                max_per_ip,
                held: Mutex::default(),
                gauge,
            }),
        }
    }

    /// A permit for a connection from `ip`, unless a cap is reached.
    ///
    /// # Errors
    /// [`Refused::Total`] or [`Refused::PerIp`]: the cap that is reached (the total
    /// first, since it is the server's own state).
    pub fn admit(&self, ip: IpAddr) -> Result<Permit, Refused> {
        let mut held = self.inner.lock();
        if held.total >= self.inner.max_total {
            return Err(Refused::Total);
        }
        let mine = held.per_ip.entry(ip).or_insert(0);
        if self.inner.max_per_ip > 0 && *mine >= self.inner.max_per_ip {
            return Err(Refused::PerIp);
        }
        *mine += 1;
        held.total += 1;
        self.inner.gauge.set(held.total as u64);
        Ok(Permit {
            inner: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Permits out now.
    pub fn open(&self) -> usize {
        self.inner.lock().total
    }

    /// The `--max-connections` of this listener.
    pub fn max_total(&self) -> usize {
        self.inner.max_total
    }

    /// Addresses holding a permit now (what the per-address map costs).
    pub fn addresses(&self) -> usize {
        self.inner.lock().per_ip.len()
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Held> {
        // The counts stay consistent under a poisoned lock: every update is one step.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    ip: IpAddr,
}

impl Permit {
    /// The TCP peer's address it was taken for.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut held = self.inner.lock();
        held.total = held.total.saturating_sub(1);
        if let Some(mine) = held.per_ip.get_mut(&self.ip) {
            *mine = mine.saturating_sub(1);
            if *mine == 0 {
                held.per_ip.remove(&self.ip);
            }
        }
        self.inner.gauge.set(held.total as u64);
    }
}

/// A WebSocket connection's share of its permit: counted in `connections_open` from
/// the upgrade until dropped, and keeping the permit (shared with the HTTP task that
/// upgraded) alive as long as the WebSocket lives.
#[derive(Debug)]
pub struct OpenWebSocket {
    _permit: Arc<Permit>,
    metrics: Arc<Metrics>,
}

impl OpenWebSocket {
    /// Counts a WebSocket open on `permit`'s connection.
    pub fn new(permit: Arc<Permit>, metrics: Arc<Metrics>) -> Self {
        metrics.connections_open.fetch_add(1, Relaxed);
        Self {
            _permit: permit,
            metrics,
        }
    }
}

impl Drop for OpenWebSocket {
    fn drop(&mut self) {
        self.metrics.connections_open.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn per_address_cap_then_a_freed_permit_lets_one_in() {
        let gauge = CountGauge::default();
        let a = Admission::new(10, 2, gauge.clone());
        let first = a.admit(ip(1)).unwrap();
        let _second = a.admit(ip(1)).unwrap();
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refused::PerIp);
        // Another address is not affected.
        let other = a.admit(ip(2)).unwrap();
        assert_eq!((a.open(), gauge.get(), a.addresses()), (3, 3, 2));
        drop(first);
        assert_eq!(a.open(), 2);
        let _again = a.admit(ip(1)).unwrap();
        drop(other);
        // An address that holds nothing leaves the map: it cannot grow with addresses
        // that came and went.
        assert_eq!((a.open(), a.addresses()), (2, 1));
    }

    #[test]
    fn total_cap_comes_first_and_zero_means_no_per_address_cap() {
        let a = Admission::new(3, 0, CountGauge::default());
        let held: Vec<Permit> = (0..3).map(|_| a.admit(ip(1)).unwrap()).collect();
        assert_eq!(a.admit(ip(1)).unwrap_err(), Refused::Total);
        assert_eq!(a.admit(ip(9)).unwrap_err(), Refused::Total);
        drop(held);
        assert_eq!((a.open(), a.addresses()), (0, 0));
        assert!(a.admit(ip(9)).is_ok());
    }

    #[test]
    fn websocket_share_counts_until_dropped_and_keeps_the_permit() {
        let metrics = Arc::new(Metrics::default());
        let a = Admission::new(1, 1, CountGauge::default());
        let permit = Arc::new(a.admit(ip(1)).unwrap());
        let ws = OpenWebSocket::new(Arc::clone(&permit), Arc::clone(&metrics));
        drop(permit); // the HTTP task ends after the upgrade
        assert_eq!(metrics.connections_open.load(Relaxed), 1);
        assert_eq!(a.admit(ip(2)).unwrap_err(), Refused::Total);
        drop(ws);
        assert_eq!(metrics.connections_open.load(Relaxed), 0);
        assert_eq!(a.open(), 0);
    }

    #[test]
    fn canned_responses_state_their_length() {
        for r in [Refused::Total, Refused::PerIp] {
            let text = std::str::from_utf8(r.canned_response()).unwrap();
            let (head, body) = text.split_once("\r\n\r\n").unwrap();
            let len = format!("Content-Length: {}\r\n", body.len());
            assert!(head.contains(&len), "{head:?} for a body of {}", body.len());
            assert!(head.starts_with("HTTP/1.1 503 "));
            assert!(
                body.contains(r.label().replace('_', "-").as_str()),
                "{body}"
            );
        }
    }
}
