//! The built-in game `tag`, played through the whole protocol: on the in-process
//! stepper (a real room, the server's per-connection rules, the snapshot encoder and
//! the client library, on a manual clock; every assertion is exact), and once over
//! real sockets on 127.0.0.1 with a bot swarm.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::{config, connect, hello, recv, WAIT};
use tickcast::client::{run_swarm, BehaviourKind, SwarmConfig};
use tickcast::server::game::tag::{FIELD_IT, FIELD_SCORE, TAG_RADIUS};
use tickcast::server::game::{EntityId, Games, Tag, TagConfig, TagEvent};
use tickcast::shared::glam::Vec2;
use tickcast::shared::{FieldKind, FieldSpec, ServerMsg};
use tickcast::stepper::{PlayerIndex, Stepper, StepperOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Ticks per second of the stepped rooms (the server's default).
const RATE: u64 = 30;

/// A small world, so that players meet within a couple of seconds.
fn stepper(npcs: u32, seed: u64) -> Stepper<Tag> {
    let game = Tag::new(TagConfig {
        size: 100.0,
        npcs,
        seed,
    });
    Stepper::new(game, StepperOptions::default())
}

fn entity_of(s: &Stepper<Tag>, p: PlayerIndex) -> EntityId {
    s.client(p).expect("welcomed").welcome().entity_id
}

/// `[it, score]` of `entity` as player `viewer`'s client world holds it.
fn seen(s: &Stepper<Tag>, viewer: PlayerIndex, entity: EntityId) -> [i32; 2] {
    let world = s.client(viewer).expect("welcomed").world();
    let e = world
        .entities
        .iter()
        .find(|e| e.id == entity)
        .expect("entity in view");
    [e.fields[FIELD_IT], e.fields[FIELD_SCORE]]
}

/// Every client's world equals the server's frame behind its last snapshot, fields
/// included.
fn assert_in_sync(s: &Stepper<Tag>, players: &[PlayerIndex]) {
    for &p in players {
        let client = s.client(p).expect("welcomed");
        let frame = s.last_frame(p).expect("a snapshot was applied");
        assert_eq!(client.world().tick, Some(frame.tick), "player {p}");
        assert_eq!(client.world().entities, frame.entities, "player {p}");
    }
}

/// The server's distance between two avatars.
fn distance(s: &Stepper<Tag>, a: EntityId, b: EntityId) -> f32 {
    let game = s.room().game();
    game.position(a)
        .unwrap()
        .distance(game.position(b).unwrap())
}

/// The direction from `p`'s avatar to `target`, from what `p`'s client sees.
fn toward(s: &Stepper<Tag>, p: PlayerIndex, target: EntityId) -> Vec2 {
    let client = s.client(p).expect("welcomed");
    let me = client.entity(entity_of(s, p)).unwrap();
    let them = client.entity(target).unwrap();
    (them.pos - me.pos).normalize_or_zero()
}

fn tagged(tagger: EntityId, tagged: EntityId) -> Vec<u8> {
    TagEvent::Tagged { tagger, tagged }.encode()
}

fn now_it(entity: EntityId) -> Vec<u8> {
    TagEvent::NowIt { entity }.encode()
}

/// Three players: `a` joins first, `b` and `c` at the next tick. Everyone stands still
/// until `b`'s join immunity is over, then `a` (it) walks into `b` until it is tagged.
/// Returns the stepper, the players and the tick of the tag.
fn play_until_a_tags_b() -> (Stepper<Tag>, [PlayerIndex; 3], u64) {
    let mut s = stepper(4, 7);
    let a = s.connect("a");
    s.step().unwrap();
    let b = s.connect("b");
    let c = s.connect("c");
    s.step().unwrap();
    let (ea, eb, ec) = (entity_of(&s, a), entity_of(&s, b), entity_of(&s, c));
    assert_eq!(
        (ea, eb, ec),
        (4, 5, 6),
        "NPCs take ids 0..4, avatars join order"
    );
    // The seed puts everyone apart, so no one is tagged while standing still.
    assert!(distance(&s, ea, eb) > 2.0 * TAG_RADIUS);
    assert!(distance(&s, ea, ec) > 2.0 * TAG_RADIUS);
    s.run(RATE as u32).unwrap();
    assert_eq!(s.room().game().it(), Some(ea));

    for _ in 0..4 * RATE {
        let before = s.room().current_tick();
        let was_touching = distance(&s, ea, eb) < TAG_RADIUS;
        let dir = toward(&s, a, eb);
        s.send_input(a, dir, 0).unwrap();
        s.step().unwrap();
        assert_in_sync(&s, &[a, b, c]);
        let touching = distance(&s, ea, eb) < TAG_RADIUS;
        if s.room().game().it() == Some(eb) {
            // Passed on at the first tick the two touch, not before and not later.
            assert!(touching && !was_touching, "tagged at tick {}", before + 1);
            return (s, [a, b, c], before + 1);
        }
        assert!(!touching, "touching at tick {} without a tag", before + 1);
        assert_eq!(s.room().game().it(), Some(ea));
        assert_eq!(seen(&s, b, ea)[0], 1);
    }
    panic!("a never reached b");
}

#[test]
fn the_first_player_is_it_and_everyone_sees_it() {
    let mut s = stepper(4, 7);
    let a = s.connect("a");
    s.step().unwrap();
    let ea = entity_of(&s, a);
    assert_eq!(seen(&s, a, ea), [1, 0], "it from the first snapshot");
    assert_eq!(s.events(a), [now_it(ea)]);
    let b = s.connect("b");
    s.step().unwrap();
    let eb = entity_of(&s, b);
    let welcome = s.client(b).unwrap().welcome();
    assert_eq!(
        welcome.fields,
        [
            FieldSpec {
                name: "it".into(),
                kind: FieldKind::Bool
            },
            FieldSpec {
                name: "score".into(),
                kind: FieldKind::I32
            },
        ]
    );
    for viewer in [a, b] {
        assert_eq!(seen(&s, viewer, ea), [1, 0]);
        assert_eq!(seen(&s, viewer, eb), [0, 0]);
    }
    assert_eq!(s.events(a), [now_it(ea)], "announced once");
    assert!(s.events(b).is_empty(), "b joined after the announcement");
    // b scores a point per second not it (counted from its first tick), a none.
    s.run(RATE as u32 * 2 - 1).unwrap();
    assert_in_sync(&s, &[a, b]);
    assert_eq!(seen(&s, a, eb), [0, 2]);
    assert_eq!(seen(&s, b, ea), [1, 0]);
}

#[test]
fn walking_into_another_player_passes_it_on_and_everyone_is_told_once() {
    let (mut s, [a, b, c], tick) = play_until_a_tags_b();
    let (ea, eb, ec) = (entity_of(&s, a), entity_of(&s, b), entity_of(&s, c));
    // b has been free since its first tick (tick 2), a was it all along.
    let b_score = i32::try_from((tick - 1) / RATE).unwrap();
    for viewer in [a, b, c] {
        assert_eq!(seen(&s, viewer, ea), [0, 0], "viewer {viewer}");
        assert_eq!(seen(&s, viewer, eb), [1, b_score], "viewer {viewer}");
        assert_eq!(seen(&s, viewer, ec)[0], 0);
    }
    assert_eq!(s.events(a), [now_it(ea), tagged(ea, eb)]);
    assert_eq!(s.events(b), [tagged(ea, eb)]);
    assert_eq!(s.events(c), [tagged(ea, eb)]);

    // Now a scores and b does not: one second on, a has 1 point and b the same as before.
    s.send_input(a, Vec2::ZERO, 0).unwrap();
    s.run(1).unwrap();
    assert!(distance(&s, ea, eb) < TAG_RADIUS, "still touching");
    s.run(RATE as u32 - 2).unwrap();
    assert_eq!(seen(&s, c, ea), [0, 0], "{} ticks free", RATE - 1);
    assert_eq!(seen(&s, c, eb), [1, b_score]);
    assert_eq!(s.events(c).len(), 1, "no tag back during the immunity");
}

#[test]
fn a_tagger_is_immune_for_a_second_then_can_be_tagged_back() {
    let (mut s, [a, b, c], tick) = play_until_a_tags_b();
    let (ea, eb) = (entity_of(&s, a), entity_of(&s, b));
    s.send_input(a, Vec2::ZERO, 0).unwrap();
    // Both stand still, touching: b (it now) cannot tag a for the 29 ticks after the tag.
    for _ in 1..RATE {
        s.step().unwrap();
        assert!(distance(&s, ea, eb) < TAG_RADIUS);
        assert_eq!(s.room().game().it(), Some(eb));
    }
    assert_eq!(s.room().current_tick(), tick + RATE - 1);
    // One second after the tag, a is fair game again.
    s.step().unwrap();
    assert_eq!(s.room().game().it(), Some(ea));
    assert_in_sync(&s, &[a, b, c]);
    for viewer in [a, b, c] {
        assert_eq!(seen(&s, viewer, ea)[0], 1);
        assert_eq!(seen(&s, viewer, eb)[0], 0);
        assert_eq!(s.events(viewer).last(), Some(&tagged(eb, ea)));
    }
    assert_eq!(s.events(c), [tagged(ea, eb), tagged(eb, ea)]);
}

#[test]
fn when_it_leaves_the_leader_becomes_it() {
    let mut s = stepper(4, 7);
    let a = s.connect("a");
    let b = s.connect("b");
    s.step().unwrap();
    s.run(RATE as u32 + 5).unwrap();
    let c = s.connect("c");
    s.step().unwrap();
    let (ea, eb, ec) = (entity_of(&s, a), entity_of(&s, b), entity_of(&s, c));
    assert_eq!(seen(&s, c, eb), [0, 1]);
    assert_eq!(seen(&s, c, ec), [0, 0]);

    s.close(a);
    s.step().unwrap();
    assert_in_sync(&s, &[b, c]);
    assert_eq!(s.room().game().it(), Some(eb), "b leads with 1 point");
    for viewer in [b, c] {
        assert!(s
            .client(viewer)
            .unwrap()
            .world()
            .entities
            .iter()
            .all(|e| e.id != ea));
        assert_eq!(seen(&s, viewer, eb), [1, 1]);
    }
    // b was there when a was announced, c was not.
    assert_eq!(s.events(b), [now_it(ea), now_it(eb)]);
    assert_eq!(s.events(c), [now_it(eb)]);

    s.close(b);
    s.step().unwrap();
    assert_eq!(seen(&s, c, ec)[0], 1, "the last one left is it");
    assert_eq!(s.events(c), [now_it(eb), now_it(ec)]);
}

#[test]
fn the_same_seed_and_inputs_give_the_same_game() {
    /// Three players steering in turns, with NPCs: every world each client held, and
    /// every event.
    fn play(seed: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
        let mut s = stepper(12, seed);
        let players: Vec<_> = ["a", "b", "c"].iter().map(|n| s.connect(n)).collect();
        s.step().unwrap();
        let mut worlds = Vec::new();
        for t in 0..10 * RATE as u32 {
            for (i, &p) in players.iter().enumerate() {
                let angle = t as f32 * 0.05 * (i as f32 + 1.0);
                s.send_input(p, Vec2::from_angle(angle), 0).unwrap();
            }
            s.step().unwrap();
            assert_in_sync(&s, &players);
            for &p in &players {
                worlds.push(format!("{:?}", s.client(p).unwrap().world().entities).into_bytes());
            }
        }
        let events = players.iter().flat_map(|&p| s.events(p).to_vec()).collect();
        (worlds, events)
    }
    let first = play(3);
    assert_eq!(first, play(3));
    assert_ne!(first.0, play(4).0, "another seed, another game");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_plays_tag_over_real_sockets() {
    const BOTS: u64 = 4;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let server = tokio::spawn(tickcast::server::serve(
        listener,
        tickcast::server::Config {
            game: "tag".into(),
            npcs: 4,
            ..config()
        },
        Games::builtin(),
        stop.clone(),
        CancellationToken::new(),
    ));

    // A player of its own room learns the game and its fields from the Welcome, is it
    // (alone in the room), and is told so once.
    let mut ws = connect(&format!("ws://{addr}/ws?room=solo")).await;
    let welcome = hello(&mut ws, "ada").await;
    assert_eq!(welcome.game, "tag");
    let names: Vec<_> = welcome
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(names, [("it", FieldKind::Bool), ("score", FieldKind::I32)]);
    let mut keyframe_fields = None;
    let mut event = None;
    while keyframe_fields.is_none() || event.is_none() {
        match recv(&mut ws).await {
            ServerMsg::Event(e) if event.is_none() => event = Some(e.payload),
            ServerMsg::Snapshot(s) if keyframe_fields.is_none() => {
                keyframe_fields = Some(s.fields);
            }
            ServerMsg::Snapshot(_) | ServerMsg::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(event, Some(now_it(welcome.entity_id)));
    // The keyframe adds the avatar with fields 0, then sets `it` (the NPCs come first).
    let set_it = keyframe_fields.unwrap();
    assert_eq!(set_it.len(), 1);
    assert_eq!(
        (set_it[0].skip, set_it[0].field, set_it[0].delta),
        (4, 0, 1)
    );

    let report = tokio::time::timeout(
        WAIT,
        run_swarm(
            SwarmConfig {
                url: format!("ws://{addr}/ws?room=field"),
                bots: BOTS as usize,
                duration: Duration::from_secs(2),
                ramp: Duration::from_millis(200),
                behaviour: BehaviourKind::Chase,
                ..SwarmConfig::default()
            },
            CancellationToken::new(),
        ),
    )
    .await
    .expect("the swarm ends by itself");
    assert_eq!(
        (report.bots_connected, report.bots_failed, report.reconnects),
        (BOTS, 0, 0)
    );
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.close_codes.get("1000"), Some(&BOTS));
    // The first bot is always told it is it; how many tags follow depends on real time.
    assert!(
        report.game_events >= 1,
        "{} game events",
        report.game_events
    );
    stop.cancel();
    tokio::time::timeout(WAIT, server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
