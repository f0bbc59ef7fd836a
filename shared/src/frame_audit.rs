//! An I/O-free audit of the WebSocket frame headers a server reads, byte by byte.
//!
//! The frame parser the server uses (fastwebsockets) accepts a few things RFC 6455
//! says a server must refuse: it unmasks client frames whether or not they were masked,
//! and it takes close and pong frames of any length. It also answers pings itself, so
//! its user cannot see how many frames a peer really sent. [`FrameAudit`] sits in front
//! of it: fed the raw bytes in whatever chunks the socket hands over, it follows the
//! frame boundaries, checks every header against the rules of RFC 6455 section 5.2 for
//! a server with no extension negotiated, and counts every header it passes. Payload
//! bytes are only counted down, never copied or looked at.
//!
//! Every rule is decided from a header's first two bytes, so the audit can say exactly
//! where in a chunk the first bad frame starts: the bytes before it belong to good frames
//! and may be handed on, the rest must not.

/// The largest payload a control frame may carry (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A rule of RFC 6455 section 5 that a client's frame header broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// A client frame without the mask bit (section 5.1: the server must close).
    #[error("unmasked frame")]
    Unmasked,
    /// A close, ping or pong frame whose payload is over 125 bytes (section 5.5).
    #[error("control frame too long")]
    ControlTooLong,
    /// A close, ping or pong frame without FIN (section 5.5: control frames are never
    /// fragmented).
    #[error("fragmented control frame")]
    ControlFragmented,
    /// RSV1, RSV2 or RSV3 set while no extension gave them a meaning (section 5.2).
    #[error("reserved bits set")]
    ReservedBits,
    /// An opcode RFC 6455 reserves (3-7, 0xB-0xF).
    #[error("unknown opcode")]
    UnknownOpcode,
    /// A 64-bit payload length with its most significant bit set (section 5.2).
    #[error("invalid payload length")]
    InvalidLength,
}

impl Violation {
    /// The close reason that names the rule: the same words as the error's text,
    /// static so that a close frame can carry it without an allocation.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Unmasked => "unmasked frame",
            Self::ControlTooLong => "control frame too long",
            Self::ControlFragmented => "fragmented control frame",
            Self::ReservedBits => "reserved bits set",
            Self::UnknownOpcode => "unknown opcode",
            Self::InvalidLength => "invalid payload length",
        }
    }
}

/// Where in a chunk the audit stopped, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejected {
    /// Bytes at the start of the chunk that belong to frames before the bad one: they
    /// may be handed to the parser. Zero when the bad header began in an earlier chunk.
    pub valid: usize,
    /// The rule the bad frame broke.
    pub violation: Violation,
}

/// Where the audit is in the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a header: the bytes of it seen so far, and how long it is once the
    /// second byte is known (2 until then).
    Header {
        seen: [u8; 2],
        have: usize,
        len: usize,
    },
    /// Reading the extended length (big-endian, `left` bytes still to come).
    Length {
        value: u64,
        left: usize,
        mask_left: usize,
    },
    /// Skipping the masking key.
    Mask { left: usize, payload: u64 },
    /// Skipping the payload.
    Payload { left: u64 },
    /// A rule was broken; nothing after it is audited.
    Failed(Violation),
}

/// Follows frame boundaries in a client-to-server byte stream and checks each header.
#[derive(Debug, Clone)]
pub struct FrameAudit {
    state: State,
    frames: u64,
}

impl Default for FrameAudit {
    fn default() -> Self {
        Self::new()
    }
}

/// The start of a new header.
const HEADER: State = State::Header {
    seen: [0; 2],
    have: 0,
    len: 2,
};

impl FrameAudit {
    /// An audit at the start of a stream (just after the upgrade).
    pub fn new() -> Self {
        Self {
            state: HEADER,
            frames: 0,
        }
    }

    /// Frame headers passed so far, of every kind: data, continuation (empty ones
    /// too), ping, pong and close. A header counts once it is whole.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// True between frames: the stream is not in the middle of a header or payload.
    pub fn at_boundary(&self) -> bool {
        matches!(self.state, State::Header { have: 0, .. })
    }

    /// Audits the next chunk of the stream.
    ///
    /// # Errors
    /// [`Rejected`] at the first header that breaks a rule, with how many of this
    /// chunk's bytes came before it. Every later call fails the same way.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<(), Rejected> {
        let mut at = 0;
        // Where the header being read started in this chunk (0 if in an earlier one).
        let mut header_start = 0;
        while at < chunk.len() {
            match &mut self.state {
                State::Failed(violation) => {
                    return Err(Rejected {
                        valid: 0,
                        violation: *violation,
                    })
                }
                State::Header { seen, have, .. } => {
                    if *have == 0 {
                        header_start = at;
                    }
                    seen[*have] = chunk[at];
                    *have += 1;
                    at += 1;
                    if *have == 2 {
                        let [b0, b1] = *seen;
                        match check(b0, b1) {
                            Ok(next) => self.state = next,
                            Err(violation) => {
                                self.state = State::Failed(violation);
                                return Err(Rejected {
                                    valid: header_start,
                                    violation,
                                });
                            }
                        }
                        self.header_done_if_complete();
                    }
                }
                State::Length {
                    value,
                    left,
                    mask_left,
                } => {
                    *value = (*value << 8) | u64::from(chunk[at]);
                    *left -= 1;
                    at += 1;
                    if *left == 0 {
                        let (value, mask_left) = (*value, *mask_left);
                        if value >> 63 != 0 {
                            self.state = State::Failed(Violation::InvalidLength);
                            return Err(Rejected {
                                valid: header_start,
                                violation: Violation::InvalidLength,
                            });
                        }
                        self.state = State::Mask {
                            left: mask_left,
                            payload: value,
                        };
                        self.header_done_if_complete();
                    }
                }
                State::Mask { left, payload } => {
                    let take = (*left).min(chunk.len() - at);
                    *left -= take;
                    at += take;
                    let payload = *payload;
                    if *left == 0 {
                        self.state = State::Payload { left: payload };
                        self.header_done_if_complete();
                    }
                }
                State::Payload { left } => {
                    let room = (chunk.len() - at) as u64;
                    let take = (*left).min(room);
                    *left -= take;
                    // `take` is at most `room`, which came from a usize.
                    at += take as usize;
                    if *left == 0 {
                        self.state = HEADER;
                    }
                }
            }
        }
        match self.state {
            State::Failed(violation) => Err(Rejected {
                valid: 0,
                violation,
            }),
            _ => Ok(()),
        }
    }

    /// Counts the header once nothing of it is left to read, and skips straight to the
    /// next header for an empty payload.
    fn header_done_if_complete(&mut self) {
        if let State::Payload { left } = self.state {
            self.frames += 1;
            if left == 0 {
                self.state = HEADER;
            }
        }
    }
}

/// Checks a header's first two bytes; returns the state that reads the rest of it.
fn check(b0: u8, b1: u8) -> Result<State, Violation> {
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    let masked = b1 & 0x80 != 0;
    let len_code = b1 & 0x7F;
    if b0 & 0x70 != 0 {
        return Err(Violation::ReservedBits);
    }
    let control = match opcode {
        0..=2 => false,
        8..=10 => true,
        _ => return Err(Violation::UnknownOpcode),
    };
    if !masked {
        return Err(Violation::Unmasked);
    }
    if control && !fin {
        return Err(Violation::ControlFragmented);
    }
    if control && u64::from(len_code) > MAX_CONTROL_PAYLOAD {
        return Err(Violation::ControlTooLong);
    }
    Ok(match len_code {
        126 => State::Length {
            value: 0,
            left: 2,
            mask_left: 4,
        },
        127 => State::Length {
            value: 0,
            left: 8,
            mask_left: 4,
        },
        short => State::Mask {
            left: 4,
            payload: u64::from(short),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A masked client frame (the key is fixed: the audit never reads the payload).
    fn frame(b0: u8, payload_len: usize) -> Vec<u8> {
        let mut out = vec![b0];
        match payload_len {
            0..=125 => out.push(0x80 | payload_len as u8),
            126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(payload_len as u16).to_be_bytes());
            }
            _ => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(payload_len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&[1, 2, 3, 4]);
        out.extend((0..payload_len).map(|i| i as u8));
        out
    }

    fn rejected(bytes: &[u8]) -> Rejected {
        FrameAudit::new().feed(bytes).expect_err("a violation")
    }

    #[test]
    fn each_rule_is_refused_where_its_header_starts() {
        let good = frame(0x82, 3);
        let cases: [(&[u8], Violation); 9] = [
            (&[0x82, 0x03], Violation::Unmasked),
            (&[0x89, 0x00], Violation::Unmasked),
            (&[0x88, 0x80 | 126], Violation::ControlTooLong),
            (&[0x8A, 0x80 | 127], Violation::ControlTooLong),
            (&[0x09, 0x80], Violation::ControlFragmented),
            (&[0xC2, 0x80], Violation::ReservedBits),
            (&[0x83, 0x80], Violation::UnknownOpcode),
            (&[0x8B, 0x80], Violation::UnknownOpcode),
            (
                &[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                Violation::InvalidLength,
            ),
        ];
        for (bad, violation) in cases {
            let mut stream = good.clone();
            stream.extend_from_slice(bad);
            assert_eq!(
                rejected(&stream),
                Rejected {
                    valid: good.len(),
                    violation
                },
                "{bad:02x?}"
            );
        }
    }

    #[test]
    fn the_longest_control_frame_passes() {
        let mut a = FrameAudit::new();
        a.feed(&frame(0x89, 125)).expect("a 125-byte ping is fine");
        a.feed(&frame(0x88, 2)).expect("a close");
        assert_eq!(a.frames(), 2);
        assert!(a.at_boundary());
    }

    #[test]
    fn a_rejected_stream_stays_rejected() {
        let mut a = FrameAudit::new();
        let mut bad = frame(0x81, 0);
        bad[1] &= 0x7F;
        assert_eq!(
            a.feed(&bad).map_err(|r| r.violation),
            Err(Violation::Unmasked)
        );
        assert_eq!(
            a.feed(&frame(0x82, 1)),
            Err(Rejected {
                valid: 0,
                violation: Violation::Unmasked
            })
        );
    }

    #[test]
    fn a_bad_header_split_across_chunks_hands_on_nothing_of_it() {
        let mut a = FrameAudit::new();
        let mut stream = frame(0x82, 2);
        stream.push(0xC2); // RSV1, its second byte in the next chunk.
        a.feed(&stream).expect("nothing decided yet");
        assert_eq!(
            a.feed(&[0x80]),
            Err(Rejected {
                valid: 0,
                violation: Violation::ReservedBits
            })
        );
    }

    /// Frames of every kind a valid client may send, with their encodings.
    fn valid_frame() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            (
                prop::sample::select(vec![0x01u8, 0x02, 0x81, 0x82, 0x00, 0x80]),
                0usize..300
            )
                .prop_map(|(b0, len)| frame(b0, len)),
            (prop::sample::select(vec![0x88u8, 0x89, 0x8A]), 0usize..=125)
                .prop_map(|(b0, len)| frame(b0, len)),
            Just(frame(0x82, 70_000)),
        ]
    }

    proptest! {
        #[test]
        fn any_chunking_of_a_valid_stream_counts_every_frame(
            frames in prop::collection::vec(valid_frame(), 0..20),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..30),
        ) {
            let stream: Vec<u8> = frames.concat();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
            at.push(0);
            at.push(stream.len());
            at.sort_unstable();
            let mut audit = FrameAudit::new();
            for pair in at.windows(2) {
                prop_assert_eq!(audit.feed(&stream[pair[0]..pair[1]]), Ok(()));
            }
            prop_assert_eq!(audit.frames(), frames.len() as u64);
            prop_assert!(audit.at_boundary());
        }

        #[test]
        fn a_bad_frame_after_any_chunking_is_found_at_its_start(
            frames in prop::collection::vec(valid_frame(), 0..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let good: Vec<u8> = frames.concat();
            let mut stream = good.clone();
            stream.extend_from_slice(&[0x82, 0x05, 9, 9, 9, 9, 9]); // unmasked
            let cut = cut.index(stream.len() + 1);
            let mut audit = FrameAudit::new();
            let (first, second) = stream.split_at(cut);
            let mut handed_on = 0;
            let mut found = None;
            for chunk in [first, second] {
                match audit.feed(chunk) {
                    Ok(()) => handed_on += chunk.len(),
                    Err(r) => {
                        handed_on += r.valid;
                        found = Some(r.violation);
                        break;
                    }
                }
            }
            prop_assert_eq!(found, Some(Violation::Unmasked));
            // A cut just after the bad header's first byte hands that byte on: one byte
            // is not a header, and the parser never sees the second.
            let straddled = usize::from(cut == good.len() + 1);
            prop_assert_eq!(handed_on, good.len() + straddled);
            prop_assert_eq!(audit.frames(), frames.len() as u64);
        }
    }
}
