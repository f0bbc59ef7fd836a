//! Reassembles WebSocket messages from frames, with the size limit counted over the
//! whole message.
//!
//! fastwebsockets' own limit is per frame; a peer could otherwise send a thousand frames
//! of just under the limit each. This is a small pure state machine so the rules
//! (binary only, continuation order, total size) are tested without a socket.

use tickcast_shared::DisconnectReason;

/// The kind of a data frame, as far as reassembly cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// First frame of a binary message.
    Binary,
    /// First frame of a text message.
    Text,
    /// A later frame of the current message.
    Continuation,
}

/// Collects the frames of one message at a time.
#[derive(Debug)]
pub struct Assembler {
    max_bytes: usize,
    buf: Vec<u8>,
    in_message: bool,
}

impl Assembler {
    /// An assembler refusing messages over `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            buf: Vec::new(),
            in_message: false,
        }
    }

    /// Adds one data frame. Returns the whole message when `fin` completes it.
    ///
    /// # Errors
    /// The reason to close with: a text frame, a continuation out of place, or a message
    /// over the limit.
    pub fn push(
        &mut self,
        kind: FrameKind,
        fin: bool,
        payload: &[u8],
    ) -> Result<Option<&[u8]>, DisconnectReason> {
        match (kind, self.in_message) {
            (FrameKind::Text, _) => return Err(DisconnectReason::TextFrame),
            (FrameKind::Binary, false) => {
                self.buf.clear();
                self.in_message = true;
            }
            (FrameKind::Binary, true) | (FrameKind::Continuation, false) => {
                return Err(DisconnectReason::ProtocolError)
            }
            (FrameKind::Continuation, true) => {}
        }
        if self.buf.len() + payload.len() > self.max_bytes {
            return Err(DisconnectReason::MessageTooBig);
        }
        self.buf.extend_from_slice(payload);
        if fin {
            self.in_message = false;
            Ok(Some(&self.buf))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_fragmented_messages() {
        let mut a = Assembler::new(10);
        assert_eq!(
            a.push(FrameKind::Binary, true, b"abc").unwrap(),
            Some(&b"abc"[..])
        );
        assert_eq!(a.push(FrameKind::Binary, false, b"ab").unwrap(), None);
        assert_eq!(a.push(FrameKind::Continuation, false, b"cd").unwrap(), None);
        assert_eq!(
            a.push(FrameKind::Continuation, true, b"e").unwrap(),
            Some(&b"abcde"[..])
        );
        assert_eq!(
            a.push(FrameKind::Binary, true, b"").unwrap(),
            Some(&b""[..])
        );
    }

    #[test]
    fn limit_counts_the_whole_message() {
        let mut a = Assembler::new(10);
        assert_eq!(
            a.push(FrameKind::Binary, true, &[0; 10])
                .unwrap()
                .map(<[u8]>::len),
            Some(10)
        );
        assert_eq!(
            a.push(FrameKind::Binary, true, &[0; 11]).unwrap_err(),
            DisconnectReason::MessageTooBig
        );
        let mut a = Assembler::new(10);
        a.push(FrameKind::Binary, false, &[0; 6]).unwrap();
        assert_eq!(
            a.push(FrameKind::Continuation, true, &[0; 6]).unwrap_err(),
            DisconnectReason::MessageTooBig
        );
    }

    #[test]
    fn text_and_bad_order_are_refused() {
        let mut a = Assembler::new(10);
        assert_eq!(
            a.push(FrameKind::Text, true, b"hi").unwrap_err(),
            DisconnectReason::TextFrame
        );
        assert_eq!(
            a.push(FrameKind::Continuation, true, b"x").unwrap_err(),
            DisconnectReason::ProtocolError
        );
        a.push(FrameKind::Binary, false, b"x").unwrap();
        assert_eq!(
            a.push(FrameKind::Binary, true, b"y").unwrap_err(),
            DisconnectReason::ProtocolError
        );
    }
}
