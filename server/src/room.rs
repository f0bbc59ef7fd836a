//! One game session, I/O-free: players, their latest inputs, the tick counter, and the
//! snapshot bytes each tick produces.
//!
//! The room is driven from outside ([`crate::rooms`] on a timer, tests and benches by
//! hand): [`Room::join`] and [`Room::leave`] between ticks, [`Room::tick`] at each
//! deadline. A tick applies each player's newest input, steps the game by exactly one
//! period, quantises the world **once** into an immutable [`WorldFrame`], and offers
//! every player a [`PlayerSnapshot`] that shares it. Turning the frame into each
//! player's bytes is the writer's job ([`crate::snapshot`]), off the tick.
//!
//! Inputs reach the room through an [`InputInbox`] per player that the connection's
//! reader writes and the tick drains: latest-wins, so a flood of inputs replaces one
//! value instead of growing a queue.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickcast_shared::codec::encode_to_vec;
use tickcast_shared::delta::{QEntity, Quantizer};
use tickcast_shared::message::MAX_FIELD_NAME_BYTES;
use tickcast_shared::{
    DisconnectReason, EntityState, FieldSpec, GameEvent, Input, ServerMsg, SessionToken, Welcome,
    MAX_FIELDS, PROTOCOL_VERSION,
};
use tracing::warn;

pub use crate::game::PlayerId;
use crate::game::{EntityId, Events, Game, MessageRefused, Recipients, MAX_EVENT_BYTES};
use crate::record::{format::world_hash, Record, Recorder};
pub use crate::snapshot::{PlayerSnapshot, WorldFrame};

/// The newest not-yet-applied input of one player, shared between its reader and the room.
#[derive(Debug, Default)]
pub struct InputInbox {
    latest: Mutex<Option<Input>>,
}

impl InputInbox {
    /// Stores `input`, replacing any input the room has not applied yet.
    pub fn put(&self, input: Input) {
        // A poisoned lock only means a panic elsewhere while holding it; the Option is
        // still a valid value, so keep going rather than take the connection down.
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(input);
    }

    /// Takes the newest input, if one arrived since the last call.
    pub fn take(&self) -> Option<Input> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Where a room hands what one player must receive: the latest-wins snapshot its
/// writer reads, and the game's reliable events. Implemented by the async shell
/// ([`crate::slot`]), the stepper and tests.
pub trait PlayerOutlet {
    /// Replaces whatever snapshot the player has not sent yet with `snapshot`. An
    /// outlet may write it to the player's socket right away, in the tick.
    fn offer(&self, snapshot: PlayerSnapshot);

    /// [`PlayerOutlet::offer`], leaving the write to the player's own writer task even
    /// when the outlet could write at once: past [`INLINE_WRITES_PER_TICK`] players the
    /// room stops writing in the tick, so that a very big room's writes spread over the
    /// runtime's threads instead of stretching its tick.
    fn offer_queued(&self, snapshot: PlayerSnapshot) {
        self.offer(snapshot);
    }

    /// Queues a game event (an encoded `ServerMsg::Event`) behind the ones not yet
    /// sent. The queue is bounded: overflowing it disconnects the player with
    /// `SlowConsumer`, the outlet's own business.
    fn event(&self, message: Bytes);

    /// Ends the player's connection with `reason` (a game refused its message).
    fn disconnect(&self, reason: DisconnectReason);
}

/// How many players' snapshots a room may write itself, in the tick, each tick; the
/// rest go to their writer tasks ([`PlayerOutlet::offer_queued`]). A small write to a
/// socket costs about 7 us of kernel time on the reference machine
/// (docs/PERFORMANCE.md, "Fan-out"), so this bounds the tick's own writing to about
/// 7 ms, a fifth of a 30 Hz tick, while rooms up to this size pay no task wake-ups.
pub const INLINE_WRITES_PER_TICK: usize = 1024;

/// A join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The room has `max_players` players already.
    #[error("room is full")]
    Full,
    /// No player of this room holds that session token (unknown, or its grace is over).
    #[error("session unknown or expired")]
    UnknownSession,
}

/// Who is arriving in a room: the name it plays under and, when the server requires
/// player authentication, the verified identity (the token's `sub`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrival {
    /// The display name: `Hello.name`, or the token's `name` claim.
    pub name: String,
    /// The token's `sub`; `None` on a server without player authentication.
    pub identity: Option<String>,
}

/// What a player gets on joining: the `Welcome` to send and the inbox for its inputs.
#[derive(Debug)]
pub struct Joined {
    /// The player's id in the room.
    pub player_id: PlayerId,
    /// The message to send back.
    pub welcome: Welcome,
    /// Where the player's reader stores its inputs.
    pub inbox: Arc<InputInbox>,
    /// Which connection of the player this is; pass it back to leave or detach.
    pub generation: u32,
    /// True when this join took over the seat of a player with the same identity,
    /// rather than adding a player.
    pub took_over: bool,
}

#[derive(Debug)]
struct PlayerSlot<O> {
    entity: EntityId,
    inbox: Arc<InputInbox>,
    last_applied_seq: u32,
    /// Where snapshots go; `None` while the player is disconnected within its grace.
    outlet: Option<O>,
    token: SessionToken,
    /// The verified identity the player joined with, if the server requires one: one
    /// identity holds one seat, and only it may resume the seat.
    identity: Option<String>,
    /// The name it plays under.
    name: String,
    /// Bumped on every resume or takeover, so a leave from an older connection is ignored.
    generation: u32,
    /// When the connection dropped, if it did.
    detached_at: Option<Instant>,
}

/// Counters of one tick, for metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// The tick just produced.
    pub tick: u64,
    /// Inputs applied in this tick.
    pub inputs_applied: u32,
    /// Entities in the frame.
    pub entities: usize,
    /// Players offered a snapshot.
    pub players: usize,
}

/// One game session.
#[derive(Debug)]
pub struct Room<G, O> {
    game: G,
    /// The name of the game, for `Welcome`.
    game_name: String,
    /// The game's declared entity fields, asked once.
    fields: Vec<FieldSpec>,
    events: Events,
    tick: u64,
    tick_rate: u16,
    dt: f32,
    max_players: usize,
    next_player_id: PlayerId,
    players: BTreeMap<PlayerId, PlayerSlot<O>>,
    quantizer: Quantizer,
    entities: Vec<EntityState>,
    /// With `--record`: where what decides the game goes. `None` costs one branch per
    /// hook.
    recorder: Option<Recorder>,
}

impl<G: Game, O: PlayerOutlet> Room<G, O> {
    /// A room running `game` at `tick_rate` ticks per second.
    pub fn new(game: G, tick_rate: u16, max_players: usize) -> Self {
        let quantizer = Quantizer::new(game.pos_quantum(), tick_rate);
        let mut fields = game.fields();
        if fields.len() > MAX_FIELDS {
            warn!(
                declared = fields.len(),
                max = MAX_FIELDS,
                "the game declares too many entity fields; the rest are not sent"
            );
            fields.truncate(MAX_FIELDS);
        }
        for (i, field) in fields.iter_mut().enumerate() {
            if field.name.is_empty() || field.name.len() > MAX_FIELD_NAME_BYTES {
                warn!(name = %field.name, "an entity field name must be 1 to {MAX_FIELD_NAME_BYTES} bytes");
                field.name = fit_name(&field.name, i);
            }
        }
        Self {
            game,
            game_name: "game".to_owned(),
            fields,
            events: Events::default(),
            tick: 0,
            tick_rate,
            // The same value the quantizer divides by, so snapped motion predicts exactly.
            dt: quantizer.dt,
            max_players,
            next_player_id: 1,
            players: BTreeMap::new(),
            quantizer,
            entities: Vec::new(),
            recorder: None,
        }
    }

    /// Records everything that decides the game to `recorder` from now on: call it
    /// before the first join, so that a replay can start from the same fresh game.
    pub fn recording(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    /// Names the game in every `Welcome` (the name it is registered under).
    pub fn named(mut self, name: &str) -> Self {
        self.game_name = name.to_owned();
        self
    }

    /// Adds a player with no name or identity, spawning its entity. `token` is the
    /// session secret the player can resume with (random bytes from the caller: the
    /// room has no randomness of its own).
    ///
    /// # Errors
    /// [`JoinError::Full`] when the room has `max_players` players (disconnected players
    /// within their grace still hold their seat).
    pub fn join(&mut self, outlet: O, token: SessionToken) -> Result<Joined, JoinError> {
        self.join_as(outlet, token, Arrival::default())
    }

    /// [`Room::join`] for `arrival`. When its identity already holds a seat here, the
    /// join takes that seat over instead of adding a player (so a room full of others
    /// does not refuse it): the same player, entity and session token on the new
    /// connection, and the older connection, if still attached, is closed with
    /// `Replaced`. `token` is then unused.
    ///
    /// # Errors
    /// As [`Room::join`].
    pub fn join_as(
        &mut self,
        outlet: O,
        token: SessionToken,
        arrival: Arrival,
    ) -> Result<Joined, JoinError> {
        let params = self.welcome_params();
        if let Some(identity) = arrival.identity.as_deref() {
            let seated = self
                .players
                .iter_mut()
                .find(|(_, slot)| slot.identity.as_deref() == Some(identity));
            if let Some((player_id, slot)) = seated {
                replace_connection(slot);
                slot.name = arrival.name;
                let mut joined = attach(slot, *player_id, outlet, params);
                joined.took_over = true;
                return Ok(joined);
            }
        }
        if self.players.len() >= self.max_players {
            return Err(JoinError::Full);
        }
        let player_id = self.next_player_id;
        self.next_player_id += 1;
        let entity = self.game.spawn_player(player_id);
        if let Some(recorder) = &mut self.recorder {
            recorder.record(Record::Join {
                tick: self.tick,
                player: player_id,
                entity,
                name: arrival.name.clone(),
            });
        }
        let slot = self.players.entry(player_id).or_insert(PlayerSlot {
            entity,
            inbox: Arc::default(),
            last_applied_seq: 0,
            outlet: None,
            token,
            identity: arrival.identity,
            name: arrival.name,
            generation: 0,
            detached_at: None,
        });
        Ok(attach(slot, player_id, outlet, params))
    }

    /// Takes a disconnected (or still connected) player back on a new connection: same
    /// player, entity and token; a fresh inbox, input sequence and snapshot stream.
    ///
    /// # Errors
    /// [`JoinError::UnknownSession`] if no player holds `token`.
    pub fn resume(&mut self, token: &SessionToken, outlet: O) -> Result<Joined, JoinError> {
        self.resume_as(token, outlet, Arrival::default())
    }

    /// [`Room::resume`] for `arrival`, which must have the identity the player joined
    /// with (none for none): a session token alone never takes over another identity's
    /// seat. The player's name becomes `arrival`'s. An identified player's older
    /// connection, if still attached, is closed with `Replaced`.
    ///
    /// # Errors
    /// [`JoinError::UnknownSession`] if no player holds `token`, or it holds it under
    /// another identity: the same answer, so that a guesser learns nothing.
    pub fn resume_as(
        &mut self,
        token: &SessionToken,
        outlet: O,
        arrival: Arrival,
    ) -> Result<Joined, JoinError> {
        let params = self.welcome_params();
        let (player_id, slot) = self
            .players
            .iter_mut()
            .find(|(_, slot)| slot.token == *token && slot.identity == arrival.identity)
            .ok_or(JoinError::UnknownSession)?;
        replace_connection(slot);
        slot.name = arrival.name;
        Ok(attach(slot, *player_id, outlet, params))
    }

    /// What every `Welcome` of this room says about the room itself.
    fn welcome_params(&self) -> WelcomeParams {
        WelcomeParams {
            tick_rate: self.tick_rate,
            server_tick: self.tick,
            world_size: self.game.world_size(),
            pos_quantum: self.quantizer.quantum,
            game: self.game_name.clone(),
            fields: self.fields.clone(),
        }
    }
    /// Removes a player and its entity, if `generation` is its current connection
    /// (a leave from a connection that was since replaced by a resume is ignored).
    /// Returns whether the player was removed.
    pub fn leave(&mut self, player: PlayerId, generation: u32) -> bool {
        match self.players.get(&player) {
            Some(slot) if slot.generation == generation => {
                if let Some(slot) = self.players.remove(&player) {
                    self.game.despawn_player(slot.entity);
                    self.record_leave(player);
                }
                true
            }
            _ => false,
        }
    }

    /// Marks a player disconnected without leaving: its avatar stays (and keeps its last
    /// input) until it resumes or [`Room::expire`] removes it.
    pub fn detach(&mut self, player: PlayerId, generation: u32, now: Instant) {
        if let Some(slot) = self.players.get_mut(&player) {
            if slot.generation == generation {
                slot.outlet = None;
                slot.detached_at = Some(now);
            }
        }
    }

    /// Removes the players disconnected for `grace` or longer; returns how many.
    pub fn expire(&mut self, now: Instant, grace: Duration) -> usize {
        let expired: Vec<PlayerId> = self
            .players
            .iter()
            .filter(|(_, s)| {
                s.detached_at
                    .is_some_and(|t| now.saturating_duration_since(t) >= grace)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            if let Some(slot) = self.players.remove(id) {
                self.game.despawn_player(slot.entity);
                self.record_leave(*id);
            }
        }
        expired.len()
    }

    fn record_leave(&mut self, player: PlayerId) {
        if let Some(recorder) = &mut self.recorder {
            recorder.record(Record::Leave {
                tick: self.tick,
                player,
            });
        }
    }

    /// Applies the newest inputs and steps the game by one period; records them when
    /// recording (the caller records the tick's hash).
    fn run_tick(&mut self) -> u32 {
        let mut applied = 0;
        for (player, slot) in &mut self.players {
            if let Some(input) = slot.inbox.take() {
                self.game.apply_input(slot.entity, &input);
                slot.last_applied_seq = input.seq;
                applied += 1;
                if let Some(recorder) = &mut self.recorder {
                    recorder.input(*player, &input);
                }
            }
        }
        self.game.step(self.dt, &mut self.events);
        self.tick += 1;
        self.deliver_events();
        applied
    }

    /// Applies the newest inputs and steps the game by one period, without building
    /// snapshots. Used alone for catch-up ticks, whose state no one needs to see.
    pub fn advance(&mut self) -> u32 {
        let applied = self.run_tick();
        if self.recorder.is_some() {
            // No frame is built for a catch-up tick: quantise here for the hash, exactly
            // as `broadcast` does.
            let hash = world_hash(self.quantized_world().iter());
            if let Some(recorder) = &mut self.recorder {
                recorder.tick(self.tick, hash);
            }
        }
        applied
    }

    /// Hands a reliable message from `player` to the game. A refusal disconnects that
    /// player with `GameMessageRefused`; events the game sent meanwhile go out at once.
    /// A message from a player the room no longer has is ignored.
    ///
    /// # Errors
    /// [`MessageRefused`] when the game refused it.
    pub fn message(&mut self, player: PlayerId, message: &[u8]) -> Result<(), MessageRefused> {
        let Some(slot) = self.players.get(&player) else {
            return Ok(());
        };
        if let Some(recorder) = &mut self.recorder {
            recorder.record(Record::Message {
                tick: self.tick,
                player,
                payload: message.to_vec(),
            });
        }
        let result = self
            .game
            .on_message(player, slot.entity, message, &mut self.events);
        if result.is_err() {
            if let Some(outlet) = &slot.outlet {
                outlet.disconnect(DisconnectReason::GameMessageRefused);
            }
        }
        self.deliver_events();
        result
    }

    /// Encodes each pending event once and queues it for its connected recipients.
    fn deliver_events(&mut self) {
        let Self {
            events, players, ..
        } = self;
        for (to, payload) in events.drain() {
            if payload.len() > MAX_EVENT_BYTES {
                warn!(
                    bytes = payload.len(),
                    max = MAX_EVENT_BYTES,
                    "game event too large; dropped"
                );
                continue;
            }
            let message = match encode_to_vec(&ServerMsg::Event(GameEvent { payload })) {
                Ok(bytes) => Bytes::from(bytes),
                Err(e) => {
                    warn!(error = %e, "game event did not encode; dropped");
                    continue;
                }
            };
            let send = |slot: &PlayerSlot<O>| {
                if let Some(outlet) = &slot.outlet {
                    outlet.event(message.clone());
                }
            };
            match to {
                Recipients::Player(p) => players.get(&p).into_iter().for_each(send),
                Recipients::Players(list) => {
                    list.iter().filter_map(|p| players.get(p)).for_each(send)
                }
                Recipients::All => players.values().for_each(send),
            }
        }
    }

    /// The game's current world, quantised as players are sent it.
    fn quantized_world(&mut self) -> Vec<QEntity> {
        self.entities.clear();
        self.game.write_state(&mut self.entities);
        self.entities
            .iter()
            .map(|e| self.quantizer.quantize(e))
            .collect()
    }

    /// Quantises the current world once into a frame and offers it to every player.
    pub fn broadcast(&mut self) -> Arc<WorldFrame> {
        let quantized = self.quantized_world();
        let frame = Arc::new(WorldFrame::new(self.tick, quantized));
        let outlets = self
            .players
            .values()
            .filter_map(|slot| slot.outlet.as_ref().map(|outlet| (slot, outlet)));
        for (i, (slot, outlet)) in outlets.enumerate() {
            let snapshot = PlayerSnapshot {
                frame: Arc::clone(&frame),
                last_input_seq: slot.last_applied_seq,
                entity: slot.entity,
            };
            if i < INLINE_WRITES_PER_TICK {
                outlet.offer(snapshot);
            } else {
                outlet.offer_queued(snapshot);
            }
        }
        frame
    }

    /// One full tick: [`Room::advance`] then [`Room::broadcast`].
    pub fn tick(&mut self) -> TickReport {
        let inputs_applied = self.run_tick();
        let frame = self.broadcast();
        if let Some(recorder) = &mut self.recorder {
            recorder.tick(self.tick, world_hash(frame.entities.iter()));
        }
        TickReport {
            tick: self.tick,
            inputs_applied,
            entities: frame.entities.len(),
            players: self.players.len(),
        }
    }

    /// Ticks produced so far.
    pub fn current_tick(&self) -> u64 {
        self.tick
    }

    /// Entities in the world as last described by the game (after the last tick).
    pub fn world_entities(&self) -> usize {
        self.entities.len()
    }

    /// Players in the room.
    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// The game, for inspection.
    pub fn game(&self) -> &G {
        &self.game
    }

    /// The current connection generation of a player, if the room has it.
    pub fn generation_of(&self, player: PlayerId) -> Option<u32> {
        self.players.get(&player).map(|s| s.generation)
    }

    /// The entity a player controls.
    pub fn entity_of(&self, player: PlayerId) -> Option<EntityId> {
        self.players.get(&player).map(|s| s.entity)
    }

    /// The name a player plays under.
    pub fn name_of(&self, player: PlayerId) -> Option<&str> {
        self.players.get(&player).map(|s| s.name.as_str())
    }

    /// The names of the players, in the order they first joined.
    pub fn player_names(&self) -> Vec<String> {
        self.players.values().map(|s| s.name.clone()).collect()
    }
}

/// Closes an identified player's attached connection, because a newer one of the same
/// identity is taking the seat. An anonymous player's old connection is left as it was
/// (a resume only happens after the client lost it).
fn replace_connection<O: PlayerOutlet>(slot: &mut PlayerSlot<O>) {
    if slot.identity.is_some() {
        if let Some(old) = slot.outlet.take() {
            old.disconnect(DisconnectReason::Replaced);
        }
    }
}

/// A field name cut to [`MAX_FIELD_NAME_BYTES`] at a character boundary, or
/// `field<i>` for an empty one: what clients see of a game's over-long name.
fn fit_name(name: &str, index: usize) -> String {
    if name.is_empty() {
        return format!("field{index}");
    }
    let mut end = MAX_FIELD_NAME_BYTES.min(name.len());
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

/// The room's part of a `Welcome`, read before a player's slot is borrowed.
#[derive(Debug, Clone)]
struct WelcomeParams {
    tick_rate: u16,
    server_tick: u64,
    world_size: glam::Vec2,
    pos_quantum: f32,
    game: String,
    fields: Vec<FieldSpec>,
}

/// Connects `outlet` to a player's slot as its newest connection. Takes the slot
/// itself, found by the caller, so there is no second lookup that could miss.
fn attach<O>(
    slot: &mut PlayerSlot<O>,
    player_id: PlayerId,
    outlet: O,
    params: WelcomeParams,
) -> Joined {
    // Compared for equality only; wrapping keeps a peer that resumes forever harmless.
    slot.generation = slot.generation.wrapping_add(1);
    slot.outlet = Some(outlet);
    slot.detached_at = None;
    slot.last_applied_seq = 0;
    slot.inbox = Arc::default();
    let welcome = Welcome {
        protocol_version: PROTOCOL_VERSION,
        player_id,
        entity_id: slot.entity,
        tick_rate: params.tick_rate,
        server_tick: params.server_tick,
        world_size: params.world_size,
        session_token: slot.token,
        pos_quantum: params.pos_quantum,
        game: params.game,
        fields: params.fields,
    };
    Joined {
        player_id,
        welcome,
        inbox: Arc::clone(&slot.inbox),
        generation: slot.generation,
        took_over: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::game::{Arena, ArenaConfig};
    use glam::Vec2;
    use std::cell::RefCell;
    use std::rc::Rc;
    use tickcast_shared::EntityKind;

    /// Collects what a player is offered.
    #[derive(Clone, Default)]
    struct Sink(Rc<RefCell<Vec<PlayerSnapshot>>>);
    impl PlayerOutlet for Sink {
        fn offer(&self, s: PlayerSnapshot) {
            self.0.borrow_mut().push(s);
        }
        fn event(&self, _: Bytes) {}
        fn disconnect(&self, _: DisconnectReason) {}
    }

    fn room(npcs: u32, max_players: usize) -> Room<Arena, Sink> {
        Room::new(
            Arena::new(ArenaConfig {
                npcs,
                ..Default::default()
            }),
            30,
            max_players,
        )
    }

    #[test]
    fn every_player_gets_the_same_frame_and_its_own_ack() {
        let mut r = room(10, 8);
        let (a, b) = (Sink::default(), Sink::default());
        let ja = r.join(a.clone(), [7; 16]).unwrap();
        let jb = r.join(b.clone(), [7; 16]).unwrap();
        assert_eq!(ja.welcome.entity_id, 10);
        assert_eq!(jb.welcome.entity_id, 11);
        assert_eq!(ja.welcome.pos_quantum, 1.0 / 16.0);
        ja.inbox.put(Input {
            seq: 7,
            movement: Vec2::X,
            buttons: 0,
            payload: Default::default(),
        });
        let report = r.tick();
        assert_eq!(
            (
                report.tick,
                report.inputs_applied,
                report.players,
                report.entities
            ),
            (1, 1, 2, 12)
        );
        let (sa, sb) = (a.0.borrow()[0].clone(), b.0.borrow()[0].clone());
        // Quantised once: both players share the same frame.
        assert!(Arc::ptr_eq(&sa.frame, &sb.frame));
        assert_eq!((sa.last_input_seq, sb.last_input_seq), (7, 0));
        assert_eq!((sa.entity, sb.entity), (10, 11));
        let f = &sa.frame;
        assert_eq!(f.tick, 1);
        assert_eq!(
            f.entities
                .iter()
                .filter(|e| e.kind == EntityKind::Avatar)
                .count(),
            2
        );
        assert!(
            f.entities.windows(2).all(|w| w[0].id < w[1].id),
            "sorted by id"
        );
    }

    #[test]
    fn latest_input_wins_and_persists_between_inputs() {
        let mut r = room(0, 8);
        let sink = Sink::default();
        let j = r.join(sink.clone(), [7; 16]).unwrap();
        let start = r.game().position(j.welcome.entity_id).unwrap();
        // Three inputs before one tick: only the last (+y) counts.
        j.inbox.put(Input {
            seq: 1,
            movement: Vec2::X,
            buttons: 0,
            payload: Default::default(),
        });
        j.inbox.put(Input {
            seq: 2,
            movement: -Vec2::X,
            buttons: 0,
            payload: Default::default(),
        });
        j.inbox.put(Input {
            seq: 3,
            movement: Vec2::Y,
            buttons: 0,
            payload: Default::default(),
        });
        for _ in 0..3 {
            r.tick();
        }
        let pos = r.game().position(j.welcome.entity_id).unwrap();
        let moved = pos - start;
        let expected_y = (1000.0 - start.y).min(10.0); // 3 ticks at 100 u/s of 1/30 s
        assert!(
            moved.x.abs() < 1e-3 && (moved.y - expected_y).abs() <= 3.0 / 16.0,
            "{moved}"
        );
        assert!(sink.0.borrow().iter().all(|s| s.last_input_seq == 3));
    }

    #[test]
    fn full_room_refuses_and_leave_frees_a_slot() {
        let mut r = room(5, 2);
        let a = r.join(Sink::default(), [7; 16]).unwrap();
        r.join(Sink::default(), [7; 16]).unwrap();
        assert_eq!(
            r.join(Sink::default(), [7; 16]).unwrap_err(),
            JoinError::Full
        );
        assert!(r.leave(a.player_id, a.generation));
        assert!(!r.leave(a.player_id, a.generation), "twice is harmless");
        assert_eq!(r.player_count(), 1);
        let c = r.join(Sink::default(), [7; 16]).unwrap();
        assert_ne!(c.player_id, a.player_id, "player ids are never reused");
        assert_eq!(r.tick().entities, 7);
    }

    #[test]
    fn advance_skips_snapshots_but_keeps_ticking() {
        let mut r = room(5, 2);
        let sink = Sink::default();
        r.join(sink.clone(), [7; 16]).unwrap();
        r.advance();
        r.advance();
        r.tick();
        let offered = sink.0.borrow();
        assert_eq!(offered.len(), 1);
        assert_eq!(offered[0].frame.tick, 3);
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;
    use crate::game::{Arena, ArenaConfig};

    struct Nowhere;
    impl PlayerOutlet for Nowhere {
        fn offer(&self, _: PlayerSnapshot) {}
        fn event(&self, _: Bytes) {}
        fn disconnect(&self, _: DisconnectReason) {}
    }

    #[test]
    fn a_detached_player_resumes_within_the_grace_and_expires_after_it() {
        let mut r: Room<Arena, Nowhere> = Room::new(
            Arena::new(ArenaConfig {
                npcs: 1,
                ..Default::default()
            }),
            30,
            4,
        );
        let t0 = Instant::now();
        let a = r.join(Nowhere, [1; 16]).unwrap();
        r.detach(a.player_id, a.generation, t0);
        assert_eq!(
            r.expire(t0 + Duration::from_millis(900), Duration::from_secs(1)),
            0
        );
        let back = r.resume(&[1; 16], Nowhere).unwrap();
        assert_eq!(
            (back.player_id, back.welcome.entity_id),
            (a.player_id, a.welcome.entity_id)
        );
        assert_eq!(back.generation, a.generation + 1);
        // The old connection's late leave is ignored: it is not the player's connection now.
        assert!(!r.leave(a.player_id, a.generation));
        assert_eq!(r.player_count(), 1);
        // Resumed, then dropped again: gone once the grace is over.
        r.detach(back.player_id, back.generation, t0);
        assert_eq!(
            r.expire(t0 + Duration::from_secs(1), Duration::from_secs(1)),
            1
        );
        assert_eq!(r.player_count(), 0);
        assert_eq!(
            r.resume(&[1; 16], Nowhere).unwrap_err(),
            JoinError::UnknownSession
        );
        assert_eq!(
            r.resume(&[2; 16], Nowhere).unwrap_err(),
            JoinError::UnknownSession
        );
    }

    /// Records the disconnect a room orders.
    #[derive(Clone, Default)]
    struct Ear(std::rc::Rc<std::cell::Cell<Option<DisconnectReason>>>);
    impl PlayerOutlet for Ear {
        fn offer(&self, _: PlayerSnapshot) {}
        fn event(&self, _: Bytes) {}
        fn disconnect(&self, reason: DisconnectReason) {
            self.0.set(Some(reason));
        }
    }

    fn who(name: &str, sub: Option<&str>) -> Arrival {
        Arrival {
            name: name.into(),
            identity: sub.map(Into::into),
        }
    }

    fn arena_room<O: PlayerOutlet>(max_players: usize) -> Room<Arena, O> {
        Room::new(Arena::new(ArenaConfig::default()), 30, max_players)
    }

    #[test]
    fn the_same_identity_takes_its_seat_over_even_in_a_full_room() {
        let mut r = arena_room::<Ear>(2);
        let first = Ear::default();
        let a = r
            .join_as(first.clone(), [1; 16], who("ada", Some("s-1")))
            .unwrap();
        r.join_as(Ear::default(), [2; 16], who("bob", Some("s-2")))
            .unwrap();
        let second = Ear::default();
        let b = r
            .join_as(second.clone(), [3; 16], who("Ada L.", Some("s-1")))
            .unwrap();
        assert!(b.took_over && !a.took_over);
        assert_eq!(
            (b.player_id, b.welcome.entity_id, b.welcome.session_token),
            (a.player_id, a.welcome.entity_id, [1; 16])
        );
        assert_eq!(b.generation, a.generation + 1);
        assert_eq!(first.0.get(), Some(DisconnectReason::Replaced));
        assert_eq!(second.0.get(), None);
        assert_eq!(r.player_names(), ["Ada L.", "bob"]);
        // The replaced connection's late leave does not remove the new one.
        assert!(!r.leave(a.player_id, a.generation));
        assert_eq!(r.player_count(), 2);
        // A new identity still finds the room full.
        assert_eq!(
            r.join_as(Ear::default(), [4; 16], who("cy", Some("s-3")))
                .unwrap_err(),
            JoinError::Full
        );
        // Anonymous joins never take a seat over.
        let mut open = arena_room::<Ear>(4);
        open.join_as(Ear::default(), [1; 16], who("x", None))
            .unwrap();
        let again = open
            .join_as(Ear::default(), [2; 16], who("x", None))
            .unwrap();
        assert!(!again.took_over);
        assert_eq!(open.player_count(), 2);
    }

    #[test]
    fn a_detached_seat_is_taken_over_without_a_close() {
        let mut r = arena_room::<Ear>(2);
        let first = Ear::default();
        let a = r
            .join_as(first.clone(), [1; 16], who("ada", Some("s-1")))
            .unwrap();
        r.detach(a.player_id, a.generation, Instant::now());
        let b = r
            .join_as(Ear::default(), [9; 16], who("ada", Some("s-1")))
            .unwrap();
        assert_eq!(
            (b.player_id, b.welcome.session_token),
            (a.player_id, [1; 16])
        );
        assert_eq!(first.0.get(), None, "nothing attached to close");
        // Attached again: the grace no longer runs out on it.
        assert_eq!(
            r.expire(Instant::now() + Duration::from_secs(60), Duration::ZERO),
            0
        );
    }

    #[test]
    fn only_the_same_identity_resumes_a_session() {
        let mut r = arena_room::<Ear>(4);
        let first = Ear::default();
        let a = r
            .join_as(first.clone(), [1; 16], who("ada", Some("s-1")))
            .unwrap();
        let anon = r
            .join_as(Ear::default(), [2; 16], who("bob", None))
            .unwrap();
        for stranger in [who("ada", Some("s-2")), who("ada", None)] {
            assert_eq!(
                r.resume_as(&[1; 16], Ear::default(), stranger).unwrap_err(),
                JoinError::UnknownSession
            );
        }
        assert_eq!(
            r.resume_as(&[2; 16], Ear::default(), who("bob", Some("s-2")))
                .unwrap_err(),
            JoinError::UnknownSession
        );
        assert_eq!(first.0.get(), None, "a refused resume closes nothing");
        let back = r
            .resume_as(&[1; 16], Ear::default(), who("ada", Some("s-1")))
            .unwrap();
        assert_eq!(back.player_id, a.player_id);
        assert_eq!(first.0.get(), Some(DisconnectReason::Replaced));
        let bob = r
            .resume_as(&[2; 16], Ear::default(), who("bob", None))
            .unwrap();
        assert_eq!(bob.player_id, anon.player_id);
    }

    #[test]
    fn field_names_are_fitted_to_the_wire_limit() {
        assert_eq!(fit_name("", 3), "field3");
        assert_eq!(fit_name("score", 0), "score");
        let long = "é".repeat(20); // 40 bytes
        let fitted = fit_name(&long, 0);
        assert_eq!(fitted.len(), 32);
        assert_eq!(fitted, "é".repeat(16));
    }

    /// Counts how each snapshot was offered.
    #[derive(Clone, Default)]
    struct Tally(std::rc::Rc<std::cell::Cell<(u32, u32)>>);
    impl PlayerOutlet for Tally {
        fn offer(&self, _: PlayerSnapshot) {
            let (inline, queued) = self.0.get();
            self.0.set((inline + 1, queued));
        }
        fn offer_queued(&self, _: PlayerSnapshot) {
            let (inline, queued) = self.0.get();
            self.0.set((inline, queued + 1));
        }
        fn event(&self, _: Bytes) {}
        fn disconnect(&self, _: DisconnectReason) {}
    }

    #[test]
    fn past_the_inline_limit_snapshots_are_left_to_the_writers() {
        let players = INLINE_WRITES_PER_TICK + 5;
        let mut r = arena_room::<Tally>(players);
        let tally = Tally::default();
        for _ in 0..players {
            r.join(tally.clone(), [3; 16]).unwrap();
        }
        r.tick();
        assert_eq!(tally.0.get(), (INLINE_WRITES_PER_TICK as u32, 5));
    }
}
