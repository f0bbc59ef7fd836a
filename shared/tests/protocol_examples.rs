//! The byte examples of docs/PROTOCOL.md, checked against the real codec.
//!
//! Each example is encoded here and compared with the hex string printed in the
//! document; the test also checks that the very same hex string appears in
//! docs/PROTOCOL.md, so the document cannot drift from the code unnoticed.
//! The other tests pin rules the document states (variant indexes, the short and long
//! forms of `Input` and `Snapshot`, varint forms, what a decoder refuses, the decode
//! ceiling, the fixed limits of section 6), and the JavaScript appendix is run in node
//! against the same bytes.

#![allow(clippy::unwrap_used)]

use glam::Vec2;
use tickcast_shared::codec::{
    decode_client, decode_server, encode_snapshot_body, encode_to_vec, write_snapshot,
    CLIENT_ALLOC_LIMIT,
};
use tickcast_shared::delta::{diff, DeltaBody, DeltaError, QEntity, Quantizer, World};
use tickcast_shared::message::MAX_FIELD_NAME_BYTES;
use tickcast_shared::payload::MAX_INPUT_PAYLOAD;
use tickcast_shared::{
    decode, Added, Changed, ClientMsg, DecodeError, EntityKind, FieldChange, FieldKind, FieldSpec,
    Fields, GameEvent, GameMessage, Hello, Input, InputPayload, Ping, Pong, ServerMsg,
    SessionToken, Snapshot, Welcome, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_ROOM, MAX_FIELDS,
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

const HELLO_HEX: &str = "00 02 03 61 64 61 05 6c 6f 62 62 79 00";
const RESUME_HEX: &str = "00 02 03 61 64 61 05 6c 6f 62 62 79 01 \
    9e 2f 41 c7 08 d3 6a fb 15 e0 77 3c b9 04 5d ff";
const WELCOME_HEX: &str = "00 02 01 07 1e fb 2c 01 00 00 48 44 00 00 16 44 \
    9e 2f 41 c7 08 d3 6a fb 15 e0 77 3c b9 04 5d ff \
    00 00 80 3d \
    03 74 61 67 \
    02 02 69 74 00 05 73 63 6f 72 65 03";
/// The short form: an `Input` without a payload, the version 1 layout.
const INPUT_HEX: &str = "01 01 00 00 80 3f 00 00 00 00 00";
/// The same input in the long form with an empty payload: valid, never sent.
const INPUT_LONG_EMPTY_HEX: &str = "04 01 00 00 80 3f 00 00 00 00 00 00";
/// The long form: `InputWithPayload`.
const INPUT_PAYLOAD_HEX: &str = "04 02 00 00 00 00 00 00 80 bf 01 03 2c 01 fb";
const MESSAGE_HEX: &str = "03 03 68 69 21";
const EVENT_HEX: &str = "03 02 01 07";
const PING_HEX: &str = "02 fd 00 68 e5 cf 8b 01 00 00";
const PONG_HEX: &str = "02 fd 00 68 e5 cf 8b 01 00 00 fc 70 11 01 00";

/// Headings of the examples that the document prints over several `hex:` lines.
const RESUME_HEADING: &str =
    "### `Hello { protocol_version: 2, name: \"ada\", room: \"lobby\", resume: Some(";
const WELCOME_HEADING: &str = "### `Welcome {";
const KEYFRAME_HEADING: &str = "### Keyframe `FieldSnapshot`";
const DELTA_HEADING: &str = "### Delta `FieldSnapshot`";
const PLAIN_DELTA_HEADING: &str = "### Delta `Snapshot`";

fn hello(resume: Option<SessionToken>) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: "ada".into(),
        room: "lobby".into(),
        resume,
        auth_token: None,
    })
}

/// The game of the examples, `tag`, declares two fields: whether the entity is "it",
/// and its score.
fn tag_fields() -> Vec<FieldSpec> {
    vec![
        FieldSpec {
            name: "it".into(),
            kind: FieldKind::Bool,
        },
        FieldSpec {
            name: "score".into(),
            kind: FieldKind::U16,
        },
    ]
}

fn welcome() -> ServerMsg {
    ServerMsg::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        player_id: 1,
        entity_id: 7,
        tick_rate: 30,
        server_tick: 300,
        world_size: Vec2::new(800.0, 600.0),
        session_token: TOKEN,
        pos_quantum: 0.0625,
        game: "tag".into(),
        fields: tag_fields(),
    })
}

fn input_with_payload() -> ClientMsg {
    // An aim angle of 300 degrees as a little-endian u16, then item 251: raw bytes.
    ClientMsg::Input(Input {
        seq: 2,
        movement: Vec2::new(0.0, -1.0),
        buttons: 1,
        payload: InputPayload::new(&[0x2c, 0x01, 0xfb]).unwrap(),
    })
}

#[test]
fn example_hello() {
    check_client(&hello(None), HELLO_HEX);
    assert_eq!(encode_to_vec(&hello(None)).unwrap().len(), 13);
}

/// The long form of `Hello`: the same fields, then a player token. The token here is a
/// stand-in of 5 bytes; a real one is a compact JWT of a few hundred.
const HELLO_TOKEN_HEX: &str = "05 02 03 61 64 61 05 6c 6f 62 62 79 00 05 68 2e 70 2e 73";

#[test]
fn example_hello_with_token() {
    let ClientMsg::Hello(plain) = hello(None) else {
        unreachable!()
    };
    let with_token = ClientMsg::Hello(Hello {
        auth_token: Some("h.p.s".into()),
        ..plain
    });
    check_client(&with_token, HELLO_TOKEN_HEX);
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
    assert_eq!(bytes.len(), 52);
    assert_eq!(doc_hex_after(WELCOME_HEADING), bytes);
    assert_eq!(decode_server(&bytes).unwrap(), msg);
    assert_eq!(decode::<ServerMsg>(&bytes, MAX).unwrap(), msg);
    assert_eq!(hex(&bytes[16..32]), TOKEN_HEX);
    // `game` and `fields` come last, after `pos_quantum`.
    assert_eq!(hex(&bytes[32..36]), "00 00 80 3d");
    assert_eq!(
        hex(&bytes[36..]),
        "03 74 61 67 02 02 69 74 00 05 73 63 6f 72 65 03"
    );
    // A game without fields: an empty list, one byte.
    let ServerMsg::Welcome(w) = msg else {
        unreachable!()
    };
    let plain = encode_to_vec(&ServerMsg::Welcome(Welcome {
        game: "arena".into(),
        fields: Vec::new(),
        ..w
    }))
    .unwrap();
    assert_eq!(hex(&plain[36..]), "05 61 72 65 6e 61 00");
}

/// The `FieldKind` table of section 5: index, name, and the range the document gives.
#[test]
fn field_kinds_are_numbered_as_documented() {
    let kinds = [
        (FieldKind::Bool, "00"),
        (FieldKind::U8, "01"),
        (FieldKind::I8, "02"),
        (FieldKind::U16, "03"),
        (FieldKind::I16, "04"),
        (FieldKind::I32, "05"),
    ];
    let doc = protocol_md();
    for (n, (kind, expected)) in kinds.into_iter().enumerate() {
        assert_eq!(hex(&encode_to_vec(&kind).unwrap()), expected);
        let row = format!("| {n} | `{kind:?}` |");
        assert!(
            doc.lines().any(|l| l.starts_with(&row)),
            "docs/PROTOCOL.md has no FieldKind row starting `{row}`"
        );
    }
    // Index 6 is no kind: the example Welcome with its last kind made 6 is malformed.
    let mut bytes = unhex(WELCOME_HEX);
    *bytes.last_mut().unwrap() = 6;
    assert!(matches!(
        decode_server(&bytes),
        Err(DecodeError::Malformed(_))
    ));
}

/// An input without a payload is the short form, 11 bytes, the version 1 layout; the
/// long form of the same input with an empty payload (which the document prints too)
/// decodes to the same input, through both decoders, and re-encodes to the short form.
#[test]
fn example_input() {
    let msg = ClientMsg::Input(Input {
        seq: 1,
        movement: Vec2::new(1.0, 0.0),
        buttons: 0,
        payload: InputPayload::default(),
    });
    check_client(&msg, INPUT_HEX);
    assert_eq!(unhex(INPUT_HEX).len(), 11);

    let long = unhex(INPUT_LONG_EMPTY_HEX);
    assert_eq!(long.len(), 12);
    assert_eq!(
        (long[0], &long[1..11], long[11]),
        (4, &unhex(INPUT_HEX)[1..], 0)
    );
    assert_eq!(decode_client(&long, MAX).unwrap(), msg);
    assert_eq!(decode::<ClientMsg>(&long, MAX).unwrap(), msg);
    assert_eq!(hex(&encode_to_vec(&msg).unwrap()), INPUT_HEX);
    assert_in_prose(INPUT_LONG_EMPTY_HEX);
}

/// An input with a payload is the long form, `InputWithPayload` (variant 4).
#[test]
fn example_input_with_payload() {
    check_client(&input_with_payload(), INPUT_PAYLOAD_HEX);
    assert_eq!(unhex(INPUT_PAYLOAD_HEX).len(), 15);
    assert_eq!(unhex(INPUT_PAYLOAD_HEX)[0], 4);
}

/// `hex` appears in the prose of docs/PROTOCOL.md, in backticks (an example that is not a
/// `hex:` line, such as a long form that an encoder never writes).
fn assert_in_prose(hex: &str) {
    let doc = protocol_md()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        doc.contains(&format!("`{hex}`")),
        "docs/PROTOCOL.md must print `{hex}`"
    );
}

/// `Input.payload` holds at most 32 bytes: 32 decode, 33 are refused by both decoders
/// (a malformed message, close 1007), whatever the bytes.
#[test]
fn input_payload_limit() {
    assert_eq!(MAX_INPUT_PAYLOAD, 32);
    // The example Input with its payload replaced by `n` bytes of 0xfb.
    let with = |n: u8| {
        let mut bytes = unhex(INPUT_PAYLOAD_HEX);
        bytes.truncate(11);
        bytes.push(n);
        bytes.extend(std::iter::repeat_n(0xfb, usize::from(n)));
        bytes
    };
    let full = with(32);
    let ClientMsg::Input(input) = decode_client(&full, MAX).unwrap() else {
        panic!("not an input")
    };
    assert_eq!(input.payload.as_bytes(), &[0xfb; 32][..]);
    // The long form with an empty payload is the same input as the short form.
    let mut short = with(0);
    assert_eq!(short.pop(), Some(0));
    short[0] = 1;
    assert_eq!(
        decode_client(&with(0), MAX).unwrap(),
        decode_client(&short, MAX).unwrap()
    );
    for bad in [33, 34, 250] {
        let bytes = with(bad);
        assert!(
            matches!(decode_client(&bytes, MAX), Err(DecodeError::Malformed(_))),
            "{bad} bytes"
        );
        assert!(decode::<ClientMsg>(&bytes, MAX).is_err(), "{bad} bytes");
    }
}

#[test]
fn example_game_message() {
    check_client(
        &ClientMsg::Message(GameMessage {
            payload: b"hi!".to_vec(),
        }),
        MESSAGE_HEX,
    );
}

#[test]
fn example_game_event() {
    check_server(
        &ServerMsg::Event(GameEvent {
            payload: vec![0x01, 0x07],
        }),
        EVENT_HEX,
    );
    // An empty payload is valid: the variant and a zero length.
    let empty = ServerMsg::Event(GameEvent { payload: vec![] });
    assert_eq!(encode_to_vec(&empty).unwrap(), [3, 0]);
    assert_eq!(decode_server(&[3, 0]).unwrap(), empty);
}

fn fields(it: i32, score: i32) -> Fields {
    let mut f = [0; MAX_FIELDS];
    f[0] = it;
    f[1] = score;
    f
}

fn q(id: u32, kind: EntityKind, pos: [i32; 2], vel: [i32; 2], fields: Fields) -> QEntity {
    QEntity {
        id,
        kind,
        pos,
        vel,
        fields,
    }
}

/// The world of the keyframe example (tick 300): an Npc, and the player's avatar, which
/// is "it" with a score of 300.
fn world_300() -> Vec<QEntity> {
    vec![
        q(3, EntityKind::Npc, [160, 320], [2, -1], fields(0, 0)),
        q(7, EntityKind::Avatar, [1600, 800], [2, 0], fields(1, 300)),
    ]
}

/// The world of the delta example (tick 303): Npc 3 is gone; the avatar turned, is no
/// longer "it" and scored 10; Npc 12 spawned and is "it".
fn world_303() -> Vec<QEntity> {
    vec![
        q(7, EntityKind::Avatar, [1605, 801], [1, 1], fields(0, 310)),
        q(12, EntityKind::Npc, [4800, 3200], [-3, 1], fields(1, 0)),
    ]
}

/// The world of the tick-304 example: the avatar stopped where the client predicts it;
/// Npc 12 moved as predicted; no field changed.
fn world_304() -> Vec<QEntity> {
    vec![
        q(7, EntityKind::Avatar, [1606, 802], [0, 0], fields(0, 310)),
        q(12, EntityKind::Npc, [4797, 3201], [-3, 1], fields(1, 0)),
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
        fields: vec![
            FieldChange {
                skip: 1,
                field: 0,
                delta: 1,
            },
            FieldChange {
                skip: 0,
                field: 1,
                delta: 300,
            },
        ],
    }
}

fn plain_delta_msg() -> Snapshot {
    Snapshot {
        tick: 304,
        base_tick: 303,
        last_input_seq: 44,
        removed: vec![],
        changed: vec![Changed {
            skip: 0,
            dpos: [0, 0],
            dvel: [-1, -1],
        }],
        added: vec![],
        fields: vec![],
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
        fields: vec![
            FieldChange {
                skip: 0,
                field: 0,
                delta: -1,
            },
            FieldChange {
                skip: 0,
                field: 1,
                delta: 10,
            },
            FieldChange {
                skip: 1,
                field: 0,
                delta: 1,
            },
        ],
    }
}

const KEYFRAME_HEX: &str = "04 fb 2c 01 00 2a 00 00 02 \
    03 00 fb 40 01 fb 80 02 04 01 \
    03 01 fb 80 0c fb 40 06 04 00 \
    02 01 00 02 00 01 fb 58 02";

const DELTA_HEX: &str = "04 fb 2f 01 fb 2c 01 2b 01 03 01 00 01 02 01 02 \
    01 0c 00 fb 80 25 fb 00 19 05 02 \
    03 00 00 01 00 01 14 01 00 02";

/// The delta at tick 304: no field change, so the short form (the version 1 layout).
const PLAIN_DELTA_HEX: &str = "01 fb 30 01 fb 2f 01 2c 00 01 00 00 00 01 01 00";
/// The same delta in the long form with an empty field list: valid, never sent.
const PLAIN_DELTA_LONG_HEX: &str = "04 fb 30 01 fb 2f 01 2c 00 01 00 00 00 01 01 00 00";
/// An empty delta at tick 304 on 303: the header and three empty lists.
const EMPTY_DELTA_HEX: &str = "01 fb 30 01 fb 2f 01 2c 00 00 00";

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

fn body_of(s: &Snapshot) -> DeltaBody {
    DeltaBody {
        removed: s.removed.clone(),
        changed: s.changed.clone(),
        added: s.added.clone(),
        fields: s.fields.clone(),
    }
}

/// Encodes `s` as the server does (body once, header per player) and checks it against
/// the whole-message encoding.
fn server_path_bytes(s: &Snapshot) -> Vec<u8> {
    let mut encoded = Vec::new();
    encode_snapshot_body(&body_of(s), &mut encoded).unwrap();
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
    assert_eq!(body, body_of(&msg));

    let bytes = server_path_bytes(&msg);
    assert_eq!(bytes, unhex(KEYFRAME_HEX));
    assert_eq!(bytes.len(), 38);
    assert_eq!(doc_hex_after(KEYFRAME_HEADING), bytes);
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
    assert_eq!(avatar.fields, fields(1, 300), "fields travel as they are");
    // Quantising the document's world units gives the wire values back.
    for e in &world.entities {
        assert_eq!(units.quantize(&units.dequantize(e)), *e);
    }

    // The same world with all fields 0 (a game without fields): the short form, variant 1
    // and the same bytes up to the last entity, 29 in all.
    let zero: Vec<QEntity> = world_300()
        .into_iter()
        .map(|e| QEntity {
            fields: [0; MAX_FIELDS],
            ..e
        })
        .collect();
    diff(None, 300, &zero, &mut body);
    let plain = server_path_bytes(&Snapshot {
        fields: vec![],
        ..msg
    });
    assert_eq!(
        body,
        DeltaBody {
            fields: vec![],
            ..body_of(&keyframe_msg())
        }
    );
    assert_eq!(plain.len(), 29);
    assert_eq!((plain[0], &plain[1..]), (1, &bytes[1..29]));
}

#[test]
fn example_delta() {
    let msg = delta_msg();
    // The server builds this body with `diff` against the keyframe it wrote before.
    let mut body = DeltaBody::default();
    diff(Some((300, &world_300())), 303, &world_303(), &mut body);
    assert_eq!(body, body_of(&msg));

    let bytes = server_path_bytes(&msg);
    assert_eq!(bytes, unhex(DELTA_HEX));
    assert_eq!(bytes.len(), 37);
    assert_eq!(doc_hex_after(DELTA_HEADING), bytes);
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

    // An empty delta is a short-form header with three empty lists: 11 bytes at tick
    // 300, 15 at tick 100,000, as section 5.1 says; the body is its tag byte and the
    // three counts.
    let empty = DeltaBody::default();
    let header_only = |tick: u64| {
        let mut encoded = Vec::new();
        assert_eq!(encode_snapshot_body(&empty, &mut encoded).unwrap(), 1 + 3);
        let mut out = Vec::new();
        write_snapshot(tick, tick - 1, 43, &encoded, &mut out).unwrap()
    };
    assert_eq!((header_only(300), header_only(100_000)), (11, 15));

    // Had the avatar kept moving as predicted (1606, 800) with the same fields, it would
    // cost nothing.
    let mut straight = world_300();
    straight.remove(0);
    straight[0].pos = [1606, 800];
    diff(Some((300, &world_300()[1..])), 303, &straight, &mut body);
    assert_eq!(body.records(), 0);
}

/// The short form of a snapshot: the tick-304 delta has no field change, so it is the
/// version 1 layout (variant 1, no `fields` list). The server builds it with `diff`; it
/// applies after the two other examples; its long form (variant 4, an empty list) and
/// the empty delta the document prints are what they say.
#[test]
fn example_plain_delta() {
    let msg = plain_delta_msg();
    let mut body = DeltaBody::default();
    diff(Some((303, &world_303())), 304, &world_304(), &mut body);
    assert_eq!(body, body_of(&msg));

    let bytes = server_path_bytes(&msg);
    assert_eq!(bytes, unhex(PLAIN_DELTA_HEX));
    assert_eq!(bytes.len(), 16);
    assert_eq!(doc_hex_after(PLAIN_DELTA_HEADING), bytes);
    assert_eq!(
        decode_server(&bytes).unwrap(),
        ServerMsg::Snapshot(msg.clone())
    );

    let mut world = World::default();
    world.apply(&keyframe_msg()).unwrap();
    world.apply(&delta_msg()).unwrap();
    let at_303 = world.clone();
    world.apply(&msg).unwrap();
    assert_eq!(world.tick, Some(304));
    assert_eq!(world.entities, world_304());

    // The long form: the same bytes behind variant 4, and an empty list.
    let long = unhex(PLAIN_DELTA_LONG_HEX);
    assert_eq!(long.len(), 17);
    assert_eq!((long[0], &long[1..16], long[16]), (4, &bytes[1..], 0));
    let ServerMsg::Snapshot(back) = decode_server(&long).unwrap() else {
        panic!("not a snapshot")
    };
    assert_eq!(back, msg);
    let mut again = at_303;
    again.apply(&back).unwrap();
    assert_eq!(again, world);
    assert_eq!(encode_to_vec(&ServerMsg::Snapshot(back)).unwrap(), bytes);
    assert_in_prose(PLAIN_DELTA_LONG_HEX);

    // Had the avatar kept going too: nothing to list.
    let mut kept_going = world_304();
    kept_going[0].vel = [1, 1];
    diff(Some((303, &world_303())), 304, &kept_going, &mut body);
    assert_eq!(body.records(), 0);
    let empty = server_path_bytes(&Snapshot {
        changed: vec![],
        ..msg
    });
    assert_eq!(hex(&empty), EMPTY_DELTA_HEX);
    assert_in_prose(EMPTY_DELTA_HEX);
}

/// The validity rules of section 5.1 step 5, on the delta example: each broken rule is
/// `BadField` with the index of the offending change, and the held world stays as it was.
#[test]
fn field_change_rules_of_the_document() {
    let mut held = World::default();
    held.apply(&keyframe_msg()).unwrap();
    let change = |skip, field, delta| FieldChange { skip, field, delta };
    let cases: [(Vec<FieldChange>, usize); 5] = [
        // Past the last entity: the world after step 4 holds two.
        (vec![change(0, 0, -1), change(2, 0, 1)], 1),
        // Field 8 does not exist (at most 8 fields, 0..=7).
        (vec![change(1, MAX_FIELDS as u8, 1)], 0),
        // The same field of one entity twice.
        (vec![change(0, 1, 1), change(0, 1, 1)], 1),
        // Fields of one entity going back.
        (vec![change(0, 1, 1), change(0, 0, 1)], 1),
        // A skip that overflows any index.
        (vec![change(1, 0, 1), change(u32::MAX, 0, 1)], 1),
    ];
    for (changes, bad) in cases {
        let s = Snapshot {
            fields: changes.clone(),
            ..delta_msg()
        };
        let mut w = held.clone();
        assert_eq!(w.apply(&s), Err(DeltaError::BadField(bad)), "{changes:?}");
        assert_eq!(w, held, "unchanged after {changes:?}");
    }
    // The same field again after moving on to another entity is fine, and a later field
    // of the same entity (skip 0) too.
    let s = Snapshot {
        fields: vec![change(0, 7, 5), change(1, 0, -3), change(0, 7, 5)],
        ..delta_msg()
    };
    let mut w = held.clone();
    w.apply(&s).unwrap();
    assert_eq!(
        w.entities.iter().map(|e| e.fields).collect::<Vec<_>>(),
        [[1, 300, 0, 0, 0, 0, 0, 5], [-3, 0, 0, 0, 0, 0, 0, 5]]
    );
    // Deltas wrap: Npc 12's field 0 goes to i32::MAX, then one more is i32::MIN.
    let mut w = held.clone();
    w.apply(&Snapshot {
        fields: vec![change(1, 0, i32::MAX)],
        ..delta_msg()
    })
    .unwrap();
    let next = Snapshot {
        tick: 304,
        base_tick: 303,
        last_input_seq: 43,
        removed: vec![],
        changed: vec![],
        added: vec![],
        fields: vec![change(1, 0, 1)],
    };
    w.apply(&next).unwrap();
    assert_eq!(w.entities[1].fields[0], i32::MIN);
}

/// `FieldChange.field` is a raw `u8`: a field index 251 is the one byte `fb`, not a
/// varint marker (it decodes, and `World::apply` then refuses it as `BadField`).
#[test]
fn field_index_is_a_raw_byte() {
    let s = Snapshot {
        tick: 2,
        base_tick: 1,
        last_input_seq: 0,
        removed: vec![],
        changed: vec![],
        added: vec![],
        fields: vec![FieldChange {
            skip: 0,
            field: 251,
            delta: -1,
        }],
    };
    let bytes = encode_to_vec(&ServerMsg::Snapshot(s.clone())).unwrap();
    assert_eq!(hex(&bytes), "04 02 01 00 00 00 00 01 00 fb 01");
    assert_eq!(
        decode_server(&bytes).unwrap(),
        ServerMsg::Snapshot(s.clone())
    );
    let mut w = World::default();
    w.apply(&keyframe_msg()).unwrap();
    w.tick = Some(1);
    assert_eq!(w.apply(&s), Err(DeltaError::BadField(0)));
}

#[test]
fn example_ping_pong() {
    check_client(
        &ClientMsg::Ping(Ping {
            nonce: 1_700_000_000_000,
        }),
        PING_HEX,
    );
    check_server(
        &ServerMsg::Pong(Pong {
            nonce: 1_700_000_000_000,
            server_tick: 70_000,
        }),
        PONG_HEX,
    );
}

#[test]
fn constants_match_the_document() {
    assert_eq!(SUBPROTOCOL, "tickcast.v2");
    assert_eq!(PROTOCOL_VERSION, 2);
    assert_eq!(DEFAULT_MAX_MESSAGE_BYTES, 65_536);
    assert_eq!(DEFAULT_ROOM, "lobby");
    assert_eq!(tickcast_shared::codec::DECODE_ALLOC_LIMIT, 16 * 1024 * 1024);
    assert_eq!(CLIENT_ALLOC_LIMIT, 4 * 1024);
    assert_eq!(tickcast_shared::validate::MAX_NAME_BYTES, 32);
    assert_eq!(tickcast_shared::validate::MAX_ROOM_BYTES, 64);
    assert_eq!(MAX_FIELDS, 8);
    assert_eq!(MAX_FIELD_NAME_BYTES, 32);
    assert_eq!(MAX_INPUT_PAYLOAD, 32);
    assert!(protocol_md().starts_with("# tickcast wire protocol, version 2\n"));
}

/// The cells of the row of the section 6 table whose first cell starts with `starts`.
fn limits_row(starts: &str) -> Vec<String> {
    let doc = protocol_md();
    let section = doc.split_once("\n## 6. Limits\n").unwrap().1;
    let section = &section[..section.find("\n## 7.").unwrap()];
    section
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .find(|cells| cells[0].starts_with(starts))
        .unwrap_or_else(|| panic!("no row {starts:?} in PROTOCOL.md section 6"))
}

/// The fixed limits of v2 that live in this crate are stated in the limits table with
/// the constant that enforces them (tests/defaults.rs checks the rows with flags).
#[test]
fn fixed_v2_limits_are_in_the_table() {
    let cases = [
        (
            "Input payload",
            format!("0–{MAX_INPUT_PAYLOAD} bytes"),
            "fixed (`MAX_INPUT_PAYLOAD`)",
        ),
        (
            "Entity fields",
            format!("0–{MAX_FIELDS}"),
            "fixed (`MAX_FIELDS`)",
        ),
        (
            "Field name",
            format!("1–{MAX_FIELD_NAME_BYTES} bytes of UTF-8"),
            "fixed (`MAX_FIELD_NAME_BYTES`)",
        ),
    ];
    for (row, default, flag) in cases {
        let cells = limits_row(row);
        assert_eq!(cells.len(), 4, "{cells:?}");
        assert_eq!(
            (&cells[1][..], &cells[2][..]),
            (&default[..], flag),
            "{row}"
        );
    }
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
    // A raw u8 is one byte whatever its value (251..=255 included).
    assert_eq!(encode_to_vec(&251u8).unwrap(), [0xfb]);
    assert_eq!(decode::<u8>(&[0xff], MAX).unwrap(), 255);
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
    // Hello: version 2, name "ada", room "", resume none.
    let ok = unhex("00 02 03 61 64 61 00 00");
    assert_eq!(
        decode::<ClientMsg>(&ok, MAX).unwrap(),
        ClientMsg::Hello(Hello {
            protocol_version: 2,
            name: "ada".into(),
            room: String::new(),
            resume: None,
            auth_token: None,
        })
    );
    // Invalid UTF-8 in the name.
    let bad = unhex("00 02 02 c3 28 00 00");
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

/// Byte strings (`Input.payload`, `GameMessage.payload`, `GameEvent.payload`) are a
/// length and the bytes as they are, like a string without the UTF-8 rule.
#[test]
fn byte_strings_are_length_prefixed_raw_bytes() {
    let raw: Vec<u8> = (0..=255).collect();
    let bytes = encode_to_vec(&ServerMsg::Event(GameEvent {
        payload: raw.clone(),
    }))
    .unwrap();
    assert_eq!(&bytes[..4], &unhex("03 fb 00 01")[..]);
    assert_eq!(&bytes[4..], &raw[..]);
    let bytes = encode_to_vec(&ClientMsg::Message(GameMessage {
        payload: vec![0xc3, 0x28],
    }))
    .unwrap();
    assert_eq!(hex(&bytes), "03 02 c3 28", "not UTF-8, and need not be");
    assert!(decode_client(&bytes, MAX).is_ok());
}

#[test]
fn unknown_variants_are_refused() {
    // On the wire ClientMsg has 6 variants (0..=5), ServerMsg 5 (0..=4), EntityKind 2.
    for six in ["06 00", "06 01 00 00 00 00 00 00 00 00 00"] {
        assert!(matches!(
            decode::<ClientMsg>(&unhex(six), MAX),
            Err(DecodeError::Malformed(_))
        ));
        assert!(matches!(
            decode_client(&unhex(six), MAX),
            Err(DecodeError::Malformed(_))
        ));
    }
    for five in ["05 00", "05 01 00 00 00 00 00 00 00 00 00"] {
        assert!(matches!(
            decode_server(&unhex(five)),
            Err(DecodeError::Malformed(_))
        ));
    }
    assert!(decode_client(&unhex("03 00"), MAX).is_ok());
    assert!(decode_server(&unhex("03 00")).is_ok());
    // Variant 4 of each direction, with an empty extra.
    assert!(decode_client(&unhex(INPUT_LONG_EMPTY_HEX), MAX).is_ok());
    assert!(decode_server(&unhex("04 01 00 00 00 00 00 00")).is_ok());
    // A keyframe with one added entity whose kind is 2, in both forms.
    let mut short = unhex("01 01 00 00 00 00 01 05 02 00 00 00 00");
    let mut long = unhex("04 01 00 00 00 00 01 05 02 00 00 00 00 00");
    for bytes in [&short, &long] {
        assert!(matches!(
            decode_server(bytes),
            Err(DecodeError::Malformed(_))
        ));
    }
    short[8] = 1;
    long[8] = 1;
    assert_eq!(
        decode_server(&short).unwrap(),
        decode_server(&long).unwrap()
    );
    // The long form without its fields count is truncated; the short form with one has a
    // trailing byte (the forms are told apart by the variant alone).
    assert!(matches!(
        decode_server(&long[..long.len() - 1]),
        Err(DecodeError::Malformed(_))
    ));
    let mut short_with_count = short.clone();
    short_with_count.push(0);
    assert!(matches!(
        decode_server(&short_with_count),
        Err(DecodeError::TrailingBytes { extra: 1 })
    ));
}

/// The variant tables of section 5, as the encoder numbers the variants: each row's
/// index is the first byte of a message of that form, both forms of `Input` and
/// `Snapshot` included, and the tables have no other rows.
#[test]
fn variant_tables_match_the_encoder() {
    let doc = protocol_md();
    let table = |heading: &str| -> Vec<String> {
        let at = doc.find(heading).unwrap();
        doc[at..]
            .lines()
            .skip(1)
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .skip(2)
            .map(|l| l.split('|').take(3).collect::<Vec<_>>().join("|") + "|")
            .collect()
    };
    let input = |payload: &[u8]| {
        ClientMsg::Input(Input {
            payload: InputPayload::new(payload).unwrap(),
            ..Input::default()
        })
    };
    let client = [
        ("Hello", hello(None)),
        ("Input", input(&[])),
        ("Ping", ClientMsg::Ping(Ping { nonce: 0 })),
        (
            "Message",
            ClientMsg::Message(GameMessage { payload: vec![] }),
        ),
        ("InputWithPayload", input(&[1])),
        (
            "HelloWithToken",
            decode_client(&unhex(HELLO_TOKEN_HEX), MAX).unwrap(),
        ),
    ];
    let mut rows = Vec::new();
    for (n, (name, msg)) in client.iter().enumerate() {
        assert_eq!(usize::from(encode_to_vec(msg).unwrap()[0]), n, "{name}");
        rows.push(format!("| {n} | `{name}` |"));
    }
    assert_eq!(table("### Client to server: `ClientMsg`"), rows);

    let plain = plain_delta_msg();
    let server = [
        ("Welcome", welcome()),
        ("Snapshot", ServerMsg::Snapshot(plain.clone())),
        (
            "Pong",
            ServerMsg::Pong(Pong {
                nonce: 0,
                server_tick: 0,
            }),
        ),
        ("Event", ServerMsg::Event(GameEvent { payload: vec![] })),
        ("FieldSnapshot", ServerMsg::Snapshot(delta_msg())),
    ];
    let mut rows = Vec::new();
    for (n, (name, msg)) in server.iter().enumerate() {
        assert_eq!(usize::from(encode_to_vec(msg).unwrap()[0]), n, "{name}");
        rows.push(format!("| {n} | `{name}` |"));
    }
    assert_eq!(table("### Server to client: `ServerMsg`"), rows);
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

/// True when `msg` decodes as a `T` under a ceiling of `N` bytes, false when only the
/// ceiling refuses it.
fn fits<T: serde::de::DeserializeOwned, const N: usize>(msg: &[u8]) -> bool {
    let config = bincode::config::standard().with_limit::<N>();
    match bincode::serde::decode_from_slice::<T, _>(msg, config) {
        Ok(_) => true,
        Err(bincode::error::DecodeError::LimitExceeded) => false,
        Err(e) => panic!("{e}"),
    }
}

/// What one decode claims against the ceiling, as the document says (bincode charges the
/// in-memory width of every decoded value): 48 bytes for the header of a `Snapshot` (4
/// for the variant index, two ticks 8 + 8, `last_input_seq` 4, three list lengths 8
/// each) and 56 for a `FieldSnapshot` (a fourth list length), then 4 per removed id, 20
/// per changed entry, 24 per added entity and 9 per field change. Pinned at exact
/// boundaries with a small ceiling (the codec's configuration otherwise), then once at
/// the real 16 MiB.
#[test]
fn decode_ceiling_in_records() {
    fn encode(removed: usize, changed: usize, added: usize, fields: usize) -> Vec<u8> {
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
            fields: vec![
                FieldChange {
                    skip: 0,
                    field: 0,
                    delta: 0
                };
                fields
            ],
        };
        let mut encoded = Vec::new();
        encode_snapshot_body(&body, &mut encoded).unwrap();
        let mut msg = Vec::new();
        write_snapshot(1, 0, 0, &encoded, &mut msg).unwrap();
        msg
    }
    type S = ServerMsg;
    // Without field changes: a `Snapshot`, 48 for the header.
    assert_eq!(encode(0, 0, 0, 0)[0], 1);
    assert!(fits::<S, 48>(&encode(0, 0, 0, 0)));
    assert!(!fits::<S, 47>(&encode(0, 0, 0, 0)));
    assert!(fits::<S, { 48 + 4 * 3 }>(&encode(3, 0, 0, 0)));
    assert!(!fits::<S, { 48 + 4 * 3 - 1 }>(&encode(3, 0, 0, 0)));
    assert!(fits::<S, { 48 + 20 * 3 }>(&encode(0, 3, 0, 0)));
    assert!(!fits::<S, { 48 + 20 * 3 - 1 }>(&encode(0, 3, 0, 0)));
    assert!(fits::<S, { 48 + 24 * 3 }>(&encode(0, 0, 3, 0)));
    assert!(!fits::<S, { 48 + 24 * 3 - 1 }>(&encode(0, 0, 3, 0)));
    assert!(fits::<S, { 48 + 4 + 20 + 24 }>(&encode(1, 1, 1, 0)));
    assert!(!fits::<S, { 48 + 4 + 20 + 24 - 1 }>(&encode(1, 1, 1, 0)));
    // With field changes: a `FieldSnapshot`, 56 for the header.
    assert_eq!(encode(0, 0, 0, 3)[0], 4);
    assert!(fits::<S, { 56 + 9 * 3 }>(&encode(0, 0, 0, 3)));
    assert!(!fits::<S, { 56 + 9 * 3 - 1 }>(&encode(0, 0, 0, 3)));
    assert!(fits::<S, { 56 + 4 + 20 + 24 + 9 }>(&encode(1, 1, 1, 1)));
    assert!(!fits::<S, { 56 + 4 + 20 + 24 + 9 - 1 }>(&encode(
        1, 1, 1, 1
    )));
    // A `FieldSnapshot` with an empty list (valid, never sent) claims the 56 too.
    let long_empty = unhex("04 01 00 00 00 00 00 00");
    assert!(fits::<S, 56>(&long_empty));
    assert!(!fits::<S, 55>(&long_empty));

    // The real ceiling: a keyframe of 699,048 entities decodes, one more does not. The
    // bytes are built by hand (the encoder is checked above): header `01 01 00 00 00 00`
    // (a `Snapshot`: all fields 0, so no list of field changes), the added count as
    // `fc` + u32 LE, then 6 zero bytes per entity.
    let max_added = (tickcast_shared::codec::DECODE_ALLOC_LIMIT - 48) / 24;
    assert_eq!(max_added, 699_048);
    assert_eq!(
        (tickcast_shared::codec::DECODE_ALLOC_LIMIT - 56) / 24,
        max_added,
        "the same number as a FieldSnapshot"
    );
    let keyframe = |n: usize| {
        let mut msg = unhex("01 01 00 00 00 00 fc");
        msg.extend_from_slice(&u32::try_from(n).unwrap().to_le_bytes());
        msg.resize(msg.len() + 6 * n, 0);
        msg
    };
    assert_eq!(keyframe(65_536), encode(0, 0, 65_536, 0));
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
    let doc = protocol_md()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        doc.contains("A `Snapshot` claims 48 bytes")
            && doc.contains("a `FieldSnapshot` 56")
            && doc.contains("**699,048 entities**"),
        "section 6 states what both forms of a snapshot claim"
    );
}

/// What client messages claim against the 4 KiB client ceiling (section 6): the largest
/// `Hello` (4 for the variant index, `protocol_version` 2, two length prefixes 8 each,
/// 32 + 64 bytes of text, the `Option` tag 1 and the token's 16 bytes) 135; an `Input`
/// (variant index 4, `seq` 4, two `f32` 8, `buttons` 2) 18; an `InputWithPayload` with
/// a full payload (the same 18, length 8, 32 bytes) 58; a `GameMessage` of n bytes
/// 12 + n, so at most 4,084 bytes decode whatever the server's game-message limit, as
/// the document says.
#[test]
fn decode_ceiling_of_client_messages() {
    type C = ClientMsg;
    let largest = encode_to_vec(&ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: "n".repeat(tickcast_shared::validate::MAX_NAME_BYTES),
        room: "r".repeat(tickcast_shared::validate::MAX_ROOM_BYTES),
        resume: Some([0xff; 16]),
        auth_token: None,
    }))
    .unwrap();
    assert!(fits::<C, 135>(&largest));
    assert!(!fits::<C, 134>(&largest));
    assert!(decode_client(&largest, MAX).is_ok());

    let input = encode_to_vec(&ClientMsg::Input(Input {
        payload: InputPayload::new(&[7; MAX_INPUT_PAYLOAD]).unwrap(),
        ..Input::default()
    }))
    .unwrap();
    assert_eq!(input[0], 4);
    assert!(fits::<C, 58>(&input));
    assert!(!fits::<C, 57>(&input));
    let plain = encode_to_vec(&ClientMsg::Input(Input::default())).unwrap();
    assert_eq!(plain[0], 1);
    assert!(fits::<C, 18>(&plain));
    assert!(!fits::<C, 17>(&plain));

    let message = |n: usize| {
        encode_to_vec(&ClientMsg::Message(GameMessage {
            payload: vec![0xaa; n],
        }))
        .unwrap()
    };
    assert!(fits::<C, { 12 + 1024 }>(&message(1024)));
    assert!(!fits::<C, { 12 + 1024 - 1 }>(&message(1024)));
    let most = CLIENT_ALLOC_LIMIT - 12;
    assert_eq!(most, 4084);
    assert!(decode_client(&message(most), MAX).is_ok());
    assert!(matches!(
        decode_client(&message(most + 1), MAX),
        Err(DecodeError::Malformed(
            bincode::error::DecodeError::LimitExceeded
        ))
    ));
    let doc = protocol_md()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        doc.contains("claims 12 + n bytes") && doc.contains("more than 4,084 bytes"),
        "section 6 states the GameMessage ceiling"
    );
    assert!(
        doc.contains("an `Input` 18 (") && doc.contains("payload 58 ("),
        "section 6 states what both forms of an input claim"
    );
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
/// must decode them (the `Welcome` with its fields, the snapshots in both forms, the
/// event), apply the keyframe and the two deltas, field changes included, to the worlds
/// the document states, decode the long form of the plain delta to the same snapshot,
/// refuse the delta a second time and field changes that break a rule (leaving the world
/// as it was), and encode the client examples byte for byte (an input without a payload
/// in the short form). Then the same run with one
/// wrong byte in an expectation must fail, or the first run proved nothing.
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
const throws = (f, what) => {{
  let threw = false;
  try {{ f(); }} catch (e) {{ threw = true; }}
  eq(threw, true, what);
}};
const f8 = (it, score) => [it, score, 0, 0, 0, 0, 0, 0];
const welcome = decodeServerMsg(bytes("{welcome}"));
eq([welcome.type, welcome.protocolVersion, welcome.entityId, welcome.tickRate, welcome.serverTick, welcome.posQuantum],
   ["Welcome", 2, 7, 30, 300, 0.0625], "welcome");
eq([welcome.game, welcome.fields], ["tag", [{{ name: "it", kind: "Bool" }}, {{ name: "score", kind: "U16" }}]], "welcome fields");
eq(hexOf(welcome.sessionToken), "{token}", "session token");
const badKind = "{welcome}".split(" "); badKind[badKind.length - 1] = "06";
throws(() => decodeServerMsg(bytes(badKind.join(" "))), "field kind 6 refused");
let world = {{ tick: null, entities: [] }};
world = applySnapshot(world, decodeServerMsg(bytes("{keyframe}")));
eq(world, {{ tick: 300, entities: [
  {{ id: 3, kind: "Npc", pos: [160, 320], vel: [2, -1], fields: f8(0, 0) }},
  {{ id: 7, kind: "Avatar", pos: [1600, 800], vel: [2, 0], fields: f8(1, 300) }} ] }}, "keyframe");
eq(world.entities[0].vel[0] * welcome.posQuantum * welcome.tickRate, 3.75, "speed in units");
const delta = decodeServerMsg(bytes("{delta}"));
eq(delta.lastInputSeq, 43, "seq");
eq(delta.fields, [{{ skip: 0, field: 0, delta: -1 }}, {{ skip: 0, field: 1, delta: 10 }}, {{ skip: 1, field: 0, delta: 1 }}], "field changes");
const held = world;
const heldJson = JSON.stringify(held);
for (const [fields, what] of [
  [[{{ skip: 0, field: 0, delta: -1 }}, {{ skip: 2, field: 0, delta: 1 }}], "past the last entity"],
  [[{{ skip: 1, field: 8, delta: 1 }}], "field 8"],
  [[{{ skip: 0, field: 1, delta: 1 }}, {{ skip: 0, field: 1, delta: 1 }}], "the same field twice"],
  [[{{ skip: 0, field: 1, delta: 1 }}, {{ skip: 0, field: 0, delta: 1 }}], "fields going back"],
  [[{{ skip: 1, field: 0, delta: 1 }}, {{ skip: 4294967295, field: 0, delta: 1 }}], "a huge skip"],
]) {{
  throws(() => applySnapshot(held, {{ ...delta, fields }}), `bad field change refused: ${{what}}`);
  eq(JSON.stringify(held), heldJson, `world untouched: ${{what}}`);
}}
world = applySnapshot(world, delta);
eq(world, {{ tick: 303, entities: [
  {{ id: 7, kind: "Avatar", pos: [1605, 801], vel: [1, 1], fields: f8(0, 310) }},
  {{ id: 12, kind: "Npc", pos: [4800, 3200], vel: [-3, 1], fields: f8(1, 0) }} ] }}, "delta");
eq(JSON.stringify(held), heldJson, "the delta did not touch the world it was applied to");
const before = JSON.stringify(world);
throws(() => applySnapshot(world, delta), "delta applied twice");
eq(JSON.stringify(world), before, "world untouched by the refused delta");
// The short form (no field change, no fields list); the long form with an empty list is the same.
const plain = decodeServerMsg(bytes("{plain_delta}"));
eq([plain.type, plain.tick, plain.baseTick, plain.lastInputSeq, plain.fields], ["Snapshot", 304, 303, 44, []], "plain delta");
eq(decodeServerMsg(bytes("{plain_delta_long}")), plain, "long form without field changes");
throws(() => decodeServerMsg(bytes("{plain_delta} 00")), "a fields count after the short form refused");
throws(() => decodeServerMsg(bytes("{plain_delta_long}".split(" ").slice(0, -1).join(" "))), "long form without its fields count refused");
throws(() => decodeServerMsg(bytes("05 00")), "variant 5 refused");
world = applySnapshot(world, plain);
eq(world, {{ tick: 304, entities: [
  {{ id: 7, kind: "Avatar", pos: [1606, 802], vel: [0, 0], fields: f8(0, 310) }},
  {{ id: 12, kind: "Npc", pos: [4797, 3201], vel: [-3, 1], fields: f8(1, 0) }} ] }}, "plain delta applied");
// Wrapping prediction: i32::MAX + 1 per tick for 3 ticks; a field wraps the same way.
const edge = {{ tick: 1, entities: [{{ id: 0, kind: "Npc", pos: [2147483647, -2147483648], vel: [1, -1], fields: f8(2147483647, -2147483648) }}] }};
const empty = {{ tick: 4, baseTick: 1, removed: [], changed: [], added: [], fields: [] }};
eq(applySnapshot(edge, empty).entities[0].pos, [-2147483646, 2147483645], "wrapping");
const bump = {{ ...empty, fields: [{{ skip: 0, field: 0, delta: 1 }}, {{ skip: 0, field: 1, delta: -1 }}] }};
eq(applySnapshot(edge, bump).entities[0].fields, f8(-2147483648, 2147483647), "fields wrap");
const event = decodeServerMsg(bytes("{event}"));
eq([event.type, hexOf(event.payload)], ["Event", "01 07"], "event");
eq(hexOf(encodeHello("ada", "lobby")), "{hello}", "hello");
eq(hexOf(encodeHello("ada", "lobby", welcome.sessionToken)), "{resume}", "hello resuming");
throws(() => decodeServerMsg(bytes("{welcome}".split(" ").slice(0, 50).join(" "))), "truncated welcome refused");
throws(() => decodeServerMsg(bytes("{delta} 00")), "trailing byte refused");
eq(hexOf(encodeInput(1, 1.0, 0.0, 0)), "{input}", "input");
eq(hexOf(encodeInput(1, 1.0, 0.0, 0, new Uint8Array(0))), "{input}", "an empty payload: the short form");
eq(hexOf(encodeInput(2, 0.0, -1.0, 1, new Uint8Array([0x2c, 0x01, 0xfb]))), "{input_payload}", "input with payload");
throws(() => encodeInput(3, 0, 0, 0, new Uint8Array(33)), "33-byte input payload refused");
eq(hexOf(encodeMessage(new TextEncoder().encode("hi!"))), "{message}", "game message");
eq(hexOf(encodePing(1700000000000)), "{ping}", "ping");
const pong = decodeServerMsg(bytes("{pong}"));
eq([pong.type, pong.nonce, pong.serverTick], ["Pong", 1700000000000, 70000], "pong");
console.log("ok");
"#,
            welcome = hex_of(WELCOME_HEADING),
            token = TOKEN_HEX,
            resume = hex_of(RESUME_HEADING),
            keyframe = hex_of(KEYFRAME_HEADING),
            delta = hex_of(DELTA_HEADING),
            plain_delta = hex_of(PLAIN_DELTA_HEADING),
            plain_delta_long = PLAIN_DELTA_LONG_HEX,
            event = EVENT_HEX,
            input = INPUT_HEX,
            input_payload = INPUT_PAYLOAD_HEX,
            message = MESSAGE_HEX,
            ping = PING_HEX,
            pong = PONG_HEX,
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
