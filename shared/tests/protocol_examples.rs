//! The byte examples of docs/PROTOCOL.md, checked against the real codec.
//!
//! Each example is encoded here and compared with the hex string printed in the
//! document; the test also checks that the very same hex string appears in
//! docs/PROTOCOL.md, so the document cannot drift from the code unnoticed.
//! The other tests pin rules the document states (variant indexes, varint forms,
//! what a decoder refuses, the decode ceiling).

#![allow(clippy::unwrap_used)]

use glam::Vec2;
use tickcast_shared::codec::{
    decode_client, decode_server, encode_snapshot_body, encode_to_vec, write_snapshot,
};
use tickcast_shared::delta::{diff, DeltaBody, QEntity, Quantizer, World};
use tickcast_shared::{
    decode, Added, Changed, ClientMsg, DecodeError, EntityKind, Hello, Input, Ping, Pong,
    ServerMsg, SessionToken, Snapshot, Welcome, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_ROOM,
    PROTOCOL_VERSION, SUBPROTOCOL,
};

const MAX: usize = DEFAULT_MAX_MESSAGE_BYTES;

/// Lower-case hex, one space between bytes: the format used in PROTOCOL.md.
fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    s.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn protocol_md() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/PROTOCOL.md");
    std::fs::read_to_string(path).expect("docs/PROTOCOL.md is readable")
}

/// The example's bytes equal `expected`, `expected` is printed in PROTOCOL.md, and the
/// bytes decode back to the message.
fn check_client(msg: &ClientMsg, expected: &str) {
    let bytes = encode_to_vec(msg).unwrap();
    assert_eq!(hex(&bytes), expected, "encoding of {msg:?}");
    assert_eq!(&decode::<ClientMsg>(&bytes, MAX).unwrap(), msg);
    assert_eq!(&decode_client(&bytes, MAX).unwrap(), msg);
    assert_in_doc(expected);
}

fn check_server(msg: &ServerMsg, expected: &str) {
    let bytes = encode_to_vec(msg).unwrap();
    assert_eq!(hex(&bytes), expected, "encoding of {msg:?}");
    assert_eq!(&decode_server(&bytes).unwrap(), msg);
    assert_eq!(&decode::<ServerMsg>(&bytes, MAX).unwrap(), msg);
    assert_in_doc(expected);
}

fn assert_in_doc(expected: &str) {
    let doc = protocol_md();
    let line = format!("hex: {expected}");
    assert!(
        doc.lines().any(|l| l.trim() == line),
        "docs/PROTOCOL.md must contain the line `{line}`"
    );
}

/// The session token of the examples: the `Welcome` hands it out, the resuming `Hello`
/// presents it. Its `fb` and `ff` show that a token's bytes are raw, not varints.
const TOKEN: SessionToken = [
    0x9e, 0x2f, 0x41, 0xc7, 0x08, 0xd3, 0x6a, 0xfb, 0x15, 0xe0, 0x77, 0x3c, 0xb9, 0x04, 0x5d, 0xff,
];
const TOKEN_HEX: &str = "9e 2f 41 c7 08 d3 6a fb 15 e0 77 3c b9 04 5d ff";

const HELLO_HEX: &str = "00 01 03 61 64 61 05 6c 6f 62 62 79 00";
const RESUME_HEX: &str = "00 01 03 61 64 61 05 6c 6f 62 62 79 01 \
    9e 2f 41 c7 08 d3 6a fb 15 e0 77 3c b9 04 5d ff";
const WELCOME_HEX: &str = "00 01 01 07 1e fb 2c 01 00 00 48 44 00 00 16 44 \
    9e 2f 41 c7 08 d3 6a fb 15 e0 77 3c b9 04 5d ff \
    00 00 80 3d";

/// Headings of the examples that the document prints over several `hex:` lines.
const RESUME_HEADING: &str =
    "### `Hello { protocol_version: 1, name: \"ada\", room: \"lobby\", resume: Some(";
const WELCOME_HEADING: &str = "### `Welcome {";

fn hello(resume: Option<SessionToken>) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: 1,
        name: "ada".into(),
        room: "lobby".into(),
        resume,
    })
}

fn welcome() -> ServerMsg {
    ServerMsg::Welcome(Welcome {
        protocol_version: 1,
        player_id: 1,
        entity_id: 7,
        tick_rate: 30,
        server_tick: 300,
        world_size: Vec2::new(800.0, 600.0),
        session_token: TOKEN,
        pos_quantum: 0.0625,
    })
}

#[test]
fn example_hello() {
    check_client(&hello(None), HELLO_HEX);
    assert_eq!(encode_to_vec(&hello(None)).unwrap().len(), 13);
}

#[test]
fn example_hello_resuming() {
    let msg = hello(Some(TOKEN));
    let bytes = encode_to_vec(&msg).unwrap();
    assert_eq!(bytes, unhex(RESUME_HEX));
    assert_eq!(bytes.len(), 29);
    assert_eq!(doc_hex_after(RESUME_HEADING), bytes);
    assert_eq!(decode_client(&bytes, MAX).unwrap(), msg);
    // The token is the 16 bytes after the tag, as they are.
    assert_eq!(hex(&bytes[13..]), TOKEN_HEX);
}

#[test]
fn example_welcome() {
    let msg = welcome();
    let bytes = encode_to_vec(&msg).unwrap();
    assert_eq!(bytes, unhex(WELCOME_HEX));
    assert_eq!(bytes.len(), 36);
    assert_eq!(doc_hex_after(WELCOME_HEADING), bytes);
    assert_eq!(decode_server(&bytes).unwrap(), msg);
    assert_eq!(decode::<ServerMsg>(&bytes, MAX).unwrap(), msg);
    assert_eq!(hex(&bytes[16..32]), TOKEN_HEX);
}

#[test]
fn example_input() {
    check_client(
        &ClientMsg::Input(Input {
            seq: 1,
            movement: Vec2::new(1.0, 0.0),
            buttons: 0,
        }),
        "01 01 00 00 80 3f 00 00 00 00 00",
    );
}

fn q(id: u32, kind: EntityKind, pos: [i32; 2], vel: [i32; 2]) -> QEntity {
    QEntity { id, kind, pos, vel }
}

/// The world of the keyframe example (tick 300): an Npc and the player's avatar.
fn world_300() -> Vec<QEntity> {
    vec![
        q(3, EntityKind::Npc, [160, 320], [2, -1]),
        q(7, EntityKind::Avatar, [1600, 800], [2, 0]),
    ]
}

/// The world of the delta example (tick 303): Npc 3 is gone, the avatar turned, Npc 12
/// spawned.
fn world_303() -> Vec<QEntity> {
    vec![
        q(7, EntityKind::Avatar, [1605, 801], [1, 1]),
        q(12, EntityKind::Npc, [4800, 3200], [-3, 1]),
    ]
}

fn keyframe_msg() -> Snapshot {
    Snapshot {
        tick: 300,
        base_tick: 0,
        last_input_seq: 42,
        removed: vec![],
        changed: vec![],
        added: vec![
            Added {
                id_gap: 3,
                kind: EntityKind::Npc,
                pos: [160, 320],
                vel: [2, -1],
            },
            Added {
                id_gap: 3,
                kind: EntityKind::Avatar,
                pos: [1600, 800],
                vel: [2, 0],
            },
        ],
    }
}

fn delta_msg() -> Snapshot {
    Snapshot {
        tick: 303,
        base_tick: 300,
        last_input_seq: 43,
        removed: vec![3],
        changed: vec![Changed {
            skip: 0,
            dpos: [-1, 1],
            dvel: [-1, 1],
        }],
        added: vec![Added {
            id_gap: 12,
            kind: EntityKind::Npc,
            pos: [4800, 3200],
            vel: [-3, 1],
        }],
    }
}

const KEYFRAME_HEX: &str = "01 fb 2c 01 00 2a 00 00 02 \
    03 00 fb 40 01 fb 80 02 04 01 \
    03 01 fb 80 0c fb 40 06 04 00";

const DELTA_HEX: &str = "01 fb 2f 01 fb 2c 01 2b 01 03 01 00 01 02 01 02 \
    01 0c 00 fb 80 25 fb 00 19 05 02";

/// The `hex:` lines of the first code block after the line starting with `heading`,
/// concatenated: a message the document prints over several lines.
fn doc_hex_after(heading: &str) -> Vec<u8> {
    let doc = protocol_md();
    let mut lines = doc
        .lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip_while(|l| l.trim() != "```")
        .skip(1);
    let mut bytes = Vec::new();
    for l in lines.by_ref().take_while(|l| l.trim() != "```") {
        let hex = l
            .trim()
            .strip_prefix("hex: ")
            .unwrap_or_else(|| panic!("non-hex line `{l}` in the example after `{heading}`"));
        bytes.extend(unhex(hex));
    }
    assert!(
        !bytes.is_empty(),
        "docs/PROTOCOL.md has no example after `{heading}`"
    );
    bytes
}

/// Encodes `s` as the server does (body once, header per player) and checks it against
/// the whole-message encoding and `expected`.
fn server_path_bytes(s: &Snapshot) -> Vec<u8> {
    let body = DeltaBody {
        removed: s.removed.clone(),
        changed: s.changed.clone(),
        added: s.added.clone(),
    };
    let mut encoded = Vec::new();
    encode_snapshot_body(&body, &mut encoded).unwrap();
    let mut out = Vec::new();
    write_snapshot(s.tick, s.base_tick, s.last_input_seq, &encoded, &mut out).unwrap();
    assert_eq!(out, encode_to_vec(&ServerMsg::Snapshot(s.clone())).unwrap());
    out
}

#[test]
fn example_keyframe() {
    let msg = keyframe_msg();
    // The server builds this body with `diff` against nothing.
    let mut body = DeltaBody::default();
    diff(None, 300, &world_300(), &mut body);
    assert_eq!(
        (&body.removed, &body.changed, &body.added),
        (&msg.removed, &msg.changed, &msg.added)
    );

    let bytes = server_path_bytes(&msg);
    assert_eq!(bytes, unhex(KEYFRAME_HEX));
    assert_eq!(bytes.len(), 29);
    assert_eq!(doc_hex_after("### Keyframe `Snapshot`"), bytes);
    let ServerMsg::Snapshot(back) = decode_server(&bytes).unwrap() else {
        panic!("not a snapshot")
    };
    assert_eq!(back, msg);

    let mut world = World::default();
    world.apply(&back).unwrap();
    assert_eq!(world.tick, Some(300));
    assert_eq!(world.entities, world_300());

    // The world units the document gives for it (quantum 1/16, 30 ticks per second).
    // Velocities within 1e-5: `Quantizer` divides by an f32 `1/30` (3.7499998), where the
    // document's `vel × pos_quantum × tick_rate` gives 3.75 exactly.
    let units = Quantizer::new(0.0625, 30);
    let close = |a: Vec2, b: Vec2| (a - b).abs().max_element() < 1e-5;
    let npc = units.dequantize(&world.entities[0]);
    assert_eq!(npc.pos, Vec2::new(10.0, 20.0));
    assert!(close(npc.vel, Vec2::new(3.75, -1.875)), "{npc:?}");
    let avatar = units.dequantize(&world.entities[1]);
    assert_eq!(avatar.pos, Vec2::new(100.0, 50.0));
    assert!(close(avatar.vel, Vec2::new(3.75, 0.0)), "{avatar:?}");
    // Quantising the document's world units gives the wire values back.
    for e in &world.entities {
        assert_eq!(units.quantize(&units.dequantize(e)), *e);
    }
}

#[test]
fn example_delta() {
    let msg = delta_msg();
    // The server builds this body with `diff` against the keyframe it wrote before.
    let mut body = DeltaBody::default();
    diff(Some((300, &world_300())), 303, &world_303(), &mut body);
    assert_eq!(
        (&body.removed, &body.changed, &body.added),
        (&msg.removed, &msg.changed, &msg.added)
    );

    let bytes = server_path_bytes(&msg);
    assert_eq!(bytes, unhex(DELTA_HEX));
    assert_eq!(bytes.len(), 27);
    assert_eq!(doc_hex_after("### Delta `Snapshot`"), bytes);
    let ServerMsg::Snapshot(back) = decode_server(&bytes).unwrap() else {
        panic!("not a snapshot")
    };
    assert_eq!(back, msg);

    let mut world = World::default();
    world.apply(&keyframe_msg()).unwrap();
    world.apply(&back).unwrap();
    assert_eq!(world.tick, Some(303));
    assert_eq!(world.entities, world_303());
    // Applied twice, or to a client without the base, the delta is refused.
    assert!(world.apply(&back).is_err());
    assert!(World::default().apply(&back).is_err());

    // An empty delta is the header alone: 11 bytes at tick 300, 15 at tick 100,000.
    let empty = DeltaBody::default();
    let header_only = |tick: u64| {
        let mut encoded = Vec::new();
        encode_snapshot_body(&empty, &mut encoded).unwrap();
        let mut out = Vec::new();
        write_snapshot(tick, tick - 1, 43, &encoded, &mut out).unwrap()
    };
    assert_eq!((header_only(300), header_only(100_000)), (11, 15));

    // Had the avatar kept moving as predicted (1606, 800), it would cost nothing.
    let mut straight = world_300();
    straight.remove(0);
    straight[0].pos = [1606, 800];
    diff(Some((300, &world_300()[1..])), 303, &straight, &mut body);
    assert_eq!(body.records(), 0);
}

#[test]
fn example_ping_pong() {
    check_client(
        &ClientMsg::Ping(Ping {
            nonce: 1_700_000_000_000,
        }),
        "02 fd 00 68 e5 cf 8b 01 00 00",
    );
    check_server(
        &ServerMsg::Pong(Pong {
            nonce: 1_700_000_000_000,
            server_tick: 70_000,
        }),
        "02 fd 00 68 e5 cf 8b 01 00 00 fc 70 11 01 00",
    );
}

#[test]
fn constants_match_the_document() {
    assert_eq!(SUBPROTOCOL, "tickcast.v1");
    assert_eq!(PROTOCOL_VERSION, 1);
    assert_eq!(DEFAULT_MAX_MESSAGE_BYTES, 65_536);
    assert_eq!(DEFAULT_ROOM, "lobby");
    assert_eq!(tickcast_shared::codec::DECODE_ALLOC_LIMIT, 16 * 1024 * 1024);
    assert_eq!(tickcast_shared::codec::CLIENT_ALLOC_LIMIT, 4 * 1024);
    assert_eq!(tickcast_shared::validate::MAX_NAME_BYTES, 32);
    assert_eq!(tickcast_shared::validate::MAX_ROOM_BYTES, 64);
}

#[test]
fn close_code_table_matches_the_document() {
    let doc = protocol_md();
    // The table lists exactly the codes of `DisconnectReason`, in ascending order.
    let section = &doc[doc.find("## 7. Close codes").unwrap()..doc.find("## 8.").unwrap()];
    let rows: Vec<u16> = section
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" | ").next()?.parse().ok())
        .collect();
    let mut codes: Vec<u16> = tickcast_shared::DisconnectReason::ALL
        .iter()
        .map(|r| r.code())
        .collect();
    codes.sort_unstable();
    assert_eq!(rows, codes, "close-code rows of docs/PROTOCOL.md section 7");
    for r in tickcast_shared::DisconnectReason::ALL {
        let row = format!("| {} | `{:?}` |", r.code(), r);
        let line = doc
            .lines()
            .find(|l| l.starts_with(&row))
            .unwrap_or_else(|| panic!("docs/PROTOCOL.md has no close-code row starting `{row}`"));
        assert!(
            line.contains(&format!("`{}`", r.reason())),
            "row for {r:?} must quote the reason `{}`",
            r.reason()
        );
    }
}

/// The varint table of the document, value by value.
#[test]
fn varint_forms() {
    let cases: [(u64, &str); 8] = [
        (0, "00"),
        (250, "fa"),
        (251, "fb fb 00"),
        (300, "fb 2c 01"),
        (65_535, "fb ff ff"),
        (65_536, "fc 00 00 01 00"),
        (4_294_967_295, "fc ff ff ff ff"),
        (4_294_967_296, "fd 00 00 00 00 01 00 00 00"),
    ];
    for (v, expected) in cases {
        assert_eq!(hex(&encode_to_vec(&v).unwrap()), expected, "u64 {v}");
        assert_eq!(decode::<u64>(&unhex(expected), MAX).unwrap(), v);
    }
    // The same value has the same encoding whatever the width of the field.
    assert_eq!(encode_to_vec(&300u16).unwrap(), unhex("fb 2c 01"));
    assert_eq!(encode_to_vec(&300u32).unwrap(), unhex("fb 2c 01"));
    // A marker wider than the field is refused: 252 (four bytes) in a u16 field.
    assert!(decode::<u16>(&unhex("fc 2c 01 00 00"), MAX).is_err());
    // 253 in a u32 field.
    assert!(decode::<u32>(&unhex("fd 2c 01 00 00 00 00 00 00"), MAX).is_err());
    // 254 and 255 are never valid in a tickcast message.
    for marker in [0xfe, 0xff] {
        let mut bytes = vec![marker];
        bytes.extend_from_slice(&[0; 16]);
        assert!(decode::<u64>(&bytes, MAX).is_err());
    }
    // Longer-than-needed forms are accepted by this decoder (not canonical, never sent).
    assert_eq!(decode::<u32>(&unhex("fb 05 00"), MAX).unwrap(), 5);
}

/// The zig-zag table of the document: signed `i32` fields.
#[test]
fn zigzag_forms() {
    let cases: [(i32, &str); 12] = [
        (0, "00"),
        (-1, "01"),
        (1, "02"),
        (-2, "03"),
        (125, "fa"),
        (-125, "f9"),
        (-126, "fb fb 00"),
        (126, "fb fc 00"),
        (-32_768, "fb ff ff"),
        (32_768, "fc 00 00 01 00"),
        (i32::MAX, "fc fe ff ff ff"),
        (i32::MIN, "fc ff ff ff ff"),
    ];
    for (v, expected) in cases {
        assert_eq!(hex(&encode_to_vec(&v).unwrap()), expected, "i32 {v}");
        assert_eq!(decode::<i32>(&unhex(expected), MAX).unwrap(), v);
        let z = if v < 0 {
            !(v as u32) * 2 + 1
        } else {
            (v as u32) * 2
        };
        assert_eq!(
            z,
            ((v << 1) ^ (v >> 31)) as u32,
            "the zig-zag formula of the document"
        );
        assert_eq!(encode_to_vec(&v).unwrap(), encode_to_vec(&z).unwrap());
    }
    // An `[i32; 2]` is two varints, no length prefix.
    assert_eq!(hex(&encode_to_vec(&[160i32, -1]).unwrap()), "fb 40 01 01");
    // `fd` (eight bytes) is refused in an i32 field.
    assert!(decode::<i32>(&unhex("fd 00 00 00 00 00 00 00 00"), MAX).is_err());
}

#[test]
fn strings_are_length_prefixed_utf8() {
    // Hello: version 1, name "ada", room "", resume none.
    let ok = unhex("00 01 03 61 64 61 00 00");
    assert_eq!(
        decode::<ClientMsg>(&ok, MAX).unwrap(),
        ClientMsg::Hello(Hello {
            protocol_version: 1,
            name: "ada".into(),
            room: String::new(),
            resume: None,
        })
    );
    // Invalid UTF-8 in the name.
    let bad = unhex("00 01 02 c3 28 00 00");
    assert!(matches!(
        decode::<ClientMsg>(&bad, MAX),
        Err(DecodeError::Malformed(_))
    ));
    // A 300-byte string has a three-byte length prefix.
    let long = "x".repeat(300);
    let bytes = encode_to_vec(&long).unwrap();
    assert_eq!(&bytes[..3], &unhex("fb 2c 01")[..]);
    assert_eq!(bytes.len(), 303);
}

#[test]
fn unknown_variants_are_refused() {
    // ClientMsg has 3 variants (0..=2), ServerMsg 3 (0..=2), EntityKind 2 (0..=1).
    assert!(decode::<ClientMsg>(&unhex("03 00"), MAX).is_err());
    assert!(decode_server(&unhex("03 00")).is_err());
    // A keyframe with one added entity whose kind is 2.
    let mut bytes = unhex("01 01 00 00 00 00 01 05 02 00 00 00 00");
    assert!(matches!(
        decode_server(&bytes),
        Err(DecodeError::Malformed(_))
    ));
    bytes[8] = 1;
    assert!(decode_server(&bytes).is_ok());
}

/// `Option` (section 4): a tag byte 0 or 1, then the value for 1. Any other tag, or a
/// token shorter than 16 bytes, makes the message invalid.
#[test]
fn option_tags_and_token_length() {
    let mut bytes = unhex(RESUME_HEX);
    for tag in [2u8, 0x7f, 0xfb, 0xff] {
        bytes[12] = tag;
        assert!(matches!(
            decode_client(&bytes, MAX),
            Err(DecodeError::Malformed(_))
        ));
    }
    // Tag 0 followed by a token: a valid Hello, then 16 bytes too many.
    bytes[12] = 0;
    assert!(matches!(
        decode_client(&bytes, MAX),
        Err(DecodeError::TrailingBytes { extra: 16 })
    ));
    // Tag 1 with 15 bytes of token.
    bytes[12] = 1;
    assert!(decode_client(&bytes[..bytes.len() - 1], MAX).is_err());
    assert_eq!(decode_client(&bytes, MAX).unwrap(), hello(Some(TOKEN)));
    // Tag 1 with nothing after it.
    assert!(decode_client(&bytes[..13], MAX).is_err());
}

#[test]
fn empty_message_is_refused() {
    assert!(decode::<ClientMsg>(&[], MAX).is_err());
    assert!(decode_server(&[]).is_err());
}

/// What one decode claims against the ceiling, as the document says (bincode charges the
/// in-memory width of every decoded value): 48 bytes for the snapshot header (variant 4,
/// two ticks 8 + 8, `last_input_seq` 4, three list lengths 8 each), then 4 per removed id,
/// 20 per changed entry and 24 per added entity. Pinned at exact boundaries with a small
/// ceiling (the codec's configuration otherwise), then once at the real 16 MiB.
#[test]
fn decode_ceiling_in_records() {
    fn fits<const N: usize>(msg: &[u8]) -> bool {
        let config = bincode::config::standard().with_limit::<N>();
        match bincode::serde::decode_from_slice::<ServerMsg, _>(msg, config) {
            Ok(_) => true,
            Err(bincode::error::DecodeError::LimitExceeded) => false,
            Err(e) => panic!("{e}"),
        }
    }
    fn encode(removed: usize, changed: usize, added: usize) -> Vec<u8> {
        let body = DeltaBody {
            removed: vec![0; removed],
            changed: vec![
                Changed {
                    skip: 0,
                    dpos: [0, 0],
                    dvel: [0, 0]
                };
                changed
            ],
            added: vec![
                Added {
                    id_gap: 0,
                    kind: EntityKind::Npc,
                    pos: [0, 0],
                    vel: [0, 0]
                };
                added
            ],
        };
        let mut encoded = Vec::new();
        encode_snapshot_body(&body, &mut encoded).unwrap();
        let mut msg = Vec::new();
        write_snapshot(1, 0, 0, &encoded, &mut msg).unwrap();
        msg
    }
    assert!(fits::<48>(&encode(0, 0, 0)));
    assert!(!fits::<47>(&encode(0, 0, 0)));
    assert!(fits::<{ 48 + 4 * 3 }>(&encode(3, 0, 0)));
    assert!(!fits::<{ 48 + 4 * 3 - 1 }>(&encode(3, 0, 0)));
    assert!(fits::<{ 48 + 20 * 3 }>(&encode(0, 3, 0)));
    assert!(!fits::<{ 48 + 20 * 3 - 1 }>(&encode(0, 3, 0)));
    assert!(fits::<{ 48 + 24 * 3 }>(&encode(0, 0, 3)));
    assert!(!fits::<{ 48 + 24 * 3 - 1 }>(&encode(0, 0, 3)));
    assert!(fits::<{ 48 + 4 + 20 + 24 }>(&encode(1, 1, 1)));
    assert!(!fits::<{ 48 + 4 + 20 + 24 - 1 }>(&encode(1, 1, 1)));

    // The real ceiling: a keyframe of 699,048 entities decodes, one more does not. The
    // bytes are built by hand (the encoder is checked above): header `01 01 00 00 00 00`,
    // the added count as `fc` + u32 LE, then 6 zero bytes per entity (all fields 0).
    let max_added = (tickcast_shared::codec::DECODE_ALLOC_LIMIT - 48) / 24;
    assert_eq!(max_added, 699_048);
    let keyframe = |n: usize| {
        let mut msg = unhex("01 01 00 00 00 00 fc");
        msg.extend_from_slice(&u32::try_from(n).unwrap().to_le_bytes());
        msg.resize(msg.len() + 6 * n, 0);
        msg
    };
    assert_eq!(keyframe(65_536), encode(0, 0, 65_536));
    // The configured ceiling is exactly 16 MiB (a string claims its length plus 8 for
    // the length prefix; cheap to decode, unlike 699,048 entities).
    const LIMIT: usize = tickcast_shared::codec::DECODE_ALLOC_LIMIT;
    let string = |n: usize| {
        let mut msg = vec![0xfc];
        msg.extend_from_slice(&u32::try_from(n).unwrap().to_le_bytes());
        msg.resize(msg.len() + n, b'x');
        msg
    };
    assert_eq!(
        decode::<String>(&string(LIMIT - 8), usize::MAX)
            .unwrap()
            .len(),
        LIMIT - 8
    );
    assert!(decode::<String>(&string(LIMIT - 7), usize::MAX).is_err());
    assert!(matches!(
        decode_server(&keyframe(max_added + 1)),
        Err(DecodeError::Malformed(
            bincode::error::DecodeError::LimitExceeded
        ))
    ));
}

/// What the largest valid `Hello` claims against the 4 KiB client ceiling (section 6):
/// variant 4, `protocol_version` 2, two length prefixes 8 each, 32 + 64 bytes of text,
/// the `Option` tag 1 and the token's 16 bytes: 135.
#[test]
fn decode_ceiling_of_the_largest_hello() {
    fn fits<const N: usize>(msg: &[u8]) -> bool {
        let config = bincode::config::standard().with_limit::<N>();
        match bincode::serde::decode_from_slice::<ClientMsg, _>(msg, config) {
            Ok(_) => true,
            Err(bincode::error::DecodeError::LimitExceeded) => false,
            Err(e) => panic!("{e}"),
        }
    }
    let largest = encode_to_vec(&ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: "n".repeat(tickcast_shared::validate::MAX_NAME_BYTES),
        room: "r".repeat(tickcast_shared::validate::MAX_ROOM_BYTES),
        resume: Some([0xff; 16]),
    }))
    .unwrap();
    assert!(fits::<135>(&largest));
    assert!(!fits::<134>(&largest));
    assert!(decode_client(&largest, MAX).is_ok());
}

/// Runs `script` in node and returns its output; `None` when node is not installed.
fn run_node(script: &str) -> Option<std::process::Output> {
    use std::io::Write as _;
    let child = std::process::Command::new("node")
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running node: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

/// The JavaScript appendix of the document, run in node against the byte examples: it
/// must decode them, apply the keyframe and the delta to the worlds the document states,
/// refuse the delta a second time, and encode the client examples byte for byte. Then the
/// same run with one wrong byte in an expectation must fail, or the first run proved
/// nothing.
///
/// Without node this is not a pass: in CI (`CI=true`) it fails, so that a CI image
/// without node cannot turn the check off unnoticed; elsewhere it says loudly on stderr
/// that it skipped.
#[test]
fn javascript_appendix_runs_the_examples() {
    let doc = protocol_md();
    let appendix = &doc[doc.find("## Appendix: a minimal JavaScript codec").unwrap()..];
    let start = appendix.find("```js\n").unwrap() + "```js\n".len();
    let code = &appendix[start..start + appendix[start..].find("```").unwrap()];
    let hex_of = |heading: &str| hex(&doc_hex_after(heading));
    let check = |hello: &str| {
        format!(
            r#"
const bytes = (h) => new Uint8Array(h.split(" ").map((b) => parseInt(b, 16))).buffer;
const hexOf = (u8) => [...u8].map((b) => b.toString(16).padStart(2, "0")).join(" ");
const eq = (a, b, what) => {{
  if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error(`${{what}}: ${{JSON.stringify(a)}} != ${{JSON.stringify(b)}}`);
}};
const welcome = decodeServerMsg(bytes("{welcome}"));
eq([welcome.type, welcome.entityId, welcome.tickRate, welcome.serverTick, welcome.posQuantum], ["Welcome", 7, 30, 300, 0.0625], "welcome");
eq(hexOf(welcome.sessionToken), "{token}", "session token");
let world = {{ tick: null, entities: [] }};
world = applySnapshot(world, decodeServerMsg(bytes("{keyframe}")));
eq(world, {{ tick: 300, entities: [
  {{ id: 3, kind: "Npc", pos: [160, 320], vel: [2, -1] }},
  {{ id: 7, kind: "Avatar", pos: [1600, 800], vel: [2, 0] }} ] }}, "keyframe");
eq(world.entities[0].vel[0] * welcome.posQuantum * welcome.tickRate, 3.75, "speed in units");
const delta = decodeServerMsg(bytes("{delta}"));
eq(delta.lastInputSeq, 43, "seq");
world = applySnapshot(world, delta);
eq(world, {{ tick: 303, entities: [
  {{ id: 7, kind: "Avatar", pos: [1605, 801], vel: [1, 1] }},
  {{ id: 12, kind: "Npc", pos: [4800, 3200], vel: [-3, 1] }} ] }}, "delta");
const before = JSON.stringify(world);
let refused = false;
try {{ applySnapshot(world, delta); }} catch (e) {{ refused = true; }}
eq([refused, JSON.stringify(world)], [true, before], "delta applied twice");
// Wrapping prediction: i32::MAX + 1 per tick for 3 ticks.
const edge = {{ tick: 1, entities: [{{ id: 0, kind: "Npc", pos: [2147483647, -2147483648], vel: [1, -1] }}] }};
const empty = {{ tick: 4, baseTick: 1, removed: [], changed: [], added: [] }};
eq(applySnapshot(edge, empty).entities[0].pos, [-2147483646, 2147483645], "wrapping");
eq(hexOf(encodeHello("ada", "lobby")), "{hello}", "hello");
eq(hexOf(encodeHello("ada", "lobby", welcome.sessionToken)), "{resume}", "hello resuming");
let truncated = false;
try {{ decodeServerMsg(bytes("{welcome}".split(" ").slice(0, 30).join(" "))); }} catch (e) {{ truncated = true; }}
eq(truncated, true, "truncated welcome refused");
eq(hexOf(encodeInput(1, 1.0, 0.0, 0)), "01 01 00 00 80 3f 00 00 00 00 00", "input");
eq(hexOf(encodePing(1700000000000)), "02 fd 00 68 e5 cf 8b 01 00 00", "ping");
console.log("ok");
"#,
            welcome = hex_of(WELCOME_HEADING),
            token = TOKEN_HEX,
            resume = hex_of(RESUME_HEADING),
            keyframe = hex_of("### Keyframe `Snapshot`"),
            delta = hex_of("### Delta `Snapshot`"),
        )
    };
    let script = format!("{code}\n{}", check(HELLO_HEX));
    let Some(out) = run_node(&script) else {
        let what = "node is not installed, so the JavaScript appendix of docs/PROTOCOL.md \
                    was not run";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what}: install nodejs (apt-get install -y nodejs)");
        }
        // Written to the stderr handle itself, which the test harness does not capture
        // (it captures `eprintln!`), so that the skip shows in a passing run.
        use std::io::Write as _;
        writeln!(
            std::io::stderr(),
            "SKIPPED: javascript_appendix_runs_the_examples: {what}; install nodejs \
             (apt-get install -y nodejs) to run it"
        )
        .unwrap();
        return;
    };
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "the JavaScript appendix failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The last byte of the Hello (no resume token: 00) made 01 in the expectation only.
    let wrong_hello = format!("{}01", HELLO_HEX.strip_suffix("00").unwrap());
    let out = run_node(&format!("{code}\n{}", check(&wrong_hello))).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && out.stdout.is_empty() && stderr.contains("Error: hello: "),
        "a wrong expected byte went unnoticed:\n{stderr}"
    );
}
