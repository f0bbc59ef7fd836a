//! tickcast-server: authoritative fixed-tick game rooms over WebSockets.
//!
//! The I/O-free core decides behaviour: [`game`] (rules, the demo [`game::Arena`]),
//! [`room`] (players, inputs, one quantised frame per tick), [`snapshot`] (each
//! player's delta against what it holds), [`budget`] (a player's bandwidth budget),
//! [`grid`] (areas of interest), [`schedule`]
//! (when ticks are due), [`limits`] (rate limiting), [`auth`] (player tokens),
//! [`session`] (one connection's protocol rules: hello, order, limits, deadlines). The async shell moves bytes: [`net`] (HTTP,
//! upgrade, reader and writer per connection), [`rooms`] (the registry and one tick
//! task per room), [`slot`] (the latest-wins hand-off from a room to a writer).
//!
//! [`run`] is the whole server; the binary and the tests call it with a bound listener.

pub mod agones;
pub mod auth;
pub mod budget;
pub mod cluster;
pub mod config;
pub mod game;
pub mod grid;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod record;
pub mod room;
pub mod rooms;
pub mod schedule;
pub mod session;
pub mod slot;
pub mod snapshot;
pub mod tickets;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::Config;
pub use game::{Game, GameOptions, Games};
use metrics::Metrics;
use net::handshake::OriginPolicy;
use rooms::Rooms;

/// What every task of a running server shares.
#[derive(Debug)]
pub struct ServerCtx {
    /// The configuration it was started with.
    pub config: Arc<Config>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The rooms.
    pub rooms: Arc<Rooms>,
    /// Outstanding matchmaking tickets.
    pub tickets: tickets::Tickets,
    /// Allowed browser Origins.
    pub origins: OriginPolicy,
    /// Cancelled when the server starts draining: no new joins or rooms.
    pub draining: CancellationToken,
    /// Cancelled when the drain is over: every connection closes with 1001.
    pub shutdown: CancellationToken,
    /// Every task the server spawns, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Present when the server speaks TLS (`--tls-cert`, `--tls-key`).
    pub tls: Option<net::tls::TlsConfig>,
    /// The connection caps of `--listen`, checked at accept.
    pub admission: net::admission::Admission,
    /// `POST /matchmake` per client address (`--matchmake-per-ip-per-sec`).
    pub matchmake_limit: net::per_ip::PerIp,
    /// Rooms created on demand per client address (`--room-creates-per-ip-per-min`).
    pub room_create_limit: net::per_ip::PerIp,
    /// The token `POST /rooms` and `DELETE /rooms/{id}` need (`--admin-token-file`).
    pub admin_token: Option<net::api::AdminToken>,
    /// Checks player tokens when player authentication is on (`--auth-jwt-secret-file`
    /// or `--auth-jwt-public-key-file`); `None` lets anyone join.
    pub auth: Option<auth::Verifier>,
    /// True when the room API has its own listener (`--api-listen`): `--listen` then
    /// answers `/rooms*` with 404.
    pub api_elsewhere: bool,
    /// This node in the cluster directory (`--redis`); `None` for a single node.
    pub cluster: Option<Arc<cluster::Node>>,
}

/// Runs the server with the built-in games on `listener` until `drain` is cancelled,
/// then drains and stops: see [`serve`]; this form has no way to cut the drain short.
///
/// # Errors
/// As [`run_until`].
pub async fn run(
    listener: TcpListener,
    config: Config,
    drain: CancellationToken,
) -> anyhow::Result<()> {
    run_until(listener, config, drain, CancellationToken::new()).await
}

/// [`serve`] with the built-in games ([`Games::builtin`]).
///
/// # Errors
/// As [`serve`].
pub async fn run_until(
    listener: TcpListener,
    config: Config,
    drain: CancellationToken,
    force: CancellationToken,
) -> anyhow::Result<()> {
    serve(listener, config, Games::builtin(), drain, force).await
}

/// [`serve_with`], binding `--api-listen` first when it is given.
///
/// # Errors
/// As [`serve_with`], or if `--api-listen` cannot be bound.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    games: Games,
    drain: CancellationToken,
    force: CancellationToken,
) -> anyhow::Result<()> {
    let api = match config.api_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("--api-listen {addr}: {e}"))?,
        ),
        None => None,
    };
    serve_with(listener, api, config, games, drain, force).await
}

/// Runs the server on `listener`, hosting `games`, with the room API on `api_listener`
/// instead when one is given (then `listener` answers `/rooms*` with 404, and
/// `api_listener` serves only `/rooms*` and `/healthz`). When `drain` is cancelled (the first SIGTERM or
/// Ctrl-C), the server drains: new joins and new rooms are refused with 503 and
/// `/readyz` turns 503, while running rooms go on and HTTP stays up. The drain ends when
/// no player is left, after `--drain-timeout`, or when `force` is cancelled (a second
/// signal). Then every connection is closed with 1001 (going away), the server waits
/// up to `--shutdown-grace` for the close frames to go out, and returns.
///
/// # Errors
/// If `--game` names no game in `games`, the TLS certificate or key cannot be loaded,
/// the admin token file cannot be read or is empty, the player-token key file cannot be
/// read or holds no usable key, `--npcs` or `--max-players` exceed
/// `--max-room-npcs` or `--max-room-players`, or the listener's address cannot be read;
/// all before anything is served.
pub async fn serve_with(
    listener: TcpListener,
    api_listener: Option<TcpListener>,
    config: Config,
    games: Games,
    drain: CancellationToken,
    force: CancellationToken,
) -> anyhow::Result<()> {
    if !games.contains(&config.game) {
        anyhow::bail!("--game: {}", games.unknown(&config.game));
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(net::tls::load(cert, key)?),
        _ => None,
    };
    if config.npcs > config.max_room_npcs {
        anyhow::bail!(
            "--npcs {} is above --max-room-npcs {}",
            config.npcs,
            config.max_room_npcs
        );
    }
    if config.max_players as u64 > config.max_room_players {
        anyhow::bail!(
            "--max-players {} is above --max-room-players {}",
            config.max_players,
            config.max_room_players
        );
    }
    let admin_token = match &config.admin_token_file {
        Some(path) => Some(net::api::AdminToken::read(path)?),
        None => None,
    };
    let auth = auth::Verifier::from_config(&config)?;
    let cluster = match cluster_config(&config, &listener, tls.is_some()).await? {
        Some(cluster_config) => {
            let (node, task) = cluster::Node::start(cluster_config)?;
            // Not on the task tracker: it ends after `leave()` and once the rooms are
            // gone, which is after the shutdown has waited for the tracked tasks.
            tokio::spawn(task);
            Some(node)
        }
        None => None,
    };
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let ctx = Arc::new(ServerCtx {
        origins: OriginPolicy::new(&config.allow_origins),
        rooms: Rooms::new(
            Arc::clone(&config),
            games,
            Arc::clone(&metrics),
            tasks.clone(),
            shutdown.clone(),
            drain.clone(),
        ),
        tickets: tickets::Tickets::new(config.ticket_ttl),
        draining: drain.clone(),
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
        tls,
        admission: net::admission::Admission::new(
            config.max_connections,
            config.max_connections_per_ip,
            metrics.tcp_connections_open.clone(),
        ),
        matchmake_limit: net::per_ip::PerIp::new(
            f64::from(config.matchmake_per_ip_per_sec),
            config.matchmake_per_ip_per_sec.saturating_mul(2),
        ),
        room_create_limit: net::per_ip::PerIp::new(
            f64::from(config.room_creates_per_ip_per_min) / 60.0,
            config.room_creates_per_ip_per_min,
        ),
        admin_token,
        auth,
        api_elsewhere: api_listener.is_some(),
        cluster: cluster.clone(),
        config,
        metrics,
    });
    if let Some(node) = &cluster {
        // Before any room opens, so the directory hears of every room.
        ctx.rooms.connect_directory(node.events());
        let _ = ctx.metrics.cluster.set(node.directory().clone());
        info!(
            node = node.directory().node_id(),
            url = node.directory().public_url(),
            "joining the cluster directory"
        );
    }
    info!(
        addr = %listener.local_addr()?,
        scheme = if ctx.tls.is_some() { "wss" } else { "ws" },
        game = %ctx.config.game,
        tick_rate = ctx.config.tick_rate,
        npcs = ctx.config.npcs,
        "listening"
    );
    let acceptor = tokio::spawn(accept(
        listener,
        net::http::Listener::Main,
        ctx.admission.clone(),
        Arc::clone(&ctx),
    ));
    let api_acceptor = match api_listener {
        Some(api) => {
            info!(addr = %api.local_addr()?, "room API listening");
            // The API's own caps: players filling `--max-connections` must not lock the
            // operator (and the liveness probe on `/healthz`) out of it.
            let admission = net::admission::Admission::new(
                ctx.config.max_connections,
                ctx.config.max_connections_per_ip,
                metrics::CountGauge::default(),
            );
            Some(tokio::spawn(accept(
                api,
                net::http::Listener::Api,
                admission,
                Arc::clone(&ctx),
            )))
        }
        None => None,
    };
    tasks.spawn(sweep_tickets(Arc::clone(&ctx)));
    // Listening now: Agones may send players here.
    let agones = ctx
        .config
        .agones
        .then(|| agones::Agones::start(&ctx.config, Arc::clone(&ctx.metrics), drain.clone()));

    tokio::select! {
        () = drain.cancelled() => {}
        () = force.cancelled() => {}
    }
    let players = || {
        ctx.metrics
            .players
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    // First of all: a draining node takes no new players, so no node may send it any.
    if let Some(node) = &ctx.cluster {
        if let Err(e) = node.directory().leave().await {
            warn!(error = %e, "could not leave the cluster directory; it forgets this node within its TTL");
        }
    }
    info!(players = players(), timeout = ?ctx.config.drain_timeout, "draining");
    let deadline = tokio::time::Instant::now() + ctx.config.drain_timeout;
    let mut poll = tokio::time::interval(std::time::Duration::from_millis(100));
    while players() > 0 && tokio::time::Instant::now() < deadline && !force.is_cancelled() {
        tokio::select! {
            _ = poll.tick() => {}
            () = force.cancelled() => {}
        }
    }

    info!(players = players(), "shutting down");
    shutdown.cancel();
    let _ = acceptor.await;
    if let Some(api) = api_acceptor {
        let _ = api.await;
    }
    tasks.close();
    if tokio::time::timeout(ctx.config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = tasks.len(),
            "tasks still running after the shutdown grace; exiting anyway"
        );
    }
    // Last: Agones deletes the pod once told, so only after every close went out.
    if let Some(agones) = agones {
        agones.shutdown().await;
    }
    Ok(())
}

/// The cluster configuration of `--redis`, `--node-id`, `--public-url` and
/// `--cluster-secret-file`; `None` without `--redis`. Without `--public-url`, `--agones`
/// asks the sidecar for the GameServer's address (retried for a few seconds: the
/// sidecar may start after us).
///
/// # Errors
/// `--redis` without `--public-url` (and without `--agones`), an unreadable or short
/// secret, or an address Agones never gives.
async fn cluster_config(
    config: &Config,
    listener: &TcpListener,
    tls: bool,
) -> anyhow::Result<Option<cluster::ClusterConfig>> {
    let Some(redis) = &config.redis else {
        return Ok(None);
    };
    let Some(secret_file) = &config.cluster_secret_file else {
        anyhow::bail!("--redis needs --cluster-secret-file");
    };
    let secret = cluster::ClusterSecret::from_file(secret_file)
        .map_err(|e| anyhow::anyhow!("--cluster-secret-file: {e}"))?;
    let public_url = match (&config.public_url, config.agones) {
        (Some(url), _) => url.clone(),
        (None, true) => {
            let port = agones::sdk_port(
                config.agones_sdk_port,
                std::env::var(agones::SDK_PORT_ENV).ok().as_deref(),
            );
            let scheme = if tls { "wss" } else { "ws" };
            let mut tries = 0;
            loop {
                match agones::discover_public_url(port, scheme).await {
                    Ok(url) => break url,
                    Err(e) if tries >= 20 => {
                        anyhow::bail!("--public-url not given and Agones did not tell it: {e}")
                    }
                    Err(_) => {
                        tries += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                }
            }
        }
        (None, false) => anyhow::bail!(
            "--redis needs --public-url (what clients dial to reach this node, e.g. ws://{})",
            listener.local_addr()?
        ),
    };
    let node_id = config
        .node_id
        .clone()
        .unwrap_or_else(cluster::keys::random_node_id);
    let mut cc = cluster::ClusterConfig::new(redis.clone(), node_id, public_url, secret);
    cc.ticket_ttl = config.ticket_ttl;
    cc.node_ttl = config.cluster_node_ttl;
    // A few refreshes per TTL, so one late refresh does not drop a live node.
    cc.refresh = (config.cluster_node_ttl / 3).min(std::time::Duration::from_secs(3));
    cc.node_capacity = u32::try_from(agones::capacity(config)).unwrap_or(u32::MAX);
    Ok(Some(cc))
}

/// Releases the seats of expired matchmaking tickets, once a second.
async fn sweep_tickets(ctx: Arc<ServerCtx>) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            _ = every.tick() => {
                ctx.tickets.purge(std::time::Instant::now());
            }
        }
    }
}

/// Accepts TCP connections until the server shuts down (also while it drains, so
/// health checks, metrics and running games keep working). Each one takes a permit of
/// `admission` first, before TLS and HTTP; a connection over a cap is answered with a
/// canned 503 (plain) or just closed (TLS), in a task of its own, and counted.
async fn accept(
    listener: TcpListener,
    which: net::http::Listener,
    admission: net::admission::Admission,
    ctx: Arc<ServerCtx>,
) {
    loop {
        let accepted = tokio::select! {
            () = ctx.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                let permit = match admission.admit(peer.ip()) {
                    Ok(permit) => Arc::new(permit),
                    Err(refused) => {
                        ctx.metrics.count_refused(refused.label());
                        let tls = ctx.tls.is_some();
                        ctx.tasks
                            .spawn(net::http::refuse_at_accept(stream, refused, tls));
                        continue;
                    }
                };
                // Snapshots are latency-sensitive and already one write per message.
                let _ = stream.set_nodelay(true);
                if ctx.config.send_buffer > 0 {
                    if let Err(e) =
                        socket2::SockRef::from(&stream).set_send_buffer_size(ctx.config.send_buffer)
                    {
                        warn!(error = %e, "cannot set the send buffer size");
                    }
                }
                let conn = net::http::Conn {
                    peer,
                    listener: which,
                    permit,
                };
                match ctx.tls.clone() {
                    None => ctx
                        .tasks
                        .spawn(net::http::serve(stream, conn, Arc::clone(&ctx))),
                    Some(tls) => {
                        ctx.tasks
                            .spawn(net::http::serve_tls(tls, stream, conn, Arc::clone(&ctx)))
                    }
                };
            }
            Err(e) => {
                // Usually out of file descriptors: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
