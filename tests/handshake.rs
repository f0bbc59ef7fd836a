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
    assert_eq!(
        http(server.addr, "GET", "/healthz", "").await,
        (200, "ok\n".to_owned())
    );
    assert_eq!(http(server.addr, "GET", "/nope", "").await.0, 404);
    let (status, text) = http(server.addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    // Nothing has ticked yet: no room exists until someone joins one.
    assert_eq!(count(&text, "tickcast_ticks_total"), 0);
    // A plain GET on /ws is not an upgrade.
    assert_eq!(http(server.addr, "GET", "/ws", "").await.0, 400);
    server.stop().await.unwrap();
}

/// The body of a refused upgrade.
fn refusal_body(err: &tokio_tungstenite::tungstenite::Error) -> String {
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned()
        }
        other => panic!("expected an HTTP refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn subprotocol_is_negotiated_or_refused_with_400() {
    let server = start(config()).await;
    let url = server.ws_url("lobby");
    // Not offered, or only something else offered (a v1 client among them): 400,
    // naming what is supported.
    for offer in [
        None,
        Some("chat.v2"),
        Some("tickcast.v1"),
        Some("tickcast.v1, chat"),
    ] {
        let err = connect_with(&url, offer, None).await.unwrap_err();
        assert_eq!(refused_status(&err), 400, "offer {offer:?}");
        let body = refusal_body(&err);
        assert!(
            body.trim_end()
                .ends_with(&format!("supported: {SUBPROTOCOL}")),
            "the refusal of {offer:?} names the supported protocol: {body:?}"
        );
    }
    // Offered among others, in any position: accepted, and the 101 echoes exactly
    // `tickcast.v2` (checked in connect_with for every accepted upgrade).
    for offer in [
        "chat.v1, tickcast.v2",
        "tickcast.v2, tickcast.v1",
        SUBPROTOCOL,
    ] {
        let mut ws = connect_with(&url, Some(offer), None)
            .await
            .unwrap_or_else(|e| panic!("offer {offer:?} refused: {e}"));
        hello(&mut ws, "p").await;
    }
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
    assert_eq!(
        refusal_body(&err).trim_end(),
        "origin https://evil.example is not allowed"
    );
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
    let timeout = Duration::from_millis(300);
    let mut c = config();
    c.handshake_timeout = timeout;
    let server = start(c).await;
    // Taken before connecting: the server's clock for this connection starts later.
    let started = std::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // never finished
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("server kept the connection open");
    // hyper answers nothing to a request it never got whole: it reads what was sent
    // (so nothing is left unread to turn the close into a reset) and closes.
    assert_eq!(
        read.expect("a clean close, not a reset"),
        0,
        "no response: {:?}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        started.elapsed() >= timeout,
        "closed by the timeout, not at once"
    );
    server.stop().await.unwrap();
}
