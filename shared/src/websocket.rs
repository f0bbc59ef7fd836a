//! The WebSocket rules both ends apply above the frame parser, with no I/O: joining
//! fragments into messages under one size limit, checking a text message's UTF-8
//! fragment by fragment, reading a close frame (and which close codes a peer may
//! send), and reading a URL's query parameters.
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

/// Why a text message was refused: its bytes cannot be UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid UTF-8 in text message")]
pub struct InvalidUtf8;

/// Checks a text message's UTF-8 fragment by fragment, without joining them.
///
/// RFC 6455 section 8.1 asks an endpoint to fail the connection as soon as it sees
/// bytes that cannot be UTF-8, and a text message may be split anywhere, even inside
/// a character. Each fragment is checked as it arrives; only the up to three bytes of a
/// character cut by a fragment boundary are kept for the next one. A fragment fails as
/// soon as it holds a byte no valid continuation could follow (the "fail fast" that
/// the Autobahn 6.* cases check), not when the message ends.
#[derive(Debug, Clone, Default)]
pub struct Utf8Stream {
    /// The start of a character cut by the last fragment's end.
    pending: [u8; 4],
    len: usize,
}

/// The length of the UTF-8 sequence a lead byte starts (0: not a lead byte).
fn utf8_width(lead: u8) -> usize {
    match lead {
        0x00..=0x7F => 1,
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

impl Utf8Stream {
    /// A check at the start of a message.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next fragment; `fin` when it is the message's last.
    ///
    /// # Errors
    /// [`InvalidUtf8`] as soon as the bytes so far cannot begin valid UTF-8, or at
    /// `fin` when a character is left unfinished. The state is reset either way.
    pub fn push(&mut self, mut bytes: &[u8], fin: bool) -> Result<(), InvalidUtf8> {
        let checked = self.check(&mut bytes, fin);
        if checked.is_err() || fin {
            self.len = 0;
        }
        checked
    }

    fn check(&mut self, bytes: &mut &[u8], fin: bool) -> Result<(), InvalidUtf8> {
        if self.len > 0 {
            // Finish the cut character first, from the front of this fragment.
            let need = utf8_width(self.pending[0]) - self.len;
            let take = need.min(bytes.len());
            self.pending[self.len..self.len + take].copy_from_slice(&bytes[..take]);
            self.len += take;
            *bytes = &bytes[take..];
            match std::str::from_utf8(&self.pending[..self.len]) {
                Ok(_) => self.len = 0,
                // Still a valid start of a character, only shorter than it must be.
                Err(e) if e.error_len().is_none() && take < need => {
                    return if fin { Err(InvalidUtf8) } else { Ok(()) };
                }
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() && !fin => {
                // At most three bytes: a longer valid prefix would be a whole character.
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
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
/// locally), and the 3000-4999 range for libraries and applications. Everything else
/// fails the connection with 1002: below 1000, 1016-2999 (unassigned), 1015 (a TLS
/// failure, only ever reported locally) and 5000 and up. 1012-1014 (service restart,
/// try again later, bad gateway) were registered with IANA after RFC 6455; they are
/// refused too, because they describe a server or proxy and tickcast never sees them
/// from a client, and neither do the Autobahn cases expect them to be echoed.
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

    /// Feeds `text` in fragments cut at `cuts`, returning the first failure's index.
    fn utf8_in_fragments(text: &[u8], cuts: &[usize]) -> Result<(), usize> {
        let mut check = Utf8Stream::new();
        let mut bounds = vec![0];
        bounds.extend_from_slice(cuts);
        bounds.push(text.len());
        for (i, pair) in bounds.windows(2).enumerate() {
            let fin = i == bounds.len() - 2;
            check.push(&text[pair[0]..pair[1]], fin).map_err(|_| i)?;
        }
        Ok(())
    }

    #[test]
    fn utf8_is_checked_across_fragment_boundaries() {
        let text = "κόσμε €𝄞".as_bytes();
        // Every way of cutting it in two and in three is still valid.
        for a in 0..=text.len() {
            assert_eq!(utf8_in_fragments(text, &[a]), Ok(()), "cut at {a}");
            for b in a..=text.len() {
                assert_eq!(utf8_in_fragments(text, &[a, b]), Ok(()), "cuts {a} {b}");
            }
        }
        // A character cut short by the end of the message.
        assert_eq!(utf8_in_fragments(&[b'a', 0xE2, 0x82], &[2]), Err(1));
        assert_eq!(utf8_in_fragments(&[0xF0, 0x9D], &[1]), Err(1));
    }

    #[test]
    fn utf8_fails_at_the_first_fragment_that_cannot_continue() {
        // 0xF4 0x90 is past U+10FFFF: refused at the fragment holding 0x90, not at the end.
        assert_eq!(
            utf8_in_fragments(
                &[b'o', b'k', 0xF4, 0x90, 0x80, 0x80, b'x', b'y'],
                &[3, 4, 6]
            ),
            Err(1)
        );
        // A byte that never starts a character fails its own fragment.
        assert_eq!(utf8_in_fragments(&[b'a', 0xFF, b'b'], &[1, 2]), Err(1));
        // A surrogate (ED A0 80) fails at its second byte, in the second fragment.
        assert_eq!(utf8_in_fragments(&[0xED, 0xA0, 0x80], &[1]), Err(1));
        // After a failure the next message starts clean.
        let mut check = Utf8Stream::new();
        assert_eq!(check.push(&[0xE2], false), Ok(()));
        assert_eq!(check.push(&[0x28], false), Err(InvalidUtf8));
        assert_eq!(check.push(b"fine", true), Ok(()));
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
