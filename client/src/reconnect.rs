//! Automatic reconnection: when a player's connection is lost, take the player back on
//! a new connection, so that a game (or a bot) sees one session that outlives sockets.
//!
//! The server keeps a player whose connection dropped without a close frame for its
//! reconnect grace (`--reconnect-grace`, default 10 s). [`ReconnectingConnection`]
//! uses that: when its [`Connection`] is lost ([`ClientError::is_connection_loss`]), or
//! the server closes it with 4003 (idle timeout: the server's own verdict that the
//! connection is lost, after which it keeps the player for the grace too), it connects
//! again to the same room (with the `resume=1` hint, and without a spent `ticket`) and
//! `Hello.resume` set to the session token,
//! waiting a little longer before each attempt ([`Backoff`]), until the server welcomes
//! the same player again, refuses the token (close 4008: [`ClientError::SessionExpired`]),
//! or the time budget runs out ([`ClientError::ReconnectFailed`]). A close frame from
//! the server with any other code (1001 shutting down, 4006 room closed, 1007, ...) is
//! an answer, not a loss: it ends the session as it would end a [`Connection`]
//! (docs/PROTOCOL.md, section 3: resume only after a drop the client did not choose).
//!
//! The player token ([`ConnectOptions::auth_token`]) goes with every resume, since
//! the server checks that a resume comes from the same player. Its refusals end the
//! session without another attempt: 4010, 4011 and 4013 would be answered the same
//! way again, and after 4014 the player is playing on a newer connection, which a
//! retry would only kick out in turn. After 4012 (expired) a fresh token could join
//! again, but the options hold one token and a resume cannot change it: the error
//! ([`ClientError::AuthExpired`]) goes to the caller, who can connect anew with a
//! fresh token from the game's backend.
//!
//! # Why a wrapper, and not more [`Event`]s on [`Connection`]
//! - A game must *know* that a resume happened: its input sequence numbers start again
//!   at 1 and the server's `last_input_seq` with them, so the inputs it keeps for
//!   prediction must be dropped. Hiding the resume is therefore not an option; it is
//!   an event ([`SessionEvent::Reconnected`]), and so is the loss
//!   ([`SessionEvent::Reconnecting`]), which a game shows as "reconnecting...".
//! - [`Event`] is an exhaustive enum that callers match on; new variants would break
//!   every such `match` for a behaviour those callers never asked for. A second type
//!   makes reconnection an explicit choice, visible in the type, and leaves
//!   [`Connection`] what it is: one socket, whose loss is final.
//! - Reconnecting needs state that one socket does not: the options to connect again,
//!   the policy, and a background task. That task is what keeps
//!   [`ReconnectingConnection::next_event`] cancel safe like
//!   [`Connection::next_event`]: the attempts run in it, and `next_event` only waits
//!   for its outcome, so dropping that wait loses nothing.
//!
//! The [`Session`] goes across: per-connection state starts over, the player's totals
//! carry on (see [`Session::resume`]).
//!
//! The schedule itself is I/O-free, like [`crate::session`]: exponential backoff with
//! full jitter (each delay drawn uniformly between zero and a ceiling that doubles from
//! [`ReconnectPolicy::initial`] up to [`ReconnectPolicy::max`]), so that many clients
//! cut at once (a network blip, thousands of bots) do not come back in lockstep.

use std::time::Duration;

use glam::Vec2;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tickcast_shared::{DisconnectReason, SessionToken, Snapshot, Welcome};
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::connection::{
    open, ConnectOptions, Connection, Event, Opened, SnapshotDecoding, Target,
};
use crate::error::ClientError;
use crate::session::Session;

/// Ceiling of the first delay of [`ReconnectPolicy::default`].
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);

/// Largest delay ceiling of [`ReconnectPolicy::default`].
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Time budget of [`ReconnectPolicy::default`]: the server's default reconnect grace,
/// after which a resume can only get 4008.
pub const DEFAULT_RECONNECT_BUDGET: Duration = Duration::from_secs(10);

/// Smallest delay ceiling, whatever the policy says: a zero ceiling would retry a
/// refused connect in a busy loop.
const MIN_BACKOFF: Duration = Duration::from_millis(1);

/// When and for how long to try to reconnect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconnectPolicy {
    /// Ceiling of the delay before the first attempt; each next ceiling is twice the
    /// previous one. At least 1 ms.
    pub initial: Duration,
    /// Largest ceiling.
    pub max: Duration,
    /// Time from noticing the loss after which no attempt is made any more; an attempt
    /// still running then is cut short. Longer than the server's reconnect grace is
    /// pointless: the server then answers 4008.
    pub budget: Duration,
}

impl Default for ReconnectPolicy {
    /// 100 ms doubling up to 2 s, for 10 s (the server's default grace).
    fn default() -> Self {
        Self {
            initial: DEFAULT_INITIAL_BACKOFF,
            max: DEFAULT_MAX_BACKOFF,
            budget: DEFAULT_RECONNECT_BUDGET,
        }
    }
}

impl ReconnectPolicy {
    /// Upper bound of the delay before attempt `attempt` (0 for the first):
    /// `initial * 2^attempt`, at most `max` (and never below 1 ms).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
        self.initial
            .max(MIN_BACKOFF)
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max.max(MIN_BACKOFF))
    }
}

/// The delays of one reconnection, drawn from a seeded RNG so that a test can replay
/// them. No I/O and no clock: the caller says how much time has passed.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    /// Delays handed out so far.
    drawn: u32,
    rng: SmallRng,
}

impl Backoff {
    /// The schedule of `policy`, with jitter drawn from `seed`.
    pub fn new(policy: ReconnectPolicy, seed: u64) -> Self {
        Self {
            policy,
            drawn: 0,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// How long to wait before the next attempt, `elapsed` after the loss: uniformly
    /// drawn between zero and [`ReconnectPolicy::ceiling`] ("full jitter"), cut to what
    /// is left of the budget. `None` once the budget is spent: give up.
    pub fn next_delay(&mut self, elapsed: Duration) -> Option<Duration> {
        let remaining = self.policy.budget.checked_sub(elapsed)?;
        if remaining.is_zero() {
            return None;
        }
        let ceiling = self.policy.ceiling(self.drawn);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let delay = Duration::from_nanos(self.rng.random_range(0..=nanos));
        self.drawn = self.drawn.saturating_add(1);
        Some(delay.min(remaining))
    }

    /// Delays handed out so far.
    pub fn drawn(&self) -> u32 {
        self.drawn
    }
}

/// What a [`ReconnectingConnection`] reports, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionEvent {
    /// As [`Event::Snapshot`]. The first one after [`SessionEvent::Reconnected`] is a
    /// keyframe that replaces the world.
    Snapshot(Snapshot),
    /// As [`Event::Pong`].
    Pong {
        /// Time from sending the ping to receiving this pong.
        rtt: Duration,
    },
    /// As [`Event::Game`].
    Game(Vec<u8>),
    /// As [`Event::Closed`]: the server ended the session; no event follows, and no
    /// reconnection is tried (except after 4003, idle timeout, which reconnects and
    /// reports [`SessionEvent::Reconnecting`] instead).
    Closed {
        /// The close code.
        code: u16,
        /// The close reason text.
        reason: String,
    },
    /// The connection was lost; reconnecting has started. Until the outcome
    /// ([`SessionEvent::Reconnected`], or an error from `next_event`), sends fail with
    /// [`ClientError::Reconnecting`] and the world is not updated.
    Reconnecting {
        /// [`ClientError::kind`] of the loss (`"connection lost"`, `"io: connection reset"`,
        /// `"close 4003"`).
        cause: String,
    },
    /// The server took the player back on a new connection: same player, entity and
    /// token ([`ReconnectingConnection::welcome`] is the new `Welcome`). Input sequence
    /// numbers start again at 1, so drop inputs kept for prediction.
    Reconnected {
        /// Connection attempts it took (1: the first one succeeded).
        attempts: u32,
    },
}

impl SessionEvent {
    /// As [`Event::close_reason`]: what the code of a [`SessionEvent::Closed`] stands
    /// for, such as [`DisconnectReason::Replaced`].
    pub fn close_reason(&self) -> Option<DisconnectReason> {
        match self {
            Self::Closed { code, .. } => DisconnectReason::from_code(*code),
            _ => None,
        }
    }
}

impl From<Event> for SessionEvent {
    fn from(event: Event) -> Self {
        match event {
            Event::Snapshot(s) => Self::Snapshot(s),
            Event::Pong { rtt } => Self::Pong { rtt },
            Event::Game(payload) => Self::Game(payload),
            Event::Closed { code, reason } => Self::Closed { code, reason },
        }
    }
}

/// A player connection that reconnects by itself when its socket is lost (see the
/// [module documentation](self) for what that means and why it is a type of its own).
///
/// Use it like a [`Connection`]; [`ReconnectingConnection::next_event`] additionally
/// reports [`SessionEvent::Reconnecting`] and [`SessionEvent::Reconnected`]. With no
/// policy it never reconnects, and behaves exactly like the [`Connection`] it wraps.
pub struct ReconnectingConnection {
    conn: Connection,
    opts: ConnectOptions,
    target: Target,
    policy: Option<ReconnectPolicy>,
    state: State,
    /// How every socket of this session reads snapshots.
    decoding: SnapshotDecoding,
}

/// Where a [`ReconnectingConnection`] stands.
enum State {
    /// Connected (or lost without having noticed yet).
    Up,
    /// Connecting again, in this task; aborted if the connection is dropped.
    Reconnecting(AbortOnDropHandle<Result<Resumed, ClientError>>),
    /// Closed by the server, failed, or reconnection ended: from here on only the
    /// wrapped [`Connection`] answers, and nothing reconnects.
    Ended,
}

/// A successful reconnection.
struct Resumed {
    opened: Opened,
    attempts: u32,
}

impl std::fmt::Debug for ReconnectingConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::Up => "up",
            State::Reconnecting(_) => "reconnecting",
            State::Ended => "ended",
        };
        f.debug_struct("ReconnectingConnection")
            .field("conn", &self.conn)
            .field("policy", &self.policy)
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl ReconnectingConnection {
    /// Connects as [`Connection::connect`] does (the first connection is not retried:
    /// a failure there is the caller's to handle), and reconnects by `policy` later;
    /// `None` never reconnects.
    ///
    /// # Errors
    /// As [`Connection::connect`].
    pub async fn connect(
        opts: ConnectOptions,
        policy: Option<ReconnectPolicy>,
    ) -> Result<Self, ClientError> {
        Self::connect_with(opts, policy, SnapshotDecoding::Rebuild).await
    }

    /// [`ReconnectingConnection::connect`], reading snapshots as `decoding` says, on
    /// the first socket and on every resumed one.
    ///
    /// # Errors
    /// As [`Connection::connect`].
    pub async fn connect_with(
        opts: ConnectOptions,
        policy: Option<ReconnectPolicy>,
        decoding: SnapshotDecoding,
    ) -> Result<Self, ClientError> {
        let target = Target::parse(&opts.url)?;
        let conn = Connection::connect_with(opts.clone(), decoding).await?;
        Ok(Self {
            conn,
            opts,
            target,
            policy,
            state: State::Up,
            decoding,
        })
    }

    /// The server's latest `Welcome` (the new one after a resume).
    pub fn welcome(&self) -> &Welcome {
        self.conn.welcome()
    }

    /// The session state and its measurements, across reconnections.
    pub fn session(&self) -> &Session {
        self.conn.session()
    }

    /// The secret that resumes this player; see [`Connection::session_token`].
    pub fn session_token(&self) -> &SessionToken {
        self.conn.session_token()
    }

    /// The reconnection policy, if any.
    pub fn policy(&self) -> Option<ReconnectPolicy> {
        self.policy
    }

    /// Whether a reconnection is under way (between [`SessionEvent::Reconnecting`] and
    /// its outcome).
    pub fn is_reconnecting(&self) -> bool {
        matches!(self.state, State::Reconnecting(_))
    }

    /// Successful reconnections so far.
    pub fn reconnects(&self) -> u64 {
        self.conn.session().stats().reconnects
    }

    /// As [`Connection::send_input`].
    ///
    /// # Errors
    /// [`ClientError::Reconnecting`] while reconnecting (nothing is sent; the server
    /// keeps applying the last input it got); otherwise as [`Connection::send_input`]. A
    /// write that fails because the socket broke returns that error
    /// ([`ClientError::is_connection_loss`]); `next_event` then reports the loss.
    pub async fn send_input(&mut self, movement: Vec2, buttons: u16) -> Result<u32, ClientError> {
        if self.is_reconnecting() {
            return Err(ClientError::Reconnecting);
        }
        self.conn.send_input(movement, buttons).await
    }

    /// As [`Connection::send_ping`].
    ///
    /// # Errors
    /// As [`ReconnectingConnection::send_input`].
    pub async fn send_ping(&mut self) -> Result<(), ClientError> {
        if self.is_reconnecting() {
            return Err(ClientError::Reconnecting);
        }
        self.conn.send_ping().await
    }

    /// Waits for the next event. Cancel safe, like [`Connection::next_event`].
    ///
    /// # Errors
    /// [`ClientError::SessionExpired`] when the server refused to resume (4008);
    /// [`ClientError::ReconnectFailed`] when the budget ran out; the error of the
    /// attempt when the server answered it otherwise (a close frame, an HTTP status);
    /// otherwise as [`Connection::next_event`]. After an error, or after
    /// [`SessionEvent::Closed`], nothing reconnects any more.
    pub async fn next_event(&mut self) -> Result<SessionEvent, ClientError> {
        if let State::Reconnecting(task) = &mut self.state {
            // The only await of this branch; the state changes after it synchronously.
            let outcome = task.await;
            self.state = State::Ended;
            let resumed = match outcome {
                Ok(Ok(resumed)) => resumed,
                Ok(Err(e)) => return Err(e),
                Err(e) => {
                    tracing::error!(error = %e, "reconnect task failed");
                    return Err(ClientError::ConnectionLost);
                }
            };
            self.conn.relink(resumed.opened);
            self.state = State::Up;
            return Ok(SessionEvent::Reconnected {
                attempts: resumed.attempts,
            });
        }
        let Some(policy) = self.policy.filter(|_| matches!(self.state, State::Up)) else {
            // Not reconnecting (no policy, or ended): the plain connection's answer.
            let event = self.conn.next_event().await;
            if !matches!(
                event,
                Ok(Event::Snapshot(_) | Event::Pong { .. } | Event::Game(_))
            ) {
                self.state = State::Ended;
            }
            return event.map(SessionEvent::from);
        };
        let lost = match self.conn.next_event().await {
            Ok(Event::Closed { code, reason }) if code == DisconnectReason::IdleTimeout.code() => {
                ClientError::Closed { code, reason }
            }
            Ok(event) => {
                if matches!(event, Event::Closed { .. }) {
                    self.state = State::Ended;
                }
                return Ok(event.into());
            }
            Err(e) if e.is_connection_loss() => e,
            Err(e) => {
                self.state = State::Ended;
                return Err(e);
            }
        };
        let cause = lost.kind();
        tracing::debug!(error = %lost, "connection lost; reconnecting");
        self.state = State::Reconnecting(self.spawn_reconnect(policy, lost));
        Ok(SessionEvent::Reconnecting { cause })
    }

    /// As [`Connection::close`]. While reconnecting, stops trying and returns
    /// `Ok(None)`: there is no connection to close, and the server lets the player go
    /// at the end of its grace.
    ///
    /// # Errors
    /// As [`Connection::close`].
    pub async fn close(self, reason: &str) -> Result<Option<u16>, ClientError> {
        match self.state {
            State::Reconnecting(_) => Ok(None),
            State::Up | State::Ended => self.conn.close(reason).await,
        }
    }

    fn spawn_reconnect(
        &self,
        policy: ReconnectPolicy,
        cause: ClientError,
    ) -> AbortOnDropHandle<Result<Resumed, ClientError>> {
        let welcome = self.conn.welcome();
        let job = Job {
            opts: self.opts.clone(),
            target: self.target.for_resume(),
            token: welcome.session_token,
            player: (welcome.player_id, welcome.entity_id),
            policy,
            seed: rand::random(),
            cause,
            decoding: self.decoding,
        };
        let span =
            tracing::debug_span!("reconnect", name = %self.opts.name, room = %self.target.room);
        AbortOnDropHandle::new(tokio::spawn(reconnect(job).instrument(span)))
    }
}

/// Everything the reconnection task needs.
struct Job {
    opts: ConnectOptions,
    target: Target,
    token: SessionToken,
    /// Player and entity id that the resume must give back.
    player: (u32, u32),
    policy: ReconnectPolicy,
    seed: u64,
    /// The loss that started it.
    cause: ClientError,
    decoding: SnapshotDecoding,
}

/// Tries to resume until the server answers or the budget is spent.
async fn reconnect(job: Job) -> Result<Resumed, ClientError> {
    let lost_at = Instant::now();
    let mut backoff = Backoff::new(job.policy, job.seed);
    let mut attempts = 0u32;
    let mut last = job.cause;
    while let Some(delay) = backoff.next_delay(lost_at.elapsed()) {
        tokio::time::sleep(delay).await;
        // Each attempt gets the connect timeout, or what is left of the budget.
        let remaining = job.policy.budget.saturating_sub(lost_at.elapsed());
        if remaining.is_zero() {
            break;
        }
        attempts += 1;
        let limit = job.opts.connect_timeout.min(remaining);
        match open(&job.opts, &job.target, Some(job.token), limit, job.decoding).await {
            Ok(opened) => {
                let welcome = &opened.welcome;
                if (welcome.player_id, welcome.entity_id) != job.player {
                    return Err(ClientError::Protocol(format!(
                        "resume welcomed player {} (entity {}) instead of {} ({})",
                        welcome.player_id, welcome.entity_id, job.player.0, job.player.1
                    )));
                }
                tracing::debug!(attempts, after = ?lost_at.elapsed(), "resumed");
                return Ok(Resumed { opened, attempts });
            }
            Err(ClientError::Closed { code, .. })
                if code == DisconnectReason::SessionExpired.code() =>
            {
                return Err(ClientError::SessionExpired);
            }
            Err(e) if e.is_connection_loss() => {
                tracing::debug!(attempts, error = %e, "reconnect attempt failed");
                last = e;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ClientError::ReconnectFailed {
        attempts,
        last: Box::new(last),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceilings_double_from_initial_up_to_max() {
        let p = ReconnectPolicy::default();
        let ceilings: Vec<_> = (0..8).map(|n| p.ceiling(n)).collect();
        assert_eq!(
            ceilings,
            [100, 200, 400, 800, 1600, 2000, 2000, 2000].map(ms)
        );
        // No overflow, however many attempts.
        assert_eq!(p.ceiling(31), ms(2000));
        assert_eq!(p.ceiling(u32::MAX), ms(2000));
        // A zero policy still waits a little, and max below initial caps at max.
        let zero = ReconnectPolicy {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            budget: ms(50),
        };
        assert_eq!(zero.ceiling(0), ms(1));
        let capped = ReconnectPolicy {
            initial: ms(500),
            max: ms(300),
            budget: ms(50),
        };
        assert_eq!(capped.ceiling(0), ms(300));
    }

    #[test]
    fn delays_are_jittered_within_their_ceiling_and_replayable() {
        let policy = ReconnectPolicy {
            budget: Duration::from_secs(3600),
            ..ReconnectPolicy::default()
        };
        let draw = |seed| {
            let mut b = Backoff::new(policy, seed);
            (0..40)
                .map(|_| b.next_delay(Duration::ZERO).expect("within budget"))
                .collect::<Vec<_>>()
        };
        let delays = draw(7);
        for (n, d) in delays.iter().enumerate() {
            assert!(*d <= policy.ceiling(n as u32), "delay {n}: {d:?}");
        }
        assert_eq!(delays, draw(7), "same seed, same schedule");
        assert_ne!(delays, draw(8), "another seed, another schedule");
        // Full jitter: the draws spread over the whole range, not near the ceiling.
        let capped = &delays[5..];
        assert!(capped.iter().any(|d| *d < ms(1000)), "{capped:?}");
        assert!(capped.iter().any(|d| *d > ms(1000)), "{capped:?}");
    }

    #[test]
    fn the_budget_bounds_the_schedule() {
        let policy = ReconnectPolicy::default();
        for seed in 0..50 {
            let mut b = Backoff::new(policy, seed);
            // Attempts that fail at once: only the delays spend the budget.
            let mut elapsed = Duration::ZERO;
            while let Some(delay) = b.next_delay(elapsed) {
                elapsed += delay;
                assert!(elapsed <= policy.budget, "seed {seed}: {elapsed:?}");
                assert!(b.drawn() < 1000, "seed {seed}: never ends");
            }
            assert_eq!(
                elapsed, policy.budget,
                "the last delay is cut to the budget"
            );
            // Eight delays take at most 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3 * 2 = 9.1 s, so
            // a ninth always starts within the 10 s.
            assert!(b.drawn() >= 9, "seed {seed}: {} attempts", b.drawn());
        }
        let mut b = Backoff::new(policy, 1);
        assert_eq!(b.next_delay(policy.budget), None);
        assert_eq!(b.next_delay(policy.budget + ms(1)), None);
        let none = ReconnectPolicy {
            budget: Duration::ZERO,
            ..policy
        };
        assert_eq!(Backoff::new(none, 1).next_delay(Duration::ZERO), None);
    }

    #[test]
    fn the_first_delay_is_short() {
        let policy = ReconnectPolicy::default();
        for seed in 0..100 {
            let d = Backoff::new(policy, seed)
                .next_delay(Duration::ZERO)
                .expect("within budget");
            assert!(d <= ms(100), "{d:?}");
        }
    }
}
