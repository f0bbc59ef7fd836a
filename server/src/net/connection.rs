//! One player's WebSocket connection: a reader task and a writer task.
//!
//! The reader decodes client messages, enforces the limits (message size over all
//! fragments, message rate, hello and idle timeouts, message order) and stores inputs
//! in the room's inbox. The writer is the only one that writes to the socket: reliable
//! messages (welcome, pongs) from a small bounded queue, the newest snapshot from the
//! player's latest-wins slot, and keepalive pings. Either side ends the connection by
//! recording a `Cause` in the shared `Closer`; the writer then sends the matching
//! close frame, so every disconnect the server decides carries a code and a reason.
//!
//! `read_frame` is not cancel-safe, so it never sits in a `select!`: the reader is its
//! own task, bounded by `timeout` (after which the connection is dropped, so a half-read
//! frame does not matter), and is aborted once the writer has sent the close frame and
//! the peer had a moment to answer.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fastwebsockets::{
    Frame, OpCode, Payload, WebSocket, WebSocketError, WebSocketRead, WebSocketWrite,
};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tickcast_shared::codec::{decode_client, encode_into};
use tickcast_shared::{
    validate, ClientMsg, DisconnectReason, Hello, Pong, ServerMsg, Welcome, PROTOCOL_VERSION,
};
use tokio::io::{ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, field, Instrument, Span};

use super::assembler::{Assembler, FrameKind};
use crate::limits::TokenBucket;
use crate::room::{InputInbox, PlayerId};
use crate::rooms::{JoinRefused, RoomHandle, Seat};
use crate::slot::{slot, SlotReceiver, SlotSender};
use crate::snapshot::{PlayerSnapshot, SnapshotEncoder};
use crate::ServerCtx;

type Io = TokioIo<Upgraded>;

/// How long the writer waits for the peer's close reply before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Why the connection is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The server decided; the close frame carries this reason.
    Server(DisconnectReason),
    /// The peer sent a close frame with this code (or none); we echo it.
    Peer(Option<u16>),
    /// The socket failed or hit EOF; nothing more can be written.
    Gone,
}

/// Shared between reader and writer: the first cause recorded wins.
#[derive(Debug)]
struct Closer {
    cause: OnceLock<Cause>,
    token: CancellationToken,
}

impl Closer {
    fn close(&self, cause: Cause) {
        let _ = self.cause.set(cause);
        self.token.cancel();
    }

    /// The cause, or `GoingAway` when the server's shutdown cancelled the token.
    fn cause(&self) -> Cause {
        self.cause
            .get()
            .copied()
            .unwrap_or(Cause::Server(DisconnectReason::GoingAway))
    }
}

/// Reliable messages for the writer. Bounded: a peer that does not read them fast
/// enough overflows the queue and is closed with `SlowConsumer`.
#[derive(Debug)]
enum Outbound {
    Welcome(Welcome),
    Pong(Pong),
    /// Reply to a WebSocket-level ping from the peer.
    WsPong(Vec<u8>),
}

/// Sends the room a leave when the player's reader ends, however it ends.
#[derive(Debug)]
struct Membership {
    room: RoomHandle,
    player: PlayerId,
    generation: u32,
    closer: Arc<Closer>,
}

impl Drop for Membership {
    /// A connection that dropped without the player closing it (network loss, silence)
    /// keeps the avatar for the reconnect grace; every other end is a leave.
    fn drop(&mut self) {
        match self.closer.cause() {
            Cause::Gone | Cause::Server(DisconnectReason::IdleTimeout) => {
                self.room.detach(self.player, self.generation);
            }
            _ => self.room.leave(self.player, self.generation),
        }
    }
}

/// Serves one upgraded connection until it closes. `seat` is the seat a matchmaking
/// ticket reserved for this player, if it came with one.
pub async fn serve(
    ws: WebSocket<Io>,
    ctx: Arc<ServerCtx>,
    room: String,
    peer: SocketAddr,
    seat: Option<Seat>,
) {
    // Debug level, like every event of a connection: at the default level the span is
    // disabled, and entering it on every poll of every reader and writer (a few percent
    // of the server at a thousand players) costs nothing.
    let span = debug_span!("conn", %peer, room = %room, player = field::Empty);
    async move {
        ctx.metrics.connections_total.fetch_add(1, Relaxed);
        let (mut rx, tx) = ws.split(tokio::io::split);
        // Closes are handled here so the reply carries our code; pongs stay automatic and
        // are forwarded to the writer by the reader's send function.
        rx.set_auto_close(false);
        // Per-frame cap; the assembler applies the same limit to whole messages.
        rx.set_max_message_size(ctx.config.max_message_bytes.saturating_add(1));
        let closer = Arc::new(Closer {
            cause: OnceLock::new(),
            token: ctx.shutdown.child_token(),
        });
        let (out_tx, out_rx) = mpsc::channel(ctx.config.reliable_queue.max(1));
        let (slot_tx, slot_rx) = slot();

        let reader = tokio::spawn(
            read_loop(
                rx,
                Arc::clone(&ctx),
                room,
                Arc::clone(&closer),
                out_tx,
                slot_tx,
                seat,
            )
            .instrument(Span::current()),
        );
        write_loop(tx, &ctx, &closer, out_rx, slot_rx).await;
        // The reader sees the peer's close reply (or the socket end) and stops; a peer
        // that never answers is cut off after the linger time.
        let abort = reader.abort_handle();
        if timeout(CLOSE_LINGER, reader).await.is_err() {
            abort.abort();
        }
        let cause = closer.cause();
        match cause {
            Cause::Server(reason) => ctx.metrics.count_close(reason),
            Cause::Peer(code) => {
                if let Some(reason) = code.and_then(DisconnectReason::from_code) {
                    ctx.metrics.count_close(reason);
                }
            }
            Cause::Gone => {}
        }
        ctx.metrics.connections_open.fetch_sub(1, Relaxed);
        debug!(?cause, "connection closed");
    }
    .instrument(span)
    .await;
}

/// Where the reader is in the protocol.
enum Session {
    AwaitHello {
        deadline: Instant,
        /// The seat a matchmaking ticket reserved, used up by the join.
        seat: Option<Seat>,
    },
    Playing {
        inbox: Arc<InputInbox>,
        last_seq: u32,
        membership: Membership,
    },
}

async fn read_loop(
    mut rx: WebSocketRead<ReadHalf<Io>>,
    ctx: Arc<ServerCtx>,
    room: String,
    closer: Arc<Closer>,
    out: mpsc::Sender<Outbound>,
    slot_tx: SlotSender,
    seat: Option<Seat>,
) {
    let config = &ctx.config;
    let mut assembler = Assembler::new(config.max_message_bytes);
    let mut bucket = TokenBucket::new(
        config.max_messages_per_sec,
        config.max_messages_per_sec,
        Instant::now().into_std(),
    );
    let mut session = Session::AwaitHello {
        deadline: Instant::now() + config.hello_timeout,
        seat,
    };
    let pong_out = out.clone();
    // Called by fastwebsockets with the pong it owes the peer for each ping.
    let mut send_fn = move |frame: Frame<'_>| {
        let queued = pong_out.try_send(Outbound::WsPong(frame.payload.to_vec()));
        std::future::ready(queued.map_err(|_| "reliable queue full"))
    };
    let cause = loop {
        let deadline = match &session {
            Session::AwaitHello { deadline, .. } => *deadline,
            Session::Playing { .. } => Instant::now() + config.idle_timeout,
        };
        let frame = match timeout_at(deadline, rx.read_frame(&mut send_fn)).await {
            Ok(Ok(frame)) => frame,
            Ok(Err(e)) => break cause_of(&e),
            Err(_elapsed) => {
                break Cause::Server(match session {
                    Session::AwaitHello { .. } => DisconnectReason::HelloTimeout,
                    Session::Playing { .. } => DisconnectReason::IdleTimeout,
                })
            }
        };
        let kind = match frame.opcode {
            OpCode::Close => break Cause::Peer(close_code(&frame.payload)),
            OpCode::Ping | OpCode::Pong => continue,
            OpCode::Binary => FrameKind::Binary,
            OpCode::Text => FrameKind::Text,
            OpCode::Continuation => FrameKind::Continuation,
        };
        let bytes = match assembler.push(kind, frame.fin, &frame.payload) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => continue,
            Err(reason) => break Cause::Server(reason),
        };
        if !bucket.try_take(Instant::now().into_std()) {
            break Cause::Server(DisconnectReason::RateLimited);
        }
        let msg = match decode_client(bytes, config.max_message_bytes) {
            Ok(msg) => msg,
            Err(e) => {
                debug!(error = %e, "undecodable message");
                break Cause::Server(DisconnectReason::InvalidPayload);
            }
        };
        ctx.metrics.messages_received.fetch_add(1, Relaxed);
        match handle_message(msg, &mut session, &ctx, &room, &out, &slot_tx, &closer).await {
            Ok(()) => {}
            Err(reason) => break Cause::Server(reason),
        }
    };
    if let Cause::Server(reason) = cause {
        if matches!(
            reason,
            DisconnectReason::InvalidPayload
                | DisconnectReason::MessageTooBig
                | DisconnectReason::RateLimited
                | DisconnectReason::UnexpectedMessage
                | DisconnectReason::TextFrame
        ) {
            ctx.metrics.inputs_rejected.fetch_add(1, Relaxed);
        }
    }
    closer.close(cause);
}

/// Applies one decoded message to the session.
async fn handle_message(
    msg: ClientMsg,
    session: &mut Session,
    ctx: &ServerCtx,
    room: &str,
    out: &mpsc::Sender<Outbound>,
    slot_tx: &SlotSender,
    closer: &Arc<Closer>,
) -> Result<(), DisconnectReason> {
    match (msg, &mut *session) {
        (ClientMsg::Hello(hello), Session::AwaitHello { seat, .. }) => {
            check_hello(&hello, room)?;
            let joining = match hello.resume {
                Some(token) => ctx.rooms.resume(room, token, slot_tx.clone()).await,
                None => ctx.rooms.join(room, slot_tx.clone(), seat.take()).await,
            };
            let (handle, joined) = joining.map_err(|e| match e {
                JoinRefused::Full | JoinRefused::TooManyRooms => DisconnectReason::RoomFull,
                JoinRefused::ShuttingDown => DisconnectReason::GoingAway,
                JoinRefused::UnknownSession | JoinRefused::NoSuchRoom => {
                    DisconnectReason::SessionExpired
                }
            })?;
            Span::current().record("player", joined.player_id);
            debug!(name = %hello.name, entity = joined.welcome.entity_id, resumed = hello.resume.is_some(), "joined");
            watch_room(&handle, closer, &ctx.shutdown);
            send(out, Outbound::Welcome(joined.welcome))?;
            *session = Session::Playing {
                inbox: joined.inbox,
                last_seq: 0,
                membership: Membership {
                    room: handle,
                    player: joined.player_id,
                    generation: joined.generation,
                    closer: Arc::clone(closer),
                },
            };
            Ok(())
        }
        (
            ClientMsg::Input(input),
            Session::Playing {
                inbox, last_seq, ..
            },
        ) => {
            if input.seq <= *last_seq {
                return Err(DisconnectReason::UnexpectedMessage);
            }
            if !input.movement.is_finite() {
                return Err(DisconnectReason::InvalidPayload);
            }
            *last_seq = input.seq;
            inbox.put(input);
            ctx.metrics.inputs_received.fetch_add(1, Relaxed);
            Ok(())
        }
        (ClientMsg::Ping(ping), Session::Playing { membership, .. }) => send(
            out,
            Outbound::Pong(Pong {
                nonce: ping.nonce,
                server_tick: membership.room.current_tick(),
            }),
        ),
        // A second hello, or anything but hello first.
        _ => Err(DisconnectReason::UnexpectedMessage),
    }
}

fn check_hello(hello: &Hello, room: &str) -> Result<(), DisconnectReason> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(DisconnectReason::VersionMismatch);
    }
    if validate::player_name(&hello.name).is_err() || !(hello.room.is_empty() || hello.room == room)
    {
        return Err(DisconnectReason::InvalidHello);
    }
    Ok(())
}

/// Ends this connection with `RoomClosed` if its room ends while the server runs on.
fn watch_room(room: &RoomHandle, closer: &Arc<Closer>, shutdown: &CancellationToken) {
    let (room_closed, closer, shutdown) =
        (room.closed().clone(), Arc::clone(closer), shutdown.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = room_closed.cancelled() => {
                if !shutdown.is_cancelled() {
                    closer.close(Cause::Server(DisconnectReason::RoomClosed));
                }
            }
            () = closer.token.cancelled() => {}
        }
    });
}

fn send(out: &mpsc::Sender<Outbound>, msg: Outbound) -> Result<(), DisconnectReason> {
    out.try_send(msg)
        .map_err(|_| DisconnectReason::SlowConsumer)
}

/// The code of a close frame's payload; `None` when the peer gave none (or a malformed one).
fn close_code(payload: &[u8]) -> Option<u16> {
    match payload {
        [a, b, ..] => Some(u16::from_be_bytes([*a, *b])),
        _ => None,
    }
}

/// The code to answer a peer's close with: its own when it is one a peer may send
/// (RFC 6455 section 7.4), otherwise 1002.
fn echoable(code: u16) -> u16 {
    match code {
        1000..=1003 | 1007..=1011 | 3000..=4999 => code,
        _ => DisconnectReason::ProtocolError.code(),
    }
}

/// Maps a read error to how the connection ends.
fn cause_of(e: &WebSocketError) -> Cause {
    match e {
        WebSocketError::FrameTooLarge => Cause::Server(DisconnectReason::MessageTooBig),
        WebSocketError::InvalidUTF8 => Cause::Server(DisconnectReason::TextFrame),
        WebSocketError::SendError(_) => Cause::Server(DisconnectReason::SlowConsumer),
        WebSocketError::UnexpectedEOF
        | WebSocketError::IoError(_)
        | WebSocketError::ConnectionClosed => Cause::Gone,
        _ => Cause::Server(DisconnectReason::ProtocolError),
    }
}

/// What the writer does next.
enum Step {
    Reliable(Outbound),
    Snapshot(PlayerSnapshot),
    Ping,
    Stop,
}

async fn write_loop(
    mut tx: WebSocketWrite<WriteHalf<Io>>,
    ctx: &ServerCtx,
    closer: &Closer,
    mut out: mpsc::Receiver<Outbound>,
    slot_rx: SlotReceiver,
) {
    let metrics = &ctx.metrics;
    // A write that cannot make progress for this long means the peer stopped reading.
    let write_timeout = ctx.config.idle_timeout;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut ping = tokio::time::interval_at(
        Instant::now() + ctx.config.ping_interval,
        ctx.config.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut welcomed = false;
    let mut snapshots = SnapshotEncoder::new(ctx.view_radius_quanta());
    loop {
        // Only the waits are raced; a write, once started, finishes (or times out).
        let step = tokio::select! {
            biased;
            () = closer.token.cancelled() => Step::Stop,
            Some(msg) = out.recv() => Step::Reliable(msg),
            // The room may offer a snapshot before the reader has queued the Welcome;
            // a player must see its Welcome first, so snapshots wait for it.
            snapshot = slot_rx.next(), if welcomed => Step::Snapshot(snapshot),
            _ = ping.tick() => Step::Ping,
        };
        buf.clear();
        let frame = match step {
            Step::Stop => break,
            Step::Reliable(Outbound::WsPong(payload)) => {
                buf.extend_from_slice(&payload);
                Frame::pong(Payload::Borrowed(&buf))
            }
            Step::Reliable(Outbound::Welcome(w)) => {
                match encode_into(&ServerMsg::Welcome(w), &mut buf) {
                    Ok(_) => {
                        welcomed = true;
                        Frame::binary(Payload::Borrowed(&buf))
                    }
                    Err(_) => break closer.close(Cause::Server(DisconnectReason::InternalError)),
                }
            }
            Step::Reliable(Outbound::Pong(p)) => match encode_into(&ServerMsg::Pong(p), &mut buf) {
                Ok(_) => Frame::binary(Payload::Borrowed(&buf)),
                Err(_) => break closer.close(Cause::Server(DisconnectReason::InternalError)),
            },
            Step::Snapshot(s) => {
                metrics
                    .snapshots_skipped
                    .fetch_add(slot_rx.take_skipped(), Relaxed);
                metrics.snapshots_sent.fetch_add(1, Relaxed);
                match snapshots.encode(&s, &mut buf) {
                    Ok(encoded) => {
                        if encoded.keyframe {
                            metrics.keyframes_sent.fetch_add(1, Relaxed);
                        }
                        Frame::binary(Payload::Borrowed(&buf))
                    }
                    Err(_) => break closer.close(Cause::Server(DisconnectReason::InternalError)),
                }
            }
            Step::Ping => Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[])),
        };
        let len = frame.payload.len() as u64;
        match timeout(write_timeout, tx.write_frame(frame)).await {
            Ok(Ok(())) => {
                metrics.frames_sent.fetch_add(1, Relaxed);
                metrics.bytes_sent.fetch_add(len, Relaxed);
            }
            Ok(Err(_)) | Err(_) => {
                closer.close(Cause::Gone);
                return;
            }
        }
    }
    let close = match closer.cause() {
        Cause::Server(reason) => Frame::close(reason.code(), reason.reason().as_bytes()),
        // Echo the peer's code, as RFC 6455 suggests; a code-less close gets a code-less reply.
        Cause::Peer(Some(code)) => Frame::close(echoable(code), &[]),
        Cause::Peer(None) => Frame::close_raw(Payload::Borrowed(&[])),
        Cause::Gone => return,
    };
    let _ = timeout(CLOSE_LINGER, async {
        tx.write_frame(close).await?;
        tx.flush().await
    })
    .await;
}
