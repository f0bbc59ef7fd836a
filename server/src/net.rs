//! The async shell: HTTP listener, WebSocket upgrade, and one reader and one writer per
//! connection. Everything that decides behaviour is in the pure parts ([`handshake`],
//! [`crate::session`] for each connection's protocol rules) or in the room; this layer
//! moves bytes and carries out what those decide.

pub mod admission;
pub mod api;
pub mod audited;
pub mod client_ip;
pub mod connection;
pub mod frame_buffer;
pub mod frames;
pub mod handshake;
pub mod http;
pub mod page;
pub mod per_ip;
pub mod shared_tcp;
pub mod tls;
