//! The JavaScript client (web/tickcast.js) checked against the Rust encoder.
//!
//! This test writes a corpus: seeded random worlds over many ticks, as a server streams
//! them to several clients (skipped snapshots, keyframes, spawns and despawns, ids reused
//! for another kind, field changes, each client seeing its own subset of the world).
//! Every snapshot is built by `delta::diff` and encoded the way the server encodes it
//! (`encode_snapshot_body` + `write_snapshot`), applied by `World::apply`, and written
//! with the world the Rust client then holds. Bad deltas are written with the
//! `DeltaError` `World::apply` returns; damaged bytes with whether `decode_server` /
//! `decode_client` take them and what they decode to; random messages of every kind, and
//! the messages of the byte examples of docs/PROTOCOL.md, with their values. Then it runs
//! `node web/corpus-check.mjs <dir>`, which must decode and apply all of it to the same
//! worlds, refuse the same deltas with the same error, agree on every damaged message,
//! and encode the client messages byte for byte; a second run on a corpus with one wrong
//! expectation must fail, or the first proved nothing.
//!
//! With `TICKCAST_CORPUS_DIR=<dir>` the corpus is written there and kept (web/bench.mjs
//! reads its `bench.jsonl`: the keyframe and delta of `benches/frame.rs` at 1,000 and
//! 10,000 entities). Without node this is not a pass under `CI=true`; elsewhere it says
//! loudly that it skipped, as `protocol_examples.rs` does.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use glam::Vec2;
use tickcast_shared::codec::{
    decode_client, decode_server, encode_snapshot_body, encode_to_vec, write_snapshot,
};
use tickcast_shared::delta::{diff, DeltaBody, DeltaError, QEntity, World};
use tickcast_shared::{
    Added, Changed, ClientMsg, EntityKind, FieldChange, FieldKind, FieldSpec, GameEvent,
    GameMessage, Hello, Input, InputPayload, Ping, Pong, ServerMsg, Snapshot, Welcome,
    DEFAULT_MAX_MESSAGE_BYTES, MAX_FIELDS, PROTOCOL_VERSION,
};

/// SplitMix64: a small deterministic generator, so the corpus is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn i32_in(&mut self, lo: i32, hi: i32) -> i32 {
        (i64::from(lo) + self.below((i64::from(hi) - i64::from(lo) + 1) as u64) as i64) as i32
    }
    /// Mostly small values, sometimes anything an `i32` holds.
    fn value(&mut self) -> i32 {
        match self.below(10) {
            0 => self.next() as i32,
            1 => [i32::MIN, i32::MAX, -1, 0, 1][self.below(5) as usize],
            2..=4 => self.i32_in(-40_000, 40_000),
            _ => self.i32_in(-130, 130),
        }
    }
    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max as u64 + 1) as usize;
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// A string of 0 to `max_chars` characters, from ASCII to 4-byte UTF-8 and U+FEFF.
    fn text(&mut self, max_chars: usize) -> String {
        const CHARS: [char; 12] = [
            'a', 'Z', '0', '"', '\\', ' ', 'é', 'Ω', '🎮', '\u{feff}', '\u{202e}', '_',
        ];
        let n = self.below(max_chars as u64 + 1) as usize;
        (0..n)
            .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
            .collect()
    }
    fn f32(&mut self) -> f32 {
        match self.below(6) {
            0 => [0.0, -0.0, 1.0, -1.0, f32::MIN_POSITIVE / 4.0, f32::MAX][self.below(6) as usize],
            1 => f32::from_bits(self.next() as u32 & 0x7f7f_ffff), // finite, either sign below
            _ => self.i32_in(-20_000, 20_000) as f32 / 64.0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// JSON, written by hand (the crate has no JSON dependency)
// ---------------------------------------------------------------------------------------

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        write!(s, "{b:02x}").unwrap();
    }
    s
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).unwrap(),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn kind_name(k: EntityKind) -> &'static str {
    match k {
        EntityKind::Npc => "Npc",
        EntityKind::Avatar => "Avatar",
    }
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    format!("[{}]", items.iter().map(f).collect::<Vec<_>>().join(","))
}

/// `f32` as its bits, so the comparison is exact; any NaN as `"NaN"` (JavaScript has one).
fn f32_json(v: f32) -> String {
    if v.is_nan() {
        "\"NaN\"".to_owned()
    } else {
        v.to_bits().to_string()
    }
}

fn vec2_json(v: Vec2) -> String {
    format!("{{\"x\":{},\"y\":{}}}", f32_json(v.x), f32_json(v.y))
}

fn snapshot_json(s: &Snapshot) -> String {
    format!(
        "{{\"type\":\"Snapshot\",\"tick\":{},\"baseTick\":{},\"lastInputSeq\":{},\"removed\":{},\"changed\":{},\"added\":{},\"fields\":{}}}",
        s.tick,
        s.base_tick,
        s.last_input_seq,
        list(&s.removed, |g| g.to_string()),
        list(&s.changed, |c| format!(
            "{{\"skip\":{},\"dpos\":[{},{}],\"dvel\":[{},{}]}}",
            c.skip, c.dpos[0], c.dpos[1], c.dvel[0], c.dvel[1]
        )),
        list(&s.added, |a| format!(
            "{{\"idGap\":{},\"kind\":\"{}\",\"pos\":[{},{}],\"vel\":[{},{}]}}",
            a.id_gap,
            kind_name(a.kind),
            a.pos[0],
            a.pos[1],
            a.vel[0],
            a.vel[1]
        )),
        list(&s.fields, |f| format!(
            "{{\"skip\":{},\"field\":{},\"delta\":{}}}",
            f.skip, f.field, f.delta
        )),
    )
}

fn server_json(msg: &ServerMsg) -> String {
    match msg {
        ServerMsg::Welcome(w) => format!(
            "{{\"type\":\"Welcome\",\"protocolVersion\":{},\"playerId\":{},\"entityId\":{},\"tickRate\":{},\"serverTick\":{},\"worldSize\":{},\"sessionToken\":\"{}\",\"posQuantum\":{},\"game\":{},\"fields\":{}}}",
            w.protocol_version,
            w.player_id,
            w.entity_id,
            w.tick_rate,
            w.server_tick,
            vec2_json(w.world_size),
            hex(&w.session_token),
            f32_json(w.pos_quantum),
            json_str(&w.game),
            list(&w.fields, |f| format!(
                "{{\"name\":{},\"kind\":\"{:?}\"}}",
                json_str(&f.name),
                f.kind
            )),
        ),
        ServerMsg::Snapshot(s) => snapshot_json(s),
        ServerMsg::Pong(p) => format!(
            "{{\"type\":\"Pong\",\"nonce\":{},\"serverTick\":{}}}",
            p.nonce, p.server_tick
        ),
        ServerMsg::Event(e) => format!(
            "{{\"type\":\"Event\",\"payload\":\"{}\"}}",
            hex(&e.payload)
        ),
    }
}

fn client_json(msg: &ClientMsg) -> String {
    match msg {
        ClientMsg::Hello(h) => format!(
            "{{\"type\":\"Hello\",\"protocolVersion\":{},\"name\":{},\"room\":{},\"resume\":{},\"authToken\":{}}}",
            h.protocol_version,
            json_str(&h.name),
            json_str(&h.room),
            h.resume
                .map_or("null".to_owned(), |t| format!("\"{}\"", hex(&t))),
            h.auth_token.as_deref().map_or("null".to_owned(), json_str),
        ),
        ClientMsg::Input(i) => format!(
            "{{\"type\":\"Input\",\"seq\":{},\"movement\":{},\"buttons\":{},\"payload\":\"{}\"}}",
            i.seq,
            vec2_json(i.movement),
            i.buttons,
            hex(i.payload.as_bytes())
        ),
        ClientMsg::Ping(p) => format!("{{\"type\":\"Ping\",\"nonce\":{}}}", p.nonce),
        ClientMsg::Message(m) => format!(
            "{{\"type\":\"Message\",\"payload\":\"{}\"}}",
            hex(&m.payload)
        ),
    }
}

fn world_json(w: &World) -> String {
    format!(
        "{{\"tick\":{},\"e\":{}}}",
        w.tick.map_or("null".to_owned(), |t| t.to_string()),
        list(&w.entities, |e| {
            let mut s = format!(
                "[{},{},{},{},{},{}",
                e.id,
                u8::from(e.kind == EntityKind::Avatar),
                e.pos[0],
                e.pos[1],
                e.vel[0],
                e.vel[1]
            );
            for f in e.fields {
                write!(s, ",{f}").unwrap();
            }
            s.push(']');
            s
        })
    )
}

fn error_json(e: &DeltaError) -> String {
    match *e {
        DeltaError::WrongBase { base_tick, held } => format!(
            "{{\"kind\":\"WrongBase\",\"baseTick\":{base_tick},\"held\":{}}}",
            held.map_or("null".to_owned(), |h| h.to_string())
        ),
        DeltaError::NotNewer { tick, base_tick } => {
            format!("{{\"kind\":\"NotNewer\",\"tick\":{tick},\"baseTick\":{base_tick}}}")
        }
        DeltaError::KeyframeWithChanges => "{\"kind\":\"KeyframeWithChanges\"}".to_owned(),
        DeltaError::UnknownRemoved(id) => format!("{{\"kind\":\"UnknownRemoved\",\"id\":{id}}}"),
        DeltaError::ChangedOutOfRange(n) => {
            format!("{{\"kind\":\"ChangedOutOfRange\",\"index\":{n}}}")
        }
        DeltaError::BadAdded(id) => format!("{{\"kind\":\"BadAdded\",\"id\":{id}}}"),
        DeltaError::BadField(n) => format!("{{\"kind\":\"BadField\",\"index\":{n}}}"),
    }
}

// ---------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------

/// Lines of `cases.jsonl`, one case each; `count` is checked against the checker's.
#[derive(Default)]
struct Corpus {
    lines: String,
    count: usize,
}

impl Corpus {
    fn push(&mut self, line: String) {
        self.lines.push_str(&line);
        self.lines.push('\n');
        self.count += 1;
    }

    /// A new client: the checker starts again from an empty world.
    fn stream(&mut self, name: &str) {
        self.push(format!("{{\"t\":\"stream\",\"name\":{}}}", json_str(name)));
    }

    /// A snapshot that applies, and the world after it.
    fn snapshot(&mut self, bytes: &[u8], world: &World) {
        self.push(format!(
            "{{\"t\":\"snap\",\"hex\":\"{}\",\"world\":{}}}",
            hex(bytes),
            world_json(world)
        ));
    }

    /// A snapshot that does not apply to the stream's world.
    fn bad(&mut self, bytes: &[u8], error: &DeltaError) {
        self.push(format!(
            "{{\"t\":\"bad\",\"hex\":\"{}\",\"error\":{}}}",
            hex(bytes),
            error_json(error)
        ));
    }

    /// A server message and what it decodes to in Rust (`null`: refused). `exact`: the
    /// bytes are the canonical encoding of that value, so an encoder must write them.
    fn server(&mut self, bytes: &[u8]) {
        let (outcome, exact) = match decode_server(bytes) {
            Ok(msg) if fits_in_js(&Decoded::Server(&msg)) => {
                let json = server_json(&msg);
                let exact = encode_to_vec(&msg).unwrap() == bytes && !json.contains(NAN);
                (json, exact)
            }
            Ok(_) => return, // a u64 above 2^53: documented as unsupported in JavaScript
            Err(_) => ("null".to_owned(), false),
        };
        self.push(format!(
            "{{\"t\":\"server\",\"hex\":\"{}\",\"msg\":{outcome},\"exact\":{exact}}}",
            hex(bytes)
        ));
    }

    /// A client message and what it decodes to in Rust, as the server decodes it.
    fn client(&mut self, bytes: &[u8]) {
        let (outcome, exact) = match decode_client(bytes, DEFAULT_MAX_MESSAGE_BYTES) {
            Ok(msg) if fits_in_js(&Decoded::Client(&msg)) => {
                let json = client_json(&msg);
                let exact = encode_to_vec(&msg).unwrap() == bytes && !json.contains(NAN);
                (json, exact)
            }
            Ok(_) => return,
            Err(_) => ("null".to_owned(), false),
        };
        self.push(format!(
            "{{\"t\":\"client\",\"hex\":\"{}\",\"msg\":{outcome},\"exact\":{exact}}}",
            hex(bytes)
        ));
    }
}

/// A NaN `f32` in a message's JSON. JavaScript has one NaN, so a NaN with other bits (a
/// damaged message can hold one) does not survive decoding and encoding again: such a
/// message is compared by value, never byte for byte.
const NAN: &str = "\"NaN\"";

enum Decoded<'a> {
    Server(&'a ServerMsg),
    Client(&'a ClientMsg),
}

/// Whether every `u64` of the message is a safe JavaScript integer.
fn fits_in_js(msg: &Decoded<'_>) -> bool {
    const SAFE: u64 = (1 << 53) - 1;
    match msg {
        Decoded::Server(ServerMsg::Welcome(w)) => w.server_tick <= SAFE,
        Decoded::Server(ServerMsg::Snapshot(s)) => s.tick <= SAFE && s.base_tick <= SAFE,
        Decoded::Server(ServerMsg::Pong(p)) => p.nonce <= SAFE && p.server_tick <= SAFE,
        Decoded::Server(ServerMsg::Event(_)) => true,
        Decoded::Client(ClientMsg::Ping(p)) => p.nonce <= SAFE,
        Decoded::Client(_) => true,
    }
}

/// Writes the damaged forms of `bytes`: a byte replaced, cut short, one byte more, one
/// byte inserted. Each is written with the Rust decoder's verdict on it.
fn damage(rng: &mut Rng, bytes: &[u8], corpus: &mut Corpus, server: bool) {
    let mut variants = Vec::new();
    let mut b = bytes.to_vec();
    let i = rng.below(b.len() as u64) as usize;
    b[i] = match rng.below(4) {
        0 => 251 + rng.below(5) as u8,
        _ => rng.next() as u8,
    };
    variants.push(b);
    variants.push(bytes[..rng.below(bytes.len() as u64) as usize].to_vec());
    let mut b = bytes.to_vec();
    b.push(rng.next() as u8);
    variants.push(b);
    let mut b = bytes.to_vec();
    b.insert(rng.below(bytes.len() as u64 + 1) as usize, rng.next() as u8);
    variants.push(b);
    for v in variants {
        if server {
            corpus.server(&v);
        } else {
            corpus.client(&v);
        }
    }
}

fn q(id: u32, kind: EntityKind, pos: [i32; 2], vel: [i32; 2]) -> QEntity {
    QEntity {
        id,
        kind,
        pos,
        vel,
        fields: [0; MAX_FIELDS],
    }
}

/// The server's world, moving, spawning and despawning.
struct Sim {
    entities: Vec<QEntity>,
    next_id: u32,
    free: Vec<u32>,
}

impl Sim {
    fn new(rng: &mut Rng, n: usize, first_id: u32) -> Self {
        let mut sim = Self {
            entities: Vec::new(),
            next_id: first_id,
            free: Vec::new(),
        };
        for _ in 0..n {
            sim.spawn(rng);
        }
        sim
    }

    fn spawn(&mut self, rng: &mut Rng) {
        let id = if !self.free.is_empty() && rng.chance(0.5) {
            self.free
                .swap_remove(rng.below(self.free.len() as u64) as usize)
        } else {
            let id = self.next_id;
            // Mostly the next id, sometimes a jump (ids of three and five varint bytes);
            // at u32::MAX the same id comes again, and is taken only when free.
            self.next_id = self.next_id.saturating_add(
                1 + if rng.chance(0.05) {
                    rng.below(70_000) as u32
                } else {
                    0
                },
            );
            id
        };
        if self.entities.iter().any(|e| e.id == id) {
            return;
        }
        let kind = if rng.chance(0.3) {
            EntityKind::Avatar
        } else {
            EntityKind::Npc
        };
        let mut e = q(
            id,
            kind,
            [rng.i32_in(0, 16_000), rng.i32_in(0, 16_000)],
            [rng.i32_in(-30, 30), rng.i32_in(-30, 30)],
        );
        if rng.chance(0.3) {
            e.fields[rng.below(MAX_FIELDS as u64) as usize] = rng.value();
        }
        let at = self.entities.partition_point(|x| x.id < id);
        self.entities.insert(at, e);
    }

    fn tick(&mut self, rng: &mut Rng) {
        for e in &mut self.entities {
            e.pos = e.predicted(1);
            if rng.chance(0.08) {
                e.vel = [rng.i32_in(-40, 40), rng.i32_in(-40, 40)];
            }
            if rng.chance(0.02) {
                e.pos = [rng.value(), rng.value()];
            }
            if rng.chance(0.01) {
                e.vel = [rng.value(), rng.value()]; // wraps within a few ticks
            }
            if rng.chance(0.01) {
                // The id reused for another kind within one tick.
                e.kind = match e.kind {
                    EntityKind::Npc => EntityKind::Avatar,
                    EntityKind::Avatar => EntityKind::Npc,
                };
            }
            if rng.chance(0.06) {
                for _ in 0..=rng.below(3) {
                    e.fields[rng.below(MAX_FIELDS as u64) as usize] = rng.value();
                }
            }
        }
        let despawns = if rng.chance(0.2) { rng.below(4) } else { 0 };
        for _ in 0..despawns {
            if self.entities.is_empty() {
                break;
            }
            let e = self
                .entities
                .remove(rng.below(self.entities.len() as u64) as usize);
            self.free.push(e.id);
        }
        let spawns = if rng.chance(0.2) { rng.below(4) } else { 0 };
        for _ in 0..spawns {
            self.spawn(rng);
        }
    }
}

/// What one client is sent: a subset of the world that changes over time.
#[derive(Clone, Copy)]
enum View {
    All,
    /// Entities whose id hash, in a window of 25 ticks, is not 0 mod 3.
    Hashed,
    /// Entities within a radius of a point that moves.
    Near,
}

fn visible(view: View, tick: u64, e: &QEntity) -> bool {
    match view {
        View::All => true,
        View::Hashed => {
            let h = (u64::from(e.id) ^ (tick / 25)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60;
            h % 3 != 0
        }
        View::Near => {
            let c = [(tick % 400) as i64 * 40, 8_000];
            let d = [i64::from(e.pos[0]) - c[0], i64::from(e.pos[1]) - c[1]];
            d[0].abs() < 6_000 && d[1].abs() < 6_000 && d[0] * d[0] + d[1] * d[1] < 6_000 * 6_000
        }
    }
}

/// Encodes a snapshot the way the server does, and checks it against the plain encoding.
fn server_bytes(s: &Snapshot) -> Vec<u8> {
    let body = DeltaBody {
        removed: s.removed.clone(),
        changed: s.changed.clone(),
        added: s.added.clone(),
        fields: s.fields.clone(),
    };
    let mut shared = Vec::new();
    encode_snapshot_body(&body, &mut shared).unwrap();
    let mut out = Vec::new();
    write_snapshot(s.tick, s.base_tick, s.last_input_seq, &shared, &mut out).unwrap();
    assert_eq!(out, encode_to_vec(&ServerMsg::Snapshot(s.clone())).unwrap());
    out
}

fn snapshot_of(tick: u64, base_tick: u64, seq: u32, body: &DeltaBody) -> Snapshot {
    Snapshot {
        tick,
        base_tick,
        last_input_seq: seq,
        removed: body.removed.clone(),
        changed: body.changed.clone(),
        added: body.added.clone(),
        fields: body.fields.clone(),
    }
}

/// A snapshot broken in one of the ways `World::apply` must refuse (it may happen to
/// still fit; the caller then does not use it).
fn break_snapshot(rng: &mut Rng, s: &Snapshot, held: &World) -> Snapshot {
    let mut b = s.clone();
    let held_ids: Vec<u32> = held.entities.iter().map(|e| e.id).collect();
    match rng.below(12) {
        0 => b.base_tick = s.base_tick.wrapping_add(1 + rng.below(3)),
        1 => b.tick = b.base_tick,
        2 => b.tick = 0,
        3 => {
            b.base_tick = 0;
            b.removed.push(rng.below(5) as u32);
        }
        4 => {
            // An id that is not held: after the others, or in a hole between held ids.
            let hole = held_ids
                .windows(2)
                .find(|w| w[1] - w[0] > 1)
                .map(|w| w[0] + 1);
            match hole {
                Some(id) if rng.chance(0.7) => b.removed = vec![id],
                _ => {
                    b.removed.push(rng.below(3) as u32);
                    b.removed.push(u32::MAX - rng.below(2) as u32);
                }
            }
        }
        5 => b.changed.push(Changed {
            skip: held.entities.len() as u32 + rng.below(3) as u32,
            dpos: [1, 0],
            dvel: [0, 0],
        }),
        6 => b.changed.insert(
            0,
            Changed {
                skip: u32::MAX,
                dpos: [0, 0],
                dvel: [0, 0],
            },
        ),
        7 => {
            // Re-add a held entity that stays (not removed).
            let id = held_ids
                .get(rng.below(held_ids.len().max(1) as u64) as usize)
                .copied()
                .unwrap_or(0);
            b.added = vec![Added {
                id_gap: id,
                kind: EntityKind::Npc,
                pos: [0, 0],
                vel: [0, 0],
            }];
            b.fields.clear();
        }
        8 => {
            b.added.push(Added {
                id_gap: u32::MAX,
                kind: EntityKind::Avatar,
                pos: [1, 1],
                vel: [0, 0],
            });
            b.added.push(Added {
                id_gap: u32::MAX,
                kind: EntityKind::Npc,
                pos: [1, 1],
                vel: [0, 0],
            });
        }
        9 => b.fields.push(FieldChange {
            skip: 0,
            field: MAX_FIELDS as u8 + rng.below(248) as u8,
            delta: 1,
        }),
        10 => {
            let f = rng.below(MAX_FIELDS as u64) as u8;
            b.fields.push(FieldChange {
                skip: 1,
                field: f,
                delta: 1,
            });
            b.fields.push(FieldChange {
                skip: 0,
                field: f.saturating_sub(rng.below(2) as u8),
                delta: 2,
            });
        }
        _ => b.fields.push(FieldChange {
            skip: 1_000_000 + rng.below(u64::from(u32::MAX) - 1_000_000) as u32,
            field: 0,
            delta: -1,
        }),
    }
    b
}

/// One client's stream over `ticks` ticks of a world of about `n` entities.
fn stream(corpus: &mut Corpus, seed: u64, n: usize, ticks: u32, view: View, first_tick: u64) {
    let mut rng = Rng(seed);
    corpus.stream(&format!(
        "seed {seed}, {n} entities, from tick {first_tick}"
    ));
    let first_id = if rng.chance(0.3) { u32::MAX - 5_000 } else { 0 };
    let mut sim = Sim::new(&mut rng, n, first_id);
    let mut world = World::default();
    let mut sent: Option<(u64, Vec<QEntity>)> = None;
    let mut seq = 0u32;
    let mut body = DeltaBody::default();
    let mut tick = first_tick;
    for _ in 0..ticks {
        tick += 1;
        sim.tick(&mut rng);
        if rng.chance(0.3) {
            seq = seq.saturating_add(rng.below(3) as u32);
        }
        // A slow reader: this tick is not written (sometimes a long run of them).
        if sent.is_some() && rng.chance(0.15) {
            if rng.chance(0.05) {
                for _ in 0..rng.below(300) {
                    tick += 1;
                    sim.tick(&mut rng);
                }
            }
            continue;
        }
        let current: Vec<QEntity> = sim
            .entities
            .iter()
            .filter(|e| visible(view, tick, e))
            .copied()
            .collect();
        let keyframe = sent.is_none() || rng.chance(0.03);
        let base = if keyframe { None } else { sent.as_ref() };
        diff(base.map(|(t, e)| (*t, &e[..])), tick, &current, &mut body);
        let s = snapshot_of(tick, base.map_or(0, |(t, _)| *t), seq, &body);

        if rng.chance(0.12) {
            let b = break_snapshot(&mut rng, &s, &world);
            let mut scratch = world.clone();
            if let Err(e) = scratch.apply(&b) {
                assert_eq!(scratch, world, "a refused snapshot changed nothing");
                corpus.bad(&server_bytes(&b), &e);
            }
        }

        let bytes = server_bytes(&s);
        let ServerMsg::Snapshot(back) = decode_server(&bytes).unwrap() else {
            panic!("not a snapshot")
        };
        world.apply(&back).unwrap();
        assert_eq!(world.entities, current, "the Rust client holds the view");
        corpus.snapshot(&bytes, &world);
        if rng.chance(0.05) {
            damage(&mut rng, &bytes, corpus, true);
        }
        sent = Some((tick, current));
    }
}

/// Random messages of every kind, each with damaged copies.
fn messages(corpus: &mut Corpus, seed: u64, count: usize) {
    let mut rng = Rng(seed);
    for _ in 0..count {
        let client = match rng.below(4) {
            0 => ClientMsg::Hello(Hello {
                protocol_version: rng.below(4) as u16,
                name: rng.text(8),
                room: rng.text(12),
                resume: rng
                    .chance(0.5)
                    .then(|| std::array::from_fn(|_| rng.next() as u8)),
                auth_token: rng.chance(0.5).then(|| rng.text(40)),
            }),
            1 => ClientMsg::Input(Input {
                seq: rng.next() as u32 >> rng.below(32),
                movement: Vec2::new(rng.f32(), rng.f32()),
                buttons: rng.next() as u16 >> rng.below(16),
                payload: InputPayload::new(&rng.bytes(32)).unwrap(),
            }),
            2 => ClientMsg::Ping(Ping {
                nonce: rng.next() >> (11 + rng.below(53)),
            }),
            _ => ClientMsg::Message(GameMessage {
                payload: rng.bytes(300),
            }),
        };
        let bytes = encode_to_vec(&client).unwrap();
        corpus.client(&bytes);
        damage(&mut rng, &bytes, corpus, false);

        let server = match rng.below(3) {
            0 => ServerMsg::Welcome(Welcome {
                protocol_version: rng.below(4) as u16,
                player_id: rng.next() as u32 >> rng.below(32),
                entity_id: rng.next() as u32 >> rng.below(32),
                tick_rate: rng.next() as u16 >> rng.below(16),
                server_tick: rng.next() >> (11 + rng.below(53)),
                world_size: Vec2::new(rng.f32(), rng.f32()),
                session_token: std::array::from_fn(|_| rng.next() as u8),
                pos_quantum: rng.f32(),
                game: rng.text(10),
                fields: (0..rng.below(MAX_FIELDS as u64 + 1))
                    .map(|_| FieldSpec {
                        name: rng.text(6),
                        kind: [
                            FieldKind::Bool,
                            FieldKind::U8,
                            FieldKind::I8,
                            FieldKind::U16,
                            FieldKind::I16,
                            FieldKind::I32,
                        ][rng.below(6) as usize],
                    })
                    .collect(),
            }),
            1 => ServerMsg::Pong(Pong {
                nonce: rng.next() >> (11 + rng.below(53)),
                server_tick: rng.next() >> (11 + rng.below(53)),
            }),
            _ => ServerMsg::Event(GameEvent {
                payload: rng.bytes(300),
            }),
        };
        let bytes = encode_to_vec(&server).unwrap();
        corpus.server(&bytes);
        damage(&mut rng, &bytes, corpus, true);
    }
}

/// The messages of the byte examples of docs/PROTOCOL.md section 8 (`protocol_examples.rs`
/// pins their bytes to the document), encoded here by the Rust codec: the keyframe and
/// the delta as a stream, the others as messages.
fn examples(corpus: &mut Corpus) {
    let token = [
        0x9e, 0x2f, 0x41, 0xc7, 0x08, 0xd3, 0x6a, 0xfb, 0x15, 0xe0, 0x77, 0x3c, 0xb9, 0x04, 0x5d,
        0xff,
    ];
    for resume in [None, Some(token)] {
        corpus.client(
            &encode_to_vec(&ClientMsg::Hello(Hello {
                protocol_version: PROTOCOL_VERSION,
                name: "ada".into(),
                room: "lobby".into(),
                resume,
                auth_token: None,
            }))
            .unwrap(),
        );
    }
    for (seq, movement, buttons, payload) in [
        (1, Vec2::new(1.0, 0.0), 0, &[][..]),
        (2, Vec2::new(0.0, -1.0), 1, &[0x2c, 0x01, 0xfb][..]),
    ] {
        corpus.client(
            &encode_to_vec(&ClientMsg::Input(Input {
                seq,
                movement,
                buttons,
                payload: InputPayload::new(payload).unwrap(),
            }))
            .unwrap(),
        );
    }
    for msg in [
        ClientMsg::Message(GameMessage {
            payload: b"hi!".to_vec(),
        }),
        ClientMsg::Ping(Ping {
            nonce: 1_700_000_000_000,
        }),
    ] {
        corpus.client(&encode_to_vec(&msg).unwrap());
    }
    let welcome = ServerMsg::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        player_id: 1,
        entity_id: 7,
        tick_rate: 30,
        server_tick: 300,
        world_size: Vec2::new(800.0, 600.0),
        session_token: token,
        pos_quantum: 0.0625,
        game: "tag".into(),
        fields: vec![
            FieldSpec {
                name: "it".into(),
                kind: FieldKind::Bool,
            },
            FieldSpec {
                name: "score".into(),
                kind: FieldKind::U16,
            },
        ],
    });
    for msg in [
        welcome,
        ServerMsg::Event(GameEvent {
            payload: vec![0x01, 0x07],
        }),
        ServerMsg::Pong(Pong {
            nonce: 1_700_000_000_000,
            server_tick: 70_000,
        }),
    ] {
        corpus.server(&encode_to_vec(&msg).unwrap());
    }
    let f = |it, score| {
        let mut f = [0; MAX_FIELDS];
        f[0] = it;
        f[1] = score;
        f
    };
    let with = |mut e: QEntity, fields| {
        e.fields = fields;
        e
    };
    let w300 = vec![
        with(q(3, EntityKind::Npc, [160, 320], [2, -1]), f(0, 0)),
        with(q(7, EntityKind::Avatar, [1600, 800], [2, 0]), f(1, 300)),
    ];
    let w303 = vec![
        with(q(7, EntityKind::Avatar, [1605, 801], [1, 1]), f(0, 310)),
        with(q(12, EntityKind::Npc, [4800, 3200], [-3, 1]), f(1, 0)),
    ];
    corpus.stream("the examples of docs/PROTOCOL.md section 8");
    let mut world = World::default();
    let mut body = DeltaBody::default();
    diff(None, 300, &w300, &mut body);
    let key = server_bytes(&snapshot_of(300, 0, 42, &body));
    diff(Some((300, &w300)), 303, &w303, &mut body);
    let delta = snapshot_of(303, 300, 43, &body);
    let delta_bytes = server_bytes(&delta);
    for bytes in [&key, &delta_bytes] {
        let ServerMsg::Snapshot(s) = decode_server(bytes).unwrap() else {
            panic!("not a snapshot")
        };
        world.apply(&s).unwrap();
        corpus.snapshot(bytes, &world);
    }
    assert_eq!(world.entities, w303);
    // Applied a second time, the delta is refused.
    let err = world.clone().apply(&delta).unwrap_err();
    corpus.bad(&delta_bytes, &err);
}

/// The keyframe and delta of `benches/frame.rs` (`snapshots(n)`), for the JavaScript
/// bench and as a stream of the corpus. Returns a line of `bench.jsonl`.
fn bench_input(corpus: &mut Corpus, n: u32) -> String {
    let base: Vec<QEntity> = (0..n)
        .map(|i| {
            q(
                i,
                if i % 10 == 0 {
                    EntityKind::Avatar
                } else {
                    EntityKind::Npc
                },
                [(i * 37 % 16_000) as i32, (i * 91 % 16_000) as i32],
                [18, -22],
            )
        })
        .collect();
    let mut now: Vec<QEntity> = base
        .iter()
        .map(|e| QEntity {
            pos: e.predicted(1),
            ..*e
        })
        .collect();
    for e in now.iter_mut().step_by(10) {
        e.vel = [-e.vel[1], e.vel[0]];
    }
    let mut body = DeltaBody::default();
    diff(None, 90_000, &base, &mut body);
    let key = server_bytes(&snapshot_of(90_000, 0, 0, &body));
    diff(Some((90_000, &base)), 90_001, &now, &mut body);
    let delta = server_bytes(&snapshot_of(90_001, 90_000, 123_456, &body));
    corpus.stream(&format!("benches/frame.rs, {n} entities"));
    let mut world = World::default();
    for bytes in [&key, &delta] {
        let ServerMsg::Snapshot(s) = decode_server(bytes).unwrap() else {
            panic!("not a snapshot")
        };
        world.apply(&s).unwrap();
        corpus.snapshot(bytes, &world);
    }
    assert_eq!(world.entities, now);
    format!(
        "{{\"entities\":{n},\"keyframe\":\"{}\",\"delta\":\"{}\"}}",
        hex(&key),
        hex(&delta)
    )
}

fn write_corpus(dir: &Path) -> usize {
    let mut corpus = Corpus::default();
    examples(&mut corpus);
    let views = [View::All, View::Hashed, View::Near];
    for seed in 0..24u64 {
        let n = [0, 3, 20, 60, 150][seed as usize % 5];
        let first_tick = [0, 250, 65_530, 4_294_967_000, (1 << 40) - 50][seed as usize % 5];
        stream(
            &mut corpus,
            seed,
            n,
            120,
            views[seed as usize % 3],
            first_tick,
        );
    }
    messages(&mut corpus, 99, 400);
    let bench: Vec<String> = [1_000, 10_000]
        .into_iter()
        .map(|n| bench_input(&mut corpus, n))
        .collect();
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("cases.jsonl"), &corpus.lines).unwrap();
    std::fs::write(dir.join("bench.jsonl"), bench.join("\n") + "\n").unwrap();
    corpus.count
}

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Runs the checker on `dir`; `None` when node is not installed.
fn run_checker(dir: &Path) -> Option<std::process::Output> {
    match std::process::Command::new("node")
        .arg(repo_file("web/corpus-check.mjs"))
        .arg(dir)
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => panic!("running node: {e}"),
    }
}

#[test]
fn javascript_client_agrees_with_the_rust_encoder() {
    let keep = std::env::var_os("TICKCAST_CORPUS_DIR").map(PathBuf::from);
    let dir = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("tickcast-js-corpus-{}", std::process::id()))
    });
    let count = write_corpus(&dir);
    // Every kind of case is there, many times over.
    let text = std::fs::read_to_string(dir.join("cases.jsonl")).unwrap();
    for (kind, at_least) in [
        ("\"t\":\"snap\"", 2_000),
        ("\"t\":\"bad\"", 200),
        ("\"t\":\"server\"", 1_000),
        ("\"t\":\"client\"", 1_000),
        ("\"t\":\"stream\"", 27),
    ] {
        let n = text.matches(kind).count();
        assert!(
            n >= at_least,
            "{n} cases {kind}, expected {at_least} or more"
        );
    }

    let Some(out) = run_checker(&dir) else {
        if keep.is_none() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        let what = "node is not installed, so the JavaScript client was not checked \
                    against the Rust encoder";
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{what}: install nodejs (apt-get install -y nodejs)");
        }
        writeln!(
            std::io::stderr(),
            "SKIPPED: javascript_client_agrees_with_the_rust_encoder: {what}; install \
             nodejs (apt-get install -y nodejs) to run it"
        )
        .unwrap();
        return;
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("corpus ok: {count} cases")),
        "web/corpus-check.mjs failed on {}:\n{stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same check with one wrong expectation must fail: the first entity of the
    // examples' keyframe one quantum to the right.
    let bad_dir = dir.join("wrong");
    std::fs::create_dir_all(&bad_dir).unwrap();
    let right = "\"world\":{\"tick\":300,\"e\":[[3,0,160,320,";
    assert_eq!(text.matches(right).count(), 1);
    let line = 1 + text.lines().position(|l| l.contains(right)).unwrap();
    let wrong = text.replacen(right, "\"world\":{\"tick\":300,\"e\":[[3,0,161,320,", 1);
    std::fs::write(bad_dir.join("cases.jsonl"), wrong).unwrap();
    let out = run_checker(&bad_dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains(&format!("(line {line}): world differs")),
        "a wrong expectation went unnoticed:\n{stderr}"
    );
    std::fs::remove_dir_all(&bad_dir).unwrap();
    if keep.is_none() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
