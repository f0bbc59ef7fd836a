//! How a bot steers: the movement it puts in each input.
//!
//! Each bot of [`crate::swarm`] owns one [`Behaviour`] and asks it for a movement
//! before every input. Behaviours are plain state machines with no I/O and no clock:
//! what a bot knows of the world (its own avatar, the entities of its reconstructed
//! world) is passed in, a direction comes out, so the tests below drive them directly.
//!
//! Different behaviours load a server differently, which is why there are several:
//! - [`BehaviourKind::Idle`] sends zero movement at the normal input rate: the server
//!   still decodes, applies and acknowledges every input, but nothing moves, so deltas
//!   stay tiny. It measures the fixed cost per player.
//! - [`BehaviourKind::RandomWalk`] spreads avatars over the world like players
//!   exploring: each holds a heading for a random 1/3 to 2 seconds (a key held down),
//!   then turns by up to 90°. A held heading is exactly predictable, so a room of
//!   walkers costs what a room of real players does.
//! - [`BehaviourKind::Circle`] turns at a constant rate: bounded motion that stays in
//!   one area, and the worst case for deltas, since every avatar changes every tick.
//! - [`BehaviourKind::Chase`] steers toward the nearest other avatar, so avatars bunch
//!   up: the worst case for areas of interest, where everyone sees everyone. In a game
//!   that declares an `it` entity field (the built-in `tag`), it plays that game
//!   instead: the bot that is it chases the nearest avatar, the others run from it
//!   when it comes within [`FLEE_DISTANCE`] (see [`Behaviour::with_fields`]).

use std::fmt;
use std::str::FromStr;

use glam::Vec2;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tickcast_shared::{EntityKind, EntityState, FieldSpec, MAX_FIELDS};

/// Shortest and longest time the random walk holds a heading, in inputs (at 30 Hz:
/// 1/3 s to 2 s).
const HOLD_STEPS: std::ops::RangeInclusive<u32> = 10..=60;
/// Largest turn of the random walk when it changes heading, in radians (90°).
const MAX_TURN: f32 = std::f32::consts::FRAC_PI_2;
/// Inputs per full circle of [`BehaviourKind::Circle`]: 3 s at a 30 Hz input rate,
/// a circle of radius `speed * 3 s / 2π`, small enough to stay near where it started.
const CIRCLE_STEPS: f32 = 90.0;
/// Distance to the chased avatar (world units) under which chasing stops steering
/// and the random walk takes over: pointing exactly at an avatar we already overlap
/// would flip direction every tick.
pub const CHASE_REACHED: f32 = 0.5;
/// Distance (world units) within which a chasing bot that is not it runs from the
/// avatar that is; farther away it walks at random, as a player would not flee from
/// across the map (and a held heading costs no bandwidth).
pub const FLEE_DISTANCE: f32 = 150.0;
/// The entity field that marks the avatar a chasing bot chases or runs from.
pub const IT_FIELD: &str = "it";

/// Which behaviour a swarm's bots use (`--behaviour`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum BehaviourKind {
    /// Zero movement at the input rate: inputs are still sent and acknowledged.
    Idle,
    /// A smooth random walk whose turn rate drifts.
    #[default]
    RandomWalk,
    /// A constant turn rate: the avatar runs in circles.
    Circle,
    /// Toward the nearest other avatar; a random walk while there is none. In a game
    /// with an `it` field: toward the nearest avatar when it, away from it otherwise.
    Chase,
}

impl BehaviourKind {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::RandomWalk => "random-walk",
            Self::Circle => "circle",
            Self::Chase => "chase",
        }
    }
}

impl fmt::Display for BehaviourKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A behaviour name that is none of [`BehaviourKind`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown behaviour {0:?} (expected idle, random-walk, circle or chase)")]
pub struct UnknownBehaviour(pub String);

impl FromStr for BehaviourKind {
    type Err = UnknownBehaviour;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Idle, Self::RandomWalk, Self::Circle, Self::Chase]
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownBehaviour(s.to_owned()))
    }
}

/// The steering state of one bot.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// See [`BehaviourKind::Idle`].
    Idle,
    /// See [`BehaviourKind::RandomWalk`].
    RandomWalk(Wander),
    /// See [`BehaviourKind::Circle`].
    Circle(Circle),
    /// See [`BehaviourKind::Chase`].
    Chase(Chase),
}

impl Behaviour {
    /// A behaviour of `kind`; the same seed gives the same movements.
    pub fn new(kind: BehaviourKind, seed: u64) -> Self {
        match kind {
            BehaviourKind::Idle => Self::Idle,
            BehaviourKind::RandomWalk => Self::RandomWalk(Wander::new(seed)),
            BehaviourKind::Circle => Self::Circle(Circle::new(seed)),
            BehaviourKind::Chase => Self::Chase(Chase {
                walk: Wander::new(seed),
                it_field: None,
            }),
        }
    }

    /// Tells the behaviour which entity fields the room's game declares (the
    /// `Welcome`'s `fields`), so [`Behaviour::Chase`] can play tag where there is an
    /// `it` field. Without this call, or in a game with no such field, chase keeps
    /// chasing; the other behaviours ignore fields.
    #[must_use]
    pub fn with_fields(mut self, fields: &[FieldSpec]) -> Self {
        if let Self::Chase(chase) = &mut self {
            chase.it_field = fields
                .iter()
                .position(|f| f.name == IT_FIELD)
                .filter(|&i| i < MAX_FIELDS);
        }
        self
    }

    /// Which behaviour this is.
    pub fn kind(&self) -> BehaviourKind {
        match self {
            Self::Idle => BehaviourKind::Idle,
            Self::RandomWalk(_) => BehaviourKind::RandomWalk,
            Self::Circle(_) => BehaviourKind::Circle,
            Self::Chase(_) => BehaviourKind::Chase,
        }
    }

    /// The movement of the next input: a direction of length at most 1.
    ///
    /// `me` is the bot's own avatar in its reconstructed world (`None` until a
    /// snapshot has shown it), `world` every entity of that world, the bot's own
    /// included, with their fields. Only [`Behaviour::Chase`] reads `world`, so a lazy
    /// iterator (such as [`crate::Session::entities`]) costs the others nothing.
    pub fn next_movement<I>(&mut self, me: Option<EntityState>, world: I) -> Vec2
    where
        I: IntoIterator<Item = EntityState>,
    {
        match self {
            Self::Idle => Vec2::ZERO,
            Self::RandomWalk(walk) => walk.next_direction(),
            Self::Circle(circle) => circle.next_direction(),
            Self::Chase(chase) => chase.next_direction(me, world),
        }
    }
}

/// The chasing state: where the game keeps its `it` field, if it has one, and the
/// random walk to fall back on when there is no one to chase or run from.
#[derive(Debug, Clone)]
pub struct Chase {
    walk: Wander,
    /// Index of the `it` field in [`EntityState::fields`].
    it_field: Option<usize>,
}

impl Chase {
    /// The next movement direction, of length at most 1.
    fn next_direction<I>(&mut self, me: Option<EntityState>, world: I) -> Vec2
    where
        I: IntoIterator<Item = EntityState>,
    {
        let steered = me.and_then(|me| match self.it_field {
            Some(field) if me.fields.get(field) == Some(&0) => flee_direction(me, world, field),
            // It, or no game of tag: chase.
            _ => chase_direction(me, world),
        });
        steered.unwrap_or_else(|| self.walk.next_direction())
    }
}

/// The unit direction from `me` away from the nearest other avatar whose `field` is
/// set (the one that is it); `None` when there is none within [`FLEE_DISTANCE`], or
/// when it stands exactly on `me`. A `field` past [`MAX_FIELDS`] is set on no one.
pub fn flee_direction<I>(me: EntityState, world: I, field: usize) -> Option<Vec2>
where
    I: IntoIterator<Item = EntityState>,
{
    let away = world
        .into_iter()
        .filter(|e| e.kind == EntityKind::Avatar && e.id != me.id)
        .filter(|e| e.fields.get(field).is_some_and(|v| *v != 0))
        .map(|e| me.pos - e.pos)
        .filter(|offset| offset.is_finite())
        .min_by(|a, b| a.length_squared().total_cmp(&b.length_squared()))?;
    if away.length() >= FLEE_DISTANCE {
        return None;
    }
    away.try_normalize()
}

/// The unit direction from `me` toward the nearest avatar other than `me` in `world`;
/// `None` when there is none, or when it is closer than [`CHASE_REACHED`].
pub fn chase_direction<I>(me: EntityState, world: I) -> Option<Vec2>
where
    I: IntoIterator<Item = EntityState>,
{
    let nearest = world
        .into_iter()
        .filter(|e| e.kind == EntityKind::Avatar && e.id != me.id)
        .map(|e| e.pos - me.pos)
        .filter(|offset| offset.is_finite())
        .min_by(|a, b| a.length_squared().total_cmp(&b.length_squared()))?;
    if nearest.length() < CHASE_REACHED {
        return None;
    }
    Some(nearest.normalize_or_zero())
}

/// A random-walk steering state: a heading held for a random number of inputs, then
/// a random turn.
///
/// Players hold a direction key for a while and then change it; they do not steer a
/// little on every frame. Holding the heading also means the avatar moves exactly as
/// its clients predict between turns, which is what the delta snapshots are built for.
#[derive(Debug, Clone)]
pub struct Wander {
    heading: f32,
    hold: u32,
    rng: SmallRng,
}

impl Wander {
    /// A walk starting in a random direction; the same seed gives the same walk.
    pub fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let heading = rng.random_range(0.0..std::f32::consts::TAU);
        let hold = rng.random_range(HOLD_STEPS);
        Self { heading, hold, rng }
    }

    /// The next movement direction, of unit length.
    pub fn next_direction(&mut self) -> Vec2 {
        if self.hold == 0 {
            self.heading = (self.heading + self.rng.random_range(-MAX_TURN..=MAX_TURN))
                .rem_euclid(std::f32::consts::TAU);
            self.hold = self.rng.random_range(HOLD_STEPS);
        }
        self.hold -= 1;
        Vec2::from_angle(self.heading)
    }
}

/// Running in circles: a heading that turns by the same angle every step.
///
/// The turn is per input rather than per second because a behaviour has no clock; at
/// a steady input rate that is the same thing. Start heading and direction of turn
/// are random, so a room of circling bots does not move in lockstep.
#[derive(Debug, Clone, Copy)]
pub struct Circle {
    heading: f32,
    turn: f32,
}

impl Circle {
    /// A circle starting in a random direction, turning left or right.
    pub fn new(seed: u64) -> Self {
        let mut rng = SmallRng::seed_from_u64(seed);
        let heading = rng.random_range(0.0..std::f32::consts::TAU);
        let sign = if rng.random::<bool>() { 1.0 } else { -1.0 };
        Self {
            heading,
            turn: sign * std::f32::consts::TAU / CIRCLE_STEPS,
        }
    }

    /// The next movement direction, of unit length.
    pub fn next_direction(&mut self) -> Vec2 {
        self.heading = (self.heading + self.turn).rem_euclid(std::f32::consts::TAU);
        Vec2::from_angle(self.heading)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avatar(id: u32, x: f32, y: f32) -> EntityState {
        EntityState {
            id,
            kind: EntityKind::Avatar,
            pos: Vec2::new(x, y),
            vel: Vec2::ZERO,
            fields: Default::default(),
        }
    }

    fn npc(id: u32, x: f32, y: f32) -> EntityState {
        EntityState {
            kind: EntityKind::Npc,
            ..avatar(id, x, y)
        }
    }

    #[test]
    fn walk_holds_a_heading_then_turns_at_most_90_degrees() {
        let mut w = Wander::new(42);
        let mut prev = w.next_direction();
        let (mut turns, mut run, mut longest) = (0, 1, 0);
        for _ in 0..3000 {
            let d = w.next_direction();
            assert!((d.length() - 1.0).abs() < 1e-5, "{d}");
            let angle = prev.angle_to(d).abs();
            assert!(angle <= MAX_TURN + 1e-4, "turned {angle} rad in one step");
            if d == prev {
                run += 1;
            } else {
                assert!(run >= *HOLD_STEPS.start(), "held only {run} steps");
                longest = longest.max(run);
                turns += 1;
                run = 1;
            }
            prev = d;
        }
        assert!(longest <= *HOLD_STEPS.end());
        // 3000 steps at 10 to 60 per heading: between 50 and 300 turns.
        assert!((50..=300).contains(&turns), "{turns} turns");
    }

    #[test]
    fn same_seed_same_walk() {
        let (mut a, mut b) = (Wander::new(7), Wander::new(7));
        for _ in 0..10 {
            assert_eq!(a.next_direction(), b.next_direction());
        }
    }

    #[test]
    fn idle_sends_zero_movement_whatever_the_world() {
        let mut b = Behaviour::new(BehaviourKind::Idle, 1);
        let me = avatar(1, 0.0, 0.0);
        for _ in 0..10 {
            assert_eq!(b.next_movement(Some(me), [avatar(2, 5.0, 0.0)]), Vec2::ZERO);
        }
    }

    #[test]
    fn random_walk_ignores_the_world() {
        let mut walk = Behaviour::new(BehaviourKind::RandomWalk, 9);
        let mut reference = Wander::new(9);
        for _ in 0..20 {
            let got = walk.next_movement(Some(avatar(1, 0.0, 0.0)), [avatar(2, 3.0, 4.0)]);
            assert_eq!(got, reference.next_direction());
        }
    }

    #[test]
    fn circle_turns_by_a_constant_angle_and_closes_the_loop() {
        let mut c = Behaviour::new(BehaviourKind::Circle, 3);
        let first = c.next_movement(None, []);
        let mut prev = first;
        let step = std::f32::consts::TAU / CIRCLE_STEPS;
        let mut signed = 0.0f32;
        for _ in 0..CIRCLE_STEPS as usize {
            let d = c.next_movement(None, []);
            assert!((d.length() - 1.0).abs() < 1e-5);
            let angle = prev.angle_to(d);
            assert!((angle.abs() - step).abs() < 1e-4, "turned {angle}");
            signed += angle;
            prev = d;
        }
        // One full turn, in one direction, back where it started.
        assert!(
            (signed.abs() - std::f32::consts::TAU).abs() < 1e-3,
            "{signed}"
        );
        assert!(prev.distance(first) < 1e-3);
    }

    #[test]
    fn chase_steers_to_the_nearest_other_avatar() {
        let me = avatar(7, 10.0, 10.0);
        let world = [
            me,
            npc(1, 11.0, 10.0),    // nearer, but not a player
            avatar(2, 10.0, 30.0), // 20 away, straight up
            avatar(3, -100.0, -100.0),
        ];
        let mut b = Behaviour::new(BehaviourKind::Chase, 5);
        let d = b.next_movement(Some(me), world);
        assert!(d.distance(Vec2::Y) < 1e-6, "{d}");
        assert_eq!(chase_direction(me, world), Some(Vec2::Y));
    }

    #[test]
    fn chase_walks_at_random_without_a_target() {
        let me = avatar(7, 0.0, 0.0);
        let mut chase = Behaviour::new(BehaviourKind::Chase, 11);
        let mut walk = Wander::new(11);
        // Alone (only NPCs and ourselves), before our avatar is known, and on top of
        // the only other avatar: all fall back to the walk, which keeps its state.
        let alone = [me, npc(1, 1.0, 1.0)];
        assert_eq!(chase.next_movement(Some(me), alone), walk.next_direction());
        assert_eq!(
            chase.next_movement(None, [avatar(2, 5.0, 5.0)]),
            walk.next_direction()
        );
        let touching = [me, avatar(2, 0.1, 0.0)];
        assert_eq!(
            chase.next_movement(Some(me), touching),
            walk.next_direction()
        );
        assert_eq!(chase_direction(me, alone), None);
    }

    /// The fields of a game of tag whose `it` is field 1 (not 0, so the index is
    /// looked up by name).
    fn tag_fields() -> Vec<FieldSpec> {
        use tickcast_shared::FieldKind;
        vec![
            FieldSpec {
                name: "score".into(),
                kind: FieldKind::I32,
            },
            FieldSpec {
                name: "it".into(),
                kind: FieldKind::Bool,
            },
        ]
    }

    fn it(mut e: EntityState) -> EntityState {
        e.fields[1] = 1;
        e
    }

    fn tag_chase(seed: u64) -> Behaviour {
        Behaviour::new(BehaviourKind::Chase, seed).with_fields(&tag_fields())
    }

    #[test]
    fn in_tag_the_bot_that_is_it_chases_the_nearest_avatar() {
        let me = it(avatar(7, 10.0, 10.0));
        let world = [
            me,
            npc(1, 11.0, 10.0),
            avatar(2, 10.0, 30.0), // nearest player: straight up
            avatar(3, 100.0, 10.0),
        ];
        let d = tag_chase(5).next_movement(Some(me), world);
        assert!(d.distance(Vec2::Y) < 1e-6, "{d}");
    }

    #[test]
    fn in_tag_the_others_run_from_it_even_past_nearer_avatars() {
        let me = avatar(7, 10.0, 10.0);
        let world = [
            me,
            avatar(2, 12.0, 10.0),     // nearer, but not it
            it(avatar(3, 10.0, 40.0)), // it, 30 straight up
            it(npc(4, 10.0, 0.0)),     // an NPC with the field set means nothing
        ];
        let mut b = tag_chase(5);
        let d = b.next_movement(Some(me), world);
        assert!(d.distance(-Vec2::Y) < 1e-6, "{d}");
        assert_eq!(flee_direction(me, world, 1), Some(-Vec2::Y));
        assert_eq!(flee_direction(me, world, MAX_FIELDS), None, "no such field");
    }

    #[test]
    fn in_tag_the_others_walk_while_it_is_far_or_absent() {
        let me = avatar(7, 0.0, 0.0);
        let mut chase = tag_chase(11);
        let mut walk = Wander::new(11);
        let far = [me, it(avatar(3, FLEE_DISTANCE, 0.0)), avatar(2, 5.0, 0.0)];
        assert_eq!(chase.next_movement(Some(me), far), walk.next_direction());
        let near = [me, it(avatar(3, FLEE_DISTANCE - 1.0, 0.0))];
        assert_eq!(chase.next_movement(Some(me), near), -Vec2::X);
        let no_one = [me, avatar(2, 5.0, 0.0)];
        assert_eq!(chase.next_movement(Some(me), no_one), walk.next_direction());
        let on_top = [me, it(avatar(3, 0.0, 0.0))];
        assert_eq!(chase.next_movement(Some(me), on_top), walk.next_direction());
        assert_eq!(chase.next_movement(None, near), walk.next_direction());
    }

    #[test]
    fn chase_keeps_chasing_in_a_game_without_an_it_field() {
        let me = avatar(7, 10.0, 10.0);
        let world = [me, it(avatar(3, 10.0, 40.0))];
        let mut fields = tag_fields();
        fields[1].name = "team".into();
        for mut b in [
            Behaviour::new(BehaviourKind::Chase, 5),
            Behaviour::new(BehaviourKind::Chase, 5).with_fields(&fields),
            Behaviour::new(BehaviourKind::Chase, 5).with_fields(&[]),
        ] {
            assert!(b.next_movement(Some(me), world).distance(Vec2::Y) < 1e-6);
        }
        // Other behaviours take the fields and ignore them.
        let mut walk = Behaviour::new(BehaviourKind::RandomWalk, 9).with_fields(&tag_fields());
        assert_eq!(
            walk.next_movement(Some(me), world),
            Wander::new(9).next_direction()
        );
    }

    #[test]
    fn names_round_trip() {
        for kind in [
            BehaviourKind::Idle,
            BehaviourKind::RandomWalk,
            BehaviourKind::Circle,
            BehaviourKind::Chase,
        ] {
            assert_eq!(kind.name().parse::<BehaviourKind>(), Ok(kind));
            assert_eq!(Behaviour::new(kind, 0).kind(), kind);
            assert_eq!(
                serde_json::to_value(kind).ok(),
                Some(serde_json::Value::from(kind.name()))
            );
        }
        assert!("walk".parse::<BehaviourKind>().is_err());
        assert_eq!(BehaviourKind::default(), BehaviourKind::RandomWalk);
    }
}
