//! Reconnection: a player whose TCP connection drops (no close frame) resumes its avatar,
//! with the same player, entity and position, within the grace period; after it, or after
//! a normal close, the token is refused with 4008. The tests wait for the server to say
//! (in `/rooms/{id}` or `/metrics`) that it has handled a drop, a close or an expiry.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use glam::Vec2;
use tickcast::shared::delta::{QEntity, World};
use tickcast::shared::{DisconnectReason, Welcome};

/// The Arena's avatar speed at full input, in units per second (`AVATAR_SPEED` in
/// server/src/game/arena.rs, which the server crate does not export).
const AVATAR_SPEED: f32 = 100.0;

/// Reads snapshots until `ticks` have been applied, and returns the player's avatar.
async fn avatar_after(ws: &mut Ws, world: &mut World, entity: u32, ticks: usize) -> QEntity {
    for _ in 0..ticks {
        world.apply(&recv_snapshot(ws).await).unwrap();
    }
    *world.entities.iter().find(|e| e.id == entity).unwrap()
}

/// Joins, moves a little, stops, and returns the welcome and where the avatar stopped.
async fn play_then_stop(ws: &mut Ws) -> (Welcome, QEntity) {
    let welcome = hello(ws, "traveller").await;
    let mut world = World::default();
    send(ws, &input_msg(1, Vec2::new(0.6, 0.8))).await;
    avatar_after(ws, &mut world, welcome.entity_id, 5).await;
    send(ws, &input_msg(2, Vec2::ZERO)).await;
    let stopped = avatar_after(ws, &mut world, welcome.entity_id, 5).await;
    assert_eq!(stopped.vel, [0, 0]);
    (welcome, stopped)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_player_resumes_its_avatar_within_the_grace() {
    let mut c = config();
    // Long enough that a loaded machine's delays cannot use it up before the resume.
    c.reconnect_grace = Duration::from_secs(5);
    let server = start(c).await;
    let url = server.ws_url("resumable");
    let mut ws = connect(&url).await;
    let (welcome, stopped) = play_then_stop(&mut ws).await;
    drop(ws); // the TCP connection goes away without a close frame
    wait_open(server.addr, 0).await;
    wait_players(server.addr, "resumable", 1).await; // the avatar waits

    let mut back = connect(&url).await;
    send(&mut back, &resume_msg("again", welcome.session_token)).await;
    let again = recv_welcome(&mut back).await;
    assert_eq!(
        (again.player_id, again.entity_id, again.session_token),
        (welcome.player_id, welcome.entity_id, welcome.session_token)
    );
    let first = recv_snapshot(&mut back).await;
    assert_eq!(
        first.base_tick, 0,
        "the first snapshot after a resume is a keyframe"
    );
    let mut world = World::default();
    world.apply(&first).unwrap();
    let me = world
        .entities
        .iter()
        .find(|e| e.id == welcome.entity_id)
        .unwrap();
    assert_eq!(me.pos, stopped.pos, "the avatar waited where it stood");
    // And it is controllable again, with input sequence numbers starting over.
    send(&mut back, &input_msg(1, Vec2::X)).await;
    let moved = avatar_after(&mut back, &mut world, welcome.entity_id, 5).await;
    // Full speed along x, in quanta per tick.
    let speed = AVATAR_SPEED / f32::from(again.tick_rate) / again.pos_quantum;
    assert_eq!(moved.vel, [speed.round() as i32, 0], "moving again");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_the_token_is_refused() {
    let mut c = config();
    c.reconnect_grace = Duration::from_millis(300);
    let server = start(c).await;
    let url = server.ws_url("strict");
    // A watcher keeps the room alive (it does not read: it only holds a seat).
    let mut watcher = connect(&url).await;
    hello(&mut watcher, "watcher").await;

    let mut ws = connect(&url).await;
    let (welcome, _) = play_then_stop(&mut ws).await;
    drop(ws);
    // The grace runs out and the room removes the avatar: only the watcher is left.
    wait_players(server.addr, "strict", 1).await;
    let mut late = connect(&url).await;
    send(&mut late, &resume_msg("again", welcome.session_token)).await;
    assert_eq!(
        expect_close(&mut late).await,
        close_of(DisconnectReason::SessionExpired)
    );
    let mut fresh = connect(&url).await;
    hello(&mut fresh, "fresh").await;
    let mut world = World::default();
    world.apply(&recv_snapshot(&mut fresh).await).unwrap();
    assert!(
        world.entities.iter().all(|e| e.id != welcome.entity_id),
        "the avatar was removed after the grace"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_normal_close_the_token_is_refused_at_once() {
    // A grace far longer than the test may wait (WAIT): if the room lost the player, it
    // was the close that did it, not the grace.
    let mut c = config();
    c.reconnect_grace = Duration::from_secs(60);
    let server = start(c).await;
    let url = server.ws_url("closing");
    let mut watcher = connect(&url).await;
    hello(&mut watcher, "watcher").await;

    // A player that closes normally leaves at once: no grace, no resume.
    let mut leaver = connect(&url).await;
    let (left, _) = play_then_stop(&mut leaver).await;
    leaver.close(None).await.unwrap();
    wait_players(server.addr, "closing", 1).await;
    let mut back = connect(&url).await;
    send(&mut back, &resume_msg("again", left.session_token)).await;
    assert_eq!(
        expect_close(&mut back).await.0,
        DisconnectReason::SessionExpired.code()
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_resumes_into_a_room_its_own_held_seat_fills() {
    let server = start(config()).await;
    let (_, room) = http_json(server.addr, "POST", "/rooms", r#"{"max_players":1}"#).await;
    let url = server.ws_url(room["id"].as_str().unwrap());
    let mut ws = connect(&url).await;
    let welcome = hello(&mut ws, "only").await;
    recv_snapshot(&mut ws).await;
    drop(ws);
    wait_open(server.addr, 0).await;
    // The held seat fills the room: a plain connection is refused at the handshake...
    assert_eq!(refused(&url).await, 409);
    // ...but with the resume hint the Hello decides, and the token gets the seat back.
    let mut back = connect(&format!("{url}&resume=1")).await;
    send(&mut back, &resume_msg("again", welcome.session_token)).await;
    assert_eq!(recv_welcome(&mut back).await.entity_id, welcome.entity_id);
    // The hint proves nothing: a fresh join through it to the full room is still refused.
    let mut sneaky = connect(&format!("{url}&resume=1")).await;
    send(&mut sneaky, &hello_msg("sneaky")).await;
    assert_eq!(
        expect_close(&mut sneaky).await.0,
        DisconnectReason::RoomFull.code()
    );
    server.stop().await.unwrap();
}
