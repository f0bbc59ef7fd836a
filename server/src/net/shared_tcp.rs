//! A plain-TCP WebSocket's socket, shared between its connection task and its room.
//!
//! On a `ws://` connection the room writes each snapshot straight into the socket from
//! the tick ([`crate::slot`]), with one non-blocking write and no task wake-up; only
//! what the socket cannot take at once goes to the connection's writer. Both need the
//! same write half, so it lives in an `Arc` and is written through `&TcpStream`
//! (tokio's `try_write_vectored`, `poll_write_ready`). [`SharedWrite`] gives the writer
//! the `AsyncWrite` it expects on top of it. Who may write when is the slot's business:
//! a frame is always written whole by one side before the other starts. The read half
//! is the reader's alone ([`SharedRead`]), read with tokio's own `poll_read`, which
//! skips the extra `recv` that would only return `EAGAIN` after a short read.
//!
//! `wss://` connections keep the stream in their writer task: TLS records cannot be
//! written from two places.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

/// Splits an upgraded plain-TCP socket: the reader's half, which starts with `pre`
/// (bytes the HTTP server read past the upgrade request: a client that sent its first
/// frame right behind it), and the write half the writer and the room share.
pub fn split(socket: TcpStream, pre: Bytes) -> (SharedRead, Arc<OwnedWriteHalf>) {
    let (read, write) = socket.into_split();
    // An empty `pre` can still hold the HTTP server's whole read buffer (8 KiB) alive.
    let pre = if pre.is_empty() { Bytes::new() } else { pre };
    (SharedRead { pre, read }, Arc::new(write))
}

/// The reader's half of a shared socket.
#[derive(Debug)]
pub struct SharedRead {
    pre: Bytes,
    read: OwnedReadHalf,
}

impl AsyncRead for SharedRead {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.pre.has_remaining() {
            let n = this.pre.len().min(buf.remaining());
            buf.put_slice(&this.pre[..n]);
            this.pre.advance(n);
            if this.pre.is_empty() {
                // Let go of the buffer it was cut from.
                this.pre = Bytes::new();
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.read).poll_read(cx, buf)
    }
}

/// The writer's handle on the shared write half.
#[derive(Debug)]
pub struct SharedWrite(pub Arc<OwnedWriteHalf>);

impl SharedWrite {
    fn socket(&self) -> &TcpStream {
        (*self.0).as_ref()
    }
}

impl AsyncWrite for SharedWrite {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket().poll_write_ready(cx))?;
            match self.socket().try_write(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.socket().poll_write_ready(cx))?;
            match self.socket().try_write_vectored(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                done => return Poll::Ready(done),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// Nothing is buffered here: every write goes to the kernel.
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// The write half shuts down when its last handle (the room's or the writer's) drops.
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Writes all of `bytes` to `socket`, waiting for room as needed. Used for the rest of
/// a frame the room started but the socket could not take whole.
pub async fn write_all(socket: &OwnedWriteHalf, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match socket.try_write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn reads_the_bytes_read_ahead_first_then_the_socket() {
        let (mut client, server) = pair().await;
        let (mut read, _write) = split(server, Bytes::from_static(b"ahead "));
        client.write_all(b"behind").await.unwrap();
        let mut got = vec![0; 12];
        read.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"ahead behind");
    }

    #[tokio::test]
    async fn both_handles_write_to_one_socket_in_turn() {
        let (mut client, server) = pair().await;
        let (read, socket) = split(server, Bytes::new());
        let mut writer = SharedWrite(Arc::clone(&socket));
        writer.write_all(b"one,").await.unwrap();
        write_all(&socket, b"two").await.unwrap();
        drop((writer, socket, read));
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"one,two");
    }
}
