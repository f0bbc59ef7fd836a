//! The one way in and out of bytes: bincode 2 (serde) with a size limit on decode.
//!
//! Every call site goes through [`encode_into`] and [`decode_client`] /
//! [`decode_server`] (or the generic [`decode`]), so none can forget the limit or the
//! configuration. The configuration is bincode's `standard()`: little endian,
//! variable-length integers (a marker byte 251/252/253 announces a 2/4/8-byte integer,
//! see docs/PROTOCOL.md), `f32` as four bytes.
//!
//! Two limits guard a decode. The message size limit is checked before decoding. The
//! allocation limit is bincode's: it caps what the *decoded* values may claim, and
//! bincode reserves up to it when a length prefix asks, so it must be small where
//! messages are small. A forged 7-byte `Hello` claiming a 16 MB name would otherwise
//! allocate 16 MB before failing; client messages therefore decode under
//! [`CLIENT_ALLOC_LIMIT`], which is far above any valid one. Decoding must consume the whole message: trailing bytes are an error, since
//! they mean the peer and we disagree on the format.
//!
//! Snapshots are the one message the server sends to many players with mostly the same
//! bytes. [`encode_snapshot_body`] and [`write_snapshot`] split the encoding so the
//! entity list is encoded once per tick and only a few header bytes are per player,
//! while the result is byte-for-byte the encoding of [`ServerMsg::Snapshot`].

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use serde::{de::DeserializeOwned, Serialize};

use crate::delta::DeltaBody;
use crate::message::{ClientMsg, ServerMsg};

/// Ceiling on what decoding one server message may claim (strings, lists). bincode
/// counts the in-memory size of decoded values (24 bytes per entity), so this also
/// bounds a snapshot at about 699,000 entities.
pub const DECODE_ALLOC_LIMIT: usize = 16 << 20;

/// Ceiling for client messages: the largest valid one (a `Hello` with a 32-byte name
/// and a 64-byte room) claims well under 256 bytes.
pub const CLIENT_ALLOC_LIMIT: usize = 4 << 10;

type Config = Configuration<LittleEndian, Varint, Limit<DECODE_ALLOC_LIMIT>>;

const CONFIG: Config = bincode::config::standard().with_limit::<DECODE_ALLOC_LIMIT>();
const CLIENT_CONFIG: Configuration<LittleEndian, Varint, Limit<CLIENT_ALLOC_LIMIT>> =
    bincode::config::standard().with_limit::<CLIENT_ALLOC_LIMIT>();

/// Wire index of a snapshot without field changes (the v1 layout).
const SNAPSHOT_VARIANT: u32 = 1;

/// Wire index of a snapshot with field changes appended (the `wire` module).
const FIELD_SNAPSHOT_VARIANT: u32 = 4;

/// First byte of a body from [`encode_snapshot_body`]: which variant it needs.
const BODY_PLAIN: u8 = 0;
const BODY_WITH_FIELDS: u8 = 1;

/// Encoding failed. With the message types of this crate this only happens on a bug
/// (bincode has no reason to refuse them), but the error is typed rather than a panic.
#[derive(Debug, thiserror::Error)]
#[error("encode failed: {0}")]
pub struct EncodeError(#[from] bincode::error::EncodeError);

/// Why bytes did not decode into a message.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The message is longer than the limit; nothing was decoded.
    #[error("message of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Length of the message.
        len: usize,
        /// The limit in force.
        max: usize,
    },
    /// The bytes are not a valid encoding (truncated, unknown variant, bad UTF-8, ...).
    #[error("malformed message: {0}")]
    Malformed(#[from] bincode::error::DecodeError),
    /// A message decoded but bytes were left over.
    #[error("{extra} trailing bytes after the message")]
    TrailingBytes {
        /// How many bytes were not consumed.
        extra: usize,
    },
}

/// Appends the encoding of `msg` to `out` and returns how many bytes were written.
/// `out` is reused across calls by the caller, so steady-state encoding does not allocate.
///
/// # Errors
/// [`EncodeError`] if bincode refuses the value (not expected for protocol types).
pub fn encode_into<T: Serialize + ?Sized>(
    msg: &T,
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let before = out.len();
    bincode::serde::encode_into_std_write(msg, out, CONFIG)?;
    Ok(out.len() - before)
}

/// Decodes one whole message, refusing anything longer than `max_bytes` before looking
/// at it. Never panics, whatever the bytes.
///
/// # Errors
/// [`DecodeError`] says whether the message was too large, malformed or too long.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max_bytes: usize) -> Result<T, DecodeError> {
    decode_with(bytes, max_bytes, CONFIG)
}

/// Decodes one message from a client, as the server does: `max_bytes` is the message
/// size limit, and decoded values may claim at most [`CLIENT_ALLOC_LIMIT`].
///
/// # Errors
/// As [`decode`].
pub fn decode_client(bytes: &[u8], max_bytes: usize) -> Result<ClientMsg, DecodeError> {
    decode_with(bytes, max_bytes, CLIENT_CONFIG)
}

fn decode_with<T: DeserializeOwned, C: bincode::config::Config>(
    bytes: &[u8],
    max_bytes: usize,
    config: C,
) -> Result<T, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    let (msg, used) = bincode::serde::decode_from_slice(bytes, config)?;
    if used != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            extra: bytes.len() - used,
        });
    }
    Ok(msg)
}

/// Appends the shared part of a snapshot (removed, changed, added, and the field changes
/// if there are any) to `out`, behind one byte that tells [`write_snapshot`] which
/// snapshot variant the body needs. Done once per distinct body: every caught-up player
/// of a room shares one. The body is an intermediate, not a message: only
/// [`write_snapshot`] reads it.
///
/// # Errors
/// As [`encode_into`].
pub fn encode_snapshot_body(body: &DeltaBody, out: &mut Vec<u8>) -> Result<usize, EncodeError> {
    let before = out.len();
    if body.fields.is_empty() {
        out.push(BODY_PLAIN);
        encode_into(&(&body.removed, &body.changed, &body.added), out)?;
    } else {
        out.push(BODY_WITH_FIELDS);
        encode_into(
            &(&body.removed, &body.changed, &body.added, &body.fields),
            out,
        )?;
    }
    Ok(out.len() - before)
}

/// Appends one player's complete snapshot message to `out`: the per-player header
/// (variant, tick, base tick, last applied input) followed by a body from
/// [`encode_snapshot_body`]. The result decodes as [`ServerMsg::Snapshot`].
///
/// # Errors
/// As [`encode_into`].
pub fn write_snapshot(
    tick: u64,
    base_tick: u64,
    last_input_seq: u32,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, EncodeError> {
    let (variant, rest) = match body.split_first() {
        Some((&BODY_PLAIN, rest)) => (SNAPSHOT_VARIANT, rest),
        Some((&BODY_WITH_FIELDS, rest)) => (FIELD_SNAPSHOT_VARIANT, rest),
        _ => {
            return Err(EncodeError(bincode::error::EncodeError::Other(
                "not a body from encode_snapshot_body",
            )))
        }
    };
    let before = out.len();
    encode_into(&(variant, tick, base_tick, last_input_seq), out)?;
    out.extend_from_slice(rest);
    Ok(out.len() - before)
}

/// What a snapshot says before its entity lists: the fields [`write_snapshot`] writes
/// per player. Enough to account for a snapshot (its tick, whether it is a keyframe,
/// which input it acknowledges) without decoding or applying its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// [`crate::Snapshot::tick`].
    pub tick: u64,
    /// [`crate::Snapshot::base_tick`]: 0 for a keyframe.
    pub base_tick: u64,
    /// [`crate::Snapshot::last_input_seq`].
    pub last_input_seq: u32,
    /// Length of the header on the wire; the body (removed, changed, added and field
    /// changes) follows it.
    pub len: usize,
}

/// Reads the header of a whole server message without decoding the rest: `Ok(None)`
/// when the message is not a snapshot (a `Welcome`, `Pong` or game event, which the
/// caller decodes in full with [`decode_server`]). A load tool that does not rebuild
/// the world reads every snapshot this way: a few varints instead of allocating and
/// filling the entity lists. The body is not looked at, so a malformed body passes
/// here; only a full decode (and applying the delta) checks it.
///
/// # Errors
/// [`DecodeError::Malformed`] when the message ends inside the variant or the header
/// (an empty or truncated message) or a varint is invalid; [`DecodeError::TooLarge`]
/// beyond [`DECODE_ALLOC_LIMIT`], as [`decode_server`] would.
pub fn peek_snapshot_header(bytes: &[u8]) -> Result<Option<SnapshotHeader>, DecodeError> {
    if bytes.len() > DECODE_ALLOC_LIMIT {
        return Err(DecodeError::TooLarge {
            len: bytes.len(),
            max: DECODE_ALLOC_LIMIT,
        });
    }
    let (variant, used): (u32, usize) = bincode::serde::decode_from_slice(bytes, CONFIG)?;
    if variant != SNAPSHOT_VARIANT && variant != FIELD_SNAPSHOT_VARIANT {
        return Ok(None);
    }
    let rest = bytes.get(used..).unwrap_or_default();
    let ((tick, base_tick, last_input_seq), header): ((u64, u64, u32), usize) =
        bincode::serde::decode_from_slice(rest, CONFIG)?;
    Ok(Some(SnapshotHeader {
        tick,
        base_tick,
        last_input_seq,
        len: used + header,
    }))
}

/// Convenience for tests and tools: a message encoded into a fresh `Vec`.
///
/// # Errors
/// As [`encode_into`].
pub fn encode_to_vec<T: Serialize + ?Sized>(msg: &T) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode_into(msg, &mut out)?;
    Ok(out)
}

/// Decodes a server message with no practical size limit beyond [`DECODE_ALLOC_LIMIT`];
/// what clients use, since snapshots of big worlds exceed the inbound limit a server
/// applies to its players.
///
/// # Errors
/// As [`decode`].
pub fn decode_server(bytes: &[u8]) -> Result<ServerMsg, DecodeError> {
    decode(bytes, DECODE_ALLOC_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;
    use glam::Vec2;

    #[test]
    fn split_snapshot_equals_whole_encoding() {
        let body = DeltaBody {
            removed: vec![3, 0, 700],
            changed: vec![Changed {
                skip: 2,
                dpos: [1, -1],
                dvel: [0, 40],
            }],
            added: vec![Added {
                id_gap: 1001,
                kind: EntityKind::Avatar,
                pos: [8000, 16000],
                vel: [-53, 0],
            }],
            fields: vec![
                FieldChange {
                    skip: 0,
                    field: 0,
                    delta: -5,
                },
                FieldChange {
                    skip: 2,
                    field: 7,
                    delta: 300,
                },
            ],
        };
        let whole = encode_to_vec(&ServerMsg::Snapshot(Snapshot {
            tick: 1_234_567,
            base_tick: 1_234_566,
            last_input_seq: 99_999,
            removed: body.removed.clone(),
            changed: body.changed.clone(),
            added: body.added.clone(),
            fields: body.fields.clone(),
        }))
        .unwrap();
        let mut shared = Vec::new();
        encode_snapshot_body(&body, &mut shared).unwrap();
        let mut split = Vec::new();
        write_snapshot(1_234_567, 1_234_566, 99_999, &shared, &mut split).unwrap();
        assert_eq!(split, whole);
    }

    /// A snapshot message as the server builds it, with a few entities of each list.
    fn snapshot_message(tick: u64, base_tick: u64, seq: u32, fields: bool) -> Vec<u8> {
        let body = DeltaBody {
            removed: vec![4, 1],
            changed: vec![Changed {
                skip: 1,
                dpos: [-3, 250],
                dvel: [70_000, 0],
            }],
            added: vec![Added {
                id_gap: 300,
                kind: EntityKind::Npc,
                pos: [-1, 1 << 20],
                vel: [2, -2],
            }],
            fields: if fields {
                vec![FieldChange {
                    skip: 3,
                    field: 1,
                    delta: -9,
                }]
            } else {
                Vec::new()
            },
        };
        let mut shared = Vec::new();
        encode_snapshot_body(&body, &mut shared).unwrap();
        let mut out = Vec::new();
        write_snapshot(tick, base_tick, seq, &shared, &mut out).unwrap();
        out
    }

    #[test]
    fn snapshot_header_agrees_with_the_full_decoder() {
        // Keyframes and deltas, both variants, varints of every width.
        let cases = [
            (1, 0, 0, false),
            (250, 0, 7, true),
            (251, 250, 65_535, false),
            (70_000, 69_999, 65_536, true),
            (u64::MAX, u64::MAX - 1, u32::MAX, false),
        ];
        for (tick, base_tick, seq, fields) in cases {
            let bytes = snapshot_message(tick, base_tick, seq, fields);
            let header = peek_snapshot_header(&bytes).unwrap().unwrap();
            let ServerMsg::Snapshot(full) = decode_server(&bytes).unwrap() else {
                panic!("not a snapshot")
            };
            assert_eq!(
                (header.tick, header.base_tick, header.last_input_seq),
                (full.tick, full.base_tick, full.last_input_seq)
            );
            // The header is exactly what write_snapshot writes per player.
            let mut alone = Vec::new();
            encode_into(
                &((if fields { 4u32 } else { 1 }), tick, base_tick, seq),
                &mut alone,
            )
            .unwrap();
            assert_eq!(header.len, alone.len());
            assert_eq!(&bytes[..header.len], &alone[..]);
        }
    }

    #[test]
    fn snapshot_header_refuses_truncated_input() {
        let bytes = snapshot_message(70_000, 69_999, 65_536, true);
        let header = peek_snapshot_header(&bytes).unwrap().unwrap();
        for cut in 0..header.len {
            assert!(
                matches!(
                    peek_snapshot_header(&bytes[..cut]),
                    Err(DecodeError::Malformed(_))
                ),
                "cut at {cut}"
            );
        }
        // A header alone (an empty-body snapshot cut short) is still a header: the
        // body is what the full decoder checks.
        assert_eq!(
            peek_snapshot_header(&bytes[..header.len]).unwrap(),
            Some(header)
        );
        assert!(decode_server(&bytes[..header.len]).is_err());
    }

    #[test]
    fn other_messages_have_no_snapshot_header() {
        for msg in [
            ServerMsg::Pong(Pong {
                nonce: 1,
                server_tick: 2,
            }),
            ServerMsg::Event(GameEvent { payload: vec![1] }),
        ] {
            let bytes = encode_to_vec(&msg).unwrap();
            assert_eq!(peek_snapshot_header(&bytes).unwrap(), None);
        }
        // An invalid varint marker (255) is refused, as decode_server refuses it.
        assert!(peek_snapshot_header(&[255, 0]).is_err());
    }

    #[test]
    fn size_limit_is_checked_first() {
        let bytes = encode_to_vec(&ClientMsg::Ping(Ping { nonce: 7 })).unwrap();
        let err = decode::<ClientMsg>(&bytes, bytes.len() - 1).unwrap_err();
        assert!(matches!(err, DecodeError::TooLarge { .. }));
        assert_eq!(
            decode::<ClientMsg>(&bytes, bytes.len()).unwrap(),
            ClientMsg::Ping(Ping { nonce: 7 })
        );
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_to_vec(&ClientMsg::Ping(Ping { nonce: 7 })).unwrap();
        bytes.push(0);
        assert!(matches!(
            decode::<ClientMsg>(&bytes, 1024),
            Err(DecodeError::TrailingBytes { extra: 1 })
        ));
    }

    #[test]
    fn lying_length_prefix_does_not_allocate() {
        // Snapshot variant, tick 0, base 0, seq 0, then a u64 length of 2^62 removed ids.
        let mut bytes = vec![1, 0, 0, 0, 253];
        bytes.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(matches!(
            decode_server(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn a_forged_name_length_is_refused_by_the_client_limit() {
        // Hello, version 1, name length 16,000,000 (u32 marker 252), then nothing.
        let forged = [0x00, 0x01, 0xfc, 0x00, 0x24, 0xf4, 0x00];
        let err = decode_client(&forged, 64 * 1024).unwrap_err();
        let DecodeError::Malformed(inner) = err else {
            panic!("{err:?}")
        };
        assert!(
            matches!(inner, bincode::error::DecodeError::LimitExceeded),
            "{inner:?}"
        );
        // The largest valid Hello still decodes under the client limit.
        let hello = ClientMsg::Hello(Hello {
            protocol_version: 1,
            name: "n".repeat(crate::validate::MAX_NAME_BYTES),
            room: "r".repeat(crate::validate::MAX_ROOM_BYTES),
            resume: Some([0xff; 16]),
            auth_token: None,
        });
        assert_eq!(
            decode_client(&encode_to_vec(&hello).unwrap(), 1024).unwrap(),
            hello
        );
    }

    #[test]
    fn input_is_small() {
        let bytes = encode_to_vec(&ClientMsg::Input(Input {
            seq: 1,
            movement: Vec2::new(1.0, 0.0),
            buttons: 0,
            payload: InputPayload::default(),
        }))
        .unwrap();
        // Variant, seq, two f32, buttons: no payload, no byte for it.
        assert_eq!(bytes.len(), 1 + 1 + 8 + 1);
    }
}
