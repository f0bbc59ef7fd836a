//! Resuming a session (PROTOCOL.md section 3, *Reconnecting*; HOSTING.md, `DELETE
//! /rooms/{id}`) in the cases the basic reconnect tests leave out: after the server's
//! idle timeout (4003), twice with the same token, with a token from another room, and
//! after the room was deleted. A resume gets back the same player, entity and token,
//! keyframe first; a token that names no session of the room is closed with 4008.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use glam::Vec2;
use tickcast::shared::delta::{QEntity, World};
use tickcast::shared::{DisconnectReason, EntityKind, ServerMsg, SessionToken, Snapshot, Welcome};

fn session_expired() -> (u16, String) {
    close_of(DisconnectReason::SessionExpired)
}

/// The entity `id` of a keyframe, which must hold it.
fn entity_in(keyframe: &Snapshot, id: u32) -> QEntity {
    assert_eq!(keyframe.base_tick, 0, "not a keyframe: {keyframe:?}");
    let mut world = World::default();
    world.apply(keyframe).unwrap();
    world
        .entities
        .into_iter()
        .find(|e| e.id == id)
        .unwrap_or_else(|| panic!("entity {id} is not in the keyframe"))
}

/// Resumes `token` on a new connection to `url` and checks the answer: a `Welcome` for
/// the same player, entity and token as `first`, then at once a keyframe holding the
/// avatar, from a tick after `after`. Returns the connection and that keyframe.
async fn resume(url: &str, token: SessionToken, first: &Welcome, after: u64) -> (Ws, Snapshot) {
    let mut ws = connect(url).await;
    send(&mut ws, &resume_msg("again", token)).await;
    let again = recv_welcome(&mut ws).await;
    assert_eq!(
        (again.player_id, again.entity_id, again.session_token),
        (first.player_id, first.entity_id, first.session_token),
        "the same player, avatar and token"
    );
    assert_eq!(again.protocol_version, first.protocol_version);
    assert_eq!(again.tick_rate, first.tick_rate);
    // The very next message, not just the next snapshot: keyframe first.
    let keyframe = match recv(&mut ws).await {
        ServerMsg::Snapshot(s) => s,
        other => panic!("expected the keyframe, got {other:?}"),
    };
    assert_eq!(keyframe.base_tick, 0, "the first snapshot after a resume");
    assert!(
        keyframe.tick > after,
        "tick {} after {after}",
        keyframe.tick
    );
    assert_eq!(
        keyframe.last_input_seq, 0,
        "no input of this connection yet"
    );
    assert_eq!(
        entity_in(&keyframe, first.entity_id).kind,
        EntityKind::Avatar
    );
    (ws, keyframe)
}

/// Sends `Input` `seq` and reads until the server reports it applied.
async fn applied(ws: &mut Ws, seq: u32, movement: Vec2) -> Snapshot {
    send(ws, &input_msg(seq, movement)).await;
    loop {
        let s = recv_snapshot(ws).await;
        if s.last_input_seq == seq {
            return s;
        }
        assert!(s.last_input_seq < seq, "{s:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_player_closed_for_idleness_resumes_its_avatar_keyframe_first() {
    let mut c = config();
    // Long enough that the watcher, which answers every ping, is never idle even when
    // a loaded machine leaves its task waiting (500 ms was not, under a parallel test
    // run and a busy loop); the frozen client below never answers.
    c.idle_timeout = Duration::from_secs(2);
    c.ping_interval = Duration::from_millis(250);
    let server = start(c).await;
    let url = server.ws_url("idle");
    let mut watcher = Watcher::join(&url).await;

    let mut frozen = RawWs::connect(server.addr, "/ws?room=idle", None).await;
    let welcome = frozen.hello("frozen").await;
    let first = match frozen.recv().await {
        ServerMsg::Snapshot(s) => s,
        other => panic!("expected the keyframe, got {other:?}"),
    };
    let avatar = entity_in(&first, welcome.entity_id);
    // From here on it sends nothing and answers no ping: the server gives up on it.
    let (close, unanswered) = frozen.expect_close_unanswered().await;
    assert_eq!(
        close,
        close_of(DisconnectReason::IdleTimeout),
        "after {unanswered} unanswered pings"
    );
    let closed_at = watcher.wait_past(first.tick).await;
    // 4003 is not a leave: the player keeps its seat and its avatar for the grace.
    assert_eq!(players(server.addr, "idle").await, 2);
    drop(frozen);

    let (mut back, keyframe) = resume(&url, welcome.session_token, &welcome, first.tick).await;
    let me = entity_in(&keyframe, welcome.entity_id);
    assert_eq!(
        (me.pos, me.vel),
        (avatar.pos, [0, 0]),
        "the avatar waited where it stood"
    );
    // Controllable again, with input sequence numbers starting over at 1.
    let s = applied(&mut back, 1, Vec2::X).await;
    assert!(s.tick > keyframe.tick);
    assert_eq!(players(server.addr, "idle").await, 2);

    // The watcher was never disturbed.
    watcher.wait_past(closed_at + 3).await;
    watcher.finish().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_token_resumes_the_same_avatar_after_each_of_two_drops() {
    let server = start(config()).await;
    let url = server.ws_url("twice");
    let mut ws = connect(&url).await;
    let welcome = hello(&mut ws, "twice").await;
    let first = recv_snapshot(&mut ws).await;
    let spawned = entity_in(&first, welcome.entity_id);
    let mut last_tick = first.tick;

    for round in 1..=2 {
        // The TCP connection goes away without a close frame, and the server notices.
        drop(ws);
        wait_open(server.addr, 0).await;
        assert_eq!(players(server.addr, "twice").await, 1, "round {round}");

        let (mut back, keyframe) = resume(&url, welcome.session_token, &welcome, last_tick).await;
        let me = entity_in(&keyframe, welcome.entity_id);
        assert_eq!(me.pos, spawned.pos, "round {round}: still where it spawned");
        // Each connection numbers its inputs from 1. A zero movement keeps the avatar
        // where it is for the next round.
        let s = applied(&mut back, 1, Vec2::ZERO).await;
        last_tick = s.tick;
        ws = back;
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_refused_with_4008_in_any_room_but_its_own() {
    let server = start(config()).await;
    let url_a = server.ws_url("alpha");
    let mut player = connect(&url_a).await;
    let welcome = hello(&mut player, "alpha").await;
    let mut beta = Watcher::join(&server.ws_url("beta")).await;
    let tick = beta.wait_past(0).await;

    // Another running room does not know the token, whatever the resume hint says.
    for url in [
        server.ws_url("beta"),
        format!("{}&resume=1", server.ws_url("beta")),
    ] {
        let mut ws = connect(&url).await;
        send(&mut ws, &resume_msg("again", welcome.session_token)).await;
        assert_eq!(expect_close(&mut ws).await, session_expired(), "{url}");
    }
    // Nor does a room that does not exist, and the attempt does not create it.
    let mut ws = connect(&format!("{}&resume=1", server.ws_url("gamma"))).await;
    send(&mut ws, &resume_msg("again", welcome.session_token)).await;
    assert_eq!(expect_close(&mut ws).await, session_expired(), "gamma");
    let (status, _) = http(server.addr, "GET", "/rooms/gamma", "").await;
    assert_eq!(status, 404, "a refused resume creates no room");
    assert_eq!(players(server.addr, "beta").await, 1);

    // The refusals did not touch the session: the player plays on, and after a drop
    // its token still resumes it in its own room.
    let s = applied(&mut player, 1, Vec2::ZERO).await;
    drop(player);
    wait_open(server.addr, 1).await;
    let (_back, _) = resume(&url_a, welcome.session_token, &welcome, s.tick).await;

    let tick = beta.wait_past(tick).await;
    beta.wait_past(tick + 3).await;
    beta.finish().await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_room_takes_its_sessions_with_it() {
    let server = start(config()).await;
    let (status, room) = http_json(server.addr, "POST", "/rooms", "{}").await;
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap().to_owned();
    let url = server.ws_url(&id);

    let mut stayer = connect(&url).await;
    let stayed = hello(&mut stayer, "stayer").await;
    recv_snapshot(&mut stayer).await;
    let mut dropper = connect(&url).await;
    let dropped = hello(&mut dropper, "dropper").await;
    recv_snapshot(&mut dropper).await;
    drop(dropper);
    wait_open(server.addr, 1).await;
    assert_eq!(
        players(server.addr, &id).await,
        2,
        "the dropped one is in its grace"
    );

    let (status, body) = http(server.addr, "DELETE", &format!("/rooms/{id}"), "").await;
    assert_eq!((status, body.as_str()), (204, ""));
    assert_eq!(
        expect_close(&mut stayer).await,
        close_of(DisconnectReason::RoomClosed)
    );

    // Neither the player in its grace nor the one the deletion closed can come back.
    for (who, welcome) in [("dropped", &dropped), ("closed", &stayed)] {
        let mut ws = connect(&format!("{url}&resume=1")).await;
        send(&mut ws, &resume_msg("again", welcome.session_token)).await;
        assert_eq!(expect_close(&mut ws).await, session_expired(), "{who}");
    }
    let (status, _) = http(server.addr, "GET", &format!("/rooms/{id}"), "").await;
    assert_eq!(status, 404, "the resumes did not bring the room back");
    server.stop().await.unwrap();
}
