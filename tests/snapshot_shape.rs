//! The shape of the snapshots a real server sends (PROTOCOL.md section 5.1): a keyframe
//! instead of a delta whenever the keyframe is the smaller of the two, a delta
//! otherwise, and with `--view-radius` exactly the entities within the radius of the
//! player's avatar, with those that leave it removed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::HashMap;

use common::*;
use glam::Vec2;
use tickcast::shared::codec::encode_snapshot_body;
use tickcast::shared::delta::{diff, DeltaBody, QEntity, World};
use tickcast::shared::{EntityKind, Snapshot};

/// The sizes of the two bodies the server chooses between for a client holding
/// `held` at `held_tick` when the world is `now` at `tick`: (delta, keyframe).
fn body_sizes(held_tick: u64, held: &[QEntity], tick: u64, now: &[QEntity]) -> (usize, usize) {
    let mut body = DeltaBody::default();
    let mut delta = Vec::new();
    diff(Some((held_tick, held)), tick, now, &mut body);
    encode_snapshot_body(&body, &mut delta).unwrap();
    let mut keyframe = Vec::new();
    diff(None, tick, now, &mut body);
    encode_snapshot_body(&body, &mut keyframe).unwrap();
    (delta.len(), keyframe.len())
}

/// A player that checks every snapshot it receives: applied to what it holds, and
/// sent as a keyframe exactly when a keyframe is not larger than the delta.
struct Checked {
    ws: Ws,
    world: World,
    entity: u32,
    /// `seq` of the last input sent.
    seq: u32,
}

impl Checked {
    /// Sends the next input.
    async fn input(&mut self, movement: Vec2) {
        self.seq += 1;
        send(&mut self.ws, &input_msg(self.seq, movement)).await;
    }

    /// The next snapshot, applied and checked; returns it and the avatar after it.
    async fn next(&mut self) -> (Snapshot, QEntity) {
        let s = recv_snapshot(&mut self.ws).await;
        let held = self.world.clone();
        self.world.apply(&s).unwrap();
        if let Some(held_tick) = held.tick {
            let (delta, keyframe) =
                body_sizes(held_tick, &held.entities, s.tick, &self.world.entities);
            if keyframe <= delta {
                assert_eq!(
                    s.base_tick, 0,
                    "tick {}: a {keyframe}-byte keyframe beats a {delta}-byte delta",
                    s.tick
                );
            } else {
                assert_eq!(
                    s.base_tick, held_tick,
                    "tick {}: a {delta}-byte delta beats a {keyframe}-byte keyframe",
                    s.tick
                );
            }
        }
        let me = *self
            .world
            .entities
            .iter()
            .find(|e| e.id == self.entity)
            .expect("the avatar is in the world");
        (s, me)
    }

    /// Reads snapshots until the avatar satisfies `done`, at most `limit` of them.
    async fn until(
        &mut self,
        limit: usize,
        mut done: impl FnMut(&Snapshot, &QEntity) -> bool,
    ) -> (Snapshot, QEntity) {
        for _ in 0..limit {
            let (s, me) = self.next().await;
            if done(&s, &me) {
                return (s, me);
            }
        }
        panic!("not there after {limit} snapshots: {:?}", self.world);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyframe_replaces_a_delta_whenever_it_is_smaller() {
    // The avatar alone in the world, at 10 ticks per second: full speed is 160 quanta a
    // tick, a 3-byte integer on the wire. Against the wall at 0 its position is 1 byte.
    let mut c = config();
    c.npcs = 0;
    c.tick_rate = 10;
    // Spawns the avatar 13 units from the wall at x = 0, so the run there is short.
    // Another spawn point only makes the test slower (at most 150 ticks per leg).
    c.seed = 13;
    let server = start(c).await;
    let mut ws = connect(&server.ws_url("shape")).await;
    let welcome = hello(&mut ws, "shape").await;
    let mut p = Checked {
        ws,
        world: World::default(),
        entity: welcome.entity_id,
        seq: 0,
    };
    let (first, spawned) = p.next().await;
    assert_eq!(first.base_tick, 0, "the first snapshot is a keyframe");
    assert_eq!(spawned.kind, EntityKind::Avatar);
    assert_eq!(spawned.vel, [0, 0]);
    // Toward the nearer of the two walls at 0: at most 1,000 units at 100 units per
    // second, 100 ticks; 150 leaves a margin.
    let axis = usize::from(spawned.pos[1] < spawned.pos[0]);
    let toward = if axis == 0 { -Vec2::X } else { -Vec2::Y };

    // Run into the wall and stop there.
    p.input(toward).await;
    p.until(150, |_, me| me.pos[axis] == 0 && me.vel[axis] == 0)
        .await;
    // Off it at full speed. The tick after, nothing changes but what the client
    // predicts: the delta is the header and three empty lists, far below a keyframe.
    p.input(-toward).await;
    let (turned, away) = p.until(150, |_, me| me.vel[axis] == 160).await;
    assert_eq!(
        away.pos[axis] % 160,
        0,
        "whole steps from the wall: {away:?}"
    );
    let (coasting, _) = p.next().await;
    assert_eq!(
        coasting.base_tick, turned.tick,
        "a delta on what the client holds"
    );
    assert!(
        coasting.removed.is_empty() && coasting.changed.is_empty() && coasting.added.is_empty(),
        "{coasting:?}"
    );
    // Back into it. The avatar reaches 0 exactly while moving at -160 a tick, and stops
    // there the tick after: a delta would say +160 to both its position and its
    // velocity (3 bytes each), while a keyframe has position 0 and velocity 0 (1 byte
    // each), so the keyframe is the smaller and is sent in the middle of the stream.
    p.input(toward).await;
    p.until(150, |_, me| me.vel[axis] == -160).await;
    let (stop, _) = p
        .until(150, |_, me| me.pos[axis] == 0 && me.vel[axis] == 0)
        .await;
    assert_eq!(
        stop.base_tick, 0,
        "the stop at the wall is a keyframe: {stop:?}"
    );
    assert!(stop.tick > coasting.tick);
    assert_eq!(stop.last_input_seq, 3);
    server.stop().await.unwrap();
}

/// One player's snapshots until tick `until` (or just past it): the world it held after
/// each, and each snapshot's removed ids.
async fn collect(ws: &mut Ws, world: &mut World, until: u64) -> Vec<(Snapshot, World)> {
    let mut out = Vec::new();
    while world.tick.unwrap() < until {
        let s = recv_snapshot(ws).await;
        world.apply(&s).unwrap();
        out.push((s, world.clone()));
    }
    out
}

/// Whether `e` is within `radius` quanta of `center` (Euclidean, boundary included).
fn within(e: &QEntity, center: [i32; 2], radius: i64) -> bool {
    let dx = i64::from(e.pos[0]) - i64::from(center[0]);
    let dy = i64::from(e.pos[1]) - i64::from(center[1]);
    dx * dx + dy * dy <= radius * radius
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_radius_sends_exactly_what_is_within_it() {
    // Two servers with the same seed run the same world tick for tick (the Arena is
    // deterministic, and its first avatar spawns at the same point in both): one sends
    // the whole world, the other only a radius of 200 units around the avatar.
    let mut c = config();
    c.npcs = 300;
    let whole = start(c.clone()).await;
    c.view_radius = 200.0;
    let radius = (200.0 / 0.0625) as i64;
    let near = start(c).await;

    let mut ws_whole = connect(&whole.ws_url("view")).await;
    let mut ws_near = connect(&near.ws_url("view")).await;
    let w_whole = hello(&mut ws_whole, "sees-all").await;
    let w_near = hello(&mut ws_near, "sees-near").await;
    assert_eq!(w_whole.entity_id, w_near.entity_id);
    let me = w_near.entity_id;
    let (mut all, mut view) = (World::default(), World::default());
    all.apply(&recv_snapshot(&mut ws_whole).await).unwrap();
    view.apply(&recv_snapshot(&mut ws_near).await).unwrap();
    let avatar = |w: &World| *w.entities.iter().find(|e| e.id == me).unwrap();
    let center = avatar(&all).pos;
    assert_eq!(avatar(&view).pos, center, "the same spawn point");

    // Two seconds of both, over the same ticks.
    let until = all.tick.unwrap().max(view.tick.unwrap()) + 60;
    let (whole_run, near_run) = tokio::join!(
        collect(&mut ws_whole, &mut all, until),
        collect(&mut ws_near, &mut view, until)
    );
    let truth: HashMap<u64, &World> = whole_run.iter().map(|(s, w)| (s.tick, w)).collect();

    let (mut compared, mut left, mut entered) = (0, 0, 0);
    for (s, seen) in &near_run {
        assert_eq!(avatar(seen).pos, center, "the avatar does not move");
        for e in &seen.entities {
            assert!(
                within(e, center, radius),
                "tick {}: {e:?} is out of view",
                s.tick
            );
        }
        if s.base_tick != 0 {
            entered += s.added.len();
            left += s.removed.len();
        }
        let Some(world) = truth.get(&s.tick) else {
            continue;
        };
        compared += 1;
        let expected: Vec<QEntity> = world
            .entities
            .iter()
            .filter(|e| within(e, center, radius))
            .copied()
            .collect();
        assert_eq!(seen.entities, expected, "tick {}", s.tick);
    }
    // The world is seeded, so what crosses the circle in these 60 ticks is fixed: a
    // few NPCs each way (5 out and 7 in when this was written).
    assert!(compared > 0, "no tick received by both players");
    assert!(left > 0 && entered > 0, "left {left}, entered {entered}");
    whole.stop().await.unwrap();
    near.stop().await.unwrap();
}
