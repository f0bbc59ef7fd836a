//! What each player is sent each tick, I/O-free: the room's per-tick [`WorldFrame`]
//! and each connection's [`SnapshotEncoder`].
//!
//! # Encode once, send many
//! The room publishes one immutable `Arc<WorldFrame>` per tick: the quantised entities,
//! sorted by id. Every player's writer turns it into that player's message against the
//! frame it last wrote to that player:
//!
//! - Whole world in view (`--view-radius 0`): players holding the same base need the
//!   same body, so the frame caches one body per base tick. Caught-up players all hold
//!   the previous tick and share one encode; a player that skipped snapshots costs one
//!   more encode per distinct base; a new player gets the cached keyframe. Work per
//!   tick: O(entities x distinct bases), plus O(1) header bytes per player.
//! - With a view radius each player sees a different subset, so its body is its own:
//!   a grid query (O(cells + entities in view)) and a diff against what it holds
//!   (O(entities in view)). The grid is built once per tick, O(entities).
//!
//! - With a bandwidth budget (`--max-bytes-per-player-per-sec`) every player's body is
//!   its own, like a view: the [`crate::budget::Planner`] picks which differing entities
//!   fit this tick, and what the client will then hold (unsent entities predicted on
//!   from what it has) becomes the next base. O(entities in view x log) per player.
//!   Without a budget none of this runs: the paths above are unchanged.
//!
//! Where encoding runs: whole-world messages for plain-TCP players are encoded and
//! written by the room in the tick (a cache lookup and a header each, see
//! [`crate::slot`]); a view's or a budget's own body is encoded by the player's writer
//! task, in parallel across cores, never in the tick.

use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use tickcast_shared::codec::{encode_snapshot_body, write_snapshot, EncodeError};
use tickcast_shared::delta::{diff, DeltaBody, QEntity};

use crate::budget::{Budget, Planner, TokenBucket, HEADER_MAX};
use crate::game::EntityId;
use crate::grid::Grid;

/// One tick of one room, shared by every player's writer.
#[derive(Debug)]
pub struct WorldFrame {
    /// The tick.
    pub tick: u64,
    /// Every entity, quantised, sorted by id.
    pub entities: Vec<QEntity>,
    grid: OnceLock<Grid>,
    /// Whole-world bodies already encoded: (requested base, base actually used, body).
    bodies: Mutex<Vec<(u64, u64, Bytes)>>,
}

impl WorldFrame {
    /// A frame of `entities` (sorted by id) at `tick`.
    pub fn new(tick: u64, entities: Vec<QEntity>) -> Self {
        Self {
            tick,
            entities,
            grid: OnceLock::new(),
            bodies: Mutex::default(),
        }
    }

    /// Position of an entity, if present.
    pub fn position(&self, id: EntityId) -> Option<[i32; 2]> {
        self.entities
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .map(|i| self.entities[i].pos)
    }

    /// The whole-world body against `base` (`None`: keyframe), encoded at most once per
    /// base for all players. Returns the base tick the body applies to: 0 when a
    /// keyframe was smaller than the delta and is sent instead.
    ///
    /// # Errors
    /// [`EncodeError`] from the codec (not expected).
    pub fn whole_body(&self, base: Option<&WorldFrame>) -> Result<(u64, Bytes), EncodeError> {
        let key = base.map_or(0, |b| b.tick);
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, used, body)) = bodies.iter().find(|(k, _, _)| *k == key) {
            return Ok((*used, body.clone()));
        }
        let mut delta = DeltaBody::default();
        let mut buf = Vec::new();
        let found = match base {
            Some(b) => {
                diff(
                    Some((b.tick, &b.entities)),
                    self.tick,
                    &self.entities,
                    &mut delta,
                );
                encode_snapshot_body(&delta, &mut buf)?;
                // A keyframe spends at least 6 bytes per entity: a delta at or under
                // that wins without encoding the keyframe to compare (issue 11).
                if buf.len() <= 6 * self.entities.len() {
                    (key, Bytes::from(buf))
                } else {
                    let keyframe = cached_or_encode(&mut bodies, self)?;
                    if buf.len() < keyframe.len() {
                        (key, Bytes::from(buf))
                    } else {
                        (0, keyframe)
                    }
                }
            }
            None => (0, cached_or_encode(&mut bodies, self)?),
        };
        if key != 0 {
            bodies.push((key, found.0, found.1.clone()));
        }
        Ok(found)
    }

    fn grid(&self, cell: i64) -> &Grid {
        self.grid.get_or_init(|| Grid::build(&self.entities, cell))
    }
}

/// The keyframe body of `frame`, from the cache or encoded now and cached.
fn cached_or_encode(
    bodies: &mut Vec<(u64, u64, Bytes)>,
    frame: &WorldFrame,
) -> Result<Bytes, EncodeError> {
    if let Some((_, _, body)) = bodies.iter().find(|(k, _, _)| *k == 0) {
        return Ok(body.clone());
    }
    let mut delta = DeltaBody::default();
    diff(None, frame.tick, &frame.entities, &mut delta);
    let mut buf = Vec::new();
    encode_snapshot_body(&delta, &mut buf)?;
    let body = Bytes::from(buf);
    bodies.push((0, 0, body.clone()));
    Ok(body)
}

/// What one player is offered for one tick.
#[derive(Debug, Clone)]
pub struct PlayerSnapshot {
    /// The room's frame for the tick.
    pub frame: Arc<WorldFrame>,
    /// The last input sequence of this player applied at or before this tick.
    pub last_input_seq: u32,
    /// The player's entity: the centre of its view.
    pub entity: EntityId,
}

/// What the player's client holds: the base of the next delta.
#[derive(Debug)]
enum Held {
    Nothing,
    /// The whole world of a frame.
    Frame(Arc<WorldFrame>),
    /// The player's own view of a tick.
    View {
        tick: u64,
        entities: Vec<QEntity>,
    },
}

/// How one message was built, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// A keyframe rather than a delta.
    pub keyframe: bool,
    /// Bytes of the whole message.
    pub bytes: usize,
}

/// One connection's snapshot state: what its client holds, and reusable buffers.
#[derive(Debug)]
pub struct SnapshotEncoder {
    /// View radius in quanta; 0 sends the whole world.
    radius: i64,
    held: Held,
    body: DeltaBody,
    visible: Vec<QEntity>,
    scratch: Vec<u32>,
    body_buf: Vec<u8>,
    key_buf: Vec<u8>,
    /// The bandwidth budget, when there is one (boxed: most encoders have none).
    budget: Option<Box<Budgeted>>,
}

/// A budgeted player's bucket, priorities and the world its next message leaves it with.
#[derive(Debug)]
struct Budgeted {
    bucket: TokenBucket,
    planner: Planner,
    target: Vec<QEntity>,
}

impl SnapshotEncoder {
    /// An encoder for a player whose client holds nothing yet. `radius` is the view
    /// radius in quanta, 0 for the whole world.
    pub fn new(radius: i64) -> Self {
        Self {
            radius: radius.max(0),
            held: Held::Nothing,
            body: DeltaBody::default(),
            visible: Vec::new(),
            scratch: Vec::new(),
            body_buf: Vec::new(),
            key_buf: Vec::new(),
            budget: None,
        }
    }

    /// The same encoder with a bandwidth budget (`None`: none, the default). With one,
    /// each message carries only what fits the player's budget (see [`crate::budget`]).
    pub fn with_budget(mut self, budget: Option<Budget>) -> Self {
        self.budget = budget.map(|b| {
            Box::new(Budgeted {
                bucket: TokenBucket::new(b),
                planner: Planner::default(),
                target: Vec::new(),
            })
        });
        self
    }

    /// Whether every caught-up player of the room gets the same body (the whole world in
    /// view, no budget), so that encoding is a cache lookup and a header.
    pub fn shares_bodies(&self) -> bool {
        self.radius == 0 && self.budget.is_none()
    }

    /// Writes the player's message for `snap` into `out` (cleared first) and records
    /// that the client will hold it. Call only for snapshots that will be written: the
    /// next delta is built against this one, which TCP delivers before it.
    ///
    /// # Errors
    /// [`EncodeError`] from the codec (not expected).
    pub fn encode(
        &mut self,
        snap: &PlayerSnapshot,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, EncodeError> {
        out.clear();
        if self.budget.is_some() {
            return self.encode_budgeted(snap, out);
        }
        let frame = &snap.frame;
        if self.radius == 0 {
            let base = match &self.held {
                Held::Frame(f) if f.tick < frame.tick => Some(f.as_ref()),
                _ => None,
            };
            let (base_tick, body) = frame.whole_body(base)?;
            write_snapshot(frame.tick, base_tick, snap.last_input_seq, &body, out)?;
            self.held = Held::Frame(Arc::clone(frame));
            return Ok(Encoded {
                keyframe: base_tick == 0,
                bytes: out.len(),
            });
        }

        match frame.position(snap.entity) {
            Some(center) => frame.grid(self.radius).query(
                &frame.entities,
                center,
                self.radius,
                &mut self.scratch,
                &mut self.visible,
            ),
            // No avatar (not expected while joined): nothing is in view.
            None => self.visible.clear(),
        }
        let base = match &self.held {
            Held::View { tick, entities } if *tick < frame.tick => {
                Some((*tick, entities.as_slice()))
            }
            _ => None,
        };
        diff(base, frame.tick, &self.visible, &mut self.body);
        self.body_buf.clear();
        encode_snapshot_body(&self.body, &mut self.body_buf)?;
        let mut base_tick = base.map_or(0, |(t, _)| t);
        // A keyframe spends at least 6 bytes per entity; below that the delta wins
        // without encoding the keyframe to compare.
        if base.is_some() && self.body_buf.len() > 6 * self.visible.len() {
            diff(None, frame.tick, &self.visible, &mut self.body);
            self.key_buf.clear();
            encode_snapshot_body(&self.body, &mut self.key_buf)?;
            if self.key_buf.len() <= self.body_buf.len() {
                std::mem::swap(&mut self.key_buf, &mut self.body_buf);
                base_tick = 0;
            }
        }
        write_snapshot(
            frame.tick,
            base_tick,
            snap.last_input_seq,
            &self.body_buf,
            out,
        )?;
        // The view becomes the held state; the old one's buffer is reused next time.
        let entities = match std::mem::replace(&mut self.held, Held::Nothing) {
            Held::View { entities, .. } => entities,
            _ => Vec::new(),
        };
        let held = std::mem::replace(&mut self.visible, entities);
        self.held = Held::View {
            tick: frame.tick,
            entities: held,
        };
        Ok(Encoded {
            keyframe: base_tick == 0,
            bytes: out.len(),
        })
    }

    /// [`SnapshotEncoder::encode`] under a budget: the own avatar and removals always,
    /// then the differing entities by priority while they fit. The estimate of a
    /// record's size can be a few bytes short (id gaps); a message that comes out over
    /// is built again with fewer entities.
    fn encode_budgeted(
        &mut self,
        snap: &PlayerSnapshot,
        out: &mut Vec<u8>,
    ) -> Result<Encoded, EncodeError> {
        let Self {
            radius,
            held,
            body,
            visible,
            scratch,
            body_buf,
            key_buf,
            budget,
        } = self;
        let Some(b) = budget.as_deref_mut() else {
            return Ok(Encoded {
                keyframe: false,
                bytes: 0,
            });
        };
        let frame = &snap.frame;
        let view: &[QEntity] = if *radius == 0 {
            &frame.entities
        } else {
            match frame.position(snap.entity) {
                Some(center) => {
                    frame
                        .grid(*radius)
                        .query(&frame.entities, center, *radius, scratch, visible)
                }
                None => visible.clear(),
            }
            visible
        };
        let base = match &*held {
            Held::View { tick, entities } if *tick < frame.tick => {
                Some((*tick, entities.as_slice()))
            }
            _ => None,
        };
        let ticks = b.bucket.advance(frame.tick);
        let allowed = b.bucket.available();
        b.planner
            .prepare(base, frame.tick, view, snap.entity, ticks);
        // Removals: a gap each, at most a few bytes.
        let fixed = HEADER_MAX + 3 * b.planner.removed();
        let mut n = b.planner.fit(allowed.saturating_sub(fixed));
        let mut base_tick;
        loop {
            b.planner.build(n, base, frame.tick, view, &mut b.target);
            diff(base, frame.tick, &b.target, body);
            body_buf.clear();
            encode_snapshot_body(body, body_buf)?;
            base_tick = base.map_or(0, |(t, _)| t);
            if base.is_some() && body_buf.len() > 6 * b.target.len() {
                diff(None, frame.tick, &b.target, body);
                key_buf.clear();
                encode_snapshot_body(body, key_buf)?;
                if key_buf.len() <= body_buf.len() {
                    std::mem::swap(key_buf, body_buf);
                    base_tick = 0;
                }
            }
            write_snapshot(frame.tick, base_tick, snap.last_input_seq, body_buf, out)?;
            let fewer = b.planner.shrink(n, out.len().saturating_sub(allowed));
            if out.len() <= allowed || fewer == n {
                break;
            }
            n = fewer;
            out.clear();
        }
        b.bucket.spend(out.len());
        b.planner.commit();
        // The target becomes the held state; the old one's buffer is reused next time.
        let old = match std::mem::replace(held, Held::Nothing) {
            Held::View { entities, .. } => entities,
            _ => Vec::new(),
        };
        let now = std::mem::replace(&mut b.target, old);
        *held = Held::View {
            tick: frame.tick,
            entities: now,
        };
        Ok(Encoded {
            keyframe: base_tick == 0,
            bytes: out.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast_shared::codec::decode_server;
    use tickcast_shared::delta::World;
    use tickcast_shared::{EntityKind, ServerMsg};

    fn frame(tick: u64, entities: &[(u32, [i32; 2], [i32; 2])]) -> Arc<WorldFrame> {
        let e = entities
            .iter()
            .map(|&(id, pos, vel)| QEntity {
                id,
                kind: EntityKind::Npc,
                pos,
                vel,
                fields: Default::default(),
            })
            .collect();
        Arc::new(WorldFrame::new(tick, e))
    }

    fn apply(world: &mut World, bytes: &[u8]) -> tickcast_shared::Snapshot {
        let ServerMsg::Snapshot(s) = decode_server(bytes).unwrap() else {
            panic!("not a snapshot")
        };
        world.apply(&s).unwrap();
        s
    }

    #[test]
    fn whole_world_bodies_are_shared_per_base() {
        let f1 = frame(1, &[(0, [0, 0], [1, 0]), (1, [50, 50], [0, 0])]);
        let f2 = frame(2, &[(0, [1, 0], [1, 0]), (1, [50, 50], [0, 0])]);
        let (a, b) = (
            f2.whole_body(Some(&f1)).unwrap(),
            f2.whole_body(Some(&f1)).unwrap(),
        );
        assert_eq!(a.0, 1);
        assert_eq!(
            a.1.as_ptr(),
            b.1.as_ptr(),
            "one encode for every caught-up player"
        );
        // The delta was obviously smaller: no keyframe was encoded to compare.
        assert!(f2.bodies.lock().unwrap().iter().all(|(k, _, _)| *k != 0));
        assert_eq!(f2.whole_body(None).unwrap().0, 0);
    }

    #[test]
    fn a_delta_bigger_than_the_keyframe_gives_way_to_it() {
        // Every entity replaced: the delta removes 50 and adds 50, the keyframe only
        // holds the 50 new ones.
        let old: Vec<_> = (0..50).map(|i| (i, [i as i32, 0], [0, 0])).collect();
        let new: Vec<_> = (100..150).map(|i| (i, [i as i32, 9], [1, 1])).collect();
        let (f1, f2) = (frame(1, &old), frame(2, &new));
        let (used, body) = f2.whole_body(Some(&f1)).unwrap();
        assert_eq!(used, 0, "the keyframe is sent instead");
        assert_eq!(body, f2.whole_body(None).unwrap().1);
    }

    #[test]
    fn a_player_gets_a_keyframe_then_deltas_and_tracks_the_world() {
        let frames = [
            frame(1, &[(0, [0, 0], [1, 0]), (1, [50, 50], [0, 0])]),
            frame(2, &[(0, [1, 0], [1, 0]), (1, [50, 50], [0, 0])]),
            frame(
                3,
                &[
                    (0, [2, 0], [1, 0]),
                    (1, [50, 50], [0, 2]),
                    (5, [9, 9], [0, 0]),
                ],
            ),
            frame(4, &[(0, [3, 0], [1, 0]), (5, [9, 9], [0, 0])]),
        ];
        let mut enc = SnapshotEncoder::new(0);
        let mut world = World::default();
        let mut out = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            let e = enc
                .encode(
                    &PlayerSnapshot {
                        frame: Arc::clone(f),
                        last_input_seq: 7,
                        entity: 0,
                    },
                    &mut out,
                )
                .unwrap();
            assert_eq!(e.keyframe, i == 0);
            let s = apply(&mut world, &out);
            assert_eq!(s.last_input_seq, 7);
            assert_eq!(world.entities, f.entities);
        }
        // Tick 2 was pure prediction: header only plus three empty lists.
        let mut enc = SnapshotEncoder::new(0);
        enc.encode(
            &PlayerSnapshot {
                frame: Arc::clone(&frames[0]),
                last_input_seq: 0,
                entity: 0,
            },
            &mut out,
        )
        .unwrap();
        let e = enc
            .encode(
                &PlayerSnapshot {
                    frame: Arc::clone(&frames[1]),
                    last_input_seq: 0,
                    entity: 0,
                },
                &mut out,
            )
            .unwrap();
        assert!(e.bytes <= 8, "{} bytes", e.bytes);
    }

    #[test]
    fn a_view_sends_only_what_is_near_and_tracks_entering_and_leaving() {
        // Player entity 9 at the origin, radius 10.
        let f1 = frame(
            1,
            &[
                (1, [5, 0], [0, 0]),
                (2, [50, 0], [-10, 0]),
                (9, [0, 0], [0, 0]),
            ],
        );
        let f2 = frame(
            2,
            &[
                (1, [5, 0], [0, 0]),
                (2, [40, 0], [-10, 0]),
                (9, [0, 0], [0, 0]),
            ],
        );
        let f3 = frame(3, &[(2, [30, 0], [-10, 0]), (9, [0, 0], [0, 0])]);
        let f5 = frame(5, &[(2, [10, 0], [-10, 0]), (9, [0, 0], [0, 0])]);
        let mut enc = SnapshotEncoder::new(10);
        let mut world = World::default();
        let mut out = Vec::new();
        let ids = |w: &World| w.entities.iter().map(|e| e.id).collect::<Vec<_>>();
        for (f, want) in [
            (&f1, vec![1, 9]),
            (&f2, vec![1, 9]),
            (&f3, vec![9]),
            (&f5, vec![2, 9]),
        ] {
            enc.encode(
                &PlayerSnapshot {
                    frame: Arc::clone(f),
                    last_input_seq: 0,
                    entity: 9,
                },
                &mut out,
            )
            .unwrap();
            apply(&mut world, &out);
            assert_eq!(ids(&world), want, "tick {}", f.tick);
        }
    }
}
