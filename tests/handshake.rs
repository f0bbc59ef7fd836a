//! The HTTP side: routes, the upgrade checks (subprotocol, Origin, room capacity), and
//! the handshake timeout, over real sockets with a third-party client.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use tickcast::shared::SUBPROTOCOL;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn routes_health_and_not_found() {
    let server = start(config()).await;
    assert_eq!(http(server.addr, "GET", "/healthz", "").await.0, 200);
    assert_eq!(http(server.addr, "GET", "/nope", "").await.0, 404);
    let (status, metrics) = http(server.addr, "GET", "/metrics", "").await;
    assert!(status == 200 && metrics.contains("tickcast_ticks_total"));
    // A plain GET on /ws is not an upgrade.
    assert_eq!(http(server.addr, "GET", "/ws", "").await.0, 400);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn subprotocol_is_negotiated_or_refused_with_400() {
    let server = start(config()).await;
    let url = server.ws_url("lobby");
    let err = connect_with(&url, None, None).await.unwrap_err();
    assert_eq!(refused_status(&err), 400);
    if let tokio_tungstenite::tungstenite::Error::Http(resp) = &err {
        let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
        assert!(
            body.contains(SUBPROTOCOL),
            "the refusal names the supported protocol: {body}"
        );
    }
    assert_eq!(
        refused_status(&connect_with(&url, Some("chat.v2"), None).await.unwrap_err()),
        400
    );
    // Offered among others: accepted, and echoed (checked in connect_with).
    connect_with(&url, Some("chat.v2, tickcast.v1"), None)
        .await
        .unwrap();
    connect_with(&url, Some(SUBPROTOCOL), None).await.unwrap();
    // Bad room names are refused before upgrading.
    assert_eq!(refused(&server.ws_url("a%20b")).await, 400);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn origin_is_checked_against_the_allow_list() {
    let mut c = config();
    c.allow_origins = vec!["https://game.example".into()];
    let server = start(c).await;
    let url = server.ws_url("lobby");
    connect_with(&url, Some(SUBPROTOCOL), None)
        .await
        .expect("native clients send no Origin");
    connect_with(&url, Some(SUBPROTOCOL), Some("https://game.example"))
        .await
        .expect("listed origin");
    let err = connect_with(&url, Some(SUBPROTOCOL), Some("https://evil.example"))
        .await
        .unwrap_err();
    assert_eq!(refused_status(&err), 403);
    server.stop().await.unwrap();

    let mut c = config();
    c.allow_origins = vec!["*".into()];
    let server = start(c).await;
    connect_with(
        &server.ws_url("lobby"),
        Some(SUBPROTOCOL),
        Some("https://evil.example"),
    )
    .await
    .expect("* allows all");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_room_refuses_with_409_and_other_rooms_still_join() {
    let mut c = config();
    c.max_players = 2;
    let server = start(c).await;
    let url = server.ws_url("small");
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    hello(&mut a, "a").await;
    hello(&mut b, "b").await;
    assert_eq!(refused(&url).await, 409);
    let mut other = connect(&server.ws_url("other")).await;
    hello(&mut other, "c").await;
    // Both players keep playing.
    recv_snapshot(&mut a).await;
    recv_snapshot(&mut b).await;
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_is_closed() {
    let mut c = config();
    c.handshake_timeout = Duration::from_millis(300);
    let server = start(c).await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // never finished
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("server kept the connection open");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed by the timeout, not at once"
    );
    assert!(
        buf.is_empty() || String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    server.stop().await.unwrap();
}
