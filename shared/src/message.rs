//! The protocol messages, one enum per direction.
//!
//! One WebSocket binary message carries exactly one [`ClientMsg`] or [`ServerMsg`],
//! encoded by [`crate::codec`]. The order of the variants and of the fields is the
//! wire format (bincode writes a variant index and then the fields in order), so it
//! only ever changes together with [`crate::PROTOCOL_VERSION`] and docs/PROTOCOL.md.
//! Two messages have a second, longer form on the wire, used only when their v2 extra
//! is not empty: an input with a payload and a snapshot with field changes (the
//! private `wire` module maps between the two).

use glam::Vec2;
use serde::{Deserialize, Serialize};

pub use crate::payload::InputPayload;

/// Everything a client may send, after the WebSocket handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "crate::wire::ClientWire", into = "crate::wire::ClientWire")]
pub enum ClientMsg {
    /// First message of every connection; nothing else is accepted before it.
    Hello(Hello),
    /// The player's controls for one client frame. The server keeps only the newest.
    Input(Input),
    /// Round-trip time probe; answered with [`ServerMsg::Pong`].
    Ping(Ping),
    /// A reliable message to the game (a chat line, a purchase, a vote), handed to the
    /// game's `on_message` in order. Size- and rate-limited.
    Message(GameMessage),
}

/// Everything the server sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "crate::wire::ServerWire", into = "crate::wire::ServerWire")]
pub enum ServerMsg {
    /// Answer to `Hello`: who the player is and how the room runs.
    Welcome(Welcome),
    /// The world as of one tick.
    Snapshot(Snapshot),
    /// Answer to `Ping`.
    Pong(Pong),
    /// A reliable message from the game (a score, "you were tagged"), in order.
    Event(GameEvent),
}

/// Joins the room named in the upgrade URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// Display name, 1 to [`crate::validate::MAX_NAME_BYTES`] bytes of UTF-8 without
    /// control characters (format characters such as U+202E are allowed; clients that
    /// display names should treat them as untrusted text).
    pub name: String,
    /// The room the client means to join: empty, or the same room as the URL's
    /// `?room=` (a check against a client connected to the wrong room).
    pub room: String,
    /// To resume a session after a dropped connection: the token from its `Welcome`.
    /// `None` joins as a new player.
    pub resume: Option<SessionToken>,
    /// A signed player token (a JWT in its compact form, at most
    /// [`crate::validate::MAX_AUTH_TOKEN_BYTES`]) from the game's backend, when the server
    /// requires player authentication; `None` otherwise. It travels here rather than in
    /// the upgrade URL, where proxies and access logs would keep it.
    pub auth_token: Option<String>,
}

/// A secret that identifies a player's session in its room, for reconnecting: 16 random
/// bytes, sent in every `Welcome` of that session (the same token after a resume).
pub type SessionToken = [u8; 16];

/// The player's controls. Latest-wins on the server: a newer input replaces an older one
/// that was not yet applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// Strictly increasing per connection; echoed as [`Snapshot::last_input_seq`] once applied.
    pub seq: u32,
    /// Desired movement direction; finite, and its length is clamped to 1 by the server.
    pub movement: Vec2,
    /// Game-defined button bits.
    pub buttons: u16,
    /// Game-defined extra controls (an aim angle, a selected item): up to
    /// [`crate::payload::MAX_INPUT_PAYLOAD`] bytes, latest-wins with the rest.
    pub payload: InputPayload,
}

/// A reliable message from a player to the game: opaque bytes the game interprets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameMessage {
    /// At most the server's `--max-game-message-bytes` (1 KiB by default).
    pub payload: Vec<u8>,
}

/// A reliable message from the game to a player: opaque bytes the game defined.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameEvent {
    /// What the game sent.
    pub payload: Vec<u8>,
}

/// Round-trip probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Opaque to the server and echoed back; clients put their send time here.
    pub nonce: u64,
}

/// Reply to the handshake.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Welcome {
    /// The server's [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u16,
    /// This player's id in the room.
    pub player_id: u32,
    /// The entity this player's inputs move.
    pub entity_id: u32,
    /// Ticks per second of the room.
    pub tick_rate: u16,
    /// The room's tick counter when the player joined (or resumed).
    pub server_tick: u64,
    /// Width and height of the world, for rendering and for bots.
    pub world_size: Vec2,
    /// Presented in `Hello::resume` to take this player back after a dropped connection,
    /// within the server's reconnect grace period.
    pub session_token: SessionToken,
    /// World units per position quantum: positions are `quanta * pos_quantum`, and
    /// velocities `quanta_per_tick * pos_quantum * tick_rate` units per second.
    pub pos_quantum: f32,
    /// The name of the game the room runs (`arena`, `tag`, ...).
    pub game: String,
    /// The integer fields the game's entities carry besides position and velocity, in
    /// field-index order (at most [`MAX_FIELDS`]): what a client can show without
    /// knowing the game.
    pub fields: Vec<FieldSpec>,
}

/// Most fields a game may declare per entity.
pub const MAX_FIELDS: usize = 8;

/// Longest field name, in bytes.
pub const MAX_FIELD_NAME_BYTES: usize = 32;

/// The values of an entity's fields, by field index; undeclared ones are 0.
pub type Fields = [i32; MAX_FIELDS];

/// One game-declared entity field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// What it is called (`health`, `score`, `team`): 1 to [`MAX_FIELD_NAME_BYTES`] bytes.
    pub name: String,
    /// The range its values keep to, so a client knows how to show it.
    pub kind: FieldKind,
}

/// The range of a field's values. Every field travels as a zigzag-varint `i32` delta;
/// the kind only says what values the game keeps it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldKind {
    /// 0 or 1.
    Bool,
    /// 0 to 255.
    U8,
    /// -128 to 127.
    I8,
    /// 0 to 65535.
    U16,
    /// -32768 to 32767.
    I16,
    /// Any `i32`.
    I32,
}

/// The world after tick `tick`, as this player sees it: a delta against the snapshot
/// `base_tick` this player already has, or a keyframe when `base_tick` is 0.
///
/// Positions travel as integer quanta and velocities as quanta per tick (see
/// [`crate::delta`]); a client holding the base predicts every entity forward by
/// `tick - base_tick` ticks, then applies `removed`, `changed` and `added`. Entities
/// that moved exactly as predicted are not listed at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The tick this state is the result of (ticks start at 1).
    pub tick: u64,
    /// The tick of the snapshot this delta applies to; 0 for a keyframe.
    pub base_tick: u64,
    /// `seq` of the last input of this player that the server applied (0: none yet).
    pub last_input_seq: u32,
    /// Entities of the base that are gone (despawned or out of view), as ascending id
    /// gaps: the first is an id, each next one is `id - previous id - 1`.
    pub removed: Vec<u32>,
    /// Entities of the base (after `removed`) whose state differs from the prediction,
    /// in id order.
    pub changed: Vec<Changed>,
    /// Entities the player does not have yet (spawned or entering view), as ascending
    /// id gaps like `removed`.
    pub added: Vec<Added>,
    /// Field values that differ from what the client has, applied last, walking the
    /// world after removals, changes and additions in id order (an added entity's
    /// fields start at 0).
    pub fields: Vec<FieldChange>,
}

/// One field of one entity that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    /// Entities to step over from the entity of the previous change (from the first
    /// entity for the first change). 0 names the same entity again, for a later field.
    pub skip: u32,
    /// The field's index in the `Welcome`'s list.
    pub field: u8,
    /// The new value minus the old one (wrapping).
    pub delta: i32,
}

/// A held entity whose state is not what the client predicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// Unchanged entities to step over before this one (in the base, after removals).
    pub skip: u32,
    /// Position minus the predicted position, in quanta.
    pub dpos: [i32; 2],
    /// Velocity minus the base velocity, in quanta per tick.
    pub dvel: [i32; 2],
}

/// An entity the client does not hold, with its whole state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    /// Id gap from the previous added entity (the id itself for the first).
    pub id_gap: u32,
    /// Npc or avatar.
    pub kind: EntityKind,
    /// Position in quanta.
    pub pos: [i32; 2],
    /// Velocity in quanta per tick.
    pub vel: [i32; 2],
}

/// Reply to a [`Ping`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// The `nonce` of the ping.
    pub nonce: u64,
    /// The room's tick counter when the ping was answered.
    pub server_tick: u64,
}

/// What kind of thing an entity is, so a client knows how to draw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntityKind {
    /// Moved by the game's rules.
    Npc,
    /// Moved by a player's inputs.
    Avatar,
}

/// One entity's state in world units: what a game describes and what a client draws.
/// On the wire it travels quantised (see [`crate::delta::QEntity`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EntityState {
    /// Stable id for the entity's lifetime.
    pub id: u32,
    /// Npc or avatar.
    pub kind: EntityKind,
    /// Position in world units.
    pub pos: Vec2,
    /// Velocity in world units per second (clients extrapolate with it).
    pub vel: Vec2,
    /// The game's declared fields, by index ([`Welcome::fields`]); the rest are 0.
    pub fields: Fields,
}

impl EntityState {
    /// An entity with all fields 0.
    pub fn new(id: u32, kind: EntityKind, pos: Vec2, vel: Vec2) -> Self {
        Self {
            id,
            kind,
            pos,
            vel,
            fields: [0; MAX_FIELDS],
        }
    }
}
