//! `wss://` and `https://` with the server's own TLS (`--tls-cert`, `--tls-key`).
//!
//! Every test makes a fresh private CA and a certificate it signs for `localhost`
//! only, so a client must trust the CA (`--ca-cert` in the bots) and must use the name
//! the certificate gives. The players are the project's client library and bots, and
//! tokio-tungstenite over its own rustls connector as a third-party client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tickcast::client::{
    run_swarm, ClientError, ConnectOptions, Connection, Event, SwarmConfig, TlsTrust,
};
use tickcast::shared::SUBPROTOCOL;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{
    self, pki_types::ServerName, CertificateError, ClientConfig, RootCertStore,
};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};
use tokio_tungstenite::Connector;
use tokio_util::sync::CancellationToken;

/// A private CA and a server certificate it issued for `localhost`, as PEM files in a
/// directory of their own (removed on drop).
struct Pki {
    dir: PathBuf,
    ca: rustls::pki_types::CertificateDer<'static>,
}

impl Pki {
    fn new() -> Pki {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tickcast-tls-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &ca)
            .unwrap();

        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
        Pki {
            ca: ca.der().clone(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// A server configuration that serves TLS with this certificate.
    fn config(&self) -> tickcast::server::Config {
        tickcast::server::Config {
            tls_cert: Some(self.path("cert.pem")),
            tls_key: Some(self.path("key.pem")),
            ..config()
        }
    }

    /// What a third-party client trusts: only this CA.
    fn rustls_client(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wss(server: &TestServer, host: &str, room: &str) -> String {
    format!("wss://{host}:{}/ws?room={room}", server.addr.port())
}

fn options(url: String, trust: &TlsTrust) -> ConnectOptions {
    ConnectOptions {
        tls: trust.clone(),
        ..ConnectOptions::new(url, "tls-player")
    }
}

/// Next snapshot event from a library connection (pongs skipped).
async fn next_snapshot(conn: &mut Connection) -> tickcast::shared::Snapshot {
    loop {
        match tokio::time::timeout(WAIT, conn.next_event()).await.unwrap() {
            Ok(Event::Snapshot(s)) => return s,
            Ok(Event::Pong { .. } | Event::Game(_)) => continue,
            Ok(Event::Closed { code, reason }) => panic!("closed: {code} {reason}"),
            Err(e) => panic!("connection failed: {e}"),
        }
    }
}

/// One HTTP/1.1 request over TLS; returns the status and the body.
async fn https_get(server: &TestServer, pki: &Pki, path: &str) -> (u16, String) {
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(pki.rustls_client())
        .connect(name, tcp)
        .await
        .unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    // A TLS peer that closes without close_notify is a read error in rustls; hyper
    // sends close_notify on a clean shutdown, so any error here is a real one.
    tokio::time::timeout(WAIT, tls.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    parse_response(&out)
}

#[tokio::test]
async fn the_client_library_plays_over_wss() {
    let pki = Pki::new();
    let server = start(pki.config()).await;
    let trust = TlsTrust::with_ca_pem_file(&pki.path("ca.pem")).unwrap();

    let mut conn = Connection::connect(options(wss(&server, "localhost", "secure"), &trust))
        .await
        .unwrap();
    let first = next_snapshot(&mut conn).await;
    assert_eq!(first.base_tick, 0, "the first snapshot is a keyframe");
    let seq = conn.send_input(glam::Vec2::new(1.0, 0.0), 0).await.unwrap();
    // The input comes back acknowledged in a later snapshot: both directions work.
    let acked = loop {
        let s = next_snapshot(&mut conn).await;
        if s.last_input_seq >= seq {
            break s.last_input_seq;
        }
    };
    assert_eq!(acked, seq);
    assert_eq!(conn.session().world().entities.len(), 17, "16 NPCs and us");
    assert_eq!(conn.close("done").await.unwrap(), Some(1000));
    server.stop().await.unwrap();
}

/// Upper bound on the ticks the room advanced without a snapshot for anyone (catch-up
/// ticks): ticks run minus the wake-ups that ran them, the wake-ups read first since
/// both only grow. Also returns the second page.
async fn catch_up_ticks(server: &TestServer, pki: &Pki, room: &str) -> (u64, String) {
    let (status, first) = https_get(server, pki, "/metrics").await;
    assert_eq!(status, 200);
    let wakeups = count(
        &first,
        &format!("tickcast_room_tick_duration_seconds_count{{room=\"{room}\"}}"),
    );
    let (status, text) = https_get(server, pki, "/metrics").await;
    assert_eq!(status, 200);
    (count(&text, "tickcast_ticks_total") - wakeups, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bot_swarm_runs_over_wss() {
    const BOTS: u64 = 8;
    let pki = Pki::new();
    let server = start(pki.config()).await;
    let config = SwarmConfig {
        url: wss(&server, "localhost", "swarm"),
        bots: BOTS as usize,
        duration: Duration::from_secs(2),
        ramp: Duration::from_millis(200),
        tls: TlsTrust::with_ca_pem_file(&pki.path("ca.pem")).unwrap(),
        ..SwarmConfig::default()
    };
    let began = std::time::Instant::now();
    let report = run_swarm(config, CancellationToken::new()).await;
    let elapsed = began.elapsed().as_secs_f64();
    assert_eq!(report.bots_connected, BOTS, "errors: {:?}", report.errors);
    assert_eq!((report.bots_failed, report.bots_disconnected), (0, 0));
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        report.close_codes.get("1000"),
        Some(&BOTS),
        "{:?}",
        report.close_codes
    );
    // Snapshots flowed over TLS as over plain TCP: every tick a bot missed is one the
    // server ran as catch-up or skipped in that bot's slot, and no bot got more than
    // one snapshot per tick (at most elapsed * 30 + 2 distinct ticks in the run).
    let (catch_up, text) = catch_up_ticks(&server, &pki, "swarm").await;
    let slot_skips = count(&text, "tickcast_snapshots_skipped_total");
    assert!(
        report.snapshots_missed <= BOTS * catch_up + slot_skips,
        "{} ticks missed; {catch_up} catch-up ticks, {slot_skips} skipped snapshots",
        report.snapshots_missed
    );
    let received = report.snapshots_received;
    let most = BOTS as f64 * (elapsed * 30.0 + 2.0);
    assert!(
        received as f64 <= most,
        "{received} snapshots, at most {most}"
    );
    // Every bot's first snapshot comes one tick after it joins, at most 0.2 s into a
    // 2 s run, so each bot has snapshots and each one after its first is a gap: this
    // holds unless the machine stalls for 1.8 s.
    assert_eq!(
        report.snapshot_gap_ms.count,
        received - BOTS,
        "{:?}",
        report.snapshot_gap_ms
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_third_party_client_plays_over_wss() {
    let pki = Pki::new();
    let server = start(pki.config()).await;
    let mut request = wss(&server, "localhost", "tungstenite")
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async_tls_with_config(
        request,
        None,
        false,
        Some(Connector::Rustls(pki.rustls_client())),
    )
    .await
    .unwrap();
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        SUBPROTOCOL,
        "the subprotocol is echoed over TLS too"
    );
    let welcome = hello(&mut ws, "tungstenite").await;
    let snapshot = recv_snapshot(&mut ws).await;
    assert_eq!(snapshot.base_tick, 0, "the first snapshot is a keyframe");
    assert!(
        snapshot.tick > welcome.server_tick,
        "the first snapshot ({}) is of a tick after the join ({})",
        snapshot.tick,
        welcome.server_tick
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn health_and_the_room_api_answer_over_https() {
    let pki = Pki::new();
    let server = start(pki.config()).await;
    assert_eq!(
        https_get(&server, &pki, "/healthz").await,
        (200, "ok\n".into())
    );
    let (status, rooms) = https_get(&server, &pki, "/rooms").await;
    assert_eq!(status, 200);
    // No room runs until someone joins or creates one.
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&rooms).unwrap(),
        serde_json::json!([]),
        "{rooms}"
    );
    let (status, _) = https_get(&server, &pki, "/nope").await;
    assert_eq!(status, 404);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn the_client_refuses_a_certificate_it_cannot_trust() {
    let pki = Pki::new();
    let server = start(pki.config()).await;

    // Public roots only: a private CA is unknown.
    let public = TlsTrust::public_roots();
    let err = Connection::connect(options(wss(&server, "localhost", "r"), &public))
        .await
        .unwrap_err();
    assert!(
        matches!(certificate_error(&err), CertificateError::UnknownIssuer),
        "{err:?}"
    );
    assert!(
        !err.is_connection_loss(),
        "a bad certificate is not worth retrying"
    );
    assert_eq!(err.kind(), "tls: invalid peer certificate: UnknownIssuer");

    // The right CA, but an address the certificate does not name.
    let trust = TlsTrust::with_ca_pem_file(&pki.path("ca.pem")).unwrap();
    let err = Connection::connect(options(wss(&server, "127.0.0.1", "r"), &trust))
        .await
        .unwrap_err();
    match certificate_error(&err) {
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let ip = std::net::Ipv4Addr::LOCALHOST;
            assert_eq!(*expected, ServerName::IpAddress(ip.into()));
            assert_eq!(presented, &["DnsName(\"localhost\")"], "the names it holds");
        }
        other => panic!("expected a name mismatch, got {other:?}"),
    }
    assert!(
        !err.is_connection_loss(),
        "a bad name is not worth retrying"
    );
    server.stop().await.unwrap();
}

/// The certificate complaint inside a client error; panics on any other error.
fn certificate_error(err: &ClientError) -> &CertificateError {
    match err {
        ClientError::Tls(rustls::Error::InvalidCertificate(e)) => e,
        other => panic!("expected a certificate error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_peers_are_dropped_and_players_go_on() {
    let pki = Pki::new();
    let handshake_timeout = Duration::from_millis(300);
    let server = start(tickcast::server::Config {
        handshake_timeout,
        ..pki.config()
    })
    .await;
    let trust = TlsTrust::with_ca_pem_file(&pki.path("ca.pem")).unwrap();
    let mut player = Connection::connect(options(wss(&server, "localhost", "calm"), &trust))
        .await
        .unwrap();
    let mut last = next_snapshot(&mut player).await;

    // A plain-text WebSocket client on the TLS port: its request is not a TLS record,
    // so the server answers with a TLS alert and closes; the alert is not an HTTP
    // response, which is how the client fails.
    let plain = tokio::time::timeout(
        WAIT,
        connect_with(&server.ws_url("calm"), Some(SUBPROTOCOL), None),
    )
    .await
    .expect("a plain client is answered, not left hanging");
    match plain {
        Err(tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HttparseError(e))) => {
            assert_eq!(e.to_string(), "invalid HTTP version")
        }
        other => panic!("expected a response that is not HTTP, got {other:?}"),
    }

    // Garbage where a ClientHello belongs: the server closes the socket.
    let mut garbage = TcpStream::connect(server.addr).await.unwrap();
    garbage
        .write_all(b"\x16\x03\x01\x00\x05hello")
        .await
        .unwrap();
    assert_closed_without_a_word(&mut garbage).await;

    // Silence: dropped after the handshake timeout, not before.
    let connecting = std::time::Instant::now();
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    assert_closed_without_a_word(&mut silent).await;
    assert!(
        connecting.elapsed() >= handshake_timeout,
        "a silent peer was dropped after {:?}",
        connecting.elapsed()
    );

    // The player saw none of it: its snapshots kept coming in order, every one decoded
    // and applied (the library checks each delta against what it holds).
    for _ in 0..10 {
        let s = next_snapshot(&mut player).await;
        assert!(s.tick > last.tick, "tick {} after {}", s.tick, last.tick);
        assert!(
            s.base_tick == last.tick || s.base_tick == 0,
            "tick {} against {}, the player holds {}",
            s.tick,
            s.base_tick,
            last.tick
        );
        last = s;
    }
    // Each failure is counted before its socket is dropped, and every one was seen
    // dropped above; the player's handshake and this request's succeeded.
    let (_, metrics) = https_get(&server, &pki, "/metrics").await;
    assert_eq!(
        count(&metrics, "tickcast_tls_handshakes_failed_total"),
        3,
        "plain, garbage and silent peers"
    );
    server.stop().await.unwrap();
}

/// Reads until the server closes the socket, within [`WAIT`]: a clean close (the
/// server read everything sent, so it is no reset) with not a byte sent (no
/// ServerHello, and for these peers no alert either).
async fn assert_closed_without_a_word(stream: &mut TcpStream) {
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut buf))
        .await
        .expect("the server closes a bad TLS peer");
    assert_eq!(read.expect("a clean close"), 0, "sent {buf:?}");
}

#[tokio::test]
async fn the_server_will_not_start_with_unusable_tls_files() {
    let pki = Pki::new();
    let other = Pki::new();
    let listener = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
    let run = |config| async {
        tickcast::server::run(listener().await, config, CancellationToken::new()).await
    };

    let missing = tickcast::server::Config {
        tls_cert: Some(pki.path("nope.pem")),
        ..pki.config()
    };
    let err = run(missing).await.unwrap_err();
    assert!(format!("{err:#}").contains("nope.pem"), "{err:#}");

    // A certificate with somebody else's key.
    let mismatched = tickcast::server::Config {
        tls_key: Some(other.path("key.pem")),
        ..pki.config()
    };
    let err = run(mismatched).await.unwrap_err();
    assert!(
        format!("{err:#}").contains("do not form a usable pair"),
        "{err:#}"
    );

    // A key file given as the certificate: no certificate in it.
    let swapped = tickcast::server::Config {
        tls_cert: Some(pki.path("key.pem")),
        ..pki.config()
    };
    let err = run(swapped).await.unwrap_err();
    assert!(format!("{err:#}").contains("no certificate"), "{err:#}");
}
