//! The clients' side of player authentication against a real server started with
//! `auth_jwt_secret_file` (docs/PROTOCOL.md, section 3, *Player authentication*): the
//! Rust client with a signed token joins and plays, and keeps the token across a
//! resume; each refusal (4010-4013) is a typed error and creates no room; a second
//! connection of the same player closes the first with 4014, which does not reconnect;
//! a swarm signing its own tokens puts every bot in as a player of its own; and the
//! `tickcast-bots` binary does the same from `--jwt-secret-file`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::bots::bots_binary;
use common::proxy::Proxy;
use common::*;
use glam::Vec2;
use tickcast::client::token::{sign_hs256, BotTokens, PlayerClaims, PlayerToken};
use tickcast::client::{
    run_swarm, ClientError, ConnectOptions, Connection, Event, ReconnectPolicy,
    ReconnectingConnection, SessionEvent, SwarmConfig,
};
use tickcast::server::Config;
use tickcast::shared::DisconnectReason;
use tokio_util::sync::CancellationToken;

/// The HS256 secret of these tests: 32 bytes, the server's minimum.
const SECRET: &[u8] = b"tickcast-auth-clients-test-key-0";

/// A file holding [`SECRET`] (with the newline an editor adds), removed on drop.
struct SecretFile(PathBuf);

impl SecretFile {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "tickcast-auth-clients-{test}-{}.key",
            std::process::id()
        ));
        let mut contents = SECRET.to_vec();
        contents.push(b'\n');
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for SecretFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A server that requires a player token signed with [`SECRET`].
async fn auth_server(secret: &SecretFile) -> TestServer {
    start(Config {
        auth_jwt_secret_file: Some(secret.path().to_owned()),
        ..config()
    })
    .await
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A token for `sub`, valid for a minute, for any room.
fn token(sub: &str) -> PlayerToken {
    BotTokens::new(SECRET.to_vec())
        .unwrap()
        .mint(sub, "unused", now_unix() + 60)
        .unwrap()
}

fn options(url: String, name: &str, token: Option<PlayerToken>) -> ConnectOptions {
    ConnectOptions {
        auth_token: token,
        ..ConnectOptions::new(url, name)
    }
}

/// Reads until a snapshot acknowledges input `seq`.
async fn until_acked(conn: &mut Connection, seq: u32) {
    for _ in 0..120 {
        match tokio::time::timeout(WAIT, conn.next_event()).await.unwrap() {
            Ok(Event::Snapshot(s)) if s.last_input_seq >= seq => return,
            Ok(Event::Snapshot(_) | Event::Pong { .. } | Event::Game(_)) => continue,
            other => panic!("waiting for input {seq} to be applied: {other:?}"),
        }
    }
    panic!("input {seq} never acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_signed_token_joins_and_plays() {
    let secret = SecretFile::new("plays");
    let server = auth_server(&secret).await;
    let url = server.ws_url("authed");
    let mut conn = Connection::connect(options(url, "hello-name", Some(token("alice"))))
        .await
        .unwrap();
    assert_eq!(conn.send_input(Vec2::X, 0).await.unwrap(), 1);
    until_acked(&mut conn, 1).await;
    assert_eq!(players(server.addr, "authed").await, 1);
    assert_eq!(conn.close("done").await.unwrap(), Some(1000));
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refused_token_is_a_typed_error_and_creates_no_room() {
    let secret = SecretFile::new("refused");
    let server = auth_server(&secret).await;
    let claims = |room: Option<&str>, exp: u64| PlayerClaims {
        sub: "mallory".into(),
        exp,
        name: None,
        room: room.map(str::to_owned),
        iss: None,
        aud: None,
    };
    let in_a_minute = now_unix() + 60;
    let cases = [
        ("none", None, DisconnectReason::AuthRequired),
        (
            "forged",
            Some(
                sign_hs256(
                    b"not-the-server-secret-not-at-all",
                    &claims(None, in_a_minute),
                )
                .unwrap(),
            ),
            DisconnectReason::AuthInvalid,
        ),
        (
            "garbage",
            Some(PlayerToken::new("not.a.jwt")),
            DisconnectReason::AuthInvalid,
        ),
        (
            "expired",
            // An hour ago: far beyond the server's 10 s leeway.
            Some(sign_hs256(SECRET, &claims(None, now_unix() - 3600)).unwrap()),
            DisconnectReason::AuthExpired,
        ),
        (
            "elsewhere",
            Some(sign_hs256(SECRET, &claims(Some("another-room"), in_a_minute)).unwrap()),
            DisconnectReason::AuthWrongRoom,
        ),
    ];
    for (what, token, want) in cases {
        let room = format!("refused-{what}");
        let err = Connection::connect(options(server.ws_url(&room), "mallory", token))
            .await
            .expect_err(what);
        let typed = match want {
            DisconnectReason::AuthRequired => matches!(err, ClientError::AuthRequired),
            DisconnectReason::AuthInvalid => matches!(err, ClientError::AuthInvalid),
            DisconnectReason::AuthExpired => matches!(err, ClientError::AuthExpired),
            DisconnectReason::AuthWrongRoom => matches!(err, ClientError::AuthWrongRoom),
            other => unreachable!("{other:?}"),
        };
        assert!(typed, "{what}: {err:?}");
        assert_eq!(err.close_reason(), Some(want), "{what}");
        assert_eq!(err.kind(), format!("close {}", want.code()), "{what}");
        assert_eq!(
            room_players(server.addr, &room).await,
            None,
            "{what}: no room"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_the_same_player_ends_the_first_with_4014() {
    let secret = SecretFile::new("replaced");
    let server = auth_server(&secret).await;
    let url = server.ws_url("tabs");
    let same = token("bob");
    // The first one would reconnect after a loss: 4014 is not one.
    let policy = ReconnectPolicy::default();
    let mut first = ReconnectingConnection::connect(
        options(url.clone(), "bob-tab-1", Some(same.clone())),
        Some(policy),
    )
    .await
    .unwrap();
    let mut second = Connection::connect(options(url, "bob-tab-2", Some(same)))
        .await
        .unwrap();
    // The newer connection has the same player: the seat was taken over.
    assert_eq!(second.welcome().player_id, first.welcome().player_id);
    assert_eq!(second.welcome().entity_id, first.welcome().entity_id);

    let closed = loop {
        match tokio::time::timeout(WAIT, first.next_event())
            .await
            .unwrap()
        {
            Ok(SessionEvent::Snapshot(_) | SessionEvent::Pong { .. }) => continue,
            Ok(event) => break event,
            Err(e) => panic!("the first connection failed instead of closing: {e:?}"),
        }
    };
    assert_eq!(
        closed.close_reason(),
        Some(DisconnectReason::Replaced),
        "{closed:?}"
    );
    assert!(!first.is_reconnecting());
    assert!(matches!(
        first.send_input(Vec2::X, 0).await,
        Err(ClientError::Replaced)
    ));
    assert!(matches!(
        tokio::time::timeout(WAIT, first.next_event())
            .await
            .unwrap(),
        Err(ClientError::Replaced)
    ));
    assert_eq!(first.reconnects(), 0);

    // The newer one plays on, alone in the room.
    assert_eq!(second.send_input(Vec2::Y, 0).await.unwrap(), 1);
    until_acked(&mut second, 1).await;
    assert_eq!(players(server.addr, "tabs").await, 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_carries_the_token_again() {
    let secret = SecretFile::new("resume");
    let mut c = config();
    c.auth_jwt_secret_file = Some(secret.path().to_owned());
    c.reconnect_grace = Duration::from_secs(5);
    let server = start(c).await;
    let proxy = Proxy::start(server.addr).await;
    let policy = ReconnectPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        budget: Duration::from_secs(5),
    };
    let opts = options(proxy.url("resumed"), "carol", Some(token("carol")));
    let mut conn = ReconnectingConnection::connect(opts, Some(policy))
        .await
        .unwrap();
    let welcome = conn.welcome().clone();
    proxy.cut();
    loop {
        match tokio::time::timeout(WAIT, conn.next_event()).await.unwrap() {
            Ok(SessionEvent::Snapshot(_) | SessionEvent::Pong { .. }) => continue,
            Ok(SessionEvent::Reconnecting { .. }) => {}
            Ok(SessionEvent::Reconnected { .. }) => break,
            other => panic!("expected a resume, got {other:?}"),
        }
    }
    let again = conn.welcome();
    assert_eq!(
        (again.player_id, again.session_token),
        (welcome.player_id, welcome.session_token)
    );
    assert_eq!(conn.send_input(Vec2::X, 0).await.unwrap(), 1);
    loop {
        match tokio::time::timeout(WAIT, conn.next_event()).await.unwrap() {
            Ok(SessionEvent::Snapshot(s)) if s.last_input_seq == 1 => break,
            Ok(SessionEvent::Snapshot(_) | SessionEvent::Pong { .. }) => continue,
            other => panic!("after the resume: {other:?}"),
        }
    }
    assert_eq!(players(server.addr, "resumed").await, 1);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_signing_its_tokens_puts_every_bot_in_as_its_own_player() {
    const BOTS: u64 = 5;
    let secret = SecretFile::new("swarm");
    let server = auth_server(&secret).await;
    let mut tokens =
        BotTokens::from_secret_file_contents(std::fs::read(secret.path()).unwrap()).unwrap();
    tokens.room_claim = true;
    let config = SwarmConfig {
        url: server.ws_url("swarm"),
        bots: BOTS as usize,
        duration: Duration::from_secs(3),
        ramp: Duration::from_millis(200),
        reconnect: None,
        tokens: Some(tokens),
        ..SwarmConfig::default()
    };
    let swarm = tokio::spawn(run_swarm(config, CancellationToken::new()));
    // Five players, not fewer: no bot took another's seat (distinct `sub`s).
    wait_until("players in room swarm", Some(BOTS), || {
        room_players(server.addr, "swarm")
    })
    .await;
    let report = swarm.await.unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(
        (
            report.bots_connected,
            report.bots_failed,
            report.bots_disconnected
        ),
        (BOTS, 0, 0)
    );
    assert_eq!(
        report.close_codes.get("1000"),
        Some(&BOTS),
        "{:?}",
        report.close_codes
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_binary_signs_tokens_from_the_secret_file() {
    const BOTS: u64 = 3;
    let secret = SecretFile::new("binary");
    let server = auth_server(&secret).await;
    let bots = bots_binary();
    let url = server.ws_url("binary");
    let secret_path = secret.path().to_owned();
    let first = bots.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(first)
            .args([
                "--url",
                &url,
                "--bots",
                "3",
                "--duration",
                "2s",
                "--ramp",
                "200ms",
            ])
            .args(["--reconnect-budget", "0s", "--json", "-"])
            .arg("--jwt-secret-file")
            .arg(&secret_path)
            .arg("--jwt-room-claim")
            .output()
            .expect("running tickcast-bots")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{}\n{stderr}", output.status);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    let counts = [
        "bots_requested",
        "bots_connected",
        "bots_failed",
        "bots_disconnected",
    ]
    .map(|key| {
        report[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {report}"))
    });
    assert_eq!(counts, [BOTS, BOTS, 0, 0], "{report}");
    assert_eq!(
        report["close_codes"]["1000"].as_u64(),
        Some(BOTS),
        "{report}"
    );
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");

    // Without the secret, every bot is refused with 4010 and the run fails.
    let url = server.ws_url("binary-open");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bots)
            .args([
                "--url",
                &url,
                "--bots",
                "2",
                "--duration",
                "1s",
                "--ramp",
                "0s",
            ])
            .args(["--reconnect-budget", "0s", "--json", "-"])
            .output()
            .expect("running tickcast-bots")
    })
    .await
    .unwrap();
    assert!(!output.status.success());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["bots_failed"].as_u64(), Some(2), "{report}");
    assert_eq!(
        report["errors"]["connect: close 4010"].as_u64(),
        Some(2),
        "{report}"
    );
    server.stop().await.unwrap();
}
