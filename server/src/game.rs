//! Game rules, separated from networking.
//!
//! A [`Game`] is everything tickcast needs to know about a game: how a player's entity
//! appears and disappears, how an input changes it, how the world advances by one fixed
//! step, and what the world looks like. The room ([`crate::room`]) calls these at each
//! tick; the game never sees a socket, a clock or a byte. A developer hosting their own
//! game implements this trait; [`Arena`] is the demo game.

mod arena;

pub use arena::{Arena, ArenaConfig};

use glam::Vec2;
use tickcast_shared::{EntityState, Input};

/// Identifies an entity for the lifetime of a room; also its id on the wire.
pub type EntityId = u32;

/// The rules of a game hosted in a room.
///
/// Calls happen on the room's tick task, in this order per tick: [`Game::apply_input`]
/// for each player that sent a new input, then [`Game::step`] once, then
/// [`Game::write_state`] when a snapshot is built. Joins and leaves happen between ticks.
pub trait Game: Send + 'static {
    /// Creates the entity a new player controls and returns its id.
    fn spawn_player(&mut self) -> EntityId;

    /// Removes a player's entity (the player left or was disconnected).
    fn despawn_player(&mut self, entity: EntityId);

    /// Applies the newest input of the player that controls `entity`. The input is
    /// validated before it gets here: `movement` is finite with a length of at most 1.
    fn apply_input(&mut self, entity: EntityId, input: &Input);

    /// Advances the world by exactly `dt` seconds (`1 / tick_rate`).
    fn step(&mut self, dt: f32);

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
}

/// 1/16 of a world unit: 0.0625 units of precision, and a 1000-unit world in 14 bits.
pub const DEFAULT_POS_QUANTUM: f32 = 1.0 / 16.0;

/// The displacement of one tick at velocity `vel`, rounded to whole quanta exactly as
/// [`tickcast_shared::delta::Quantizer`] rounds velocities, so the wire velocity
/// predicts the motion without error.
pub fn snap_step(vel: Vec2, dt: f32, quantum: f32) -> Vec2 {
    (vel * dt / quantum).round() * quantum
}
