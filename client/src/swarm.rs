//! The load tool as a library: many bots, each a real connection
//! ([`ReconnectingConnection`]), and one [`Report`] at the end.
//!
//! [`run_swarm`] spawns one task per bot. Bot `i` of `n` starts in slot `i` of the
//! ramp, at a random point within it (see [`crate::placement`]), connects to its room
//! from its source address, then until the end of the run sends an input every
//! `1 / input_rate` (steered by its [`Behaviour`]), a ping every second, and reads
//! every snapshot, all from one task with one timer. Only a sample of the bots
//! ([`SwarmConfig::verify_fraction`]) decodes each snapshot and rebuilds the world,
//! which checks that every delta applies; the others read snapshot headers only,
//! which is all that bandwidth, gaps, missed ticks and input latency need, so the
//! swarm's cost per bot is mostly its socket's. A bot whose connection is lost reconnects by itself (a
//! [`ReconnectingConnection`] with [`SwarmConfig::reconnect`]) and plays on; the report
//! counts its resumes in `reconnects`, and a reconnection that fails in `errors` by
//! kind (`"session expired"`, `"reconnect gave up: ..."`). Latencies go into
//! [`Histograms`] shared by a few bots each (a
//! histogram per bot would cost 0.5 MB per bot), next to live counters that a
//! progress line reads; the bot's own counters stay in the bot and are added up when
//! it ends. A bot that fails only counts its failure: the swarm always runs to the
//! end and always returns a report.

use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::{interval_at, sleep_until, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::behaviour::{Behaviour, BehaviourKind};
use crate::connection::{ConnectOptions, SnapshotDecoding, DEFAULT_CONNECT_TIMEOUT};
use crate::error::ClientError;
use crate::link::{Conditioning, LinkSpec};
use crate::placement::{self, PlacementError, Rooms};
use crate::progress::Progress;
use crate::reconnect::{ReconnectPolicy, ReconnectingConnection, SessionEvent};
use crate::report::{
    new_histogram, record, Histograms, Interval, Report, SeriesRecorder, ServerRecorder,
    ServerSeries, Totals,
};
use crate::scrape;
use crate::tls::TlsTrust;
use crate::token::{self, BotTokens, PlayerToken};
use tickcast_shared::{encode_into, ClientMsg, Input, InputPayload, Ping};

/// How often each bot pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest time between two inputs of a bot (1000 inputs/s; the server closes a
/// client long before that).
const MIN_INPUT_PERIOD: Duration = Duration::from_millis(1);
/// Longest time between two inputs of a bot.
const MAX_INPUT_PERIOD: Duration = Duration::from_secs(3600);

/// Shortest interval between two progress samples: reading them locks every shard.
const MIN_PROGRESS_PERIOD: Duration = Duration::from_millis(50);

/// Time between two samples of the report's time series, and between two scrapes
/// of the server's metrics.
pub const SERIES_PERIOD: Duration = Duration::from_secs(1);

/// Limit on one scrape of the server's metrics: less than the period, so that a
/// silent server costs one failed scrape per second, not a pile of them.
const SCRAPE_LIMIT: Duration = Duration::from_millis(900);

/// How long a bot whose send failed keeps reading, to learn the close code that
/// explains the failure (the server's close frame is usually already queued).
const CLOSE_DRAIN: Duration = Duration::from_secs(1);

/// What to run.
#[derive(Debug, Clone, PartialEq)]
pub struct SwarmConfig {
    /// Server URL, `ws://host:port/ws?room=NAME` (or `wss://`).
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
    /// How the bots steer.
    pub behaviour: BehaviourKind,
    /// Rooms to spread the bots over, round-robin; 1 joins the URL's room as given.
    pub rooms: usize,
    /// Rooms are named `{room_prefix}-{i}`; `None` uses the URL's `room` (or the
    /// server's default room).
    pub room_prefix: Option<String>,
    /// Loopback source addresses to spread connections over; `None` picks
    /// `ceil(bots / 200)`, which keeps each address under the server's default
    /// `--max-connections-per-ip` (256). Only used when the URL's host is an IPv4
    /// loopback address.
    pub source_addrs: Option<usize>,
    /// How a bot whose connection is lost reconnects; `None`: it does not, and ends.
    pub reconnect: Option<ReconnectPolicy>,
    /// Certificate authorities trusted for `wss://` URLs.
    pub tls: TlsTrust,
    /// A bad network to emulate under every bot, each with its own model seeded with
    /// its index (see [`crate::link`]); `None`: the sockets as they are.
    pub link: Option<LinkSpec>,
    /// The server's Prometheus page (`http://HOST:PORT/metrics`) to scrape once a
    /// second during the run, for the report's server plots; `None`: not scraped.
    pub metrics_url: Option<String>,
    /// Sign a player token for each bot, for a server that requires player
    /// authentication: `sub` and `name` are the bot's name, `exp` the end of the run
    /// plus [`crate::token::BOT_TOKEN_MARGIN`]. `None`: bots send no token.
    pub tokens: Option<BotTokens>,
    /// Matchmake each bot (`--matchmake http://HOST:PORT`): it asks this server for a
    /// seat (`POST /matchmake`, with its player token when `tokens` is set) and dials
    /// the URL and ticket of the answer, which in a cluster may be another node. `url`,
    /// `rooms` and `room_prefix` are then not used for placement. `None`: bots join
    /// `url`'s rooms directly.
    pub matchmake: Option<String>,
    /// The share of bots (0 to 1) that rebuild the world from every snapshot and so
    /// check that every delta applies: bot `i` does when `ceil(i * f)` steps up at
    /// `i`, which picks `ceil(bots * f)` bots spread evenly, bot 0 always (even at 0).
    /// The others read only each snapshot's header ([`SnapshotDecoding::HeaderOnly`]):
    /// bytes, snapshot gaps, missed ticks, input acknowledgements, rtt and errors are
    /// measured for every bot alike; the naive-snapshot size only by the verifying
    /// ones. [`BehaviourKind::Chase`] steers by the world, so with it every bot
    /// verifies whatever this says; the other behaviours do not look at the world.
    pub verify_fraction: f64,
}

/// Default of [`SwarmConfig::verify_fraction`]: a small sample checks the deltas,
/// the rest of the swarm costs what the connections cost.
pub const DEFAULT_VERIFY_FRACTION: f64 = 0.02;

/// Whether bot `index` rebuilds the world, for a verify fraction `fraction` (see
/// [`SwarmConfig::verify_fraction`]). Out-of-range fractions are clamped to 0..=1.
pub fn verifies(index: usize, fraction: f64) -> bool {
    let f = if fraction.is_nan() {
        1.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    // A tolerance far below 1 / bots, so that 30 * 0.1 counts as 3, not 3.0000000000000004.
    let step = |i: usize| (i as f64 * f - 1e-9).ceil();
    index == 0 || step(index) < step(index + 1)
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
            behaviour: BehaviourKind::default(),
            rooms: 1,
            room_prefix: None,
            source_addrs: None,
            reconnect: Some(ReconnectPolicy::default()),
            tls: TlsTrust::default(),
            link: None,
            metrics_url: None,
            tokens: None,
            matchmake: None,
            verify_fraction: DEFAULT_VERIFY_FRACTION,
        }
    }
}

impl SwarmConfig {
    /// The rooms the bots are spread over.
    ///
    /// # Errors
    /// [`PlacementError`] for zero rooms or room names the server would refuse; a
    /// caller that checks this first learns it before any bot starts.
    pub fn rooms(&self) -> Result<Rooms, PlacementError> {
        Rooms::new(&self.url, self.room_prefix.as_deref(), self.rooms)
    }

    /// The verify fraction in force: [`SwarmConfig::verify_fraction`] clamped to
    /// 0..=1, or 1 for a behaviour that steers by the world.
    pub fn effective_verify_fraction(&self) -> f64 {
        if self.behaviour == BehaviourKind::Chase || self.verify_fraction.is_nan() {
            1.0
        } else {
            self.verify_fraction.clamp(0.0, 1.0)
        }
    }

    /// How many loopback source addresses the bots will use: 1 (no explicit bind)
    /// unless the URL's host is an IPv4 loopback address.
    pub fn source_addr_count(&self) -> usize {
        if placement::is_loopback_v4(&self.url).unwrap_or(false) {
            placement::source_addr_count(self.source_addrs, self.bots)
        } else {
            1
        }
    }
}

/// Runs the swarm until `config.duration` has passed or `cancel` fires, then returns
/// the report. Bots still connected at the end close with 1000. Never fails: every
/// per-bot failure is counted in [`Report::errors`].
pub async fn run_swarm(config: SwarmConfig, cancel: CancellationToken) -> Report {
    run(config, cancel, None::<(Duration, fn(&Progress))>).await
}

/// [`run_swarm`], calling `observe` with a [`Progress`] sample every `every` (at
/// least 50 ms) while bots run, for a live progress line.
pub async fn run_swarm_with_progress<F>(
    config: SwarmConfig,
    cancel: CancellationToken,
    every: Duration,
    observe: F,
) -> Report
where
    F: FnMut(&Progress),
{
    run(config, cancel, Some((every, observe))).await
}

async fn run<F>(
    config: SwarmConfig,
    cancel: CancellationToken,
    mut observer: Option<(Duration, F)>,
) -> Report
where
    F: FnMut(&Progress),
{
    let started = std::time::Instant::now();
    let start = Instant::now();
    let start_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let deadline = start + config.duration;
    let ramp = config.ramp.min(config.duration);

    let rooms = match config.rooms() {
        Ok(rooms) => rooms,
        Err(e) => return refused(&config, &e, started.elapsed()),
    };
    if let Some(base) = &config.matchmake {
        if let Err(e) = crate::matchmake::check_url(base) {
            return refused(&config, &e, started.elapsed());
        }
    }
    let source_addrs = config.source_addr_count();
    let config = Arc::new(config);

    let shard_count = std::thread::available_parallelism()
        .map_or(4, NonZeroUsize::get)
        .clamp(1, config.bots.max(1));
    let shards: Vec<Arc<Mutex<Shard>>> = (0..shard_count)
        .map(|_| Arc::new(Mutex::new(Shard::new())))
        .collect();

    let mut bots = JoinSet::new();
    for (index, shard) in (0..config.bots).zip(shards.iter().cycle()) {
        let offset = placement::connect_offset(index, config.bots, ramp, rand::random());
        let bot = Bot {
            index,
            url: rooms.url_for(index),
            local_ip: placement::source_ip(index, source_addrs),
            config: Arc::clone(&config),
            shard: Arc::clone(shard),
            cancel: cancel.clone(),
        };
        bots.spawn(bot.run(start + offset, deadline));
    }

    let mut ticker = observer.as_ref().map(|(every, _)| {
        let every = (*every).max(MIN_PROGRESS_PERIOD);
        let mut ticker = interval_at(start + every, every);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
        ticker
    });
    let mut window = new_histogram();
    let mut totals = Totals::default();
    let mut series = SeriesRecorder::new(start_unix_ms, ramp);
    let mut second = Interval::new();
    let mut seconds = interval_at(start + SERIES_PERIOD, SERIES_PERIOD);
    seconds.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let scraping = CancellationToken::new();
    let scraper = config
        .metrics_url
        .clone()
        .map(|url| tokio::spawn(scrape_metrics(url, start, scraping.clone())));
    loop {
        let tick = async {
            match ticker.as_mut() {
                Some(ticker) => ticker.tick().await,
                None => std::future::pending().await,
            }
        };
        let joined = tokio::select! {
            joined = bots.join_next() => joined,
            _ = seconds.tick() => {
                let (connected, bot_time) = take_second(&shards, &mut second);
                series.push(start.elapsed(), connected, bot_time, &second, false);
                continue;
            }
            _ = tick => {
                if let Some((_, observe)) = observer.as_mut() {
                    observe(&sample(&shards, &mut window, start.elapsed(), config.bots));
                }
                continue;
            }
        };
        match joined {
            None => break,
            Some(Ok(bot_totals)) => totals.merge(&bot_totals),
            Some(Err(e)) => {
                tracing::error!(error = %e, "bot task failed");
                totals.error(if e.is_panic() { "panic" } else { "cancelled" });
                if let Some(shard) = shards.first() {
                    lock(shard).second.errors += 1;
                }
            }
        }
    }

    let (connected, bot_time) = take_second(&shards, &mut second);
    series.push(start.elapsed(), connected, bot_time, &second, true);
    scraping.cancel();
    let mut series = series.finish();
    if let Some(scraper) = scraper {
        match scraper.await {
            Ok(server) => series.servers.push(server),
            Err(e) => tracing::warn!(error = %e, "metrics scraper failed"),
        }
    }

    let mut histograms = Histograms::new();
    let mut per_node = std::collections::BTreeMap::new();
    let mut matchmade_rooms = std::collections::BTreeSet::new();
    for shard in &shards {
        let shard = lock(shard);
        histograms.merge(&shard.histograms);
        matchmade_rooms.extend(shard.matchmade_rooms.iter().cloned());
        for (node, bots) in &shard.per_node {
            *per_node.entry(node.clone()).or_insert(0) += bots;
        }
    }
    let mut report = Report::new(
        &config.url,
        config.bots as u64,
        started.elapsed(),
        &totals,
        &histograms,
    );
    report.rooms = if config.matchmake.is_some() {
        matchmade_rooms.len() as u64
    } else {
        rooms.count() as u64
    };
    report.per_node = per_node;
    report.behaviour = config.behaviour.to_string();
    report.link = config.link.clone();
    report.series = Some(series);
    report.verify_fraction = config.effective_verify_fraction();
    report
}

/// Empties every shard's interval into `into` (cleared first) and returns how many
/// bots are connected now and the connected bot-time since the last call: one lock
/// per shard per second.
fn take_second(shards: &[Arc<Mutex<Shard>>], into: &mut Interval) -> (u64, Duration) {
    into.reset();
    let mut connected = 0;
    let mut bot_time = Duration::ZERO;
    for shard in shards {
        let mut shard = lock(shard);
        shard.set_connected(None);
        connected += shard.live.connected;
        bot_time += std::mem::take(&mut shard.bot_time);
        into.add(&shard.second);
        shard.second.reset();
    }
    (connected, bot_time)
}

/// Scrapes `url` at the start and then once a [`SERIES_PERIOD`] until `stop`, and
/// returns what the server said. A failed scrape is counted, never fatal.
async fn scrape_metrics(url: String, start: Instant, stop: CancellationToken) -> ServerSeries {
    let mut recorder = ServerRecorder::new(&url);
    let mut ticks = interval_at(start, SERIES_PERIOD);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let at = start.elapsed();
        let page = tokio::select! {
            () = stop.cancelled() => break,
            page = scrape::fetch(&url, SCRAPE_LIMIT) => page,
        };
        if let Err(e) = &page {
            tracing::debug!(%url, error = %e, "metrics scrape failed");
        }
        recorder.scraped(at, page.as_deref().map_err(ToString::to_string));
    }
    recorder.finish()
}

/// The report of a run that could not start: every bot failed for the same reason.
fn refused(config: &SwarmConfig, e: &dyn std::fmt::Display, elapsed: Duration) -> Report {
    let bots = config.bots as u64;
    let mut totals = Totals {
        bots_failed: bots,
        ..Totals::default()
    };
    totals.errors.insert(format!("config: {e}"), bots);
    let mut report = Report::new(&config.url, bots, elapsed, &totals, &Histograms::new());
    report.behaviour = config.behaviour.to_string();
    report.verify_fraction = config.effective_verify_fraction();
    report
}

/// Reads the live counters of every shard, and empties their recent round-trip
/// times into `window` to take the p99 of the last interval.
fn sample(
    shards: &[Arc<Mutex<Shard>>],
    window: &mut Histogram<u64>,
    elapsed: Duration,
    bots: usize,
) -> Progress {
    window.reset();
    let mut progress = Progress {
        elapsed,
        bots: bots as u64,
        ..Progress::default()
    };
    for shard in shards {
        let mut shard = lock(shard);
        progress.connected += shard.live.connected;
        progress.failed += shard.live.failed;
        progress.snapshots_received += shard.live.snapshots;
        progress.bytes_received += shard.live.bytes;
        // Cannot fail: both were made by `new_histogram` with the same bounds.
        if let Err(e) = window.add(&shard.recent_rtt) {
            tracing::debug!(error = %e, "progress rtt merge failed");
        }
        shard.recent_rtt.reset();
    }
    if !window.is_empty() {
        progress.rtt_p99 = Some(Duration::from_micros(window.value_at_quantile(0.99)));
    }
    progress
}

/// What a few bots share behind one lock: the run's histograms, and what the
/// progress line reads. Bots lock it once per snapshot or pong anyway, so the live
/// counters cost no extra synchronisation.
#[derive(Debug)]
struct Shard {
    histograms: Histograms,
    live: Live,
    /// Round-trip times since the last progress sample.
    recent_rtt: Histogram<u64>,
    /// What the bots measured since the last sample of the time series.
    second: Interval,
    /// Connected bot-time since the last sample, up to `changed`.
    bot_time: Duration,
    /// When `live.connected` last changed (or was accounted for).
    changed: Instant,
    /// Bots that connected, by the node matchmaking sent them to (`--matchmake`).
    per_node: std::collections::BTreeMap<String, u64>,
    /// The (node, room) pairs matchmaking sent its bots to.
    matchmade_rooms: std::collections::BTreeSet<(String, String)>,
}

impl Shard {
    fn new() -> Self {
        Self {
            histograms: Histograms::new(),
            live: Live::default(),
            recent_rtt: new_histogram(),
            second: Interval::new(),
            bot_time: Duration::ZERO,
            changed: Instant::now(),
            per_node: std::collections::BTreeMap::new(),
            matchmade_rooms: std::collections::BTreeSet::new(),
        }
    }

    /// Counts one more (`Some(true)`) or one fewer (`Some(false)`) connected bot, or
    /// none (`None`, to account up to now), first adding the bot-time of the old count
    /// since its last change: the exact integral of connected bots over time, read
    /// once a second as the denominator of the per-bot rates.
    fn set_connected(&mut self, up: Option<bool>) {
        let now = Instant::now();
        let since = now.saturating_duration_since(self.changed);
        let bots = u32::try_from(self.live.connected).unwrap_or(u32::MAX);
        self.bot_time += since.saturating_mul(bots);
        self.changed = now;
        match up {
            Some(true) => self.live.connected += 1,
            Some(false) => self.live.connected = self.live.connected.saturating_sub(1),
            None => {}
        }
    }
}

/// Counters of the bots of one shard while they run.
#[derive(Debug, Default, Clone, Copy)]
struct Live {
    /// Bots connected now.
    connected: u64,
    /// Bots whose connect failed.
    failed: u64,
    /// Snapshots received.
    snapshots: u64,
    /// Payload bytes received.
    bytes: u64,
}

/// One bot's task state.
struct Bot {
    index: usize,
    /// The URL of this bot's room.
    url: String,
    /// Loopback address to connect from, when the swarm spreads them.
    local_ip: Option<IpAddr>,
    config: Arc<SwarmConfig>,
    shard: Arc<Mutex<Shard>>,
    cancel: CancellationToken,
}

/// Whether a bot counts in its shard's live `connected` figure: not while it
/// reconnects, nor once it ended.
struct Presence {
    up: bool,
}

impl Presence {
    fn set(&mut self, shard: &Mutex<Shard>, up: bool) {
        if self.up != up {
            let mut shard = lock(shard);
            if up {
                shard.set_connected(Some(true));
            } else {
                shard.set_connected(Some(false));
            }
            self.up = up;
        }
    }
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

        let name = format!("{}-{}", self.config.name_prefix, self.index);
        let auth_token = match self.mint_token(&name, deadline) {
            Ok(token) => token,
            Err(e) => {
                tracing::debug!(bot = self.index, error = %e, "no token");
                lock(&self.shard).live.failed += 1;
                totals.bots_failed = 1;
                self.error(&mut totals, "connect: token");
                return totals;
            }
        };
        let (url, node) = match &self.config.matchmake {
            None => (self.url.clone(), None),
            Some(base) => {
                let asked = tokio::select! {
                    () = self.cancel.cancelled() => return totals,
                    asked = crate::matchmake::request(base, auth_token.as_ref(), self.config.connect_timeout) => asked,
                };
                match asked {
                    Ok(seat) => (seat.url, Some((seat.node, seat.room))),
                    Err(e) => {
                        tracing::debug!(bot = self.index, error = %e, "matchmaking failed");
                        lock(&self.shard).live.failed += 1;
                        totals.bots_failed = 1;
                        self.error(&mut totals, format!("matchmake: {}", e.kind()));
                        return totals;
                    }
                }
            }
        };
        let opts = ConnectOptions {
            url,
            name,
            origin: self.config.origin.clone(),
            connect_timeout: self.config.connect_timeout,
            local_ip: self.local_ip,
            tls: self.config.tls.clone(),
            link: self.config.link.clone().map(|spec| Conditioning {
                spec,
                seed: self.index as u64,
            }),
            auth_token,
        };
        let verify = verifies(self.index, self.config.effective_verify_fraction());
        let decoding = if verify {
            SnapshotDecoding::Rebuild
        } else {
            SnapshotDecoding::HeaderOnly
        };
        let connect_started = std::time::Instant::now();
        let connected = tokio::select! {
            () = self.cancel.cancelled() => return totals,
            () = sleep_until(deadline) => {
                lock(&self.shard).live.failed += 1;
                totals.bots_failed = 1;
                self.error(&mut totals, "connect: run ended first");
                return totals;
            }
            connected = ReconnectingConnection::connect_with(opts, self.config.reconnect, decoding) => connected,
        };
        let mut conn = match connected {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(bot = self.index, error = %e, "connect failed");
                lock(&self.shard).live.failed += 1;
                totals.bots_failed = 1;
                self.error(&mut totals, format!("connect: {}", e.kind()));
                return totals;
            }
        };
        {
            let mut shard = lock(&self.shard);
            record(&mut shard.histograms.connect, connect_started.elapsed());
            shard.set_connected(Some(true));
            if let Some((node, room)) = node {
                *shard.per_node.entry(node.clone()).or_insert(0) += 1;
                shard.matchmade_rooms.insert((node, room));
            }
        }
        totals.bots_connected = 1;
        let connected_at = Instant::now();

        let mut presence = Presence { up: true };
        let end = self
            .play(&mut conn, deadline, &mut totals, &mut presence)
            .await;

        totals.connected_time = connected_at.elapsed();
        if verify {
            totals.bots_verified = 1;
            totals.verified_time = totals.connected_time;
        }
        let stats = conn.session().stats();
        totals.snapshots_received = stats.snapshots_received;
        totals.snapshots_missed = stats.snapshots_missed;
        totals.bytes_received = stats.bytes_received;
        totals.naive_bytes = stats.naive_bytes;
        totals.inputs_sent = stats.inputs_sent;
        totals.pings_sent = stats.pings_sent;
        totals.reconnects = stats.reconnects;
        totals.game_events = stats.events_received;
        presence.set(&self.shard, false);

        match end {
            // The run ended during an outage: no connection to close.
            End::Done if conn.is_reconnecting() => {
                self.error(&mut totals, "close: still reconnecting");
            }
            End::Done => match conn.close("bot done").await {
                Ok(Some(code)) => self.closed(&mut totals, code),
                Ok(None) => self.error(&mut totals, "close: no answer"),
                Err(e) => self.error(&mut totals, format!("close: {}", e.kind())),
            },
            End::Ended => totals.bots_disconnected = 1,
        }
        totals
    }

    /// The steady state: inputs, pings and snapshots until the deadline.
    async fn play(
        &self,
        conn: &mut ReconnectingConnection,
        deadline: Instant,
        totals: &mut Totals,
        presence: &mut Presence,
    ) -> End {
        let rate = self
            .config
            .input_rate_hz
            .filter(|hz| hz.is_finite() && *hz > 0.0)
            .unwrap_or_else(|| f64::from(conn.welcome().tick_rate.max(1)));
        // Clamped so that no rate, however odd, makes a zero or overflowing period.
        let period = Duration::try_from_secs_f64(1.0 / rate)
            .unwrap_or(MAX_INPUT_PERIOD)
            .clamp(MIN_INPUT_PERIOD, MAX_INPUT_PERIOD);
        // One timer per bot for its inputs, its pings and the end of the run, reset to
        // the earliest of the three: a thousand bots each polling three timers (and a
        // cancellation lock) on every wake-up cost more than the snapshot they read.
        let mut next_input = Instant::now() + period;
        let mut next_ping = Instant::now();
        let own_id = conn.welcome().entity_id;
        // The game's declared fields tell `chase` whether it plays tag.
        let mut behaviour = Behaviour::new(
            self.config.behaviour,
            rand::random::<u64>() ^ self.index as u64,
        )
        .with_fields(&conn.welcome().fields);
        // Bytes already added to the shard's live counter.
        let mut bytes_counted = 0;
        // Bytes sent since the last snapshot, added to the shard's second with it
        // (under the lock taken for the snapshot anyway), and the buffer that measures
        // them.
        let mut up_pending = 0;
        let mut up_buf = Vec::with_capacity(64);
        let connected_at = Instant::now();
        // Made once, not per event: a fresh `sleep_until` per pass of the loop arms and
        // cancels a timer per snapshot, which a thousand bots pay 30 times a second.
        let timer = sleep_until(next_input.min(next_ping).min(deadline));
        tokio::pin!(timer);

        loop {
            let sent = tokio::select! {
                biased;
                event = conn.next_event() => {
                    match event {
                        Ok(SessionEvent::Snapshot(_)) => {
                            let session = conn.session();
                            let bytes = session.stats().bytes_received;
                            let mut shard = lock(&self.shard);
                            let down = bytes.saturating_sub(bytes_counted);
                            shard.live.snapshots += 1;
                            shard.live.bytes += down;
                            bytes_counted = bytes;
                            shard.second.snapshots += 1;
                            shard.second.bytes_down += down;
                            shard.second.bytes_up += std::mem::take(&mut up_pending);
                            if let Some(m) = session.last_snapshot_metrics() {
                                if let Some(gap) = m.gap {
                                    record(&mut shard.histograms.snapshot_gap, gap);
                                    record(&mut shard.second.gap, gap);
                                }
                                if let Some(ack) = m.input_ack {
                                    record(&mut shard.histograms.input_ack, ack);
                                }
                            }
                        }
                        Ok(SessionEvent::Pong { rtt }) => {
                            let mut shard = lock(&self.shard);
                            record(&mut shard.histograms.rtt, rtt);
                            record(&mut shard.recent_rtt, rtt);
                            record(&mut shard.second.rtt, rtt);
                        }
                        // Counted by the session; the report reads the total at the end.
                        Ok(SessionEvent::Game(_)) => {}
                        Ok(SessionEvent::Reconnecting { cause }) => {
                            tracing::debug!(bot = self.index, %cause, "reconnecting");
                            presence.set(&self.shard, false);
                        }
                        Ok(SessionEvent::Reconnected { attempts }) => {
                            tracing::debug!(bot = self.index, attempts, "reconnected");
                            presence.set(&self.shard, true);
                        }
                        Ok(SessionEvent::Closed { code, reason }) => {
                            tracing::debug!(bot = self.index, code, %reason, "closed by server");
                            self.closed(totals, code);
                            return End::Ended;
                        }
                        Err(e) => {
                            tracing::debug!(bot = self.index, error = %e, "connection failed");
                            self.error(totals, e.kind());
                            return End::Ended;
                        }
                    }
                    Ok(())
                }
                () = &mut timer => {
                    let now = Instant::now();
                    // Cancellation is checked here, at most an input or ping period
                    // (1 s) after it, rather than on every wake-up: its check takes the
                    // token's lock, which every bot shares.
                    if now >= deadline || self.cancel.is_cancelled() {
                        return End::Done;
                    }
                    let mut sent = Ok(());
                    if now >= next_input {
                        // A bot that fell behind sends its next input on time, not a
                        // burst that the server's rate limit would punish.
                        next_input = next_due(next_input, period, now);
                        let session = conn.session();
                        let movement =
                            behaviour.next_movement(session.entity(own_id), session.entities());
                        sent = conn.send_input(movement, 0).await.map(|seq| {
                            up_pending += sent_bytes(&mut up_buf, &ClientMsg::Input(Input {
                                seq,
                                movement,
                                buttons: 0,
                                payload: InputPayload::default(),
                            }));
                        });
                    }
                    if sent.is_ok() && now >= next_ping {
                        next_ping = next_due(next_ping, PING_INTERVAL, now);
                        sent = conn.send_ping().await.map(|()| {
                            // The session's nonce is its age in µs; the connection's is
                            // as long in the encoding but for the first milliseconds.
                            let nonce = connected_at.elapsed().as_micros() as u64;
                            up_pending += sent_bytes(&mut up_buf, &ClientMsg::Ping(Ping { nonce }));
                        });
                    }
                    timer.as_mut().reset(next_input.min(next_ping).min(deadline));
                    sent
                }
            };
            if let Err(e) = sent {
                if matches!(e, ClientError::Reconnecting)
                    || (e.is_connection_loss() && conn.policy().is_some())
                {
                    // Nothing to send while reconnecting; and a broken socket is for
                    // `next_event` to notice, which reconnects (or reads the close
                    // frame that explains the failure).
                    continue;
                }
                // Usually the server has just closed us; its close frame says why.
                match drain_close(conn).await {
                    Some(code) => self.closed(totals, code),
                    None => self.error(totals, e.kind()),
                }
                return End::Ended;
            }
        }
    }
}

impl Bot {
    /// Counts a failure in the bot's totals and in its shard's current second.
    /// This bot's player token, when the swarm signs them: good for its room (when
    /// bound to it) until the run's end plus a margin, from now.
    fn mint_token(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<Option<PlayerToken>, ClientError> {
        let Some(tokens) = &self.config.tokens else {
            return Ok(None);
        };
        let target = crate::connection::Target::parse(&self.url)?;
        let room = if target.room.is_empty() {
            tickcast_shared::DEFAULT_ROOM
        } else {
            &target.room
        };
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = token::expiry_after(now_unix, deadline.saturating_duration_since(Instant::now()));
        tokens
            .mint(name, room, exp)
            .map(Some)
            .map_err(|e| ClientError::InvalidRequest(e.to_string()))
    }

    fn error(&self, totals: &mut Totals, kind: impl Into<String>) {
        totals.error(kind);
        lock(&self.shard).second.errors += 1;
    }

    /// Counts a close code received, likewise.
    fn closed(&self, totals: &mut Totals, code: u16) {
        totals.close_code(code);
        *lock(&self.shard).second.closes.entry(code).or_default() += 1;
    }
}

/// The first time after `now` that is `due` plus a whole number of `period`s: what
/// follows a due time that has come, skipping the ones a late bot missed, so that it
/// keeps its schedule without a burst (tokio's `MissedTickBehavior::Skip`).
fn next_due(due: Instant, period: Duration, now: Instant) -> Instant {
    let next = due + period;
    if next > now {
        return next;
    }
    let behind = now.saturating_duration_since(due).as_nanos();
    let periods = behind / period.as_nanos().max(1) + 1;
    let periods = u32::try_from(periods).unwrap_or(u32::MAX);
    due.checked_add(period.saturating_mul(periods))
        .unwrap_or(now + period)
}

/// Payload bytes of `msg` on the wire (what the connection wrote for it), measured
/// by encoding it again into `buf`, which is reused.
fn sent_bytes(buf: &mut Vec<u8>, msg: &ClientMsg) -> u64 {
    buf.clear();
    encode_into(msg, buf).map_or(0, |n| n as u64)
}

/// Reads what is left until the server's close, for its code.
async fn drain_close(conn: &mut ReconnectingConnection) -> Option<u16> {
    let drain = async {
        loop {
            match conn.next_event().await {
                Ok(SessionEvent::Closed { code, .. }) => return Some(code),
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

/// Locks a shard. A bot that panicked while holding it cannot have left it
/// half-written in a harmful way (histograms and counters), so poisoning is ignored.
fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
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
    async fn invalid_rooms_fail_every_bot_without_connecting() {
        let config = SwarmConfig {
            url: "ws://127.0.0.1:9/ws".into(),
            bots: 4,
            rooms: 3,
            room_prefix: Some("no spaces".into()),
            ..SwarmConfig::default()
        };
        assert!(config.rooms().is_err());
        let report = run_swarm(config, CancellationToken::new()).await;
        assert_eq!((report.bots_connected, report.bots_failed), (0, 4));
        assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
        assert!(report.errors.keys().all(|k| k.starts_with("config: ")));
    }

    #[test]
    fn source_addresses_only_against_loopback_ipv4() {
        let config = |url: &str, bots, source_addrs| SwarmConfig {
            url: url.into(),
            bots,
            source_addrs,
            ..SwarmConfig::default()
        };
        assert_eq!(
            config("ws://127.0.0.1:1/ws", 50_000, None).source_addr_count(),
            250
        );
        assert_eq!(
            config("ws://127.0.0.1:1/ws", 10, Some(4)).source_addr_count(),
            4
        );
        assert_eq!(
            config("ws://localhost:1/ws", 50_000, None).source_addr_count(),
            1
        );
        assert_eq!(
            config("ws://[::1]:1/ws", 10, Some(4)).source_addr_count(),
            1
        );
    }

    #[tokio::test]
    async fn progress_is_sampled_while_bots_run() {
        // Accepts TCP (in the backlog) but never answers the upgrade: each bot waits
        // for its connect timeout, long enough for a few samples.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let config = SwarmConfig {
            url: format!("ws://127.0.0.1:{port}/ws"),
            bots: 2,
            duration: Duration::from_millis(250),
            ramp: Duration::ZERO,
            connect_timeout: Duration::from_millis(200),
            ..SwarmConfig::default()
        };
        let mut samples = Vec::new();
        let report = run_swarm_with_progress(
            config,
            CancellationToken::new(),
            Duration::from_millis(50),
            |p| samples.push(*p),
        )
        .await;
        drop(silent);
        assert_eq!(report.bots_failed, 2);
        assert_eq!(report.errors.get("connect: timeout"), Some(&2), "{report}");
        assert!(!samples.is_empty(), "no progress sample");
        let last = samples.last().copied().unwrap_or_default();
        assert_eq!((last.bots, last.connected), (2, 0));
        assert!(samples.windows(2).all(|w| w[0].elapsed <= w[1].elapsed));
    }

    #[test]
    fn the_verifying_sample_is_spread_and_counted() {
        let sample =
            |bots: usize, f: f64| -> Vec<usize> { (0..bots).filter(|&i| verifies(i, f)).collect() };
        assert_eq!(sample(20, 0.1), [0, 10]);
        assert_eq!(sample(100, 0.02), [0, 50]);
        assert_eq!(sample(5, 1.0), [0, 1, 2, 3, 4]);
        assert_eq!(sample(5, 0.0), [0], "bot 0 always");
        // 31 * 0.1 is 3.1000000000000005 in floating point: still 4 bots, not 5.
        assert_eq!(sample(31, 0.1), [0, 10, 20, 30]);
        assert_eq!(sample(1000, 0.02).len(), 20);
        let chase = SwarmConfig {
            behaviour: BehaviourKind::Chase,
            verify_fraction: 0.1,
            ..SwarmConfig::default()
        };
        assert_eq!(chase.effective_verify_fraction(), 1.0);
        assert_eq!(SwarmConfig::default().effective_verify_fraction(), 0.02);
    }

    #[test]
    fn a_late_bot_skips_the_due_times_it_missed() {
        let t0 = Instant::now();
        let p = Duration::from_millis(33);
        assert_eq!(next_due(t0, p, t0), t0 + p);
        assert_eq!(next_due(t0, p, t0 + Duration::from_millis(10)), t0 + p);
        // Exactly on the next due time: that one has come too.
        assert_eq!(next_due(t0, p, t0 + p), t0 + 2 * p);
        assert_eq!(next_due(t0, p, t0 + Duration::from_millis(100)), t0 + 4 * p);
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
