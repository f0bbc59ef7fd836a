//! The read half of a connection: it joins frames into messages and decodes them for
//! [`super::Connection::next_event`]. It also closes the connection, with the code
//! that says why, when the server sends what we cannot use: a frame the protocol
//! forbids, a message too big, or bytes that do not decode.
//!
//! It runs inside the caller's task, not a task of its own: [`Reading`] keeps the
//! read in flight between calls (fastwebsockets' `read_frame` is not cancel safe, so
//! the future is never dropped halfway), which makes [`Reading::recv`] cancel safe
//! without a task wake-up and a channel hop per message. A bot process holds
//! thousands of connections; each saved wake-up is paid per connection per tick.

use std::sync::Arc;
use std::time::Instant;

use fastwebsockets::{Frame, OpCode, WebSocketError};
use std::future::Future;
use std::pin::Pin;
use tickcast_shared::codec::SnapshotHeader;
use tickcast_shared::websocket::{Close, DataFrame, FragmentError, MessageKind, Reassembly};
use tickcast_shared::{codec, DisconnectReason, ServerMsg};

use super::writer::{close_with, forward};
use super::{SharedWriter, SnapshotDecoding, WsRead, MAX_MESSAGE_BYTES};
use crate::error::ClientError;

/// What the reader hands over, in arrival order.
#[derive(Debug)]
pub(super) enum Inbound {
    Message {
        msg: ServerMsg,
        bytes: usize,
        at: Instant,
    },
    /// A snapshot read with [`SnapshotDecoding::HeaderOnly`]: its header, not its body.
    Header {
        header: SnapshotHeader,
        bytes: usize,
        at: Instant,
    },
    Closed {
        code: u16,
        reason: String,
    },
    Failed(ClientError),
}

/// A read of the next [`Inbound`], kept between calls so that none is lost halfway.
type PendingRead = Pin<Box<dyn Future<Output = (Box<Reader>, Inbound)> + Send>>;

/// The reading side of a connection, as [`Reading::recv`] leaves it between calls.
pub(super) enum Reading {
    /// No read in flight.
    Idle(Box<Reader>),
    /// A read in flight, resumed by the next call.
    Busy(PendingRead),
    /// The stream ended (a close frame or an error was handed over); nothing follows.
    Ended,
}

impl Reading {
    /// Reads from `read` for the connection whose write half is `writer`.
    pub(super) fn new(read: WsRead, writer: SharedWriter, decoding: SnapshotDecoding) -> Self {
        Self::Idle(Box::new(Reader {
            read,
            fragments: Reassembly::new(MAX_MESSAGE_BYTES),
            writer,
            decoding,
        }))
    }

    /// The next message, or how the stream ended; `None` once that was handed over.
    /// Cancel safe: a read cut short by dropping this future goes on at the next call.
    pub(super) async fn recv(&mut self) -> Option<Inbound> {
        if matches!(self, Self::Idle(_)) {
            if let Self::Idle(reader) = std::mem::replace(self, Self::Ended) {
                *self = Self::Busy(Box::pin(reader.next()));
            }
        }
        let Self::Busy(pending) = self else {
            return None;
        };
        // The only await: what follows is synchronous.
        let (reader, inbound) = pending.await;
        *self = match inbound {
            Inbound::Closed { .. } | Inbound::Failed(_) => Self::Ended,
            Inbound::Message { .. } | Inbound::Header { .. } => Self::Idle(reader),
        };
        Some(inbound)
    }
}

/// The read half and what reading needs besides it.
pub(super) struct Reader {
    read: WsRead,
    fragments: Reassembly,
    /// Where pongs, the echo of a server's close, and our closes for bad input go.
    writer: SharedWriter,
    decoding: SnapshotDecoding,
}

impl Reader {
    /// Frames in until one [`Inbound`] is complete: a message, or how the connection
    /// ended (a close frame or an error).
    async fn next(mut self: Box<Self>) -> (Box<Self>, Inbound) {
        let inbound = self.read_inbound().await;
        (self, inbound)
    }

    async fn read_inbound(&mut self) -> Inbound {
        let Self {
            read,
            fragments,
            writer,
            decoding,
        } = self;
        let decoding = *decoding;
        // Pongs and the echo of a server's close are written here, as they are read.
        let mut obligations = |frame: Frame<'static>| forward(Arc::clone(writer), frame);
        loop {
            let frame = match read.read_frame(&mut obligations).await {
                Ok(frame) => frame,
                Err(e) => break Inbound::Failed(read_failed(writer, e).await),
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
                        close_with(writer, e.reason()).await;
                        break Inbound::Failed(ClientError::Protocol(e.to_string()));
                    }
                },
                OpCode::Ping | OpCode::Pong => continue,
                OpCode::Binary => DataFrame::Binary,
                OpCode::Text => DataFrame::Text,
                OpCode::Continuation => DataFrame::Continuation,
            };
            let delivered = match fragments.push(data, frame.fin, &frame.payload) {
                Ok(Some((kind, message))) => deliver(kind, message, at, decoding),
                Ok(None) => continue,
                Err(e) => Err((
                    e.reason(),
                    match e {
                        FragmentError::TooBig { len, max } => {
                            ClientError::MessageTooBig { len, max }
                        }
                        FragmentError::OutOfOrder => {
                            ClientError::Protocol("fragments out of order".into())
                        }
                    },
                )),
            };
            match delivered {
                Ok(inbound) => break inbound,
                Err((reason, error)) => {
                    tracing::debug!(%error, "closing: bad message from server");
                    close_with(writer, reason).await;
                    break Inbound::Failed(error);
                }
            }
        }
    }
}

/// Decodes one whole message; with [`SnapshotDecoding::HeaderOnly`], only the header
/// of a snapshot.
fn deliver(
    kind: MessageKind,
    payload: &[u8],
    at: Instant,
    decoding: SnapshotDecoding,
) -> Result<Inbound, (DisconnectReason, ClientError)> {
    if kind != MessageKind::Binary {
        return Err((
            DisconnectReason::TextFrame,
            ClientError::Protocol("text frame".into()),
        ));
    }
    if decoding == SnapshotDecoding::HeaderOnly {
        match codec::peek_snapshot_header(payload) {
            Ok(Some(header)) => {
                return Ok(Inbound::Header {
                    header,
                    bytes: payload.len(),
                    at,
                })
            }
            Ok(None) => {} // not a snapshot: decoded in full below
            Err(e) => return Err((DisconnectReason::InvalidPayload, e.into())),
        }
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

/// The code reported for a close frame without one (RFC 6455 section 7.1.5); it is
/// never sent on the wire.
const NO_STATUS: u16 = 1005;
