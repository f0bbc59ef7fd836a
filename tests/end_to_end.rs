//! The whole loop over real sockets with the project's own client: bots join, send
//! inputs, and receive a snapshot every tick; an avatar goes where its inputs say.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use glam::Vec2;
use tickcast::client::{run_swarm, ConnectOptions, Connection, Event, SwarmConfig};
use tickcast::shared::EntityKind;
use tokio_util::sync::CancellationToken;

const TICK_RATE: u16 = 30;
const WINDOW: Duration = Duration::from_secs(2);

/// One bot: joins, then for `WINDOW` sends an input per tick and counts snapshots.
async fn bot(url: String, i: usize) -> (usize, u64) {
    let mut conn = Connection::connect(ConnectOptions::new(url, format!("bot{i}")))
        .await
        .unwrap();
    assert_eq!(conn.welcome().tick_rate, TICK_RATE);
    // Count from the first snapshot on, so connect time is not part of the window.
    let first = loop {
        if let Event::Snapshot(s) = conn.next_event().await.unwrap() {
            break s.tick;
        }
    };
    let until = tokio::time::Instant::now() + WINDOW;
    let mut inputs = tokio::time::interval(Duration::from_secs(1) / u32::from(TICK_RATE));
    let mut received = 0;
    let mut last_tick = first;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(until) => break,
            _ = inputs.tick() => {
                conn.send_input(Vec2::from_angle(i as f32), 0).await.unwrap();
            }
            event = conn.next_event() => match event.unwrap() {
                Event::Snapshot(s) => {
                    assert!(s.tick > last_tick, "ticks increase");
                    last_tick = s.tick;
                    received += 1;
                }
                Event::Pong { .. } => {}
                Event::Closed { code, reason } => panic!("bot {i} closed: {code} {reason}"),
            }
        }
    }
    let acked = conn.session().acked_seq();
    assert_eq!(conn.close("done").await.unwrap(), Some(1000));
    (received, u64::from(acked))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_bots_each_receive_at_least_90_percent_of_snapshots() {
    let mut c = config();
    c.tick_rate = TICK_RATE;
    let server = start(c).await;
    let bots: Vec<_> = (0..20)
        .map(|i| tokio::spawn(bot(server.ws_url("e2e"), i)))
        .collect();
    let expected = WINDOW.as_secs_f64() * f64::from(TICK_RATE);
    for (i, b) in bots.into_iter().enumerate() {
        let (received, acked) = b.await.unwrap();
        assert!(
            received as f64 >= 0.9 * expected,
            "bot {i}: {received} of {expected} snapshots"
        );
        assert!(acked > 0, "bot {i}: the server acknowledged its inputs");
    }
    server.stop().await.unwrap();
}

/// The avatar's position in the client's reconstruction of the world.
fn avatar(conn: &Connection, entity: u32) -> Vec2 {
    let e = conn
        .session()
        .entity(entity)
        .expect("own avatar in every snapshot");
    assert_eq!(e.kind, EntityKind::Avatar);
    e.pos
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_avatar_moves_where_its_inputs_point() {
    let server = start(config()).await;
    let mut conn = Connection::connect(ConnectOptions::new(server.ws_url("walk"), "walker"))
        .await
        .unwrap();
    let entity = conn.welcome().entity_id;
    let world = conn.welcome().world_size;
    let first = loop {
        if let Event::Snapshot(s) = conn.next_event().await.unwrap() {
            break s;
        }
    };
    let start = avatar(&conn, entity);
    // Head for the centre, so no wall is in the way for a second at 100 units/s.
    let dir = (world / 2.0 - start).normalize_or(Vec2::X);
    let seq = conn.send_input(dir, 0).await.unwrap();
    let began = Instant::now();
    let mut last = first.clone();
    while began.elapsed() < Duration::from_millis(700) || last.last_input_seq < seq {
        if let Event::Snapshot(s) = conn.next_event().await.unwrap() {
            last = s;
        }
    }
    assert_eq!(
        last.last_input_seq, seq,
        "the input was applied and acknowledged"
    );
    let moved = avatar(&conn, entity) - start;
    let along = moved.dot(dir);
    let across = moved.perp_dot(dir).abs();
    // Ticks elapsed since the first snapshot, at 100 units/s, one tick of slack for the
    // input arriving mid-tick. Each tick's step is rounded to whole 1/16-unit quanta
    // per axis, at most 1/32 off, so allow that per tick.
    let ticks = (last.tick - first.tick) as f32;
    let expected = ticks / 30.0 * 100.0;
    let rounding = ticks / 32.0 * 1.5;
    assert!(
        along > expected - 100.0 / 30.0 - rounding && along <= expected + rounding,
        "moved {along} along, expected about {expected}"
    );
    assert!(
        across <= rounding,
        "no sideways drift beyond rounding: {across}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swarm_report_measures_a_real_run() {
    let server = start(config()).await;
    let report = run_swarm(
        SwarmConfig {
            url: server.ws_url("swarm"),
            bots: 10,
            duration: Duration::from_millis(2500),
            ramp: Duration::from_millis(300),
            ..SwarmConfig::default()
        },
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        (
            report.bots_requested,
            report.bots_connected,
            report.bots_failed
        ),
        (10, 10, 0)
    );
    assert!(
        (25.0..=33.0).contains(&report.snapshots_per_bot_per_s),
        "{}",
        report.snapshots_per_bot_per_s
    );
    // Full snapshots of 16 NPCs + 10 avatars would be ~19 bytes each, 30 times a second
    // (~15 KB/s). Deltas send headers plus the avatars that turned: well under half, but
    // never nothing (at least a few header bytes per snapshot).
    let naive = 26.0 * 19.0 * 30.0;
    let bytes = report.bytes_per_bot_per_s;
    assert!(
        bytes > 30.0 * 5.0 && bytes < naive / 2.0,
        "{bytes} bytes per bot per s"
    );
    assert!(
        report.rtt_ms.count > 0 && report.rtt_ms.p50 > 0.0 && report.rtt_ms.p99 < 1000.0,
        "{:?}",
        report.rtt_ms
    );
    assert!(
        report.snapshot_gap_ms.p50 > 20.0 && report.snapshot_gap_ms.p50 < 50.0,
        "{:?}",
        report.snapshot_gap_ms
    );
    assert!(report.input_ack_ms.count > 0, "{:?}", report.input_ack_ms);
    assert_eq!(
        report.close_codes.get("1000"),
        Some(&10),
        "{:?}",
        report.close_codes
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let json = serde_json::to_value(&report).unwrap();
    for key in [
        "bots_requested",
        "bots_connected",
        "bots_failed",
        "duration_s",
        "snapshots_per_bot_per_s",
        "bytes_per_bot_per_s",
        "close_codes",
    ] {
        assert!(json.get(key).is_some(), "report lacks {key}");
    }
    for key in ["rtt_ms", "snapshot_gap_ms"] {
        for p in ["p50", "p99", "max"] {
            assert!(json[key].get(p).is_some(), "report lacks {key}.{p}");
        }
    }
    server.stop().await.unwrap();
}
