//! Quantised entity state, and the delta between two snapshots: built by the server,
//! applied by the client, both pure.
//!
//! # Why quanta per tick
//! Positions are integers in units of a game-chosen quantum (default 1/16 world unit);
//! velocities are integers in *quanta per tick*. With that choice, predicting an entity
//! `k` ticks ahead is `pos + vel * k` in integer arithmetic, exactly the same on every
//! client in every language. A game that moves its entities in whole quanta per tick
//! (the Arena does) makes constant motion perfectly predictable, so an entity moving in
//! a straight line costs nothing in a delta, the same as one standing still.
//!
//! # The delta
//! Against a base the client holds (both lists sorted by id), a delta lists the
//! entities of the base that are gone, the held entities whose state differs from the
//! prediction (as small residuals), and the entities that are new to the client. A
//! keyframe is the delta against nothing: every entity is new. Arithmetic wraps on
//! `i32` overflow, identically on both sides, so no input can make either side panic.

use crate::message::{
    Added, Changed, EntityKind, EntityState, FieldChange, Fields, Snapshot, MAX_FIELDS,
};

/// One entity, quantised as it travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QEntity {
    /// Entity id (the lists are sorted by it).
    pub id: u32,
    /// Npc or avatar.
    pub kind: EntityKind,
    /// Position in quanta.
    pub pos: [i32; 2],
    /// Velocity in quanta per tick.
    pub vel: [i32; 2],
    /// The game's declared fields (undeclared ones are 0).
    pub fields: Fields,
}

impl QEntity {
    /// Where this entity is `ticks` ticks later if nothing changes.
    pub fn predicted(&self, ticks: u64) -> [i32; 2] {
        // Wrapping, like every delta operation: the same result on both sides for any input.
        let k = ticks as i32;
        [
            self.pos[0].wrapping_add(self.vel[0].wrapping_mul(k)),
            self.pos[1].wrapping_add(self.vel[1].wrapping_mul(k)),
        ]
    }
}

/// Converts between world units and quanta for one room.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quantizer {
    /// World units per quantum.
    pub quantum: f32,
    /// Seconds per tick.
    pub dt: f32,
    /// Ticks per second (multiplying by it is exact where dividing by `dt` is not).
    rate: f32,
}

impl Quantizer {
    /// A quantizer for `quantum` world units per step at `tick_rate` ticks per second.
    pub fn new(quantum: f32, tick_rate: u16) -> Self {
        let rate = f32::from(tick_rate.max(1));
        Self {
            quantum,
            dt: 1.0 / rate,
            rate,
        }
    }

    /// Quantises one value (saturating; NaN becomes 0).
    fn q(&self, v: f32) -> i32 {
        (v / self.quantum).round() as i32
    }

    /// The wire form of an entity.
    pub fn quantize(&self, e: &EntityState) -> QEntity {
        QEntity {
            id: e.id,
            kind: e.kind,
            pos: [self.q(e.pos.x), self.q(e.pos.y)],
            vel: [self.q(e.vel.x * self.dt), self.q(e.vel.y * self.dt)],
            fields: e.fields,
        }
    }

    /// Back to world units.
    pub fn dequantize(&self, q: &QEntity) -> EntityState {
        let to_speed = self.quantum * self.rate;
        EntityState {
            id: q.id,
            kind: q.kind,
            pos: glam::Vec2::new(
                q.pos[0] as f32 * self.quantum,
                q.pos[1] as f32 * self.quantum,
            ),
            vel: glam::Vec2::new(q.vel[0] as f32 * to_speed, q.vel[1] as f32 * to_speed),
            fields: q.fields,
        }
    }
}

/// The body of a snapshot (everything but its header), with reusable buffers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaBody {
    /// See [`Snapshot::removed`].
    pub removed: Vec<u32>,
    /// See [`Snapshot::changed`].
    pub changed: Vec<Changed>,
    /// See [`Snapshot::added`].
    pub added: Vec<Added>,
    /// See [`Snapshot::fields`].
    pub fields: Vec<FieldChange>,
}

impl DeltaBody {
    /// Empties the lists, keeping their capacity.
    pub fn clear(&mut self) {
        self.removed.clear();
        self.changed.clear();
        self.added.clear();
        self.fields.clear();
    }

    /// Number of entity records it carries.
    pub fn records(&self) -> usize {
        self.removed.len() + self.changed.len() + self.added.len() + self.fields.len()
    }
}

/// Emits the field changes of one entity of the new world (its index `at`, in id
/// order) against the fields the client has for it (`from`: 0 for an added entity).
fn field_changes(
    out: &mut Vec<FieldChange>,
    cursor: &mut usize,
    at: usize,
    from: &Fields,
    to: &Fields,
) {
    if from == to {
        return;
    }
    for (field, (a, b)) in from.iter().zip(to).enumerate() {
        if a != b {
            out.push(FieldChange {
                // Ids and indices of a world fit in u32 (ids are u32).
                skip: (at - *cursor) as u32,
                field: field as u8,
                delta: b.wrapping_sub(*a),
            });
            *cursor = at;
        }
    }
}

/// Fills `out` with the delta that turns `base` (the client's state at `base_tick`)
/// into `current` at `tick`. `None` as base builds a keyframe. Both lists must be sorted
/// by id (the server's are by construction).
pub fn diff(base: Option<(u64, &[QEntity])>, tick: u64, current: &[QEntity], out: &mut DeltaBody) {
    out.clear();
    let (base_tick, base) = base.unwrap_or((tick, &[]));
    let ticks = tick.wrapping_sub(base_tick);
    let (mut i, mut j) = (0, 0);
    let mut last_removed: Option<u32> = None;
    let mut last_added: Option<u32> = None;
    let mut skip = 0u32;
    let mut field_cursor = 0usize;
    const ZERO: Fields = [0; MAX_FIELDS];
    loop {
        match (base.get(i), current.get(j)) {
            (Some(b), Some(c)) if b.id == c.id => {
                let predicted = b.predicted(ticks);
                let same_kind = c.kind == b.kind;
                let from = if same_kind { &b.fields } else { &ZERO };
                field_changes(&mut out.fields, &mut field_cursor, j, from, &c.fields);
                if c.pos == predicted && c.vel == b.vel && same_kind {
                    skip += 1;
                } else if !same_kind {
                    // An id reused for another kind: remove and re-add.
                    out.removed.push(gap(&mut last_removed, b.id));
                    out.added.push(added(&mut last_added, c));
                } else {
                    out.changed.push(Changed {
                        skip,
                        dpos: [
                            c.pos[0].wrapping_sub(predicted[0]),
                            c.pos[1].wrapping_sub(predicted[1]),
                        ],
                        dvel: [
                            c.vel[0].wrapping_sub(b.vel[0]),
                            c.vel[1].wrapping_sub(b.vel[1]),
                        ],
                    });
                    skip = 0;
                }
                i += 1;
                j += 1;
            }
            (Some(b), c) if c.is_none_or(|c| b.id < c.id) => {
                out.removed.push(gap(&mut last_removed, b.id));
                i += 1;
            }
            (_, Some(c)) => {
                field_changes(&mut out.fields, &mut field_cursor, j, &ZERO, &c.fields);
                out.added.push(added(&mut last_added, c));
                j += 1;
            }
            (_, None) => break,
        }
    }
}

fn gap(last: &mut Option<u32>, id: u32) -> u32 {
    let g = match *last {
        None => id,
        Some(prev) => id.wrapping_sub(prev).wrapping_sub(1),
    };
    *last = Some(id);
    g
}

fn added(last: &mut Option<u32>, c: &QEntity) -> Added {
    Added {
        id_gap: gap(last, c.id),
        kind: c.kind,
        pos: c.pos,
        vel: c.vel,
    }
}

/// Why a snapshot could not be applied. The held world is left as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeltaError {
    /// The delta is against a snapshot this client does not hold.
    #[error("delta against tick {base_tick}, but the client holds tick {held:?}")]
    WrongBase {
        /// The base the delta needs.
        base_tick: u64,
        /// What the client holds (`None`: nothing yet).
        held: Option<u64>,
    },
    /// The snapshot is not newer than its base.
    #[error("snapshot tick {tick} is not after its base {base_tick}")]
    NotNewer {
        /// The snapshot's tick.
        tick: u64,
        /// Its base.
        base_tick: u64,
    },
    /// A keyframe that removes or changes entities.
    #[error("a keyframe may only add entities")]
    KeyframeWithChanges,
    /// `removed` names an id the base does not hold, or ids out of order.
    #[error("removed entity {0} is not held")]
    UnknownRemoved(u64),
    /// `changed` steps past the end of the held entities.
    #[error("changed entry {0} is past the held entities")]
    ChangedOutOfRange(usize),
    /// `added` names an id the client already holds, or ids out of order.
    #[error("added entity {0} is already held or out of order")]
    BadAdded(u64),
    /// `fields` entry `n` steps past the last entity, names a field beyond
    /// [`MAX_FIELDS`], or repeats a field (or goes back) on the same entity.
    #[error("field change {0} does not fit the world")]
    BadField(usize),
}

/// A client's reconstruction of the world: what it was last sent.
///
/// # Entities the server did not update
/// A server may send fewer changes than differ (a bandwidth budget, PROTOCOL.md 5.1):
/// an entity absent from a delta keeps its last state, its position moved on by its
/// velocity. So `entities` already holds every entity extrapolated to `tick` from its
/// last update; [`World::last_updated`] says how old that update is, and
/// [`World::extrapolated`] carries a position on to any later tick. An entity with
/// velocity 0 stays where it is.
#[derive(Debug, Clone, Default)]
pub struct World {
    /// The tick of the last applied snapshot (`None` before the first keyframe).
    pub tick: Option<u64>,
    /// Entities, sorted by id.
    pub entities: Vec<QEntity>,
    scratch: Vec<QEntity>,
    /// Per entity (same order): the tick its position and velocity were last sent.
    updated: Vec<u64>,
    updated_scratch: Vec<u64>,
}

/// Two worlds are equal when they hold the same tick and entities; the scratch buffer
/// is an implementation detail.
impl PartialEq for World {
    fn eq(&self, other: &Self) -> bool {
        self.tick == other.tick && self.entities == other.entities
    }
}

impl Eq for World {}

impl World {
    /// The tick at which the server last sent entity `id`'s position and velocity (it
    /// was added or changed), or `None` if the world does not hold it.
    pub fn last_updated(&self, id: u32) -> Option<u64> {
        let i = self.entities.binary_search_by_key(&id, |e| e.id).ok()?;
        Some(
            self.updated
                .get(i)
                .copied()
                .unwrap_or(self.tick.unwrap_or(0)),
        )
    }

    /// Where entity `id` is at `tick` if nothing changes: its position moved on by its
    /// velocity for the ticks since the world's tick (back, for an earlier tick), in
    /// wrapping arithmetic like the deltas. `None` if the world does not hold it.
    pub fn extrapolated(&self, id: u32, tick: u64) -> Option<[i32; 2]> {
        let i = self.entities.binary_search_by_key(&id, |e| e.id).ok()?;
        let e = &self.entities[i];
        // Ticks are far below 2^63, so the difference is exact; as a wrapping i32 like
        // `QEntity::predicted`.
        let k = (tick as i64).wrapping_sub(self.tick.unwrap_or(tick) as i64) as i32;
        Some([
            e.pos[0].wrapping_add(e.vel[0].wrapping_mul(k)),
            e.pos[1].wrapping_add(e.vel[1].wrapping_mul(k)),
        ])
    }

    /// Applies a snapshot: a keyframe replaces the world, a delta must name the held
    /// tick as its base. On error nothing changes.
    ///
    /// # Errors
    /// [`DeltaError`] says what in the snapshot does not fit the held world.
    pub fn apply(&mut self, s: &Snapshot) -> Result<(), DeltaError> {
        if s.tick == 0 {
            // Ticks start at 1; a tick-0 world would make the next delta's base (0) read as
            // a keyframe.
            return Err(DeltaError::NotNewer {
                tick: 0,
                base_tick: s.base_tick,
            });
        }
        let base: &[QEntity] = if s.base_tick == 0 {
            if !s.removed.is_empty() || !s.changed.is_empty() {
                return Err(DeltaError::KeyframeWithChanges);
            }
            &[]
        } else {
            if self.tick != Some(s.base_tick) {
                return Err(DeltaError::WrongBase {
                    base_tick: s.base_tick,
                    held: self.tick,
                });
            }
            if s.tick <= s.base_tick {
                return Err(DeltaError::NotNewer {
                    tick: s.tick,
                    base_tick: s.base_tick,
                });
            }
            &self.entities
        };
        let ticks = s.tick.wrapping_sub(s.base_tick);
        if s.base_tick != 0 && s.removed.is_empty() && s.added.is_empty() {
            // The common delta (the same entities, some of them changed): predict and
            // correct in place. Checked first, so an error still changes nothing; and
            // half the memory traffic of building a new list, which is what a client
            // holding a large world (or a bot process holding a thousand) pays for.
            check_changed(self.entities.len(), &s.changed)?;
            check_fields(self.entities.len(), &s.fields)?;
            for e in &mut self.entities {
                e.pos = e.predicted(ticks);
            }
            add_changed(&mut self.entities, &s.changed);
            add_fields(&mut self.entities, &s.fields);
            self.updated.resize(self.entities.len(), s.base_tick);
            mark_changed(&mut self.updated, &s.changed, s.tick);
            self.tick = Some(s.tick);
            return Ok(());
        }
        let out = &mut self.scratch;
        out.clear();
        out.reserve(base.len() + s.added.len());
        // When each kept entity was last updated, in the order of `out` before the merge.
        let kept_updated = &mut self.updated_scratch;
        kept_updated.clear();

        // Base minus removed, predicted forward. Ids are u64 here so gaps cannot wrap.
        let mut removed = s.removed.iter();
        let mut next_removed = id_stream(&mut removed, None);
        for (held_at, b) in base.iter().enumerate() {
            match next_removed {
                Some(r) if r == u64::from(b.id) => {
                    next_removed = id_stream(&mut removed, Some(r));
                    continue;
                }
                Some(r) if r < u64::from(b.id) => return Err(DeltaError::UnknownRemoved(r)),
                _ => {}
            }
            out.push(QEntity {
                pos: b.predicted(ticks),
                ..*b
            });
            kept_updated.push(self.updated.get(held_at).copied().unwrap_or(s.base_tick));
        }
        if let Some(r) = next_removed {
            return Err(DeltaError::UnknownRemoved(r));
        }

        // Residuals, stepping over unchanged entities.
        check_changed(out.len(), &s.changed)?;
        add_changed(out, &s.changed);
        mark_changed(kept_updated, &s.changed, s.tick);

        // Merge the added entities in by id.
        if !s.added.is_empty() {
            let held = out.len();
            let mut prev: Option<u64> = None;
            for a in &s.added {
                let id = match prev {
                    None => u64::from(a.id_gap),
                    Some(p) => p + 1 + u64::from(a.id_gap),
                };
                let id32 = u32::try_from(id).map_err(|_| DeltaError::BadAdded(id))?;
                prev = Some(id);
                out.push(QEntity {
                    id: id32,
                    kind: a.kind,
                    pos: a.pos,
                    vel: a.vel,
                    fields: [0; MAX_FIELDS],
                });
            }
            // Both runs are sorted; a stable sort of two sorted runs is a merge.
            out.sort_by_key(|e| e.id);
            if out.windows(2).any(|w| w[0].id == w[1].id) {
                let dup = out
                    .windows(2)
                    .find(|w| w[0].id == w[1].id)
                    .map_or(0, |w| w[0].id);
                out.truncate(held);
                return Err(DeltaError::BadAdded(u64::from(dup)));
            }
        }
        // The scratch list is not the world yet: an error here still changes nothing.
        check_fields(out.len(), &s.fields)?;
        add_fields(out, &s.fields);
        // Last updates in the merged order: an added entity now, a kept one as it was.
        self.updated.clear();
        if kept_updated.is_empty() {
            // A keyframe (or a delta that kept nothing): every entity was just sent.
            self.updated.resize(out.len(), s.tick);
            std::mem::swap(&mut self.entities, &mut self.scratch);
            self.tick = Some(s.tick);
            return Ok(());
        }
        let mut kept = kept_updated.iter();
        let mut added = s.added.iter();
        let mut next_added = added.next().map(|a| u64::from(a.id_gap));
        for e in out.iter() {
            if next_added == Some(u64::from(e.id)) {
                next_added = added
                    .next()
                    .zip(next_added)
                    .map(|(a, p)| p + 1 + u64::from(a.id_gap));
                self.updated.push(s.tick);
            } else {
                self.updated
                    .push(kept.next().copied().unwrap_or(s.base_tick));
            }
        }
        std::mem::swap(&mut self.entities, &mut self.scratch);
        self.tick = Some(s.tick);
        Ok(())
    }
}

/// Sets the last-updated tick of the entities `changed` steps to (checked already).
fn mark_changed(updated: &mut [u64], changed: &[Changed], tick: u64) {
    let mut at = 0usize;
    for c in changed {
        at = at.saturating_add(c.skip as usize);
        if let Some(u) = updated.get_mut(at) {
            *u = tick;
        }
        at = at.saturating_add(1);
    }
}

/// Checks that every `changed` entry lands on one of `len` held entities.
fn check_changed(len: usize, changed: &[Changed]) -> Result<(), DeltaError> {
    let mut at = 0usize;
    for (n, c) in changed.iter().enumerate() {
        at = at
            .checked_add(c.skip as usize)
            .filter(|i| *i < len)
            .ok_or(DeltaError::ChangedOutOfRange(n))?;
        at += 1;
    }
    Ok(())
}

/// Adds the residuals of `changed` to the (predicted) entities they step to. After
/// [`check_changed`] every entry lands; an entry that did not would be skipped.
fn add_changed(entities: &mut [QEntity], changed: &[Changed]) {
    let mut at = 0usize;
    for c in changed {
        at = at.saturating_add(c.skip as usize);
        if let Some(e) = entities.get_mut(at) {
            e.pos = [
                e.pos[0].wrapping_add(c.dpos[0]),
                e.pos[1].wrapping_add(c.dpos[1]),
            ];
            e.vel = [
                e.vel[0].wrapping_add(c.dvel[0]),
                e.vel[1].wrapping_add(c.dvel[1]),
            ];
        }
        at = at.saturating_add(1);
    }
}

/// Checks that every field change lands on one of `len` entities, names a field that
/// exists, and that changes of one entity come in ascending field order.
fn check_fields(len: usize, changes: &[FieldChange]) -> Result<(), DeltaError> {
    let mut at = 0usize;
    let mut last_field: Option<u8> = None;
    for (n, c) in changes.iter().enumerate() {
        if c.skip > 0 {
            last_field = None;
        }
        at = at
            .checked_add(c.skip as usize)
            .filter(|i| *i < len)
            .ok_or(DeltaError::BadField(n))?;
        if usize::from(c.field) >= MAX_FIELDS || last_field.is_some_and(|f| c.field <= f) {
            return Err(DeltaError::BadField(n));
        }
        last_field = Some(c.field);
    }
    Ok(())
}

/// Adds the field deltas to the entities they step to; after [`check_fields`] every
/// change lands.
fn add_fields(entities: &mut [QEntity], changes: &[FieldChange]) {
    let mut at = 0usize;
    for c in changes {
        at = at.saturating_add(c.skip as usize);
        if let Some(v) = entities
            .get_mut(at)
            .and_then(|e| e.fields.get_mut(usize::from(c.field)))
        {
            *v = v.wrapping_add(c.delta);
        }
    }
}

/// The next id of a gap-coded list, in u64 so no sum wraps.
fn id_stream(gaps: &mut std::slice::Iter<'_, u32>, prev: Option<u64>) -> Option<u64> {
    gaps.next().map(|g| match prev {
        None => u64::from(*g),
        Some(p) => p + 1 + u64::from(*g),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(id: u32, pos: [i32; 2], vel: [i32; 2]) -> QEntity {
        QEntity {
            id,
            kind: EntityKind::Npc,
            pos,
            vel,
            fields: [0; MAX_FIELDS],
        }
    }

    fn snapshot(tick: u64, base_tick: u64, body: &DeltaBody) -> Snapshot {
        Snapshot {
            tick,
            base_tick,
            last_input_seq: 0,
            removed: body.removed.clone(),
            changed: body.changed.clone(),
            added: body.added.clone(),
            fields: body.fields.clone(),
        }
    }

    #[test]
    fn moving_as_predicted_costs_nothing() {
        let base = vec![e(1, [0, 0], [3, -2]), e(2, [100, 100], [0, 0])];
        let now = vec![e(1, [15, -10], [3, -2]), e(2, [100, 100], [0, 0])];
        let mut body = DeltaBody::default();
        diff(Some((10, &base)), 15, &now, &mut body);
        assert_eq!(body.records(), 0, "{body:?}");
    }

    #[test]
    fn changes_spawns_and_despawns_round_trip() {
        let base = vec![
            e(1, [0, 0], [1, 0]),
            e(2, [5, 5], [0, 0]),
            e(4, [9, 9], [0, 1]),
            e(7, [1, 1], [0, 0]),
        ];
        let now = vec![
            e(1, [2, 0], [1, 0]),
            e(4, [9, 9], [0, 0]),
            e(5, [3, 3], [1, 1]),
            e(9, [0, 0], [0, 0]),
        ];
        let mut body = DeltaBody::default();
        diff(Some((3, &base)), 5, &now, &mut body);
        assert_eq!(body.removed, vec![2, 4]); // ids 2 and 7
        assert_eq!(
            body.changed,
            vec![Changed {
                skip: 1,
                dpos: [0, -2],
                dvel: [0, -1]
            }]
        );
        assert_eq!(
            body.added.iter().map(|a| a.id_gap).collect::<Vec<_>>(),
            vec![5, 3]
        ); // ids 5, 9
        let mut world = World {
            tick: Some(3),
            entities: base,
            ..World::default()
        };
        world.apply(&snapshot(5, 3, &body)).unwrap();
        assert_eq!(world.entities, now);
        assert_eq!(world.tick, Some(5));
    }

    #[test]
    fn entities_left_out_of_a_delta_are_extrapolated_and_remember_their_last_update() {
        let mut world = World::default();
        let start = vec![
            e(1, [0, 0], [2, 0]),
            e(2, [100, 0], [0, -3]),
            e(3, [50, 50], [0, 0]),
        ];
        let mut body = DeltaBody::default();
        diff(None, 10, &start, &mut body);
        world.apply(&snapshot(10, 0, &body)).unwrap();
        assert_eq!(world.last_updated(2), Some(10));
        // Tick 14: only entity 1 is sent (it turned); 2 and 3 are left out, as a
        // server under a budget may do; entity 4 enters.
        let mut sent = vec![
            e(1, [8, 0], [0, 1]),
            start[1],
            start[2],
            e(4, [7, 7], [1, 1]),
        ];
        sent[1].pos = start[1].predicted(4);
        let mut body = DeltaBody::default();
        diff(Some((10, &start)), 14, &sent, &mut body);
        assert_eq!(body.changed.len(), 1);
        world.apply(&snapshot(14, 10, &body)).unwrap();
        let ids = [1, 2, 3, 4].map(|id| world.last_updated(id));
        assert_eq!(ids, [Some(14), Some(10), Some(10), Some(14)]);
        assert_eq!(world.last_updated(9), None);
        assert_eq!(
            world.extrapolated(2, 14),
            Some([100, -12]),
            "moved on by its velocity"
        );
        assert_eq!(world.extrapolated(2, 20), Some([100, -30]));
        assert_eq!(world.extrapolated(1, 16), Some([8, 2]));
        assert_eq!(
            world.extrapolated(3, 1_000),
            Some([50, 50]),
            "velocity 0: no drift"
        );
        assert_eq!(world.extrapolated(9, 20), None);
        // The in-place path (no spawns): entity 2 changes at 15, the rest keep theirs.
        let mut next = world.entities.clone();
        for n in &mut next {
            n.pos = n.predicted(1);
        }
        next[1].vel = [0, 0];
        let mut body = DeltaBody::default();
        diff(Some((14, &world.entities)), 15, &next, &mut body);
        world.apply(&snapshot(15, 14, &body)).unwrap();
        let ids = [1, 2, 3, 4].map(|id| world.last_updated(id));
        assert_eq!(ids, [Some(14), Some(15), Some(10), Some(14)]);
        // A removal shifts the list: the remaining keep their own.
        let kept: Vec<QEntity> = next
            .iter()
            .filter(|n| n.id != 1)
            .map(|n| QEntity {
                pos: n.predicted(1),
                ..*n
            })
            .collect();
        let mut body = DeltaBody::default();
        diff(Some((15, &next)), 16, &kept, &mut body);
        world.apply(&snapshot(16, 15, &body)).unwrap();
        let ids = [1, 2, 3, 4].map(|id| world.last_updated(id));
        assert_eq!(ids, [None, Some(15), Some(10), Some(14)]);
    }

    #[test]
    fn keyframe_replaces_whatever_is_held() {
        let now = vec![e(3, [1, 2], [3, 4]), e(8, [5, 6], [7, 8])];
        let mut body = DeltaBody::default();
        diff(None, 42, &now, &mut body);
        let mut world = World {
            tick: Some(7),
            entities: vec![e(1, [0, 0], [0, 0])],
            ..World::default()
        };
        world.apply(&snapshot(42, 0, &body)).unwrap();
        assert_eq!(world.entities, now);
    }

    #[test]
    fn bad_deltas_are_typed_errors_and_leave_the_world_alone() {
        let held = vec![e(1, [0, 0], [0, 0]), e(2, [0, 0], [0, 0])];
        let world = World {
            tick: Some(5),
            entities: held,
            ..World::default()
        };
        let empty = DeltaBody::default();
        let cases: Vec<(Snapshot, DeltaError)> = vec![
            (
                snapshot(7, 6, &empty),
                DeltaError::WrongBase {
                    base_tick: 6,
                    held: Some(5),
                },
            ),
            (
                snapshot(5, 5, &empty),
                DeltaError::NotNewer {
                    tick: 5,
                    base_tick: 5,
                },
            ),
            (
                Snapshot {
                    removed: vec![3],
                    ..snapshot(6, 5, &empty)
                },
                DeltaError::UnknownRemoved(3),
            ),
            (
                Snapshot {
                    removed: vec![2, 0],
                    ..snapshot(6, 5, &empty)
                },
                DeltaError::UnknownRemoved(3),
            ),
            (
                Snapshot {
                    removed: vec![1],
                    ..snapshot(6, 0, &empty)
                },
                DeltaError::KeyframeWithChanges,
            ),
            (
                Snapshot {
                    changed: vec![Changed {
                        skip: 2,
                        dpos: [0, 0],
                        dvel: [0, 0],
                    }],
                    ..snapshot(6, 5, &empty)
                },
                DeltaError::ChangedOutOfRange(0),
            ),
            (
                Snapshot {
                    changed: vec![Changed {
                        skip: u32::MAX,
                        dpos: [0, 0],
                        dvel: [0, 0],
                    }],
                    ..snapshot(6, 5, &empty)
                },
                DeltaError::ChangedOutOfRange(0),
            ),
            (
                Snapshot {
                    added: vec![Added {
                        id_gap: 2,
                        kind: EntityKind::Npc,
                        pos: [0, 0],
                        vel: [0, 0],
                    }],
                    ..snapshot(6, 5, &empty)
                },
                DeltaError::BadAdded(2),
            ),
            (
                Snapshot {
                    added: vec![
                        Added {
                            id_gap: u32::MAX,
                            kind: EntityKind::Npc,
                            pos: [0, 0],
                            vel: [0, 0],
                        },
                        Added {
                            id_gap: 0,
                            kind: EntityKind::Npc,
                            pos: [0, 0],
                            vel: [0, 0],
                        },
                    ],
                    ..snapshot(6, 5, &empty)
                },
                DeltaError::BadAdded(u64::from(u32::MAX) + 1),
            ),
        ];
        for (bad, want) in cases {
            let mut w = world.clone();
            assert_eq!(w.apply(&bad), Err(want), "{bad:?}");
            assert_eq!(
                (w.tick, &w.entities),
                (world.tick, &world.entities),
                "unchanged after {want:?}"
            );
        }
        assert_eq!(
            world.clone().apply(&snapshot(0, 0, &empty)),
            Err(DeltaError::NotNewer {
                tick: 0,
                base_tick: 0
            })
        );
        let mut fresh = World::default();
        assert_eq!(
            fresh.apply(&snapshot(3, 2, &empty)),
            Err(DeltaError::WrongBase {
                base_tick: 2,
                held: None
            })
        );
    }

    #[test]
    fn quantizer_round_trips_on_the_grid() {
        let q = Quantizer::new(1.0 / 16.0, 30);
        let s = EntityState {
            id: 1,
            kind: EntityKind::Avatar,
            pos: glam::Vec2::new(500.0625, 3.5),
            vel: glam::Vec2::new(100.0, -30.0),
            fields: [3, -1, 0, 0, 0, 0, 0, 9],
        };
        let qe = q.quantize(&s);
        assert_eq!(qe.fields, s.fields, "fields travel as they are");
        assert_eq!(qe.pos, [8001, 56]);
        assert_eq!(qe.vel, [53, -16]); // 100/30*16 = 53.3, -30/30*16 = -16
        let back = q.dequantize(&qe);
        assert_eq!(back.pos, s.pos);
        assert_eq!(back.vel.y, -30.0);
        assert_eq!(
            q.quantize(&EntityState {
                pos: glam::Vec2::new(f32::NAN, f32::INFINITY),
                ..s
            })
            .pos,
            [0, i32::MAX]
        );
    }

    fn with_fields(mut q: QEntity, fields: &[(usize, i32)]) -> QEntity {
        for &(i, v) in fields {
            q.fields[i] = v;
        }
        q
    }

    #[test]
    fn fields_cost_nothing_when_unchanged_and_a_change_each_otherwise() {
        let base = vec![
            with_fields(e(1, [0, 0], [1, 0]), &[(0, 100)]),
            with_fields(e(2, [5, 5], [0, 0]), &[(0, 100), (3, 7)]),
            e(4, [9, 9], [0, 0]),
        ];
        // Tick 2: entity 2 loses health and scores; entity 3 appears with a team; the
        // rest only move as predicted.
        let current = vec![
            with_fields(e(1, [1, 0], [1, 0]), &[(0, 100)]),
            with_fields(e(2, [5, 5], [0, 0]), &[(0, 90), (3, 8)]),
            with_fields(e(3, [2, 2], [0, 0]), &[(1, 2)]),
            e(4, [9, 9], [0, 0]),
        ];
        let mut body = DeltaBody::default();
        diff(Some((1, &base)), 2, &current, &mut body);
        assert!(body.changed.is_empty() && body.removed.is_empty());
        assert_eq!(
            body.fields,
            [
                FieldChange {
                    skip: 1,
                    field: 0,
                    delta: -10
                },
                FieldChange {
                    skip: 0,
                    field: 3,
                    delta: 1
                },
                FieldChange {
                    skip: 1,
                    field: 1,
                    delta: 2
                },
            ]
        );
        let mut world = World::default();
        let mut key = DeltaBody::default();
        diff(None, 1, &base, &mut key);
        world.apply(&snapshot(1, 0, &key)).unwrap();
        assert_eq!(world.entities, base, "a keyframe sets the fields");
        world.apply(&snapshot(2, 1, &body)).unwrap();
        assert_eq!(world.entities, current);
        // Unchanged fields: not a byte.
        let mut same = DeltaBody::default();
        let moved: Vec<QEntity> = current
            .iter()
            .map(|c| QEntity {
                pos: c.predicted(1),
                ..*c
            })
            .collect();
        diff(Some((2, &current)), 3, &moved, &mut same);
        assert_eq!(same.records(), 0);
    }

    #[test]
    fn bad_field_changes_leave_the_world_as_it_was() {
        let base = vec![e(1, [0, 0], [0, 0]), e(2, [0, 0], [0, 0])];
        let mut key = DeltaBody::default();
        diff(None, 1, &base, &mut key);
        let mut world = World::default();
        world.apply(&snapshot(1, 0, &key)).unwrap();
        let change = |skip, field| FieldChange {
            skip,
            field,
            delta: 1,
        };
        for (fields, bad) in [
            (vec![change(2, 0)], 0),                // past the last entity
            (vec![change(0, MAX_FIELDS as u8)], 0), // no such field
            (vec![change(0, 3), change(0, 3)], 1),  // the same field twice
            (vec![change(0, 3), change(0, 1)], 1),  // fields going back
            (vec![change(1, 0), change(u32::MAX, 0)], 1),
        ] {
            let s = Snapshot {
                fields,
                ..snapshot(2, 1, &DeltaBody::default())
            };
            assert_eq!(world.apply(&s), Err(DeltaError::BadField(bad)));
            assert_eq!(world.tick, Some(1));
            assert_eq!(world.entities, base);
            // The same through the path that rebuilds the world (an entity added).
            let s = Snapshot {
                added: vec![Added {
                    id_gap: 3,
                    kind: EntityKind::Npc,
                    pos: [0, 0],
                    vel: [0, 0],
                }],
                ..s
            };
            if bad == 0 && s.fields[0].skip == 2 {
                continue; // three entities now: that change lands
            }
            assert_eq!(world.apply(&s), Err(DeltaError::BadField(bad)));
            assert_eq!(world.entities, base);
        }
    }
}
