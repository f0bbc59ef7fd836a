//! Game rules, separated from networking.
//!
//! A [`Game`] is everything tickcast needs to know about a game: how a player's entity
//! appears and disappears, how an input changes it, how the world advances by one fixed
//! step, and what the world looks like. The room ([`crate::room`]) calls these at each
//! tick; the game never sees a socket, a clock or a byte. A developer hosting their own
//! game implements this trait; [`Arena`] is the demo game.
//!
//! A server hosts games it was not compiled around: [`Games`] maps names to factories,
//! and each room asks it for a fresh game of the kind the room was created with
//! (`--game`, or `"game"` in `POST /rooms`).

mod arena;
pub mod tag;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

pub use arena::{Arena, ArenaConfig, AVATAR_SPEED};
pub use tag::{Tag, TagConfig, TagEvent};

use glam::Vec2;
use tickcast_shared::{EntityState, FieldSpec, Input};

/// Identifies an entity for the lifetime of a room; also its id on the wire.
pub type EntityId = u32;

/// A player's id within its room (never reused in that room).
pub type PlayerId = u32;

/// The rules of a game hosted in a room.
///
/// Calls happen on the room's tick task, in this order per tick: [`Game::apply_input`]
/// for each player that sent a new input, then [`Game::step`] once, then
/// [`Game::write_state`] when a snapshot is built. Joins, leaves and
/// [`Game::on_message`] happen between ticks. A game never sees a socket or a clock:
/// for a room to replay exactly, all its randomness must come from a seed and all its
/// time from `dt`.
pub trait Game: Send + 'static {
    /// Creates the entity that player `player` controls and returns its id.
    fn spawn_player(&mut self, player: PlayerId) -> EntityId;

    /// Removes a player's entity (the player left, or its reconnect grace ran out).
    fn despawn_player(&mut self, entity: EntityId);

    /// Applies the newest input of the player that controls `entity`. The input is
    /// validated before it gets here: `movement` is finite with a length of at most 1
    /// (the game may clamp further), and `payload` is at most
    /// [`tickcast_shared::payload::MAX_INPUT_PAYLOAD`] bytes the game itself defines.
    fn apply_input(&mut self, entity: EntityId, input: &Input);

    /// Advances the world by exactly `dt` seconds (`1 / tick_rate`). Events pushed to
    /// `events` reach their players before the snapshot of this tick.
    fn step(&mut self, dt: f32, events: &mut Events);

    /// Width and height of the world, sent to players in `Welcome`.
    fn world_size(&self) -> Vec2;

    /// Appends the state of every entity to `out`, sorted by id. `out` is cleared by the
    /// caller and reused across ticks.
    fn write_state(&self, out: &mut Vec<EntityState>);

    /// World units per position quantum on the wire: the precision players see.
    /// Velocities travel as whole quanta per tick. A game that moves its entities by
    /// whole quanta per tick (see [`snap_step`]) makes straight-line motion exactly
    /// predictable, so it costs no bandwidth; any other game still works, it just sends
    /// small corrections.
    fn pos_quantum(&self) -> f32 {
        DEFAULT_POS_QUANTUM
    }

    /// The integer fields this game's entities carry (`EntityState::fields`, by
    /// index), at most [`tickcast_shared::MAX_FIELDS`]. Asked once per room; the
    /// `Welcome` describes them to every client. An unchanged field costs nothing on
    /// the wire.
    fn fields(&self) -> Vec<FieldSpec> {
        Vec::new()
    }

    /// A reliable message from `player` (whose entity is `entity`). Validate it here:
    /// a message refused with `Err` closes that player's connection with 4009. The
    /// default refuses every message, for games that take none.
    ///
    /// # Errors
    /// [`MessageRefused`] when the message is not valid from this player now.
    fn on_message(
        &mut self,
        player: PlayerId,
        entity: EntityId,
        message: &[u8],
        events: &mut Events,
    ) -> Result<(), MessageRefused> {
        let _ = (player, entity, message, events);
        Err(MessageRefused)
    }
}

/// A game refused a player's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("game message refused")]
pub struct MessageRefused;

/// Largest event a game may send, in bytes; larger ones are dropped with a warning
/// (clients would take them, but a reliable message that size is a game bug).
pub const MAX_EVENT_BYTES: usize = 16 * 1024;

/// Who receives an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// One player.
    Player(PlayerId),
    /// Several players.
    Players(Vec<PlayerId>),
    /// Everyone in the room.
    All,
}

/// Reliable messages a game sends during one call, delivered by the room in the order
/// they were pushed, each player's before its next snapshot.
#[derive(Debug, Default)]
pub struct Events {
    pending: Vec<(Recipients, Vec<u8>)>,
}

impl Events {
    /// Sends `payload` to one player.
    pub fn to_player(&mut self, player: PlayerId, payload: impl Into<Vec<u8>>) {
        self.pending
            .push((Recipients::Player(player), payload.into()));
    }

    /// Sends `payload` to each of `players`.
    pub fn to_players(&mut self, players: &[PlayerId], payload: impl Into<Vec<u8>>) {
        self.pending
            .push((Recipients::Players(players.to_vec()), payload.into()));
    }

    /// Sends `payload` to every player of the room.
    pub fn to_all(&mut self, payload: impl Into<Vec<u8>>) {
        self.pending.push((Recipients::All, payload.into()));
    }

    /// True when nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Takes the events pushed so far, in order.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (Recipients, Vec<u8>)> {
        self.pending.drain(..)
    }
}

/// 1/16 of a world unit: 0.0625 units of precision, and a 1000-unit world in 14 bits.
pub const DEFAULT_POS_QUANTUM: f32 = 1.0 / 16.0;

/// The displacement of one tick at velocity `vel`, rounded to whole quanta exactly as
/// [`tickcast_shared::delta::Quantizer`] rounds velocities, so the wire velocity
/// predicts the motion without error.
pub fn snap_step(vel: Vec2, dt: f32, quantum: f32) -> Vec2 {
    (vel * dt / quantum).round() * quantum
}

/// What a room tells its game's factory: the room options a game may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GameOptions {
    /// NPCs (or whatever the game populates its world with) the room asked for.
    pub npcs: u32,
    /// Seed of the game's randomness (`--seed`): the same seed gives the same world.
    pub seed: u64,
}

/// Makes a fresh game for a new room.
pub type GameFactory = Arc<dyn Fn(&GameOptions) -> Box<dyn Game> + Send + Sync>;

/// The games a server hosts, by name.
#[derive(Clone, Default)]
pub struct Games {
    factories: BTreeMap<String, GameFactory>,
}

impl fmt::Debug for Games {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.factories.keys()).finish()
    }
}

impl Games {
    /// No games yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The games every `tickcast-server` hosts: `arena` and `tag`.
    pub fn builtin() -> Self {
        Self::new()
            .with("arena", |o: &GameOptions| {
                Arena::new(ArenaConfig {
                    npcs: o.npcs,
                    seed: o.seed,
                    ..ArenaConfig::default()
                })
            })
            .with("tag", |o: &GameOptions| {
                Tag::new(TagConfig {
                    npcs: o.npcs,
                    seed: o.seed,
                    ..TagConfig::default()
                })
            })
    }

    /// Adds (or replaces) the game called `name`, made by `factory` for each room.
    pub fn with<G, F>(mut self, name: &str, factory: F) -> Self
    where
        G: Game,
        F: Fn(&GameOptions) -> G + Send + Sync + 'static,
    {
        self.factories.insert(
            name.to_owned(),
            Arc::new(move |o: &GameOptions| Box::new(factory(o)) as Box<dyn Game>),
        );
        self
    }

    /// True when a game of that name is registered.
    pub fn contains(&self, name: &str) -> bool {
        self.factories.contains_key(name)
    }

    /// The registered names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.factories.keys().map(String::as_str).collect()
    }

    /// A fresh game called `name`.
    ///
    /// # Errors
    /// [`UnknownGame`] naming the known games.
    pub fn create(&self, name: &str, options: &GameOptions) -> Result<Box<dyn Game>, UnknownGame> {
        match self.factories.get(name) {
            Some(factory) => Ok(factory(options)),
            None => Err(self.unknown(name)),
        }
    }

    /// The error for a name that is not registered.
    pub fn unknown(&self, name: &str) -> UnknownGame {
        UnknownGame {
            name: name.to_owned(),
            known: self.names().join(", "),
        }
    }
}

/// A game name no factory is registered under.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown game {name:?}; known games: {known}")]
pub struct UnknownGame {
    /// The name asked for.
    pub name: String,
    /// The registered names, comma-separated.
    pub known: String,
}

/// A boxed game is a game, so rooms run games chosen at run time.
impl<G: Game + ?Sized> Game for Box<G> {
    fn spawn_player(&mut self, player: PlayerId) -> EntityId {
        (**self).spawn_player(player)
    }

    fn despawn_player(&mut self, entity: EntityId) {
        (**self).despawn_player(entity);
    }

    fn apply_input(&mut self, entity: EntityId, input: &Input) {
        (**self).apply_input(entity, input);
    }

    fn step(&mut self, dt: f32, events: &mut Events) {
        (**self).step(dt, events);
    }

    fn world_size(&self) -> Vec2 {
        (**self).world_size()
    }

    fn write_state(&self, out: &mut Vec<EntityState>) {
        (**self).write_state(out);
    }

    fn pos_quantum(&self) -> f32 {
        (**self).pos_quantum()
    }

    fn fields(&self) -> Vec<FieldSpec> {
        (**self).fields()
    }

    fn on_message(
        &mut self,
        player: PlayerId,
        entity: EntityId,
        message: &[u8],
        events: &mut Events,
    ) -> Result<(), MessageRefused> {
        (**self).on_message(player, entity, message, events)
    }
}
