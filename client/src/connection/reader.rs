//! The reader task: it owns the read half of the socket, joins frames into messages,
//! decodes them and queues them for [`super::Connection::next_event`]. It also closes
//! the connection, with the code that says why, when the server sends what we cannot
//! use: a frame the protocol forbids, a message too big, or bytes that do not decode.

use std::sync::Arc;
use std::time::Instant;

use fastwebsockets::{Frame, OpCode, WebSocketError};
use tickcast_shared::websocket::{Close, DataFrame, FragmentError, MessageKind, Reassembly};
use tickcast_shared::{codec, DisconnectReason, ServerMsg};
use tokio::sync::mpsc;

use super::writer::{close_with, forward};
use super::{SharedWriter, WsRead, MAX_MESSAGE_BYTES};
use crate::error::ClientError;

/// Messages decoded ahead of the caller. Small: at 30 snapshots/s this is two seconds,
/// and beyond it the right behaviour is TCP backpressure, not memory.
pub(super) const INBOUND_QUEUE: usize = 64;

/// What the reader task hands over, in arrival order.
#[derive(Debug)]
pub(super) enum Inbound {
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

/// The reader task: frames in, [`Inbound`] out, until the connection ends. The last
/// item it queues says how it ended (a close frame or an error).
pub(super) async fn read_loop(
    mut read: WsRead,
    writer: SharedWriter,
    events: mpsc::Sender<Inbound>,
) {
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
