//! The recording format, I/O-free: what a recording holds and how it is laid out in bytes.
//!
//! A recording is one or more segment files. Each segment starts with [`MAGIC`] and then
//! holds frames: a LEB128 length followed by that many bytes of one bincode-encoded value
//! (the standard configuration, whose integers are varints). The first frame of a segment
//! is its [`Header`]; every later frame is one [`Record`]. Frames are only ever appended,
//! so a crash can leave at most the last frame torn: a reader ignores a torn last frame
//! ([`Tail::Torn`]) and refuses damage anywhere else.
//!
//! Only what decides the game is kept: the seed and options (in the header), joins,
//! leaves and game messages with the tick they happened before, and per tick the inputs
//! the room applied and a hash of the quantised world after it. A quiet tick costs about
//! 14 bytes.

use serde::{Deserialize, Serialize};
use tickcast_shared::delta::QEntity;
use tickcast_shared::{EntityKind, Input};

use crate::game::{EntityId, PlayerId};

/// The first bytes of every segment file.
pub const MAGIC: &[u8; 8] = b"TCREC\x00\x01\n";

/// Bumped whenever [`Header`] or [`Record`] change shape.
pub const FORMAT_VERSION: u32 = 1;

/// Largest frame a reader accepts: far above any real record (an input payload and a
/// game message are a few KiB at most), small enough that a damaged length cannot make
/// the reader allocate without bound.
pub const MAX_FRAME_BYTES: usize = 1 << 20;

/// What a segment says about its room: enough to create the same game again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// The room's id.
    pub room: String,
    /// The game's registered name.
    pub game: String,
    /// `GameOptions::seed`.
    pub seed: u64,
    /// `GameOptions::npcs`.
    pub npcs: u32,
    /// Ticks per second: the game steps by `1 / tick_rate`.
    pub tick_rate: u16,
    /// Seats in the room.
    pub max_players: u32,
    /// Area of interest (no effect on the game; kept to describe the room).
    pub view_radius: f32,
    /// 0 for the file `room-ID`, N for `room-ID.N`.
    pub segment: u32,
    /// Ticks the room had produced when this segment began.
    pub first_tick: u64,
}

/// One thing that decided the game.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    /// A player joined after `tick` ticks and got `entity`.
    Join {
        /// Ticks produced before the join.
        tick: u64,
        /// Its id in the room.
        player: PlayerId,
        /// The entity the game spawned for it.
        entity: EntityId,
        /// The name it played under (for the replay's report).
        name: String,
    },
    /// A player left (or its reconnect grace ran out) after `tick` ticks.
    Leave {
        /// Ticks produced before the leave.
        tick: u64,
        /// Who.
        player: PlayerId,
    },
    /// A game message from `player`, handed to the game after `tick` ticks.
    Message {
        /// Ticks produced before the message.
        tick: u64,
        /// Who sent it.
        player: PlayerId,
        /// Its bytes, as the game received them.
        payload: Vec<u8>,
    },
    /// Tick number `tick` was produced: the inputs applied in it, in the order the room
    /// applied them, and the hash of the world after it ([`world_hash`]).
    Tick {
        /// The tick's number (1 for the first).
        tick: u64,
        /// Each applied input with its player.
        inputs: Vec<(PlayerId, Input)>,
        /// [`world_hash`] of the quantised world after the tick.
        hash: [u8; 8],
    },
    /// The writer fell behind and `dropped` records were lost here: the recording cannot
    /// be replayed past this point.
    Incomplete {
        /// Records lost.
        dropped: u64,
    },
}

/// How a segment ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Every byte belonged to a whole frame.
    Clean,
    /// The last frame was cut short (a crash mid-write) at this byte offset; ignored.
    Torn(usize),
}

/// A segment that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// Not a recording, or one of another format version.
    #[error("not a tickcast recording (bad magic bytes)")]
    Magic,
    /// The header is missing or not of this version.
    #[error("bad segment header: {0}")]
    Header(String),
    /// A frame before the last one is damaged.
    #[error("damaged frame at byte {offset}: {why}")]
    Damaged {
        /// Where the frame starts.
        offset: usize,
        /// What is wrong with it.
        why: String,
    },
}

fn config() -> bincode::config::Configuration {
    bincode::config::standard()
}

/// Appends one framed value to `out`.
///
/// # Errors
/// When `value` does not encode (no value of this module fails to).
pub fn encode_frame<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    let body = bincode::serde::encode_to_vec(value, config()).map_err(|e| e.to_string())?;
    let mut len = body.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend_from_slice(&body);
    Ok(())
}

/// The bytes a new segment starts with: [`MAGIC`] and the framed header.
///
/// # Errors
/// As [`encode_frame`].
pub fn segment_start(header: &Header) -> Result<Vec<u8>, String> {
    let mut out = MAGIC.to_vec();
    encode_frame(header, &mut out)?;
    Ok(out)
}

/// The next frame's body in `bytes` from `offset`: `Ok(None)` at the end, `Err(())`
/// when the frame is cut short.
fn next_frame(bytes: &[u8], offset: usize) -> Result<Option<(&[u8], usize)>, ()> {
    if offset == bytes.len() {
        return Ok(None);
    }
    let mut len: u64 = 0;
    let mut at = offset;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = bytes.get(at) else {
            return Err(());
        };
        at += 1;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            let len = usize::try_from(len).map_err(|_| ())?;
            if len > MAX_FRAME_BYTES {
                return Err(());
            }
            let end = at.checked_add(len).ok_or(())?;
            return match bytes.get(at..end) {
                Some(body) => Ok(Some((body, end))),
                None => Err(()),
            };
        }
    }
    Err(())
}

fn decode_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(body, config()).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes", body.len() - used));
    }
    Ok(value)
}

/// Reads a whole segment: its header, its records, and whether its last frame was torn.
///
/// # Errors
/// [`FormatError`] when the segment is not a recording of this version or is damaged
/// anywhere but in its last frame.
pub fn decode_segment(bytes: &[u8]) -> Result<(Header, Vec<Record>, Tail), FormatError> {
    let rest = bytes
        .strip_prefix(MAGIC.as_slice())
        .ok_or(FormatError::Magic)?;
    let base = MAGIC.len();
    let (body, mut offset) = match next_frame(rest, 0) {
        Ok(Some(frame)) => frame,
        _ => return Err(FormatError::Header("cut short".into())),
    };
    let header: Header = decode_body(body).map_err(FormatError::Header)?;
    if header.version != FORMAT_VERSION {
        return Err(FormatError::Header(format!(
            "format version {}, this reader knows {FORMAT_VERSION}",
            header.version
        )));
    }
    let mut records = Vec::new();
    loop {
        match next_frame(rest, offset) {
            Ok(None) => return Ok((header, records, Tail::Clean)),
            Ok(Some((body, end))) => match decode_body::<Record>(body) {
                Ok(record) => {
                    records.push(record);
                    offset = end;
                }
                // A frame whose length is whole but whose bytes are not is only
                // tolerated last: a torn write that happened to leave a valid length.
                Err(_) if end == rest.len() => {
                    return Ok((header, records, Tail::Torn(base + offset)))
                }
                Err(why) => {
                    return Err(FormatError::Damaged {
                        offset: base + offset,
                        why,
                    })
                }
            },
            Err(()) => return Ok((header, records, Tail::Torn(base + offset))),
        }
    }
}

/// FNV-1a (64-bit) offset basis and prime: a tiny, fixed, well-known hash, so a
/// recording's hashes mean the same on every machine and in every build.
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Hashes the world as players see it: FNV-1a over the entity count and, per entity in
/// id order, its id, kind, quantised position and velocity and its fields, each as
/// little-endian bytes. Quantised values are integers, so the hash does not depend on
/// how floats print or on the platform's byte order.
pub fn world_hash<'a>(entities: impl ExactSizeIterator<Item = &'a QEntity>) -> [u8; 8] {
    let mut h = FNV_OFFSET;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    };
    eat(&(entities.len() as u64).to_le_bytes());
    for e in entities {
        eat(&e.id.to_le_bytes());
        eat(&[match e.kind {
            EntityKind::Npc => 0,
            EntityKind::Avatar => 1,
        }]);
        for v in e.pos.iter().chain(&e.vel).chain(&e.fields) {
            eat(&v.to_le_bytes());
        }
    }
    h.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::Vec2;

    fn header() -> Header {
        Header {
            version: FORMAT_VERSION,
            room: "r".into(),
            game: "arena".into(),
            seed: 7,
            npcs: 3,
            tick_rate: 30,
            max_players: 8,
            view_radius: 0.0,
            segment: 0,
            first_tick: 0,
        }
    }

    fn sample() -> Vec<Record> {
        vec![
            Record::Join {
                tick: 0,
                player: 1,
                entity: 3,
                name: "ada".into(),
            },
            Record::Tick {
                tick: 1,
                inputs: vec![(
                    1,
                    Input {
                        seq: 1,
                        movement: Vec2::X,
                        buttons: 2,
                        payload: Default::default(),
                    },
                )],
                hash: [1; 8],
            },
            Record::Tick {
                tick: 2,
                inputs: vec![],
                hash: [2; 8],
            },
        ]
    }

    #[test]
    fn a_segment_round_trips_and_a_quiet_tick_is_small() {
        let mut bytes = segment_start(&header()).unwrap();
        for r in sample() {
            encode_frame(&r, &mut bytes).unwrap();
        }
        let (h, records, tail) = decode_segment(&bytes).unwrap();
        assert_eq!((h, records, tail), (header(), sample(), Tail::Clean));
        let mut quiet = Vec::new();
        encode_frame(
            &Record::Tick {
                tick: 100_000,
                inputs: vec![],
                hash: [9; 8],
            },
            &mut quiet,
        )
        .unwrap();
        // length 1 + variant 1 + tick 5 (varint of 100000) + empty list 1 + hash 8.
        assert_eq!(quiet.len(), 16);
    }

    #[test]
    fn a_torn_last_frame_is_ignored_and_damage_before_it_is_not() {
        let mut bytes = segment_start(&header()).unwrap();
        let mut ends = Vec::new();
        for r in sample() {
            encode_frame(&r, &mut bytes).unwrap();
            ends.push(bytes.len());
        }
        // Every cut inside the last frame keeps the first two records.
        for cut in ends[1] + 1..ends[2] {
            let (_, records, tail) = decode_segment(&bytes[..cut]).unwrap();
            assert_eq!(records, sample()[..2]);
            assert_eq!(tail, Tail::Torn(ends[1]), "cut at {cut}");
        }
        // A byte flipped in the middle record's variant is damage, not a torn tail.
        let mut bad = bytes.clone();
        bad[ends[0] + 1] = 0x7f;
        assert!(matches!(
            decode_segment(&bad),
            Err(FormatError::Damaged { offset, .. }) if offset == ends[0]
        ));
        assert_eq!(decode_segment(b"nope"), Err(FormatError::Magic));
    }

    #[test]
    fn the_world_hash_is_fixed_and_sees_every_field() {
        let e = QEntity {
            id: 4,
            kind: EntityKind::Avatar,
            pos: [10, -3],
            vel: [1, 0],
            fields: Default::default(),
        };
        let base = world_hash([e].iter());
        // FNV-1a of the 61 bytes the doc lists, computed apart from this code: the same
        // value in every build and on every machine.
        assert_eq!(u64::from_le_bytes(base), 0x262f_da33_7ec2_87f6);
        let mut moved = e;
        moved.pos[1] = -2;
        let mut scored = e;
        scored.fields[0] = 1;
        let mut npc = e;
        npc.kind = EntityKind::Npc;
        for other in [moved, scored, npc] {
            assert_ne!(world_hash([other].iter()), base);
        }
        assert_ne!(world_hash([].iter()), world_hash([e].iter()));
    }
}
