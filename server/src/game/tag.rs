//! `tag`: the second built-in game. One player is "it" and passes it on by touch.
//!
//! It is written only against the public game API (the items of
//! `tickcast_server::game` and `tickcast_shared`), exactly as a game of one's own would
//! be, so it doubles as a second worked example next to docs/GAMES.md.
//!
//! The rules:
//! - **World**: a walled square, 500 × 500 units by default. Avatars move like the
//!   Arena's: in the direction of their player's latest input, by whole position quanta
//!   per tick ([`snap_step`]), stopping at the walls; [`AVATAR_SPEED`] normally and
//!   [`IT_SPEED`] while "it", so that a chase between equal players can end.
//! - **NPCs** wander: each holds a random heading and speed for 1 to 3 seconds, then
//!   draws new ones, bouncing off the walls. They take no part in the game.
//! - **It**: the first player to join is it. When it leaves, the player with the highest
//!   score becomes it (on a tie, the one who joined first): the leader has to run.
//! - **Tagging**: after each step, the avatar nearest to it (ties: the lowest id) that
//!   is closer than [`TAG_RADIUS`] and not immune becomes it. A tagger is immune for
//!   [`IMMUNITY_SECS`], so "it" cannot bounce straight back; a player who just joined is
//!   immune for as long, so a spawn next to it is not an instant tag.
//! - **Score**: one point for every whole second (every `tick_rate` ticks, counted
//!   across the game) spent not being it. Counting ticks, not summed `dt`s, keeps the
//!   score exact at any tick rate.
//!
//! Entity fields ([`Game::fields`]): field [`FIELD_IT`] `it` (`Bool`: 1 on the avatar
//! that is it) and field [`FIELD_SCORE`] `score` (`I32`). NPCs keep both at 0.
//!
//! Events, sent to every player ([`TagEvent`] encodes and decodes them):
//! - `[1, tagger: u32 LE, tagged: u32 LE]` (9 bytes): `tagger` (an entity id) touched
//!   `tagged`, who is now it;
//! - `[2, entity: u32 LE]` (5 bytes): `entity` became it without a tag (it is the first
//!   player, or the one who was it left). Joins and leaves happen between ticks, where a
//!   game cannot send events, so this one goes out at the next step.
//!
//! Deterministic: NPCs and spawn points come from a [`SmallRng`] seeded with
//! [`TagConfig::seed`], all time is counted in steps of the fixed `dt`, and ties are
//! broken by entity id, so the same seed and the same inputs give the same game.

use glam::Vec2;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use tickcast_shared::{EntityKind, EntityState, FieldKind, FieldSpec, Input, MAX_FIELDS};

use crate::game::{snap_step, EntityId, Events, Game, PlayerId, DEFAULT_POS_QUANTUM};

/// Avatar speed at full input, in units per second (the Arena's).
pub const AVATAR_SPEED: f32 = 100.0;
/// Speed of the avatar that is it, in units per second: a little faster, or a chase
/// between two equally fast players could go on forever.
pub const IT_SPEED: f32 = 120.0;
/// Distance (world units) under which the avatar that is it touches another avatar.
pub const TAG_RADIUS: f32 = 10.0;
/// How long a tagger, or a player who just joined, cannot be tagged, in seconds.
pub const IMMUNITY_SECS: f32 = 1.0;
/// Slowest and fastest NPC speeds, in units per second.
pub const NPC_SPEED: std::ops::Range<f32> = 20.0..60.0;
/// Shortest and longest time an NPC holds a heading, in seconds.
pub const NPC_HOLD_SECS: std::ops::Range<f32> = 1.0..3.0;

/// Index of the `it` field in [`EntityState::fields`] and the `Welcome`.
pub const FIELD_IT: usize = 0;
/// Index of the `score` field in [`EntityState::fields`] and the `Welcome`.
pub const FIELD_SCORE: usize = 1;

/// How a game of tag is set up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TagConfig {
    /// Side of the square world, in world units (rounded to whole position quanta).
    pub size: f32,
    /// Number of wandering NPCs.
    pub npcs: u32,
    /// Seed of the NPCs' wandering and of the avatars' spawn points.
    pub seed: u64,
}

impl Default for TagConfig {
    fn default() -> Self {
        Self {
            size: 500.0,
            npcs: 16,
            seed: 1,
        }
    }
}

/// A game event of `tag`, as its payload bytes say (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagEvent {
    /// `tagger` touched `tagged`, who is now it (entity ids).
    Tagged {
        /// The avatar that was it.
        tagger: EntityId,
        /// The avatar that is it now.
        tagged: EntityId,
    },
    /// `entity` became it without a tag: the first player, or the one who was it left.
    NowIt {
        /// The avatar that is it now.
        entity: EntityId,
    },
}

impl TagEvent {
    /// First byte of a [`TagEvent::Tagged`] payload.
    pub const TAGGED: u8 = 1;
    /// First byte of a [`TagEvent::NowIt`] payload.
    pub const NOW_IT: u8 = 2;

    /// The event's payload: a kind byte, then entity ids as little-endian `u32`s.
    pub fn encode(&self) -> Vec<u8> {
        match *self {
            Self::Tagged { tagger, tagged } => {
                let mut out = vec![Self::TAGGED];
                out.extend_from_slice(&tagger.to_le_bytes());
                out.extend_from_slice(&tagged.to_le_bytes());
                out
            }
            Self::NowIt { entity } => {
                let mut out = vec![Self::NOW_IT];
                out.extend_from_slice(&entity.to_le_bytes());
                out
            }
        }
    }

    /// Reads a payload written by [`TagEvent::encode`]; `None` for anything else (an
    /// unknown kind, or the wrong length), which a client should ignore.
    pub fn decode(payload: &[u8]) -> Option<Self> {
        let id = |bytes: &[u8]| Some(u32::from_le_bytes(bytes.try_into().ok()?));
        match payload {
            [Self::TAGGED, rest @ ..] if rest.len() == 8 => Some(Self::Tagged {
                tagger: id(&rest[..4])?,
                tagged: id(&rest[4..])?,
            }),
            [Self::NOW_IT, rest @ ..] => Some(Self::NowIt { entity: id(rest)? }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct Npc {
    id: EntityId,
    pos: Vec2,
    vel: Vec2,
    /// Steps left before the next change of heading; `None` until the first step,
    /// which is when the game learns its tick rate.
    turn_in: Option<u32>,
}

#[derive(Debug, Clone)]
struct Avatar {
    id: EntityId,
    pos: Vec2,
    /// The velocity of the last step, after the walls: what clients predict with.
    vel: Vec2,
    /// The latest input's direction, of length at most 1; the speed depends on
    /// whether the avatar is it, so it is applied at each step.
    movement: Vec2,
    /// Steps spent not being it.
    free_steps: u64,
    score: i32,
    /// The step count when the immunity started (joining or tagging someone).
    immune_since: u64,
}

/// A game of tag. NPCs take ids `0..npcs`, avatars the next ids in join order, so
/// listing the NPCs and then the avatars lists every entity sorted by id.
#[derive(Debug)]
pub struct Tag {
    size: Vec2,
    npcs: Vec<Npc>,
    avatars: Vec<Avatar>,
    it: Option<EntityId>,
    /// Someone became it without a tag since the last step: announce it.
    announce: bool,
    next_id: EntityId,
    /// Steps taken so far.
    steps: u64,
    rng: SmallRng,
}

impl Tag {
    /// Creates the world with its NPCs, and no players.
    pub fn new(config: TagConfig) -> Self {
        let mut rng = SmallRng::seed_from_u64(config.seed);
        let size = Vec2::splat(on_grid(config.size).max(DEFAULT_POS_QUANTUM));
        let npcs = (0..config.npcs)
            .map(|id| {
                let pos = random_point(&mut rng, size);
                let vel = random_velocity(&mut rng);
                Npc {
                    id,
                    pos,
                    vel,
                    turn_in: None,
                }
            })
            .collect();
        Self {
            size,
            npcs,
            avatars: Vec::new(),
            it: None,
            announce: false,
            next_id: config.npcs,
            steps: 0,
            rng,
        }
    }

    /// The avatar that is it, if there is a player.
    pub fn it(&self) -> Option<EntityId> {
        self.it
    }

    /// An avatar's score, if it exists.
    pub fn score(&self, entity: EntityId) -> Option<i32> {
        self.avatar(entity).map(|a| a.score)
    }

    /// Position of an entity, if it exists.
    pub fn position(&self, entity: EntityId) -> Option<Vec2> {
        self.avatar(entity).map(|a| a.pos).or_else(|| {
            self.npcs
                .binary_search_by_key(&entity, |n| n.id)
                .ok()
                .map(|i| self.npcs[i].pos)
        })
    }

    fn avatar(&self, entity: EntityId) -> Option<&Avatar> {
        let i = self.avatars.binary_search_by_key(&entity, |a| a.id).ok()?;
        Some(&self.avatars[i])
    }

    fn avatar_mut(&mut self, entity: EntityId) -> Option<&mut Avatar> {
        let i = self.avatars.binary_search_by_key(&entity, |a| a.id).ok()?;
        Some(&mut self.avatars[i])
    }

    /// Hands "it" to whoever is nearest to it within [`TAG_RADIUS`] and not immune.
    fn tag(&mut self, immunity: u64, events: &mut Events) {
        let Some(tagger) = self.it else { return };
        let Some(from) = self.avatar(tagger).map(|a| a.pos) else {
            return;
        };
        let steps = self.steps;
        let tagged = self
            .avatars
            .iter()
            .filter(|a| a.id != tagger && steps.saturating_sub(a.immune_since) >= immunity)
            .map(|a| (a.pos.distance_squared(from), a.id))
            .filter(|(d2, _)| *d2 < TAG_RADIUS * TAG_RADIUS)
            .min_by(|x, y| x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)));
        let Some((_, tagged)) = tagged else { return };
        self.it = Some(tagged);
        if let Some(a) = self.avatar_mut(tagger) {
            a.immune_since = steps;
        }
        events.to_all(TagEvent::Tagged { tagger, tagged }.encode());
    }
}

/// Ticks per second, from the fixed `dt` (which is `1 / tick_rate`).
fn ticks_per_second(dt: f32) -> u64 {
    let rate = (1.0 / dt).round();
    if rate.is_finite() && rate >= 1.0 {
        rate as u64
    } else {
        1
    }
}

/// `secs` in whole steps (at least one).
fn steps_for(secs: f32, tps: u64) -> u64 {
    ((secs * tps as f32).round() as u64).max(1)
}

/// Snaps a value to the position quantum grid.
fn on_grid(v: f32) -> f32 {
    (v / DEFAULT_POS_QUANTUM).round() * DEFAULT_POS_QUANTUM
}

/// A random point of the world, on the quantum grid.
fn random_point(rng: &mut SmallRng, size: Vec2) -> Vec2 {
    Vec2::new(
        on_grid(rng.random_range(0.0..size.x)),
        on_grid(rng.random_range(0.0..size.y)),
    )
}

/// A random NPC velocity.
fn random_velocity(rng: &mut SmallRng) -> Vec2 {
    let angle = rng.random_range(0.0..std::f32::consts::TAU);
    Vec2::from_angle(angle) * rng.random_range(NPC_SPEED)
}

/// Reflects `pos` (and `vel`) off the walls at 0 and `max` on one axis.
fn bounce(pos: &mut f32, vel: &mut f32, max: f32) {
    if *pos < 0.0 {
        *pos = -*pos;
        *vel = vel.abs();
    } else if *pos > max {
        *pos = 2.0 * max - *pos;
        *vel = -vel.abs();
    }
    *pos = pos.clamp(0.0, max);
}

impl Game for Tag {
    fn spawn_player(&mut self, _player: PlayerId) -> EntityId {
        let id = self.next_id;
        self.next_id += 1;
        let pos = random_point(&mut self.rng, self.size);
        self.avatars.push(Avatar {
            id,
            pos,
            vel: Vec2::ZERO,
            movement: Vec2::ZERO,
            free_steps: 0,
            score: 0,
            immune_since: self.steps,
        });
        if self.it.is_none() {
            self.it = Some(id);
            self.announce = true;
        }
        id
    }

    fn despawn_player(&mut self, entity: EntityId) {
        let Ok(i) = self.avatars.binary_search_by_key(&entity, |a| a.id) else {
            return;
        };
        self.avatars.remove(i);
        if self.it == Some(entity) {
            // The leader takes over; on a tie, the player who joined first.
            self.it = self
                .avatars
                .iter()
                .max_by(|a, b| a.score.cmp(&b.score).then(b.id.cmp(&a.id)))
                .map(|a| a.id);
            self.announce = self.it.is_some();
        }
    }

    fn apply_input(&mut self, entity: EntityId, input: &Input) {
        if let Some(a) = self.avatar_mut(entity) {
            a.movement = input.movement.clamp_length_max(1.0);
        }
    }

    fn step(&mut self, dt: f32, events: &mut Events) {
        self.steps += 1;
        let tps = ticks_per_second(dt);
        if std::mem::take(&mut self.announce) {
            if let Some(entity) = self.it {
                events.to_all(TagEvent::NowIt { entity }.encode());
            }
        }

        let max = self.size;
        for n in &mut self.npcs {
            match n.turn_in {
                Some(0) => {
                    n.vel = random_velocity(&mut self.rng);
                    n.turn_in = Some(steps_for(self.rng.random_range(NPC_HOLD_SECS), tps) as u32);
                }
                Some(left) => n.turn_in = Some(left - 1),
                None => {
                    n.turn_in = Some(steps_for(self.rng.random_range(NPC_HOLD_SECS), tps) as u32);
                }
            }
            n.pos += snap_step(n.vel, dt, DEFAULT_POS_QUANTUM);
            bounce(&mut n.pos.x, &mut n.vel.x, max.x);
            bounce(&mut n.pos.y, &mut n.vel.y, max.y);
        }

        for a in &mut self.avatars {
            let is_it = self.it == Some(a.id);
            let speed = if is_it { IT_SPEED } else { AVATAR_SPEED };
            a.vel = a.movement * speed;
            a.pos += snap_step(a.vel, dt, DEFAULT_POS_QUANTUM);
            let clamped = a.pos.clamp(Vec2::ZERO, max);
            // Against a wall the avatar stands still on that axis; say so, so clients
            // do not predict it into the wall.
            if clamped.x != a.pos.x {
                a.vel.x = 0.0;
            }
            if clamped.y != a.pos.y {
                a.vel.y = 0.0;
            }
            a.pos = clamped;
            if !is_it {
                a.free_steps += 1;
                a.score = i32::try_from(a.free_steps / tps).unwrap_or(i32::MAX);
            }
        }

        self.tag(steps_for(IMMUNITY_SECS, tps), events);
    }

    fn world_size(&self) -> Vec2 {
        self.size
    }

    fn write_state(&self, out: &mut Vec<EntityState>) {
        out.extend(
            self.npcs
                .iter()
                .map(|n| EntityState::new(n.id, EntityKind::Npc, n.pos, n.vel)),
        );
        out.extend(self.avatars.iter().map(|a| {
            let mut fields = [0; MAX_FIELDS];
            fields[FIELD_IT] = i32::from(self.it == Some(a.id));
            fields[FIELD_SCORE] = a.score;
            EntityState {
                fields,
                ..EntityState::new(a.id, EntityKind::Avatar, a.pos, a.vel)
            }
        }));
    }

    fn fields(&self) -> Vec<FieldSpec> {
        vec![
            FieldSpec {
                name: "it".to_owned(),
                kind: FieldKind::Bool,
            },
            FieldSpec {
                name: "score".to_owned(),
                kind: FieldKind::I32,
            },
        ]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::game::Recipients;

    const DT: f32 = 1.0 / 30.0;

    fn tag(npcs: u32, seed: u64) -> Tag {
        Tag::new(TagConfig {
            npcs,
            seed,
            ..TagConfig::default()
        })
    }

    fn state(t: &Tag) -> Vec<EntityState> {
        let mut v = Vec::new();
        t.write_state(&mut v);
        v
    }

    fn input(x: f32, y: f32) -> Input {
        Input {
            seq: 1,
            movement: Vec2::new(x, y),
            ..Input::default()
        }
    }

    /// Steps once and returns the events' payloads (all of them go to everyone).
    fn step(t: &mut Tag, dt: f32) -> Vec<Vec<u8>> {
        let mut events = Events::default();
        t.step(dt, &mut events);
        events
            .drain()
            .map(|(to, payload)| {
                assert_eq!(to, Recipients::All);
                payload
            })
            .collect()
    }

    #[test]
    fn it_declares_two_fields_it_and_score() {
        let t = tag(0, 1);
        let names: Vec<_> = t.fields().into_iter().map(|f| (f.name, f.kind)).collect();
        assert_eq!(
            names,
            [
                ("it".to_owned(), FieldKind::Bool),
                ("score".to_owned(), FieldKind::I32)
            ]
        );
        assert_eq!(t.world_size(), Vec2::splat(500.0));
    }

    #[test]
    fn events_encode_to_the_documented_bytes_and_back() {
        let tagged = TagEvent::Tagged {
            tagger: 0x0403_0201,
            tagged: 7,
        };
        assert_eq!(tagged.encode(), [1, 1, 2, 3, 4, 7, 0, 0, 0]);
        let now_it = TagEvent::NowIt { entity: 300 };
        assert_eq!(now_it.encode(), [2, 44, 1, 0, 0]);
        assert_eq!(TagEvent::decode(&tagged.encode()), Some(tagged));
        assert_eq!(TagEvent::decode(&now_it.encode()), Some(now_it));
        for bad in [&[][..], &[1, 0, 0, 0, 0], &[2, 0, 0, 0], &[3, 0, 0, 0, 0]] {
            assert_eq!(TagEvent::decode(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_first_player_is_it_and_is_announced_once_at_the_next_step() {
        let mut t = tag(2, 1);
        let a = t.spawn_player(1);
        let b = t.spawn_player(2);
        assert_eq!((a, b), (2, 3), "NPCs take ids 0 and 1");
        assert_eq!(t.it(), Some(a));
        assert_eq!(step(&mut t, DT), [TagEvent::NowIt { entity: a }.encode()]);
        assert_eq!(step(&mut t, DT), Vec::<Vec<u8>>::new());
        let fields: Vec<_> = state(&t).iter().map(|e| e.fields[FIELD_IT]).collect();
        assert_eq!(fields, [0, 0, 1, 0]);
    }

    #[test]
    fn score_is_one_point_per_whole_second_not_it_at_any_tick_rate() {
        for rate in [10u16, 30, 60] {
            let dt = 1.0 / f32::from(rate);
            let mut t = tag(0, 1);
            let it = t.spawn_player(1);
            let other = t.spawn_player(2);
            for n in 1..=u32::from(rate) * 3 {
                step(&mut t, dt);
                let whole = i32::try_from(n / u32::from(rate)).unwrap();
                assert_eq!(t.score(other), Some(whole), "rate {rate}, step {n}");
                assert_eq!(t.score(it), Some(0));
            }
        }
    }

    #[test]
    fn when_it_leaves_the_leader_becomes_it_and_ties_go_to_the_earliest() {
        let mut t = tag(0, 1);
        let a = t.spawn_player(1);
        let b = t.spawn_player(2);
        for _ in 0..30 {
            step(&mut t, DT);
        }
        let c = t.spawn_player(3);
        let d = t.spawn_player(4);
        let e = t.spawn_player(5);
        // e has been free for longer than anyone (as if it had played before).
        t.avatar_mut(e).unwrap().free_steps = 300;
        step(&mut t, DT);
        assert_eq!(t.score(b), Some(1));
        assert_eq!(t.score(e), Some(10));
        t.despawn_player(a);
        assert_eq!(t.it(), Some(e), "e leads with 10 points");
        assert_eq!(step(&mut t, DT), [TagEvent::NowIt { entity: e }.encode()]);
        t.despawn_player(e);
        assert_eq!(t.it(), Some(b), "b leads with 1 point");
        t.despawn_player(b);
        assert_eq!(t.it(), Some(c), "c and d are level: c joined first");
        t.despawn_player(d);
        t.despawn_player(c);
        assert_eq!(t.it(), None);
        assert_eq!(
            step(&mut t, DT),
            Vec::<Vec<u8>>::new(),
            "no one to announce"
        );
        let e = t.spawn_player(5);
        assert_eq!(t.it(), Some(e), "an empty game's first player is it again");
    }

    /// Places avatar `entity` at `(x, 50)`.
    fn place(t: &mut Tag, entity: EntityId, x: f32) {
        t.avatar_mut(entity).unwrap().pos = Vec2::new(x, 50.0);
    }

    #[test]
    fn the_nearest_avatar_within_the_radius_is_tagged_unless_immune() {
        let mut t = tag(0, 1);
        let [a, b, c, d] = [1, 2, 3, 4].map(|p| t.spawn_player(p));
        // Joined before step 1: immune in steps 1 to 29, a second's worth.
        for _ in 0..28 {
            step(&mut t, DT);
        }
        place(&mut t, a, 100.0);
        place(&mut t, b, 100.0 + TAG_RADIUS); // at the radius: not touching
        place(&mut t, c, 100.0 - 6.0);
        place(&mut t, d, 100.0 + 6.0); // as near as c, with a higher id
        assert_eq!(
            step(&mut t, DT),
            Vec::<Vec<u8>>::new(),
            "step 29: still immune"
        );
        assert_eq!(t.it(), Some(a));
        let tagged = TagEvent::Tagged {
            tagger: a,
            tagged: c,
        };
        assert_eq!(
            step(&mut t, DT),
            [tagged.encode()],
            "ties go to the lowest id"
        );
        assert_eq!(t.it(), Some(c));
        // c cannot tag a back for a second, but d is fair game at once.
        place(&mut t, d, 200.0);
        for _ in 1..30 {
            assert_eq!(step(&mut t, DT), Vec::<Vec<u8>>::new());
        }
        let back = TagEvent::Tagged {
            tagger: c,
            tagged: a,
        };
        assert_eq!(step(&mut t, DT), [back.encode()]);
        place(&mut t, d, 100.0 - 6.0 + 1.0);
        let next = TagEvent::Tagged {
            tagger: a,
            tagged: d,
        };
        assert_eq!(step(&mut t, DT), [next.encode()], "d was never immune");
        assert_eq!(t.position(b), Some(Vec2::new(110.0, 50.0)));
    }

    #[test]
    fn avatars_move_by_whole_quanta_and_it_moves_faster() {
        let mut t = tag(0, 3);
        let it = t.spawn_player(1);
        let other = t.spawn_player(2);
        t.apply_input(it, &input(1.0, 0.0));
        t.apply_input(other, &input(2.0, 0.0));
        let (p0, q0) = (t.position(it).unwrap(), t.position(other).unwrap());
        step(&mut t, 0.1);
        let (p1, q1) = (t.position(it).unwrap(), t.position(other).unwrap());
        // 12 and 10 units per 0.1 s, unless a wall came first.
        assert_eq!(p1.x, (p0.x + 12.0).min(500.0));
        assert_eq!(q1.x, (q0.x + 10.0).min(500.0), "clamped to unit length");
        assert_eq!((p1.y, q1.y), (p0.y, q0.y));
        for _ in 0..60 {
            step(&mut t, 0.1);
        }
        assert_eq!(t.position(it).unwrap().x, 500.0);
        let at_wall = state(&t);
        assert_eq!(at_wall[0].vel, Vec2::ZERO, "standing against the wall");
        for e in at_wall {
            let on_grid = |v: f32| (v / DEFAULT_POS_QUANTUM).fract() == 0.0;
            assert!(on_grid(e.pos.x) && on_grid(e.pos.y), "{e:?}");
        }
    }

    #[test]
    fn npcs_wander_inside_the_walls_and_change_heading() {
        let mut t = tag(50, 9);
        let mut turned = vec![0; 50];
        let mut before = state(&t);
        // Ten seconds: holds of 1 to 3 s mean at least 3 turns each (bounces aside).
        for _ in 0..300 {
            step(&mut t, DT);
            let after = state(&t);
            for (i, (b, e)) in before.iter().zip(&after).enumerate() {
                assert!(e.pos.cmpge(Vec2::ZERO).all() && e.pos.cmple(Vec2::splat(500.0)).all());
                let speed = e.vel.length();
                assert!((19.99..60.01).contains(&speed), "speed {speed}");
                if (b.vel.length() - speed).abs() > 1e-3 {
                    turned[i] += 1;
                }
            }
            before = after;
        }
        assert!(turned.iter().all(|n| *n >= 3), "{turned:?}");
    }

    #[test]
    fn the_same_seed_and_inputs_give_the_same_game() {
        let play = |seed| {
            let mut t = tag(20, seed);
            let mut log = Vec::new();
            let a = t.spawn_player(1);
            let b = t.spawn_player(2);
            for n in 0..200u16 {
                let angle = f32::from(n) * 0.1;
                t.apply_input(a, &input(angle.cos(), angle.sin()));
                t.apply_input(b, &input(-angle.sin(), angle.cos()));
                log.extend(step(&mut t, DT));
                log.push(format!("{:?}", state(&t)).into_bytes());
            }
            log
        };
        assert_eq!(play(4), play(4));
        assert_ne!(play(4), play(5));
    }
}
