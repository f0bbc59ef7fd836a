//! The write half of a connection, shared behind a mutex by the caller (inputs,
//! pings, our close) and the reader (the pongs and the close echo it owes the
//! server, and the close that ends a broken stream).

use std::convert::Infallible;
use std::sync::Arc;

use fastwebsockets::{Frame, OpCode, Payload};
use tickcast_shared::{codec, ClientMsg, DisconnectReason};

use super::SharedWriter;
use crate::error::ClientError;

/// Writes a frame the reader owes the server (pong, close echo). Never fails: a write
/// error here must not hide the frame being read (fastwebsockets would return the send
/// error instead of the server's close frame); the next send reports the broken socket.
pub(super) async fn forward(writer: SharedWriter, frame: Frame<'static>) -> Result<(), Infallible> {
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

/// Sends a close frame with the code and text of `reason`, best effort.
pub(super) async fn close_with(writer: &SharedWriter, reason: DisconnectReason) {
    let frame = Frame::close(reason.code(), reason.reason().as_bytes());
    forward(Arc::clone(writer), frame).await.ok();
}

/// Encodes `msg` into `buf` and writes it as one binary frame. The frame is masked in
/// place in `buf`, which the next call clears, so sending does not allocate.
pub(super) async fn write_msg(
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
