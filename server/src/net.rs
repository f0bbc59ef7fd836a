//! The async shell: HTTP listener, WebSocket upgrade, and one reader and one writer per
//! connection. Everything that decides behaviour is in the pure parts ([`handshake`],
//! [`assembler`]) or in the room; this layer moves bytes and enforces timeouts.

pub mod api;
pub mod assembler;
pub mod connection;
pub mod handshake;
pub mod http;
pub mod tls;
