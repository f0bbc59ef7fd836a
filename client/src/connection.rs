//! One player connection over a real socket: the async shell around [`Session`].
//!
//! Data flow: [`Connection::connect`] opens TCP, performs the HTTP Upgrade with the
//! `tickcast.v2` subprotocol, sends `Hello` and waits for `Welcome`. From then on
//! [`Connection::next_event`] reads the socket in the caller's task: it collects frames
//! into a message, decodes it (or, with [`SnapshotDecoding::HeaderOnly`], only a
//! snapshot's header), stamps it with its arrival time and hands it to the [`Session`].
//! Writes (inputs, pings, and the pong and close replies owed to the server) share
//! the write half behind a mutex.
//!
//! fastwebsockets' `read_frame` is not cancel safe: dropped halfway, it would lose
//! part of a frame. So the read in flight is kept in the connection between calls and
//! resumed by the next one, which makes `next_event` cancel safe (a caller may put it
//! in `tokio::select!`) with no reader task and no channel: one task wake-up per
//! message instead of two, which is what a bot process with thousands of connections
//! pays per connection per tick. Nothing is read ahead of the caller: a caller that
//! stops reading stops the reads, TCP pushes back, and the server skips snapshots for
//! us as designed, rather than this process buffering them.
//!
//! This file is the API a game or a bot uses ([`Connection`], [`ConnectOptions`],
//! [`Event`]); the machinery behind it is split by job, in the order a connection
//! meets it:
//! - `target`: what a `ws://` / `wss://` URL says (address, TLS, room), and the URL
//!   of a resume;
//! - `open`: TCP (and TLS), the HTTP upgrade and its subprotocol check, `Hello` and
//!   `Welcome`: everything until the server has taken the player;
//! - `reader`: the read half, frames in and decoded messages out (kept in flight
//!   between calls), and how a broken stream from the server is closed;
//! - `writer`: the shared write half: encoded messages, and the frames the reader owes.

mod open;
mod reader;
mod target;
mod writer;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fastwebsockets::{Frame, WebSocketRead, WebSocketWrite};
use glam::Vec2;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tickcast_shared::{
    codec, ClientMsg, DisconnectReason, GameMessage, InputPayload, ServerMsg, SessionToken,
    Snapshot, Welcome,
};
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::error::ClientError;
use crate::link::Conditioning;
use crate::session::Session;
use crate::tls::TlsTrust;
use crate::token::PlayerToken;
use reader::{Inbound, Reading};
use writer::{close_with, write_msg};

pub(crate) use open::{open, Opened};
pub(crate) use target::Target;

/// Largest server message accepted, all fragments counted. Snapshots of a big world
/// are far larger than what a server accepts from players; this matches the most the
/// codec will decode anyway, so nothing bigger could be used.
pub const MAX_MESSAGE_BYTES: usize = codec::DECODE_ALLOC_LIMIT;

/// Connect timeout of [`ConnectOptions::new`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Connection::close`] waits for the server to answer our close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// RFC 6455 allows 125 bytes in a close frame: a 2-byte code and 123 of reason.
const MAX_CLOSE_REASON_BYTES: usize = 123;

type Io = TokioIo<Upgraded>;
type WsRead = WebSocketRead<tokio::io::ReadHalf<Io>>;
type WsWrite = WebSocketWrite<tokio::io::WriteHalf<Io>>;
type SharedWriter = Arc<Mutex<WsWrite>>;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `ws://host:port/ws?room=NAME` (or `wss://` for TLS); without `room` the server's
    /// default room is joined.
    pub url: String,
    /// Player name sent in `Hello`.
    pub name: String,
    /// Value of the `Origin` header, for servers that check it.
    pub origin: Option<String>,
    /// Limit on TCP connect, handshake and `Hello`/`Welcome` together.
    pub connect_timeout: Duration,
    /// Local address to connect from (port chosen by the kernel); `None` lets the
    /// kernel pick the address too. A load tool spreads thousands of connections over
    /// several loopback addresses this way, because each local address has only the
    /// ephemeral port range to give (see [`crate::placement`]).
    pub local_ip: Option<IpAddr>,
    /// Certificate authorities trusted for `wss://` (default: the public web PKI).
    pub tls: TlsTrust,
    /// A bad network to emulate between this connection and the server, inside this
    /// process, under TLS and the WebSocket (see [`crate::link`]); `None`: the socket
    /// as it is. A resume goes through the same link, with the same seed.
    pub link: Option<Conditioning>,
    /// The player's signed token, for a server that requires player authentication
    /// (docs/PROTOCOL.md, section 3, *Player authentication*): sent in `Hello`, and
    /// again in every resume of a [`crate::ReconnectingConnection`], where the server
    /// checks that it names the same player. `None` on an open server. A refused
    /// token ends the connect with [`ClientError::AuthRequired`],
    /// [`ClientError::AuthInvalid`], [`ClientError::AuthExpired`] or
    /// [`ClientError::AuthWrongRoom`].
    pub auth_token: Option<PlayerToken>,
}

impl ConnectOptions {
    /// Options with no `Origin` and [`DEFAULT_CONNECT_TIMEOUT`].
    pub fn new(url: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            name: name.into(),
            origin: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            local_ip: None,
            tls: TlsTrust::default(),
            link: None,
            auth_token: None,
        }
    }
}

/// How a connection reads the snapshots it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotDecoding {
    /// Decode every snapshot and apply it to the [`Session`]'s world, refusing (and
    /// closing with 1007) a delta that does not apply: what a game needs, and the
    /// accuracy check of a load run.
    #[default]
    Rebuild,
    /// Read only each snapshot's header (tick, base tick, last applied input) with
    /// [`codec::peek_snapshot_header`]: the session measures bytes, gaps, missed ticks
    /// and input acknowledgements exactly as with `Rebuild`, but holds no world
    /// ([`Session::entity`] is `None`), and [`Event::Snapshot`] carries the header
    /// fields with empty lists. For bots that do not look at the world: the entity
    /// lists are never allocated, decoded or applied.
    HeaderOnly,
}

/// What the server sent, as [`Connection::next_event`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The world after one tick. What it measured (gap, missed ticks, input
    /// latency) is in [`Session::last_snapshot_metrics`]. With
    /// [`SnapshotDecoding::HeaderOnly`], only `tick`, `base_tick` and
    /// `last_input_seq` are filled in; the lists are empty.
    Snapshot(Snapshot),
    /// The answer to one of our pings.
    Pong {
        /// Time from sending the ping to receiving this pong.
        rtt: Duration,
    },
    /// A reliable message from the game (its bytes, as the game defined them).
    Game(Vec<u8>),
    /// The server closed the connection; no event follows.
    Closed {
        /// The close code, e.g. 1001 when the server shuts down (1005: none given).
        code: u16,
        /// The close reason text.
        reason: String,
    },
}

impl Event {
    /// For [`Event::Closed`], the reason its code stands for, when tickcast defines it
    /// (for example [`DisconnectReason::Replaced`], 4014: the same player joined again
    /// on a newer connection); `None` for other events and unknown codes.
    pub fn close_reason(&self) -> Option<DisconnectReason> {
        match self {
            Self::Closed { code, .. } => DisconnectReason::from_code(*code),
            _ => None,
        }
    }
}

/// One WebSocket of a connection: what a resume replaces whole. Dropping it drops the
/// socket (no task holds it).
struct Link {
    writer: SharedWriter,
    reading: Reading,
}

/// A joined player: the session state plus the socket it talks over.
///
/// A `Connection` is one socket: when it is lost, [`Connection::next_event`] says so
/// ([`ClientError::ConnectionLost`]) and that is the end of it. To have the player
/// taken back on a new socket automatically, use [`crate::ReconnectingConnection`].
///
/// Dropping a `Connection` drops the socket without a close frame;
/// [`Connection::close`] ends it politely.
pub struct Connection {
    session: Session,
    link: Link,
    /// Encode buffer, reused for every outgoing message.
    buf: Vec<u8>,
    /// The close frame the server sent, once seen.
    closed: Option<(u16, String)>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("session", &self.session)
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// Connects, upgrades with the `tickcast.v2` subprotocol, sends `Hello` and waits
    /// for `Welcome`, all within `opts.connect_timeout`.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a URL that is not `ws://` or `wss://`;
    /// [`ClientError::Tls`] when the server's certificate is not trusted;
    /// [`ClientError::HttpStatus`] when the server refuses the upgrade (400, 403, 409, ...);
    /// [`ClientError::SubprotocolMismatch`] when the 101 does not select `tickcast.v2`;
    /// [`ClientError::Closed`] when the server closes instead of welcoming us, or, for
    /// a refused player token, [`ClientError::AuthRequired`] (4010),
    /// [`ClientError::AuthInvalid`] (4011), [`ClientError::AuthExpired`] (4012) or
    /// [`ClientError::AuthWrongRoom`] (4013);
    /// [`ClientError::ConnectTimeout`]; I/O and WebSocket errors otherwise.
    pub async fn connect(opts: ConnectOptions) -> Result<Connection, ClientError> {
        Self::connect_with(opts, SnapshotDecoding::Rebuild).await
    }

    /// [`Connection::connect`], reading snapshots as `decoding` says.
    ///
    /// # Errors
    /// As [`Connection::connect`].
    pub async fn connect_with(
        opts: ConnectOptions,
        decoding: SnapshotDecoding,
    ) -> Result<Connection, ClientError> {
        let target = Target::parse(&opts.url)?;
        let span = tracing::debug_span!("connection", name = %opts.name, room = %target.room);
        let epoch = Instant::now();
        let opened = open(&opts, &target, None, opts.connect_timeout, decoding)
            .instrument(span)
            .await?;
        let mut session = Session::new(opened.welcome, epoch);
        session.handle_bytes(opened.welcome_bytes);
        Ok(Connection {
            session,
            link: opened.link,
            buf: Vec::with_capacity(64),
            closed: None,
        })
    }

    /// Moves this connection's session onto `opened`, a new socket on which the server
    /// resumed the same player (see [`Session::resume`]). The old socket is dropped.
    pub(crate) fn relink(&mut self, opened: Opened) {
        self.link = opened.link;
        self.closed = None;
        self.session.resume(opened.welcome);
        self.session.handle_bytes(opened.welcome_bytes);
    }

    /// The secret that takes this player back on a new connection (`Hello.resume`),
    /// from the `Welcome`. Treat it like a password: never log or display it.
    pub fn session_token(&self) -> &SessionToken {
        &self.session.welcome().session_token
    }

    /// The server's answer to our `Hello`.
    pub fn welcome(&self) -> &Welcome {
        self.session.welcome()
    }

    /// The session state and its measurements.
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Sends one input and returns its sequence number. `movement` is a direction of
    /// length at most 1 (the server clamps longer ones).
    ///
    /// # Errors
    /// [`ClientError::InvalidInput`] for a non-finite movement (the server would close
    /// us for it); [`ClientError::Closed`] or [`ClientError::NotOpen`] once the
    /// connection is closing; I/O errors.
    pub async fn send_input(&mut self, movement: Vec2, buttons: u16) -> Result<u32, ClientError> {
        if !movement.is_finite() {
            return Err(ClientError::InvalidInput("movement must be finite"));
        }
        self.check_open()?;
        let input = self.session.next_input(Instant::now(), movement, buttons);
        write_msg(&self.link.writer, &mut self.buf, &ClientMsg::Input(input)).await?;
        Ok(input.seq)
    }

    /// Sends one input with a game-defined payload (at most
    /// [`tickcast_shared::payload::MAX_INPUT_PAYLOAD`] bytes) and returns its sequence
    /// number.
    ///
    /// # Errors
    /// As [`Connection::send_input`].
    pub async fn send_input_with(
        &mut self,
        movement: Vec2,
        buttons: u16,
        payload: InputPayload,
    ) -> Result<u32, ClientError> {
        if !movement.is_finite() {
            return Err(ClientError::InvalidInput("movement must be finite"));
        }
        self.check_open()?;
        let mut input = self.session.next_input(Instant::now(), movement, buttons);
        input.payload = payload;
        write_msg(&self.link.writer, &mut self.buf, &ClientMsg::Input(input)).await?;
        Ok(input.seq)
    }

    /// Sends a reliable message to the game (its `on_message` decides what it means).
    ///
    /// # Errors
    /// As [`Connection::send_input`]; the server closes with 1009 beyond its
    /// `--max-game-message-bytes` and with 4009 if the game refuses the message.
    pub async fn send_message(&mut self, payload: Vec<u8>) -> Result<(), ClientError> {
        self.check_open()?;
        let msg = ClientMsg::Message(GameMessage { payload });
        write_msg(&self.link.writer, &mut self.buf, &msg).await
    }

    /// Sends a ping carrying its send time; its pong comes back as [`Event::Pong`].
    ///
    /// # Errors
    /// As [`Connection::send_input`].
    pub async fn send_ping(&mut self) -> Result<(), ClientError> {
        self.check_open()?;
        let ping = self.session.next_ping(Instant::now());
        write_msg(&self.link.writer, &mut self.buf, &ClientMsg::Ping(ping)).await
    }

    /// Waits for the next snapshot, pong or close. Cancel safe: nothing is lost if the
    /// returned future is dropped, so it may be raced in `tokio::select!`.
    ///
    /// # Errors
    /// [`ClientError::Decode`] or [`ClientError::Protocol`] when the server sends
    /// something we cannot use (we then close with 1007 / 1002 / 1003),
    /// [`ClientError::ConnectionLost`] when the socket ends without a close frame,
    /// [`ClientError::Closed`] when called again after [`Event::Closed`].
    pub async fn next_event(&mut self) -> Result<Event, ClientError> {
        loop {
            // The only await: everything after it is synchronous, which is what makes
            // this method cancel safe.
            let Some(inbound) = self.link.reading.recv().await else {
                return Err(match &self.closed {
                    Some((code, reason)) => ClientError::from_close(*code, reason.clone()),
                    None => ClientError::ConnectionLost,
                });
            };
            match inbound {
                Inbound::Message { msg, bytes, at } => {
                    self.session.handle_bytes(bytes);
                    match msg {
                        ServerMsg::Snapshot(snapshot) => {
                            if let Err(e) = self.session.handle_snapshot(at, &snapshot) {
                                // A delta we cannot apply: the stream is broken. Close
                                // without awaiting here, to stay cancel safe.
                                let writer = Arc::clone(&self.link.writer);
                                tokio::spawn(async move {
                                    close_with(&writer, DisconnectReason::InvalidPayload).await;
                                });
                                return Err(ClientError::Delta(e));
                            }
                            return Ok(Event::Snapshot(snapshot));
                        }
                        ServerMsg::Pong(pong) => {
                            if let Some(rtt) = self.session.handle_pong(at, &pong) {
                                return Ok(Event::Pong { rtt });
                            }
                            tracing::debug!(
                                nonce = pong.nonce,
                                "pong with a nonce we did not send"
                            );
                        }
                        ServerMsg::Event(event) => {
                            self.session.handle_event();
                            return Ok(Event::Game(event.payload));
                        }
                        ServerMsg::Welcome(_) => {
                            return Err(ClientError::Protocol("a second Welcome".into()));
                        }
                    }
                }
                Inbound::Header { header, bytes, at } => {
                    self.session.handle_bytes(bytes);
                    self.session.handle_snapshot_header(at, &header);
                    return Ok(Event::Snapshot(Snapshot {
                        tick: header.tick,
                        base_tick: header.base_tick,
                        last_input_seq: header.last_input_seq,
                        removed: Vec::new(),
                        changed: Vec::new(),
                        added: Vec::new(),
                        fields: Vec::new(),
                    }));
                }
                Inbound::Closed { code, reason } => {
                    self.closed = Some((code, reason.clone()));
                    return Ok(Event::Closed { code, reason });
                }
                Inbound::Failed(e) => return Err(e),
            }
        }
    }

    /// Closes with code 1000 and `reason` (cut to the 123 bytes a close frame holds),
    /// then waits up to [`CLOSE_TIMEOUT`] for the server's close. Returns the code the
    /// server closed with, if it did in time; messages still in flight are discarded.
    ///
    /// # Errors
    /// I/O errors writing the close frame (the server may already be gone).
    pub async fn close(mut self, reason: &str) -> Result<Option<u16>, ClientError> {
        if let Some((code, _)) = &self.closed {
            return Ok(Some(*code));
        }
        {
            let mut writer = self.link.writer.lock().await;
            // Already closed means the reader has answered a close from the server;
            // that close is still in the queue below.
            if !writer.is_closed() {
                let frame = Frame::close(
                    DisconnectReason::Normal.code(),
                    truncate_utf8(reason, MAX_CLOSE_REASON_BYTES).as_bytes(),
                );
                writer.write_frame(frame).await?;
                writer.flush().await?;
            }
        }
        let answer = async {
            loop {
                match self.link.reading.recv().await {
                    Some(Inbound::Closed { code, .. }) => return Some(code),
                    Some(Inbound::Message { .. } | Inbound::Header { .. }) => continue,
                    Some(Inbound::Failed(_)) | None => return None,
                }
            }
        };
        Ok(tokio::time::timeout(CLOSE_TIMEOUT, answer)
            .await
            .ok()
            .flatten())
    }

    fn check_open(&self) -> Result<(), ClientError> {
        match &self.closed {
            Some((code, reason)) => Err(ClientError::from_close(*code, reason.clone())),
            None => Ok(()),
        }
    }
}

/// The longest prefix of `s` that fits in `max` bytes without splitting a character.
fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        assert_eq!(truncate_utf8("bye", 123), "bye");
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_utf8(&long, MAX_CLOSE_REASON_BYTES);
        assert_eq!(cut.len(), 122);
    }
}
