//! A deterministic, in-process stepper: one room and any number of simulated players,
//! a manual clock, and no sockets.
//!
//! Every byte still takes the real path. A player's messages are encoded by the
//! client library's [`ClientSession`] and the codec, and judged by the server's own
//! per-connection protocol [`Session`]; the room ticks as it does on its task; each
//! player's snapshot is built by the same [`SnapshotEncoder`] a connection's writer
//! uses, decoded, and applied by the client library. Only the transport is replaced:
//! a queue per direction per player, drained in a fixed order at each step. So a test
//! (or a game developer checking their own [`Game`]) can play joins, leaves, drops,
//! resumes, stalls and bad input tick by tick and get the same result every run.
//!
//! The order of one [`Stepper::step`], which is the order the real server gives:
//! 1. the clock moves on by one tick period;
//! 2. each connection's queued client frames reach its protocol session (joins,
//!    inputs, pings are carried out; a rule broken closes that connection);
//! 3. deadlines are checked (hello, idle) and keepalive answers counted;
//! 4. the room ticks once and drops players past their reconnect grace;
//! 5. each reading client receives its reliable messages (`Welcome`, `Pong`), then the
//!    newest snapshot offered to it, if it has been welcomed. A client that is not
//!    reading receives nothing, and the room's latest-wins slot keeps only the newest
//!    snapshot for it, exactly as a slow reader's writer does.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tickcast_client::Session as ClientSession;
use tickcast_server::game::Game;
use tickcast_server::room::{InputInbox, PlayerId, PlayerOutlet, PlayerSnapshot, Room, WorldFrame};
use tickcast_server::session::{End, FrameIn, Limits, Request, Session};
use tickcast_server::snapshot::SnapshotEncoder;
use tickcast_shared::codec::{decode_server, encode_to_vec};
use tickcast_shared::delta::DeltaError;
use tickcast_shared::glam::Vec2;
use tickcast_shared::websocket::DataFrame;
use tickcast_shared::{
    ClientMsg, DisconnectReason, GameMessage, Hello, Pong, ServerMsg, SessionToken,
    PROTOCOL_VERSION,
};

/// How the stepped room and its connections are set up; the defaults are the server's.
#[derive(Debug, Clone, Copy)]
pub struct StepperOptions {
    /// The game's name in `Welcome`.
    pub game: &'static str,
    /// Ticks per second.
    pub tick_rate: u16,
    /// Seats in the room.
    pub max_players: usize,
    /// View radius in position quanta; 0 sends the whole world.
    pub view_radius_quanta: i64,
    /// Each player's snapshot budget, bytes per second; 0 is none
    /// (`--max-bytes-per-player-per-sec`).
    pub max_bytes_per_player_per_sec: u64,
    /// Each connection's limits and deadlines.
    pub limits: Limits,
    /// How long a dropped player's avatar waits for a resume.
    pub reconnect_grace: Duration,
    /// How often the server pings a connection (a reading client answers).
    pub ping_interval: Duration,
    /// Game events queued per connection before it is closed as a slow consumer.
    pub reliable_queue: usize,
    /// Seed of the session tokens handed out, so runs repeat exactly.
    pub seed: u64,
}

impl Default for StepperOptions {
    fn default() -> Self {
        let config = tickcast_server::Config::default();
        Self {
            game: "arena",
            tick_rate: config.tick_rate,
            max_players: config.max_players,
            view_radius_quanta: 0,
            max_bytes_per_player_per_sec: config.max_bytes_per_player_per_sec,
            limits: Limits::from(&config),
            reconnect_grace: config.reconnect_grace,
            ping_interval: config.ping_interval,
            reliable_queue: config.reliable_queue,
            seed: 1,
        }
    }
}

/// A player's index in the stepper: the order of [`Stepper::connect`] calls.
pub type PlayerIndex = usize;

/// Something a simulated player could not do: a misuse of the stepper, or a server
/// message the client library refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepperError {
    /// The player has no open connection.
    #[error("player {0} is not connected")]
    NotConnected(PlayerIndex),
    /// The player has not been welcomed, so has no session to send from or resume.
    #[error("player {0} was never welcomed")]
    NoSession(PlayerIndex),
    /// A snapshot did not apply to what the client held: the delta protocol is broken.
    #[error("player {player}: snapshot of tick {tick} did not apply: {error}")]
    Delta {
        /// Who.
        player: PlayerIndex,
        /// The snapshot's tick.
        tick: u64,
        /// Why.
        error: DeltaError,
    },
    /// A server message did not decode, or came out of order.
    #[error("player {player}: {what}")]
    Protocol {
        /// Who.
        player: PlayerIndex,
        /// What was wrong.
        what: String,
    },
}

/// The hand-off from the room to one connection, with the server slot's rules: a
/// latest-wins snapshot, a bounded queue of events, a disconnect order.
#[derive(Debug, Clone, Default)]
pub struct Outlet(Rc<RefCell<OutletState>>);

#[derive(Debug, Default)]
struct OutletState {
    pending: Option<PlayerSnapshot>,
    /// Snapshots replaced before they were taken: what a slow reader skipped.
    skipped: u64,
    events: VecDeque<Bytes>,
    events_capacity: usize,
    disconnect: Option<DisconnectReason>,
}

impl Outlet {
    fn new(events_capacity: usize) -> Self {
        Self(Rc::new(RefCell::new(OutletState {
            events_capacity: events_capacity.max(1),
            ..OutletState::default()
        })))
    }
}

impl PlayerOutlet for Outlet {
    fn offer(&self, snapshot: PlayerSnapshot) {
        let mut state = self.0.borrow_mut();
        if state.pending.replace(snapshot).is_some() {
            state.skipped += 1;
        }
    }

    fn event(&self, message: Bytes) {
        let mut state = self.0.borrow_mut();
        if state.events.len() >= state.events_capacity {
            state.events.clear();
            state
                .disconnect
                .get_or_insert(DisconnectReason::SlowConsumer);
        } else {
            state.events.push_back(message);
        }
    }

    fn disconnect(&self, reason: DisconnectReason) {
        self.0.borrow_mut().disconnect.get_or_insert(reason);
    }
}

/// One connection of a simulated player.
#[derive(Debug)]
struct Conn {
    session: Session,
    encoder: SnapshotEncoder,
    outlet: Outlet,
    member: Option<Member>,
    to_server: VecDeque<Vec<u8>>,
    /// Reliable server messages (`Welcome`, `Pong`), encoded, in order.
    to_client: VecDeque<Vec<u8>>,
    welcomed: bool,
    last_ping: Instant,
}

#[derive(Debug)]
struct Member {
    player: PlayerId,
    generation: u32,
    inbox: Arc<InputInbox>,
}

/// A simulated player across its connections.
#[derive(Debug)]
struct Player {
    name: String,
    conn: Option<Conn>,
    client: Option<ClientSession>,
    /// How its last connection ended, as the server decided or the player asked.
    ended: Option<DisconnectReason>,
    reading: bool,
    /// The frame of each snapshot the client applied last, to compare against.
    last_frame: Option<Arc<WorldFrame>>,
    skipped: u64,
    /// Payloads of the game events the client received, in order.
    events: Vec<Vec<u8>>,
    error: Option<StepperError>,
}

/// A room and its simulated players on a manual clock.
#[derive(Debug)]
pub struct Stepper<G: Game> {
    room: Room<G, Outlet>,
    options: StepperOptions,
    start: Instant,
    now: Instant,
    /// Ticks stepped; the clock is `start + ticks / tick_rate`, computed exactly so
    /// that whole seconds fall on whole ticks.
    ticks: u64,
    rng: u64,
    players: Vec<Player>,
}

impl<G: Game> Stepper<G> {
    /// A room running `game`, with no players, at time zero.
    pub fn new(game: G, options: StepperOptions) -> Self {
        let start = Instant::now();
        Self {
            room: Room::new(game, options.tick_rate, options.max_players).named(options.game),
            ticks: 0,
            options,
            start,
            now: start,
            rng: options.seed,
            players: Vec::new(),
        }
    }

    /// The room, for inspecting the game and its players.
    pub fn room(&self) -> &Room<G, Outlet> {
        &self.room
    }

    /// Time since the stepper started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Opens a connection for a new player and queues its `Hello`.
    pub fn connect(&mut self, name: &str) -> PlayerIndex {
        let index = self.players.len();
        self.players.push(Player {
            name: name.to_owned(),
            conn: None,
            client: None,
            ended: None,
            reading: true,
            last_frame: None,
            skipped: 0,
            events: Vec::new(),
            error: None,
        });
        self.open(index, None);
        index
    }

    /// Opens a connection for a new player that sends nothing yet (see
    /// [`Stepper::send_raw`]).
    pub fn connect_silent(&mut self) -> PlayerIndex {
        let index = self.connect("silent");
        if let Some(conn) = &mut self.players[index].conn {
            conn.to_server.clear();
        }
        index
    }

    /// Opens a new connection for a player whose connection dropped, and queues a
    /// `Hello` that resumes its session with the token of its last `Welcome`.
    ///
    /// # Errors
    /// [`StepperError::NoSession`] if the player was never welcomed.
    pub fn resume(&mut self, player: PlayerIndex) -> Result<(), StepperError> {
        let token = self.players[player]
            .client
            .as_ref()
            .map(|c| c.welcome().session_token)
            .ok_or(StepperError::NoSession(player))?;
        self.open(player, Some(token));
        Ok(())
    }

    fn open(&mut self, index: PlayerIndex, resume: Option<SessionToken>) {
        let hello = ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            name: self.players[index].name.clone(),
            room: String::new(),
            resume,
            auth_token: None,
        });
        let mut to_server = VecDeque::new();
        to_server.push_back(encode(&hello));
        let player = &mut self.players[index];
        player.ended = None;
        player.reading = true;
        player.conn = Some(Conn {
            session: Session::new("stepped", self.options.limits, self.now),
            encoder: SnapshotEncoder::new(self.options.view_radius_quanta).with_budget(
                tickcast_server::budget::Budget::new(
                    self.options.max_bytes_per_player_per_sec,
                    self.options.tick_rate,
                ),
            ),
            outlet: Outlet::new(self.options.reliable_queue),
            member: None,
            to_server,
            to_client: VecDeque::new(),
            welcomed: false,
            last_ping: self.now,
        });
    }

    /// Queues an input with the client library's next sequence number; returns it.
    ///
    /// # Errors
    /// If the player is not connected or not welcomed yet.
    pub fn send_input(
        &mut self,
        player: PlayerIndex,
        movement: Vec2,
        buttons: u16,
    ) -> Result<u32, StepperError> {
        let now = self.now;
        let p = &mut self.players[player];
        let client = p.client.as_mut().ok_or(StepperError::NoSession(player))?;
        let input = client.next_input(now, movement, buttons);
        let conn = p.conn.as_mut().ok_or(StepperError::NotConnected(player))?;
        conn.to_server.push_back(encode(&ClientMsg::Input(input)));
        Ok(input.seq)
    }

    /// Queues a protocol ping.
    ///
    /// # Errors
    /// If the player is not connected or not welcomed yet.
    pub fn send_ping(&mut self, player: PlayerIndex) -> Result<(), StepperError> {
        let now = self.now;
        let p = &mut self.players[player];
        let client = p.client.as_mut().ok_or(StepperError::NoSession(player))?;
        let ping = client.next_ping(now);
        let conn = p.conn.as_mut().ok_or(StepperError::NotConnected(player))?;
        conn.to_server.push_back(encode(&ClientMsg::Ping(ping)));
        Ok(())
    }

    /// Queues a reliable game message.
    ///
    /// # Errors
    /// If the player is not connected.
    pub fn send_message(
        &mut self,
        player: PlayerIndex,
        payload: Vec<u8>,
    ) -> Result<(), StepperError> {
        self.send_raw(player, encode(&ClientMsg::Message(GameMessage { payload })))
    }

    /// Queues any bytes as one binary message, to play a broken or hostile client.
    ///
    /// # Errors
    /// If the player is not connected.
    pub fn send_raw(&mut self, player: PlayerIndex, bytes: Vec<u8>) -> Result<(), StepperError> {
        let conn = self.players[player]
            .conn
            .as_mut()
            .ok_or(StepperError::NotConnected(player))?;
        conn.to_server.push_back(bytes);
        Ok(())
    }

    /// Stops (or restarts) a player's reading: a stalled client receives nothing and
    /// answers no keepalive, while the room goes on offering it snapshots.
    pub fn set_reading(&mut self, player: PlayerIndex, reading: bool) {
        self.players[player].reading = reading;
    }

    /// The player's connection drops without a close (a network loss): the server
    /// keeps its avatar for the reconnect grace.
    pub fn drop_connection(&mut self, player: PlayerIndex) {
        self.end_connection(player, None);
    }

    /// The player closes its connection normally (close 1000): it leaves the room.
    pub fn close(&mut self, player: PlayerIndex) {
        self.end_connection(player, Some(DisconnectReason::Normal));
    }

    /// Ends a connection. `reason` is the close reason, `None` for a lost connection.
    fn end_connection(&mut self, index: PlayerIndex, reason: Option<DisconnectReason>) {
        let now = self.now;
        let player = &mut self.players[index];
        let Some(conn) = player.conn.take() else {
            return;
        };
        player.ended = reason;
        if let Some(member) = conn.member {
            // The shell's rule: a lost or idle connection keeps the avatar for the grace.
            match reason {
                None | Some(DisconnectReason::IdleTimeout) => {
                    self.room.detach(member.player, member.generation, now)
                }
                Some(_) => {
                    self.room.leave(member.player, member.generation);
                }
            }
        }
    }

    /// Runs `ticks` steps.
    ///
    /// # Errors
    /// The first [`StepperError`] a client met.
    pub fn run(&mut self, ticks: u32) -> Result<(), StepperError> {
        for _ in 0..ticks {
            self.step()?;
        }
        Ok(())
    }

    /// One tick period: see the module documentation for the order.
    ///
    /// # Errors
    /// The first [`StepperError`] a client met (the step still completes for everyone).
    pub fn step(&mut self) -> Result<(), StepperError> {
        self.ticks += 1;
        let rate = u64::from(self.options.tick_rate.max(1));
        self.now = self.start + Duration::from_nanos(self.ticks * 1_000_000_000 / rate);
        for index in 0..self.players.len() {
            self.deliver_to_server(index);
            self.check_deadlines(index);
        }
        self.room.tick();
        self.room.expire(self.now, self.options.reconnect_grace);
        for index in 0..self.players.len() {
            self.deliver_to_client(index);
        }
        match self.players.iter_mut().find_map(|p| p.error.take()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn deliver_to_server(&mut self, index: PlayerIndex) {
        let now = self.now;
        loop {
            let Some(conn) = self.players[index].conn.as_mut() else {
                return;
            };
            let Some(bytes) = conn.to_server.pop_front() else {
                return;
            };
            let frame = FrameIn::Data {
                frame: DataFrame::Binary,
                fin: true,
                payload: &bytes,
            };
            let outcome = match conn.session.handle_frame(now, frame) {
                Ok(Some(request)) => self.carry_out(index, request),
                Ok(None) => Ok(()),
                Err(end) => Err(end),
            };
            if let Err(end) = outcome {
                self.closed_by_server(index, end);
            }
        }
    }

    /// What the connection shell does for a request, against the room directly.
    fn carry_out(&mut self, index: PlayerIndex, request: Request) -> Result<(), End> {
        let token = self.next_token();
        let tick = self.room.current_tick();
        let Some(conn) = self.players[index].conn.as_mut() else {
            return Ok(());
        };
        match request {
            Request::Join(hello) => {
                let outlet = conn.outlet.clone();
                // The stepper is a server without player authentication: no identity.
                let arrival = tickcast_server::room::Arrival {
                    name: hello.name,
                    identity: None,
                };
                let joined = match hello.resume {
                    Some(token) => self.room.resume_as(&token, outlet, arrival),
                    None => self.room.join_as(outlet, token, arrival),
                };
                let joined = match joined {
                    Ok(joined) => joined,
                    Err(e) => {
                        let reason = match e {
                            tickcast_server::room::JoinError::Full => DisconnectReason::RoomFull,
                            tickcast_server::room::JoinError::UnknownSession => {
                                DisconnectReason::SessionExpired
                            }
                        };
                        return conn.session.handle_joined(Err(reason));
                    }
                };
                conn.session.handle_joined(Ok(()))?;
                conn.member = Some(Member {
                    player: joined.player_id,
                    generation: joined.generation,
                    inbox: joined.inbox,
                });
                conn.to_client
                    .push_back(encode(&ServerMsg::Welcome(joined.welcome)));
                Ok(())
            }
            Request::Input(input) => {
                if let Some(member) = &conn.member {
                    member.inbox.put(input);
                }
                Ok(())
            }
            Request::Message(payload) => {
                if let Some(member) = &conn.member {
                    // A refusal reaches the connection through its outlet, as in the server.
                    let _ = self.room.message(member.player, &payload);
                }
                Ok(())
            }
            Request::Pong { nonce } => {
                conn.to_client.push_back(encode(&ServerMsg::Pong(Pong {
                    nonce,
                    server_tick: tick,
                })));
                Ok(())
            }
        }
    }

    fn check_deadlines(&mut self, index: PlayerIndex) {
        let now = self.now;
        let interval = self.options.ping_interval;
        let reading = self.players[index].reading;
        let Some(conn) = self.players[index].conn.as_mut() else {
            return;
        };
        // The server's keepalive ping: a reading client's pong frame is a sign of life.
        if now.saturating_duration_since(conn.last_ping) >= interval {
            conn.last_ping = now;
            if reading {
                if let Err(end) = conn.session.handle_frame(now, FrameIn::Control) {
                    self.closed_by_server(index, end);
                    return;
                }
            }
        }
        if let Err(end) = conn.session.handle_timeout(now) {
            self.closed_by_server(index, end);
        }
    }

    fn closed_by_server(&mut self, index: PlayerIndex, end: End) {
        let reason = match end {
            End::Server(reason) => reason,
            End::Peer(_) => DisconnectReason::Normal,
        };
        self.end_connection(index, Some(reason));
    }

    fn deliver_to_client(&mut self, index: PlayerIndex) {
        let now = self.now;
        let start = self.start;
        // A disconnect the room ordered is taken first, as the writer does.
        let ordered = self.players[index]
            .conn
            .as_ref()
            .and_then(|c| c.outlet.0.borrow_mut().disconnect.take());
        if let Some(reason) = ordered {
            self.end_connection(index, Some(reason));
            return;
        }
        let player = &mut self.players[index];
        if !player.reading {
            return;
        }
        let Some(conn) = player.conn.as_mut() else {
            return;
        };
        while let Some(bytes) = conn.to_client.pop_front() {
            match decode_server(&bytes) {
                Ok(ServerMsg::Welcome(welcome)) => {
                    conn.welcomed = true;
                    match &mut player.client {
                        Some(client) if welcome.session_token == client.welcome().session_token => {
                            client.resume(welcome);
                        }
                        _ => player.client = Some(ClientSession::new(welcome, start)),
                    }
                }
                Ok(ServerMsg::Pong(pong)) => {
                    if let Some(client) = &mut player.client {
                        client.handle_pong(now, &pong);
                    }
                }
                Ok(other) => {
                    player.error = Some(StepperError::Protocol {
                        player: index,
                        what: format!("unexpected reliable message {other:?}"),
                    })
                }
                Err(e) => {
                    player.error = Some(StepperError::Protocol {
                        player: index,
                        what: e.to_string(),
                    })
                }
            }
        }
        if !conn.welcomed {
            return;
        }
        let events: Vec<Bytes> = conn.outlet.0.borrow_mut().events.drain(..).collect();
        for bytes in events {
            match decode_server(&bytes) {
                Ok(ServerMsg::Event(event)) => {
                    if let Some(client) = &mut player.client {
                        client.handle_event();
                    }
                    player.events.push(event.payload);
                }
                other => {
                    player.error = Some(StepperError::Protocol {
                        player: index,
                        what: format!("a game event decoded as {other:?}"),
                    })
                }
            }
        }
        let (pending, skipped) = {
            let mut state = conn.outlet.0.borrow_mut();
            (state.pending.take(), std::mem::take(&mut state.skipped))
        };
        player.skipped += skipped;
        let Some(offered) = pending else {
            return;
        };
        let mut buf = Vec::new();
        if let Err(e) = conn.encoder.encode(&offered, &mut buf) {
            player.error = Some(StepperError::Protocol {
                player: index,
                what: format!("encoding a snapshot: {e}"),
            });
            return;
        }
        let snapshot = match decode_server(&buf) {
            Ok(ServerMsg::Snapshot(snapshot)) => snapshot,
            other => {
                player.error = Some(StepperError::Protocol {
                    player: index,
                    what: format!("a snapshot decoded as {other:?}"),
                });
                return;
            }
        };
        let Some(client) = player.client.as_mut() else {
            return;
        };
        client.handle_bytes(buf.len());
        match client.handle_snapshot(now, &snapshot) {
            Ok(_) => player.last_frame = Some(offered.frame),
            Err(error) => {
                player.error = Some(StepperError::Delta {
                    player: index,
                    tick: snapshot.tick,
                    error,
                })
            }
        }
    }

    /// The client library's session of a player (its world, acks, stats), once welcomed.
    pub fn client(&self, player: PlayerIndex) -> Option<&ClientSession> {
        self.players[player].client.as_ref()
    }

    /// True while the player has an open connection.
    pub fn is_connected(&self, player: PlayerIndex) -> bool {
        self.players[player].conn.is_some()
    }

    /// How the player's last connection ended: the server's close reason, `Normal`
    /// for a close the player sent, `None` while open or after a lost connection.
    pub fn ended(&self, player: PlayerIndex) -> Option<DisconnectReason> {
        self.players[player].ended
    }

    /// The server's frame behind the last snapshot the player applied: what the
    /// client's world must now equal (whole-world view) or contain (view radius).
    pub fn last_frame(&self, player: PlayerIndex) -> Option<&WorldFrame> {
        self.players[player].last_frame.as_deref()
    }

    /// The payloads of the game events the player received, in order.
    pub fn events(&self, player: PlayerIndex) -> &[Vec<u8>] {
        &self.players[player].events
    }

    /// Snapshots the room offered the player that were replaced before it read them.
    pub fn skipped(&self, player: PlayerIndex) -> u64 {
        self.players[player].skipped
    }

    /// A session token: splitmix64 from the seed, so runs repeat.
    fn next_token(&mut self) -> SessionToken {
        let mut token = [0u8; 16];
        for half in token.chunks_mut(8) {
            self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.rng;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            half.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        }
        token
    }
}

/// Encodes one message. The stepper encodes only well-formed messages far below any
/// size limit, so the codec cannot refuse them; an empty message would be refused by
/// the receiving side as invalid, which a test would see.
fn encode<T: serde::Serialize>(msg: &T) -> Vec<u8> {
    encode_to_vec(msg).unwrap_or_default()
}
