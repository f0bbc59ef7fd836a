//! The byte examples of docs/PROTOCOL.md, checked against the real codec.
//!
//! Each example is encoded here and compared with the hex string printed in the
//! document; the test also checks that the very same hex string appears in
//! docs/PROTOCOL.md, so the document cannot drift from the code unnoticed.
//! The other tests pin rules the document states (variant indexes, varint forms,
//! what a decoder refuses, the decode ceiling).

#![allow(clippy::unwrap_used)]

use glam::Vec2;
use tickcast_shared::codec::{decode_server, encode_snapshot_body, encode_to_vec, write_snapshot};
use tickcast_shared::{
    decode, ClientMsg, DecodeError, EntityKind, EntityState, Hello, Input, Ping, Pong, ServerMsg,
    Snapshot, Welcome, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_ROOM, PROTOCOL_VERSION, SUBPROTOCOL,
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

#[test]
fn example_hello() {
    check_client(
        &ClientMsg::Hello(Hello {
            protocol_version: 1,
            name: "ada".into(),
            room: "lobby".into(),
        }),
        "00 01 03 61 64 61 05 6c 6f 62 62 79",
    );
}

#[test]
fn example_welcome() {
    check_server(
        &ServerMsg::Welcome(Welcome {
            protocol_version: 1,
            player_id: 1,
            entity_id: 7,
            tick_rate: 30,
            server_tick: 300,
            world_size: Vec2::new(800.0, 600.0),
        }),
        "00 01 01 07 1e fb 2c 01 00 00 48 44 00 00 16 44",
    );
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

fn example_snapshot_msg() -> ServerMsg {
    ServerMsg::Snapshot(Snapshot {
        tick: 300,
        last_input_seq: 42,
        entities: vec![
            EntityState {
                id: 3,
                kind: EntityKind::Npc,
                pos: Vec2::new(10.0, 20.0),
                vel: Vec2::new(0.5, -1.0),
            },
            EntityState {
                id: 7,
                kind: EntityKind::Avatar,
                pos: Vec2::new(100.0, 50.0),
                vel: Vec2::new(0.0, 0.0),
            },
        ],
    })
}

const SNAPSHOT_HEX: &str = "01 fb 2c 01 2a 02 \
    03 00 00 00 20 41 00 00 a0 41 00 00 00 3f 00 00 80 bf \
    07 01 00 00 c8 42 00 00 48 42 00 00 00 00 00 00 00 00";

#[test]
fn example_snapshot() {
    let msg = example_snapshot_msg();
    let bytes = encode_to_vec(&msg).unwrap();
    assert_eq!(bytes, unhex(SNAPSHOT_HEX));
    assert_eq!(bytes.len(), 42);
    assert_eq!(decode_server(&bytes).unwrap(), msg);
    // The document prints the snapshot over three lines: header, entity 3, entity 7.
    let doc = protocol_md();
    for part in [
        "hex: 01 fb 2c 01 2a 02",
        "hex: 03 00 00 00 20 41 00 00 a0 41 00 00 00 3f 00 00 80 bf",
        "hex: 07 01 00 00 c8 42 00 00 48 42 00 00 00 00 00 00 00 00",
    ] {
        assert!(
            doc.lines().any(|l| l.trim() == part),
            "docs/PROTOCOL.md must contain the line `{part}`"
        );
    }
}

#[test]
fn example_snapshot_split_encoding() {
    // What the server does: the entity list once per tick, a header per player.
    let ServerMsg::Snapshot(s) = example_snapshot_msg() else {
        unreachable!()
    };
    let mut body = Vec::new();
    encode_snapshot_body(&s.entities, &mut body).unwrap();
    let mut out = Vec::new();
    write_snapshot(s.tick, s.last_input_seq, &body, &mut out).unwrap();
    assert_eq!(out, unhex(SNAPSHOT_HEX));
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
    assert_eq!(tickcast_shared::validate::MAX_NAME_BYTES, 32);
    assert_eq!(tickcast_shared::validate::MAX_ROOM_BYTES, 64);
}

#[test]
fn close_code_table_matches_the_document() {
    let doc = protocol_md();
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

#[test]
fn strings_are_length_prefixed_utf8() {
    let ok = unhex("00 01 03 61 64 61 00");
    assert_eq!(
        decode::<ClientMsg>(&ok, MAX).unwrap(),
        ClientMsg::Hello(Hello {
            protocol_version: 1,
            name: "ada".into(),
            room: String::new(),
        })
    );
    // Invalid UTF-8 in the name.
    let bad = unhex("00 01 02 c3 28 00");
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
    // A snapshot with one entity whose kind is 2.
    let mut bytes = unhex("01 00 00 01 05 02");
    bytes.extend_from_slice(&[0; 16]);
    assert!(matches!(
        decode_server(&bytes),
        Err(DecodeError::Malformed(_))
    ));
    bytes[5] = 1;
    assert!(decode_server(&bytes).is_ok());
}

#[test]
fn empty_message_is_refused() {
    assert!(decode::<ClientMsg>(&[], MAX).is_err());
    assert!(decode_server(&[]).is_err());
}

/// The 16 MiB decode ceiling counts 24 bytes for the snapshot header and 24 bytes per
/// entity (bincode counts the in-memory width of every decoded value), so the largest
/// snapshot `decode_server` accepts has 699,049 entities.
#[test]
fn decode_ceiling_in_entities() {
    let max_entities = (tickcast_shared::codec::DECODE_ALLOC_LIMIT - 24) / 24;
    assert_eq!(max_entities, 699_049);
    let e = EntityState {
        id: 1,
        kind: EntityKind::Npc,
        pos: Vec2::ZERO,
        vel: Vec2::ZERO,
    };
    let mut body = Vec::new();
    encode_snapshot_body(&vec![e; max_entities], &mut body).unwrap();
    let mut ok = Vec::new();
    write_snapshot(1, 1, &body, &mut ok).unwrap();
    match decode_server(&ok).unwrap() {
        ServerMsg::Snapshot(s) => assert_eq!(s.entities.len(), max_entities),
        other => panic!("decoded {other:?}"),
    }
    body.clear();
    encode_snapshot_body(&vec![e; max_entities + 1], &mut body).unwrap();
    let mut too_many = Vec::new();
    write_snapshot(1, 1, &body, &mut too_many).unwrap();
    assert!(matches!(
        decode_server(&too_many),
        Err(DecodeError::Malformed(
            bincode::error::DecodeError::LimitExceeded
        ))
    ));
}
