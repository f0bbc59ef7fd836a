//! A third-party WebSocket client (tokio-tungstenite) plays a session using nothing of
//! tickcast but the `shared` protocol crate: handshake with the subprotocol, Hello,
//! Welcome, snapshots every tick, Ping/Pong, and a normal close.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use glam::Vec2;
use tickcast::shared::delta::World;
use tickcast::shared::{ClientMsg, EntityKind, Input, Ping, ServerMsg};

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
    world.apply(&last).unwrap();
    for seq in 1..=5u32 {
        send(
            &mut ws,
            &ClientMsg::Input(Input {
                seq,
                movement: Vec2::Y,
                buttons: 0,
            }),
        )
        .await;
        let s = recv_snapshot(&mut ws).await;
        assert_eq!(s.tick, last.tick + 1, "one snapshot per tick, none skipped");
        assert_eq!(s.base_tick, last.tick, "a delta against the previous one");
        world.apply(&s).unwrap();
        assert_eq!(world.entities.len(), 16 + 1, "16 NPCs and our avatar");
        let me = world
            .entities
            .iter()
            .find(|e| e.id == welcome.entity_id)
            .unwrap();
        assert_eq!(me.kind, EntityKind::Avatar);
        last = s;
    }
    assert!(
        last.last_input_seq >= 4,
        "inputs acknowledged: {}",
        last.last_input_seq
    );

    send(&mut ws, &ClientMsg::Ping(Ping { nonce: 0xDEAD_BEEF })).await;
    let pong = loop {
        if let ServerMsg::Pong(p) = recv(&mut ws).await {
            break p;
        }
    };
    assert_eq!(pong.nonce, 0xDEAD_BEEF);
    assert!(pong.server_tick >= last.tick);

    ws.close(None).await.unwrap();
    server.stop().await.unwrap();
}

/// The room ticks independently of joins, so a snapshot can be ready before the
/// Welcome is queued; the Welcome must still come first. A 1000 Hz room makes that
/// window wide enough to hit in a few tries.
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
        hello(&mut ws, &format!("p{i}")).await;
        players.push(ws);
    }
    server.stop().await.unwrap();
}
