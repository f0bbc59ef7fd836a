//! tickcast-shared: the wire protocol, with no I/O.
//!
//! Everything a server and a client must agree on lives here: the message types
//! ([`message`]), quantisation and snapshot deltas ([`delta`]), the one codec entry
//! point with its size limits ([`codec`]), the close codes a connection can end with
//! ([`close`]), the validation rules for the text a peer sends ([`validate`]), and the
//! WebSocket message rules both ends apply above the frame parser ([`websocket`]).
//! There is no tokio and no socket in this crate, so tests, benches and any client
//! (native or a WASM build) can use it as is.
//!
//! `docs/PROTOCOL.md` at the repository root is the normative description of the
//! bytes these types produce.

pub mod close;
pub mod codec;
pub mod delta;
pub mod frame_audit;
pub mod message;
pub mod payload;
pub mod validate;
pub mod websocket;
mod wire;

pub use close::DisconnectReason;
pub use codec::{decode, decode_client, decode_server, encode_into, DecodeError, EncodeError};
/// The vector type of positions and velocities, re-exported so users need not match
/// glam versions themselves.
pub use glam;
pub use message::{
    Added, Changed, ClientMsg, EntityKind, EntityState, FieldChange, FieldKind, FieldSpec, Fields,
    GameEvent, GameMessage, Hello, Input, InputPayload, Ping, Pong, ServerMsg, SessionToken,
    Snapshot, Welcome, MAX_FIELDS,
};

/// The WebSocket subprotocol a client must offer in `Sec-WebSocket-Protocol`.
pub const SUBPROTOCOL: &str = "tickcast.v2";

/// Version carried in `Hello` and `Welcome`. Bumped on any incompatible change to
/// the message encoding; a mismatch ends the connection with
/// [`DisconnectReason::VersionMismatch`].
pub const PROTOCOL_VERSION: u16 = 2;

/// Default cap on one whole WebSocket message (all fragments together) that a server
/// accepts from a client. Clients accept larger server messages (snapshots of big
/// worlds); see [`codec::decode_server`].
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Room a client joins when its URL names none.
pub const DEFAULT_ROOM: &str = "lobby";
