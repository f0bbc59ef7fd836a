//! The edge of the server over real sockets: connection caps at accept (total and per
//! client address), the admin token on the room API, the API on its own listener,
//! per-address rate limits on matchmaking and on rooms created on demand, room option
//! bounds, the request-body deadline, and `X-Forwarded-For` from trusted proxies only.
//!
//! Where a refusal happens next to a running game, a watcher player in that room shows
//! that it lost no snapshot meanwhile. At a connection cap no fresh connection gets in,
//! so those tests read `/metrics` over one HTTP connection kept open from the start.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use tickcast::server::{Config, Games};
use tickcast::shared::SUBPROTOCOL;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One HTTP response: status, headers (names lower-case), body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `error` of a JSON error body.
    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {:?}", self.body))
            .to_owned()
    }
}

/// The request's bytes, with `Content-Length` for `body`.
fn request_bytes(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.as_bytes());
    bytes
}

/// Reads one response (head, then `Content-Length` bytes of body) from `s`.
async fn read_reply(s: &mut TcpStream) -> Reply {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("no response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed mid-response: {:?}",
            String::from_utf8_lossy(&raw)
        );
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < len {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("no body in time")
            .unwrap();
        assert!(n > 0, "closed mid-body");
        body.extend_from_slice(&buf[..n]);
    }
    Reply {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

/// One request on a fresh connection.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&request_bytes(method, path, headers, body))
        .await
        .unwrap();
    read_reply(&mut s).await
}

/// What a connection turned away at accept reads: the whole canned answer, then EOF.
async fn turned_away(addr: SocketAddr) -> Reply {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let reply = read_reply(&mut s).await;
    let mut rest = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut rest))
        .await
        .expect("the refused connection stays open")
        .unwrap();
    assert_eq!(rest, b"", "nothing after the canned answer");
    reply
}

/// An HTTP connection opened before a cap is reached and kept open, to read the
/// server's state when no new connection is let in.
struct KeepAlive(TcpStream);

impl KeepAlive {
    async fn open(addr: SocketAddr) -> Self {
        let mut k = Self(TcpStream::connect(addr).await.unwrap());
        // Admitted for sure (a permit held) once it has had an answer.
        assert_eq!(k.get("/healthz").await.status, 200);
        k
    }

    async fn get(&mut self, path: &str) -> Reply {
        self.0
            .write_all(&request_bytes("GET", path, &[], ""))
            .await
            .unwrap();
        read_reply(&mut self.0).await
    }

    async fn metrics(&mut self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// Waits until `series` reads `want` (the server frees a permit on its own time).
    async fn wait_for(&mut self, series: &str, want: u64) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let got = count(&self.metrics().await, series);
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{series} still {got}, not {want}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// [`left_out`], read over this connection.
    async fn left_out(&mut self, room: &str) -> LeftOut {
        let first = self.metrics().await;
        let wakeups = count(
            &first,
            &format!("tickcast_room_tick_duration_seconds_count{{room=\"{room}\"}}"),
        );
        let ticks = count(&self.metrics().await, "tickcast_ticks_total");
        LeftOut {
            catch_up: ticks - wakeups,
            skipped: count(&first, "tickcast_snapshots_skipped_total"),
        }
    }
}

/// Lets the watcher see the game go on, then checks that every tick it missed is one the
/// server accounts for (catch-up ticks, skipped snapshots), read with `left_out`.
async fn no_snapshot_lost(
    mut watcher: Watcher,
    left_out: impl std::future::Future<Output = LeftOut>,
) {
    watcher.advances(10).await;
    let upto = watcher.latest();
    let allowed = left_out.await;
    let ticks = watcher.finish().await;
    let missing = missing_before(&ticks, upto);
    assert!(
        missing <= allowed.catch_up + allowed.skipped,
        "the watcher missed {missing} ticks; the server accounts for {allowed:?}"
    );
}

const REFUSED: &str = "tickcast_connections_refused_total";
const LIMITED: &str = "tickcast_requests_limited_total";

#[tokio::test]
async fn per_ip_cap_turns_the_next_connection_away_until_a_permit_is_freed() {
    let mut c = config();
    c.max_connections_per_ip = 3;
    let server = start(c).await;
    let url = server.ws_url("safe");
    let watcher = Watcher::join(&url).await;
    let mut k = KeepAlive::open(server.addr).await;
    let mut player = connect(&url).await;
    hello(&mut player, "third").await;

    // The fourth connection from 127.0.0.1 is answered before its request is read.
    let reply = turned_away(server.addr).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(
        reply.body,
        "too many connections from your address (max-connections-per-ip)\n"
    );
    // A WebSocket client reads the same answer as a refused upgrade.
    assert_eq!(
        refusal(&url).await,
        (
            503,
            "too many connections from your address (max-connections-per-ip)".into()
        )
    );
    let page = k.metrics().await;
    let per_ip = format!("{REFUSED}{{reason=\"max_connections_per_ip\"}}");
    assert_eq!(count(&page, &per_ip), 2);
    assert_eq!(
        count(&page, &format!("{REFUSED}{{reason=\"max_connections\"}}")),
        0
    );
    assert_eq!(count(&page, "tickcast_tcp_connections_open"), 3);
    assert_eq!(count(&page, "tickcast_connections_open"), 2, "WebSockets");

    // A player leaves: its permit goes back, and a new player gets in.
    leave(&mut player).await;
    k.wait_for("tickcast_tcp_connections_open", 2).await;
    k.wait_for("tickcast_connections_open", 1).await;
    let mut again = connect(&url).await;
    hello(&mut again, "again").await;
    assert_eq!(
        count(&k.metrics().await, &per_ip),
        2,
        "nothing refused since"
    );

    no_snapshot_lost(watcher, k.left_out("safe")).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn total_cap_applies_at_accept_and_readyz_says_so() {
    let mut c = config();
    c.max_connections = 3;
    c.max_connections_per_ip = 0;
    let server = start(c).await;
    let url = server.ws_url("safe");
    let watcher = Watcher::join(&url).await;
    let mut k = KeepAlive::open(server.addr).await;
    let ready = k.get("/readyz").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "ready\n"));
    let mut player = connect(&url).await;
    hello(&mut player, "third").await;

    let reply = turned_away(server.addr).await;
    assert_eq!(reply.status, 503);
    assert_eq!(
        reply.body,
        "too many connections to this server (max-connections)\n"
    );
    let ready = k.get("/readyz").await;
    assert_eq!(
        (ready.status, ready.body.as_str()),
        (503, "at the connection limit\n")
    );
    assert_eq!(k.get("/healthz").await.status, 200, "alive while full");
    let page = k.metrics().await;
    assert_eq!(
        count(&page, &format!("{REFUSED}{{reason=\"max_connections\"}}")),
        1
    );
    assert_eq!(
        count(
            &page,
            &format!("{REFUSED}{{reason=\"max_connections_per_ip\"}}")
        ),
        0
    );

    leave(&mut player).await;
    k.wait_for("tickcast_tcp_connections_open", 2).await;
    let ready = k.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    no_snapshot_lost(watcher, k.left_out("safe")).await;
    server.stop().await.unwrap();
}

/// A file in the temp directory holding `text`, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path =
            std::env::temp_dir().join(format!("tickcast-security-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn creating_and_deleting_rooms_need_the_admin_token() {
    let token = TempFile::new("admin-token", "s3cret-token\n");
    let mut c = config();
    c.admin_token_file = Some(token.0.clone());
    let server = start(c).await;
    let addr = server.addr;
    let right = [("Authorization", "Bearer s3cret-token")];

    for headers in [
        &[][..],
        &[("Authorization", "Bearer s3cret-toke")][..],
        &[("Authorization", "Bearer s3cret-tokenX")][..],
        &[("Authorization", "Bearer  s3cret-token")][..],
        &[("Authorization", "Basic s3cret-token")][..],
    ] {
        let reply = request(addr, "POST", "/rooms", headers, "{}").await;
        assert_eq!(reply.status, 401, "{headers:?}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.error().contains("admin token"), "{}", reply.body);
    }
    let created = request(addr, "POST", "/rooms", &right, r#"{"npcs":3}"#).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();

    // Reading stays open.
    assert_eq!(request(addr, "GET", "/rooms", &[], "").await.status, 200);
    let path = format!("/rooms/{id}");
    assert_eq!(request(addr, "GET", &path, &[], "").await.status, 200);

    let refused = request(addr, "DELETE", &path, &[], "").await;
    assert_eq!(
        (refused.status, refused.header("www-authenticate")),
        (401, Some("Bearer"))
    );
    assert_eq!(
        request(addr, "GET", &path, &[], "").await.status,
        200,
        "still there"
    );
    let deleted = request(addr, "DELETE", &path, &right, "").await;
    assert_eq!((deleted.status, deleted.body.as_str()), (204, ""));
    assert_eq!(request(addr, "GET", &path, &[], "").await.status, 404);
    assert_eq!(
        count(
            &metrics(addr).await,
            &format!("{LIMITED}{{reason=\"admin_token\"}}")
        ),
        6
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_empty_admin_token_file_stops_the_server_from_starting() {
    let empty = TempFile::new("empty-token", "\n");
    let mut c = config();
    c.admin_token_file = Some(empty.0.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tickcast::server::run(listener, c, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
}

/// A server on two listeners: the main one, and the room API's.
async fn start_with_api(config: Config) -> (TestServer, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, api_addr) = (listener.local_addr().unwrap(), api.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(tickcast::server::serve_with(
        listener,
        Some(api),
        config,
        Games::builtin(),
        shutdown.clone(),
        CancellationToken::new(),
    ));
    (
        TestServer {
            addr,
            shutdown,
            task,
        },
        api_addr,
    )
}

#[tokio::test]
async fn the_room_api_can_live_on_its_own_listener() {
    let (server, api) = start_with_api(config()).await;
    let main = server.addr;

    let created = request(api, "POST", "/rooms", &[], r#"{"npcs":2}"#).await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(request(api, "GET", "/rooms", &[], "").await.status, 200);
    assert_eq!(request(api, "GET", "/healthz", &[], "").await.status, 200);

    // The main listener has no room API, and the API listener nothing else.
    for (method, path) in [
        ("GET", "/rooms".to_owned()),
        ("GET", format!("/rooms/{id}")),
        ("POST", "/rooms".to_owned()),
        ("DELETE", format!("/rooms/{id}")),
    ] {
        let reply = request(main, method, &path, &[], "").await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert!(reply.error().contains("--api-listen"), "{}", reply.body);
    }
    for path in ["/metrics", "/readyz", "/", "/ws"] {
        let reply = request(api, "GET", path, &[], "").await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(reply.error().contains("only /rooms"), "{}", reply.body);
    }
    assert_eq!(
        request(api, "POST", "/matchmake", &[], "").await.status,
        404
    );

    // Players, matchmaking and operations stay on the main listener.
    assert_eq!(request(main, "GET", "/readyz", &[], "").await.status, 200);
    assert_eq!(request(main, "GET", "/metrics", &[], "").await.status, 200);
    let mut ws = connect(&server.ws_url(&id)).await;
    hello(&mut ws, "player").await;
    let matched = request(main, "POST", "/matchmake", &[], "").await;
    assert_eq!(matched.status, 200, "{}", matched.body);
    assert_eq!(matched.json()["room"].as_str(), Some(id.as_str()));

    assert_eq!(
        request(api, "DELETE", &format!("/rooms/{id}"), &[], "")
            .await
            .status,
        204
    );
    server.stop().await.unwrap();
}

/// Sends `POST /matchmake` on one connection until it is refused; returns how many
/// passed before, the refusal, and how long it all took.
async fn matchmake_until_refused(
    addr: SocketAddr,
    headers: &[(&str, &str)],
) -> (u64, Reply, Duration) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let started = Instant::now();
    let mut passed = 0;
    for _ in 0..50 {
        s.write_all(&request_bytes("POST", "/matchmake", headers, ""))
            .await
            .unwrap();
        let reply = read_reply(&mut s).await;
        if reply.status == 200 {
            passed += 1;
        } else {
            return (passed, reply, started.elapsed());
        }
    }
    panic!("50 matchmaking requests in a row passed");
}

/// Matchmaking requests a bucket of `rate` a second and `burst` lets through in `took`.
fn allowed(burst: u64, rate: u64, took: Duration) -> std::ops::RangeInclusive<u64> {
    burst..=burst + rate * took.as_secs_f64().ceil() as u64
}

#[tokio::test]
async fn matchmaking_is_rate_limited_per_client_address() {
    let mut c = config();
    c.matchmake_per_ip_per_sec = 1; // bursts of 2
    let server = start(c).await;
    let (passed, refused, took) = matchmake_until_refused(server.addr, &[]).await;
    assert!(
        allowed(2, 1, took).contains(&passed),
        "{passed} in {took:?}"
    );
    assert_eq!(refused.status, 429, "{}", refused.body);
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.error().contains("matchmaking"), "{}", refused.body);
    // Without a trusted proxy, X-Forwarded-For names nobody: still the same address.
    let spoofed = request(
        server.addr,
        "POST",
        "/matchmake",
        &[("X-Forwarded-For", "203.0.113.50")],
        "",
    )
    .await;
    assert_eq!(spoofed.status, 429);
    let page = metrics(server.addr).await;
    assert_eq!(
        count(&page, &format!("{LIMITED}{{reason=\"matchmake_per_ip\"}}")),
        2
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn x_forwarded_for_is_honoured_only_from_a_trusted_proxy() {
    let mut c = config();
    c.matchmake_per_ip_per_sec = 1;
    c.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    let server = start(c).await;
    let a = [("X-Forwarded-For", "127.0.0.2")];
    let (passed, refused, took) = matchmake_until_refused(server.addr, &a).await;
    assert!(
        allowed(2, 1, took).contains(&passed),
        "{passed} in {took:?}"
    );
    assert_eq!(refused.status, 429);
    // Another client behind the same proxy has its own bucket...
    let b = [("X-Forwarded-For", "127.0.0.3")];
    assert_eq!(
        request(server.addr, "POST", "/matchmake", &b, "")
            .await
            .status,
        200
    );
    // ...and what a client writes left of the proxy's entry is not believed.
    let forged = [("X-Forwarded-For", "127.0.0.9, 127.0.0.2")];
    assert_eq!(
        request(server.addr, "POST", "/matchmake", &forged, "")
            .await
            .status,
        429
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rooms_created_on_demand_are_bounded_per_client_address() {
    let mut c = config();
    c.room_creates_per_ip_per_min = 1;
    let server = start(c).await;
    let addr = server.addr;
    // The watcher's join creates its room: the address's only token this minute.
    let watcher = Watcher::join(&server.ws_url("home")).await;

    let url = server.ws_url("another");
    let err = connect_with(&url, Some(SUBPROTOCOL), None)
        .await
        .unwrap_err();
    let (status, body) = refusal_of(&err);
    assert_eq!(status, 429);
    assert!(body.contains("room-creates-per-ip-per-min"), "{body}");
    match &err {
        tokio_tungstenite::tungstenite::Error::Http(r) => {
            let retry: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=60).contains(&retry), "{retry}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        room_players(addr, "another").await,
        None,
        "no room was made"
    );

    // Joining the room that exists costs nothing.
    let mut guest = connect(&server.ws_url("home")).await;
    hello(&mut guest, "guest").await;
    // Matchmaking finds a seat in it: no room created, so not refused.
    let matched = request(addr, "POST", "/matchmake", &[], "").await;
    assert_eq!(
        (matched.status, matched.json()["room"].as_str()),
        (200, Some("home"))
    );
    // Creating one through the API without the admin token is on the same budget.
    let created = request(addr, "POST", "/rooms", &[], "{}").await;
    assert_eq!(created.status, 429, "{}", created.body);
    assert!(created.header("retry-after").is_some());
    assert_eq!(
        count(
            &metrics(addr).await,
            &format!("{LIMITED}{{reason=\"room_creates_per_ip\"}}")
        ),
        2
    );
    assert_eq!(count(&metrics(addr).await, "tickcast_rooms_open"), 1);
    no_snapshot_lost(watcher, left_out(addr, "home")).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn room_options_beyond_their_bounds_are_400_naming_option_and_bound() {
    let mut c = config();
    c.max_room_npcs = 100;
    let server = start(c).await;
    for (body, message) in [
        (r#"{"npcs":101}"#, "npcs must be 0 to 100"),
        (r#"{"max_players":1025}"#, "max_players must be 1 to 1024"),
        (r#"{"max_players":0}"#, "max_players must be 1 to 1024"),
        (r#"{"tick_rate":241}"#, "tick_rate must be 1 to 240"),
        (r#"{"tick_rate":0}"#, "tick_rate must be 1 to 240"),
        (r#"{"view_radius":-1}"#, "view_radius must be 0 to 1000000"),
        (r#"{"view_radius":1e39}"#, "view_radius"),
    ] {
        let reply = request(server.addr, "POST", "/rooms", &[], body).await;
        assert_eq!(reply.status, 400, "{body}");
        assert!(reply.error().contains(message), "{body}: {}", reply.body);
    }
    let at_bounds = r#"{"npcs":100,"max_players":1024,"tick_rate":240,"view_radius":0}"#;
    assert_eq!(
        request(server.addr, "POST", "/rooms", &[], at_bounds)
            .await
            .status,
        201
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn room_flags_above_the_room_bounds_stop_the_server_from_starting() {
    for (npcs, max_players, flag) in [
        (5001, 128, "--max-room-npcs"),
        (64, 1025, "--max-room-players"),
    ] {
        let mut c = config();
        c.npcs = npcs;
        c.max_players = max_players;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let err = tickcast::server::run(listener, c, CancellationToken::new())
            .await
            .unwrap_err();
        assert!(err.to_string().contains(flag), "{err}");
    }
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let mut c = config();
    c.handshake_timeout = Duration::from_millis(300);
    let server = start(c).await;
    for path in ["/rooms", "/matchmake"] {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        // The head announces 20 bytes; half of them come, then nothing.
        let head =
            format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{{\"npcs\":");
        s.write_all(head.as_bytes()).await.unwrap();
        let reply = read_reply(&mut s).await;
        assert_eq!(reply.status, 408, "{path}: {}", reply.body);
        assert!(
            reply.error().contains("handshake-timeout"),
            "{}",
            reply.body
        );
    }
    assert_eq!(
        count(
            &metrics(server.addr).await,
            &format!("{LIMITED}{{reason=\"body_timeout\"}}")
        ),
        2
    );
    assert_eq!(count(&metrics(server.addr).await, "tickcast_rooms_open"), 0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_tls_port_over_its_cap_closes_without_a_word() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let cert_file = TempFile::new("tls-cert.pem", &cert.pem());
    let key_file = TempFile::new("tls-key.pem", &key.serialize_pem());
    let mut c = config();
    c.tls_cert = Some(cert_file.0.clone());
    c.tls_key = Some(key_file.0.clone());
    c.max_connections_per_ip = 1;
    // Long enough that only the cap can close the second connection within WAIT.
    c.handshake_timeout = Duration::from_secs(60);
    let server = start(c).await;
    // The first connection holds the address's only permit while its handshake waits.
    let mut first = TcpStream::connect(server.addr).await.unwrap();
    // The second is closed at once: no canned 503, which a TLS client could not read.
    let mut second = TcpStream::connect(server.addr).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(WAIT, second.read_to_end(&mut got))
        .await
        .expect("the refused connection was not closed")
        .unwrap();
    assert_eq!(got, b"", "nothing is written before TLS");
    // The first is still waiting for its ClientHello.
    let mut byte = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(100), first.read(&mut byte))
            .await
            .is_err(),
        "the admitted connection is still open"
    );
    drop(first);
    server.stop().await.unwrap();
}
