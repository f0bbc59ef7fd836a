//! Server configuration: every limit has a default here, a flag, and a test somewhere.
//!
//! [`Config`] is a clap parser so `tickcast-server --help` documents each flag, and a
//! plain struct so tests build one with `Config::default()` and change a field.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

fn non_negative(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a non-negative number")),
    }
}

/// Largest `--max-game-message-bytes`: a `GameMessage` of n bytes claims 12 + n of
/// the 4 KiB client decode ceiling (PROTOCOL.md section 6), so 4000 keeps a margin.
const MAX_GAME_MESSAGE_BYTES: usize = 4000;

fn game_message_bytes(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=MAX_GAME_MESSAGE_BYTES).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not 1 to {MAX_GAME_MESSAGE_BYTES}")),
    }
}

fn duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}

/// tickcast-server: authoritative fixed-tick game rooms over WebSockets.
#[derive(Debug, Clone, Parser)]
#[command(version, about, long_about = None)]
pub struct Config {
    /// Address to listen on for HTTP and WebSocket (`GET /ws?room=NAME`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PEM certificate chain (leaf first): serve `wss://` and `https://` instead of
    /// `ws://` and `http://` on `--listen`. Needs `--tls-key`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require a signed player token in every `Hello`, verified with the HS256 shared
    /// secret in FILE (its bytes, a trailing newline trimmed). Off by default, so local
    /// play stays open. See docs/HOSTING.md, "Player authentication".
    #[arg(long, value_name = "FILE", conflicts_with = "auth_jwt_public_key_file")]
    pub auth_jwt_secret_file: Option<PathBuf>,

    /// Require a signed player token in every `Hello`, verified with the PEM public key in
    /// FILE (RSA for RS256, or an EC P-256 key for ES256): the game backend signs with
    /// its private key, which never reaches this server.
    #[arg(long, value_name = "FILE")]
    pub auth_jwt_public_key_file: Option<PathBuf>,

    /// Clock skew allowed when checking a player token's `exp` (and `nbf`).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub auth_jwt_leeway: Duration,

    /// When set, a player token must carry this `iss` claim.
    #[arg(long, value_name = "ISSUER")]
    pub auth_jwt_issuer: Option<String>,

    /// When set, a player token must carry this `aud` claim.
    #[arg(long, value_name = "AUDIENCE")]
    pub auth_jwt_audience: Option<String>,

    /// Simulation ticks per second of every room; one snapshot per player per tick.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub tick_rate: u16,

    /// The game of rooms created on demand (by joining a room that does not exist, or
    /// by matchmaking): a name the server registers (`arena` or `tag` in
    /// `tickcast-server`).
    #[arg(long, default_value = "arena")]
    pub game: String,

    /// NPCs in each new room (the Arena's wandering bodies; other games read it as
    /// they see fit).
    #[arg(long, default_value_t = 64)]
    pub npcs: u32,

    /// Seed of the Arena's NPC layout and spawn points (same seed, same world).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Area of interest, in world units: each player is sent only the entities within
    /// this distance of its avatar (entering and leaving explicitly). 0 sends the whole world.
    #[arg(long, default_value_t = 0.0, value_parser = non_negative)]
    pub view_radius: f32,

    /// Players per room; joins beyond it get HTTP 409 (or close 4000 if they race).
    #[arg(long, default_value_t = 128)]
    pub max_players: usize,

    /// Rooms this process hosts at once; a join that would create one more gets HTTP 503.
    #[arg(long, default_value_t = 1000)]
    pub max_rooms: usize,

    /// Rooms with `/metrics` series of their own (labelled with the room's name) at
    /// once; rooms opened beyond it report into `room="_other"`. Clients create rooms by
    /// naming them, so this bounds the page.
    #[arg(long, default_value_t = 100)]
    pub max_labelled_rooms: usize,

    /// Open TCP connections at once on `--listen` (WebSocket players, HTTP requests and
    /// TLS handshakes alike), counted at accept, before TLS and HTTP: more get a canned
    /// HTTP 503 (plain) or are closed (TLS).
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,

    /// Open TCP connections at once from one client address (0: no limit), counted at
    /// accept like `--max-connections`. Not lower by default: players behind one NAT, a
    /// LAN party or a campus share an address. Load tests from one host pass a higher
    /// value (or 0).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Peer address of a reverse proxy (repeatable; none by default) whose
    /// `X-Forwarded-For` names the client for the per-IP limits. Only a proxy you run
    /// may be trusted: anyone else could name any address and walk around the limits.
    #[arg(long = "trusted-proxy", value_name = "IP")]
    pub trusted_proxies: Vec<std::net::IpAddr>,

    /// `POST /matchmake` requests per second from one client address, sustained; bursts
    /// of twice that. More get HTTP 429 with `Retry-After`.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub matchmake_per_ip_per_sec: u32,

    /// Rooms one client address may create per minute (joining a room that does not
    /// exist, a matchmake that opens a room, `POST /rooms` without the admin token);
    /// bursts of the same number. More get HTTP 429.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    pub room_creates_per_ip_per_min: u32,

    /// Largest `npcs` of a room (`--npcs`, and `POST /rooms`, which answers 400 beyond it).
    #[arg(long, default_value_t = 5000)]
    pub max_room_npcs: u32,

    /// Largest `max_players` of a room (`--max-players`, and `POST /rooms`, which answers
    /// 400 beyond it).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_room_players: u64,

    /// File holding the admin token (a trailing newline is ignored; an empty file stops
    /// the server from starting). With it, `POST /rooms` and `DELETE /rooms/{id}` need
    /// `Authorization: Bearer TOKEN`; reading rooms stays open.
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,

    /// Serve the room API (`/rooms*`) and `/healthz` on this address instead, e.g. a
    /// private interface; `--listen` then answers `/rooms*` with 404.
    #[arg(long, value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,

    /// Browser Origin allowed to connect besides the server's own (repeatable; `*`
    /// allows any). Requests without an Origin header (native clients) and from the
    /// server's own origin (its page at `/`) are always allowed.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,

    /// Largest client message, counted over all fragments; bigger ones close with 1009.
    #[arg(long, default_value_t = tickcast_shared::DEFAULT_MAX_MESSAGE_BYTES)]
    pub max_message_bytes: usize,

    /// Sustained messages per second a client may send (bursts up to the same number);
    /// more close the connection with 1008.
    #[arg(long, default_value_t = 120)]
    pub max_messages_per_sec: u32,

    /// Time a TCP connection has to finish its TLS handshake, then its HTTP request
    /// headers, and an API request its body (else 408).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub handshake_timeout: Duration,

    /// Time a WebSocket client has to send Hello after the upgrade (else close 4004).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub hello_timeout: Duration,

    /// A connection that sends nothing (no message, no pong) this long is closed with 4003.
    #[arg(long, default_value = "15s", value_parser = duration)]
    pub idle_timeout: Duration,

    /// Interval of the server's WebSocket pings (keepalive; answered by every client).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub ping_interval: Duration,

    /// A player whose connection drops (without a close from the player) keeps its
    /// avatar this long, and can resume it with its session token.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub reconnect_grace: Duration,

    /// How long a matchmaking ticket holds its reserved seat.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub ticket_ttl: Duration,

    /// A room with no players for this long is removed.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub room_idle_timeout: Duration,

    /// Ticks a late room may run back to back to catch up; more are skipped and counted.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_catch_up_ticks: u32,

    /// Kernel send buffer per connection in bytes (SO_SNDBUF); 0 keeps the OS default.
    /// A small buffer keeps what a slow player receives fresh: once it fills, the
    /// writer waits and newer snapshots replace unsent ones, instead of seconds of stale
    /// snapshots queueing in the kernel.
    #[arg(long, default_value_t = 0)]
    pub send_buffer: usize,

    /// Largest game message a client may send (`GameMessage` payload, bytes); larger
    /// ones close with 1009. At most 4000: a client message must also fit the 4 KiB
    /// decode ceiling every client message is held to.
    #[arg(long, default_value_t = 1024, value_parser = game_message_bytes)]
    pub max_game_message_bytes: usize,

    /// Game messages per second a client may send (sustained, and the burst); more
    /// close with 1008. Counted on top of `--max-messages-per-sec`.
    #[arg(long, default_value_t = 20)]
    pub max_game_messages_per_sec: u32,

    /// Reliable messages (welcome, pongs, game events) queued per connection; overflow
    /// closes with 4005.
    #[arg(long, default_value_t = 64)]
    pub reliable_queue: usize,

    /// Run as an Agones game server: tell the SDK sidecar (its REST API on 127.0.0.1)
    /// Ready once listening, Health every `--agones-health-period`, the player count and
    /// capacity as the Counter `players`, and Shutdown once the drain is over. A sidecar
    /// that cannot be reached is logged and retried; it never stops the games. See
    /// deploy/README.md.
    #[arg(long)]
    pub agones: bool,

    /// Port of the Agones SDK sidecar's REST API on 127.0.0.1. Unset: the
    /// `AGONES_SDK_HTTP_PORT` that Agones gives the container, else 9358.
    #[arg(long, value_name = "PORT", requires = "agones")]
    pub agones_sdk_port: Option<u16>,

    /// Period of the Health calls to the Agones sidecar: keep it below the Fleet's
    /// `health.periodSeconds` (5 s by default), so one late call is not a failure.
    #[arg(long, default_value = "2s", value_parser = duration, requires = "agones")]
    pub agones_health_period: Duration,

    /// The cluster room directory: `redis://HOST:PORT/DB` (off by default). With it,
    /// this node publishes its rooms, `GET /rooms` lists every live node's public rooms
    /// and `POST /matchmake` reserves seats cluster-wide. See docs/HOSTING.md "Running a
    /// cluster". Needs `--cluster-secret-file`, and `--public-url` unless `--agones`
    /// discovers it.
    #[arg(long, value_name = "URL", requires = "cluster_secret_file")]
    pub redis: Option<String>,

    /// This node's id in the cluster: 1 to 64 of `A-Z a-z 0-9 . _ -` (default: `node-`
    /// and 12 random hex digits). On Agones, the pod's name.
    #[arg(long, value_name = "ID", requires = "redis")]
    pub node_id: Option<String>,

    /// What clients dial to reach this node, e.g. `ws://10.0.0.5:8080` or
    /// `wss://eu-1.example.com`: matchmaking on any node sends players here.
    #[arg(long, value_name = "URL", requires = "redis")]
    pub public_url: Option<String>,

    /// File holding the cluster secret (at least 32 bytes, the same on every node):
    /// it signs the tickets one node gives for a seat on another.
    #[arg(long, value_name = "FILE", requires = "redis")]
    pub cluster_secret_file: Option<PathBuf>,

    /// How long this node's directory records live without a refresh: a node killed
    /// without a drain vanishes from the directory within this. Hidden: for tests.
    #[arg(long, default_value = "10s", value_parser = duration, hide = true)]
    pub cluster_node_ttl: Duration,

    /// Bytes per second of snapshots each player may be sent; 0 (the default) is no
    /// budget. When a player's deltas would exceed it, the most important changes go
    /// first (its own avatar, near and fast-changing entities) and the rest wait, with a
    /// priority that grows until they are sent. The burst is one second's worth.
    #[arg(long, default_value_t = 0)]
    pub max_bytes_per_player_per_sec: u64,

    /// Records every room to `DIR/room-ID` for `tickcast-replay`: the seed and options,
    /// joins, leaves, game messages, every applied input and a world hash per tick.
    /// Written off the tick by a writer task; a writer that falls behind drops records
    /// and marks the recording incomplete rather than slow the game.
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,

    /// Size of one recording file; past it the recording rotates to `room-ID.1`,
    /// `room-ID.2`, ... A replay needs every file from the first one.
    #[arg(long, default_value_t = 64 * 1024 * 1024, value_name = "BYTES")]
    pub record_max_bytes: u64,

    /// Recording files kept per room; older ones are deleted.
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub record_keep: usize,

    /// On SIGTERM or Ctrl-C, how long running rooms may go on (no new joins meanwhile)
    /// before every player is closed with 1001. The drain ends early when no player is
    /// left; a second signal ends it at once.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub drain_timeout: Duration,

    /// On shutdown, time given to connections to flush their close frames.
    #[arg(long, default_value = "2s", value_parser = duration)]
    pub shutdown_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        // The flag defaults are the one source of truth.
        Self::parse_from(["tickcast-server"])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn defaults_and_flags() {
        Config::command().debug_assert();
        let d = Config::default();
        assert_eq!(d.tick_rate, 30);
        assert_eq!(d.npcs, 64);
        assert_eq!(d.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(d.max_message_bytes, 64 * 1024);
        assert_eq!(d.max_labelled_rooms, 100);
        let c = Config::parse_from([
            "x",
            "--allow-origin",
            "https://a.example",
            "--allow-origin",
            "*",
            "--idle-timeout",
            "500ms",
        ]);
        assert_eq!(c.allow_origins, ["https://a.example", "*"]);
        assert_eq!(c.idle_timeout, Duration::from_millis(500));
        assert!(Config::try_parse_from(["x", "--tick-rate", "0"]).is_err());
        assert!(Config::try_parse_from(["x", "--max-game-message-bytes", "4001"]).is_err());
        assert!(Config::try_parse_from(["x", "--max-game-message-bytes", "0"]).is_err());
        let big = Config::parse_from(["x", "--max-game-message-bytes", "4000"]);
        assert_eq!(big.max_game_message_bytes, 4000);
        // A certificate without its key (or the reverse) is a usage error, not a
        // silently plain-text server.
        assert!(Config::try_parse_from(["x", "--tls-cert", "c.pem"]).is_err());
        assert!(Config::try_parse_from(["x", "--tls-key", "k.pem"]).is_err());
        let tls = Config::try_parse_from(["x", "--tls-cert", "c.pem", "--tls-key", "k.pem"])
            .expect("both given");
        assert_eq!(tls.tls_cert, Some(PathBuf::from("c.pem")));
        assert_eq!(d.tls_cert, None);
    }
}
