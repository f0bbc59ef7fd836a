//! Reading a client's frames: the part of the reader that game connections
//! ([`super::connection`]) and the echo endpoint (`examples/echo.rs`, which the Autobahn
//! suite drives) share, so the suite checks the code path players use.
//!
//! [`split`] puts the [`Audited`] stream (RFC 6455 header rules, every frame counted)
//! under a [`FrameBuffer`] (frame boundaries, the size limit, unmasking, and memory
//! that is given back). Closes and pings are the caller's: the close is read to the
//! letter by [`crate::session::Framing`], and every ping reaches the caller, so it
//! counts against the rate limit like any other frame. [`FrameReader::next`] reads one
//! frame under a deadline, answers pings through the caller's `pong` function, and turns
//! read errors into the close they call for ([`Failure`]).

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket, WebSocketWrite};
use tickcast_shared::websocket::DataFrame;
use tickcast_shared::DisconnectReason;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadHalf, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant, Sleep};

use super::audited::{violation_in, Audited};
use super::frame_buffer::{BufferError, FrameBuffer};
use super::shared_tcp::{self, SharedRead, SharedWrite};
use crate::session::FrameIn;

/// How a read ended without a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The peer broke a rule: close with this code, naming the rule in the reason.
    Refused(DisconnectReason, &'static str),
    /// The socket failed or ended: nothing more can be written.
    Gone,
}

/// What [`FrameReader::next`] got.
pub enum Next<'f> {
    /// A frame (a ping already answered).
    Frame(Frame<'f>),
    /// The deadline passed first.
    TimedOut,
    /// The read failed.
    Failed(Failure),
}

/// The audited read half of a server connection, and its unread bytes.
pub struct FrameReader<R> {
    io: Audited<R>,
    buf: FrameBuffer,
    frames: Arc<AtomicU64>,
    /// One timer for the reader's life, armed for the earliest deadline asked and moved
    /// only when it fires: a fresh timer per read cost a timer-wheel insert and removal
    /// for every frame (issue 11).
    timer: Option<Pin<Box<Sleep>>>,
}

impl<R> std::fmt::Debug for FrameReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameReader")
            .field("frames", &self.frames.load(Relaxed))
            .field("buffer", &self.buf.capacity())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Next<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Frame(frame) => f
                .debug_struct("Frame")
                .field("opcode", &frame.opcode)
                .field("fin", &frame.fin)
                .field("len", &frame.payload.len())
                .finish(),
            Self::TimedOut => f.write_str("TimedOut"),
            Self::Failed(failure) => f.debug_tuple("Failed").field(failure).finish(),
        }
    }
}

/// Splits an upgraded server socket into its audited reader and its writer. Frames of
/// `max_frame_bytes` or more are refused with 1009 before their payload is read.
///
/// fastwebsockets writes; reading is ours ([`FrameBuffer`]), because its reader keeps
/// an 8 KiB buffer per connection for the connection's whole life. Its read half,
/// which is empty right after the upgrade, is dropped here.
pub fn split<S>(
    ws: WebSocket<S>,
    max_frame_bytes: usize,
) -> (FrameReader<ReadHalf<S>>, WebSocketWrite<WriteHalf<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    split_stream(ws.into_inner(), max_frame_bytes)
}

/// [`split`] for an upgraded stream not (or no longer) wrapped in a `WebSocket`.
pub fn split_stream<S>(
    stream: S,
    max_frame_bytes: usize,
) -> (FrameReader<ReadHalf<S>>, WebSocketWrite<WriteHalf<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (read, write) = tokio::io::split(stream);
    halves(read, write, max_frame_bytes)
}

/// [`split`] for a plain-TCP socket shared with the room ([`super::shared_tcp`]);
/// `pre` holds the bytes the HTTP server read past the upgrade request.
/// Also returns the write half, for the room.
pub fn split_shared(
    socket: TcpStream,
    pre: Bytes,
    max_frame_bytes: usize,
) -> (
    FrameReader<SharedRead>,
    WebSocketWrite<SharedWrite>,
    Arc<OwnedWriteHalf>,
) {
    let (read, write) = shared_tcp::split(socket, pre);
    let (rx, tx) = halves(read, SharedWrite(Arc::clone(&write)), max_frame_bytes);
    (rx, tx, write)
}

fn halves<R, W>(read: R, write: W, max_frame_bytes: usize) -> (FrameReader<R>, WebSocketWrite<W>)
where
    W: AsyncWrite + Unpin,
{
    let (unused, tx) =
        fastwebsockets::after_handshake_split(tokio::io::empty(), write, Role::Server);
    drop(unused);
    let frames = Arc::new(AtomicU64::new(0));
    let rx = FrameReader {
        io: Audited::new(read, Arc::clone(&frames)),
        buf: FrameBuffer::new(max_frame_bytes),
        frames,
        timer: None,
    };
    (rx, tx)
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frame headers the audit passed so far, of every kind (pings and empty fragments
    /// included); frames read ahead of the one last returned count too.
    pub fn frames(&self) -> u64 {
        self.frames.load(Relaxed)
    }

    /// Bytes the reader holds allocated for unread input.
    pub fn buffered_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Reads the next frame, or stops at `deadline`. A ping is answered with
    /// `pong(payload)` before it is returned; an `Err` from `pong` (the writer's queue
    /// is full) ends the read with that reason. Cancel-safe: bytes read before the
    /// deadline stay in the buffer for the next call.
    pub async fn next(
        &mut self,
        deadline: Instant,
        pong: &mut impl FnMut(&[u8]) -> Result<(), DisconnectReason>,
    ) -> Next<'_> {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(sleep_until(deadline)));
        // Moved earlier at once; a later deadline waits until the timer fires.
        if deadline < timer.deadline() {
            timer.as_mut().reset(deadline);
        }
        let at = loop {
            match self.buf.next_frame() {
                Ok(Some(at)) => break at,
                Ok(None) => {}
                Err(e) => return Next::Failed(failure_of_buffer(e)),
            }
            let spare = match self.buf.spare() {
                Ok(spare) => spare,
                Err(e) => return Next::Failed(failure_of_buffer(e)),
            };
            tokio::select! {
                biased;
                read = self.io.read_buf(spare) => match read {
                    Ok(0) => return Next::Failed(Failure::Gone),
                    Ok(_) => {}
                    Err(e) => return Next::Failed(failure_of_io(&e)),
                },
                () = timer.as_mut() => {
                    if Instant::now() >= deadline {
                        return Next::TimedOut;
                    }
                    timer.as_mut().reset(deadline);
                }
            }
        };
        let payload = self.buf.payload(at.payload);
        if at.opcode == OpCode::Ping {
            if let Err(reason) = pong(payload) {
                return Next::Failed(Failure::Refused(reason, reason.reason()));
            }
        }
        Next::Frame(Frame::new(
            at.fin,
            at.opcode,
            None,
            Payload::Borrowed(payload),
        ))
    }

    /// Reads on, discarding, until the peer's close frame or the end of the socket.
    ///
    /// Used after the server sent its close: closing a socket with unread bytes in it
    /// makes the kernel send a reset, which destroys what is still queued for the peer
    /// (the close frame among it) before the peer reads it. Unbounded: the caller
    /// bounds it by its close linger.
    pub async fn drain(&mut self) {
        loop {
            match self.buf.next_frame() {
                Ok(Some(at)) if at.opcode == OpCode::Close => return,
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(_) => return,
            }
            let Ok(spare) = self.buf.spare() else { return };
            match self.io.read_buf(spare).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }
}

/// A frame as the I/O-free [`crate::session::Framing`] rules take it.
pub fn frame_in<'a>(frame: &'a Frame<'_>) -> FrameIn<'a> {
    let data = |kind| FrameIn::Data {
        frame: kind,
        fin: frame.fin,
        payload: &frame.payload,
    };
    match frame.opcode {
        OpCode::Close => FrameIn::Close(&frame.payload),
        OpCode::Ping | OpCode::Pong => FrameIn::Control,
        OpCode::Binary => data(DataFrame::Binary),
        OpCode::Text => data(DataFrame::Text),
        OpCode::Continuation => data(DataFrame::Continuation),
    }
}

/// The close a failed read calls for: a rule the audit found broken, or a dead socket.
fn failure_of_io(e: &io::Error) -> Failure {
    match violation_in(e) {
        Some(violation) => Failure::Refused(DisconnectReason::ProtocolError, violation.reason()),
        None => Failure::Gone,
    }
}

/// The close a frame the buffer refused calls for.
fn failure_of_buffer(e: BufferError) -> Failure {
    match e {
        BufferError::TooBig { .. } => {
            Failure::Refused(DisconnectReason::MessageTooBig, "message too big")
        }
        BufferError::BadHeader => {
            Failure::Refused(DisconnectReason::ProtocolError, "websocket protocol error")
        }
    }
}
