//! A bandwidth budget per player (`--max-bytes-per-player-per-sec`), I/O-free: a token
//! bucket of bytes and a priority accumulator that decides which changes fit.
//!
//! # Where it sits
//! A connection's [`crate::snapshot::SnapshotEncoder`] asks the [`Planner`] which of the
//! entities that differ from what its client holds go into this tick's delta. The
//! planner builds the *target*: the world the client will hold after the message, in
//! which every entity that is not sent keeps what the client has (its old velocity
//! and fields, its position predicted forward, exactly as the client's `World::apply`
//! moves it). The encoder diffs the held state against that target, so the delta
//! stays exact and the target becomes the next base.
//!
//! # The bucket
//! Tokens are bytes. Each tick adds `N / tick_rate` (kept exact by counting in units
//! of `1 / tick_rate` byte); the bucket holds at most one second's worth (`N`), which
//! is the burst a new player's first keyframe may use. A player that skipped ticks is
//! refilled for all of them. A message always carries its header, the removals and the
//! player's own avatar, even when that overdraws the bucket: the debt is paid back
//! first. So over any `T` seconds a player is sent at most `N × T + N` bytes, plus the
//! one message that overdrew (when `N` per tick does not even cover that minimum).
//!
//! # The priority accumulator
//! After Glenn Fiedler's "State Synchronization" (Gaffer on Games): every tick, each
//! entity that differs from what the client holds gains priority `weight × ticks`; the
//! sending order is the player's own avatar, then descending priority; sending stops
//! at the first entity that does not fit, so everything sent outranks everything
//! that waits; a sent entity starts again from 0. The weight is nearness (1 far away
//! up to 4 at the avatar) times change (1 up to 2 for an error of [`CHANGE_SCALE`]
//! quanta or an entity entering the view). Because every waiting entity gains at
//! least 1 per tick and nobody gains more than [`MAX_WEIGHT`], nothing starves:
//! [`starvation_bound`] says how long an entity can wait.

use tickcast_shared::delta::QEntity;

/// Nearness halves its bonus at this distance from the player's avatar, in quanta
/// (32 world units at the default 1/16 quantum).
pub const NEAR_SCALE: f32 = 512.0;
/// A prediction error of this many quanta (a velocity error counts
/// [`VELOCITY_TICKS`] times) makes the change factor its largest.
pub const CHANGE_SCALE: f32 = 64.0;
/// How many ticks of drift a velocity error counts as.
pub const VELOCITY_TICKS: i64 = 4;
/// Largest weight an entity gains per tick; the smallest is 1.
pub const MAX_WEIGHT: f32 = 8.0;
/// The most a snapshot header can take: message tag, two `u64` ticks and the input
/// sequence as varints, the body tag and three or four list lengths.
pub const HEADER_MAX: usize = 1 + 9 + 9 + 5 + 1 + 4 * 5;
/// Largest `bytes_per_sec` the bucket counts exactly; larger budgets are clamped to it
/// (a terabyte per second is no budget at all).
const MAX_RATE: u64 = 1 << 40;

/// A player's snapshot budget: bytes per second, refilled each tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes per second (above 0).
    pub bytes_per_sec: u64,
    /// Ticks per second of the room.
    pub tick_rate: u16,
}

impl Budget {
    /// The budget of `--max-bytes-per-player-per-sec`; `None` when it is 0 (no budget).
    pub fn new(bytes_per_sec: u64, tick_rate: u16) -> Option<Self> {
        (bytes_per_sec > 0).then_some(Self {
            bytes_per_sec: bytes_per_sec.min(MAX_RATE),
            tick_rate: tick_rate.max(1),
        })
    }

    /// Bytes added per tick (fractional).
    pub fn per_tick(&self) -> f64 {
        self.bytes_per_sec as f64 / f64::from(self.tick_rate)
    }

    /// The most the bucket holds: one second's worth.
    pub fn burst(&self) -> u64 {
        self.bytes_per_sec
    }
}

/// Bytes a player may be sent now. Counts in units of `1 / tick_rate` byte so that a
/// tick's refill is an exact integer.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    level: i64,
    per_tick: i64,
    capacity: i64,
    scale: i64,
    last_tick: Option<u64>,
}

impl TokenBucket {
    /// A full bucket: a new player may spend one second's worth at once.
    pub fn new(budget: Budget) -> Self {
        let scale = i64::from(budget.tick_rate.max(1));
        // At most 2^40, so the products below stay far from i64::MAX.
        let per_tick = budget.bytes_per_sec.min(MAX_RATE) as i64;
        Self {
            level: per_tick * scale,
            per_tick,
            capacity: per_tick * scale,
            scale,
            last_tick: None,
        }
    }

    /// Moves the bucket to `tick`, refilling it for the ticks since the last call, and
    /// returns how many ticks that was (1 on the first call).
    pub fn advance(&mut self, tick: u64) -> u64 {
        let ticks = match self.last_tick {
            Some(last) => tick.saturating_sub(last),
            None => 1,
        };
        if self.last_tick.is_some() {
            let add = self
                .per_tick
                .saturating_mul(i64::try_from(ticks).unwrap_or(i64::MAX));
            self.level = self.level.saturating_add(add).min(self.capacity);
        }
        self.last_tick = Some(tick);
        ticks
    }

    /// Whole bytes that may be sent now (0 while in debt).
    pub fn available(&self) -> usize {
        usize::try_from((self.level / self.scale).max(0)).unwrap_or(usize::MAX)
    }

    /// Takes `bytes` that were sent; may overdraw (see the module doc).
    pub fn spend(&mut self, bytes: usize) {
        let cost = i64::try_from(bytes)
            .unwrap_or(i64::MAX)
            .saturating_mul(self.scale);
        self.level = self.level.saturating_sub(cost);
    }
}

/// The weight an entity gains per tick: nearness to the player's avatar (`distance` in
/// quanta) times how much it changed (`change` in quanta, see [`VELOCITY_TICKS`]).
/// Between 1 and [`MAX_WEIGHT`].
pub fn weight(distance: f32, change: f32) -> f32 {
    let distance = if distance.is_finite() {
        distance.max(0.0)
    } else {
        f32::MAX
    };
    let near = 1.0 + 3.0 * NEAR_SCALE / (NEAR_SCALE + distance);
    let change = 1.0 + (change.max(0.0) / CHANGE_SCALE).min(1.0);
    (near * change).clamp(1.0, MAX_WEIGHT)
}

/// The most ticks an entity that differs can wait before it is sent, when at most
/// `others` other entities differ and each tick sends at least `per_tick` of them
/// beyond the player's own avatar.
///
/// Why: say X waits from tick 0 to T. Every entity Y sent at a tick `t` in the second
/// half outranked X, so had gained at least `t ≥ T/2` since its own last send, which
/// takes at least `T / (2 × MAX_WEIGHT)` ticks. So each Y is sent at most
/// `1 + MAX_WEIGHT` times in that half, while at least `per_tick × T/2` sends happen
/// there: `T ≤ 2 × others × (1 + MAX_WEIGHT) / per_tick`.
pub fn starvation_bound(others: usize, per_tick: usize) -> u64 {
    if per_tick == 0 {
        return u64::MAX;
    }
    let sends = 2.0 * others as f64 * (1.0 + f64::from(MAX_WEIGHT));
    (sends / per_tick as f64).ceil() as u64 + 1
}

/// The most bytes one entity's record can take in a delta: an `Added` (id gap, kind,
/// four `i32`s) plus a removal (an id reused for another kind), with every field changed.
pub fn max_record_bytes(fields: usize) -> usize {
    5 + 5 + 1 + 4 * 5 + fields * (5 + 1 + 5)
}

/// One entity that differs from what the client holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Entity id.
    pub id: u32,
    /// Index in the view.
    pub view_index: u32,
    /// Accumulated priority, this tick's gain included.
    pub priority: f32,
    /// Estimated bytes of its records.
    pub cost: u32,
    /// The player's own avatar: always sent.
    pub own: bool,
}

/// Chooses, each tick, which differing entities a budgeted player is sent. Keeps the
/// accumulated priorities of the entities that wait.
#[derive(Debug, Default)]
pub struct Planner {
    /// Priorities of entities that were not sent, sorted by id.
    carried: Vec<(u32, f32)>,
    /// This tick's candidates, sorted by id.
    candidates: Vec<Candidate>,
    /// Indices into `candidates`, in sending order.
    order: Vec<u32>,
    /// Per candidate: chosen this tick.
    chosen: Vec<bool>,
    /// Per view entity: chosen this tick.
    chosen_view: Vec<bool>,
    /// Held entities that left the view (always removed).
    removed: usize,
}

impl Planner {
    /// Finds what differs between `held` (what the client holds, at its tick; `None`:
    /// nothing) and `view` (what it should see at `tick`, sorted by id), gives each
    /// difference `ticks` ticks' worth of priority, and orders them for sending. `own`
    /// is the player's avatar: first, and the centre nearness is measured from.
    pub fn prepare(
        &mut self,
        held: Option<(u64, &[QEntity])>,
        tick: u64,
        view: &[QEntity],
        own: u32,
        ticks: u64,
    ) {
        self.candidates.clear();
        self.removed = 0;
        let (base_tick, held) = held.unwrap_or((tick, &[]));
        let k = tick.wrapping_sub(base_tick);
        let centre = view
            .binary_search_by_key(&own, |e| e.id)
            .ok()
            .map(|i| view[i].pos);
        let gain_ticks = ticks.clamp(1, 1 << 20) as f32;
        let mut carried = self.carried.iter().peekable();
        let (mut i, mut j) = (0, 0);
        loop {
            let (change, cost, v, at) = match (held.get(i), view.get(j)) {
                (Some(h), Some(v)) if h.id == v.id => {
                    let j0 = j;
                    i += 1;
                    j += 1;
                    let predicted = h.predicted(k);
                    if v.kind != h.kind {
                        // Removed and added again: cost and urgency of an entering one.
                        (CHANGE_SCALE, added_cost(v) + 5, v, j0)
                    } else if v.pos == predicted && v.vel == h.vel && v.fields == h.fields {
                        continue;
                    } else {
                        let dpos = [
                            v.pos[0].wrapping_sub(predicted[0]),
                            v.pos[1].wrapping_sub(predicted[1]),
                        ];
                        let dvel = [
                            v.vel[0].wrapping_sub(h.vel[0]),
                            v.vel[1].wrapping_sub(h.vel[1]),
                        ];
                        let change = chebyshev(dpos)
                            .saturating_add(chebyshev(dvel).saturating_mul(VELOCITY_TICKS));
                        let mut cost = fields_cost(&h.fields, &v.fields);
                        if dpos != [0, 0] || dvel != [0, 0] {
                            cost += 1 + dpos
                                .iter()
                                .chain(&dvel)
                                .map(|d| varint_i32(*d))
                                .sum::<usize>();
                        }
                        (change as f32, cost, v, j0)
                    }
                }
                (Some(h), v) if v.is_none_or(|v| h.id < v.id) => {
                    self.removed += 1;
                    i += 1;
                    continue;
                }
                (_, Some(v)) => {
                    j += 1;
                    (CHANGE_SCALE, added_cost(v), v, j - 1)
                }
                (_, None) => break,
            };
            let distance = centre.map_or(0.0, |c| {
                let dx = (v.pos[0] as f32) - (c[0] as f32);
                let dy = (v.pos[1] as f32) - (c[1] as f32);
                dx.hypot(dy)
            });
            while carried.next_if(|(id, _)| *id < v.id).is_some() {}
            let before = carried.next_if(|(id, _)| *id == v.id).map_or(0.0, |c| c.1);
            self.candidates.push(Candidate {
                id: v.id,
                view_index: u32::try_from(at).unwrap_or(u32::MAX),
                priority: before + weight(distance, change) * gain_ticks,
                cost: u32::try_from(cost).unwrap_or(u32::MAX),
                own: v.id == own,
            });
        }
        self.order.clear();
        self.order
            .extend((0..self.candidates.len()).map(|c| c as u32));
        let candidates = &self.candidates;
        self.order.sort_unstable_by(|a, b| {
            let (a, b) = (&candidates[*a as usize], &candidates[*b as usize]);
            b.own
                .cmp(&a.own)
                .then(b.priority.total_cmp(&a.priority))
                .then(a.id.cmp(&b.id))
        });
    }

    /// This tick's candidates in sending order.
    pub fn order(&self) -> impl Iterator<Item = &Candidate> + '_ {
        self.order.iter().map(|c| &self.candidates[*c as usize])
    }

    /// Held entities that left the view: removed whatever the budget.
    pub fn removed(&self) -> usize {
        self.removed
    }

    /// How many candidates, in sending order, go into `room` bytes: the own avatar
    /// always, then until the first that does not fit.
    pub fn fit(&self, room: usize) -> usize {
        let mut used = 0usize;
        let mut n = 0;
        for c in self.order() {
            used = used.saturating_add(c.cost as usize);
            if !c.own && used > room {
                break;
            }
            n += 1;
        }
        n
    }

    /// The count to try after `n` candidates came out `excess` bytes over: at least one
    /// fewer, enough fewer to save `excess` by their estimates, never the own avatar.
    pub fn shrink(&self, n: usize, excess: usize) -> usize {
        let musts = self.order().take_while(|c| c.own).count();
        let mut saved = 0usize;
        let mut m = n;
        while m > musts && saved < excess.max(1) {
            m -= 1;
            saved += self.candidates[self.order[m] as usize].cost as usize;
        }
        m
    }

    /// Builds into `target` the world the client holds after the first `n` candidates
    /// are sent: those as in `view`; every other held entity still in view as the
    /// client predicts it; entities that left the view gone; entering ones not chosen
    /// left out. Same arguments as [`Planner::prepare`].
    pub fn build(
        &mut self,
        n: usize,
        held: Option<(u64, &[QEntity])>,
        tick: u64,
        view: &[QEntity],
        target: &mut Vec<QEntity>,
    ) {
        self.chosen.clear();
        self.chosen.resize(self.candidates.len(), false);
        self.chosen_view.clear();
        self.chosen_view.resize(view.len(), false);
        for &c in self.order.iter().take(n) {
            self.chosen[c as usize] = true;
            let v = self.candidates[c as usize].view_index as usize;
            if let Some(slot) = self.chosen_view.get_mut(v) {
                *slot = true;
            }
        }
        target.clear();
        let (base_tick, held) = held.unwrap_or((tick, &[]));
        let k = tick.wrapping_sub(base_tick);
        let (mut i, mut j) = (0, 0);
        loop {
            match (held.get(i), view.get(j)) {
                (Some(h), Some(v)) if h.id == v.id => {
                    let predicted = h.predicted(k);
                    let unchanged = v.kind == h.kind && v.pos == predicted && v.vel == h.vel;
                    if self.chosen_view[j] || (unchanged && v.fields == h.fields) {
                        target.push(*v);
                    } else {
                        target.push(QEntity {
                            pos: predicted,
                            ..*h
                        });
                    }
                    i += 1;
                    j += 1;
                }
                (Some(h), v) if v.is_none_or(|v| h.id < v.id) => i += 1,
                (_, Some(v)) => {
                    if self.chosen_view[j] {
                        target.push(*v);
                    }
                    j += 1;
                }
                (_, None) => break,
            }
        }
    }

    /// Records that the candidates chosen by the last [`Planner::build`] were sent: they
    /// start again from 0; the others carry their priority to the next tick.
    pub fn commit(&mut self) {
        self.carried.clear();
        for (c, chosen) in self.candidates.iter().zip(&self.chosen) {
            if !chosen {
                self.carried.push((c.id, c.priority));
            }
        }
    }

    /// The accumulated priority an entity carries into the next tick (0: none).
    pub fn carried(&self, id: u32) -> f32 {
        self.carried
            .binary_search_by_key(&id, |c| c.0)
            .map_or(0.0, |i| self.carried[i].1)
    }
}

fn chebyshev(d: [i32; 2]) -> i64 {
    i64::from(d[0].unsigned_abs().max(d[1].unsigned_abs()))
}

/// Bytes of a `u32` as a bincode varint.
fn varint_u32(v: u32) -> usize {
    match v {
        0..=250 => 1,
        251..=0xffff => 3,
        _ => 5,
    }
}

/// Bytes of an `i32` as a bincode varint (zigzag).
fn varint_i32(v: i32) -> usize {
    varint_u32(((v << 1) ^ (v >> 31)) as u32)
}

/// Estimated bytes of an `Added` record (an id gap of one byte, as when ids are dense)
/// and its fields.
fn added_cost(v: &QEntity) -> usize {
    1 + 1
        + v.pos
            .iter()
            .chain(&v.vel)
            .map(|d| varint_i32(*d))
            .sum::<usize>()
        + fields_cost(&[0; tickcast_shared::MAX_FIELDS], &v.fields)
}

/// Estimated bytes of the field changes from `from` to `to`.
fn fields_cost(from: &tickcast_shared::Fields, to: &tickcast_shared::Fields) -> usize {
    from.iter()
        .zip(to)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| 1 + 1 + varint_i32(b.wrapping_sub(*a)))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickcast_shared::EntityKind;

    fn e(id: u32, pos: [i32; 2], vel: [i32; 2]) -> QEntity {
        QEntity {
            id,
            kind: EntityKind::Npc,
            pos,
            vel,
            fields: Default::default(),
        }
    }

    #[test]
    fn the_bucket_refills_per_tick_up_to_one_second_and_carries_debt() {
        let mut b = TokenBucket::new(Budget::new(300, 30).unwrap());
        assert_eq!(b.advance(5), 1);
        assert_eq!(b.available(), 300, "starts full: the burst");
        b.spend(295);
        assert_eq!(b.available(), 5);
        assert_eq!(b.advance(6), 1);
        assert_eq!(b.available(), 15, "10 bytes per tick");
        b.spend(40);
        assert_eq!(b.available(), 0, "in debt by 25");
        b.advance(8);
        assert_eq!(b.available(), 0, "20 of 25 paid back");
        b.advance(9);
        assert_eq!(b.available(), 5);
        assert_eq!(b.advance(1_000), 991);
        assert_eq!(b.available(), 300, "capped at one second");
        // A rate that is not a multiple of the tick rate is still exact over a second.
        let mut b = TokenBucket::new(Budget::new(100, 30).unwrap());
        b.advance(0);
        b.spend(100);
        b.advance(30);
        assert_eq!(b.available(), 100);
        assert_eq!(Budget::new(0, 30), None, "0 is no budget");
    }

    #[test]
    fn weights_favour_near_and_changed_entities_within_bounds() {
        assert_eq!(weight(0.0, CHANGE_SCALE), MAX_WEIGHT);
        assert_eq!(weight(0.0, 0.0), 4.0);
        assert_eq!(weight(NEAR_SCALE, 0.0), 2.5);
        assert!(weight(100.0, 10.0) > weight(1000.0, 10.0));
        assert!(weight(100.0, 20.0) > weight(100.0, 10.0));
        assert!(weight(f32::INFINITY, 0.0) >= 1.0);
        assert!(weight(f32::NAN, f32::NAN) >= 1.0);
        assert_eq!(starvation_bound(10, 0), u64::MAX);
        assert_eq!(starvation_bound(10, 2), 91);
    }

    #[test]
    fn own_avatar_first_then_priority_and_the_target_keeps_what_was_not_sent() {
        // Held at tick 1; at tick 2: own avatar 9 turned, near 1 and far 2 turned, 3
        // moved as predicted, 4 left, 5 entered.
        let held = vec![
            e(1, [10, 0], [1, 0]),
            e(2, [5000, 0], [1, 0]),
            e(3, [0, 50], [0, 1]),
            e(4, [0, 0], [0, 0]),
            e(9, [0, 0], [0, 0]),
        ];
        let view = vec![
            e(1, [11, 0], [0, 1]),
            e(2, [5001, 0], [0, 1]),
            e(3, [0, 51], [0, 1]),
            e(5, [20, 20], [0, 0]),
            e(9, [1, 0], [1, 0]),
        ];
        let mut p = Planner::default();
        p.prepare(Some((1, &held)), 2, &view, 9, 1);
        let ids: Vec<u32> = p.order().map(|c| c.id).collect();
        assert_eq!(ids, [9, 5, 1, 2], "own first; entering near ones; far last");
        assert_eq!(p.removed(), 1);
        let own_cost = p.order().next().unwrap().cost as usize;
        let n = p.fit(own_cost);
        assert_eq!(n, 1, "no room: only the avatar");
        let mut target = Vec::new();
        p.build(n, Some((1, &held)), 2, &view, &mut target);
        assert_eq!(
            target,
            vec![
                e(1, [11, 0], [1, 0]),
                e(2, [5001, 0], [1, 0]),
                e(3, [0, 51], [0, 1]),
                e(9, [1, 0], [1, 0]),
            ],
            "unsent ones as the client predicts them; entering ones wait"
        );
        p.commit();
        assert_eq!(p.carried(9), 0.0);
        let far = p.carried(2);
        assert!(far > 0.0 && p.carried(1) > far);

        // Next tick, with room for everything: priorities accumulated, all sent.
        let held = std::mem::take(&mut target);
        let view: Vec<QEntity> = view
            .iter()
            .map(|v| QEntity {
                pos: v.predicted(1),
                ..*v
            })
            .collect();
        p.prepare(Some((2, &held)), 3, &view, 9, 1);
        assert!(p.order().all(|c| c.priority > 0.0));
        assert!(
            p.order().find(|c| c.id == 2).unwrap().priority > far,
            "accumulated"
        );
        let n = p.fit(usize::MAX);
        assert_eq!(n, 3);
        p.build(n, Some((2, &held)), 3, &view, &mut target);
        assert_eq!(target, view);
        p.commit();
        assert_eq!((p.carried(1), p.carried(2), p.carried(5)), (0.0, 0.0, 0.0));
    }

    #[test]
    fn fitting_stops_at_the_first_that_does_not_fit_and_shrinking_keeps_the_avatar() {
        let view: Vec<QEntity> = (0..6).map(|i| e(i, [i as i32 * 100, 0], [0, 0])).collect();
        let mut p = Planner::default();
        p.prepare(None, 1, &view, 0, 1);
        let costs: Vec<usize> = p.order().map(|c| c.cost as usize).collect();
        assert_eq!(p.order().next().unwrap().id, 0);
        let room = costs[0] + costs[1] + costs[2] + 1;
        assert_eq!(p.fit(room), 3);
        assert_eq!(p.fit(0), 1);
        assert_eq!(p.shrink(3, 1), 2);
        assert_eq!(p.shrink(3, 10_000), 1);
        assert_eq!(p.shrink(1, 10), 1);
    }
}
