//! The read half of a server's WebSocket, audited before the frame reader sees it.
//!
//! [`Audited`] passes every byte it reads through a [`FrameAudit`] first: the bytes of
//! good frames go on to the reader ([`super::frame_buffer`]), and at the first header
//! that breaks a rule of RFC 6455 (an unmasked frame, a long or fragmented control
//! frame, reserved bits, an unknown opcode) the read fails with an [`io::Error`] that
//! carries the [`Violation`], which the reader turns into close 1002 with the rule as
//! its reason ([`violation_in`]). The reader never sees the bad frame, so every header
//! rule is decided here, in one place, with one wording.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

use tickcast_shared::frame_audit::{FrameAudit, Violation};
use tokio::io::{AsyncRead, ReadBuf};

/// An [`AsyncRead`] that audits the client's frame headers as they pass.
#[derive(Debug)]
pub struct Audited<R> {
    inner: R,
    audit: FrameAudit,
    /// A violation found after good bytes of the same read were handed on: reported
    /// by the next read.
    failed: Option<Violation>,
    frames: Arc<AtomicU64>,
}

impl<R> Audited<R> {
    /// Audits what is read from `inner`, from the first byte after the upgrade, and
    /// keeps `frames` at the number of frame headers passed so far, of every kind
    /// (pings and empty fragments too): readable while the parser owns this stream.
    pub fn new(inner: R, frames: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            audit: FrameAudit::new(),
            failed: None,
            frames,
        }
    }
}

fn violated(violation: Violation) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, violation)
}

impl<R: AsyncRead + Unpin> AsyncRead for Audited<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(violation) = this.failed {
            return Poll::Ready(Err(violated(violation)));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        let checked = this.audit.feed(&buf.filled()[before..]);
        this.frames.store(this.audit.frames(), Relaxed);
        match checked {
            Ok(()) => Poll::Ready(Ok(())),
            Err(rejected) => {
                this.failed = Some(rejected.violation);
                // Hand on the good frames in front of the bad one; the error follows.
                buf.set_filled(before + rejected.valid);
                if rejected.valid == 0 {
                    Poll::Ready(Err(violated(rejected.violation)))
                } else {
                    Poll::Ready(Ok(()))
                }
            }
        }
    }
}

/// The header rule a read error reports, when it came from an [`Audited`] stream.
pub fn violation_in(e: &io::Error) -> Option<Violation> {
    e.get_ref()?.downcast_ref::<Violation>().copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn good_frames_before_a_bad_one_pass_then_the_read_fails() {
        // A masked empty binary frame, a masked ping, then an unmasked binary frame.
        let mut bytes = vec![0x82, 0x80, 1, 2, 3, 4, 0x89, 0x80, 1, 2, 3, 4];
        let good = bytes.len();
        bytes.extend_from_slice(&[0x82, 0x01, b'x']);
        let frames = Arc::new(AtomicU64::new(0));
        let mut audited = Audited::new(&bytes[..], Arc::clone(&frames));
        let mut out = vec![0; 64];
        let n = audited.read(&mut out).await.expect("the good frames");
        assert_eq!(&out[..n], &bytes[..good]);
        assert_eq!(frames.load(Relaxed), 2);
        let err = audited.read(&mut out).await.expect_err("the bad frame");
        assert_eq!(violation_in(&err), Some(Violation::Unmasked));
        assert_eq!(violation_in(&io::Error::other("reset")), None);
    }
}
