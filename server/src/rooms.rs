//! The room registry and each room's tick task.
//!
//! Every room runs in its own task, so rooms tick independently on all cores and a slow
//! room delays only itself. The task owns the [`Room`]: nothing else touches the game
//! state. Connections talk to it through an unbounded command channel (join, leave);
//! it is bounded in practice because each connection sends at most one join and one
//! leave, and connections are capped by `--max-connections`.
//!
//! A room with no players for `--room-idle-timeout` removes itself from the registry
//! and ends. A join that raced that removal finds the command channel closed and asks
//! the registry again, which creates a fresh room.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, info_span, warn, Instrument};

use crate::config::Config;
use crate::game::{Arena, ArenaConfig};
use crate::metrics::{Metrics, RoomMetrics};
use crate::room::{JoinError, Joined, PlayerId, Room};
use crate::schedule::TickClock;
use crate::slot::SlotSender;

/// What a connection asks of its room.
#[derive(Debug)]
enum Command {
    Join {
        outlet: SlotSender,
        reply: oneshot::Sender<Result<Joined, JoinError>>,
    },
    Leave(PlayerId),
}

/// A cheap, clonable reference to a running room.
#[derive(Debug, Clone)]
pub struct RoomHandle {
    name: Arc<str>,
    commands: mpsc::UnboundedSender<Command>,
    players: Arc<AtomicUsize>,
    tick: Arc<AtomicU64>,
    closed: CancellationToken,
}

impl RoomHandle {
    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Players in the room, as of its last join or leave.
    pub fn player_count(&self) -> usize {
        self.players.load(Relaxed)
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

    /// Tells the room a player left. Never fails: a room that has ended has no players.
    pub fn leave(&self, player: PlayerId) {
        let _ = self.commands.send(Command::Leave(player));
    }
}

/// Why a join did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinRefused {
    /// The room has its maximum number of players.
    #[error("room is full")]
    Full,
    /// Creating the room would exceed `--max-rooms`.
    #[error("too many rooms")]
    TooManyRooms,
    /// The server is draining or shutting down.
    #[error("server is shutting down")]
    ShuttingDown,
}

impl From<JoinError> for JoinRefused {
    fn from(e: JoinError) -> Self {
        match e {
            JoinError::Full => Self::Full,
        }
    }
}

/// All rooms of this process.
#[derive(Debug)]
pub struct Rooms {
    map: Mutex<HashMap<Arc<str>, RoomHandle>>,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    draining: CancellationToken,
}

impl Rooms {
    /// An empty registry; room tasks are spawned on `tasks` and stop on `shutdown`.
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        tasks: TaskTracker,
        shutdown: CancellationToken,
        draining: CancellationToken,
    ) -> Arc<Self> {
        Arc::new(Self {
            map: Mutex::default(),
            config,
            metrics,
            tasks,
            shutdown,
            draining,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, RoomHandle>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
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

    /// The room called `name`, started if it is not running.
    ///
    /// # Errors
    /// [`JoinRefused::TooManyRooms`] at `--max-rooms`; [`JoinRefused::ShuttingDown`]
    /// while draining or shutting down.
    pub fn get_or_create(self: &Arc<Self>, name: &str) -> Result<RoomHandle, JoinRefused> {
        // Draining: running games go on, but nobody new joins and no room starts.
        if self.draining.is_cancelled() || self.shutdown.is_cancelled() {
            return Err(JoinRefused::ShuttingDown);
        }
        let mut map = self.lock();
        if let Some(handle) = map.get(name) {
            return Ok(handle.clone());
        }
        if map.len() >= self.config.max_rooms {
            return Err(JoinRefused::TooManyRooms);
        }
        let (commands, rx) = mpsc::unbounded_channel();
        let handle = RoomHandle {
            name: Arc::from(name),
            commands,
            players: Arc::default(),
            tick: Arc::default(),
            closed: CancellationToken::new(),
        };
        map.insert(Arc::clone(&handle.name), handle.clone());
        drop(map);
        self.metrics.rooms_open.fetch_add(1, Relaxed);
        let game = Arena::new(ArenaConfig {
            npcs: self.config.npcs,
            seed: self.config.seed,
            ..Default::default()
        });
        let room = Room::new(game, self.config.tick_rate, self.config.max_players);
        let span = info_span!("room", room = %name);
        self.tasks
            .spawn(run_room(Arc::clone(self), handle.clone(), room, rx).instrument(span));
        info!(room = %name, "room created");
        Ok(handle)
    }

    /// Joins the room called `name` (creating it), with `outlet` receiving its snapshots.
    ///
    /// # Errors
    /// [`JoinRefused`] says why not.
    pub async fn join(
        self: &Arc<Self>,
        name: &str,
        outlet: SlotSender,
    ) -> Result<(RoomHandle, Joined), JoinRefused> {
        // Two attempts: the first may reach a room that was just removing itself.
        for _ in 0..2 {
            let handle = self.get_or_create(name)?;
            let (reply, answer) = oneshot::channel();
            if handle
                .commands
                .send(Command::Join {
                    outlet: outlet.clone(),
                    reply,
                })
                .is_err()
            {
                continue;
            }
            match answer.await {
                Ok(result) => {
                    return result
                        .map(|joined| (handle, joined))
                        .map_err(JoinRefused::from)
                }
                Err(_) => continue,
            }
        }
        Err(JoinRefused::ShuttingDown)
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
            true
        } else {
            false
        }
    }
}

/// The tick task of one room.
async fn run_room(
    rooms: Arc<Rooms>,
    handle: RoomHandle,
    mut room: Room<Arena, SlotSender>,
    mut rx: mpsc::UnboundedReceiver<Command>,
) {
    let config = Arc::clone(&rooms.config);
    let metrics = Arc::clone(&rooms.metrics);
    let room_metrics: Arc<RoomMetrics> = metrics.add_room(Arc::clone(&handle.name));
    let mut clock = TickClock::new(
        Instant::now().into_std(),
        config.tick_rate,
        config.max_catch_up_ticks,
    );
    let mut empty_since = Some(Instant::now());
    loop {
        tokio::select! {
            biased;
            () = rooms.shutdown.cancelled() => break,
            Some(command) = rx.recv() => match command {
                Command::Join { outlet, reply } => {
                    let result = room.join(outlet);
                    if let Ok(joined) = &result {
                        debug!(player = joined.player_id, "player joined");
                        metrics.players.fetch_add(1, Relaxed);
                        empty_since = None;
                    }
                    handle.players.store(room.player_count(), Relaxed);
                    if let Err(Ok(joined)) = reply.send(result) {
                        // The connection gave up waiting: undo the join.
                        room.leave(joined.player_id);
                        metrics.players.fetch_sub(1, Relaxed);
                        handle.players.store(room.player_count(), Relaxed);
                    }
                }
                Command::Leave(player) => {
                    let before = room.player_count();
                    room.leave(player);
                    if room.player_count() < before {
                        debug!(player, "player left");
                        metrics.players.fetch_sub(1, Relaxed);
                    }
                    handle.players.store(room.player_count(), Relaxed);
                    if room.player_count() == 0 {
                        empty_since = Some(Instant::now());
                    }
                }
            },
            () = tokio::time::sleep_until(Instant::from_std(clock.next_deadline())) => {
                let started = Instant::now();
                let due = clock.poll(started.into_std());
                if due.run == 0 {
                    continue;
                }
                room_metrics.tick_lateness.observe(due.lateness);
                if due.run > 1 || due.skipped > 0 {
                    metrics.tick_overruns.fetch_add(1, Relaxed);
                    room_metrics.tick_overruns.fetch_add(1, Relaxed);
                    metrics.ticks_skipped.fetch_add(due.skipped, Relaxed);
                    debug!(run = due.run, skipped = due.skipped, lateness = ?due.lateness, "tick overrun");
                }
                for _ in 1..due.run {
                    room.advance();
                }
                room.tick();
                handle.tick.store(room.current_tick(), Relaxed);
                metrics.ticks.fetch_add(u64::from(due.run), Relaxed);
                let took = started.elapsed();
                metrics.tick_nanos.fetch_add(duration_nanos(took), Relaxed);
                room_metrics.tick_duration.observe(took);
                room_metrics.players.store(room.player_count() as u64, Relaxed);
                if empty_since.is_some_and(|t| t.elapsed() >= config.room_idle_timeout) && rooms.remove_if(&handle, || rx.is_empty()) {
                    info!("room idle, removed");
                    break;
                }
            }
        }
    }
    rooms.remove_if(&handle, || true);
    metrics.remove_room(&handle.name, &room_metrics);
    handle.closed.cancel();
    metrics
        .players
        .fetch_sub(room.player_count() as u64, Relaxed);
    metrics.rooms_open.fetch_sub(1, Relaxed);
    if !rooms.shutdown.is_cancelled() && room.player_count() > 0 {
        warn!(players = room.player_count(), "room ended with players");
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}
