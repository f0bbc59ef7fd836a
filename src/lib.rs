//! tickcast: authoritative fixed-tick game-state synchronisation over WebSockets.
//!
//! This facade re-exports the three crates of the workspace, and is home to the
//! end-to-end tests (`tests/`) and the criterion benches (`benches/`).
//!
//! - [`shared`]: the wire protocol (messages, codec, close codes). No I/O.
//! - [`server`]: the authoritative server: rooms, the tick loop, the WebSocket shell.
//! - [`client`]: a player connection and the `tickcast-bots` load tool.
//! - [`stepper`]: a room and simulated players on a manual clock, with no sockets, for
//!   deterministic tests of protocol rules and of any [`server::game::Game`].

pub use tickcast_client as client;
pub use tickcast_server as server;
pub use tickcast_shared as shared;

pub mod stepper;
