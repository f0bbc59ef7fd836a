//! When to call the Agones SDK sidecar, and what: the I/O-free part of [`super`].
//!
//! The driver asks [`Schedule::poll_call`] with the time and the player numbers it just
//! read; the answer is the one call due now, if any, in priority order: Ready (until it
//! succeeds, with backoff), Health (at its fixed period, whatever the last one did),
//! then the `players` Counter (whenever the numbers differ from what the sidecar last
//! accepted, with backoff after a failure). The driver makes the call and reports the
//! result to [`Schedule::handle_result`], which says whether that is worth a log line.
//! [`Schedule::poll_timeout`] says when to ask again. No clock and no socket here: the
//! tests step the time by hand.

use std::time::{Duration, Instant};

/// First wait after a failed Ready or Counter update; doubled per failure in a row.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);

/// Longest wait between two tries of a failing Ready or Counter update.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The player numbers the sidecar is told, as the Counter `players`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Players {
    /// Players in this server's rooms now (never above `capacity`, which the SDK refuses).
    pub count: u64,
    /// Players this server takes at most; while draining, no more than it has.
    pub capacity: u64,
}

impl Players {
    /// What to report for `players` in a server that takes `capacity` at most. A
    /// draining server takes nobody new, so its capacity shrinks to its count: fleet
    /// autoscaling and allocation filters then see no free seat there.
    pub fn observed(players: u64, capacity: u64, draining: bool) -> Self {
        let capacity = if draining {
            players.min(capacity)
        } else {
            capacity
        };
        Self {
            count: players.min(capacity),
            capacity,
        }
    }
}

/// One call to the sidecar (Shutdown is not here: it is the driver's last act).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `POST /ready`: the server is listening and takes players.
    Ready,
    /// `POST /health`: the server is alive.
    Health,
    /// `PATCH /v1beta1/counters/players`: the player count and capacity.
    Players(Players),
}

/// The kinds of call, each with its own failure streak (for backoff and logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ready,
    Health,
    Players,
}

impl Kind {
    fn of(call: &Call) -> Self {
        match call {
            Call::Ready => Self::Ready,
            Call::Health => Self::Health,
            Call::Players(_) => Self::Players,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What the driver should log about a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    /// Nothing new: a success after a success, or one more failure of a streak.
    Quiet,
    /// The first failure of a streak: a warning, once, not one per retry.
    Failing,
    /// A success ending a streak of `failures` failures.
    Recovered {
        /// How many calls of this kind failed in a row before.
        failures: u32,
    },
}

/// The call plan of one server; see the module doc.
#[derive(Debug, Clone)]
pub struct Schedule {
    health_period: Duration,
    ready: bool,
    /// When Ready may be tried (again).
    next_ready: Instant,
    next_health: Instant,
    /// What the sidecar last accepted for `players`.
    players_sent: Option<Players>,
    /// No Counter update before this (backoff after a failure).
    next_players: Instant,
    /// Failures in a row, by [`Kind`].
    failures: [u32; 3],
}

impl Schedule {
    /// A plan starting at `now`: Ready and Health are due at once.
    pub fn new(now: Instant, health_period: Duration) -> Self {
        Self {
            health_period,
            ready: false,
            next_ready: now,
            next_health: now,
            players_sent: None,
            next_players: now,
            failures: [0; 3],
        }
    }

    /// Whether the sidecar has accepted Ready.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// The call due at `now`, if any, given the `players` numbers just observed.
    /// Counter updates wait for Ready, so the sidecar hears Ready first.
    pub fn poll_call(&self, now: Instant, players: Players) -> Option<Call> {
        if !self.ready && now >= self.next_ready {
            return Some(Call::Ready);
        }
        if now >= self.next_health {
            return Some(Call::Health);
        }
        if self.ready && self.players_sent != Some(players) && now >= self.next_players {
            return Some(Call::Players(players));
        }
        None
    }

    /// When a call is next due, given the `players` numbers just observed (they can
    /// change before then: the driver also looks again on its own).
    pub fn poll_timeout(&self, players: Players) -> Instant {
        let mut at = self.next_health;
        if !self.ready {
            at = at.min(self.next_ready);
        } else if self.players_sent != Some(players) {
            at = at.min(self.next_players);
        }
        at
    }

    /// Records how `call`, made at `now`, went.
    pub fn handle_result(&mut self, call: Call, ok: bool, now: Instant) -> Report {
        let kind = Kind::of(&call);
        let streak = &mut self.failures[kind.index()];
        let report = match (ok, *streak) {
            (true, 0) => Report::Quiet,
            (true, failures) => Report::Recovered { failures },
            (false, 0) => Report::Failing,
            (false, _) => Report::Quiet,
        };
        *streak = if ok { 0 } else { streak.saturating_add(1) };
        let backoff = backoff(*streak);
        match call {
            Call::Ready if ok => self.ready = true,
            Call::Ready => self.next_ready = now + backoff,
            // A fixed period either way: Agones counts missed periods, and a failed
            // call is no reason to call sooner or later than the next one is due.
            Call::Health => {
                self.next_health = now + self.health_period;
                // The sidecar answers again: a Ready still owed need not wait out its
                // backoff (the sidecar may have started after us).
                if ok && !self.ready {
                    self.next_ready = now;
                }
            }
            Call::Players(sent) if ok => self.players_sent = Some(sent),
            Call::Players(_) => self.next_players = now + backoff,
        }
        report
    }
}

/// The wait after `failures` failures in a row: [`BACKOFF_MIN`] doubled per failure
/// after the first, at most [`BACKOFF_MAX`].
pub fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let doublings = (failures - 1).min(16);
    BACKOFF_MIN.saturating_mul(1 << doublings).min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(2);

    fn players(count: u64) -> Players {
        Players::observed(count, 100, false)
    }

    /// Polls at `now` and answers the call (if any) with `ok`.
    fn step(s: &mut Schedule, now: Instant, seen: Players, ok: bool) -> Option<Call> {
        let call = s.poll_call(now, seen)?;
        s.handle_result(call, ok, now);
        Some(call)
    }

    #[test]
    fn ready_comes_first_then_health_then_the_counter() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, PERIOD);
        let seen = players(0);
        assert_eq!(step(&mut s, t0, seen, true), Some(Call::Ready));
        assert_eq!(step(&mut s, t0, seen, true), Some(Call::Health));
        assert_eq!(step(&mut s, t0, seen, true), Some(Call::Players(seen)));
        assert_eq!(s.poll_call(t0, seen), None, "everything said");
        assert_eq!(s.poll_timeout(seen), t0 + PERIOD);
    }

    #[test]
    fn health_keeps_its_period_whatever_the_answer() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, PERIOD);
        let seen = players(0);
        while step(&mut s, t0, seen, true).is_some() {}
        for n in 1..=3u32 {
            let now = t0 + PERIOD * n;
            assert_eq!(s.poll_call(now - Duration::from_millis(1), seen), None);
            // Alternately failing and succeeding: the next one is still one period on.
            assert_eq!(step(&mut s, now, seen, n % 2 == 0), Some(Call::Health));
            assert_eq!(s.poll_timeout(seen), now + PERIOD);
        }
    }

    #[test]
    fn a_failing_ready_is_retried_with_growing_backoff_while_health_goes_on() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, PERIOD);
        let seen = players(3);
        let call = s.poll_call(t0, seen);
        assert_eq!(call, Some(Call::Ready));
        assert_eq!(s.handle_result(Call::Ready, false, t0), Report::Failing);
        assert_eq!(
            s.poll_call(t0, seen),
            Some(Call::Health),
            "health is not held up"
        );
        s.handle_result(Call::Health, false, t0);
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..8 {
            let next = s.poll_timeout(seen);
            if next == t0 + PERIOD {
                break;
            }
            waits.push(next - now);
            now = next;
            assert_eq!(s.poll_call(now, seen), Some(Call::Ready));
            assert_eq!(s.handle_result(Call::Ready, false, now), Report::Quiet);
        }
        let ms: Vec<u128> = waits.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [100, 200, 400, 800],
            "doubling until the health call is due"
        );
        assert!(!s.is_ready());
        // No counter update before Ready, however the numbers change.
        assert_eq!(s.poll_call(now, players(9)), None);
        let report = s.handle_result(Call::Ready, true, now);
        assert_eq!(report, Report::Recovered { failures: 5 });
        assert!(s.is_ready());
        assert_eq!(
            s.poll_call(now, players(9)),
            Some(Call::Players(players(9)))
        );
    }

    #[test]
    fn a_sidecar_that_answers_health_again_gets_ready_at_once() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, PERIOD);
        let seen = players(0);
        assert_eq!(step(&mut s, t0, seen, false), Some(Call::Ready));
        assert_eq!(step(&mut s, t0, seen, false), Some(Call::Health));
        for _ in 0..4 {
            let now = s.poll_timeout(seen);
            assert_eq!(step(&mut s, now, seen, false), Some(Call::Ready));
        }
        let t1 = t0 + PERIOD;
        assert_eq!(
            s.poll_timeout(seen),
            t1,
            "Ready backs off past the next health call"
        );
        let mut still_down = s.clone();
        assert_eq!(step(&mut still_down, t1, seen, false), Some(Call::Health));
        assert_eq!(still_down.poll_call(t1, seen), None, "backing off");
        assert_eq!(step(&mut s, t1, seen, true), Some(Call::Health));
        assert_eq!(s.poll_call(t1, seen), Some(Call::Ready), "no more backoff");
    }

    #[test]
    fn the_counter_follows_changes_and_backs_off_when_refused() {
        let t0 = Instant::now();
        let mut s = Schedule::new(t0, PERIOD);
        while step(&mut s, t0, players(0), true).is_some() {}
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(
            step(&mut s, t1, players(1), true),
            Some(Call::Players(players(1)))
        );
        assert_eq!(s.poll_call(t1, players(1)), None, "sent once");
        assert_eq!(
            s.handle_result(Call::Players(players(2)), false, t1),
            Report::Failing
        );
        assert_eq!(s.poll_call(t1, players(2)), None, "backing off");
        assert_eq!(s.poll_timeout(players(2)), t1 + BACKOFF_MIN);
        // Back to what the sidecar holds: nothing to send, nothing to wait for.
        assert_eq!(s.poll_call(t1 + BACKOFF_MIN, players(1)), None);
        assert_eq!(s.poll_timeout(players(1)), t0 + PERIOD);
        let t2 = t1 + BACKOFF_MIN;
        assert_eq!(s.poll_call(t2, players(2)), Some(Call::Players(players(2))));
        assert_eq!(
            s.handle_result(Call::Players(players(2)), true, t2),
            Report::Recovered { failures: 1 }
        );
    }

    #[test]
    fn draining_shrinks_capacity_to_the_count() {
        assert_eq!(
            Players::observed(7, 100, false),
            Players {
                count: 7,
                capacity: 100
            }
        );
        assert_eq!(
            Players::observed(7, 100, true),
            Players {
                count: 7,
                capacity: 7
            }
        );
        // The SDK refuses a count above the capacity: never send one.
        assert_eq!(
            Players::observed(130, 100, false),
            Players {
                count: 100,
                capacity: 100
            }
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(0), Duration::ZERO);
        assert_eq!(backoff(1), Duration::from_millis(100));
        assert_eq!(backoff(3), Duration::from_millis(400));
        assert_eq!(backoff(7), BACKOFF_MAX);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }
}
