//! The load tool as a library: many bots, each a real [`Connection`], and one
//! [`Report`] at the end.
//!
//! [`run_swarm`] spawns one task per bot. Bot `i` of `n` starts at `ramp * i / n`
//! after the start, connects, then until the end of the run sends an input every
//! `1 / input_rate` (steered by [`Wander`]), a ping every second, and reads every
//! snapshot. Latencies go into [`Histograms`] shared by a few bots each (a histogram
//! per bot would cost 0.5 MB per bot); counters stay in the bot and are added up when
//! it ends. A bot that fails only counts its failure: the swarm always runs to the end
//! and always returns a report.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::{interval, interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::connection::{ConnectOptions, Connection, Event, DEFAULT_CONNECT_TIMEOUT};
use crate::report::{record, Histograms, Report, Totals};
use crate::wander::Wander;

/// How often each bot pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest time between two inputs of a bot (1000 inputs/s; the server closes a
/// client long before that).
const MIN_INPUT_PERIOD: Duration = Duration::from_millis(1);
/// Longest time between two inputs of a bot.
const MAX_INPUT_PERIOD: Duration = Duration::from_secs(3600);

/// How long a bot whose send failed keeps reading, to learn the close code that
/// explains the failure (the server's close frame is usually already queued).
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmConfig {
    /// Server URL, `ws://host:port/ws?room=NAME`.
    pub url: String,
    /// Number of bots.
    pub bots: usize,
    /// Length of the whole run, ramp included; every bot stops at its end.
    pub duration: Duration,
    /// Bots connect evenly spread over this time (capped at `duration`).
    pub ramp: Duration,
    /// Bot `i` is named `{name_prefix}-{i}`.
    pub name_prefix: String,
    /// `Origin` header to send, for servers that check it.
    pub origin: Option<String>,
    /// Inputs per second per bot; `None` (or a value that is not a positive number)
    /// means the room's tick rate from `Welcome`.
    pub input_rate_hz: Option<f64>,
    /// Limit on each bot's connect (TCP, handshake, `Hello`/`Welcome`).
    pub connect_timeout: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            url: format!(
                "ws://127.0.0.1:8080/ws?room={}",
                tickcast_shared::DEFAULT_ROOM
            ),
            bots: 10,
            duration: Duration::from_secs(10),
            ramp: Duration::from_secs(1),
            name_prefix: "bot".to_owned(),
            origin: None,
            input_rate_hz: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Runs the swarm until `config.duration` has passed or `cancel` fires, then returns
/// the report. Bots still connected at the end close with 1000. Never fails: every
/// per-bot failure is counted in [`Report::errors`].
pub async fn run_swarm(config: SwarmConfig, cancel: CancellationToken) -> Report {
    let started = std::time::Instant::now();
    let start = Instant::now();
    let deadline = start + config.duration;
    let ramp = config.ramp.min(config.duration);
    let config = Arc::new(config);

    let shard_count = std::thread::available_parallelism()
        .map_or(4, NonZeroUsize::get)
        .clamp(1, config.bots.max(1));
    let shards: Vec<Arc<Mutex<Histograms>>> = (0..shard_count)
        .map(|_| Arc::new(Mutex::new(Histograms::new())))
        .collect();

    let mut bots = JoinSet::new();
    for (index, shard) in (0..config.bots).zip(shards.iter().cycle()) {
        let offset = ramp.mul_f64(index as f64 / config.bots as f64);
        let bot = Bot {
            index,
            config: Arc::clone(&config),
            histograms: Arc::clone(shard),
            cancel: cancel.clone(),
        };
        bots.spawn(bot.run(start + offset, deadline));
    }

    let mut totals = Totals::default();
    while let Some(joined) = bots.join_next().await {
        match joined {
            Ok(bot_totals) => totals.merge(&bot_totals),
            Err(e) => {
                tracing::error!(error = %e, "bot task failed");
                totals.error(if e.is_panic() { "panic" } else { "cancelled" });
            }
        }
    }

    let mut histograms = Histograms::new();
    for shard in &shards {
        histograms.merge(&lock(shard));
    }
    Report::new(
        &config.url,
        config.bots as u64,
        started.elapsed(),
        &totals,
        &histograms,
    )
}

/// One bot's task state.
struct Bot {
    index: usize,
    config: Arc<SwarmConfig>,
    histograms: Arc<Mutex<Histograms>>,
    cancel: CancellationToken,
}

/// Why a connected bot's loop ended.
enum End {
    /// Deadline or cancellation: close politely.
    Done,
    /// The server closed, or the connection failed: nothing left to close.
    Ended,
}

impl Bot {
    async fn run(self, start: Instant, deadline: Instant) -> Totals {
        let mut totals = Totals::default();
        tokio::select! {
            () = self.cancel.cancelled() => return totals,
            () = sleep_until(start) => {}
        }

        let opts = ConnectOptions {
            url: self.config.url.clone(),
            name: format!("{}-{}", self.config.name_prefix, self.index),
            origin: self.config.origin.clone(),
            connect_timeout: self.config.connect_timeout,
        };
        let connect_started = std::time::Instant::now();
        let connected = tokio::select! {
            () = self.cancel.cancelled() => return totals,
            () = sleep_until(deadline) => {
                totals.bots_failed = 1;
                totals.error("connect: run ended first");
                return totals;
            }
            connected = Connection::connect(opts) => connected,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(bot = self.index, error = %e, "connect failed");
                totals.bots_failed = 1;
                totals.error(format!("connect: {}", e.kind()));
                return totals;
            }
        };
        record(
            &mut lock(&self.histograms).connect,
            connect_started.elapsed(),
        );
        totals.bots_connected = 1;
        let connected_at = Instant::now();

        let end = self.play(&mut conn, deadline, &mut totals).await;

        totals.connected_time = connected_at.elapsed();
        let stats = conn.session().stats();
        totals.snapshots_received = stats.snapshots_received;
        totals.snapshots_missed = stats.snapshots_missed;
        totals.bytes_received = stats.bytes_received;
        totals.naive_bytes = stats.naive_bytes;
        totals.inputs_sent = stats.inputs_sent;
        totals.pings_sent = stats.pings_sent;

        match end {
            End::Done => match conn.close("bot done").await {
                Ok(Some(code)) => totals.close_code(code),
                Ok(None) => totals.error("close: no answer"),
                Err(e) => totals.error(format!("close: {}", e.kind())),
            },
            End::Ended => totals.bots_disconnected = 1,
        }
        totals
    }

    /// The steady state: inputs, pings and snapshots until the deadline.
    async fn play(&self, conn: &mut Connection, deadline: Instant, totals: &mut Totals) -> End {
        let rate = self
            .config
            .input_rate_hz
            .filter(|hz| hz.is_finite() && *hz > 0.0)
            .unwrap_or_else(|| f64::from(conn.welcome().tick_rate.max(1)));
        // Clamped so that no rate, however odd, makes a zero or overflowing period.
        let period = Duration::try_from_secs_f64(1.0 / rate)
            .unwrap_or(MAX_INPUT_PERIOD)
            .clamp(MIN_INPUT_PERIOD, MAX_INPUT_PERIOD);
        let mut inputs = interval_at(Instant::now() + period, period);
        // A bot that fell behind sends its next input on time, not a burst that the
        // server's rate limit would punish.
        inputs.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut pings = interval(PING_INTERVAL);
        pings.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut wander = Wander::new(rand::random::<u64>() ^ self.index as u64);

        loop {
            let sent = tokio::select! {
                biased;
                () = self.cancel.cancelled() => return End::Done,
                () = sleep_until(deadline) => return End::Done,
                event = conn.next_event() => {
                    match event {
                        Ok(Event::Snapshot(_)) => {
                            if let Some(m) = conn.session().last_snapshot_metrics() {
                                let mut h = lock(&self.histograms);
                                if let Some(gap) = m.gap {
                                    record(&mut h.snapshot_gap, gap);
                                }
                                if let Some(ack) = m.input_ack {
                                    record(&mut h.input_ack, ack);
                                }
                            }
                        }
                        Ok(Event::Pong { rtt }) => record(&mut lock(&self.histograms).rtt, rtt),
                        Ok(Event::Closed { code, reason }) => {
                            tracing::debug!(bot = self.index, code, %reason, "closed by server");
                            totals.close_code(code);
                            return End::Ended;
                        }
                        Err(e) => {
                            tracing::debug!(bot = self.index, error = %e, "connection failed");
                            totals.error(e.kind());
                            return End::Ended;
                        }
                    }
                    Ok(())
                }
                _ = inputs.tick() => conn.send_input(wander.next_direction(), 0).await.map(drop),
                _ = pings.tick() => conn.send_ping().await,
            };
            if let Err(e) = sent {
                // Usually the server has just closed us; its close frame says why.
                match drain_close(conn).await {
                    Some(code) => totals.close_code(code),
                    None => totals.error(e.kind()),
                }
                return End::Ended;
            }
        }
    }
}

/// Reads what is left until the server's close, for its code.
async fn drain_close(conn: &mut Connection) -> Option<u16> {
    let drain = async {
        loop {
            match conn.next_event().await {
                Ok(Event::Closed { code, .. }) => return Some(code),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(CLOSE_DRAIN, drain)
        .await
        .ok()
        .flatten()
}

/// Locks a histogram shard. A bot that panicked while holding it cannot have left it
/// half-written in a harmful way (a histogram is counters), so poisoning is ignored.
fn lock(shard: &Mutex<Histograms>) -> MutexGuard<'_, Histograms> {
    shard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreachable_server_counts_failures_and_still_reports() {
        // Bind then drop a listener: the port is almost certainly closed now.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let config = SwarmConfig {
            url: format!("ws://127.0.0.1:{port}/ws"),
            bots: 3,
            duration: Duration::from_millis(300),
            ramp: Duration::from_millis(30),
            connect_timeout: Duration::from_millis(500),
            ..SwarmConfig::default()
        };
        let report = run_swarm(config, CancellationToken::new()).await;
        assert_eq!(report.bots_requested, 3);
        assert_eq!(report.bots_connected, 0);
        assert_eq!(report.bots_failed, 3);
        assert_eq!(
            report.errors.values().sum::<u64>(),
            3,
            "{:?}",
            report.errors
        );
        assert!(report.errors.keys().all(|k| k.starts_with("connect: ")));
    }

    #[tokio::test]
    async fn cancel_before_start_runs_no_bot() {
        let cancel = CancellationToken::new();
        cancel.cancel();
        let config = SwarmConfig {
            url: "ws://127.0.0.1:9/ws".into(),
            bots: 5,
            duration: Duration::from_secs(30),
            ..SwarmConfig::default()
        };
        let report = run_swarm(config, cancel).await;
        assert_eq!((report.bots_connected, report.bots_failed), (0, 0));
        assert!(report.duration_s < 5.0);
    }
}
