//! Property tests of the codec: decoding never panics, whatever the bytes, and every
//! message of protocol v2 round-trips bit for bit.
//!
//! Floats are compared by their bits (so NaN payloads and -0.0 must survive too); the
//! strategies mix arbitrary values with the edges of the varint forms (250/251,
//! 65535/65536, 2^32), of the zig-zag `i32` forms (±125/126, ±32,768) and of `f32` (NaN,
//! infinities, -0.0, subnormals). Snapshots here are arbitrary, field changes included
//! (the codec does not care whether a delta applies); `delta_props.rs` covers applying
//! them. Client messages are also decoded with `decode_client`, the server's path under
//! the 4 KiB ceiling. Session tokens (`Hello.resume`, `Welcome.session_token`), byte
//! strings (`Input.payload` of 0..=32 bytes, `GameMessage` and `GameEvent` payloads) and
//! `FieldChange.field` mix arbitrary bytes with bytes that would be varint markers
//! (251..=255) if they were wrongly varint-encoded. An input payload of 33 bytes or more
//! never decodes.
//!
//! `Input` and `Snapshot` have a short form on the wire (variant 1, the version 1 layout)
//! and a long one (variant 4, with the payload or the field changes appended). A reference
//! encoder written from PROTOCOL.md checks that an empty payload or field list always
//! takes the short form and anything else the long one; the long form with an empty extra,
//! which no encoder writes, must decode to the same value as the short form, and its
//! truncations and mutations are tried alongside the encoder's bytes.

#![allow(clippy::unwrap_used)]

use glam::Vec2;
use proptest::prelude::*;
use proptest::sample::Index;
use tickcast_shared::codec::{
    decode_client, decode_server, encode_into, encode_snapshot_body, encode_to_vec, write_snapshot,
    CLIENT_ALLOC_LIMIT,
};
use tickcast_shared::delta::DeltaBody;
use tickcast_shared::payload::MAX_INPUT_PAYLOAD;
use tickcast_shared::{
    decode, Added, Changed, ClientMsg, DecodeError, EntityKind, FieldChange, FieldKind, FieldSpec,
    GameEvent, GameMessage, Hello, Input, InputPayload, Ping, Pong, ServerMsg, SessionToken,
    Snapshot, Welcome, DEFAULT_MAX_MESSAGE_BYTES, MAX_FIELDS, PROTOCOL_VERSION,
};

/// Big enough for every generated message (a snapshot of 4 × 64 records is under 10 KiB).
const MAX: usize = DEFAULT_MAX_MESSAGE_BYTES;

// ---------------------------------------------------------------- strategies

fn f32_any() -> impl Strategy<Value = f32> + Clone {
    prop_oneof![
        4 => any::<f32>(),
        2 => -1.0e4f32..1.0e4,
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN,
            f32::MAX,
            f32::MIN_POSITIVE,
            f32::EPSILON,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
            f32::from_bits(0x7f80_0001), // signalling NaN
            f32::from_bits(0xffc0_1234), // negative NaN with a payload
            f32::from_bits(0x0000_0001), // smallest subnormal
        ]),
    ]
}

/// Floats that compare equal to themselves, for the `PartialEq` round trip.
fn f32_not_nan() -> impl Strategy<Value = f32> + Clone {
    f32_any().prop_filter("not NaN", |f| !f.is_nan())
}

fn vec2_with(f: impl Strategy<Value = f32> + Clone) -> impl Strategy<Value = Vec2> {
    (f.clone(), f).prop_map(|(x, y)| Vec2::new(x, y))
}

const VARINT_EDGES: [u64; 14] = [
    0,
    1,
    250,
    251,
    252,
    253,
    255,
    256,
    65_535,
    65_536,
    4_294_967_295,
    4_294_967_296,
    u64::MAX - 1,
    u64::MAX,
];

fn u64_any() -> impl Strategy<Value = u64> {
    prop_oneof![
        any::<u64>(),
        0u64..70_000,
        prop::sample::select(VARINT_EDGES.to_vec()),
    ]
}

fn u32_any() -> impl Strategy<Value = u32> {
    prop_oneof![
        any::<u32>(),
        0u32..70_000,
        prop::sample::select(VARINT_EDGES.to_vec()).prop_map(|v| v as u32),
    ]
}

fn u16_any() -> impl Strategy<Value = u16> {
    prop_oneof![
        any::<u16>(),
        0u16..300,
        prop::sample::select(VARINT_EDGES.to_vec()).prop_map(|v| v as u16),
    ]
}

/// Any string: arbitrary Unicode, short ASCII, and long ones (length prefix past 250 bytes).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "\\PC{0,40}",
        2 => ".{0,12}",
        2 => "[a-z0-9._-]{0,64}",
        1 => any::<String>(),
        1 => "[a-zé✓]{240,300}",
    ]
}

/// 16 bytes: arbitrary, the all-zero and all-ones tokens, and bytes drawn from the
/// varint markers and their neighbours (a token is raw bytes, never varints).
fn token() -> impl Strategy<Value = SessionToken> {
    prop_oneof![
        3 => any::<SessionToken>(),
        1 => Just([0u8; 16]),
        1 => Just([0xff; 16]),
        2 => prop::array::uniform16(prop::sample::select(vec![0u8, 1, 250, 251, 252, 253, 254, 255])),
    ]
}

fn resume() -> impl Strategy<Value = Option<SessionToken>> {
    prop_oneof![Just(None), token().prop_map(Some)]
}

/// A byte that is a varint marker, or next to one, or zero: what a wrong varint reading
/// of a raw byte would trip on.
fn marker_byte() -> impl Strategy<Value = u8> {
    prop::sample::select(vec![0u8, 1, 250, 251, 252, 253, 254, 255])
}

/// `len` bytes: arbitrary, or all drawn from the varint markers.
fn raw_bytes(len: impl Strategy<Value = usize>) -> impl Strategy<Value = Vec<u8>> {
    len.prop_flat_map(|n| {
        prop_oneof![
            prop::collection::vec(any::<u8>(), n),
            prop::collection::vec(marker_byte(), n),
        ]
    })
}

/// Input payloads of 0..=32 bytes, the limit itself often.
fn input_payload() -> impl Strategy<Value = InputPayload> {
    raw_bytes(prop_oneof![
        3 => 0..=MAX_INPUT_PAYLOAD,
        1 => Just(MAX_INPUT_PAYLOAD),
        1 => Just(0),
    ])
    .prop_map(|b| InputPayload::new(&b).unwrap())
}

/// Game message and event payloads: empty, small, past 250 bytes (a three-byte length),
/// and up to `max` bytes.
fn game_payload(max: usize) -> impl Strategy<Value = Vec<u8>> {
    raw_bytes(prop_oneof![
        3 => 0usize..40,
        1 => 245usize..260,
        1 => 0..=max,
    ])
}

/// The longest payloads most properties try: past the 1 KiB default game-message limit.
const LONG_PAYLOAD: usize = 1100;

/// The longest payloads of the properties that try every byte position.
const SHORT_PAYLOAD: usize = 260;

fn hello() -> impl Strategy<Value = Hello> {
    (
        u16_any(),
        text(),
        text(),
        resume(),
        proptest::option::of(text()),
    )
        .prop_map(|(protocol_version, name, room, resume, auth_token)| Hello {
            protocol_version,
            name,
            room,
            resume,
            auth_token,
        })
}

fn input(f: impl Strategy<Value = f32> + Clone) -> impl Strategy<Value = Input> {
    (u32_any(), vec2_with(f), u16_any(), input_payload()).prop_map(
        |(seq, movement, buttons, payload)| Input {
            seq,
            movement,
            buttons,
            payload,
        },
    )
}

fn client_msg_with(
    f: impl Strategy<Value = f32> + Clone,
    max_payload: usize,
) -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        hello().prop_map(ClientMsg::Hello),
        input(f).prop_map(ClientMsg::Input),
        u64_any().prop_map(|nonce| ClientMsg::Ping(Ping { nonce })),
        game_payload(max_payload).prop_map(|payload| ClientMsg::Message(GameMessage { payload })),
    ]
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    client_msg_with(f32_any(), LONG_PAYLOAD)
}

fn kind() -> impl Strategy<Value = EntityKind> {
    prop_oneof![Just(EntityKind::Npc), Just(EntityKind::Avatar)]
}

/// `i32` values, with the edges of the zig-zag varint forms (±125/126, ±32,767/32,768)
/// and of the type.
fn i32_any() -> impl Strategy<Value = i32> + Clone {
    prop_oneof![
        3 => any::<i32>(),
        3 => -300i32..300,
        2 => prop::sample::select(vec![
            0,
            1,
            -1,
            125,
            -125,
            126,
            -126,
            32_767,
            -32_768,
            32_768,
            -32_769,
            i32::MAX,
            i32::MIN,
            i32::MAX - 1,
            i32::MIN + 1,
        ]),
    ]
}

fn pair() -> impl Strategy<Value = [i32; 2]> {
    (i32_any(), i32_any()).prop_map(|(x, y)| [x, y])
}

fn changed() -> impl Strategy<Value = Changed> {
    (u32_any(), pair(), pair()).prop_map(|(skip, dpos, dvel)| Changed { skip, dpos, dvel })
}

fn added() -> impl Strategy<Value = Added> {
    (u32_any(), kind(), pair(), pair()).prop_map(|(id_gap, kind, pos, vel)| Added {
        id_gap,
        kind,
        pos,
        vel,
    })
}

/// Field indexes: valid ones mostly, and any byte (the codec carries any `u8`; only
/// `World::apply` refuses 8 and up).
fn field_index() -> impl Strategy<Value = u8> {
    prop_oneof![
        4 => 0u8..MAX_FIELDS as u8,
        1 => marker_byte(),
        1 => any::<u8>(),
    ]
}

fn field_change() -> impl Strategy<Value = FieldChange> {
    (u32_any(), field_index(), i32_any()).prop_map(|(skip, field, delta)| FieldChange {
        skip,
        field,
        delta,
    })
}

/// A snapshot body of up to `max` records of each list (the codec does not care whether
/// the delta would apply).
fn body(max: usize) -> impl Strategy<Value = DeltaBody> {
    (
        prop::collection::vec(u32_any(), 0..max),
        prop::collection::vec(changed(), 0..max),
        prop::collection::vec(added(), 0..max),
        prop::collection::vec(field_change(), 0..max),
    )
        .prop_map(|(removed, changed, added, fields)| DeltaBody {
            removed,
            changed,
            added,
            fields,
        })
}

fn snapshot(max: usize) -> impl Strategy<Value = Snapshot> {
    (u64_any(), u64_any(), u32_any(), body(max)).prop_map(|(tick, base_tick, last_input_seq, b)| {
        Snapshot {
            tick,
            base_tick,
            last_input_seq,
            removed: b.removed,
            changed: b.changed,
            added: b.added,
            fields: b.fields,
        }
    })
}

fn field_kind() -> impl Strategy<Value = FieldKind> {
    prop::sample::select(vec![
        FieldKind::Bool,
        FieldKind::U8,
        FieldKind::I8,
        FieldKind::U16,
        FieldKind::I16,
        FieldKind::I32,
    ])
}

/// Field declarations: up to 8 as a server sends, and a few more (the codec has no
/// count limit of its own).
fn field_specs() -> impl Strategy<Value = Vec<FieldSpec>> {
    prop_oneof![4 => 0..=MAX_FIELDS, 1 => 0usize..12].prop_flat_map(|n| {
        prop::collection::vec(
            (text(), field_kind()).prop_map(|(name, kind)| FieldSpec { name, kind }),
            n,
        )
    })
}

fn welcome(f: impl Strategy<Value = f32> + Clone) -> impl Strategy<Value = Welcome> {
    (
        u16_any(),
        u32_any(),
        u32_any(),
        u16_any(),
        u64_any(),
        vec2_with(f.clone()),
        token(),
        f,
        text(),
        field_specs(),
    )
        .prop_map(
            |(
                protocol_version,
                player_id,
                entity_id,
                tick_rate,
                server_tick,
                world_size,
                session_token,
                pos_quantum,
                game,
                fields,
            )| {
                Welcome {
                    protocol_version,
                    player_id,
                    entity_id,
                    tick_rate,
                    server_tick,
                    world_size,
                    session_token,
                    pos_quantum,
                    game,
                    fields,
                }
            },
        )
}

/// Server messages; snapshots have up to `max_records` records in each of their lists,
/// and event payloads up to 40 bytes per record (at least `SHORT_PAYLOAD`).
fn server_msg_with(
    f: impl Strategy<Value = f32> + Clone,
    max_records: usize,
) -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        welcome(f).prop_map(ServerMsg::Welcome),
        snapshot(max_records).prop_map(ServerMsg::Snapshot),
        (u64_any(), u64_any())
            .prop_map(|(nonce, server_tick)| ServerMsg::Pong(Pong { nonce, server_tick })),
        game_payload((max_records * 40).max(SHORT_PAYLOAD))
            .prop_map(|payload| ServerMsg::Event(GameEvent { payload })),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    server_msg_with(f32_any(), 32)
}

/// A valid encoding of either direction, tagged with its direction.
#[derive(Debug, Clone)]
enum Any {
    Client(ClientMsg),
    Server(ServerMsg),
}

fn any_msg(max_records: usize) -> impl Strategy<Value = Any> {
    let max_payload = if max_records < 32 {
        SHORT_PAYLOAD
    } else {
        LONG_PAYLOAD
    };
    prop_oneof![
        client_msg_with(f32_any(), max_payload).prop_map(Any::Client),
        server_msg_with(f32_any(), max_records).prop_map(Any::Server),
    ]
}

impl Any {
    fn encode(&self) -> Vec<u8> {
        match self {
            Any::Client(m) => encode_to_vec(m).unwrap(),
            Any::Server(m) => encode_to_vec(m).unwrap(),
        }
    }

    /// Every valid encoding of the message: the encoder's, and for an `Input` without
    /// payload or a `Snapshot` without field changes also the long form with an empty
    /// extra, which decoders accept though no encoder writes it.
    fn forms(&self) -> Vec<Vec<u8>> {
        let mut forms = vec![self.encode()];
        match self {
            Any::Client(ClientMsg::Input(i)) if i.payload.is_empty() => {
                forms.push(ref_input_with(i, true));
            }
            Any::Server(ServerMsg::Snapshot(s)) if s.fields.is_empty() => {
                forms.push(ref_snapshot_with(s, true));
            }
            _ => {}
        }
        forms
    }

    /// Decodes `bytes` as this message's direction with every decoder of that direction,
    /// and checks that each gives back this message (floats by their bits).
    fn decodes_to_self(&self, bytes: &[u8]) -> Result<(), TestCaseError> {
        match self {
            Any::Client(m) => {
                let a =
                    decode_client(bytes, MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let b = decode::<ClientMsg>(bytes, MAX)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(
                    client_same_bits(m, &a) && client_same_bits(m, &b),
                    "{m:?}: {a:?}, {b:?}"
                );
            }
            Any::Server(m) => {
                let a = decode_server(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
                let b = decode::<ServerMsg>(bytes, MAX)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert!(
                    server_same_bits(m, &a) && server_same_bits(m, &b),
                    "{m:?}: {a:?}, {b:?}"
                );
            }
        }
        Ok(())
    }

    /// Decodes `bytes` as this message's direction; `Ok(())` if it decoded.
    fn decode_same_direction(&self, bytes: &[u8], max: usize) -> Result<(), DecodeError> {
        match self {
            Any::Client(_) => {
                // The generic decoder and the server's (under the client ceiling) agree.
                let generic = decode::<ClientMsg>(bytes, max).map(drop);
                let server = decode_client(bytes, max).map(drop);
                assert_eq!(
                    generic.is_ok(),
                    server.is_ok(),
                    "decode and decode_client disagree"
                );
                server
            }
            Any::Server(_) => decode::<ServerMsg>(bytes, max).map(drop),
        }
    }
}

// ------------------------------------------------------- bit-level equality

fn vec2_bits(v: Vec2) -> [u32; 2] {
    [v.x.to_bits(), v.y.to_bits()]
}

fn client_same_bits(a: &ClientMsg, b: &ClientMsg) -> bool {
    match (a, b) {
        (ClientMsg::Hello(a), ClientMsg::Hello(b)) => a == b,
        (ClientMsg::Input(a), ClientMsg::Input(b)) => {
            a.seq == b.seq
                && vec2_bits(a.movement) == vec2_bits(b.movement)
                && a.buttons == b.buttons
                && a.payload.as_bytes() == b.payload.as_bytes()
        }
        (ClientMsg::Ping(a), ClientMsg::Ping(b)) => a == b,
        (ClientMsg::Message(a), ClientMsg::Message(b)) => a == b,
        _ => false,
    }
}

fn server_same_bits(a: &ServerMsg, b: &ServerMsg) -> bool {
    match (a, b) {
        (ServerMsg::Welcome(a), ServerMsg::Welcome(b)) => {
            a.protocol_version == b.protocol_version
                && a.player_id == b.player_id
                && a.entity_id == b.entity_id
                && a.tick_rate == b.tick_rate
                && a.server_tick == b.server_tick
                && vec2_bits(a.world_size) == vec2_bits(b.world_size)
                && a.session_token == b.session_token
                && a.pos_quantum.to_bits() == b.pos_quantum.to_bits()
                && a.game == b.game
                && a.fields == b.fields
        }
        // Snapshots are integers only: plain equality is bit equality.
        (ServerMsg::Snapshot(a), ServerMsg::Snapshot(b)) => a == b,
        (ServerMsg::Pong(a), ServerMsg::Pong(b)) => a == b,
        (ServerMsg::Event(a), ServerMsg::Event(b)) => a == b,
        _ => false,
    }
}

// ------------------------------------------- a reference encoder, by the document

/// The varint of PROTOCOL.md section 4, written from the table (not by the codec).
fn ref_varint(v: u64) -> Vec<u8> {
    if v < 251 {
        vec![v as u8]
    } else if v <= 0xffff {
        let mut out = vec![0xfb];
        out.extend_from_slice(&(v as u16).to_le_bytes());
        out
    } else if v <= 0xffff_ffff {
        let mut out = vec![0xfc];
        out.extend_from_slice(&(v as u32).to_le_bytes());
        out
    } else {
        let mut out = vec![0xfd];
        out.extend_from_slice(&v.to_le_bytes());
        out
    }
}

/// An `i32` as the document says: zig-zag, then a varint.
fn ref_i32(n: i32) -> Vec<u8> {
    let z = if n >= 0 {
        u64::from(n.unsigned_abs()) * 2
    } else {
        u64::from(n.unsigned_abs()) * 2 - 1
    };
    ref_varint(z)
}

/// A byte string (or the bytes of a string): a varint length, then the bytes as they are.
fn ref_bytes(b: &[u8]) -> Vec<u8> {
    let mut out = ref_varint(b.len() as u64);
    out.extend_from_slice(b);
    out
}

/// The index of a `FieldKind` in the document's table.
fn ref_kind(k: FieldKind) -> u8 {
    match k {
        FieldKind::Bool => 0,
        FieldKind::U8 => 1,
        FieldKind::I8 => 2,
        FieldKind::U16 => 3,
        FieldKind::I16 => 4,
        FieldKind::I32 => 5,
    }
}

/// An `Input` as the document lays it out: variant 1 and `seq`, `movement`, `buttons`
/// (the short form), or variant 4 and the same with the payload last (the long form).
fn ref_input_with(i: &Input, long: bool) -> Vec<u8> {
    assert!(
        long || i.payload.is_empty(),
        "the short form has no payload"
    );
    let mut out = vec![if long { 4 } else { 1 }];
    out.extend(ref_varint(i.seq.into()));
    out.extend(i.movement.x.to_le_bytes());
    out.extend(i.movement.y.to_le_bytes());
    out.extend(ref_varint(i.buttons.into()));
    if long {
        out.extend(ref_bytes(i.payload.as_bytes()));
    }
    out
}

/// An `Input` in the form the document says an encoder uses: short when the payload is
/// empty, long otherwise.
fn ref_input(i: &Input) -> Vec<u8> {
    ref_input_with(i, !i.payload.is_empty())
}

fn ref_pair(p: [i32; 2]) -> Vec<u8> {
    let mut out = ref_i32(p[0]);
    out.extend(ref_i32(p[1]));
    out
}

fn ref_list<T>(items: &[T], item: impl Fn(&T) -> Vec<u8>) -> Vec<u8> {
    let mut out = ref_varint(items.len() as u64);
    for i in items {
        out.extend(item(i));
    }
    out
}

/// A `Snapshot` as the document lays it out: variant 1 and `tick` … `added` (the short
/// form), or variant 4 and the same with the `fields` list last (the long form).
fn ref_snapshot_with(s: &Snapshot, long: bool) -> Vec<u8> {
    assert!(
        long || s.fields.is_empty(),
        "the short form has no field changes"
    );
    let mut out = vec![if long { 4 } else { 1 }];
    out.extend(ref_varint(s.tick));
    out.extend(ref_varint(s.base_tick));
    out.extend(ref_varint(s.last_input_seq.into()));
    out.extend(ref_list(&s.removed, |id| ref_varint((*id).into())));
    out.extend(ref_list(&s.changed, |c| {
        let mut b = ref_varint(c.skip.into());
        b.extend(ref_pair(c.dpos));
        b.extend(ref_pair(c.dvel));
        b
    }));
    out.extend(ref_list(&s.added, |a| {
        let mut b = ref_varint(a.id_gap.into());
        b.push(match a.kind {
            EntityKind::Npc => 0,
            EntityKind::Avatar => 1,
        });
        b.extend(ref_pair(a.pos));
        b.extend(ref_pair(a.vel));
        b
    }));
    if long {
        out.extend(ref_list(&s.fields, ref_field_change));
    }
    out
}

/// A `Snapshot` in the form an encoder uses: short without field changes, else long.
fn ref_snapshot(s: &Snapshot) -> Vec<u8> {
    ref_snapshot_with(s, !s.fields.is_empty())
}

/// A field change: `skip` as a varint, `field` as one raw byte, `delta` zig-zag.
fn ref_field_change(c: &FieldChange) -> Vec<u8> {
    let mut out = ref_varint(c.skip.into());
    out.push(c.field);
    out.extend(ref_i32(c.delta));
    out
}

/// What follows `pos_quantum` in a `Welcome`: `game`, then the `fields` list.
fn ref_welcome_tail(w: &Welcome) -> Vec<u8> {
    let mut out = ref_bytes(w.game.as_bytes());
    out.extend(ref_varint(w.fields.len() as u64));
    for f in &w.fields {
        out.extend(ref_bytes(f.name.as_bytes()));
        out.push(ref_kind(f.kind));
    }
    out
}

// ------------------------------------------------------------------ properties

/// Runs the bytes through every decoder; a property using it asserts only that none panics.
fn decode_with_every_decoder(bytes: &[u8]) {
    let _ = decode::<ClientMsg>(bytes, MAX);
    let _ = decode_client(bytes, MAX);
    let _ = decode::<ServerMsg>(bytes, MAX);
    let _ = decode_server(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// decode(encode(m)) is m, floats compared bit for bit (NaN payloads included).
    #[test]
    fn client_round_trip_bits(m in client_msg()) {
        let bytes = encode_to_vec(&m).unwrap();
        let back: ClientMsg = decode(&bytes, MAX).unwrap();
        prop_assert!(client_same_bits(&m, &back), "{m:?} came back as {back:?}");
        let via_server_path = decode_client(&bytes, MAX).unwrap();
        prop_assert!(client_same_bits(&m, &via_server_path));
        // The encoding is a function of the bits: re-encoding gives the same bytes.
        prop_assert_eq!(encode_to_vec(&back).unwrap(), bytes);
    }

    #[test]
    fn server_round_trip_bits(m in server_msg()) {
        let bytes = encode_to_vec(&m).unwrap();
        let back: ServerMsg = decode(&bytes, MAX).unwrap();
        prop_assert!(server_same_bits(&m, &back), "{m:?} came back as {back:?}");
        let via_client_path = decode_server(&bytes).unwrap();
        prop_assert!(server_same_bits(&m, &via_client_path));
        prop_assert_eq!(encode_to_vec(&back).unwrap(), bytes);
    }

    /// Without NaN, plain `PartialEq` holds too.
    #[test]
    fn round_trip_eq_without_nan(
        c in client_msg_with(f32_not_nan(), LONG_PAYLOAD),
        s in server_msg_with(f32_not_nan(), 32),
    ) {
        let cb = encode_to_vec(&c).unwrap();
        prop_assert_eq!(decode_client(&cb, MAX).unwrap(), c.clone());
        prop_assert_eq!(decode::<ClientMsg>(&cb, MAX).unwrap(), c);
        let sb = encode_to_vec(&s).unwrap();
        prop_assert_eq!(decode_server(&sb).unwrap(), s);
    }

    /// Every strict prefix of a valid encoding, short and long form, is an error, never a
    /// panic and never Ok; the whole of each form decodes to the message. Messages are kept
    /// small (up to 12 records per list) so that every prefix is tried.
    #[test]
    fn every_truncation_fails(m in any_msg(12)) {
        for bytes in m.forms() {
            m.decodes_to_self(&bytes)?;
            for cut in 0..bytes.len() {
                let prefix = &bytes[..cut];
                prop_assert!(m.decode_same_direction(prefix, MAX).is_err(), "prefix of {cut} bytes decoded");
                if let Any::Server(_) = m {
                    prop_assert!(decode_server(prefix).is_err());
                }
            }
        }
    }

    /// The encoder writes the form the document prescribes: an `Input` with an empty
    /// payload and a `Snapshot` with no field change take the short form (variant 1, the
    /// version 1 layout, nothing for the extra), anything else the long form (variant 4),
    /// byte for byte as the reference encoder lays them out.
    #[test]
    fn empty_extras_take_the_short_form(
        i in input(f32_any()),
        s in snapshot(8),
        empty_payload in any::<bool>(),
        no_fields in any::<bool>(),
    ) {
        let i = if empty_payload { Input { payload: InputPayload::default(), ..i } } else { i };
        let bytes = encode_to_vec(&ClientMsg::Input(i)).unwrap();
        prop_assert_eq!(&bytes, &ref_input(&i));
        prop_assert_eq!(bytes[0], if i.payload.is_empty() { 1 } else { 4 });
        if i.payload.is_empty() {
            // One byte shorter than the long form: not even a zero length is sent.
            prop_assert_eq!(bytes.len() + 1, ref_input_with(&i, true).len());
        }

        let s = if no_fields { Snapshot { fields: vec![], ..s } } else { s };
        let bytes = encode_to_vec(&ServerMsg::Snapshot(s.clone())).unwrap();
        prop_assert_eq!(&bytes, &ref_snapshot(&s));
        prop_assert_eq!(bytes[0], if s.fields.is_empty() { 1 } else { 4 });
        if s.fields.is_empty() {
            prop_assert_eq!(bytes.len() + 1, ref_snapshot_with(&s, true).len());
        }
        // The server's split encoding picks the same form.
        let body = DeltaBody {
            removed: s.removed.clone(),
            changed: s.changed.clone(),
            added: s.added.clone(),
            fields: s.fields.clone(),
        };
        let mut encoded = Vec::new();
        encode_snapshot_body(&body, &mut encoded).unwrap();
        let mut split = Vec::new();
        write_snapshot(s.tick, s.base_tick, s.last_input_seq, &encoded, &mut split).unwrap();
        prop_assert_eq!(split, bytes);
    }

    /// Both forms of an input without payload and of a snapshot without field changes
    /// decode, through every decoder, to the same value; re-encoding it gives the short
    /// form. A long form with a non-empty extra decodes to that extra.
    #[test]
    fn both_forms_decode_to_the_same_value(i in input(f32_not_nan()), s in snapshot(8)) {
        let empty = Input { payload: InputPayload::default(), ..i };
        let short = ref_input_with(&empty, false);
        let long = ref_input_with(&empty, true);
        let want = ClientMsg::Input(empty);
        for bytes in [&short, &long] {
            prop_assert_eq!(decode_client(bytes, MAX).unwrap(), want.clone());
            prop_assert_eq!(decode::<ClientMsg>(bytes, MAX).unwrap(), want.clone());
        }
        prop_assert_eq!(encode_to_vec(&decode_client(&long, MAX).unwrap()).unwrap(), short);
        prop_assert_eq!(decode_client(&ref_input_with(&i, true), MAX).unwrap(), ClientMsg::Input(i));

        let plain = Snapshot { fields: vec![], ..s.clone() };
        let short = ref_snapshot_with(&plain, false);
        let long = ref_snapshot_with(&plain, true);
        let want = ServerMsg::Snapshot(plain);
        for bytes in [&short, &long] {
            prop_assert_eq!(decode_server(bytes).unwrap(), want.clone());
            prop_assert_eq!(decode::<ServerMsg>(bytes, MAX).unwrap(), want.clone());
        }
        prop_assert_eq!(encode_to_vec(&decode_server(&long).unwrap()).unwrap(), short);
        prop_assert_eq!(decode_server(&ref_snapshot_with(&s, true)).unwrap(), ServerMsg::Snapshot(s));
    }

    /// The forms are told apart by the variant alone: a short form followed by what the
    /// long form would add is refused as trailing bytes, and a long form cut before its
    /// extra is truncated.
    #[test]
    fn the_variant_alone_tells_the_forms_apart(i in input(f32_any()), s in snapshot(8)) {
        let empty = Input { payload: InputPayload::default(), ..i };
        let mut short_plus = ref_input_with(&empty, false);
        short_plus.push(0);
        let err = decode_client(&short_plus, MAX).unwrap_err();
        prop_assert!(matches!(err, DecodeError::TrailingBytes { extra: 1 }), "{err:?}");
        let long = ref_input_with(&empty, true);
        prop_assert!(decode_client(&long[..long.len() - 1], MAX).is_err());

        let plain = Snapshot { fields: vec![], ..s };
        let mut short_plus = ref_snapshot_with(&plain, false);
        short_plus.push(0);
        let err = decode_server(&short_plus).unwrap_err();
        prop_assert!(matches!(err, DecodeError::TrailingBytes { extra: 1 }), "{err:?}");
        let long = ref_snapshot_with(&plain, true);
        prop_assert!(decode_server(&long[..long.len() - 1]).is_err());
    }


    /// A valid message followed by anything is refused as `TrailingBytes` with the count.
    #[test]
    fn trailing_bytes_are_counted(
        m in any_msg(32),
        extra in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let mut bytes = m.encode();
        bytes.extend_from_slice(&extra);
        let err = m.decode_same_direction(&bytes, MAX).unwrap_err();
        prop_assert!(
            matches!(err, DecodeError::TrailingBytes { extra: n } if n == extra.len()),
            "{err:?}"
        );
        if let Any::Server(_) = m {
            let err = decode_server(&bytes).unwrap_err();
            prop_assert!(
                matches!(err, DecodeError::TrailingBytes { extra: n } if n == extra.len()),
                "{err:?}"
            );
        }
    }

    /// Longer than `max_bytes` is `TooLarge`, valid or not: the size is checked first.
    #[test]
    fn too_large_is_refused_before_decoding(
        m in any_msg(32),
        under in 1usize..64,
        garbage in any::<bool>(),
    ) {
        let mut bytes = m.encode();
        if garbage {
            // Would be Malformed if it were decoded at all.
            bytes.iter_mut().for_each(|b| *b = 0xff);
        }
        let len = bytes.len();
        let max = len.saturating_sub(under);
        let err = m.decode_same_direction(&bytes, max).unwrap_err();
        prop_assert!(
            matches!(err, DecodeError::TooLarge { len: l, max: x } if l == len && x == max),
            "{err:?}"
        );
        // Exactly at the limit is fine.
        if !garbage {
            prop_assert!(m.decode_same_direction(&bytes, len).is_ok());
        }
    }


    /// `encode_into` appends and reports the bytes it wrote.
    #[test]
    fn encode_into_appends(m in client_msg(), prefix in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut out = prefix.clone();
        let n = encode_into(&m, &mut out).unwrap();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(&out[prefix.len()..], &encode_to_vec(&m).unwrap()[..]);
        prop_assert_eq!(n, out.len() - prefix.len());
    }

    /// `Hello.resume` is the last field: one tag byte (0 none, 1 some), then the token's
    /// 16 bytes as they are. `Welcome.session_token` is 16 bytes as they are, followed by
    /// the 4 bytes of `pos_quantum`, then `game` and the `fields` list as the document
    /// spells them (each `FieldSpec` a string and a kind index).
    #[test]
    fn tokens_are_sixteen_raw_bytes(h in hello(), t in token(), w in welcome(f32_any())) {
        let h = Hello { auth_token: None, ..h };
        let none = encode_to_vec(&ClientMsg::Hello(Hello { resume: None, ..h.clone() })).unwrap();
        let some = encode_to_vec(&ClientMsg::Hello(Hello { resume: Some(t), ..h })).unwrap();
        let at = none.len() - 1;
        prop_assert_eq!(none[at], 0);
        prop_assert_eq!(some.len(), none.len() + 16);
        prop_assert_eq!(&some[..at], &none[..at]);
        prop_assert_eq!(some[at], 1);
        prop_assert_eq!(&some[at + 1..], &t[..]);

        let bytes = encode_to_vec(&ServerMsg::Welcome(w.clone())).unwrap();
        let tail = ref_welcome_tail(&w);
        prop_assert!(bytes.ends_with(&tail), "{:?} does not end with {:?}", bytes, tail);
        let n = bytes.len() - tail.len();
        prop_assert_eq!(&bytes[n - 20..n - 4], &w.session_token[..]);
        prop_assert_eq!(&bytes[n - 4..n], &w.pos_quantum.to_le_bytes()[..]);
    }

    /// The messages with byte strings, as the document spells them: an `Input` is its
    /// fields in order, the payload (if any: the long form) last as a length and its
    /// bytes; a `GameMessage` and a
    /// `GameEvent` are variant 3 and the payload. Each round-trips, and every strict
    /// prefix is refused.
    #[test]
    fn byte_strings_round_trip_and_every_truncation_fails(
        input in input(f32_any()),
        payload in game_payload(LONG_PAYLOAD),
    ) {
        let msg = ClientMsg::Input(input);
        let bytes = encode_to_vec(&msg).unwrap();
        prop_assert_eq!(&bytes, &ref_input(&input));
        let back = decode_client(&bytes, MAX).unwrap();
        prop_assert!(client_same_bits(&msg, &back), "{msg:?} came back as {back:?}");
        for cut in 0..bytes.len() {
            prop_assert!(decode_client(&bytes[..cut], MAX).is_err(), "Input prefix {cut}");
        }

        let message = ClientMsg::Message(GameMessage { payload: payload.clone() });
        let event = ServerMsg::Event(GameEvent { payload: payload.clone() });
        let mut expected = vec![3];
        expected.extend(ref_bytes(&payload));
        let m = encode_to_vec(&message).unwrap();
        let e = encode_to_vec(&event).unwrap();
        prop_assert_eq!(&m, &expected);
        prop_assert_eq!(&e, &expected);
        prop_assert_eq!(decode_client(&m, MAX).unwrap(), message);
        prop_assert_eq!(decode_server(&e).unwrap(), event);
        for cut in 0..expected.len() {
            prop_assert!(decode_client(&expected[..cut], MAX).is_err(), "Message prefix {cut}");
            prop_assert!(decode_server(&expected[..cut]).is_err(), "Event prefix {cut}");
        }
    }

    /// An input payload of 33 bytes or more never decodes, whatever its bytes; 32 do.
    #[test]
    fn input_payloads_over_the_limit_never_decode(
        input in input(f32_any()),
        extra in raw_bytes(prop_oneof![
            3 => Just(MAX_INPUT_PAYLOAD + 1),
            2 => MAX_INPUT_PAYLOAD + 1..300,
        ]),
    ) {
        // The long form up to the payload: variant 4, seq, movement, buttons.
        let mut bytes = ref_input_with(&Input { payload: InputPayload::default(), ..input }, true);
        prop_assert_eq!(bytes.pop(), Some(0), "an empty payload is the last byte, 00");
        prop_assert_eq!(bytes[0], 4);
        let mut full = bytes.clone();
        full.extend(ref_bytes(&extra[..MAX_INPUT_PAYLOAD]));
        let ClientMsg::Input(back) = decode_client(&full, MAX).unwrap() else {
            return Err(TestCaseError::fail("not an input"));
        };
        prop_assert_eq!(back.payload.as_bytes(), &extra[..MAX_INPUT_PAYLOAD]);
        bytes.extend(ref_bytes(&extra));
        let err = decode_client(&bytes, MAX).unwrap_err();
        prop_assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
        prop_assert!(decode::<ClientMsg>(&bytes, MAX).is_err());
        prop_assert!(InputPayload::new(&extra).is_err());
    }

    /// A field change is its `skip` as a varint, its `field` as one raw byte (251..=255
    /// included), and its `delta` zig-zag: the same bytes the document's rules give,
    /// alone and as the last record of a snapshot.
    #[test]
    fn field_changes_are_varint_raw_byte_zigzag(s in snapshot(8), c in field_change()) {
        let alone = encode_to_vec(&c).unwrap();
        let expected = ref_field_change(&c);
        prop_assert_eq!(&alone, &expected);
        let mut s = s;
        s.fields.push(c);
        let bytes = encode_to_vec(&ServerMsg::Snapshot(s.clone())).unwrap();
        prop_assert_eq!(bytes[0], 4, "a snapshot with field changes is the long form");
        prop_assert!(bytes.ends_with(&expected));
        prop_assert_eq!(decode_server(&bytes).unwrap(), ServerMsg::Snapshot(s));
    }

    /// A `Hello` without a player token is variant 0; with one it is variant 5, the same
    /// fields followed by the token as a string (varint length, then its UTF-8 bytes).
    #[test]
    fn player_token_is_the_long_hello(h in hello(), token in text()) {
        let plain = encode_to_vec(&ClientMsg::Hello(Hello { auth_token: None, ..h.clone() })).unwrap();
        prop_assert_eq!(plain[0], 0);
        let with = Hello { auth_token: Some(token.clone()), ..h };
        let long = encode_to_vec(&ClientMsg::Hello(with.clone())).unwrap();
        let mut expected = vec![5];
        expected.extend_from_slice(&plain[1..]);
        expected.extend_from_slice(&ref_varint(token.len() as u64));
        expected.extend_from_slice(token.as_bytes());
        prop_assert_eq!(&long, &expected);
        prop_assert_eq!(decode_client(&long, MAX).unwrap(), ClientMsg::Hello(with));
    }

    /// An `Option` tag other than 0 or 1 is malformed, whether a token follows or not.
    #[test]
    fn bad_option_tags_are_refused(h in hello(), tag in 2u8..=255, t in token()) {
        let plain = Hello { resume: None, auth_token: None, ..h };
        let mut bytes = encode_to_vec(&ClientMsg::Hello(plain)).unwrap();
        *bytes.last_mut().unwrap() = tag;
        let err = decode_client(&bytes, MAX).unwrap_err();
        prop_assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
        bytes.extend_from_slice(&t);
        let err = decode_client(&bytes, MAX).unwrap_err();
        prop_assert!(matches!(err, DecodeError::Malformed(_)), "{err:?}");
        prop_assert!(decode::<ClientMsg>(&bytes, MAX).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `decode_client` refuses a `Hello` whose strings claim more than
    /// `CLIENT_ALLOC_LIMIT`, even when the message is within the size limit, and
    /// accepts one comfortably under it; the generic decoder accepts both.
    #[test]
    fn client_alloc_ceiling(
        name_len in 0usize..6000,
        room_len in 0usize..3000,
        resume in resume(),
    ) {
        let m = ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "n".repeat(name_len),
            room: "r".repeat(room_len),
            resume,
            auth_token: None,
        });
        let bytes = encode_to_vec(&m).unwrap();
        prop_assert_eq!(decode::<ClientMsg>(&bytes, MAX).unwrap(), m.clone());
        let claimed = name_len + room_len;
        if claimed + 64 <= CLIENT_ALLOC_LIMIT {
            prop_assert_eq!(decode_client(&bytes, MAX).unwrap(), m);
        } else if claimed > CLIENT_ALLOC_LIMIT {
            let err = decode_client(&bytes, MAX).unwrap_err();
            prop_assert!(
                matches!(err, DecodeError::Malformed(bincode::error::DecodeError::LimitExceeded)),
                "{err:?}"
            );
        }
    }

    /// A `GameMessage` of n bytes claims 12 + n (variant 4, length 8, the bytes):
    /// `decode_client` takes it exactly while that fits the 4 KiB ceiling, as section 6
    /// says; the generic decoder takes any.
    #[test]
    fn game_message_alloc_ceiling(
        n in prop_oneof![0usize..6000, CLIENT_ALLOC_LIMIT - 16..CLIENT_ALLOC_LIMIT],
        byte in any::<u8>(),
    ) {
        let m = ClientMsg::Message(GameMessage { payload: vec![byte; n] });
        let bytes = encode_to_vec(&m).unwrap();
        prop_assert_eq!(decode::<ClientMsg>(&bytes, MAX).unwrap(), m.clone());
        if 12 + n <= CLIENT_ALLOC_LIMIT {
            prop_assert_eq!(decode_client(&bytes, MAX).unwrap(), m);
        } else {
            let err = decode_client(&bytes, MAX).unwrap_err();
            prop_assert!(
                matches!(err, DecodeError::Malformed(bincode::error::DecodeError::LimitExceeded)),
                "{err:?}"
            );
        }
    }
}

// Properties over big snapshots are costlier per case.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Truncations of big snapshots (up to 3 × 32 records): the first and last 40 cuts and
    /// 64 random ones.
    #[test]
    fn truncations_of_big_messages_fail(
        m in server_msg(),
        cuts in prop::collection::vec(any::<Index>(), 64),
    ) {
        let bytes = encode_to_vec(&m).unwrap();
        let n = bytes.len();
        let chosen = (0..n.min(40))
            .chain(n.saturating_sub(40)..n)
            .chain(cuts.iter().map(|i| i.index(n)));
        for cut in chosen {
            prop_assert!(decode_server(&bytes[..cut]).is_err(), "prefix of {cut} of {n} bytes decoded");
        }
    }

    /// The server's split encoding (body once, header per player) is byte for byte the
    /// encoding of `ServerMsg::Snapshot`, and `out` is appended to, not overwritten. The
    /// body is one tag byte (0: no field changes, 1: some), counted in its length, then
    /// the lists the message carries in that form. `write_snapshot` refuses bytes that are
    /// not such a body and then writes nothing.
    #[test]
    fn write_snapshot_equals_whole_encoding(
        body in prop_oneof![
            body(64),
            body(64).prop_map(|b| DeltaBody { fields: vec![], ..b }),
        ],
        headers in prop::collection::vec((u64_any(), u64_any(), u32_any()), 1..4),
        prefix in prop::collection::vec(any::<u8>(), 0..8),
        bad_tag in 2u8..=255,
    ) {
        let mut encoded = prefix.clone();
        let body_len = encode_snapshot_body(&body, &mut encoded).unwrap();
        prop_assert_eq!(&encoded[..prefix.len()], &prefix[..]);
        let encoded = encoded.split_off(prefix.len());
        prop_assert_eq!(body_len, encoded.len());
        let lists = if body.fields.is_empty() {
            encode_to_vec(&(&body.removed, &body.changed, &body.added)).unwrap()
        } else {
            encode_to_vec(&(&body.removed, &body.changed, &body.added, &body.fields)).unwrap()
        };
        prop_assert_eq!(encoded[0], u8::from(!body.fields.is_empty()));
        prop_assert_eq!(&encoded[1..], &lists[..]);
        for foreign in [Vec::new(), [&[bad_tag][..], &encoded[1..]].concat()] {
            let mut out = prefix.clone();
            prop_assert!(write_snapshot(1, 0, 0, &foreign, &mut out).is_err());
            prop_assert_eq!(&out, &prefix);
        }
        for (tick, base_tick, last_input_seq) in headers {
            let msg = ServerMsg::Snapshot(Snapshot {
                tick,
                base_tick,
                last_input_seq,
                removed: body.removed.clone(),
                changed: body.changed.clone(),
                added: body.added.clone(),
                fields: body.fields.clone(),
            });
            let whole = encode_to_vec(&msg).unwrap();
            let mut out = prefix.clone();
            let written = write_snapshot(tick, base_tick, last_input_seq, &encoded, &mut out).unwrap();
            prop_assert_eq!(written, whole.len());
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&out[prefix.len()..], &whole[..]);
            prop_assert_eq!(decode_server(&out[prefix.len()..]).unwrap(), msg);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes never panic any decoder (the result may be Ok or Err).
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        decode_with_every_decoder(&bytes);
    }

    /// Random bodies behind a valid variant index (0..=4 in both directions, long forms
    /// included, and the first invalid one) reach deeper into the decoders.
    #[test]
    fn random_bodies_never_panic(
        variant in 0u8..=5,
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![variant];
        bytes.extend_from_slice(&body);
        decode_with_every_decoder(&bytes);
    }

    /// Any single-byte change of a valid encoding (either form) never panics; the message
    /// decodes or not.
    #[test]
    fn single_byte_mutations_never_panic(
        m in any_msg(32),
        at in any::<Index>(),
        byte in any::<u8>(),
    ) {
        for mut bytes in m.forms() {
            let i = at.index(bytes.len());
            bytes[i] = byte;
            decode_with_every_decoder(&bytes);
        }
    }

    /// Every single-byte change of one small message (either form), exhaustively over
    /// positions.
    #[test]
    fn every_position_mutated_never_panics(m in any_msg(4), byte in any::<u8>()) {
        for bytes in m.forms() {
            for i in 0..bytes.len() {
                let mut mutated = bytes.clone();
                mutated[i] = byte;
                decode_with_every_decoder(&mutated);
            }
        }
    }
}
