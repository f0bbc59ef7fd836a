//! A third-party WebSocket client (tokio-tungstenite) plays a session using nothing of
//! tickcast but the `shared` protocol crate: handshake with the subprotocol, Hello,
//! Welcome, snapshots every tick, Ping/Pong, and a normal close.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use glam::Vec2;
use tickcast::shared::delta::World;
use tickcast::shared::{ClientMsg, EntityKind, Input, Ping, ServerMsg, Snapshot};

/// Reads the next snapshot and checks that it follows `last` (see [`follows`]).
async fn next_after(ws: &mut Ws, last: &Snapshot) -> Snapshot {
    follows(last, recv_snapshot(ws).await)
}

/// Checks that `s` continues `last`: a later tick, and either a delta against `last`
/// (what the server wrote before, which TCP delivered first) or a keyframe. Catch-up
/// ticks and snapshots a slow reader skipped leave gaps in the ticks; the base still
/// names what the client holds.
fn follows(last: &Snapshot, s: Snapshot) -> Snapshot {
    assert!(s.tick > last.tick, "tick {} after {}", s.tick, last.tick);
    assert!(
        s.base_tick == last.tick || s.base_tick == 0,
        "tick {} is a delta against {}, but the client holds {}",
        s.tick,
        s.base_tick,
        last.tick
    );
    s
}

#[tokio::test]
async fn tungstenite_plays_a_session_with_the_shared_crate() {
    let server = start(config()).await;
    let mut ws = connect(&server.ws_url("thirdparty")).await;
    let welcome = hello(&mut ws, "tung").await;
    assert_eq!(welcome.protocol_version, tickcast::shared::PROTOCOL_VERSION);
    assert_eq!(welcome.tick_rate, 30);
    assert_eq!(welcome.world_size, Vec2::splat(1000.0));

    // The client's own reconstruction, with the shared crate's delta logic.
    let mut world = World::default();
    let mut last = recv_snapshot(&mut ws).await;
    assert_eq!(last.base_tick, 0, "the first snapshot is a keyframe");
    assert!(
        last.tick > welcome.server_tick,
        "the first snapshot ({}) is of a tick after the join ({})",
        last.tick,
        welcome.server_tick
    );
    world.apply(&last).unwrap();
    let mut acked = 0;
    for seq in 1..=5u32 {
        send(
            &mut ws,
            &ClientMsg::Input(Input {
                seq,
                movement: Vec2::Y,
                buttons: 0,
                payload: Default::default(),
            }),
        )
        .await;
        let s = next_after(&mut ws, &last).await;
        world.apply(&s).unwrap();
        assert_eq!(world.entities.len(), 16 + 1, "16 NPCs and our avatar");
        let me = world
            .entities
            .iter()
            .find(|e| e.id == welcome.entity_id)
            .unwrap();
        assert_eq!(me.kind, EntityKind::Avatar);
        // Latest-wins: an ack may skip inputs, but never goes back or past what was sent.
        assert!(
            (acked..=seq).contains(&s.last_input_seq),
            "ack {} after {acked}, with inputs 1..={seq} sent",
            s.last_input_seq
        );
        acked = s.last_input_seq;
        last = s;
    }
    // Nothing more is sent, so the server's ack settles on the last input.
    while last.last_input_seq != 5 {
        let s = next_after(&mut ws, &last).await;
        world.apply(&s).unwrap();
        assert!(
            (acked..=5).contains(&s.last_input_seq),
            "ack {} after {acked}",
            s.last_input_seq
        );
        acked = s.last_input_seq;
        last = s;
    }

    send(&mut ws, &ClientMsg::Ping(Ping { nonce: 0xDEAD_BEEF })).await;
    let pong = loop {
        match recv(&mut ws).await {
            ServerMsg::Pong(p) => break p,
            ServerMsg::Snapshot(s) => {
                last = follows(&last, s);
                world.apply(&last).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(pong.nonce, 0xDEAD_BEEF);
    // The pong carries the room's tick when the ping was read: no older than the last
    // snapshot before it, and no newer than the first one after it (a room publishes a
    // tick's snapshot before its tick number, and replies go out before the snapshot
    // waiting in the player's slot).
    assert!(
        pong.server_tick >= last.tick,
        "pong at tick {} after snapshot {}",
        pong.server_tick,
        last.tick
    );
    let after = next_after(&mut ws, &last).await;
    assert!(
        after.tick >= pong.server_tick,
        "snapshot {} after a pong at tick {}",
        after.tick,
        pong.server_tick
    );
    world.apply(&after).unwrap();

    ws.close(None).await.unwrap();
    server.stop().await.unwrap();
}

/// The room ticks independently of joins, so a snapshot can be ready before the
/// Welcome is queued; the Welcome must still come first, and the snapshots after it
/// must start with a keyframe of a tick after the join and then follow one another. A
/// 1000 Hz room makes that window wide enough to hit in a few tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn welcome_always_precedes_the_first_snapshot() {
    let mut c = config();
    c.tick_rate = 1000;
    c.max_messages_per_sec = 10_000;
    let server = start(c).await;
    let url = server.ws_url("fast");
    let mut players = Vec::new();
    for i in 0..40 {
        let mut ws = connect(&url).await;
        // `hello` panics if anything but Welcome arrives first.
        let welcome = hello(&mut ws, &format!("p{i}")).await;
        let first = recv_snapshot(&mut ws).await;
        assert_eq!(
            first.base_tick, 0,
            "player {i}: the first snapshot is a keyframe"
        );
        assert!(
            first.tick > welcome.server_tick,
            "player {i}: first snapshot of tick {}, joined at tick {}",
            first.tick,
            welcome.server_tick
        );
        let mut last = first;
        for _ in 0..3 {
            last = next_after(&mut ws, &last).await;
        }
        // Kept open, so that later joins race against a busier room.
        players.push(ws);
    }
    server.stop().await.unwrap();
}
