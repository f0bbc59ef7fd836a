//! The async shell: HTTP listener, WebSocket upgrade, and one reader and one writer per
//! connection. Everything that decides behaviour is in the pure parts ([`handshake`],
//! [`crate::session`] for each connection's protocol rules) or in the room; this layer
//! moves bytes and carries out what those decide.

pub mod api;
pub mod connection;
pub mod handshake;
pub mod http;
pub mod page;
pub mod tls;
