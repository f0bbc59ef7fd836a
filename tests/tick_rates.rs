//! Rooms tick on their own schedules: two rooms at different tick rates each keep their
//! rate while the other one is loaded with a heavy world.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;

async fn snapshots_per_second(url: String, window: Duration) -> f64 {
    let mut ws = connect(&url).await;
    hello(&mut ws, "counter").await;
    // Past the first keyframe (large in the heavy room), into steady state.
    for _ in 0..5 {
        recv_snapshot(&mut ws).await;
    }
    let first = recv_snapshot(&mut ws).await.tick;
    let began = Instant::now();
    let mut last = first;
    while began.elapsed() < window {
        last = recv_snapshot(&mut ws).await.tick;
    }
    (last - first) as f64 / began.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rooms_keep_their_own_tick_rates_while_one_is_loaded() {
    let server = start(config()).await;
    let addr = server.addr;
    let (_, fast) = http_json(addr, "POST", "/rooms", r#"{"tick_rate":60,"npcs":16}"#).await;
    let (_, heavy) = http_json(addr, "POST", "/rooms", r#"{"tick_rate":20,"npcs":20000}"#).await;
    let window = Duration::from_secs(2);
    let fast = tokio::spawn(snapshots_per_second(
        server.ws_url(fast["id"].as_str().unwrap()),
        window,
    ));
    let heavy = tokio::spawn(snapshots_per_second(
        server.ws_url(heavy["id"].as_str().unwrap()),
        window,
    ));
    let (fast, heavy) = (fast.await.unwrap(), heavy.await.unwrap());
    assert!(
        (54.0..=63.0).contains(&fast),
        "the 60 Hz room ticked at {fast:.1} Hz"
    );
    assert!(
        (18.0..=21.0).contains(&heavy),
        "the 20 Hz room ticked at {heavy:.1} Hz"
    );
    server.stop().await.unwrap();
}
