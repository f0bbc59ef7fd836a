//! tickcast-client: a player connection, and the bot swarm built from many of them.
//!
//! The layout follows the server's: an I/O-free core with a thin async shell.
//! - [`session`]: the player's state with no I/O (sequence numbers, acknowledgements,
//!   round-trip and snapshot timing), driven with time passed in.
//! - [`connection`]: one player over a real socket: the WebSocket handshake with the
//!   `tickcast.v2` subprotocol, `Hello`/`Welcome`, server messages read and decoded in
//!   the caller's task (in full, or only snapshot headers: [`SnapshotDecoding`]), and
//!   the [`Event`]s a game or a bot consumes.
//! - [`reconnect`]: [`ReconnectingConnection`], a connection that takes the player back
//!   on a new socket when its connection is lost (exponential backoff with full jitter,
//!   within a time budget), reporting [`SessionEvent`]s.
//! - [`token`]: player tokens for a server that requires player authentication: a
//!   [`PlayerToken`] for [`ConnectOptions::auth_token`], and [`BotTokens`], which signs
//!   one per bot for load tests.
//! - [`link`]: a bad network (latency, jitter, a bandwidth cap, stalls) emulated
//!   between a connection's socket and the server, in both directions, for bots.
//! - [`swarm`], [`behaviour`], [`placement`], [`progress`] and [`report`]: the load
//!   tool `tickcast-bots` as a library, so tests can run a swarm in-process and get
//!   its [`Report`]; several processes' reports combine with [`report::merge`].
//!   [`report::html`] draws a report as one self-contained HTML page; [`scrape`]
//!   fetches the server's `/metrics` page during a run for it.
//!
//! Wire types come from `tickcast-shared`; see docs/PROTOCOL.md for the bytes.

pub mod behaviour;
pub mod connection;
pub mod error;
mod http;
pub mod link;
pub mod matchmake;
pub mod placement;
pub mod progress;
pub mod reconnect;
pub mod report;
pub mod scrape;
pub mod session;
pub mod swarm;
pub mod tls;
pub mod token;

pub use behaviour::{Behaviour, BehaviourKind};
pub use connection::{ConnectOptions, Connection, Event, SnapshotDecoding};
pub use error::ClientError;
pub use link::{Conditioning, LinkSpec, LossStall, Profile};
pub use progress::Progress;
pub use reconnect::{Backoff, ReconnectPolicy, ReconnectingConnection, SessionEvent};
pub use report::{merge, MergeError, Percentiles, Report};
pub use session::{Session, SessionStats, SnapshotMetrics};
pub use swarm::{run_swarm, run_swarm_with_progress, SwarmConfig};
pub use tls::TlsTrust;
pub use token::{BotTokens, PlayerToken};
