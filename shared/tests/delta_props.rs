//! Property tests of quantised deltas (`delta::diff` on the server, `World::apply` on the
//! client), through the real bytes: the correctness core of the bandwidth feature.
//!
//! The main property plays a server world of up to 60 entities over up to 40 ticks
//! (spawns, despawns, id reuse with another kind, velocity changes, jumps, values near
//! `i32::MIN`/`MAX` that wrap), whose entities carry random game fields (zero, small
//! counters, values near the `i32` edges) that change between ticks, a view that changes
//! every tick like an area of interest, and a slow client that receives only some ticks.
//! Every received snapshot is built as the server builds it (against the last view
//! written to that client, or as a keyframe), encoded with `encode_snapshot_body` +
//! `write_snapshot`, decoded with `decode_server` and applied: the client's world must
//! then be the server's view exactly, fields included, the reference model must agree,
//! and the snapshot must carry exactly one field change per field value that differs
//! from what the client holds, in the form the document prescribes (a `Snapshot`,
//! variant 1, when there is none; a `FieldSnapshot`, variant 4, otherwise).
//!
//! The others: moving as predicted with unchanged fields costs no record; `apply` on
//! arbitrary or mutated snapshots (field changes included) never panics, agrees with a
//! simple reference model (written from PROTOCOL.md section 5.1, not from the code: it
//! calls nothing of `delta`), and leaves the world untouched on error; damaged bytes, of
//! the short form and of the long form with an empty field list, never panic the decode +
//! apply path.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::Index;
use tickcast_shared::codec::{decode_server, encode_snapshot_body, encode_to_vec, write_snapshot};
use tickcast_shared::delta::{diff, DeltaBody, DeltaError, QEntity, World};
use tickcast_shared::{
    Added, Changed, EntityKind, FieldChange, Fields, ServerMsg, Snapshot, MAX_FIELDS,
};

// ---------------------------------------------------------------- strategies

fn kind() -> impl Strategy<Value = EntityKind> {
    prop_oneof![Just(EntityKind::Npc), Just(EntityKind::Avatar)]
}

/// Values that wrap within a few ticks.
fn near_edge() -> impl Strategy<Value = i32> {
    prop_oneof![i32::MAX - 64..=i32::MAX, i32::MIN..=i32::MIN + 64]
}

fn coord() -> impl Strategy<Value = i32> {
    prop_oneof![
        5 => -20_000i32..20_000,
        1 => -3i32..3,
        1 => near_edge(),
        1 => any::<i32>(),
    ]
}

fn speed() -> impl Strategy<Value = i32> {
    prop_oneof![
        5 => -8i32..=8,
        1 => -300i32..300,
        1 => near_edge(),
        1 => any::<i32>(),
    ]
}

fn pos() -> impl Strategy<Value = [i32; 2]> {
    (coord(), coord()).prop_map(|(x, y)| [x, y])
}

fn vel() -> impl Strategy<Value = [i32; 2]> {
    (speed(), speed()).prop_map(|(x, y)| [x, y])
}

/// Ids from a small range (so they are reused after a despawn), plus a few at the varint
/// boundary and at the top of `u32` (gap coding edges).
fn id() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => 0u32..48,
        1 => 248u32..254,
        1 => u32::MAX - 4..=u32::MAX,
    ]
}

/// A game field's value: mostly 0 (undeclared fields stay 0), small counters, and values
/// at the `i32` edges that wrap on the next change.
fn field_value() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => Just(0),
        3 => -3i32..300,
        1 => near_edge(),
        1 => any::<i32>(),
    ]
}

fn fields() -> impl Strategy<Value = Fields> {
    prop_oneof![
        2 => Just([0; MAX_FIELDS]),
        3 => prop::array::uniform8(field_value()),
    ]
}

/// A change of one field's value: small steps, and jumps across the whole range.
fn field_step() -> impl Strategy<Value = i32> {
    prop_oneof![
        4 => -3i32..=3,
        1 => near_edge(),
        1 => any::<i32>(),
    ]
}

fn entity() -> impl Strategy<Value = QEntity> {
    (id(), kind(), pos(), vel(), fields()).prop_map(|(id, kind, pos, vel, fields)| QEntity {
        id,
        kind,
        pos,
        vel,
        fields,
    })
}

/// A list sorted by id with unique ids, as the server keeps it.
fn sorted(entities: Vec<QEntity>) -> Vec<QEntity> {
    let map: BTreeMap<u32, QEntity> = entities.into_iter().map(|e| (e.id, e)).collect();
    map.into_values().collect()
}

fn entities(max: usize) -> impl Strategy<Value = Vec<QEntity>> {
    prop::collection::vec(entity(), 0..max).prop_map(sorted)
}

/// One thing that happens to the server world during a tick, after every entity moved
/// by its velocity. `Index` picks an existing entity.
#[derive(Debug, Clone)]
enum Op {
    SetVel(Index, [i32; 2]),
    Jump(Index, [i32; 2]),
    /// A small correction (the residuals a game with collisions produces).
    Nudge(Index, [i32; 2]),
    /// Pushes an entity to the edge of `i32`, moving outwards, so it wraps soon.
    ToEdge(Index, bool),
    /// Spawns, or replaces an entity with that id (id reuse, maybe with another kind).
    Spawn(QEntity),
    Despawn(Index),
    /// Sets one field of an entity.
    SetField(Index, usize, i32),
    /// Adds to one field of an entity, wrapping.
    AddField(Index, usize, i32),
    /// The id is reused for the other kind, keeping position, velocity and fields: the
    /// client must still see its fields restart from 0 and be sent again.
    Rekind(Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<Index>(), vel()).prop_map(|(i, v)| Op::SetVel(i, v)),
        2 => (any::<Index>(), pos()).prop_map(|(i, p)| Op::Jump(i, p)),
        2 => (any::<Index>(), -3i32..=3, -3i32..=3).prop_map(|(i, x, y)| Op::Nudge(i, [x, y])),
        1 => (any::<Index>(), any::<bool>()).prop_map(|(i, up)| Op::ToEdge(i, up)),
        3 => entity().prop_map(Op::Spawn),
        3 => any::<Index>().prop_map(Op::Despawn),
        2 => (any::<Index>(), 0..MAX_FIELDS, field_value()).prop_map(|(i, f, v)| Op::SetField(i, f, v)),
        3 => (any::<Index>(), 0..MAX_FIELDS, field_step()).prop_map(|(i, f, d)| Op::AddField(i, f, d)),
        1 => any::<Index>().prop_map(Op::Rekind),
    ]
}

/// Which entities the player sees at a tick.
#[derive(Debug, Clone)]
enum View {
    /// The whole world (`--view-radius 0`).
    All,
    /// A random subset: entity `id` is visible if bit `id % 64` is set.
    Mask(u64),
    /// An area of interest: within `radius` quanta (each axis, wrapping distance) of one
    /// entity (the player's avatar).
    Near(Index, u32),
}

fn view() -> impl Strategy<Value = View> {
    prop_oneof![
        2 => Just(View::All),
        2 => any::<u64>().prop_map(View::Mask),
        3 => (any::<Index>(), prop_oneof![0u32..100, 100u32..40_000, Just(u32::MAX)])
            .prop_map(|(i, r)| View::Near(i, r)),
    ]
}

/// How the server picks the base of a snapshot it writes.
#[derive(Debug, Clone, Copy)]
enum Base {
    /// A delta against the last snapshot written (a keyframe if there is none).
    Delta,
    /// A keyframe, whatever the client holds.
    Keyframe,
    /// Whichever of the two encodes smaller (the server's rule).
    Smaller,
}

#[derive(Debug, Clone)]
struct Tick {
    ops: Vec<Op>,
    view: View,
    /// The snapshot of this tick reaches the client (else a slow reader skipped it).
    received: bool,
    base: Base,
}

fn tick_plan() -> impl Strategy<Value = Tick> {
    (
        prop::collection::vec(op(), 0..8),
        view(),
        prop::bool::weighted(0.6),
        prop_oneof![6 => Just(Base::Delta), 1 => Just(Base::Keyframe), 2 => Just(Base::Smaller)],
    )
        .prop_map(|(ops, view, received, base)| Tick {
            ops,
            view,
            received,
            base,
        })
}

fn first_tick() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 1u64..5,
        1 => Just(u64::from(u32::MAX) - 3), // ticks cross 2^32
        1 => Just(u64::MAX - 100),
    ]
}

// ------------------------------------------------------------ the server model

const MAX_ENTITIES: usize = 60;

struct Server {
    tick: u64,
    world: BTreeMap<u32, QEntity>,
}

impl Server {
    fn nth(&self, i: Index) -> Option<u32> {
        (!self.world.is_empty()).then(|| *self.world.keys().nth(i.index(self.world.len())).unwrap())
    }

    fn step(&mut self, ops: &[Op]) {
        self.tick += 1;
        for e in self.world.values_mut() {
            e.pos = [
                e.pos[0].wrapping_add(e.vel[0]),
                e.pos[1].wrapping_add(e.vel[1]),
            ];
        }
        for op in ops {
            match *op {
                Op::Spawn(e) => {
                    if self.world.len() < MAX_ENTITIES || self.world.contains_key(&e.id) {
                        self.world.insert(e.id, e);
                    }
                }
                Op::Despawn(i) => {
                    if let Some(id) = self.nth(i) {
                        self.world.remove(&id);
                    }
                }
                Op::SetVel(i, v) => self.with(i, |e| e.vel = v),
                Op::Jump(i, p) => self.with(i, |e| e.pos = p),
                Op::Nudge(i, d) => self.with(i, |e| {
                    e.pos = [e.pos[0].wrapping_add(d[0]), e.pos[1].wrapping_add(d[1])];
                }),
                Op::ToEdge(i, up) => self.with(i, |e| {
                    let (p, v) = if up {
                        (i32::MAX - 2, 3)
                    } else {
                        (i32::MIN + 2, -3)
                    };
                    e.pos = [p, e.pos[1]];
                    e.vel = [v, e.vel[1]];
                }),
                Op::SetField(i, f, v) => self.with(i, |e| e.fields[f] = v),
                Op::AddField(i, f, d) => {
                    self.with(i, |e| e.fields[f] = e.fields[f].wrapping_add(d))
                }
                Op::Rekind(i) => self.with(i, |e| e.kind = other_kind(e.kind)),
            }
        }
    }

    fn with(&mut self, i: Index, f: impl FnOnce(&mut QEntity)) {
        if let Some(id) = self.nth(i) {
            f(self.world.get_mut(&id).unwrap());
        }
    }

    /// What the player sees now, sorted by id.
    fn view(&self, v: &View) -> Vec<QEntity> {
        let all = self.world.values().copied();
        match *v {
            View::All => all.collect(),
            View::Mask(bits) => all.filter(|e| bits >> (e.id % 64) & 1 == 1).collect(),
            View::Near(i, r) => {
                let Some(c) = self.nth(i).map(|id| self.world[&id]) else {
                    return Vec::new();
                };
                let near = |a: i32, b: i32| a.wrapping_sub(b).unsigned_abs() <= r;
                all.filter(|e| near(e.pos[0], c.pos[0]) && near(e.pos[1], c.pos[1]))
                    .collect()
            }
        }
    }
}

fn other_kind(k: EntityKind) -> EntityKind {
    match k {
        EntityKind::Npc => EntityKind::Avatar,
        EntityKind::Avatar => EntityKind::Npc,
    }
}

/// How many field values of `view` differ from what a client holding `held` has for
/// them: an entity held with the same id and kind keeps its fields, any other (new, or
/// its id reused for another kind) starts from 0. Each costs exactly one field change.
fn changed_field_values(held: &[QEntity], view: &[QEntity]) -> usize {
    let held: BTreeMap<u32, &QEntity> = held.iter().map(|e| (e.id, e)).collect();
    view.iter()
        .map(|e| {
            let from = match held.get(&e.id) {
                Some(h) if h.kind == e.kind => h.fields,
                _ => [0; MAX_FIELDS],
            };
            from.iter().zip(&e.fields).filter(|(a, b)| a != b).count()
        })
        .sum()
}

/// The bytes the server writes for one player, built as the server builds them.
fn server_bytes(tick: u64, base: Option<(u64, &[QEntity])>, seq: u32, view: &[QEntity]) -> Vec<u8> {
    let mut body = DeltaBody::default();
    diff(base, tick, view, &mut body);
    let mut encoded = Vec::new();
    encode_snapshot_body(&body, &mut encoded).unwrap();
    let mut out = Vec::new();
    let base_tick = base.map_or(0, |(t, _)| t);
    write_snapshot(tick, base_tick, seq, &encoded, &mut out).unwrap();
    out
}

/// The long form of a short-form snapshot (PROTOCOL.md section 5, *Short and long forms*):
/// variant 4 instead of 1, and an empty `fields` list appended. Valid, never sent.
fn long_form(short: &[u8]) -> Vec<u8> {
    assert_eq!(short[0], 1, "not a short-form snapshot");
    let mut long = vec![4];
    long.extend_from_slice(&short[1..]);
    long.push(0);
    long
}

/// The variant a snapshot with these field changes travels as.
fn variant_for(fields: &[FieldChange]) -> u8 {
    if fields.is_empty() {
        1
    } else {
        4
    }
}

fn decode_snapshot(bytes: &[u8]) -> Snapshot {
    match decode_server(bytes).unwrap() {
        ServerMsg::Snapshot(s) => s,
        other => panic!("decoded {other:?}"),
    }
}

// ------------------------------------------------------- the reference client

/// Why the reference refuses a snapshot: in a step before the fields, or at field change
/// `n` (which `World::apply` must report as `BadField(n)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Entities,
    Field(usize),
}

/// `World::apply` written the plain way, from PROTOCOL.md section 5.1 and without calling
/// anything of `delta`: ids decoded to u64, maps instead of merges, indexes in u64, sums
/// in wider integers truncated back to `i32` (which is what wrapping means).
fn reference_apply(
    held_tick: Option<u64>,
    held: &[QEntity],
    s: &Snapshot,
) -> Result<Vec<QEntity>, Refusal> {
    use Refusal::Entities;
    // Ticks start at 1 (PROTOCOL.md, Keyframes): a tick-0 snapshot never fits.
    if s.tick == 0 {
        return Err(Entities);
    }
    let keyframe = s.base_tick == 0;
    let wrap = |a: i32, b: i32| (i64::from(a) + i64::from(b)) as i32;
    let mut base: Vec<QEntity> = if keyframe {
        if !s.removed.is_empty() || !s.changed.is_empty() {
            return Err(Entities);
        }
        Vec::new()
    } else {
        if held_tick != Some(s.base_tick) || s.tick <= s.base_tick {
            return Err(Entities);
        }
        // k ticks of `pos += vel`, modulo 2^32 (k counts modulo 2^32 as well).
        let k = i128::from(s.tick - s.base_tick) % (1 << 32);
        let predict = |p: i32, v: i32| (i128::from(p) + i128::from(v) * k) as i32;
        held.iter()
            .map(|e| QEntity {
                pos: [predict(e.pos[0], e.vel[0]), predict(e.pos[1], e.vel[1])],
                ..*e
            })
            .collect()
    };
    let ids = |gaps: &mut dyn Iterator<Item = u32>| {
        let mut prev: Option<u64> = None;
        gaps.map(|g| {
            let id = prev.map_or(u64::from(g), |p| p + 1 + u64::from(g));
            prev = Some(id);
            id
        })
        .collect::<Vec<u64>>()
    };
    // Step 2: removed.
    for r in ids(&mut s.removed.iter().copied()) {
        let at = base
            .iter()
            .position(|e| u64::from(e.id) == r)
            .ok_or(Entities)?;
        base.remove(at);
    }
    // Step 3: changed; the cursor steps over `skip` entities, then past the changed one.
    let mut at = 0u64;
    for c in &s.changed {
        at += u64::from(c.skip);
        let e = base
            .get_mut(usize::try_from(at).map_err(|_| Entities)?)
            .ok_or(Entities)?;
        e.pos = [wrap(e.pos[0], c.dpos[0]), wrap(e.pos[1], c.dpos[1])];
        e.vel = [wrap(e.vel[0], c.dvel[0]), wrap(e.vel[1], c.dvel[1])];
        at += 1;
    }
    // Step 4: added, all fields 0.
    let mut map: BTreeMap<u32, QEntity> = base.into_iter().map(|e| (e.id, e)).collect();
    let added_ids = ids(&mut s.added.iter().map(|a| a.id_gap));
    for (a, id) in s.added.iter().zip(added_ids) {
        let id = u32::try_from(id).map_err(|_| Entities)?;
        let new = QEntity {
            id,
            kind: a.kind,
            pos: a.pos,
            vel: a.vel,
            fields: [0; MAX_FIELDS],
        };
        if map.insert(id, new).is_some() {
            return Err(Entities);
        }
    }
    // Step 5: fields. The cursor starts on the first entity and moves by `skip` only; a
    // change on the same entity as the previous one must name a later field.
    let mut list: Vec<QEntity> = map.into_values().collect();
    let mut previous: Option<(u64, u8)> = None;
    let mut at = 0u64;
    for (n, c) in s.fields.iter().enumerate() {
        at += u64::from(c.skip);
        let on_same = previous.is_some_and(|(e, f)| e == at && c.field <= f);
        let e = usize::try_from(at).ok().and_then(|i| list.get_mut(i));
        let (Some(e), false, true) = (e, on_same, usize::from(c.field) < MAX_FIELDS) else {
            return Err(Refusal::Field(n));
        };
        let v = &mut e.fields[usize::from(c.field)];
        *v = wrap(*v, c.delta);
        previous = Some((at, c.field));
    }
    Ok(list)
}

/// Applies `s` to a copy of `world` and checks it against the reference: same verdict
/// (and the same `BadField` index when a field change is at fault), same entities on
/// success, and nothing changed on error. Returns the verdict.
fn check_apply(world: &World, s: &Snapshot) -> Result<bool, TestCaseError> {
    let mut w = world.clone();
    let got = w.apply(s);
    let want = reference_apply(world.tick, &world.entities, s);
    match (&got, &want) {
        (Ok(()), Ok(entities)) => {
            prop_assert_eq!(&w.entities, entities, "applied {:?}", s);
            prop_assert_eq!(w.tick, Some(s.tick));
            prop_assert!(w.entities.windows(2).all(|p| p[0].id < p[1].id));
        }
        (Err(e), Err(why)) => {
            if let Refusal::Field(n) = why {
                prop_assert_eq!(e, &DeltaError::BadField(*n), "for {:?}", s);
            } else {
                prop_assert!(!matches!(e, DeltaError::BadField(_)), "{e:?} for {s:?}");
            }
            prop_assert_eq!(w.tick, world.tick, "tick changed by a refused {:?}", s);
            prop_assert_eq!(
                &w.entities,
                &world.entities,
                "world changed by a refused {:?}",
                s
            );
        }
        _ => {
            return Err(TestCaseError::fail(format!(
                "apply says {got:?}, the reference {:?}, for {s:?} on {world:?}",
                want.map(drop)
            )))
        }
    }
    // Whatever happened, the world is still usable: a keyframe of its state applies.
    let mut body = DeltaBody::default();
    let now = w.entities.clone();
    diff(None, 1, &now, &mut body);
    w.apply(&Snapshot {
        tick: 1,
        base_tick: 0,
        last_input_seq: 0,
        removed: body.removed,
        changed: body.changed,
        added: body.added,
        fields: body.fields,
    })
    .unwrap();
    prop_assert_eq!(w.entities, now);
    Ok(got.is_ok())
}

fn held_world(tick: Option<u64>, entities: Vec<QEntity>) -> World {
    let mut w = World::default();
    w.tick = tick;
    w.entities = entities;
    w
}

// ------------------------------------------------------------------ properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A slow client that receives some ticks always ends up with exactly the server's
    /// view of each tick it receives, fields included, through encode, decode and apply;
    /// the reference model agrees at every tick, and each snapshot carries exactly one
    /// field change per field value the client does not have yet.
    #[test]
    fn client_world_tracks_the_server_view(
        first in first_tick(),
        initial in entities(MAX_ENTITIES),
        ticks in prop::collection::vec(tick_plan(), 1..40),
    ) {
        let mut server = Server { tick: first - 1, world: initial.into_iter().map(|e| (e.id, e)).collect() };
        // The last snapshot the server wrote to this client: its tick and view.
        let mut written: Option<(u64, Vec<QEntity>)> = None;
        let mut client = World::default();
        let mut last: Option<Snapshot> = None;
        for plan in &ticks {
            server.step(&plan.ops);
            let view = server.view(&plan.view);
            if !plan.received {
                continue;
            }
            let tick = server.tick;
            let seq = tick as u32;
            let delta = written.as_ref().map(|(t, v)| server_bytes(tick, Some((*t, v)), seq, &view));
            let key = server_bytes(tick, None, seq, &view);
            let bytes = match (plan.base, delta) {
                (Base::Keyframe, _) | (_, None) => key,
                (Base::Delta, Some(d)) => d,
                (Base::Smaller, Some(d)) => if key.len() < d.len() { key } else { d },
            };
            let s = decode_snapshot(&bytes);
            // The split encoding is the encoding of the message, in the form its field
            // changes call for; a short form's long twin decodes to the same snapshot.
            prop_assert_eq!(&encode_to_vec(&ServerMsg::Snapshot(s.clone())).unwrap(), &bytes);
            prop_assert_eq!(bytes[0], variant_for(&s.fields));
            if bytes[0] == 1 {
                prop_assert_eq!(decode_snapshot(&long_form(&bytes)), s.clone());
            }
            prop_assert_eq!((s.tick, s.last_input_seq), (tick, seq));
            let holds: &[QEntity] = if s.base_tick == 0 { &[] } else { &client.entities };
            prop_assert_eq!(s.fields.len(), changed_field_values(holds, &view), "tick {}: {:?}", tick, s);
            prop_assert!(check_apply(&client, &s)?, "the reference refuses tick {tick}");
            client.apply(&s).map_err(|e| TestCaseError::fail(format!("tick {tick}: {e} for {s:?}")))?;
            prop_assert_eq!(client.tick, Some(tick));
            prop_assert_eq!(&client.entities, &view, "tick {} from {:?}", tick, s);
            written = Some((tick, view));
            last = Some(s);
        }
        // The last delta again is refused (its base is gone) and changes nothing.
        if let Some(s) = last.filter(|s| s.base_tick != 0) {
            let before = client.clone();
            prop_assert!(client.apply(&s).is_err());
            prop_assert_eq!((client.tick, &client.entities), (before.tick, &before.entities));
        }
    }

    /// An entity that moves exactly as predicted (`pos += vel` every tick, wrapping) and
    /// keeps its fields contributes no record, however many ticks apart the base and the
    /// snapshot are; the empty delta is a `Snapshot` (the short form): just the header and
    /// three empty lists, the version 1 bytes, and applies to the advanced world, in the
    /// long form too. Perturbing some entities costs exactly one `changed` record
    /// each for a position or velocity, one field change for a field, and for a kind change
    /// a removal, an addition and one field change per non-zero field.
    #[test]
    fn predicted_motion_costs_nothing(
        base in entities(MAX_ENTITIES),
        base_tick in prop_oneof![1u64..1000, Just(u64::from(u32::MAX))],
        k in prop_oneof![4 => 1u64..40, 1 => 40u64..1 << 40],
        perturb in prop::collection::vec((any::<Index>(), 0usize..4, 0..MAX_FIELDS, field_step()), 0..5),
    ) {
        let tick = base_tick + k;
        let mut now = base.clone();
        if k < 40 {
            for _ in 0..k {
                for e in &mut now {
                    e.pos = [e.pos[0].wrapping_add(e.vel[0]), e.pos[1].wrapping_add(e.vel[1])];
                }
            }
        } else {
            let k = i128::from(k);
            for e in &mut now {
                e.pos = [0, 1].map(|a| (i128::from(e.pos[a]) + i128::from(e.vel[a]) * k) as i32);
            }
        }
        let mut body = DeltaBody::default();
        diff(Some((base_tick, &base)), tick, &now, &mut body);
        prop_assert_eq!(body.records(), 0, "{:?}", body);
        let bytes = server_bytes(tick, Some((base_tick, &base)), 5, &now);
        let header = encode_to_vec(&(1u32, tick, base_tick, 5u32)).unwrap();
        prop_assert_eq!(&bytes[..header.len()], &header[..]);
        prop_assert_eq!(&bytes[header.len()..], &[0, 0, 0][..]);
        let mut client = held_world(Some(base_tick), base.clone());
        client.apply(&decode_snapshot(&bytes)).unwrap();
        prop_assert_eq!(&client.entities, &now);
        let mut via_long = held_world(Some(base_tick), base.clone());
        via_long.apply(&decode_snapshot(&long_form(&bytes))).unwrap();
        prop_assert_eq!(&via_long, &client);

        // Perturb some: position, velocity, kind or one field (by a step that is not 0).
        let mut touched = std::collections::BTreeSet::new();
        let (mut moved, mut kinds, mut field_changes) = (0, 0, 0);
        if !now.is_empty() {
            for (i, what, field, step) in &perturb {
                let i = i.index(now.len());
                if !touched.insert(i) {
                    continue;
                }
                let e = &mut now[i];
                match what {
                    0 => e.pos[1] = e.pos[1].wrapping_add(1),
                    1 => e.vel[0] = e.vel[0].wrapping_sub(1),
                    2 => {
                        e.kind = other_kind(e.kind);
                        kinds += 1;
                        field_changes += e.fields.iter().filter(|v| **v != 0).count();
                    }
                    _ => {
                        let step = if *step == 0 { 1 } else { *step };
                        e.fields[*field] = e.fields[*field].wrapping_add(step);
                        field_changes += 1;
                    }
                }
                if *what < 2 {
                    moved += 1;
                }
            }
        }
        diff(Some((base_tick, &base)), tick, &now, &mut body);
        // A kind change is a removal and an addition whose fields start at 0; a move is one
        // changed record; a field is one field change.
        prop_assert_eq!(body.changed.len(), moved);
        prop_assert_eq!((body.removed.len(), body.added.len()), (kinds, kinds));
        prop_assert_eq!(body.fields.len(), field_changes, "{:?}", body.fields);
        let bytes = server_bytes(tick, Some((base_tick, &base)), 5, &now);
        prop_assert_eq!(bytes[0], variant_for(&body.fields));
        client = held_world(Some(base_tick), base);
        client.apply(&decode_snapshot(&bytes)).unwrap();
        prop_assert_eq!(&client.entities, &now);
    }
}

/// Arbitrary snapshots against a held world, biased to almost fit it: small gaps and
/// skips, base ticks near the held one, field indexes mostly valid, and often no removed
/// or added entity (the in-place path of `World::apply`).
fn wild_snapshot(held_tick: u64) -> impl Strategy<Value = Snapshot> {
    let gap = || prop_oneof![6 => 0u32..4, 1 => 4u32..64, 1 => any::<u32>(), 1 => Just(u32::MAX)];
    let tick = prop_oneof![
        Just(held_tick.wrapping_add(1)),
        Just(held_tick),
        Just(held_tick.wrapping_sub(1)),
        Just(held_tick.wrapping_add(1 << 32)),
        any::<u64>(),
    ];
    let base_tick = prop_oneof![3 => Just(held_tick), 2 => Just(0u64), 1 => any::<u64>()];
    (
        tick,
        base_tick,
        prop_oneof![Just(vec![]), prop::collection::vec(gap(), 1..6)],
        prop::collection::vec((gap(), vel(), vel()), 0..6),
        prop_oneof![
            Just(vec![]),
            prop::collection::vec((gap(), kind(), pos(), vel()), 1..6)
        ],
        prop::collection::vec((gap(), field_index(), field_step()), 0..8),
    )
        .prop_map(
            |(tick, base_tick, removed, changed, added, fields)| Snapshot {
                tick,
                base_tick,
                last_input_seq: 0,
                removed,
                changed: changed
                    .into_iter()
                    .map(|(skip, dpos, dvel)| Changed { skip, dpos, dvel })
                    .collect(),
                added: added
                    .into_iter()
                    .map(|(id_gap, kind, pos, vel)| Added {
                        id_gap,
                        kind,
                        pos,
                        vel,
                    })
                    .collect(),
                fields: fields
                    .into_iter()
                    .map(|(skip, field, delta)| FieldChange { skip, field, delta })
                    .collect(),
            },
        )
}

/// Field indexes as a peer could send them: valid mostly, 8 (the first invalid one), and
/// any byte.
fn field_index() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => 0u8..MAX_FIELDS as u8,
        1 => Just(MAX_FIELDS as u8),
        1 => any::<u8>(),
    ]
}

/// One edit of a valid snapshot.
#[derive(Debug, Clone)]
enum Mutation {
    /// Adds `delta` (wrapping) to one element of removed / changed.skip / added.id_gap.
    Removed(Index, u32),
    Skip(Index, u32),
    AddedGap(Index, u32),
    /// Drops or duplicates one element of a list (0, 1, 2, 3 = removed, changed, added,
    /// fields).
    Drop(u8, Index),
    Duplicate(u8, Index),
    /// Adds to one field change's `skip` or `field` (wrapping), or replaces its `delta`.
    FieldSkip(Index, u32),
    FieldIndex(Index, u8),
    FieldDelta(Index, i32),
    /// Swaps a field change with the next one (the order of one entity's fields).
    FieldSwap(Index),
    BaseTick(u64),
    Tick(u64),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let delta = || prop_oneof![Just(1u32), Just(u32::MAX), any::<u32>()];
    prop_oneof![
        (any::<Index>(), delta()).prop_map(|(i, d)| Mutation::Removed(i, d)),
        (any::<Index>(), delta()).prop_map(|(i, d)| Mutation::Skip(i, d)),
        (any::<Index>(), delta()).prop_map(|(i, d)| Mutation::AddedGap(i, d)),
        (0u8..4, any::<Index>()).prop_map(|(l, i)| Mutation::Drop(l, i)),
        (0u8..4, any::<Index>()).prop_map(|(l, i)| Mutation::Duplicate(l, i)),
        (any::<Index>(), delta()).prop_map(|(i, d)| Mutation::FieldSkip(i, d)),
        (
            any::<Index>(),
            prop_oneof![Just(1u8), Just(u8::MAX), any::<u8>()]
        )
            .prop_map(|(i, d)| Mutation::FieldIndex(i, d)),
        (any::<Index>(), field_step()).prop_map(|(i, d)| Mutation::FieldDelta(i, d)),
        any::<Index>().prop_map(Mutation::FieldSwap),
        prop_oneof![Just(0u64), Just(1), any::<u64>()].prop_map(Mutation::BaseTick),
        prop_oneof![Just(0u64), Just(1), any::<u64>()].prop_map(Mutation::Tick),
    ]
}

fn edit<T>(v: &mut [T], i: Index, f: impl FnOnce(&mut T)) {
    if !v.is_empty() {
        let at = i.index(v.len());
        f(&mut v[at]);
    }
}

fn mutate(s: &mut Snapshot, m: &Mutation) {
    match *m {
        Mutation::Removed(i, d) => edit(&mut s.removed, i, |g| *g = g.wrapping_add(d)),
        Mutation::Skip(i, d) => edit(&mut s.changed, i, |c| c.skip = c.skip.wrapping_add(d)),
        Mutation::AddedGap(i, d) => edit(&mut s.added, i, |a| a.id_gap = a.id_gap.wrapping_add(d)),
        Mutation::Drop(list, i) | Mutation::Duplicate(list, i) => {
            let dup = matches!(m, Mutation::Duplicate(..));
            fn change<T: Clone>(v: &mut Vec<T>, i: Index, dup: bool) {
                if !v.is_empty() {
                    let at = i.index(v.len());
                    if dup {
                        v.insert(at, v[at].clone());
                    } else {
                        v.remove(at);
                    }
                }
            }
            match list {
                0 => change(&mut s.removed, i, dup),
                1 => change(&mut s.changed, i, dup),
                2 => change(&mut s.added, i, dup),
                _ => change(&mut s.fields, i, dup),
            }
        }
        Mutation::FieldSkip(i, d) => edit(&mut s.fields, i, |c| c.skip = c.skip.wrapping_add(d)),
        Mutation::FieldIndex(i, d) => {
            edit(&mut s.fields, i, |c| c.field = c.field.wrapping_add(d));
        }
        Mutation::FieldDelta(i, d) => edit(&mut s.fields, i, |c| c.delta = d),
        Mutation::FieldSwap(i) => {
            if s.fields.len() >= 2 {
                let at = i.index(s.fields.len() - 1);
                s.fields.swap(at, at + 1);
            }
        }
        Mutation::BaseTick(t) => s.base_tick = t,
        Mutation::Tick(t) => s.tick = t,
    }
}

/// A held world, the tick gap, and the server's current view: a valid delta to damage.
/// The view is a blend of the held world and other entities (every kind of record), or
/// the same entities moved and with other fields (no removal or addition: the in-place
/// path of `World::apply`).
fn scenario() -> impl Strategy<Value = (u64, Vec<QEntity>, u64, Vec<QEntity>)> {
    (
        1u64..1000,
        entities(24),
        1u64..5,
        entities(24),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(base_tick, base, k, other, same_ids)| {
            let now = if same_ids {
                restate(&base, &other)
            } else {
                blend(&base, &other)
            };
            (base_tick, base, k, now)
        })
}

/// The entities of `base`, each with the position, velocity and fields of an entity of
/// `other` (cycling; unchanged if `other` is empty).
fn restate(base: &[QEntity], other: &[QEntity]) -> Vec<QEntity> {
    base.iter()
        .enumerate()
        .map(|(n, e)| match other.get(n % other.len().max(1)) {
            Some(o) => QEntity {
                pos: o.pos,
                vel: o.vel,
                fields: o.fields,
                ..*e
            },
            None => *e,
        })
        .collect()
}

/// Mixes the current view with the base (so that the delta has every kind of record):
/// every other base entity stays, with a field changed on every second one of those, and
/// `other`'s entities are added or replace base ones.
fn blend(base: &[QEntity], other: &[QEntity]) -> Vec<QEntity> {
    let kept = base.iter().step_by(2).enumerate().map(|(n, e)| {
        let mut e = *e;
        if n % 2 == 0 {
            let f = n / 2 % MAX_FIELDS;
            e.fields[f] = e.fields[f].wrapping_add(n as i32 + 1);
        }
        e
    });
    sorted(kept.chain(other.iter().copied()).collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Arbitrary snapshots: `apply` never panics, agrees with the reference model, and
    /// leaves the world as it was when it refuses.
    #[test]
    fn apply_arbitrary_snapshots(
        held in entities(24),
        held_tick in prop_oneof![Just(None), (1u64..1000).prop_map(Some), Just(Some(u64::MAX))],
        s in (1u64..1000).prop_flat_map(wild_snapshot),
    ) {
        let world = held_world(held_tick, held);
        check_apply(&world, &s)?;
        // And aimed at this world's tick.
        if let Some(t) = held_tick {
            let s = Snapshot { base_tick: t, tick: t.wrapping_add(1), ..s };
            check_apply(&world, &s)?;
        }
    }

    /// Valid deltas with one or two edits: same checks. (Most edits make the delta not
    /// fit; some still fit and must then give what the reference gives.)
    #[test]
    fn apply_mutated_snapshots(
        (base_tick, base, k, now) in scenario(),
        mutations in prop::collection::vec(mutation(), 1..3),
    ) {
        let tick = base_tick + k;
        let mut s = decode_snapshot(&server_bytes(tick, Some((base_tick, &base)), 1, &now));
        let world = held_world(Some(base_tick), base);
        prop_assert!(check_apply(&world, &s)?, "the unmutated delta applies");
        for m in &mutations {
            mutate(&mut s, m);
        }
        check_apply(&world, &s)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Truncated and bit-flipped encodings of valid snapshots (as the server writes them,
    /// and the long form of those without field changes) never panic `decode_server` +
    /// `apply`: every prefix is refused, and a flipped message that still decodes is
    /// applied as the reference says (or refused, changing nothing).
    #[test]
    fn damaged_bytes_never_panic(
        (base_tick, base, k, now) in scenario(),
        keyframe in prop::bool::weighted(0.2),
        flips in prop::collection::vec(prop::collection::vec((any::<Index>(), 0u8..8), 1..4), 1..24),
    ) {
        let tick = base_tick + k;
        let sent = server_bytes(tick, (!keyframe).then_some((base_tick, &base[..])), 1, &now);
        let world = held_world(Some(base_tick), base);
        let mut forms = vec![sent.clone()];
        if sent[0] == 1 {
            forms.push(long_form(&sent));
        }
        for bytes in forms {
            prop_assert_eq!(decode_snapshot(&bytes), decode_snapshot(&sent));
            for cut in 0..bytes.len() {
                prop_assert!(decode_server(&bytes[..cut]).is_err(), "prefix of {} decoded", cut);
            }
            for flip in &flips {
                let mut damaged = bytes.clone();
                for (at, bit) in flip {
                    damaged[at.index(bytes.len())] ^= 1 << bit;
                }
                if let Ok(ServerMsg::Snapshot(s)) = decode_server(&damaged) {
                    check_apply(&world, &s)?;
                }
            }
        }
    }
}

/// Hand-picked wrapping cases: the prediction and the residuals wrap on both sides.
#[test]
fn wrapping_round_trips() {
    let e = |id, pos, vel| QEntity {
        id,
        kind: EntityKind::Npc,
        pos,
        vel,
        fields: Default::default(),
    };
    let base = vec![
        e(0, [i32::MAX, i32::MIN], [1, -1]),
        e(1, [i32::MIN, i32::MAX], [i32::MIN, i32::MAX]),
        e(u32::MAX, [0, 0], [i32::MAX, i32::MIN]),
    ];
    let now = vec![
        e(0, [i32::MIN, i32::MAX], [1, -1]),       // wrapped as predicted
        e(1, [i32::MAX, i32::MIN], [i32::MAX, 0]), // jumped across the whole range
        e(u32::MAX, [i32::MAX, i32::MIN], [i32::MAX, i32::MIN]),
    ];
    let mut body = DeltaBody::default();
    diff(Some((9, &base)), 10, &now, &mut body);
    assert_eq!(
        (body.removed.len(), body.changed.len(), body.added.len()),
        (0, 1, 0),
        "{body:?}"
    );
    assert_eq!(body.changed[0].skip, 1);
    let mut world = held_world(Some(9), base);
    world
        .apply(&decode_snapshot(&server_bytes(
            10,
            Some((9, &world.entities.clone())),
            0,
            &now,
        )))
        .unwrap();
    assert_eq!(world.entities, now);
}

/// Hand-picked field cases: field deltas wrap; an id reused for another kind (removed and
/// added) sends its non-zero fields again from 0 even when they did not change; unchanged
/// fields cost nothing; a keyframe sends exactly the non-zero fields, in id and field
/// order.
#[test]
fn fields_wrap_and_restart_with_a_new_kind() {
    let with = |pairs: &[(usize, i32)]| {
        let mut f = [0; MAX_FIELDS];
        for &(i, v) in pairs {
            f[i] = v;
        }
        f
    };
    let e = |id, kind, fields| QEntity {
        id,
        kind,
        pos: [0, 0],
        vel: [0, 0],
        fields,
    };
    let base = vec![
        e(
            1,
            EntityKind::Npc,
            with(&[(0, i32::MAX), (1, i32::MIN), (7, 5)]),
        ),
        e(2, EntityKind::Npc, with(&[(0, 7)])),
        e(3, EntityKind::Avatar, with(&[(2, 9)])),
    ];
    let now = vec![
        // Both edges wrap by one; field 7 stays.
        e(
            1,
            EntityKind::Npc,
            with(&[(0, i32::MIN), (1, i32::MAX), (7, 5)]),
        ),
        // Another kind with the same fields.
        e(2, EntityKind::Avatar, with(&[(0, 7)])),
        e(3, EntityKind::Avatar, with(&[(2, 9)])),
    ];
    let change = |skip, field, delta| FieldChange { skip, field, delta };
    let mut body = DeltaBody::default();
    diff(Some((1, &base)), 2, &now, &mut body);
    assert_eq!(body.removed, [2]);
    assert_eq!(
        body.added,
        [Added {
            id_gap: 2,
            kind: EntityKind::Avatar,
            pos: [0, 0],
            vel: [0, 0]
        }]
    );
    assert_eq!(body.changed, []);
    assert_eq!(
        body.fields,
        [change(0, 0, 1), change(0, 1, -1), change(1, 0, 7)]
    );
    let mut world = held_world(Some(1), base.clone());
    world
        .apply(&decode_snapshot(&server_bytes(
            2,
            Some((1, &base)),
            0,
            &now,
        )))
        .unwrap();
    assert_eq!(world.entities, now);

    diff(None, 2, &now, &mut body);
    assert_eq!(
        body.fields,
        [
            change(0, 0, i32::MIN),
            change(0, 1, i32::MAX),
            change(0, 7, 5),
            change(1, 0, 7),
            change(1, 2, 9),
        ]
    );
    let mut fresh = World::default();
    fresh
        .apply(&decode_snapshot(&server_bytes(2, None, 0, &now)))
        .unwrap();
    assert_eq!(fresh.entities, now);
}

/// `World` equality is its state (`tick`, `entities`), not its private scratch buffer:
/// a refused `apply` leaves a world equal to its copy, and two worlds holding the same
/// state are equal whatever their history.
#[test]
fn world_eq_ignores_scratch() {
    let mut w = held_world(
        Some(5),
        vec![QEntity {
            id: 1,
            kind: EntityKind::Npc,
            pos: [0, 0],
            vel: [0, 0],
            fields: Default::default(),
        }],
    );
    let before = w.clone();
    let bad = Snapshot {
        tick: 6,
        base_tick: 5,
        last_input_seq: 0,
        removed: vec![],
        changed: vec![],
        added: vec![Added {
            id_gap: 1,
            kind: EntityKind::Npc,
            pos: [0, 0],
            vel: [0, 0],
        }],
        fields: Vec::new(),
    };
    assert!(w.apply(&bad).is_err());
    assert_eq!((w.tick, &w.entities), (before.tick, &before.entities));
    assert_eq!(w, before);
}
