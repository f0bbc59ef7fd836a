//! The player's side of one connection, with no I/O: what was sent, what came back,
//! and the timing between the two.
//!
//! [`crate::connection::Connection`] owns a [`Session`] and feeds it: every outgoing
//! input and ping is created here (so sequence numbers and send times are recorded in
//! one place), and every incoming snapshot and pong is handed back here with its
//! arrival time. Time is always passed in, never read, so the tests below drive the
//! state with a hand-made clock and the bot swarm can read the same figures that a
//! game would use for reconciliation.

use std::cell::Cell;
use std::time::{Duration, Instant};

use glam::Vec2;
use tickcast_shared::codec::SnapshotHeader;
use tickcast_shared::delta::{DeltaError, QEntity, Quantizer, World};
use tickcast_shared::{EntityState, Input, Ping, Pong, Snapshot, Welcome};

/// How many recent inputs keep their send time. At 30 inputs per second this is more
/// than 8 s of history, far beyond any acknowledgement a live server gives; an input
/// older than that is simply not measured.
pub const INPUT_HISTORY: usize = 256;

/// What one snapshot told us, beyond its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SnapshotMetrics {
    /// Time since the previous snapshot arrived (`None` for the first one).
    pub gap: Option<Duration>,
    /// Ticks skipped between the previous snapshot and this one (the server drops
    /// snapshots for a player that reads too slowly).
    pub missed: u64,
    /// Time from sending the input this snapshot acknowledges to receiving the
    /// snapshot; only reported the first time a sequence number is acknowledged.
    pub input_ack: Option<Duration>,
}

/// Running totals of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Snapshots that were keyframes.
    pub keyframes_received: u64,
    /// What the same snapshots would have weighed as naive full snapshots (every held
    /// entity with `f32` position and velocity): the baseline the deltas are measured against.
    pub naive_bytes: u64,
    /// Snapshots handled.
    pub snapshots_received: u64,
    /// Sum of [`SnapshotMetrics::missed`].
    pub snapshots_missed: u64,
    /// Snapshots whose tick was not newer than one already seen (never expected over TCP).
    pub snapshots_stale: u64,
    /// Inputs created by [`Session::next_input`].
    pub inputs_sent: u64,
    /// Pings created by [`Session::next_ping`].
    pub pings_sent: u64,
    /// Pongs that yielded a round-trip time.
    pub pongs_received: u64,
    /// WebSocket payload bytes of every message received, for bandwidth figures.
    pub bytes_received: u64,
    /// Messages counted in `bytes_received`.
    pub messages_received: u64,
    /// Times the session was resumed on a new connection ([`Session::resume`]).
    pub reconnects: u64,
    /// Game events received.
    pub events_received: u64,
}

/// The I/O-free state of one player: identity from the `Welcome`, outgoing sequence
/// numbers, and the measurements made as replies arrive.
#[derive(Debug, Clone)]
pub struct Session {
    welcome: Welcome,
    /// Origin of ping nonces: a nonce is the send time in microseconds since `epoch`,
    /// so a pong carries its own send time and no table of pending pings is needed.
    epoch: Instant,
    next_seq: u32,
    /// Send time of recent inputs, indexed by `seq % INPUT_HISTORY`; the stored seq
    /// tells whether the slot still holds the input asked about.
    sent: [Option<(u32, Instant)>; INPUT_HISTORY],
    /// Highest seq already reported as acknowledged, so each is measured once.
    acked: u32,
    last_tick: Option<u64>,
    last_snapshot_at: Option<Instant>,
    last_snapshot: Option<SnapshotMetrics>,
    last_rtt: Option<Duration>,
    stats: SessionStats,
    /// The world as reconstructed from keyframes and deltas.
    world: World,
    quantizer: Quantizer,
    /// Where [`Session::entity`] last found what it was asked for. A game asks for its
    /// own avatar every frame, and ids keep their order, so the index is usually still
    /// right: one look instead of a binary search through a world that is mostly out
    /// of cache by then (a bot process holds a thousand of them).
    entity_hint: Cell<usize>,
}

impl Session {
    /// Starts a session from the server's `Welcome`. `epoch` is the origin of ping
    /// nonces; any instant before the first ping works (the connection uses the moment
    /// it started connecting).
    pub fn new(welcome: Welcome, epoch: Instant) -> Self {
        Self {
            epoch,
            next_seq: 1,
            sent: [None; INPUT_HISTORY],
            acked: 0,
            last_tick: None,
            last_snapshot_at: None,
            last_snapshot: None,
            last_rtt: None,
            stats: SessionStats::default(),
            world: World::default(),
            quantizer: Quantizer::new(welcome_quantum(&welcome), welcome.tick_rate),
            welcome,
            entity_hint: Cell::new(0),
        }
    }

    /// The reconstructed world, quantised as it travels (positions in quanta,
    /// velocities in quanta per tick), sorted by id.
    pub fn world(&self) -> &World {
        &self.world
    }

    /// The reconstructed world in world units.
    pub fn entities(&self) -> impl Iterator<Item = EntityState> + '_ {
        self.world
            .entities
            .iter()
            .map(|q| self.quantizer.dequantize(q))
    }

    /// One entity of the reconstructed world, in world units.
    pub fn entity(&self, id: u32) -> Option<EntityState> {
        let entities = &self.world.entities;
        let hinted = entities.get(self.entity_hint.get()).filter(|e| e.id == id);
        let found = match hinted {
            Some(e) => e,
            None => {
                let i = entities.binary_search_by_key(&id, |e| e.id).ok()?;
                self.entity_hint.set(i);
                &entities[i]
            }
        };
        Some(self.quantizer.dequantize(found))
    }

    /// The server's answer to our `Hello`.
    pub fn welcome(&self) -> &Welcome {
        &self.welcome
    }

    /// Takes the session over to a new connection of the same player, after the server
    /// resumed it with `welcome`.
    ///
    /// What belongs to one connection starts over, because the server starts it over:
    /// input sequence numbers begin again at 1 (the server requires them to increase
    /// per connection), the send times of inputs still unacknowledged are forgotten
    /// (they can never be acknowledged now), the acknowledged seq is back to 0, and
    /// the next snapshot is the first of a stream (no gap, no missed ticks measured
    /// across the outage: that is not what those figures are about). The world is kept
    /// until the server's first snapshot, a keyframe, replaces it, so a game still has
    /// something to draw meanwhile. What belongs to the player is kept: the running
    /// totals (plus one reconnect), the last round-trip time, and the ping epoch.
    pub fn resume(&mut self, welcome: Welcome) {
        self.next_seq = 1;
        self.sent = [None; INPUT_HISTORY];
        self.acked = 0;
        self.last_tick = None;
        self.last_snapshot_at = None;
        self.last_snapshot = None;
        self.quantizer = Quantizer::new(welcome_quantum(&welcome), welcome.tick_rate);
        self.welcome = welcome;
        self.stats.reconnects += 1;
    }

    /// Creates the next input to send at `now`, with the next sequence number (the
    /// first is 1), and remembers when it was sent.
    pub fn next_input(&mut self, now: Instant, movement: Vec2, buttons: u16) -> Input {
        let seq = self.next_seq;
        // Saturating: u32 at 30 inputs/s lasts four years; a repeated seq is then
        // refused by the server rather than wrapping to something that looks old.
        self.next_seq = self.next_seq.saturating_add(1);
        self.sent[seq as usize % INPUT_HISTORY] = Some((seq, now));
        self.stats.inputs_sent += 1;
        Input {
            seq,
            movement,
            buttons,
            payload: Default::default(),
        }
    }

    /// Creates a ping sent at `now`; its nonce encodes `now`.
    pub fn next_ping(&mut self, now: Instant) -> Ping {
        self.stats.pings_sent += 1;
        Ping {
            nonce: self.micros_since_epoch(now),
        }
    }

    /// Applies a snapshot that arrived at `now` to the world and returns what it
    /// measured. The same value stays readable through [`Session::last_snapshot_metrics`].
    ///
    /// # Errors
    /// [`DeltaError`] when the snapshot does not apply to the held world (the world and
    /// the metrics are then left as they were).
    pub fn handle_snapshot(
        &mut self,
        now: Instant,
        snapshot: &Snapshot,
    ) -> Result<SnapshotMetrics, DeltaError> {
        self.world.apply(snapshot)?;
        self.stats.naive_bytes += naive_snapshot_bytes(snapshot, &self.world.entities);
        Ok(self.account(
            now,
            &SnapshotHeader {
                tick: snapshot.tick,
                base_tick: snapshot.base_tick,
                last_input_seq: snapshot.last_input_seq,
                len: 0,
            },
        ))
    }

    /// Accounts for a snapshot that arrived at `now` from its header alone, without
    /// applying it: the same counters and metrics as [`Session::handle_snapshot`]
    /// (gap, missed and stale ticks, keyframes, input acknowledgement), except the
    /// naive size, which needs the world. The world is left as it was, so a session
    /// fed this way must never be fed a delta in full afterwards (it would not apply):
    /// it is for a load tool that does not look at the world.
    pub fn handle_snapshot_header(
        &mut self,
        now: Instant,
        header: &SnapshotHeader,
    ) -> SnapshotMetrics {
        self.account(now, header)
    }

    /// What every snapshot counts and measures, whether applied or only peeked at.
    fn account(&mut self, now: Instant, snapshot: &SnapshotHeader) -> SnapshotMetrics {
        self.stats.snapshots_received += 1;
        if snapshot.base_tick == 0 {
            self.stats.keyframes_received += 1;
        }
        let gap = self
            .last_snapshot_at
            .map(|prev| now.saturating_duration_since(prev));
        self.last_snapshot_at = Some(now);

        let missed = match self.last_tick {
            Some(last) if snapshot.tick <= last => {
                self.stats.snapshots_stale += 1;
                0
            }
            Some(last) => snapshot.tick - last - 1,
            None => 0,
        };
        self.last_tick = Some(
            self.last_tick
                .map_or(snapshot.tick, |t| t.max(snapshot.tick)),
        );
        self.stats.snapshots_missed += missed;

        let input_ack = self.acknowledge(now, snapshot.last_input_seq);
        let metrics = SnapshotMetrics {
            gap,
            missed,
            input_ack,
        };
        self.last_snapshot = Some(metrics);
        metrics
    }

    /// Handles a pong that arrived at `now`; returns the round-trip time, or `None` if
    /// the nonce is not a send time of ours (it lies in the future).
    pub fn handle_pong(&mut self, now: Instant, pong: &Pong) -> Option<Duration> {
        let now_us = self.micros_since_epoch(now);
        let rtt = now_us.checked_sub(pong.nonce).map(Duration::from_micros)?;
        self.stats.pongs_received += 1;
        self.last_rtt = Some(rtt);
        Some(rtt)
    }

    /// Counts one game event received.
    pub fn handle_event(&mut self) {
        self.stats.events_received += 1;
    }

    /// Counts the payload of one received WebSocket message.
    pub fn handle_bytes(&mut self, bytes: usize) {
        self.stats.bytes_received += bytes as u64;
        self.stats.messages_received += 1;
    }

    /// Running totals.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// What the most recent snapshot measured.
    pub fn last_snapshot_metrics(&self) -> Option<SnapshotMetrics> {
        self.last_snapshot
    }

    /// The most recent round-trip time.
    pub fn last_rtt(&self) -> Option<Duration> {
        self.last_rtt
    }

    /// Tick of the newest snapshot received.
    pub fn last_tick(&self) -> Option<u64> {
        self.last_tick
    }

    /// Sequence number of the newest input the server has applied (0: none yet).
    pub fn acked_seq(&self) -> u32 {
        self.acked
    }

    /// Latency of input `seq` the first time it is acknowledged. A seq we never sent
    /// (at or beyond `next_seq`) is ignored rather than trusted.
    fn acknowledge(&mut self, now: Instant, seq: u32) -> Option<Duration> {
        if seq <= self.acked || seq >= self.next_seq {
            return None;
        }
        self.acked = seq;
        match self.sent[seq as usize % INPUT_HISTORY] {
            Some((stored, sent_at)) if stored == seq => {
                Some(now.saturating_duration_since(sent_at))
            }
            _ => None,
        }
    }

    fn micros_since_epoch(&self, now: Instant) -> u64 {
        let micros = now.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(micros).unwrap_or(u64::MAX)
    }
}

/// The quantum a `Welcome` announces, or the default if it is unusable (zero, negative,
/// not finite), so a broken server cannot make dequantising divide by zero.
fn welcome_quantum(w: &Welcome) -> f32 {
    if w.pos_quantum.is_finite() && w.pos_quantum > 0.0 {
        w.pos_quantum
    } else {
        1.0 / 16.0
    }
}

/// The size a full, unquantised snapshot of `entities` would have on the wire: the
/// message header, then per entity its id, kind and four `f32` (bincode varints as
/// everywhere in the protocol).
pub fn naive_snapshot_bytes(snapshot: &Snapshot, entities: &[QEntity]) -> u64 {
    fn varint(v: u64) -> u64 {
        match v {
            0..=250 => 1,
            251..=0xffff => 3,
            0x1_0000..=0xffff_ffff => 5,
            _ => 9,
        }
    }
    let header = 1
        + varint(snapshot.tick)
        + varint(u64::from(snapshot.last_input_seq))
        + varint(entities.len() as u64);
    // Entities are sorted by id, so the ids of each varint length form a run: count the
    // runs with two binary searches instead of visiting every entity of every snapshot.
    let one_byte = entities.partition_point(|e| e.id <= 250);
    let three_bytes = entities.partition_point(|e| e.id <= 0xffff) - one_byte;
    let five_bytes = entities.len() - one_byte - three_bytes;
    let id_bytes = one_byte as u64 + 3 * three_bytes as u64 + 5 * five_bytes as u64;
    header + id_bytes + (1 + 16) * entities.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn welcome() -> Welcome {
        Welcome {
            protocol_version: tickcast_shared::PROTOCOL_VERSION,
            player_id: 1,
            entity_id: 7,
            tick_rate: 30,
            server_tick: 100,
            world_size: Vec2::new(1000.0, 1000.0),
            session_token: [0; 16],
            pos_quantum: 1.0 / 16.0,
            game: "arena".into(),
            fields: Vec::new(),
        }
    }

    /// A keyframe of an empty world: applies whatever the session holds.
    fn snap(tick: u64, last_input_seq: u32) -> Snapshot {
        Snapshot {
            tick,
            base_tick: 0,
            last_input_seq,
            removed: Vec::new(),
            changed: Vec::new(),
            added: Vec::new(),
            fields: Vec::new(),
        }
    }

    #[test]
    fn entity_lookup_follows_the_world_as_ids_shift() {
        use tickcast_shared::{Added, EntityKind};
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        let add = |id_gap| Added {
            id_gap,
            kind: EntityKind::Npc,
            pos: [16 * id_gap as i32, 0],
            vel: [0, 0],
        };
        // Ids 1, 5, 7 (gaps 1, 3, 1).
        let key = Snapshot {
            added: vec![add(1), add(3), add(1)],
            ..snap(10, 0)
        };
        s.handle_snapshot(t0, &key).unwrap();
        assert_eq!(s.entity(7).unwrap().id, 7);
        // Id 3 joins before it: 7 moves from index 2 to 3, and the lookup follows.
        let delta = Snapshot {
            base_tick: 10,
            added: vec![add(3)],
            ..snap(11, 0)
        };
        s.handle_snapshot(t0, &delta).unwrap();
        let ids: Vec<u32> = s.world().entities.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 3, 5, 7]);
        for id in [7, 1, 7, 3, 5, 5] {
            assert_eq!(s.entity(id).unwrap().id, id);
        }
        assert_eq!(s.entity(4), None);
        assert_eq!(s.entity(8), None);
    }

    #[test]
    fn snapshots_rebuild_the_world_and_bad_ones_change_nothing() {
        use tickcast_shared::{Added, EntityKind};
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        let key = Snapshot {
            added: vec![Added {
                id_gap: 7,
                kind: EntityKind::Avatar,
                pos: [1600, 160],
                vel: [16, 0],
            }],
            ..snap(10, 0)
        };
        s.handle_snapshot(t0, &key).unwrap();
        // A pure-prediction delta two ticks later: 2 ticks x 16 quanta = 2 units along x.
        s.handle_snapshot(
            t0 + ms(66),
            &Snapshot {
                base_tick: 10,
                ..snap(12, 0)
            },
        )
        .unwrap();
        let me = s.entity(7).unwrap();
        assert_eq!(me.pos, Vec2::new(102.0, 10.0));
        assert!(
            (me.vel.x - 30.0).abs() < 1e-3,
            "16 quanta per tick at 30 Hz = 30 u/s"
        );
        // A delta against a tick we do not hold is refused and changes nothing.
        let before = s.stats();
        let err = s
            .handle_snapshot(
                t0,
                &Snapshot {
                    base_tick: 11,
                    ..snap(13, 0)
                },
            )
            .unwrap_err();
        assert_eq!(
            err,
            DeltaError::WrongBase {
                base_tick: 11,
                held: Some(12)
            }
        );
        assert_eq!(s.stats(), before);
        assert_eq!(s.world().tick, Some(12));
        assert_eq!(s.entities().count(), 1);
        // One avatar, id 7, tick 12: header 4 bytes + entity 1 + 1 + 16.
        assert_eq!(s.stats().naive_bytes, 22 + 22);
    }

    #[test]
    fn naive_size_matches_the_encoding_of_full_snapshots() {
        use tickcast_shared::{codec::encode_to_vec, EntityKind};
        let entities: Vec<QEntity> = [0u32, 250, 251, 65_535, 65_536, 70_000]
            .iter()
            .map(|&id| QEntity {
                id,
                kind: EntityKind::Npc,
                pos: [1, 2],
                vel: [3, 4],
                fields: Default::default(),
            })
            .collect();
        // Naive entities as the old full snapshots carried them: id, kind and four
        // f32, no game fields (the baseline deltas are measured against).
        let full: Vec<(u32, EntityKind, Vec2, Vec2)> = entities
            .iter()
            .map(|e| (e.id, e.kind, Vec2::ZERO, Vec2::ZERO))
            .collect();
        // The old full-snapshot message: variant, tick, seq, entity list.
        let bytes = encode_to_vec(&(1u32, 300u64, 42u32, &full)).unwrap();
        assert_eq!(
            naive_snapshot_bytes(&snap(300, 42), &entities),
            bytes.len() as u64
        );
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn input_seq_starts_at_one_and_increases() {
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        let a = s.next_input(t0, Vec2::X, 0);
        let b = s.next_input(t0, Vec2::Y, 3);
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_eq!(b.buttons, 3);
        assert_eq!(s.stats().inputs_sent, 2);
    }

    #[test]
    fn input_ack_latency_is_reported_once_per_seq() {
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        s.next_input(t0, Vec2::X, 0); // seq 1 at 0 ms
        s.next_input(t0 + ms(10), Vec2::X, 0); // seq 2 at 10 ms

        assert_eq!(
            s.handle_snapshot(t0 + ms(5), &snap(101, 0))
                .unwrap()
                .input_ack,
            None
        );
        assert_eq!(
            s.handle_snapshot(t0 + ms(40), &snap(102, 1))
                .unwrap()
                .input_ack,
            Some(ms(40))
        );
        // Same seq again: already measured.
        assert_eq!(
            s.handle_snapshot(t0 + ms(70), &snap(103, 1))
                .unwrap()
                .input_ack,
            None
        );
        assert_eq!(
            s.handle_snapshot(t0 + ms(100), &snap(104, 2))
                .unwrap()
                .input_ack,
            Some(ms(90))
        );
        assert_eq!(s.acked_seq(), 2);
    }

    #[test]
    fn ack_of_unsent_or_forgotten_input_is_not_measured() {
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        // Never sent: ignored, and does not move the ack forward.
        assert_eq!(s.handle_snapshot(t0, &snap(1, 5)).unwrap().input_ack, None);
        assert_eq!(s.acked_seq(), 0);

        for i in 0..(INPUT_HISTORY as u64 + 10) {
            s.next_input(t0 + ms(i), Vec2::X, 0);
        }
        // Seq 3 was overwritten by seq 3 + 256 in the ring.
        assert_eq!(
            s.handle_snapshot(t0 + ms(1000), &snap(2, 3))
                .unwrap()
                .input_ack,
            None
        );
        assert_eq!(s.acked_seq(), 3);
        // The newest is still there.
        let newest = INPUT_HISTORY as u32 + 10;
        assert_eq!(
            s.handle_snapshot(t0 + ms(1000), &snap(3, newest))
                .unwrap()
                .input_ack,
            Some(ms(1000 - (newest as u64 - 1)))
        );
    }

    #[test]
    fn snapshot_gap_and_missed_ticks() {
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        let first = s.handle_snapshot(t0, &snap(100, 0)).unwrap();
        assert_eq!((first.gap, first.missed), (None, 0));

        let second = s.handle_snapshot(t0 + ms(33), &snap(101, 0)).unwrap();
        assert_eq!((second.gap, second.missed), (Some(ms(33)), 0));

        // Ticks 102..=104 were skipped by the server.
        let third = s.handle_snapshot(t0 + ms(166), &snap(105, 0)).unwrap();
        assert_eq!((third.gap, third.missed), (Some(ms(133)), 3));
        assert_eq!(s.last_snapshot_metrics(), Some(third));

        // A stale tick counts as stale, not as missed, and does not move last_tick back.
        let stale = s.handle_snapshot(t0 + ms(170), &snap(104, 0)).unwrap();
        assert_eq!(stale.missed, 0);
        assert_eq!(s.last_tick(), Some(105));

        let st = s.stats();
        assert_eq!(st.snapshots_received, 4);
        assert_eq!(st.snapshots_missed, 3);
        assert_eq!(st.snapshots_stale, 1);
    }

    #[test]
    fn rtt_from_pong_nonce() {
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        let ping = s.next_ping(t0 + ms(1500));
        assert_eq!(ping.nonce, 1_500_000);
        let rtt = s.handle_pong(
            t0 + ms(1512),
            &Pong {
                nonce: ping.nonce,
                server_tick: 0,
            },
        );
        assert_eq!(rtt, Some(ms(12)));
        assert_eq!(s.last_rtt(), Some(ms(12)));

        // A nonce from the future is not ours.
        let bogus = Pong {
            nonce: u64::MAX,
            server_tick: 0,
        };
        assert_eq!(s.handle_pong(t0 + ms(2000), &bogus), None);
        assert_eq!(s.stats().pongs_received, 1);
        assert_eq!(s.stats().pings_sent, 1);
    }

    #[test]
    fn a_resume_restarts_what_is_per_connection_and_keeps_the_totals() {
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        s.handle_snapshot(t0, &snap(100, 0)).unwrap();
        for i in 0..3 {
            s.next_input(t0 + ms(i), Vec2::X, 0);
        }
        s.handle_snapshot(t0 + ms(33), &snap(101, 2)).unwrap();
        s.handle_pong(
            t0 + ms(40),
            &Pong {
                nonce: 30_000,
                server_tick: 0,
            },
        );
        assert_eq!(s.acked_seq(), 2);
        let before = s.stats();

        let mut again = welcome();
        again.server_tick = 190;
        s.resume(again);
        assert_eq!(s.welcome().server_tick, 190);
        assert_eq!(s.acked_seq(), 0);
        assert_eq!(s.last_snapshot_metrics(), None);
        assert_eq!(s.last_rtt(), Some(ms(10)), "the path's rtt is kept");
        assert_eq!(s.world().tick, Some(101), "kept until the keyframe");
        // Seq 1 again; an ack of the old seq 3 (never sent on this connection) is not trusted.
        assert_eq!(s.next_input(t0 + ms(3000), Vec2::Y, 0).seq, 1);
        let first = s.handle_snapshot(t0 + ms(3010), &snap(200, 0)).unwrap();
        assert_eq!((first.gap, first.missed, first.input_ack), (None, 0, None));
        let second = s.handle_snapshot(t0 + ms(3043), &snap(201, 1)).unwrap();
        assert_eq!(second.input_ack, Some(ms(43)));
        assert_eq!(second.missed, 0);
        assert_eq!(s.acked_seq(), 1);

        let after = s.stats();
        assert_eq!(after.reconnects, 1);
        assert_eq!(after.inputs_sent, before.inputs_sent + 1);
        assert_eq!(after.snapshots_received, before.snapshots_received + 2);
        assert_eq!(after.snapshots_missed, 0);
        assert_eq!(after.pongs_received, 1);
    }

    #[test]
    fn a_header_counts_and_measures_what_the_whole_snapshot_does() {
        let t0 = Instant::now();
        let mut full = Session::new(welcome(), t0);
        let mut peek = Session::new(welcome(), t0);
        for s in [&mut full, &mut peek] {
            for n in 0..3 {
                s.next_input(t0 + ms(n), Vec2::X, 0);
            }
        }
        // A keyframe, deltas with acks, skipped ticks and a stale one.
        let stream = [
            (10, 0, 0),
            (11, 10, 1),
            (14, 11, 1),
            (13, 11, 3),
            (15, 14, 2),
            (16, 0, 3),
        ];
        for (k, (tick, base_tick, seq)) in stream.into_iter().enumerate() {
            let at = t0 + ms(40 * k as u64);
            let snapshot = Snapshot {
                base_tick,
                ..snap(tick, seq)
            };
            let header = SnapshotHeader {
                tick,
                base_tick,
                last_input_seq: seq,
                len: 3,
            };
            // The delta against 11 at tick 13 is older than what the world holds: only
            // the full path refuses it, and its metrics are then the header's alone.
            match full.handle_snapshot(at, &snapshot) {
                Ok(metrics) => assert_eq!(peek.handle_snapshot_header(at, &header), metrics),
                Err(e) => {
                    assert_eq!(tick, 13, "{e:?}");
                    peek.handle_snapshot_header(at, &header);
                    full.account(at, &header);
                }
            }
            assert_eq!(peek.last_snapshot_metrics(), full.last_snapshot_metrics());
        }
        let (f, p) = (full.stats(), peek.stats());
        assert_eq!(
            SessionStats {
                naive_bytes: 0,
                ..f
            },
            p
        );
        assert_eq!(
            (
                p.snapshots_received,
                p.keyframes_received,
                p.snapshots_missed,
                p.snapshots_stale
            ),
            (6, 2, 2, 1)
        );
        assert_eq!((peek.acked_seq(), peek.last_tick()), (3, Some(16)));
        assert!(peek.world().entities.is_empty() && peek.world().tick.is_none());
    }

    #[test]
    fn bytes_are_counted() {
        let t0 = Instant::now();
        let mut s = Session::new(welcome(), t0);
        s.handle_bytes(100);
        s.handle_bytes(23);
        assert_eq!(s.stats().bytes_received, 123);
        assert_eq!(s.stats().messages_received, 2);
        assert_eq!(s.welcome().entity_id, 7);
    }
}
