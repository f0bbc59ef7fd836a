//! Matchmaking tickets: single-use secrets that each hold a reserved seat in a room
//! until the player's WebSocket join presents them, or until they expire.
//!
//! I/O-free: time is passed in. Expired tickets are purged (releasing their seats) on
//! every use and by a periodic sweep, so an abandoned ticket frees its seat within
//! `--ticket-ttl` plus the sweep interval.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::rooms::Seat;

/// Why a ticket was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Never issued, or already used.
    #[error("unknown or already used ticket")]
    Unknown,
    /// Issued, but its time ran out.
    #[error("expired ticket")]
    Expired,
    /// Issued for another room.
    #[error("ticket is for another room")]
    WrongRoom,
}

#[derive(Debug)]
struct Entry {
    seat: Seat,
    expires: Instant,
}

/// Outstanding tickets.
#[derive(Debug)]
pub struct Tickets {
    ttl: Duration,
    map: Mutex<HashMap<String, Entry>>,
}

impl Tickets {
    /// A store whose tickets live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            map: Mutex::default(),
        }
    }

    /// How long a ticket lives.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Issues a ticket (32 hex characters, 128 random bits) holding `seat`.
    pub fn issue(&self, seat: Seat, now: Instant) -> String {
        let bytes: [u8; 16] = rand::random();
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        purge_locked(&mut map, now);
        map.insert(
            ticket.clone(),
            Entry {
                seat,
                expires: now + self.ttl,
            },
        );
        ticket
    }

    /// Uses up `ticket` for a join to `room`, handing over its seat.
    ///
    /// # Errors
    /// [`TicketError`]; the ticket is used up either way (single use).
    pub fn redeem(&self, ticket: &str, room: &str, now: Instant) -> Result<Seat, TicketError> {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        let entry = map.remove(ticket).ok_or(TicketError::Unknown)?;
        purge_locked(&mut map, now);
        if now >= entry.expires {
            return Err(TicketError::Expired);
        }
        if entry.seat.room().name() != room {
            return Err(TicketError::WrongRoom);
        }
        Ok(entry.seat)
    }

    /// Drops expired tickets, releasing their seats. Returns how many.
    pub fn purge(&self, now: Instant) -> usize {
        purge_locked(&mut self.map.lock().unwrap_or_else(|e| e.into_inner()), now)
    }
}

fn purge_locked(map: &mut HashMap<String, Entry>, now: Instant) -> usize {
    let before = map.len();
    map.retain(|_, e| now < e.expires);
    before - map.len()
}

/// The reservation ids of cluster tickets already used on this node, each kept until
/// its ticket's expiry: a cluster ticket is verified without Redis (its signature), so
/// only this memory makes it single-use. Bounded by the tickets issued for this node
/// within one ticket TTL.
#[derive(Debug, Default)]
pub struct UsedRids {
    map: Mutex<HashMap<String, u64>>,
}

impl UsedRids {
    /// Records `rid` (whose ticket expires at `exp`, Unix seconds) as used at `now`
    /// (Unix seconds). False if it was used already: the ticket is refused.
    pub fn first_use(&self, rid: &str, exp: u64, now: u64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, e| *e >= now);
        if map.contains_key(rid) {
            return false;
        }
        map.insert(rid.to_owned(), exp);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rid_is_used_once_and_forgotten_after_its_expiry() {
        let used = UsedRids::default();
        assert!(used.first_use("a", 100, 50));
        assert!(!used.first_use("a", 100, 60));
        assert!(used.first_use("b", 100, 60));
        // Past its expiry the ticket itself is refused as expired; the memory goes.
        assert!(used.first_use("a", 300, 101));
        assert_eq!(used.map.lock().unwrap().len(), 1);
    }
}
