//! One player connection over a real socket: the async shell around [`Session`].
//!
//! Data flow: [`Connection::connect`] opens TCP, performs the HTTP Upgrade with the
//! `tickcast.v1` subprotocol, sends `Hello` and waits for `Welcome`. From then on a
//! reader task owns the read half of the socket: it collects frames into messages,
//! decodes them and queues them, stamped with their arrival time, in a bounded channel
//! that [`Connection::next_event`] drains into the [`Session`]. Writes (inputs, pings,
//! and the pong and close replies the reader owes the server) share the write half
//! behind a mutex.
//!
//! The reader runs in its own task because fastwebsockets' `read_frame` is not cancel
//! safe: dropped halfway, it would lose part of a frame. Waiting on the channel instead
//! is cancel safe, so a caller may put `next_event` in `tokio::select!`. The channel
//! is bounded: a caller that stops reading stops the reader, TCP pushes back, and the
//! server skips snapshots for us as designed, rather than this process buffering them.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fastwebsockets::{
    handshake, Frame, OpCode, Payload, WebSocketError, WebSocketRead, WebSocketWrite,
};
use glam::Vec2;
use http_body_util::Empty;
use hyper::header::{
    HeaderMap, CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::upgrade::Upgraded;
use hyper::{Request, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tickcast_shared::websocket::{Close, DataFrame, FragmentError, MessageKind, Reassembly};
use tickcast_shared::{
    codec, ClientMsg, DisconnectReason, Hello, ServerMsg, SessionToken, Snapshot, Welcome,
    PROTOCOL_VERSION, SUBPROTOCOL,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, Mutex};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use crate::error::ClientError;
use crate::session::Session;
use crate::tls::TlsTrust;

/// Largest server message accepted, all fragments counted. Snapshots of a big world
/// are far larger than what a server accepts from players; this matches the most the
/// codec will decode anyway, so nothing bigger could be used.
pub const MAX_MESSAGE_BYTES: usize = codec::DECODE_ALLOC_LIMIT;

/// Connect timeout of [`ConnectOptions::new`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Connection::close`] waits for the server to answer our close frame.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages decoded ahead of the caller. Small: at 30 snapshots/s this is two seconds,
/// and beyond it the right behaviour is TCP backpressure, not memory.
const INBOUND_QUEUE: usize = 64;

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
        }
    }
}

/// What the server sent, as [`Connection::next_event`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The world after one tick. What it measured (gap, missed ticks, input
    /// latency) is in [`Session::last_snapshot_metrics`].
    Snapshot(Snapshot),
    /// The answer to one of our pings.
    Pong {
        /// Time from sending the ping to receiving this pong.
        rtt: Duration,
    },
    /// The server closed the connection; no event follows.
    Closed {
        /// The close code, e.g. 1001 when the server shuts down (1005: none given).
        code: u16,
        /// The close reason text.
        reason: String,
    },
}

/// What the reader task hands over, in arrival order.
#[derive(Debug)]
enum Inbound {
    Message {
        msg: ServerMsg,
        bytes: usize,
        at: Instant,
    },
    Closed {
        code: u16,
        reason: String,
    },
    Failed(ClientError),
}

/// One WebSocket of a connection: what a resume replaces whole.
struct Link {
    writer: SharedWriter,
    inbound: mpsc::Receiver<Inbound>,
    /// Aborted on drop, so a dropped connection never leaves a task holding its socket.
    _reader: AbortOnDropHandle<()>,
}

/// A WebSocket that the server has welcomed, not yet attached to a [`Session`].
pub(crate) struct Opened {
    link: Link,
    pub(crate) welcome: Welcome,
    /// Payload size of the `Welcome`, for the byte counters.
    welcome_bytes: usize,
}

/// A joined player: the session state plus the socket it talks over.
///
/// A `Connection` is one socket: when it is lost, [`Connection::next_event`] says so
/// ([`ClientError::ConnectionLost`]) and that is the end of it. To have the player
/// taken back on a new socket automatically, use [`crate::ReconnectingConnection`].
///
/// Dropping a `Connection` stops its reader task and drops the socket without a close
/// frame; [`Connection::close`] ends it politely.
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
    /// Connects, upgrades with the `tickcast.v1` subprotocol, sends `Hello` and waits
    /// for `Welcome`, all within `opts.connect_timeout`.
    ///
    /// # Errors
    /// [`ClientError::InvalidUrl`] for a URL that is not `ws://` or `wss://`;
    /// [`ClientError::Tls`] when the server's certificate is not trusted;
    /// [`ClientError::HttpStatus`] when the server refuses the upgrade (400, 403, 409, ...);
    /// [`ClientError::SubprotocolMismatch`] when the 101 does not select `tickcast.v1`;
    /// [`ClientError::Closed`] when the server closes instead of welcoming us;
    /// [`ClientError::ConnectTimeout`]; I/O and WebSocket errors otherwise.
    pub async fn connect(opts: ConnectOptions) -> Result<Connection, ClientError> {
        let target = Target::parse(&opts.url)?;
        let span = tracing::debug_span!("connection", name = %opts.name, room = %target.room);
        let epoch = Instant::now();
        let opened = open(&opts, &target, None, opts.connect_timeout)
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
            let Some(inbound) = self.link.inbound.recv().await else {
                return Err(match &self.closed {
                    Some((code, reason)) => ClientError::Closed {
                        code: *code,
                        reason: reason.clone(),
                    },
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
                        ServerMsg::Welcome(_) => {
                            return Err(ClientError::Protocol("a second Welcome".into()));
                        }
                    }
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
                match self.link.inbound.recv().await {
                    Some(Inbound::Closed { code, .. }) => return Some(code),
                    Some(Inbound::Message { .. }) => continue,
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
            Some((code, reason)) => Err(ClientError::Closed {
                code: *code,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Opens a WebSocket to `target` and has the server welcome us, within `timeout`:
/// TCP, the upgrade, `Hello` (as a new player, or resuming the session of `resume`)
/// and the `Welcome`. What [`Connection::connect`] does, and each reconnection attempt.
pub(crate) async fn open(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
    timeout: Duration,
) -> Result<Opened, ClientError> {
    tokio::time::timeout(timeout, open_within(opts, target, resume))
        .await
        .map_err(|_| ClientError::ConnectTimeout)?
}

/// [`open`] without the timeout around it.
async fn open_within(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
) -> Result<Opened, ClientError> {
    let tcp = open_tcp(&target.addr, opts.local_ip).await?;
    // Inputs are tiny and latency is the point; never wait to coalesce them.
    tcp.set_nodelay(true)?;
    if target.tls {
        let tls = opts.tls.connect(&target.tls_host, tcp).await?;
        join(opts, target, resume, tls).await
    } else {
        join(opts, target, resume, tcp).await
    }
}

/// The WebSocket upgrade, `Hello` and `Welcome` on an open stream (TCP, or TLS over
/// TCP for `wss://`); past the upgrade the stream's type is erased.
async fn join<S>(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
    stream: S,
) -> Result<Opened, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut request = Request::builder()
        .method("GET")
        .uri(&target.path_and_query)
        .header(HOST, &target.host_header)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(SEC_WEBSOCKET_KEY, handshake::generate_key())
        .header(SEC_WEBSOCKET_VERSION, "13")
        .header(SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL);
    if let Some(origin) = &opts.origin {
        request = request.header(ORIGIN, origin);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;

    let (mut ws, response) = handshake::client(&TokioExecutor::new(), request, stream).await?;
    // fastwebsockets checks the status and the Upgrade/Connection headers only.
    check_subprotocol(response.headers())?;
    // fastwebsockets refuses frames whose length is >= this value.
    ws.set_max_message_size(MAX_MESSAGE_BYTES.saturating_add(1));
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let (read, write) = ws.split(tokio::io::split);
    let writer: SharedWriter = Arc::new(Mutex::new(write));
    let (events, mut inbound) = mpsc::channel(INBOUND_QUEUE);
    let reader = tokio::spawn(read_loop(read, Arc::clone(&writer), events).in_current_span());
    let reader = AbortOnDropHandle::new(reader);

    let mut buf = Vec::with_capacity(64);
    let hello = ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: opts.name.clone(),
        room: target.room.clone(),
        resume,
    });
    write_msg(&writer, &mut buf, &hello).await?;

    let (welcome, welcome_bytes) = match inbound.recv().await {
        Some(Inbound::Message {
            msg: ServerMsg::Welcome(welcome),
            bytes,
            ..
        }) => (welcome, bytes),
        Some(Inbound::Message { msg, .. }) => {
            close_with(&writer, DisconnectReason::UnexpectedMessage).await;
            return Err(ClientError::Protocol(format!(
                "expected Welcome first, got {}",
                msg_name(&msg)
            )));
        }
        Some(Inbound::Closed { code, reason }) => return Err(ClientError::Closed { code, reason }),
        Some(Inbound::Failed(e)) => return Err(e),
        None => return Err(ClientError::ConnectionLost),
    };
    if welcome.protocol_version != PROTOCOL_VERSION {
        close_with(&writer, DisconnectReason::VersionMismatch).await;
        return Err(ClientError::VersionMismatch {
            server: welcome.protocol_version,
            ours: PROTOCOL_VERSION,
        });
    }
    tracing::debug!(
        player_id = welcome.player_id,
        tick_rate = welcome.tick_rate,
        resumed = resume.is_some(),
        "welcomed"
    );
    Ok(Opened {
        link: Link {
            writer,
            inbound,
            _reader: reader,
        },
        welcome,
        welcome_bytes,
    })
}

/// Opens the TCP connection to `addr` (`host:port`), from `local_ip` when given.
///
/// Without a local address, `TcpStream::connect` tries every resolved address in turn.
/// With one, only resolved addresses of the same family can work, so the first of
/// them is used.
async fn open_tcp(addr: &str, local_ip: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let Some(local) = local_ip else {
        return Ok(TcpStream::connect(addr).await?);
    };
    let remote = tokio::net::lookup_host(addr)
        .await?
        .find(|remote| remote.is_ipv4() == local.is_ipv4())
        .ok_or(ClientError::AddressFamily { local })?;
    let socket = if local.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket
        .bind(SocketAddr::new(local, 0))
        .map_err(|source| ClientError::Bind { local, source })?;
    Ok(socket.connect(remote).await?)
}

/// The reader task: frames in, [`Inbound`] out, until the connection ends. The last
/// item it queues says how it ended (a close frame or an error).
async fn read_loop(mut read: WsRead, writer: SharedWriter, events: mpsc::Sender<Inbound>) {
    let mut fragments = Reassembly::new(MAX_MESSAGE_BYTES);
    // Pongs and the echo of a server's close are written here, as they are read.
    let mut obligations = |frame: Frame<'static>| forward(Arc::clone(&writer), frame);
    let last = loop {
        let frame = match read.read_frame(&mut obligations).await {
            Ok(frame) => frame,
            Err(e) => break Inbound::Failed(read_failed(&writer, e).await),
        };
        let at = Instant::now();
        let data = match frame.opcode {
            OpCode::Close => match Close::parse(&frame.payload) {
                Ok(close) => {
                    break Inbound::Closed {
                        code: close.code.unwrap_or(NO_STATUS),
                        reason: close.reason.to_owned(),
                    }
                }
                Err(e) => {
                    close_with(&writer, e.reason()).await;
                    break Inbound::Failed(ClientError::Protocol(e.to_string()));
                }
            },
            OpCode::Ping | OpCode::Pong => continue,
            OpCode::Binary => DataFrame::Binary,
            OpCode::Text => DataFrame::Text,
            OpCode::Continuation => DataFrame::Continuation,
        };
        let delivered = match fragments.push(data, frame.fin, &frame.payload) {
            Ok(Some((kind, message))) => deliver(kind, message, at),
            Ok(None) => continue,
            Err(e) => Err((
                e.reason(),
                match e {
                    FragmentError::TooBig { len, max } => ClientError::MessageTooBig { len, max },
                    FragmentError::OutOfOrder => {
                        ClientError::Protocol("fragments out of order".into())
                    }
                },
            )),
        };
        match delivered {
            Ok(inbound) => {
                if events.send(inbound).await.is_err() {
                    return; // the Connection is gone; nobody to tell
                }
            }
            Err((reason, error)) => {
                tracing::debug!(%error, "closing: bad message from server");
                close_with(&writer, reason).await;
                break Inbound::Failed(error);
            }
        }
    };
    // Ignored if the Connection is gone.
    let _ = events.send(last).await;
}

/// Decodes one whole message.
fn deliver(
    kind: MessageKind,
    payload: &[u8],
    at: Instant,
) -> Result<Inbound, (DisconnectReason, ClientError)> {
    if kind != MessageKind::Binary {
        return Err((
            DisconnectReason::TextFrame,
            ClientError::Protocol("text frame".into()),
        ));
    }
    match codec::decode_server(payload) {
        Ok(msg) => Ok(Inbound::Message {
            msg,
            bytes: payload.len(),
            at,
        }),
        Err(e) => Err((DisconnectReason::InvalidPayload, e.into())),
    }
}

/// Writes a frame the reader owes the server (pong, close echo). Never fails: a write
/// error here must not hide the frame being read (fastwebsockets would return the send
/// error instead of the server's close frame); the next send reports the broken socket.
async fn forward(writer: SharedWriter, frame: Frame<'static>) -> Result<(), Infallible> {
    let mut writer = writer.lock().await;
    let is_close = frame.opcode == OpCode::Close;
    if is_close && writer.is_closed() {
        // We closed first; this is the echo of the server's answer. Nothing to send.
        return Ok(());
    }
    let written = match writer.write_frame(frame).await {
        Ok(()) if is_close => writer.flush().await,
        other => other,
    };
    if let Err(e) = written {
        tracing::debug!(error = %e, "could not write pong/close reply");
    }
    Ok(())
}

/// Turns a read error into a [`ClientError`], first telling the server why we stop
/// when the error is its fault.
async fn read_failed(writer: &SharedWriter, e: WebSocketError) -> ClientError {
    let reason = match e {
        WebSocketError::FrameTooLarge => Some(DisconnectReason::MessageTooBig),
        WebSocketError::InvalidUTF8 => Some(DisconnectReason::InvalidPayload),
        WebSocketError::InvalidFragment
        | WebSocketError::InvalidContinuationFrame
        | WebSocketError::ReservedBitsNotZero
        | WebSocketError::ControlFrameFragmented
        | WebSocketError::PingFrameTooLarge
        | WebSocketError::InvalidValue
        | WebSocketError::InvalidCloseFrame => Some(DisconnectReason::ProtocolError),
        // InvalidCloseCode: fastwebsockets already sent 1002 through `forward`.
        _ => None,
    };
    if let Some(reason) = reason {
        close_with(writer, reason).await;
    }
    ClientError::from(e)
}

/// Sends a close frame with the code and text of `reason`, best effort.
async fn close_with(writer: &SharedWriter, reason: DisconnectReason) {
    let frame = Frame::close(reason.code(), reason.reason().as_bytes());
    forward(Arc::clone(writer), frame).await.ok();
}

/// Encodes `msg` into `buf` and writes it as one binary frame. The frame is masked in
/// place in `buf`, which the next call clears, so sending does not allocate.
async fn write_msg(
    writer: &SharedWriter,
    buf: &mut Vec<u8>,
    msg: &ClientMsg,
) -> Result<(), ClientError> {
    buf.clear();
    codec::encode_into(msg, buf)?;
    let mut writer = writer.lock().await;
    writer
        .write_frame(Frame::binary(Payload::BorrowedMut(buf.as_mut_slice())))
        .await?;
    Ok(())
}

/// The code reported for a close frame without one (RFC 6455 section 7.1.5); it is
/// never sent on the wire.
const NO_STATUS: u16 = 1005;

/// Checks that the 101 response selected our subprotocol.
fn check_subprotocol(headers: &HeaderMap) -> Result<(), ClientError> {
    let got = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    if got.as_deref() == Some(SUBPROTOCOL) {
        Ok(())
    } else {
        Err(ClientError::SubprotocolMismatch {
            expected: SUBPROTOCOL,
            got,
        })
    }
}

fn msg_name(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Welcome(_) => "Welcome",
        ServerMsg::Snapshot(_) => "Snapshot",
        ServerMsg::Pong(_) => "Pong",
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

/// The parts of a `ws://` or `wss://` URL a connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `wss://`: TLS before the upgrade.
    tls: bool,
    /// The host the server's certificate must name (an IPv6 address without brackets).
    tls_host: String,
    /// `host:port` for `TcpStream::connect` (a hostname is resolved there).
    addr: String,
    /// The `Host` header: the URL's authority as written.
    host_header: String,
    /// Request target in origin form (`/ws?room=x`).
    path_and_query: String,
    /// The `room` query parameter, or empty (the server then picks its default room).
    /// Room names are restricted to URL-safe characters, so no percent-decoding.
    pub(crate) room: String,
}

impl Target {
    /// The same target for a resume: with the non-secret `resume=1` hint, so that the
    /// handshake does not refuse the upgrade with 409 because the player's own held
    /// seat fills the room, and without a `ticket` (single use: the first connection
    /// spent it). The token itself only ever travels in `Hello.resume`.
    pub(crate) fn for_resume(&self) -> Target {
        let (path, query) = self
            .path_and_query
            .split_once('?')
            .unwrap_or((&self.path_and_query, ""));
        let mut query: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                !pair.is_empty() && key != "ticket" && key != "resume"
            })
            .collect();
        query.push("resume=1");
        Target {
            path_and_query: format!("{path}?{}", query.join("&")),
            ..self.clone()
        }
    }

    pub(crate) fn parse(url: &str) -> Result<Target, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::InvalidUrl(format!("{url}: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => {
                return Err(ClientError::InvalidUrl(format!(
                    "{url}: expected ws:// or wss://"
                )))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::InvalidUrl(format!("{url}: no host")))?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(ClientError::InvalidUrl(format!("{url}: bad host")));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let room = uri
            .query()
            .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("room=")))
            .unwrap_or_default()
            .to_owned();
        Ok(Target {
            tls,
            tls_host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            addr: format!("{}:{port}", authority.host()),
            host_header: authority.as_str().to_owned(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            room,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        let t = Target::parse("ws://127.0.0.1:8080/ws?room=arena-1&x=y").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/ws?room=arena-1&x=y");
        assert_eq!(t.room, "arena-1");

        let t = Target::parse("ws://example.com/ws").expect("valid");
        assert_eq!(t.addr, "example.com:80");
        assert_eq!(t.host_header, "example.com");
        assert_eq!(t.room, "");

        let t = Target::parse("ws://[::1]:9000").expect("valid");
        assert_eq!(t.addr, "[::1]:9000");
        assert_eq!(t.path_and_query, "/");
        assert!(!t.tls);

        let t = Target::parse("wss://game.example/ws?room=r").expect("valid");
        assert!(t.tls);
        assert_eq!(t.addr, "game.example:443");
        assert_eq!(t.tls_host, "game.example");
        assert_eq!(t.host_header, "game.example");

        let t = Target::parse("wss://[::1]:8443/ws").expect("valid");
        assert_eq!(
            (t.addr.as_str(), t.tls_host.as_str()),
            ("[::1]:8443", "::1")
        );
    }

    #[test]
    fn a_resume_adds_the_hint_and_drops_the_spent_ticket() {
        let resume = |url: &str| {
            Target::parse(url)
                .expect("valid")
                .for_resume()
                .path_and_query
        };
        assert_eq!(resume("ws://h:1/ws?room=a"), "/ws?room=a&resume=1");
        assert_eq!(
            resume("ws://h:1/ws?room=a&ticket=abc&x=y"),
            "/ws?room=a&x=y&resume=1"
        );
        assert_eq!(resume("ws://h:1/ws?resume=1&room=a"), "/ws?room=a&resume=1");
        assert_eq!(resume("ws://h:1/ws"), "/ws?resume=1");
        assert_eq!(resume("ws://h:1"), "/?resume=1");
        let t = Target::parse("ws://h:1/ws?room=a&ticket=t").expect("valid");
        assert_eq!(t.for_resume().room, "a");
        assert_eq!(t.for_resume().host_header, t.host_header);
    }

    #[test]
    fn bad_urls() {
        for url in [
            "http://h/ws",
            "https://h/ws",
            "h:80/ws",
            "ws://u@h/ws",
            "not a url",
        ] {
            assert!(
                matches!(Target::parse(url), Err(ClientError::InvalidUrl(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn subprotocol_must_be_echoed() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            check_subprotocol(&headers),
            Err(ClientError::SubprotocolMismatch { got: None, .. })
        ));
        headers.insert(SEC_WEBSOCKET_PROTOCOL, "other".parse().expect("header"));
        assert!(check_subprotocol(&headers).is_err());
        headers.insert(SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL.parse().expect("header"));
        assert!(check_subprotocol(&headers).is_ok());
    }

    #[test]
    fn close_reason_is_cut_on_a_char_boundary() {
        assert_eq!(truncate_utf8("bye", 123), "bye");
        let long = "é".repeat(100); // 200 bytes
        let cut = truncate_utf8(&long, MAX_CLOSE_REASON_BYTES);
        assert_eq!(cut.len(), 122);
    }
}
