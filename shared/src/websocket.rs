//! The WebSocket rules both ends apply above the frame parser, with no I/O: joining
//! fragments into messages under one size limit, reading a close frame, and reading a
//! URL's query parameters.
//!
//! The frame parser itself (fastwebsockets) checks masking, opcodes and control-frame
//! lengths; it leaves message reassembly and the meaning of a close payload to its user.
//! The server and the Rust client used to each carry their own copy of these rules;
//! they now both call this module, so a fix lands on both sides at once.

use crate::DisconnectReason;

/// What a data frame carries, as far as reassembly is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFrame {
    /// First (or only) frame of a binary message.
    Binary,
    /// First (or only) frame of a text message.
    Text,
    /// A later fragment of the message in progress.
    Continuation,
}

/// The kind of a whole message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A binary message: the only kind tickcast speaks.
    Binary,
    /// A text message.
    Text,
}

/// Why fragments could not be joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    /// The message (all fragments so far) is longer than the limit.
    #[error("message of at least {len} bytes exceeds the limit of {max}")]
    TooBig {
        /// Bytes the message has reached.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A continuation with no message to continue, or a new message inside a
    /// fragmented one (RFC 6455 section 5.4).
    #[error("fragments out of order")]
    OutOfOrder,
}

impl FragmentError {
    /// How a connection that received this ends: 1009 or 1002.
    pub fn reason(self) -> DisconnectReason {
        match self {
            Self::TooBig { .. } => DisconnectReason::MessageTooBig,
            Self::OutOfOrder => DisconnectReason::ProtocolError,
        }
    }
}

/// Joins the frames of fragmented messages, with one limit on the whole message.
///
/// fastwebsockets caps each frame; a peer could still send a large message as many
/// small fragments, so the limit that matters is applied here, across fragments. An
/// unfragmented message is handed back as the frame's own payload, without a copy.
/// After an error the state is reset; the caller is expected to close the connection.
#[derive(Debug)]
pub struct Reassembly {
    max: usize,
    /// The kind of the fragmented message in progress, if any.
    in_progress: Option<MessageKind>,
    buf: Vec<u8>,
}

impl Reassembly {
    /// Reassembly of messages of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            in_progress: None,
            buf: Vec::new(),
        }
    }

    /// True between the first and the last fragment of a message.
    pub fn in_progress(&self) -> bool {
        self.in_progress.is_some()
    }

    /// Takes one data frame. Returns the whole message when `fin` completes it: the
    /// frame's own bytes for an unfragmented message, the joined bytes otherwise.
    ///
    /// # Errors
    /// [`FragmentError`] when the message grows past the limit or the frame breaks
    /// the fragment order.
    pub fn push<'a>(
        &'a mut self,
        frame: DataFrame,
        fin: bool,
        payload: &'a [u8],
    ) -> Result<Option<(MessageKind, &'a [u8])>, FragmentError> {
        let kind = match (frame, self.in_progress) {
            (DataFrame::Binary, None) => MessageKind::Binary,
            (DataFrame::Text, None) => MessageKind::Text,
            (DataFrame::Continuation, Some(kind)) => kind,
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
        match (fin, self.in_progress.is_some()) {
            (true, false) => Ok(Some((kind, payload))),
            (true, true) => {
                self.buf.extend_from_slice(payload);
                self.in_progress = None;
                Ok(Some((kind, &self.buf)))
            }
            (false, started) => {
                if !started {
                    self.buf.clear();
                }
                self.buf.extend_from_slice(payload);
                self.in_progress = Some(kind);
                Ok(None)
            }
        }
    }

    fn reset(&mut self) {
        self.in_progress = None;
        self.buf.clear();
    }
}

/// A close frame's payload, read as RFC 6455 section 5.5.1 says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Close<'a> {
    /// The status code; `None` when the payload is empty (1005, "no status", must
    /// not itself be sent).
    pub code: Option<u16>,
    /// The reason, UTF-8 (empty when none).
    pub reason: &'a str,
}

/// Why a close payload is not a valid one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CloseError {
    /// One byte: too short for a code, too long for none.
    #[error("close payload of one byte")]
    Truncated,
    /// A code that may not be sent on the wire (RFC 6455 section 7.4).
    #[error("close code {0} may not be sent")]
    InvalidCode(u16),
    /// The reason is not UTF-8.
    #[error("close reason is not UTF-8")]
    InvalidUtf8,
}

impl CloseError {
    /// How the receiving side fails the connection: 1007 for a reason that is not
    /// UTF-8 (RFC 6455 section 8.1), 1002 otherwise.
    pub fn reason(self) -> DisconnectReason {
        match self {
            Self::InvalidUtf8 => DisconnectReason::InvalidPayload,
            Self::Truncated | Self::InvalidCode(_) => DisconnectReason::ProtocolError,
        }
    }
}

impl<'a> Close<'a> {
    /// Reads a close frame's payload.
    ///
    /// # Errors
    /// [`CloseError`] for a one-byte payload, a code a peer may not send, or a reason
    /// that is not UTF-8.
    pub fn parse(payload: &'a [u8]) -> Result<Self, CloseError> {
        match payload {
            [] => Ok(Self {
                code: None,
                reason: "",
            }),
            [_] => Err(CloseError::Truncated),
            [hi, lo, reason @ ..] => {
                let code = u16::from_be_bytes([*hi, *lo]);
                if !may_be_sent(code) {
                    return Err(CloseError::InvalidCode(code));
                }
                let reason = std::str::from_utf8(reason).map_err(|_| CloseError::InvalidUtf8)?;
                Ok(Self {
                    code: Some(code),
                    reason,
                })
            }
        }
    }
}

/// Whether a peer may put `code` in a close frame (RFC 6455 section 7.4): the codes
/// RFC 6455 defines except 1004 (reserved), 1005 and 1006 (only ever reported
/// locally), and the 3000-4999 range for libraries and applications. Codes registered
/// later (1012-1014) are refused like the Autobahn suite expects of RFC 6455 endpoints.
pub fn may_be_sent(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999)
}

/// The value of the first `name=value` pair in a URL query string (no percent
/// decoding: every parameter tickcast reads is restricted to URL-safe characters).
pub fn query_param<'q>(query: Option<&'q str>, name: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(r: &mut Reassembly, frame: DataFrame, fin: bool, payload: &[u8]) -> Option<Vec<u8>> {
        r.push(frame, fin, payload)
            .expect("valid order")
            .map(|(_, bytes)| bytes.to_vec())
    }

    #[test]
    fn unfragmented_and_fragmented_messages() {
        let mut r = Reassembly::new(10);
        assert_eq!(
            r.push(DataFrame::Binary, true, b"abc").unwrap(),
            Some((MessageKind::Binary, &b"abc"[..]))
        );
        assert_eq!(whole(&mut r, DataFrame::Text, false, b"ab"), None);
        assert!(r.in_progress());
        assert_eq!(whole(&mut r, DataFrame::Continuation, false, b"cd"), None);
        assert_eq!(
            r.push(DataFrame::Continuation, true, b"e").unwrap(),
            Some((MessageKind::Text, &b"abcde"[..]))
        );
        assert!(!r.in_progress());
        // An empty message is a message.
        assert_eq!(
            whole(&mut r, DataFrame::Binary, true, b""),
            Some(Vec::new())
        );
        // A fresh fragmented message does not inherit the previous one's bytes.
        assert_eq!(whole(&mut r, DataFrame::Binary, false, b"x"), None);
        assert_eq!(
            whole(&mut r, DataFrame::Continuation, true, b"y"),
            Some(b"xy".to_vec())
        );
    }

    #[test]
    fn the_limit_counts_the_whole_message() {
        let mut r = Reassembly::new(10);
        assert_eq!(
            whole(&mut r, DataFrame::Binary, true, &[0; 10]).map(|m| m.len()),
            Some(10)
        );
        assert_eq!(
            r.push(DataFrame::Binary, true, &[0; 11]).unwrap_err(),
            FragmentError::TooBig { len: 11, max: 10 }
        );
        assert_eq!(whole(&mut r, DataFrame::Binary, false, &[0; 6]), None);
        let err = r.push(DataFrame::Continuation, true, &[0; 6]).unwrap_err();
        assert_eq!(err, FragmentError::TooBig { len: 12, max: 10 });
        assert_eq!(err.reason(), DisconnectReason::MessageTooBig);
        assert!(!r.in_progress(), "reset after an error");
    }

    #[test]
    fn fragments_out_of_order_are_refused() {
        let mut r = Reassembly::new(100);
        let err = r.push(DataFrame::Continuation, true, b"x").unwrap_err();
        assert_eq!(err, FragmentError::OutOfOrder);
        assert_eq!(err.reason(), DisconnectReason::ProtocolError);
        assert_eq!(whole(&mut r, DataFrame::Text, false, b"x"), None);
        assert_eq!(
            r.push(DataFrame::Binary, true, b"y").unwrap_err(),
            FragmentError::OutOfOrder
        );
        assert!(!r.in_progress());
    }

    #[test]
    fn close_payloads() {
        assert_eq!(
            Close::parse(&[]),
            Ok(Close {
                code: None,
                reason: ""
            })
        );
        assert_eq!(
            Close::parse(&[0x03, 0xE9, b'b', b'y', b'e']),
            Ok(Close {
                code: Some(1001),
                reason: "bye"
            })
        );
        assert_eq!(Close::parse(&[0x0F, 0xA5]).map(|c| c.code), Ok(Some(4005)));
        assert_eq!(Close::parse(&[0x03]), Err(CloseError::Truncated));
        for code in [
            0u16, 999, 1004, 1005, 1006, 1012, 1015, 1016, 2999, 5000, 65535,
        ] {
            let err = Close::parse(&code.to_be_bytes()).unwrap_err();
            assert_eq!(err, CloseError::InvalidCode(code));
            assert_eq!(err.reason(), DisconnectReason::ProtocolError);
        }
        let err = Close::parse(&[0x03, 0xE8, 0xff, 0xfe]).unwrap_err();
        assert_eq!(err, CloseError::InvalidUtf8);
        assert_eq!(err.reason(), DisconnectReason::InvalidPayload);
    }

    #[test]
    fn query_parameters() {
        assert_eq!(query_param(Some("room=a&ticket=t"), "ticket"), Some("t"));
        assert_eq!(query_param(Some("room=a&room=b"), "room"), Some("a"));
        assert_eq!(query_param(Some("resume"), "resume"), None);
        assert_eq!(query_param(Some("resume="), "resume"), Some(""));
        assert_eq!(query_param(None, "room"), None);
    }
}
