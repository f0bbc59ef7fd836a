//! The whole loop over real sockets with the project's own client: bots join, send
//! inputs, and receive a snapshot every tick; an avatar goes where its inputs say.
//!
//! Nothing here measures speed. A busy machine makes the server run late ticks back to
//! back (catch-up) and replace snapshots a player's writer has not sent yet (slot
//! skips); both are counted in `/metrics`. So instead of "about 30 snapshots a second",
//! the tests check that every tick a player did not get a snapshot for is one the
//! server accounts for.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use glam::{IVec2, Vec2};
use tickcast::client::{run_swarm, ConnectOptions, Connection, Event, SwarmConfig};
use tickcast::shared::{EntityKind, Snapshot};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

const TICK_RATE: u16 = 30;
/// Ticks each bot plays for: two seconds at 30 Hz.
const PLAY_TICKS: u64 = 60;

/// Next snapshot of a library connection (pongs skipped), checked against the one
/// before: a later tick, and a delta against it or a keyframe.
async fn next_snapshot(conn: &mut Connection, last: Option<&Snapshot>) -> Snapshot {
    let s = loop {
        match tokio::time::timeout(WAIT, conn.next_event()).await.unwrap() {
            Ok(Event::Snapshot(s)) => break s,
            Ok(Event::Pong { .. } | Event::Game(_)) => continue,
            Ok(Event::Closed { code, reason }) => panic!("closed: {code} {reason}"),
            Err(e) => panic!("connection failed: {e}"),
        }
    };
    match last {
        None => assert_eq!(s.base_tick, 0, "the first snapshot is a keyframe"),
        Some(last) => {
            assert!(s.tick > last.tick, "tick {} after {}", s.tick, last.tick);
            assert!(
                s.base_tick == last.tick || s.base_tick == 0,
                "tick {} is a delta against {}, the client holds {}",
                s.tick,
                s.base_tick,
                last.tick
            );
            assert!(
                s.last_input_seq >= last.last_input_seq,
                "ack went back from {} to {}",
                last.last_input_seq,
                s.last_input_seq
            );
        }
    }
    s
}

/// What one bot saw.
#[derive(Debug)]
struct Seen {
    received: u64,
    /// Ticks between its first and last snapshot that it got no snapshot for.
    missed: u64,
}

/// One bot: joins, sends an input per tick period while it plays `PLAY_TICKS` ticks,
/// then stops sending and waits until the server acknowledges its last input.
async fn bot(url: String, i: usize) -> Seen {
    let mut conn = Connection::connect(ConnectOptions::new(url, format!("bot{i}")))
        .await
        .unwrap();
    assert_eq!(conn.welcome().tick_rate, TICK_RATE);
    let joined_at = conn.welcome().server_tick;
    let first = next_snapshot(&mut conn, None).await;
    assert!(
        first.tick > joined_at,
        "bot {i}: first snapshot of tick {}, joined at {joined_at}",
        first.tick
    );
    let mut inputs = tokio::time::interval(Duration::from_secs(1) / u32::from(TICK_RATE));
    // After a stall, one input, not a burst that the rate limit would punish.
    inputs.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut sent = 0;
    let mut received = 1;
    let mut last = first.clone();
    while last.tick < first.tick + PLAY_TICKS {
        tokio::select! {
            _ = inputs.tick() => {
                sent = conn.send_input(Vec2::from_angle(i as f32), 0).await.unwrap();
            }
            s = next_snapshot(&mut conn, Some(&last)) => {
                assert!(s.last_input_seq <= sent, "bot {i}: ack {} of {sent} sent", s.last_input_seq);
                last = s;
                received += 1;
            }
        }
    }
    // Latest-wins may skip acks of older inputs, but the newest one is applied at the
    // next tick and acknowledged exactly.
    while last.last_input_seq < sent {
        last = next_snapshot(&mut conn, Some(&last)).await;
        received += 1;
    }
    assert_eq!(
        last.last_input_seq, sent,
        "bot {i}: the last input is acked"
    );
    assert_eq!(conn.session().acked_seq(), sent, "bot {i}");
    let stats = conn.session().stats();
    let missed = last.tick - first.tick + 1 - received;
    assert_eq!(
        (stats.snapshots_received, stats.snapshots_missed),
        (received, missed),
        "bot {i}: the client's own counts"
    );
    assert_eq!(conn.close("done").await.unwrap(), Some(1000));
    Seen { received, missed }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_bots_each_get_every_tick_the_server_does_not_account_for() {
    let mut c = config();
    c.tick_rate = TICK_RATE;
    let server = start(c).await;
    let bots: Vec<_> = (0..20)
        .map(|i| tokio::spawn(bot(server.ws_url("e2e"), i)))
        .collect();
    let mut seen = Vec::new();
    for b in bots {
        seen.push(b.await.unwrap());
    }
    // A tick a bot got no snapshot for was either run as catch-up (no snapshot for
    // anyone) or its snapshot was replaced in that bot's slot before being written
    // (counted once per replaced snapshot). Read after every bot finished.
    let LeftOut {
        catch_up,
        skipped: slot_skips,
    } = left_out(server.addr, "e2e").await;
    let text = metrics(server.addr).await;
    let missed: u64 = seen.iter().map(|s| s.missed).sum();
    assert!(
        missed <= 20 * catch_up + slot_skips,
        "bots missed {missed} ticks; the server ran {catch_up} catch-up ticks and \
         skipped {slot_skips} snapshots: {seen:?}"
    );
    let received: u64 = seen.iter().map(|s| s.received).sum();
    assert!(
        received <= count(&text, "tickcast_snapshots_sent_total"),
        "{received} snapshots received"
    );
    server.stop().await.unwrap();
}

/// The avatar's position in the client's reconstruction of the world, in quanta.
fn avatar(conn: &Connection, entity: u32) -> IVec2 {
    let e = conn
        .session()
        .entity(entity)
        .expect("own avatar in every snapshot");
    assert_eq!(e.kind, EntityKind::Avatar);
    (e.pos / conn.welcome().pos_quantum).round().as_ivec2()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_avatar_moves_where_its_inputs_point() {
    let server = start(config()).await;
    let mut conn = Connection::connect(ConnectOptions::new(server.ws_url("walk"), "walker"))
        .await
        .unwrap();
    let entity = conn.welcome().entity_id;
    let world = conn.welcome().world_size;
    let quantum = conn.welcome().pos_quantum;
    let rate = f32::from(conn.welcome().tick_rate);
    let first = next_snapshot(&mut conn, None).await;
    let start = avatar(&conn, entity);
    // Head for the centre: the far wall is at least half the world away, more than
    // a hundred ticks of walking.
    let dir = (world / 2.0 - start.as_vec2() * quantum).normalize_or(Vec2::X);
    let seq = conn.send_input(dir, 0).await.unwrap();

    // Until the ack, the avatar stands where it spawned.
    let mut before = first;
    let acked = loop {
        let s = next_snapshot(&mut conn, Some(&before)).await;
        if s.last_input_seq == seq {
            break s;
        }
        assert_eq!(avatar(&conn, entity), start, "moved with no input");
        before = s;
    };
    let mut last = acked.clone();
    while last.tick < acked.tick + 20 {
        last = next_snapshot(&mut conn, Some(&last)).await;
    }
    assert_eq!(last.last_input_seq, seq);

    // Each tick moves the avatar by the same whole number of quanta: its velocity, as
    // the wire carries it, which is the input times 100 units/s, rounded per axis.
    let e = conn.session().entity(entity).unwrap();
    let step = (e.vel / (quantum * rate)).round().as_ivec2();
    let exact = dir * 100.0 / rate / quantum;
    assert!(
        (step.as_vec2() - exact).abs().max_element() <= 0.5 + 1e-3,
        "a step of {step} quanta for {exact} per tick"
    );
    // The input was applied at a tick after `before` and at or before `acked`, so the
    // avatar walked for a whole number of ticks between these bounds.
    let moved = avatar(&conn, entity) - start;
    let fewest = last.tick - acked.tick + 1;
    let most = last.tick - before.tick;
    assert!(
        (fewest..=most).any(|k| moved == step * k as i32),
        "moved {moved} quanta, not {fewest} to {most} steps of {step}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_swarm_report_measures_a_real_run() {
    const BOTS: u64 = 10;
    let server = start(config()).await;
    let duration = Duration::from_millis(2500);
    let began = Instant::now();
    let report = run_swarm(
        SwarmConfig {
            url: server.ws_url("swarm"),
            bots: BOTS as usize,
            duration,
            ramp: Duration::from_millis(300),
            ..SwarmConfig::default()
        },
        CancellationToken::new(),
    )
    .await;
    let elapsed = began.elapsed();
    let LeftOut {
        catch_up,
        skipped: slot_skips,
    } = left_out(server.addr, "swarm").await;
    let text = metrics(server.addr).await;
    assert_eq!(
        (
            report.bots_requested,
            report.bots_connected,
            report.bots_failed,
            report.bots_disconnected,
            report.reconnects,
        ),
        (BOTS, BOTS, 0, 0, 0)
    );
    assert_eq!(
        report.close_codes.get("1000"),
        Some(&BOTS),
        "{:?}",
        report.close_codes
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        report.duration_s >= duration.as_secs_f64() && report.duration_s <= elapsed.as_secs_f64(),
        "a run of {} s, measured {elapsed:?} around it",
        report.duration_s
    );

    // Snapshots: every tick a bot missed is accounted for by the server, no bot got
    // more than one snapshot per tick of the run (the room cannot run ahead of its
    // schedule: at most elapsed / period + 2 distinct ticks), and nothing was received
    // that the server did not send.
    let received = report.snapshots_received;
    assert!(
        report.snapshots_missed <= BOTS * catch_up + slot_skips,
        "{} ticks missed; {catch_up} catch-up ticks, {slot_skips} skipped snapshots",
        report.snapshots_missed
    );
    let most = BOTS as f64 * (elapsed.as_secs_f64() * 30.0 + 2.0);
    assert!(
        received as f64 <= most,
        "{received} snapshots, at most {most}"
    );
    assert!(received <= count(&text, "tickcast_snapshots_sent_total"));
    let per_bot_s = |n: u64| n as f64 / report.connected_bot_s;
    assert!((report.snapshots_per_bot_per_s - per_bot_s(received)).abs() < 1e-9);

    // Bytes: the payload of every message the bots handled, which the server wrote
    // (the server also counts what came after the bots stopped counting).
    assert!(
        report.bytes_received <= count(&text, "tickcast_bytes_sent_total"),
        "{} bytes received",
        report.bytes_received
    );
    assert!((report.bytes_per_bot_per_s - per_bot_s(report.bytes_received)).abs() < 1e-9);
    // Deltas of quantised integers against full f32 snapshots of the same scenes: a
    // ratio of sizes, independent of timing.
    assert!(
        (report.bytes_received as f64) < report.naive_bytes as f64 / 2.0,
        "{} bytes sent where naive snapshots take {}",
        report.bytes_received,
        report.naive_bytes
    );

    // Latencies. Each bot pings when it starts playing and gets its first snapshot one
    // tick after joining; the last bot starts 0.3 s into a 2.5 s run, so even a machine
    // stalled for two seconds records a pong, a gap (one per snapshot after a bot's
    // first) and an input ack for every bot. No latency can exceed the run.
    let longest_ms = elapsed.as_secs_f64() * 1000.0 * 1.001; // HDR rounds up 0.1 %
    assert!(
        (BOTS..=report.pings_sent).contains(&report.rtt_ms.count)
            && report.rtt_ms.max <= longest_ms,
        "{:?}, {} pings sent",
        report.rtt_ms,
        report.pings_sent
    );
    assert_eq!(
        report.snapshot_gap_ms.count,
        received - BOTS,
        "{:?}",
        report.snapshot_gap_ms
    );
    assert!(report.snapshot_gap_ms.max <= longest_ms);
    assert!(
        (BOTS..=report.inputs_sent.min(received)).contains(&report.input_ack_ms.count),
        "{:?}, {} inputs sent",
        report.input_ack_ms,
        report.inputs_sent
    );
    assert_eq!(report.connect_ms.count, BOTS);

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
