//! `/metrics` (Prometheus text) and `/readyz` over real sockets: per-room tick
//! histograms, rejected inputs, closes by code, and readiness at the connection limit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use futures_util::SinkExt;
use tickcast::shared::DisconnectReason;
use tokio_tungstenite::tungstenite::Message;

/// The value of the first sample line that starts with `prefix`.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {prefix} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_ticks_per_room_rejections_and_closes() {
    let server = start(config()).await;
    let mut player = connect(&server.ws_url("metered")).await;
    hello(&mut player, "p").await;
    for _ in 0..5 {
        recv_snapshot(&mut player).await;
    }
    let mut bad = connect(&server.ws_url("metered")).await;
    hello(&mut bad, "bad").await;
    bad.send(Message::Binary(vec![0xff; 3].into()))
        .await
        .unwrap();
    assert_eq!(
        expect_close(&mut bad).await.0,
        DisconnectReason::InvalidPayload.code()
    );

    let (status, text) = http(server.addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    let ticks = sample(
        &text,
        "tickcast_room_tick_duration_seconds_count{room=\"metered\"}",
    );
    assert!(ticks >= 5.0, "{ticks} ticks observed");
    let inf = sample(
        &text,
        "tickcast_room_tick_duration_seconds_bucket{room=\"metered\",le=\"+Inf\"}",
    );
    assert_eq!(inf, ticks, "the +Inf bucket holds every observation");
    assert!(
        sample(
            &text,
            "tickcast_room_tick_lateness_seconds_count{room=\"metered\"}"
        ) >= 5.0
    );
    assert_eq!(sample(&text, "tickcast_inputs_rejected_total"), 1.0);
    assert_eq!(
        sample(&text, "tickcast_connections_closed_total{code=\"1007\"}"),
        1.0
    );
    assert!(sample(&text, "tickcast_snapshots_sent_total") >= 5.0);
    assert!(sample(&text, "tickcast_keyframes_sent_total") >= 1.0);
    assert!(sample(&text, "tickcast_bytes_sent_total") > 0.0);
    assert_eq!(sample(&text, "tickcast_rooms_open"), 1.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_turns_503_at_the_connection_limit() {
    let mut c = config();
    c.max_connections = 1;
    let server = start(c).await;
    assert_eq!(http(server.addr, "GET", "/readyz", "").await.0, 200);
    assert_eq!(http(server.addr, "GET", "/healthz", "").await.0, 200);
    let mut only = connect(&server.ws_url("lobby")).await;
    hello(&mut only, "only").await;
    let (status, body) = http(server.addr, "GET", "/readyz", "").await;
    assert_eq!((status, body.trim()), (503, "at the connection limit"));
    assert_eq!(refused(&server.ws_url("lobby")).await, 503);
    assert_eq!(
        http(server.addr, "GET", "/healthz", "").await.0,
        200,
        "alive while not ready"
    );
    server.stop().await.unwrap();
}
