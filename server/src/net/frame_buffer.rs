//! A client's unread bytes and the frames in them, with no I/O: the memory side of the
//! reader.
//!
//! A server holds thousands of connections that are idle almost all the time, and a
//! player's frames are tiny (an input is about 20 bytes). fastwebsockets' reader keeps
//! an 8 KiB buffer for every connection from the upgrade on; at 2,000 players that was
//! 16 MiB, the largest single cost per player (docs/PERFORMANCE.md, "Memory per
//! player"). This buffer starts empty, grows only to what the frame in hand needs, and
//! gives a large allocation back as soon as the big frame that needed it is consumed,
//! so an idle connection holds a few dozen bytes, and a connection that once sent a
//! 64 KiB message does not keep 64 KiB.
//!
//! The headers have already been checked against RFC 6455 by the stream's
//! [`FrameAudit`](tickcast_shared::frame_audit::FrameAudit) (mask bit, opcodes,
//! reserved bits, control frames); this module only finds frame boundaries, applies the
//! size limit before a payload is read, and unmasks payloads in place.

use std::ops::Range;

use fastwebsockets::OpCode;

/// A buffer kept between frames at most this large; a larger one, needed for a big
/// frame, is freed once that frame has been consumed.
pub const KEEP_CAPACITY: usize = 512;

/// The first read of an empty buffer asks for this many bytes: enough for a header and
/// a typical input or ping in one read.
const FIRST_READ: usize = 64;

/// A frame whose payload is in the buffer, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameAt {
    /// Last fragment of its message.
    pub fin: bool,
    /// The frame's opcode.
    pub opcode: OpCode,
    /// Where its payload is, in [`FrameBuffer::payload`].
    pub payload: Range<usize>,
}

/// Why the buffer cannot yield a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferError {
    /// A frame's payload is `len` bytes, at or over the limit: refused before it is read.
    TooBig {
        /// The payload length the header announced.
        len: u64,
    },
    /// A header this module cannot read (an opcode or length the audit should have
    /// refused first): a protocol error all the same.
    BadHeader,
}

/// A connection's unread bytes.
#[derive(Debug)]
pub struct FrameBuffer {
    buf: Vec<u8>,
    /// Bytes at the front that belong to frames already handed out.
    consumed: usize,
    /// Frames of this many payload bytes or more are refused.
    max_frame: usize,
}

/// A parsed frame header.
struct Head {
    fin: bool,
    opcode: OpCode,
    mask: Option<[u8; 4]>,
    /// Header bytes, mask key included.
    len: usize,
    payload: u64,
}

impl FrameBuffer {
    /// An empty buffer (no allocation) for frames under `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Self {
            buf: Vec::new(),
            consumed: 0,
            max_frame,
        }
    }

    /// Bytes allocated, for tests and memory accounting.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The payload of a frame [`Self::next_frame`] returned.
    pub fn payload(&self, range: Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    /// The next whole frame, unmasked in place, or `None` when more bytes are needed
    /// (then [`Self::spare`] says how many at least). The frame returned before this
    /// one is released first: its payload is no longer readable.
    ///
    /// # Errors
    /// [`BufferError`] when the next header is over the size limit or unreadable.
    pub fn next_frame(&mut self) -> Result<Option<FrameAt>, BufferError> {
        self.release();
        let Some(head) = parse_head(&self.buf)? else {
            return Ok(None);
        };
        if head.payload >= self.max_frame as u64 {
            return Err(BufferError::TooBig { len: head.payload });
        }
        // Under `max_frame`, so it fits a usize.
        let payload = head.payload as usize;
        let end = head.len + payload;
        if self.buf.len() < end {
            return Ok(None);
        }
        let range = head.len..end;
        if let Some(mask) = head.mask {
            for (i, byte) in self.buf[range.clone()].iter_mut().enumerate() {
                *byte ^= mask[i % 4];
            }
        }
        self.consumed = end;
        Ok(Some(FrameAt {
            fin: head.fin,
            opcode: head.opcode,
            payload: range,
        }))
    }

    /// Makes room for the next read and returns the buffer to read into (append to its
    /// end): at least the rest of the frame in progress, as far as its header tells.
    ///
    /// # Errors
    /// As [`Self::next_frame`], for the frame in progress.
    pub fn spare(&mut self) -> Result<&mut Vec<u8>, BufferError> {
        self.release();
        let want = match parse_head(&self.buf)? {
            // Bounded by `max_frame`: `next_frame` refuses larger frames first.
            Some(head) => (head.len as u64 + head.payload)
                .min(self.max_frame as u64 + 14)
                .saturating_sub(self.buf.len() as u64) as usize,
            None => FIRST_READ,
        };
        self.buf.reserve(want.max(1));
        Ok(&mut self.buf)
    }

    /// Drops the bytes of frames already handed out, and gives back a large allocation
    /// once nothing is left in it.
    fn release(&mut self) {
        if self.consumed == 0 {
            return;
        }
        self.buf.drain(..self.consumed);
        self.consumed = 0;
        if self.buf.is_empty() && self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
    }
}

/// The header at the start of `bytes`, or `None` if it is not all there yet.
fn parse_head(bytes: &[u8]) -> Result<Option<Head>, BufferError> {
    let [b0, b1, ..] = *bytes else {
        return Ok(None);
    };
    let opcode = OpCode::try_from(b0 & 0x0f).map_err(|_| BufferError::BadHeader)?;
    let masked = b1 & 0x80 != 0;
    let (ext, short) = match b1 & 0x7f {
        126 => (2, None),
        127 => (8, None),
        n => (0, Some(u64::from(n))),
    };
    let len = 2 + ext + if masked { 4 } else { 0 };
    if bytes.len() < len {
        return Ok(None);
    }
    let payload = match short {
        Some(n) => n,
        None => bytes[2..2 + ext]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)),
    };
    let mask = masked.then(|| {
        let at = 2 + ext;
        [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]
    });
    Ok(Some(Head {
        fin: b0 & 0x80 != 0,
        opcode,
        mask,
        len,
        payload,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A masked client frame.
    fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        match payload.len() {
            n if n < 126 => out.push(0x80 | n as u8),
            n if n <= 0xffff => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Feeds `bytes` in chunks of `chunk`, collecting (fin, opcode, payload).
    fn read_all(buf: &mut FrameBuffer, bytes: &[u8], chunk: usize) -> Vec<(bool, u8, Vec<u8>)> {
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            buf.spare().unwrap().extend_from_slice(piece);
            while let Some(f) = buf.next_frame().unwrap() {
                out.push((f.fin, f.opcode as u8, buf.payload(f.payload).to_vec()));
            }
        }
        out
    }

    #[test]
    fn frames_come_out_unmasked_whatever_the_chunking() {
        let big = vec![7u8; 70_000];
        let mut stream = frame(true, 2, b"input");
        stream.extend(frame(false, 1, b"he"));
        stream.extend(frame(true, 0, b"llo"));
        stream.extend(frame(true, 9, b""));
        stream.extend(frame(true, 2, &[1; 300]));
        stream.extend(frame(true, 2, &big));
        let expected = vec![
            (true, 2, b"input".to_vec()),
            (false, 1, b"he".to_vec()),
            (true, 0, b"llo".to_vec()),
            (true, 9, vec![]),
            (true, 2, vec![1; 300]),
            (true, 2, big),
        ];
        for chunk in [1, 2, 3, 7, 64, 1000, stream.len()] {
            let mut buf = FrameBuffer::new(100_000);
            assert_eq!(
                read_all(&mut buf, &stream, chunk),
                expected,
                "chunks of {chunk}"
            );
        }
    }

    #[test]
    fn an_idle_connection_keeps_a_small_buffer_and_a_big_frame_is_given_back() {
        let mut buf = FrameBuffer::new(100_000);
        assert_eq!(
            buf.capacity(),
            0,
            "nothing is allocated before a byte arrives"
        );
        for seq in 0..100u8 {
            read_all(&mut buf, &frame(true, 2, &[seq; 20]), 1000);
        }
        assert!(buf.capacity() <= KEEP_CAPACITY, "{}", buf.capacity());
        buf.spare()
            .unwrap()
            .extend_from_slice(&frame(true, 2, &[0; 65_000]));
        let big = buf.next_frame().unwrap().unwrap();
        assert_eq!(buf.payload(big.payload).len(), 65_000);
        assert!(
            buf.capacity() >= 65_000,
            "the big frame is held while in hand"
        );
        // Releasing happens when the next frame is asked for.
        assert_eq!(buf.next_frame(), Ok(None));
        assert_eq!(buf.capacity(), 0, "the big allocation is given back");
    }

    #[test]
    fn spare_asks_for_the_rest_of_the_frame_in_hand() {
        let mut buf = FrameBuffer::new(100_000);
        let bytes = frame(true, 2, &[5; 10_000]);
        buf.spare().unwrap().extend_from_slice(&bytes[..100]);
        assert_eq!(buf.next_frame(), Ok(None));
        let spare = buf.spare().unwrap();
        assert!(spare.capacity() - spare.len() >= bytes.len() - 100);
    }

    #[test]
    fn a_frame_at_the_limit_is_refused_before_its_payload_arrives() {
        let mut buf = FrameBuffer::new(1000);
        let bytes = frame(true, 2, &[0; 1000]);
        buf.spare().unwrap().extend_from_slice(&bytes[..8]);
        assert_eq!(buf.next_frame(), Err(BufferError::TooBig { len: 1000 }));
        let mut ok = FrameBuffer::new(1001);
        ok.spare().unwrap().extend_from_slice(&bytes);
        assert!(ok.next_frame().unwrap().is_some());
        // A 64-bit length far beyond memory is refused too, without an allocation.
        let mut huge = FrameBuffer::new(1000);
        huge.spare().unwrap().extend_from_slice(&[
            0x82, 0xff, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4,
        ]);
        assert!(matches!(huge.next_frame(), Err(BufferError::TooBig { .. })));
        assert!(huge.spare().is_ok());
    }

    #[test]
    fn an_opcode_that_slipped_past_the_audit_is_a_bad_header() {
        let mut buf = FrameBuffer::new(1000);
        buf.spare()
            .unwrap()
            .extend_from_slice(&[0x83, 0x80, 0, 0, 0, 0]);
        assert_eq!(buf.next_frame(), Err(BufferError::BadHeader));
    }
}
