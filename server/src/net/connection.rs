//! One player's WebSocket connection: a reader task and a writer task.
//!
//! The reader hands every frame to the connection's protocol [`Session`] (I/O-free:
//! it decides message order, size and rate limits, and the hello and idle deadlines)
//! and carries out what it asks: join the room, store an input in the room's inbox,
//! queue a pong. The writer writes reliable messages (welcome, pongs) from a small
//! bounded queue, the newest snapshot from the player's latest-wins slot, and keepalive
//! pings. On a plain-TCP connection the writer lends the socket to the room while it
//! has nothing to write, and the room writes each snapshot itself in the tick, with no
//! wake-up of this task ([`crate::slot`], "Writing from the tick"); the writer only
//! finishes what the socket could not take at once. Either side ends the connection by
//! recording a `Cause` in the shared `Closer`; the writer then sends the matching
//! close frame, so every disconnect the server decides carries a code and a reason.
//!
//! `read_frame` is not cancel-safe, so it never sits in a `select!`: the reader is its
//! own task, bounded by the session's deadline (after which the connection is dropped, so a half-read
//! frame does not matter), and is aborted once the writer has sent the close frame and
//! the peer had a moment to answer.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fastwebsockets::{Frame, OpCode, Payload, WebSocket, WebSocketWrite};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tickcast_shared::codec::encode_into;
use tickcast_shared::websocket::may_be_sent;
use tickcast_shared::{DisconnectReason, Pong, ServerMsg, Welcome};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, debug_span, field, Instrument, Span};

use super::frames::{self, frame_in, Failure, FrameReader, Next};
use crate::budget::Budget;
use crate::room::{InputInbox, PlayerId};
use crate::rooms::{JoinRefused, RoomHandle, Seat};
use crate::session::{End, Limits, Request, Session};
use crate::slot::{self, slot, Delivery, Direct, SendCounters, SlotReceiver, SlotSender};
use crate::snapshot::SnapshotEncoder;
use crate::ServerCtx;

type Io = TokioIo<Upgraded>;

/// How long the writer waits for the peer's close reply before dropping the socket.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Why the connection is ending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// The server decided; the close frame carries this reason.
    Server(DisconnectReason),
    /// The peer broke a WebSocket rule: the close frame carries the code and names
    /// the rule instead of the code's general text.
    Refused(DisconnectReason, &'static str),
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

impl From<End> for Cause {
    fn from(end: End) -> Self {
        match end {
            End::Server(reason) => Cause::Server(reason),
            End::Peer(code) => Cause::Peer(code),
        }
    }
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
///
/// Kept small (the `Welcome` is boxed): the channel allocates its slots in blocks of 32
/// per connection, and with the `Welcome` inline a block was 3.4 KiB for every idle
/// player (docs/PERFORMANCE.md, "Memory per player").
#[derive(Debug)]
enum Outbound {
    /// The player's `Welcome`, and its room's view radius in position quanta (0: the
    /// whole world), which the writer's snapshot encoder needs. Sent once.
    Welcome(Box<Welcome>, i64),
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
        ctx.metrics.connections_total.inc();
        // Per-frame cap; the reassembly applies the same limit to whole messages.
        let max_frame = ctx.config.max_message_bytes.saturating_add(1);
        // A plain-TCP socket is shared with the room, which writes snapshots to it
        // itself; a TLS stream stays with the writer.
        match ws
            .into_inner()
            .into_inner()
            .downcast::<TokioIo<TcpStream>>()
        {
            Ok(parts) => {
                let (rx, tx, socket) =
                    frames::split_shared(parts.io.into_inner(), parts.read_buf, max_frame);
                run(rx, tx, Some(socket), ctx, room, seat).await;
            }
            Err(upgraded) => {
                let (rx, tx) = frames::split_stream(TokioIo::new(upgraded), max_frame);
                run(rx, tx, None, ctx, room, seat).await;
            }
        }
    }
    .instrument(span)
    .await;
}

/// Runs the reader and the writer of one connection until both end. `socket` is the
/// TCP socket under `rx` and `tx` when the room may write to it too.
async fn run<R, W>(
    rx: FrameReader<R>,
    tx: WebSocketWrite<W>,
    socket: Option<Arc<OwnedWriteHalf>>,
    ctx: Arc<ServerCtx>,
    room: String,
    seat: Option<Seat>,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin,
{
    {
        let closer = Arc::new(Closer {
            cause: OnceLock::new(),
            token: ctx.shutdown.child_token(),
        });
        let (out_tx, out_rx) = mpsc::channel(ctx.config.reliable_queue.max(1));
        let (slot_tx, slot_rx) = slot(ctx.config.reliable_queue);

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
        write_loop(tx, &ctx, &closer, out_rx, slot_rx, socket).await;
        // The reader sees the peer's close reply (or the socket end) and stops; a peer
        // that never answers is cut off after the linger time.
        let abort = reader.abort_handle();
        if timeout(CLOSE_LINGER, reader).await.is_err() {
            abort.abort();
        }
        let cause = closer.cause();
        debug!(?cause, "connection closed");
    }
}

/// Where the reader is, beyond what the protocol [`Session`] tracks: the seat before
/// the join, and the player's room membership after it.
enum Membered {
    /// Not in a room yet; the seat a matchmaking ticket reserved, used up by the join.
    Outside(Option<Seat>),
    /// In the room.
    Inside {
        inbox: Arc<InputInbox>,
        membership: Membership,
    },
}

/// Reads frames and hands them to the protocol [`Session`], carrying out what it
/// asks. The session's one deadline bounds each read; a read that times out is not
/// resumed (the connection closes), so `read_frame`'s lack of cancel safety is harmless.
async fn read_loop<R: AsyncRead + Unpin>(
    mut rx: FrameReader<R>,
    ctx: Arc<ServerCtx>,
    room: String,
    closer: Arc<Closer>,
    out: mpsc::Sender<Outbound>,
    slot_tx: SlotSender,
    seat: Option<Seat>,
) {
    let mut session = Session::new(room, Limits::from(ctx.config.as_ref()), now());
    let mut member = Membered::Outside(seat);
    let pong_out = out.clone();
    // Every ping reaches the session (it counts against the rate limit); its pong goes
    // to the writer through the reliable queue.
    let mut pong = move |payload: &[u8]| send(&pong_out, Outbound::WsPong(payload.to_vec()));
    let cause = loop {
        let deadline = Instant::from_std(session.poll_timeout());
        let frame = match rx.next(deadline, &mut pong).await {
            Next::Frame(frame) => frame,
            Next::Failed(Failure::Refused(reason, detail)) => break Cause::Refused(reason, detail),
            Next::Failed(Failure::Gone) => break Cause::Gone,
            Next::TimedOut => match session.handle_timeout(now()) {
                Ok(()) => continue,
                Err(end) => break Cause::from(end),
            },
        };
        let input = frame_in(&frame);
        let request = match session.handle_frame(now(), input) {
            Ok(Some(request)) => request,
            Ok(None) => continue,
            Err(end) => {
                if end.is_rejection() {
                    ctx.metrics.inputs_rejected.inc();
                }
                break match (end, session.detail()) {
                    (End::Server(reason), Some(detail)) => Cause::Refused(reason, detail),
                    _ => Cause::from(end),
                };
            }
        };
        ctx.metrics.messages_received.inc();
        let done = carry_out(
            request,
            &mut session,
            &mut member,
            &ctx,
            &out,
            &slot_tx,
            &closer,
        );
        if let Err(end) = done.await {
            break Cause::from(end);
        }
    };
    closer.close(cause);
    // Leave (or detach from) the room now: the player is gone whatever the drain below
    // waits for.
    drop(member);
    if matches!(cause, Cause::Server(_) | Cause::Refused(..)) {
        // Read on until the peer answers our close or goes away, so that our close
        // frame is not destroyed by a reset (see `FrameReader::drain`). `serve` bounds
        // this wait by the close linger.
        rx.drain().await;
    }
}

/// The clock sessions read: passed in, never read inside them.
fn now() -> std::time::Instant {
    Instant::now().into_std()
}

/// Does what the session asked for one message.
async fn carry_out(
    request: Request,
    session: &mut Session,
    member: &mut Membered,
    ctx: &ServerCtx,
    out: &mpsc::Sender<Outbound>,
    slot_tx: &SlotSender,
    closer: &Arc<Closer>,
) -> Result<(), End> {
    match (request, &mut *member) {
        (Request::Join(hello), Membered::Outside(seat)) => {
            let room = session.room();
            // The player token first, before the registry is asked anything: a refused
            // token creates no room and no player.
            let arrival = match crate::auth::admit(
                ctx.auth.as_ref(),
                &hello.name,
                hello.auth_token.as_deref(),
                room,
            ) {
                Ok(arrival) => arrival,
                Err(reason) => return session.handle_joined(Err(reason)),
            };
            let name = arrival.name.clone();
            let joining = match hello.resume {
                Some(token) => {
                    ctx.rooms
                        .resume(room, token, slot_tx.clone(), arrival)
                        .await
                }
                None => {
                    ctx.rooms
                        .join(room, slot_tx.clone(), seat.take(), arrival)
                        .await
                }
            };
            let (handle, joined) = match joining {
                Ok(joined) => joined,
                Err(e) => return session.handle_joined(Err(refusal_reason(e))),
            };
            Span::current().record("player", joined.player_id);
            debug!(%name, entity = joined.welcome.entity_id, resumed = hello.resume.is_some(), took_over = joined.took_over, "joined");
            // Membership first: from here on, however the connection ends, the room hears.
            let membership = Membership {
                room: handle,
                player: joined.player_id,
                generation: joined.generation,
                closer: Arc::clone(closer),
            };
            session.handle_joined(Ok(()))?;
            watch_room(&membership.room, closer, &ctx.shutdown);
            let radius = view_radius_quanta(
                membership.room.options().view_radius,
                joined.welcome.pos_quantum,
            );
            send(out, Outbound::Welcome(Box::new(joined.welcome), radius)).map_err(End::Server)?;
            *member = Membered::Inside {
                inbox: joined.inbox,
                membership,
            };
            Ok(())
        }
        (Request::Input(input), Membered::Inside { inbox, .. }) => {
            inbox.put(input);
            ctx.metrics.inputs_received.inc();
            Ok(())
        }
        (Request::Message(payload), Membered::Inside { membership, .. }) => {
            membership
                .room
                .message(membership.player, membership.generation, payload);
            Ok(())
        }
        (Request::Pong { nonce }, Membered::Inside { membership, .. }) => send(
            out,
            Outbound::Pong(Pong {
                nonce,
                server_tick: membership.room.current_tick(),
            }),
        )
        .map_err(End::Server),
        // The session asks for a join only outside a room, and for the rest only inside.
        _ => Err(End::Server(DisconnectReason::InternalError)),
    }
}

/// A view radius in world units as whole position quanta (0 stays 0: the whole world).
fn view_radius_quanta(radius: f32, quantum: f32) -> i64 {
    if radius > 0.0 && quantum > 0.0 {
        (f64::from(radius) / f64::from(quantum)).round() as i64
    } else {
        0
    }
}

/// The close reason for a join the registry refused.
fn refusal_reason(e: JoinRefused) -> DisconnectReason {
    match e {
        JoinRefused::Full | JoinRefused::TooManyRooms => DisconnectReason::RoomFull,
        JoinRefused::ShuttingDown => DisconnectReason::GoingAway,
        JoinRefused::UnknownSession | JoinRefused::NoSuchRoom => DisconnectReason::SessionExpired,
        // Games are checked when a room's options are made, before any join.
        JoinRefused::UnknownGame(_) => DisconnectReason::InternalError,
    }
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

/// The code to answer a peer's close with: its own when it is one a peer may send
/// (RFC 6455 section 7.4), otherwise 1002.
fn echoable(code: u16) -> u16 {
    if may_be_sent(code) {
        code
    } else {
        DisconnectReason::ProtocolError.code()
    }
}

/// Takes the socket back from the room (if lent) and writes the end of any frame the
/// room started, so the writer's next frame does not land inside it.
async fn reclaim(slot_rx: &mut SlotReceiver, limit: Duration) -> Result<(), Cause> {
    match slot_rx.take_rest() {
        Some(rest) => finish_rest(slot_rx, &rest, limit).await,
        None => Ok(()),
    }
}

/// Writes `rest`, the end of a frame the room started, within `limit`.
async fn finish_rest(
    slot_rx: &mut SlotReceiver,
    rest: &[u8],
    limit: Duration,
) -> Result<(), Cause> {
    let Some(direct) = slot_rx.direct() else {
        return Err(Cause::Server(DisconnectReason::InternalError));
    };
    match timeout(limit, slot::finish(direct, rest)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Cause::Gone),
    }
}

/// What the writer does next.
enum Step {
    Reliable(Outbound),
    Room(Delivery),
    Ping,
    Stop,
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut tx: WebSocketWrite<W>,
    ctx: &ServerCtx,
    closer: &Closer,
    mut out: mpsc::Receiver<Outbound>,
    mut slot_rx: SlotReceiver,
    socket: Option<Arc<OwnedWriteHalf>>,
) {
    let metrics = &ctx.metrics;
    // A write that cannot make progress for this long means the peer stopped reading.
    let write_timeout = ctx.config.idle_timeout;
    // Reliable messages and pings; snapshots are encoded in the `Direct`'s own buffer.
    let mut buf: Vec<u8> = Vec::new();
    let mut ping = tokio::time::interval_at(
        Instant::now() + ctx.config.ping_interval,
        ctx.config.ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let counters = SendCounters::new(metrics);
    let mut welcomed = false;
    // A write failed or timed out, possibly partway through a frame: whatever the
    // cause recorded first, no close frame may follow it into the middle of that frame.
    let mut torn = false;
    loop {
        // Idle from here: the room may write snapshots itself until something wakes us.
        slot_rx.lend();
        // Only the waits are raced; a write, once started, finishes (or times out).
        let step = tokio::select! {
            biased;
            () = closer.token.cancelled() => Step::Stop,
            Some(msg) = out.recv() => Step::Reliable(msg),
            // The room may offer a snapshot before the reader has queued the Welcome;
            // a player must see its Welcome first, so snapshots wait for it.
            delivery = slot_rx.next(), if welcomed => Step::Room(delivery),
            _ = ping.tick() => Step::Ping,
        };
        if !matches!(step, Step::Room(_)) {
            // Take the socket back from the room, finishing any frame it started.
            if let Err(cause) = reclaim(&mut slot_rx, write_timeout).await {
                torn = true;
                break closer.close(cause);
            }
        }
        buf.clear();
        let frame = match step {
            Step::Stop => break,
            Step::Reliable(Outbound::WsPong(payload)) => {
                buf.extend_from_slice(&payload);
                Frame::pong(Payload::Borrowed(&buf))
            }
            Step::Reliable(Outbound::Welcome(w, radius)) => {
                let budget = Budget::new(ctx.config.max_bytes_per_player_per_sec, w.tick_rate);
                match encode_into(&ServerMsg::Welcome(*w), &mut buf) {
                    Ok(_) => {
                        welcomed = true;
                        slot_rx.install(Direct::new(
                            socket.clone(),
                            SnapshotEncoder::new(radius).with_budget(budget),
                            counters.clone(),
                        ));
                        Frame::binary(Payload::Borrowed(&buf))
                    }
                    Err(_) => break closer.close(Cause::Server(DisconnectReason::InternalError)),
                }
            }
            Step::Reliable(Outbound::Pong(p)) => match encode_into(&ServerMsg::Pong(p), &mut buf) {
                Ok(_) => Frame::binary(Payload::Borrowed(&buf)),
                Err(_) => break closer.close(Cause::Server(DisconnectReason::InternalError)),
            },
            Step::Room(Delivery::Disconnect(reason)) => {
                break closer.close(Cause::Server(reason));
            }
            Step::Room(Delivery::Rest(rest)) => {
                // Counted by `slot::finish` once written.
                match finish_rest(&mut slot_rx, &rest, write_timeout).await {
                    Ok(()) => continue,
                    Err(cause) => {
                        torn = true;
                        break closer.close(cause);
                    }
                }
            }
            Step::Room(Delivery::Event(message)) => {
                buf.extend_from_slice(&message);
                Frame::binary(Payload::Borrowed(&buf))
            }
            Step::Room(Delivery::Snapshot(s)) => {
                metrics.snapshots_skipped.inc_by(slot_rx.take_skipped());
                // Snapshots are offered only once the Welcome installed the Direct.
                let Some(direct) = slot_rx.direct() else {
                    break closer.close(Cause::Server(DisconnectReason::InternalError));
                };
                match direct.encode(&s) {
                    // Counted as a snapshot when encoded, as a frame once written.
                    Ok(_) => Frame::binary(Payload::Borrowed(&direct.buf)),
                    Err(_) => break closer.close(Cause::Server(DisconnectReason::InternalError)),
                }
            }
            Step::Ping => Frame::new(true, OpCode::Ping, None, Payload::Borrowed(&[])),
        };
        let len = frame.payload.len();
        match timeout(write_timeout, tx.write_frame(frame)).await {
            Ok(Ok(())) => counters.frame(len),
            Ok(Err(_)) | Err(_) => {
                torn = true;
                break closer.close(Cause::Gone);
            }
        }
    }
    // However the loop ended, the room writes nothing more: the close frame follows
    // whatever frame it had started.
    if !torn && reclaim(&mut slot_rx, CLOSE_LINGER).await.is_err() {
        torn = true;
        closer.close(Cause::Gone);
    }
    // Snapshots replaced while the player was not reading are counted even when it
    // never reads again.
    metrics.snapshots_skipped.inc_by(slot_rx.take_skipped());
    // Counted before the close frame goes out, so whoever reads it and then the
    // metrics finds it counted.
    match closer.cause() {
        Cause::Server(reason) | Cause::Refused(reason, _) => metrics.count_close(reason),
        Cause::Peer(code) => {
            if let Some(reason) = code.and_then(DisconnectReason::from_code) {
                metrics.count_close(reason);
            }
        }
        Cause::Gone => {}
    }
    let close = match closer.cause() {
        Cause::Server(reason) => Frame::close(reason.code(), reason.reason().as_bytes()),
        Cause::Refused(reason, detail) => Frame::close(reason.code(), detail.as_bytes()),
        // Echo the peer's code, as RFC 6455 suggests; a code-less close gets a code-less reply.
        Cause::Peer(Some(code)) => Frame::close(echoable(code), &[]),
        Cause::Peer(None) => Frame::close_raw(Payload::Borrowed(&[])),
        Cause::Gone => return,
    };
    if torn {
        return;
    }
    let _ = timeout(CLOSE_LINGER, async {
        tx.write_frame(close).await?;
        tx.flush().await
    })
    .await;
}
