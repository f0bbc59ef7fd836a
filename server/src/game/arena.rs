//! The demo game: NPCs drifting in a walled square, one avatar per player.
//!
//! NPCs move at constant velocities (20 to 80 units/s, directions and positions drawn
//! from a seeded RNG so a run repeats) and bounce off the walls. A player's avatar moves
//! at 100 units/s in the direction of its latest input and stops at the walls.
//!
//! Everything moves in whole position quanta per tick and stays on the quantum grid
//! (spawn points are snapped too), so between bounces and input changes every entity
//! is exactly where a client predicts it, and costs nothing in a delta snapshot.

use glam::Vec2;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tickcast_shared::{EntityKind, EntityState, Input};

use super::{snap_step, EntityId, Events, Game, PlayerId, DEFAULT_POS_QUANTUM};

/// Avatar speed at full input, in units per second.
pub const AVATAR_SPEED: f32 = 100.0;
/// Slowest and fastest NPC speeds, in units per second.
pub const NPC_SPEED: std::ops::Range<f32> = 20.0..80.0;

/// How an arena is set up.
#[derive(Debug, Clone, Copy)]
pub struct ArenaConfig {
    /// Side of the square world.
    pub size: f32,
    /// Number of NPCs.
    pub npcs: u32,
    /// Seed of the NPC layout and of avatar spawn points.
    pub seed: u64,
}

impl Default for ArenaConfig {
    fn default() -> Self {
        Self {
            size: 1000.0,
            npcs: 64,
            seed: 1,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Body {
    id: EntityId,
    kind: EntityKind,
    pos: Vec2,
    vel: Vec2,
}

/// The demo game. Entities live in one vector sorted by id (NPCs first, then avatars
/// in join order), which is the order snapshots list them in.
#[derive(Debug)]
pub struct Arena {
    size: Vec2,
    bodies: Vec<Body>,
    next_id: EntityId,
    rng: SmallRng,
}

impl Arena {
    /// Creates the world with its NPCs.
    pub fn new(config: ArenaConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let size = Vec2::splat(config.size);
        let bodies = (0..config.npcs)
            .map(|id| {
                let pos = on_grid(Vec2::new(
                    rng.random_range(0.0..size.x),
                    rng.random_range(0.0..size.y),
                ));
                let angle = rng.random_range(0.0..std::f32::consts::TAU);
                let speed = rng.random_range(NPC_SPEED);
                Body {
                    id,
                    kind: EntityKind::Npc,
                    pos,
                    vel: Vec2::from_angle(angle) * speed,
                }
            })
            .collect();
        Self {
            size,
            bodies,
            next_id: config.npcs,
            rng,
        }
    }

    fn index_of(&self, entity: EntityId) -> Option<usize> {
        self.bodies.binary_search_by_key(&entity, |b| b.id).ok()
    }

    /// Position of an entity, if it exists (used by tests and tools).
    pub fn position(&self, entity: EntityId) -> Option<Vec2> {
        self.index_of(entity).map(|i| self.bodies[i].pos)
    }
}

/// Snaps a point to the quantum grid.
fn on_grid(p: Vec2) -> Vec2 {
    (p / DEFAULT_POS_QUANTUM).round() * DEFAULT_POS_QUANTUM
}

/// Moves `pos` along one axis and reflects it (and `vel`) off the walls at 0 and `max`.
fn bounce(pos: &mut f32, vel: &mut f32, max: f32) {
    if *pos < 0.0 {
        *pos = -*pos;
        *vel = vel.abs();
    } else if *pos > max {
        *pos = 2.0 * max - *pos;
        *vel = -vel.abs();
    }
    // A step longer than the world would still leave it outside; clamp as a last resort.
    *pos = pos.clamp(0.0, max);
}

impl Game for Arena {
    fn spawn_player(&mut self, _player: PlayerId) -> EntityId {
        let id = self.next_id;
        self.next_id += 1;
        // On the grid like the NPCs, so the avatar's position is exact from the start.
        let pos = on_grid(Vec2::new(
            self.rng.random_range(0.0..self.size.x),
            self.rng.random_range(0.0..self.size.y),
        ));
        self.bodies.push(Body {
            id,
            kind: EntityKind::Avatar,
            pos,
            vel: Vec2::ZERO,
        });
        id
    }

    fn despawn_player(&mut self, entity: EntityId) {
        if let Some(i) = self.index_of(entity) {
            self.bodies.remove(i);
        }
    }

    fn apply_input(&mut self, entity: EntityId, input: &Input) {
        if let Some(i) = self.index_of(entity) {
            self.bodies[i].vel = input.movement.clamp_length_max(1.0) * AVATAR_SPEED;
        }
    }

    fn step(&mut self, dt: f32, _events: &mut Events) {
        let max = self.size;
        for b in &mut self.bodies {
            b.pos += snap_step(b.vel, dt, DEFAULT_POS_QUANTUM);
            match b.kind {
                EntityKind::Npc => {
                    bounce(&mut b.pos.x, &mut b.vel.x, max.x);
                    bounce(&mut b.pos.y, &mut b.vel.y, max.y);
                }
                EntityKind::Avatar => {
                    let clamped = b.pos.clamp(Vec2::ZERO, max);
                    // Against a wall the avatar stands still on that axis; say so, so
                    // clients do not predict it into the wall.
                    if clamped.x != b.pos.x {
                        b.vel.x = 0.0;
                    }
                    if clamped.y != b.pos.y {
                        b.vel.y = 0.0;
                    }
                    b.pos = clamped;
                }
            }
        }
    }

    fn world_size(&self) -> Vec2 {
        self.size
    }

    fn write_state(&self, out: &mut Vec<EntityState>) {
        out.extend(
            self.bodies
                .iter()
                .map(|b| EntityState::new(b.id, b.kind, b.pos, b.vel)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(a: &Arena) -> Vec<EntityState> {
        let mut v = Vec::new();
        a.write_state(&mut v);
        v
    }

    #[test]
    fn npcs_are_seeded_and_within_speed_range() {
        let a = Arena::new(ArenaConfig {
            npcs: 200,
            ..Default::default()
        });
        let b = Arena::new(ArenaConfig {
            npcs: 200,
            ..Default::default()
        });
        assert_eq!(state(&a), state(&b));
        let c = Arena::new(ArenaConfig {
            npcs: 200,
            seed: 2,
            ..Default::default()
        });
        assert_ne!(state(&a), state(&c));
        for e in state(&a) {
            let speed = e.vel.length();
            assert!((19.99..80.01).contains(&speed), "speed {speed}");
            assert!(e.pos.cmpge(Vec2::ZERO).all() && e.pos.cmple(Vec2::splat(1000.0)).all());
        }
    }

    #[test]
    fn npcs_stay_inside_and_bounce() {
        let mut a = Arena::new(ArenaConfig {
            npcs: 100,
            ..Default::default()
        });
        let before = state(&a);
        let mut bounced = vec![false; before.len()];
        for _ in 0..30 * 120 {
            a.step(1.0 / 30.0, &mut Events::default());
            for (i, (b, e)) in before.iter().zip(state(&a)).enumerate() {
                assert!(e.pos.cmpge(Vec2::ZERO).all() && e.pos.cmple(Vec2::splat(1000.0)).all());
                // Bouncing flips signs, never the speed.
                assert!((b.vel.length() - e.vel.length()).abs() < 1e-3);
                bounced[i] |= b.vel != e.vel;
            }
        }
        // In two minutes at >= 20 units/s every NPC crosses more than 1000 units, so hits a wall.
        assert!(bounced.iter().all(|b| *b));
    }

    #[test]
    fn motion_stays_on_the_quantum_grid_and_is_predictable() {
        use tickcast_shared::delta::Quantizer;
        let mut a = Arena::new(ArenaConfig {
            npcs: 300,
            ..Default::default()
        });
        let q = Quantizer::new(DEFAULT_POS_QUANTUM, 30);
        let quantized = |a: &Arena| state(a).iter().map(|e| q.quantize(e)).collect::<Vec<_>>();
        let mut before = quantized(&a);
        let mut predictable = 0;
        for _ in 0..300 {
            a.step(1.0 / 30.0, &mut Events::default());
            let after = quantized(&a);
            for (b, e) in before.iter().zip(&after) {
                let on_grid = |v: f32| (v / DEFAULT_POS_QUANTUM).fract() == 0.0;
                let p = a.position(e.id).unwrap();
                assert!(on_grid(p.x) && on_grid(p.y));
                if e.vel == b.vel {
                    // Same velocity: exactly where the client predicts.
                    assert_eq!(e.pos, b.predicted(1), "entity {}", e.id);
                    predictable += 1;
                }
            }
            before = after;
        }
        assert!(
            predictable > 300 * 300 * 9 / 10,
            "most ticks are plain motion: {predictable}"
        );
    }

    #[test]
    fn avatar_moves_with_input_and_stops_at_walls() {
        let mut a = Arena::new(ArenaConfig {
            npcs: 3,
            ..Default::default()
        });
        let id = a.spawn_player(1);
        assert_eq!(id, 3);
        let start = a.position(id).unwrap();
        a.apply_input(
            id,
            &Input {
                seq: 1,
                movement: Vec2::new(2.0, 0.0),
                buttons: 0,
                payload: Default::default(),
            },
        );
        a.step(0.1, &mut Events::default());
        let moved = a.position(id).unwrap() - start;
        let expected = (1000.0 - start.x).min(10.0);
        assert!(
            (moved.x - expected).abs() < 1e-3,
            "clamped to unit length: {moved}"
        );
        for _ in 0..200 {
            a.step(0.1, &mut Events::default());
        }
        assert_eq!(a.position(id).unwrap().x, 1000.0);
        a.despawn_player(id);
        assert_eq!(a.position(id), None);
        assert_eq!(state(&a).len(), 3);
    }
}
