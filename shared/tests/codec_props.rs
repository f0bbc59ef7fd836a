//! Property tests of the codec: decoding never panics, whatever the bytes, and every
//! message round-trips bit for bit.
//!
//! Floats are compared by their bits (so NaN payloads and -0.0 must survive too); the
//! strategies mix arbitrary values with the edges of the varint forms (250/251,
//! 65535/65536, 2^32) and of `f32` (NaN, infinities, -0.0, subnormals).

#![allow(clippy::unwrap_used)]

use glam::Vec2;
use proptest::prelude::*;
use proptest::sample::Index;
use tickcast_shared::codec::{
    decode_server, encode_into, encode_snapshot_body, encode_to_vec, write_snapshot,
};
use tickcast_shared::{
    decode, ClientMsg, DecodeError, EntityKind, EntityState, Hello, Input, Ping, Pong, ServerMsg,
    Snapshot, Welcome, DEFAULT_MAX_MESSAGE_BYTES,
};

/// Big enough for every generated message (200 entities are under 4 KiB).
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

fn hello() -> impl Strategy<Value = Hello> {
    (u16_any(), text(), text()).prop_map(|(protocol_version, name, room)| Hello {
        protocol_version,
        name,
        room,
    })
}

fn input(f: impl Strategy<Value = f32> + Clone) -> impl Strategy<Value = Input> {
    (u32_any(), vec2_with(f), u16_any()).prop_map(|(seq, movement, buttons)| Input {
        seq,
        movement,
        buttons,
    })
}

fn client_msg_with(f: impl Strategy<Value = f32> + Clone) -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        hello().prop_map(ClientMsg::Hello),
        input(f).prop_map(ClientMsg::Input),
        u64_any().prop_map(|nonce| ClientMsg::Ping(Ping { nonce })),
    ]
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    client_msg_with(f32_any())
}

fn kind() -> impl Strategy<Value = EntityKind> {
    prop_oneof![Just(EntityKind::Npc), Just(EntityKind::Avatar)]
}

fn entity(f: impl Strategy<Value = f32> + Clone) -> impl Strategy<Value = EntityState> {
    (u32_any(), kind(), vec2_with(f.clone()), vec2_with(f))
        .prop_map(|(id, kind, pos, vel)| EntityState { id, kind, pos, vel })
}

fn entities_with(
    f: impl Strategy<Value = f32> + Clone,
    max: usize,
) -> impl Strategy<Value = Vec<EntityState>> {
    prop::collection::vec(entity(f), 0..max)
}

fn welcome(f: impl Strategy<Value = f32> + Clone) -> impl Strategy<Value = Welcome> {
    (
        u16_any(),
        u32_any(),
        u32_any(),
        u16_any(),
        u64_any(),
        vec2_with(f),
    )
        .prop_map(
            |(protocol_version, player_id, entity_id, tick_rate, server_tick, world_size)| {
                Welcome {
                    protocol_version,
                    player_id,
                    entity_id,
                    tick_rate,
                    server_tick,
                    world_size,
                }
            },
        )
}

fn server_msg_with(
    f: impl Strategy<Value = f32> + Clone,
    max_entities: usize,
) -> impl Strategy<Value = ServerMsg> {
    prop_oneof![
        welcome(f.clone()).prop_map(ServerMsg::Welcome),
        (u64_any(), u32_any(), entities_with(f, max_entities)).prop_map(
            |(tick, last_input_seq, entities)| ServerMsg::Snapshot(Snapshot {
                tick,
                last_input_seq,
                entities,
            })
        ),
        (u64_any(), u64_any())
            .prop_map(|(nonce, server_tick)| ServerMsg::Pong(Pong { nonce, server_tick })),
    ]
}

fn server_msg() -> impl Strategy<Value = ServerMsg> {
    server_msg_with(f32_any(), 200)
}

/// A valid encoding of either direction, tagged with its direction.
#[derive(Debug, Clone)]
enum Any {
    Client(ClientMsg),
    Server(ServerMsg),
}

fn any_msg(max_entities: usize) -> impl Strategy<Value = Any> {
    prop_oneof![
        client_msg().prop_map(Any::Client),
        server_msg_with(f32_any(), max_entities).prop_map(Any::Server),
    ]
}

impl Any {
    fn encode(&self) -> Vec<u8> {
        match self {
            Any::Client(m) => encode_to_vec(m).unwrap(),
            Any::Server(m) => encode_to_vec(m).unwrap(),
        }
    }

    /// Decodes `bytes` as this message's direction; `Ok(())` if it decoded.
    fn decode_same_direction(&self, bytes: &[u8], max: usize) -> Result<(), DecodeError> {
        match self {
            Any::Client(_) => decode::<ClientMsg>(bytes, max).map(drop),
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
        }
        (ClientMsg::Ping(a), ClientMsg::Ping(b)) => a == b,
        _ => false,
    }
}

fn entity_same_bits(a: &EntityState, b: &EntityState) -> bool {
    a.id == b.id
        && a.kind == b.kind
        && vec2_bits(a.pos) == vec2_bits(b.pos)
        && vec2_bits(a.vel) == vec2_bits(b.vel)
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
        }
        (ServerMsg::Snapshot(a), ServerMsg::Snapshot(b)) => {
            a.tick == b.tick
                && a.last_input_seq == b.last_input_seq
                && a.entities.len() == b.entities.len()
                && a.entities
                    .iter()
                    .zip(&b.entities)
                    .all(|(a, b)| entity_same_bits(a, b))
        }
        (ServerMsg::Pong(a), ServerMsg::Pong(b)) => a == b,
        _ => false,
    }
}

// ------------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// decode(encode(m)) is m, floats compared bit for bit (NaN payloads included).
    #[test]
    fn client_round_trip_bits(m in client_msg()) {
        let bytes = encode_to_vec(&m).unwrap();
        let back: ClientMsg = decode(&bytes, MAX).unwrap();
        prop_assert!(client_same_bits(&m, &back), "{m:?} came back as {back:?}");
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
        c in client_msg_with(f32_not_nan()),
        s in server_msg_with(f32_not_nan(), 200),
    ) {
        let cb = encode_to_vec(&c).unwrap();
        prop_assert_eq!(decode::<ClientMsg>(&cb, MAX).unwrap(), c);
        let sb = encode_to_vec(&s).unwrap();
        prop_assert_eq!(decode_server(&sb).unwrap(), s);
    }

    /// Every strict prefix of a valid encoding is an error, never a panic and never Ok.
    /// Messages are kept small (up to 16 entities) so that every prefix is tried.
    #[test]
    fn every_truncation_fails(m in any_msg(16)) {
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            let prefix = &bytes[..cut];
            prop_assert!(m.decode_same_direction(prefix, MAX).is_err(), "prefix of {cut} bytes decoded");
            if let Any::Server(_) = m {
                prop_assert!(decode_server(prefix).is_err());
            }
        }
    }


    /// A valid message followed by anything is refused as `TrailingBytes` with the count.
    #[test]
    fn trailing_bytes_are_counted(
        m in any_msg(200),
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
        m in any_msg(200),
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
}

// Properties over big snapshots (up to 200 entities) are costlier per case.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Truncations of big snapshots (up to 200 entities): the first and last 40 cuts and
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

    /// The server's split encoding (entity list once, header per player) is byte for byte
    /// the encoding of `ServerMsg::Snapshot`, and `out` is appended to, not overwritten.
    #[test]
    fn write_snapshot_equals_whole_encoding(
        entities in entities_with(f32_any(), 200),
        headers in prop::collection::vec((u64_any(), u32_any()), 1..4),
        prefix in prop::collection::vec(any::<u8>(), 0..8),
    ) {
        let mut body = Vec::new();
        let body_len = encode_snapshot_body(&entities, &mut body).unwrap();
        prop_assert_eq!(body_len, body.len());
        for (tick, last_input_seq) in headers {
            let whole = encode_to_vec(&ServerMsg::Snapshot(Snapshot {
                tick,
                last_input_seq,
                entities: entities.clone(),
            }))
            .unwrap();
            let mut out = prefix.clone();
            let written = write_snapshot(tick, last_input_seq, &body, &mut out).unwrap();
            prop_assert_eq!(written, whole.len());
            prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
            prop_assert_eq!(&out[prefix.len()..], &whole[..]);
            let back = decode_server(&out[prefix.len()..]).unwrap();
            let ServerMsg::Snapshot(s) = back else {
                return Err(TestCaseError::fail("not a snapshot"));
            };
            prop_assert_eq!(s.tick, tick);
            prop_assert_eq!(s.last_input_seq, last_input_seq);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes never panic any decoder (the result may be Ok or Err).
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = decode::<ClientMsg>(&bytes, MAX);
        let _ = decode::<ServerMsg>(&bytes, MAX);
        let _ = decode_server(&bytes);
    }

    /// Random bodies behind a valid variant index reach deeper into the decoders.
    #[test]
    fn random_bodies_never_panic(
        variant in 0u8..3,
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut bytes = vec![variant];
        bytes.extend_from_slice(&body);
        let _ = decode::<ClientMsg>(&bytes, MAX);
        let _ = decode::<ServerMsg>(&bytes, MAX);
        let _ = decode_server(&bytes);
    }

    /// Any single-byte change of a valid encoding never panics; the message decodes or not.
    #[test]
    fn single_byte_mutations_never_panic(
        m in any_msg(32),
        at in any::<Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = m.encode();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        let _ = decode::<ClientMsg>(&bytes, MAX);
        let _ = decode::<ServerMsg>(&bytes, MAX);
        let _ = decode_server(&bytes);
    }

    /// Every single-byte change of one small message, exhaustively over positions.
    #[test]
    fn every_position_mutated_never_panics(m in any_msg(4), byte in any::<u8>()) {
        let bytes = m.encode();
        for i in 0..bytes.len() {
            let mut mutated = bytes.clone();
            mutated[i] = byte;
            let _ = decode::<ClientMsg>(&mutated, MAX);
            let _ = decode_server(&mutated);
        }
    }
}
