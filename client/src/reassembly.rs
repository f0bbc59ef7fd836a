//! Joins fragmented WebSocket data frames into whole messages, under a size limit that
//! counts every fragment.
//!
//! Sits in the connection's reader task between fastwebsockets' frame reader and the
//! decoder. fastwebsockets' own `FragmentCollectorRead` limits each frame but not the
//! sum of a message's fragments, so a peer could grow its buffer without bound; this
//! collector refuses a message as soon as its running total passes the limit. A
//! message that arrives as one frame (the usual case for snapshots) never passes
//! through here and is decoded straight from the frame's buffer.

use fastwebsockets::OpCode;

/// Why a sequence of frames is not a valid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The fragments add up to more than the limit.
    #[error("message of at least {len} bytes exceeds the limit of {max}")]
    TooBig {
        /// Bytes collected, including the frame that broke the limit.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A continuation frame with no message started, or a new message started while
    /// another was still incomplete.
    #[error("fragments out of order")]
    OutOfOrder,
}

/// Collects the fragments of one message at a time. The buffer is reused across
/// messages, so steady fragmented traffic does not allocate.
#[derive(Debug)]
pub struct Reassembly {
    opcode: Option<OpCode>,
    buf: Vec<u8>,
    max: usize,
}

impl Reassembly {
    /// A collector for messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            opcode: None,
            buf: Vec::new(),
            max,
        }
    }

    /// Whether a fragmented message is in progress.
    pub fn in_progress(&self) -> bool {
        self.opcode.is_some()
    }

    /// Adds one data frame (`Text`, `Binary` or `Continuation`). Returns the opcode of
    /// the completed message when `fin` ends it; its bytes are then in
    /// [`Reassembly::message`] until the next call.
    ///
    /// # Errors
    /// [`FragmentError`] if the frames are out of order or the message is too big;
    /// the partial message is dropped either way.
    pub fn push(
        &mut self,
        opcode: OpCode,
        fin: bool,
        payload: &[u8],
    ) -> Result<Option<OpCode>, FragmentError> {
        let message_opcode = match (opcode, self.opcode) {
            (OpCode::Continuation, Some(started)) => started,
            (OpCode::Text | OpCode::Binary, None) => {
                self.buf.clear();
                opcode
            }
            _ => {
                self.reset();
                return Err(FragmentError::OutOfOrder);
            }
        };
        let len = self.buf.len().saturating_add(payload.len());
        if len > self.max {
            self.reset();
            return Err(FragmentError::TooBig { len, max: self.max });
        }
        self.buf.extend_from_slice(payload);
        if fin {
            self.opcode = None;
            Ok(Some(message_opcode))
        } else {
            self.opcode = Some(message_opcode);
            Ok(None)
        }
    }

    /// The bytes of the message completed by the last [`Reassembly::push`].
    pub fn message(&self) -> &[u8] {
        &self.buf
    }

    fn reset(&mut self) {
        self.opcode = None;
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_fragments() {
        let mut r = Reassembly::new(10);
        assert_eq!(r.push(OpCode::Binary, false, b"abc"), Ok(None));
        assert!(r.in_progress());
        assert_eq!(r.push(OpCode::Continuation, false, b"de"), Ok(None));
        assert_eq!(
            r.push(OpCode::Continuation, true, b"f"),
            Ok(Some(OpCode::Binary))
        );
        assert_eq!(r.message(), b"abcdef");
        assert!(!r.in_progress());
        // The next message starts clean.
        assert_eq!(r.push(OpCode::Binary, true, b"z"), Ok(Some(OpCode::Binary)));
        assert_eq!(r.message(), b"z");
    }

    #[test]
    fn limit_counts_all_fragments() {
        let mut r = Reassembly::new(5);
        assert_eq!(r.push(OpCode::Binary, false, b"abc"), Ok(None));
        assert_eq!(
            r.push(OpCode::Continuation, true, b"def"),
            Err(FragmentError::TooBig { len: 6, max: 5 })
        );
        assert!(!r.in_progress());
        assert_eq!(
            r.push(OpCode::Binary, true, b"12345"),
            Ok(Some(OpCode::Binary))
        );
    }

    #[test]
    fn out_of_order_fragments_are_refused() {
        let mut r = Reassembly::new(100);
        assert_eq!(
            r.push(OpCode::Continuation, true, b"x"),
            Err(FragmentError::OutOfOrder)
        );
        assert_eq!(r.push(OpCode::Text, false, b"x"), Ok(None));
        assert_eq!(
            r.push(OpCode::Binary, true, b"y"),
            Err(FragmentError::OutOfOrder)
        );
        assert!(!r.in_progress());
    }
}
