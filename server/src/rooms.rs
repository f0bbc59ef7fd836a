//! The room registry and each room's tick task.
//!
//! Every room runs in its own task, so rooms tick independently on all cores and a slow
//! room delays only itself. The task owns the [`Room`]: nothing else touches the game
//! state. Connections talk to it through an unbounded command channel (join, resume,
//! leave, detach); it is bounded in practice because each connection sends at most one
//! join and one leave, and connections are capped by `--max-connections`.
//!
//! Rooms come from three places: a WebSocket join naming a room that does not exist
//! (created with the server's default options), `POST /rooms` (options of its own), and
//! `POST /matchmake` (the fullest public room with space, else a new one). A matchmade
//! seat is *reserved* until its ticket is used or expires, so concurrent matchmaking
//! never overfills a room.
//!
//! A room with no players for `--room-idle-timeout` removes itself from the registry
//! and ends. A join that raced that removal finds the command channel closed and asks
//! the registry again, which creates a fresh room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tickcast_shared::SessionToken;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::cluster::node::Event as DirectoryEvent;
use crate::config::Config;
use crate::game::{Game, GameOptions, Games, UnknownGame};
use crate::metrics::{Metrics, RoomMetrics};
use crate::room::{Arrival, JoinError, Joined, PlayerId, Room};
use crate::schedule::TickClock;
use crate::slot::SlotSender;

/// How a room is set up.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomOptions {
    /// The game it runs: a name registered in the server's [`Games`].
    pub game: String,
    /// Seats in the room.
    pub max_players: usize,
    /// Ticks per second.
    pub tick_rate: u16,
    /// NPCs in its Arena.
    pub npcs: u32,
    /// Private rooms are not listed and not matchmade; they are joined by id.
    pub private: bool,
    /// Area of interest in world units (0: the whole world).
    pub view_radius: f32,
}

impl RoomOptions {
    /// The server's defaults (`--game`, `--max-players`, `--tick-rate`, `--npcs`,
    /// `--view-radius`), public.
    pub fn defaults(config: &Config) -> Self {
        Self {
            game: config.game.clone(),
            view_radius: config.view_radius,
            max_players: config.max_players,
            tick_rate: config.tick_rate,
            npcs: config.npcs,
            private: false,
        }
    }
}

/// A room as the HTTP API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoomInfo {
    /// Its id, also its name in `/ws?room=`.
    pub id: String,
    /// The game it runs.
    pub game: String,
    /// Players in it (disconnected ones within their reconnect grace included).
    pub players: usize,
    /// Seats.
    pub capacity: usize,
    /// Ticks per second.
    pub tick_rate: u16,
    /// NPCs.
    pub npcs: u32,
    /// Not listed, not matchmade.
    pub private: bool,
    /// Area of interest in world units (0: the whole world).
    pub view_radius: f32,
    /// Seconds since it was created.
    pub age_s: f64,
    /// The names its players play under, in the order they joined: `Hello.name`, or
    /// the player token's `name` claim. Shown by `GET /rooms/{id}` (and the answer to
    /// `POST /rooms`), not in the list of rooms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub player_names: Option<Vec<String>>,
}

/// What a connection asks of its room.
#[derive(Debug)]
enum Command {
    Join {
        outlet: SlotSender,
        token: SessionToken,
        arrival: Arrival,
        reply: oneshot::Sender<Result<Joined, JoinError>>,
    },
    Resume {
        outlet: SlotSender,
        token: SessionToken,
        arrival: Arrival,
        reply: oneshot::Sender<Result<Joined, JoinError>>,
    },
    Leave {
        player: PlayerId,
        generation: u32,
    },
    Detach {
        player: PlayerId,
        generation: u32,
    },
    Message {
        player: PlayerId,
        generation: u32,
        payload: Vec<u8>,
    },
    Close,
}

/// A cheap, clonable reference to a running room.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    name: Arc<str>,
    options: RoomOptions,
    created: Instant,
    commands: mpsc::UnboundedSender<Command>,
    players: Arc<AtomicUsize>,
    /// The players' names, as of the room's last join, leave or expiry.
    names: Arc<Mutex<Vec<String>>>,
    reserved: Arc<AtomicUsize>,
    tick: Arc<AtomicU64>,
    closed: CancellationToken,
}

impl RoomHandle {
    /// The room's name (its id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it is set up.
    pub fn options(&self) -> &RoomOptions {
        &self.options
    }

    /// Players in the room, as of its last join, leave or expiry.
    pub fn player_count(&self) -> usize {
        self.players.load(Relaxed)
    }

    /// Seats held by matchmaking tickets not used yet.
    pub fn reserved(&self) -> usize {
        self.reserved.load(Relaxed)
    }

    /// True when a join without a ticket would find a free seat.
    pub fn has_space(&self) -> bool {
        self.player_count() + self.reserved() < self.options.max_players
    }

    /// The room's tick counter, as of its last tick.
    pub fn current_tick(&self) -> u64 {
        self.tick.load(Relaxed)
    }

    /// Cancelled when the room ends for any reason other than server shutdown, so its
    /// players' connections close with `RoomClosed` instead of waiting for snapshots.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Tells the room a player left for good. Never fails: a room that has ended has no
    /// players.
    pub fn leave(&self, player: PlayerId, generation: u32) {
        let _ = self.commands.send(Command::Leave { player, generation });
    }

    /// Hands a player's game message to the room's game (a refusal closes the player
    /// through its outlet). Never fails: a room that has ended has no game.
    pub fn message(&self, player: PlayerId, generation: u32, payload: Vec<u8>) {
        let _ = self.commands.send(Command::Message {
            player,
            generation,
            payload,
        });
    }

    /// Tells the room a player's connection dropped: it may resume within the grace.
    pub fn detach(&self, player: PlayerId, generation: u32) {
        let _ = self.commands.send(Command::Detach { player, generation });
    }

    /// The API view of the room.
    pub fn info(&self) -> RoomInfo {
        RoomInfo {
            id: self.name.to_string(),
            game: self.options.game.clone(),
            players: self.player_count(),
            capacity: self.options.max_players,
            tick_rate: self.options.tick_rate,
            npcs: self.options.npcs,
            private: self.options.private,
            view_radius: self.options.view_radius,
            age_s: self.created.elapsed().as_secs_f64(),
            player_names: Some(self.names.lock().unwrap_or_else(|e| e.into_inner()).clone()),
        }
    }

    /// Reserves a seat for a matchmade player; released when the [`Seat`] is dropped.
    fn reserve(&self) -> Seat {
        self.reserved.fetch_add(1, Relaxed);
        Seat {
            room: self.clone(),
            release: None,
        }
    }
}

/// A reserved seat in a room. Dropping it (the ticket was used, or expired) frees it.
#[derive(Debug)]
pub struct Seat {
    room: RoomHandle,
    /// For a cluster ticket: where to release its reservation in the directory, and
    /// its id. Sent on drop, which [`Rooms::join`] does after the room answered, so
    /// the player's count reaches the directory before the reservation goes.
    release: Option<(mpsc::UnboundedSender<DirectoryEvent>, String)>,
}

impl Seat {
    /// The room the seat is in.
    pub fn room(&self) -> &RoomHandle {
        &self.room
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.room.reserved.fetch_sub(1, Relaxed);
        if let Some((events, rid)) = self.release.take() {
            let _ = events.send(DirectoryEvent::Release {
                room: self.room.name.to_string(),
                rid,
            });
        }
    }
}

/// Why a join or a room did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// The room has its maximum number of players.
    #[error("room is full")]
    Full,
    /// Creating a room would exceed `--max-rooms`.
    #[error("too many rooms")]
    TooManyRooms,
    /// The server is draining or shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
    /// A resume named a session the room does not have.
    #[error("session unknown or expired")]
    UnknownSession,
    /// A resume named a room that does not exist.
    #[error("no such room")]
    NoSuchRoom,
    /// The room's game is not registered.
    #[error("{0}")]
    UnknownGame(#[from] UnknownGame),
}

impl From<JoinError> for JoinRefused {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Full => Self::Full,
            JoinError::UnknownSession => Self::UnknownSession,
        }
    }
}

/// All rooms of this process.
#[derive(Debug)]
pub struct Rooms {
    map: Mutex<HashMap<Arc<str>, RoomHandle>>,
    config: Arc<Config>,
    games: Games,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    draining: CancellationToken,
    /// With `--redis`: where rooms announce their changes to the cluster directory.
    /// Sent without waiting, and under the registry lock for opens and closes, so a
    /// room's events reach the directory in the order the registry saw them.
    directory: std::sync::OnceLock<mpsc::UnboundedSender<DirectoryEvent>>,
}

impl Rooms {
    /// An empty registry; room tasks are spawned on `tasks` and stop on `shutdown`;
    /// no room is created or joined once `draining` is cancelled.
    pub fn new(
        config: Arc<Config>,
        games: Games,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
        draining: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::default(),
            config,
            games,
            metrics,
            tasks,
            shutdown,
            draining,
            directory: std::sync::OnceLock::new(),
        })
    }

    /// Announces every room change to the cluster directory through `events` from now
    /// on (once, before any room opens).
    pub fn connect_directory(&self, events: mpsc::UnboundedSender<DirectoryEvent>) {
        let _ = self.directory.set(events);
    }

    fn announce(&self, event: DirectoryEvent) {
        if let Some(events) = self.directory.get() {
            let _ = events.send(event);
        }
    }

    /// Announces `handle`'s player count, if it is still the registered room of its
    /// name (a room closing, or replaced by a new one of the same name, stays quiet).
    fn announce_players(&self, handle: &RoomHandle, players: usize) {
        if self.directory.get().is_none() {
            return;
        }
        let map = self.lock();
        if map
            .get(&handle.name)
            .is_some_and(|h| Arc::ptr_eq(&h.players, &handle.players))
        {
            self.announce(DirectoryEvent::Players {
                room: handle.name.to_string(),
                players: u32::try_from(players).unwrap_or(u32::MAX),
            });
        }
    }

    /// A seat for a player holding a cluster ticket with reservation `rid` for room
    /// `name` (created here with the default options if it is not running: it closed
    /// while the player was on the way). The directory already counted the seat; here
    /// it is held locally until the join, then its reservation is released.
    ///
    /// # Errors
    /// As [`Rooms::get_or_create`].
    pub fn seat_for_ticket(self: &Arc<Self>, name: &str, rid: String) -> Result<Seat, JoinRefused> {
        let handle = self.get_or_create(name)?;
        let mut seat = handle.reserve();
        seat.release = self.directory.get().map(|events| (events.clone(), rid));
        Ok(seat)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, RoomHandle>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn closed_for_business(&self) -> bool {
        self.draining.is_cancelled() || self.shutdown.is_cancelled()
    }

    /// The games rooms may run.
    pub fn games(&self) -> &Games {
        &self.games
    }

    /// The room called `name`, if it is running.
    pub fn get(&self, name: &str) -> Option<RoomHandle> {
        self.lock().get(name).cloned()
    }

    /// Number of rooms running.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no room is running.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The public rooms, sorted by id.
    pub fn list_public(&self) -> Vec<RoomInfo> {
        let mut rooms: Vec<RoomInfo> = self
            .lock()
            .values()
            .filter(|h| !h.options.private)
            .map(|h| RoomInfo {
                player_names: None,
                ..h.info()
            })
            .collect();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        rooms
    }

    /// The room called `name`, started with the default options if it is not running.
    ///
    /// # Errors
    /// [`JoinRefused::TooManyRooms`] at `--max-rooms`; [`JoinRefused::ShuttingDown`]
    /// while draining or shutting down.
    pub fn get_or_create(self: &Arc<Self>, name: &str) -> Result<RoomHandle, JoinRefused> {
        if self.closed_for_business() {
            return Err(JoinRefused::ShuttingDown);
        }
        let mut map = self.lock();
        if let Some(handle) = map.get(name) {
            return Ok(handle.clone());
        }
        self.spawn(
            &mut map,
            Arc::from(name),
            RoomOptions::defaults(&self.config),
        )
    }

    /// Creates a room with `options` under a new random id.
    ///
    /// # Errors
    /// As [`Rooms::get_or_create`].
    pub fn create(self: &Arc<Self>, options: RoomOptions) -> Result<RoomHandle, JoinRefused> {
        if self.closed_for_business() {
            return Err(JoinRefused::ShuttingDown);
        }
        let mut map = self.lock();
        let id = loop {
            let id = random_id();
            if !map.contains_key(id.as_str()) {
                break id;
            }
        };
        self.spawn(&mut map, Arc::from(id), options)
    }

    /// Reserves a seat in the fullest public room that has one, or in a new room with
    /// the default options.
    ///
    /// # Errors
    /// As [`Rooms::get_or_create`].
    pub fn matchmake(self: &Arc<Self>) -> Result<Seat, JoinRefused> {
        if self.closed_for_business() {
            return Err(JoinRefused::ShuttingDown);
        }
        let mut map = self.lock();
        let fullest = map
            .values()
            .filter(|h| !h.options.private && h.has_space())
            .max_by_key(|h| {
                (
                    h.player_count() + h.reserved(),
                    std::cmp::Reverse(h.name.clone()),
                )
            })
            .cloned();
        let room = match fullest {
            Some(room) => room,
            None => {
                let id = random_id();
                self.spawn(&mut map, Arc::from(id), RoomOptions::defaults(&self.config))?
            }
        };
        // Reserved under the registry lock, so two matchmakers cannot both take the last seat.
        Ok(room.reserve())
    }

    /// Ends a room: its players are closed with `RoomClosed`. Returns whether it existed.
    pub fn delete(&self, id: &str) -> bool {
        let mut map = self.lock();
        match map.remove(id) {
            Some(handle) => {
                self.announce(DirectoryEvent::Closed(id.to_owned()));
                let _ = handle.commands.send(Command::Close);
                true
            }
            None => false,
        }
    }

    /// Starts a room task. Called with the registry locked.
    fn spawn(
        self: &Arc<Self>,
        map: &mut HashMap<Arc<str>, RoomHandle>,
        name: Arc<str>,
        options: RoomOptions,
    ) -> Result<RoomHandle, JoinRefused> {
        if map.len() >= self.config.max_rooms {
            return Err(JoinRefused::TooManyRooms);
        }
        let game = self.games.create(
            &options.game,
            &GameOptions {
                npcs: options.npcs,
                seed: self.config.seed,
            },
        )?;
        let (commands, rx) = mpsc::unbounded_channel();
        let handle = RoomHandle {
            name: Arc::clone(&name),
            options: options.clone(),
            created: Instant::now(),
            commands,
            players: Arc::default(),
            names: Arc::default(),
            reserved: Arc::default(),
            tick: Arc::default(),
            closed: CancellationToken::new(),
        };
        map.insert(name, handle.clone());
        self.announce(DirectoryEvent::Opened(crate::cluster::RoomInfo {
            id: handle.name.to_string(),
            game: options.game.clone(),
            players: 0,
            capacity: u32::try_from(options.max_players).unwrap_or(u32::MAX),
            public: !options.private,
        }));
        self.metrics.rooms_open.inc();
        let room = Room::new(game, options.tick_rate, options.max_players).named(&options.game);
        let room = match self.recorder(&handle.name, &options) {
            Some(recorder) => room.recording(recorder),
            None => room,
        };
        let span = info_span!("room", room = %handle.name);
        self.tasks
            .spawn(run_room(Arc::clone(self), handle.clone(), room, rx).instrument(span));
        info!(room = %handle.name, ?options, "room created");
        Ok(handle)
    }

    /// With `--record`: starts the writer task of room `name`'s recording and returns
    /// the room's end. A recording that cannot start is a warning, not a refused room.
    fn recorder(&self, name: &str, options: &RoomOptions) -> Option<crate::record::Recorder> {
        use crate::record::{format, writer};
        let dir = self.config.record.as_ref()?;
        let header = format::Header {
            version: format::FORMAT_VERSION,
            room: name.to_owned(),
            game: options.game.clone(),
            seed: self.config.seed,
            npcs: options.npcs,
            tick_rate: options.tick_rate,
            max_players: u32::try_from(options.max_players).unwrap_or(u32::MAX),
            view_radius: options.view_radius,
            segment: 0,
            first_tick: 0,
        };
        let limits = writer::Limits {
            max_bytes: self.config.record_max_bytes,
            keep: self.config.record_keep,
        };
        match writer::SegmentWriter::create(dir, header, limits) {
            Ok(file) => {
                info!(room = name, path = %file.path().display(), "recording");
                let (sink, rx) = writer::channel(writer::CHANNEL_RECORDS);
                self.tasks.spawn(writer::run(file, rx));
                Some(crate::record::Recorder::new(sink))
            }
            Err(e) => {
                warn!(room = name, dir = %dir.display(), error = %e, "room not recorded");
                None
            }
        }
    }

    /// Joins the room called `name` (creating it), with `outlet` receiving its snapshots.
    /// A `seat` reserved by a ticket is used up by the attempt, whatever its outcome.
    /// An `arrival` whose identity already holds a seat there takes it over
    /// ([`Room::join_as`]).
    ///
    /// # Errors
    /// [`JoinRefused`] says why not.
    pub async fn join(
        self: &Arc<Self>,
        name: &str,
        outlet: SlotSender,
        seat: Option<Seat>,
        arrival: Arrival,
    ) -> Result<(RoomHandle, Joined), JoinRefused> {
        let token: SessionToken = rand::random();
        // Two attempts: the first may reach a room that was just removing itself.
        for _ in 0..2 {
            let handle = self.get_or_create(name)?;
            let (reply, answer) = oneshot::channel();
            let command = Command::Join {
                outlet: outlet.clone(),
                token,
                arrival: arrival.clone(),
                reply,
            };
            if handle.commands.send(command).is_err() {
                continue;
            }
            match answer.await {
                Ok(result) => {
                    drop(seat);
                    return result
                        .map(|joined| (handle, joined))
                        .map_err(JoinRefused::from);
                }
                Err(_) => continue,
            }
        }
        Err(JoinRefused::ShuttingDown)
    }

    /// Takes back the player holding `token` in the running room `name`, if it joined
    /// with `arrival`'s identity ([`Room::resume_as`]).
    ///
    /// # Errors
    /// [`JoinRefused::NoSuchRoom`], [`JoinRefused::UnknownSession`], or
    /// [`JoinRefused::ShuttingDown`].
    pub async fn resume(
        &self,
        name: &str,
        token: SessionToken,
        outlet: SlotSender,
        arrival: Arrival,
    ) -> Result<(RoomHandle, Joined), JoinRefused> {
        if self.shutdown.is_cancelled() {
            return Err(JoinRefused::ShuttingDown);
        }
        let handle = self.get(name).ok_or(JoinRefused::NoSuchRoom)?;
        let (reply, answer) = oneshot::channel();
        handle
            .commands
            .send(Command::Resume {
                outlet,
                token,
                arrival,
                reply,
            })
            .map_err(|_| JoinRefused::NoSuchRoom)?;
        let joined = answer.await.map_err(|_| JoinRefused::NoSuchRoom)??;
        Ok((handle, joined))
    }

    /// Removes `handle`'s room from the map if it is still the registered one and
    /// `also` holds (checked under the lock). Returns whether it was removed.
    fn remove_if(&self, handle: &RoomHandle, also: impl FnOnce() -> bool) -> bool {
        let mut map = self.lock();
        let ours = map
            .get(&handle.name)
            .is_some_and(|h| Arc::ptr_eq(&h.players, &handle.players));
        if ours && also() {
            map.remove(&handle.name);
            self.announce(DirectoryEvent::Closed(handle.name.to_string()));
            true
        } else {
            false
        }
    }
}

/// 12 random lowercase letters and digits: about 62 bits, unguessable for a private room.
fn random_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..12)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// Keeps the room's player count in its handle, in the metrics, and in the cluster
/// directory.
struct Counts<'a> {
    rooms: &'a Rooms,
    handle: &'a RoomHandle,
    metrics: &'a Metrics,
    room_metrics: &'a RoomMetrics,
    last: usize,
}

impl Counts<'_> {
    /// Publishes the players' names in the handle, for `GET /rooms/{id}`.
    fn names(&self, room: &Room<Box<dyn Game>, SlotSender>) {
        *self.handle.names.lock().unwrap_or_else(|e| e.into_inner()) = room.player_names();
    }

    fn update(&mut self, now: usize) {
        if now != self.last {
            self.rooms.announce_players(self.handle, now);
        }
        if now > self.last {
            self.metrics
                .players
                .fetch_add((now - self.last) as u64, Relaxed);
        } else {
            self.metrics
                .players
                .fetch_sub((self.last - now) as u64, Relaxed);
        }
        // By differences: rooms beyond `--max-labelled-rooms` share one gauge.
        self.room_metrics.players_changed(self.last, now);
        self.last = now;
        self.handle.players.store(now, Relaxed);
    }
}

/// The tick task of one room.
async fn run_room(
    rooms: Arc<Rooms>,
    handle: RoomHandle,
    mut room: Room<Box<dyn Game>, SlotSender>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let config = Arc::clone(&rooms.config);
    let metrics = Arc::clone(&rooms.metrics);
    let room_metrics: Arc<RoomMetrics> =
        metrics.add_room(Arc::clone(&handle.name), config.max_labelled_rooms);
    let mut counts = Counts {
        rooms: &rooms,
        handle: &handle,
        metrics: &metrics,
        room_metrics: &room_metrics,
        last: 0,
    };
    let mut clock = TickClock::new(
        Instant::now().into_std(),
        handle.options.tick_rate,
        config.max_catch_up_ticks,
    );
    let mut empty_since = Some(Instant::now());
    loop {
        tokio::select! {
            biased;
            () = rooms.shutdown.cancelled() => break,
            Some(command) = rx.recv() => {
                // Game messages change no one's membership: no need to republish names.
                let membership = !matches!(command, Command::Message { .. });
                match command {
                    Command::Join { outlet, token, arrival, reply } => {
                        let result = room.join_as(outlet, token, arrival);
                        // Counted before the answer: the joining connection then
                        // releases its cluster reservation, which must come after.
                        counts.update(room.player_count());
                        match reply.send(result) {
                            // The connection gave up waiting: undo the join, or, for a
                            // takeover, leave the seat as a dropped connection would.
                            Err(Ok(joined)) if joined.took_over => room.detach(
                                joined.player_id,
                                joined.generation,
                                Instant::now().into_std(),
                            ),
                            Err(Ok(joined)) => {
                                room.leave(joined.player_id, joined.generation);
                            }
                            _ => {}
                        }
                    }
                    Command::Resume { outlet, token, arrival, reply } => {
                        let _ = reply.send(room.resume_as(&token, outlet, arrival));
                    }
                    Command::Leave { player, generation } => {
                        if room.leave(player, generation) {
                            debug!(player, "player left");
                        }
                    }
                    Command::Detach { player, generation } => {
                        debug!(player, grace = ?config.reconnect_grace, "player disconnected; avatar kept");
                        room.detach(player, generation, Instant::now().into_std());
                    }
                    Command::Message { player, generation, payload } => {
                        if room.generation_of(player) == Some(generation) {
                            if let Err(refused) = room.message(player, &payload) {
                                debug!(player, %refused, "game message refused");
                            }
                        }
                    }
                    Command::Close => {
                        info!("room closed");
                        break;
                    }
                }
                counts.update(room.player_count());
                if membership {
                    counts.names(&room);
                }
                empty_since = match (room.player_count(), empty_since) {
                    (0, None) => Some(Instant::now()),
                    (0, since) => since,
                    _ => None,
                };
            },
            () = tokio::time::sleep_until(Instant::from_std(clock.next_deadline())) => {
                let started = Instant::now();
                let due = clock.poll(started.into_std());
                if due.run == 0 {
                    continue;
                }
                room_metrics.tick_lateness.observe(due.lateness);
                if due.run > 1 || due.skipped > 0 {
                    metrics.tick_overruns.inc();
                    room_metrics.tick_overruns.inc();
                    metrics.ticks_skipped.inc_by(due.skipped);
                    debug!(run = due.run, skipped = due.skipped, lateness = ?due.lateness, "tick overrun");
                }
                for _ in 1..due.run {
                    room.advance();
                }
                room.tick();
                handle.tick.store(room.current_tick(), Relaxed);
                metrics.ticks.inc_by(u64::from(due.run));
                let took = started.elapsed();
                metrics.tick_nanos.inc_by(duration_nanos(took));
                room_metrics.tick_duration.observe(took);
                if room.expire(started.into_std(), config.reconnect_grace) > 0 {
                    counts.update(room.player_count());
                    counts.names(&room);
                    if room.player_count() == 0 {
                        empty_since = Some(Instant::now());
                    }
                }
                if empty_since.is_some_and(|t| t.elapsed() >= config.room_idle_timeout)
                    && handle.reserved() == 0
                    && rooms.remove_if(&handle, || rx.is_empty())
                {
                    info!("room idle, removed");
                    break;
                }
            }
        }
    }
    rooms.remove_if(&handle, || true);
    // The room and its players are counted out, and its series removed, before its
    // players see their close: whoever reads the close and then `/metrics` finds them gone.
    counts.update(0);
    metrics.remove_room(&handle.name, &room_metrics);
    metrics.rooms_open.dec();
    handle.closed.cancel();
    if !rooms.shutdown.is_cancelled() && room.player_count() > 0 {
        warn!(players = room.player_count(), "room ended with players");
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
