//! `--record` and the replay: a room recorded over real sockets re-runs to the same
//! world on every tick, and a game that reads something other than its seed and its
//! inputs is caught at the first tick where that shows.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use common::*;
use glam::Vec2;
use tickcast::server::game::{Arena, ArenaConfig, EntityId, Events, MessageRefused, PlayerId};
use tickcast::server::record::format::world_hash;
use tickcast::server::record::replay::{self, Verdict};
use tickcast::server::record::{serve, Record};
use tickcast::server::{Config, Game, GameOptions, Games};
use tickcast::shared::delta::World;
use tickcast::shared::{
    ClientMsg, EntityState, FieldKind, FieldSpec, GameMessage, Input, ServerMsg,
};
use tokio_util::sync::CancellationToken;

/// The Arena plus a score per avatar that game messages raise: messages change the
/// world, so a replay that skipped or reordered one would not match.
struct Scored {
    arena: Arena,
    scores: std::collections::BTreeMap<EntityId, i32>,
}

impl Game for Scored {
    fn spawn_player(&mut self, player: PlayerId) -> EntityId {
        self.arena.spawn_player(player)
    }
    fn despawn_player(&mut self, entity: EntityId) {
        self.scores.remove(&entity);
        self.arena.despawn_player(entity);
    }
    fn apply_input(&mut self, entity: EntityId, input: &Input) {
        self.arena.apply_input(entity, input);
    }
    fn step(&mut self, dt: f32, events: &mut Events) {
        self.arena.step(dt, events);
    }
    fn world_size(&self) -> Vec2 {
        self.arena.world_size()
    }
    fn write_state(&self, out: &mut Vec<EntityState>) {
        self.arena.write_state(out);
        for e in out.iter_mut() {
            e.fields[0] = self.scores.get(&e.id).copied().unwrap_or(0);
        }
    }
    fn fields(&self) -> Vec<FieldSpec> {
        vec![FieldSpec {
            name: "score".into(),
            kind: FieldKind::I32,
        }]
    }
    fn on_message(
        &mut self,
        player: PlayerId,
        entity: EntityId,
        message: &[u8],
        events: &mut Events,
    ) -> Result<(), MessageRefused> {
        let &[points] = message else {
            return Err(MessageRefused);
        };
        *self.scores.entry(entity).or_default() += i32::from(points);
        events.to_player(player, vec![points]);
        Ok(())
    }
}

/// Steps every game of this kind in the process, recorded or replayed.
static DRIFT_STEPS: AtomicU64 = AtomicU64::new(0);

/// Breaks the rule from its 5th tick on: its world moves by a process-wide step count,
/// which a replay (a later run in the same process) does not share.
struct Drifty {
    arena: Arena,
    ticks: u64,
    drift: f32,
}

impl Game for Drifty {
    fn spawn_player(&mut self, player: PlayerId) -> EntityId {
        self.arena.spawn_player(player)
    }
    fn despawn_player(&mut self, entity: EntityId) {
        self.arena.despawn_player(entity);
    }
    fn apply_input(&mut self, entity: EntityId, input: &Input) {
        self.arena.apply_input(entity, input);
    }
    fn step(&mut self, dt: f32, events: &mut Events) {
        self.arena.step(dt, events);
        self.ticks += 1;
        let global = DRIFT_STEPS.fetch_add(1, Ordering::Relaxed);
        if self.ticks >= 5 {
            self.drift = global as f32;
        }
    }
    fn world_size(&self) -> Vec2 {
        self.arena.world_size()
    }
    fn write_state(&self, out: &mut Vec<EntityState>) {
        self.arena.write_state(out);
        for e in out.iter_mut() {
            e.pos.x += self.drift;
        }
    }
}

fn arena(o: &GameOptions) -> Arena {
    Arena::new(ArenaConfig {
        npcs: o.npcs,
        seed: o.seed,
        ..ArenaConfig::default()
    })
}

fn games() -> Games {
    Games::builtin()
        .with("scored", |o: &GameOptions| Scored {
            arena: arena(o),
            scores: Default::default(),
        })
        .with("drifty", |o: &GameOptions| Drifty {
            arena: arena(o),
            ticks: 0,
            drift: 0.0,
        })
}

/// A fresh directory for one test's recordings.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tickcast-replay-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

async fn start_recording(game: &str, dir: &Path) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = Config {
        game: game.into(),
        record: Some(dir.to_path_buf()),
        ..common::config()
    };
    let task = tokio::spawn(tickcast::server::serve(
        listener,
        config,
        games(),
        shutdown.clone(),
        CancellationToken::new(),
    ));
    TestServer {
        addr,
        shutdown,
        task,
    }
}

/// Sends inputs `from..=to` moving along `dir` and waits for the snapshot that says the
/// last one was applied.
async fn moves(ws: &mut Ws, from: u32, to: u32, dir: Vec2) {
    for seq in from..=to {
        send(ws, &input_msg(seq, dir)).await;
    }
    while recv_snapshot(ws).await.last_input_seq != to {}
}

/// Reads until the game's event with these bytes.
async fn event(ws: &mut Ws, want: &[u8]) {
    loop {
        if let ServerMsg::Event(e) = recv(ws).await {
            assert_eq!(e.payload, want);
            return;
        }
    }
}

#[tokio::test]
async fn a_recorded_room_replays_the_same_world_on_every_tick() {
    let dir = scratch("ok");
    let server = start_recording("scored", &dir).await;
    let url = server.ws_url("rec");
    let mut a = connect(&url).await;
    let wa = hello(&mut a, "ada").await;
    let mut b = connect(&url).await;
    let wb = hello(&mut b, "bob").await;
    let mut c = connect(&url).await;
    let wc = hello(&mut c, "cy").await;
    moves(&mut a, 1, 3, Vec2::X).await;
    moves(&mut b, 1, 2, Vec2::new(0.0, -1.0)).await;
    moves(&mut c, 1, 4, Vec2::new(-0.6, 0.8)).await;
    send(
        &mut a,
        &ClientMsg::Message(GameMessage { payload: vec![5] }),
    )
    .await;
    event(&mut a, &[5]).await;
    // Bob leaves and comes back as a new player.
    leave(&mut b).await;
    wait_players(server.addr, "rec", 2).await;
    let mut b2 = connect(&url).await;
    let wb2 = hello(&mut b2, "bob again").await;
    moves(&mut b2, 1, 3, Vec2::Y).await;
    // Cy's connection drops without a close and comes back within the grace: the same
    // player and avatar, not a join.
    drop(c);
    wait_open(server.addr, 2).await;
    let mut c2 = connect(&url).await;
    send(&mut c2, &resume_msg("cy", wc.session_token)).await;
    assert_eq!(recv_welcome(&mut c2).await.player_id, wc.player_id);
    moves(&mut c2, 1, 2, Vec2::X).await;
    moves(&mut a, 4, 5, -Vec2::X).await;
    server.stop().await.unwrap();

    let path = dir.join("room-rec");
    let recording = replay::read(&path).unwrap();
    assert_eq!(
        (
            recording.header.game.as_str(),
            recording.header.room.as_str()
        ),
        ("scored", "rec")
    );
    assert_eq!(recording.torn, None);
    let recorded_ticks = recording
        .records
        .iter()
        .filter(|r| matches!(r, Record::Tick { .. }))
        .count() as u64;
    let leaves: Vec<_> = recording
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Leave { player, .. } => Some(*player),
            _ => None,
        })
        .collect();
    assert_eq!(leaves, [wb.player_id]);
    // Every player's last input is in the recording, with the tick it was applied in.
    let applied = |player: u32, seq: u32| {
        recording.records.iter().any(|r| {
            matches!(r, Record::Tick { inputs, .. }
                if inputs.iter().any(|(p, i)| *p == player && i.seq == seq))
        })
    };
    assert!(applied(wa.player_id, 5) && applied(wb2.player_id, 3) && applied(wc.player_id, 4));

    let outcome = replay::replay(&recording, &games()).unwrap();
    assert_eq!(outcome.verdict, Verdict::Ok);
    assert_eq!(outcome.ticks, recorded_ticks);
    assert_eq!(outcome.messages, 1);
    let names: Vec<_> = outcome.players.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["ada", "bob", "cy", "bob again"]);

    // The same recording with one message left out is no longer the same game: the
    // replay names the first tick after it.
    let mut tampered = recording.clone();
    let at = tampered
        .records
        .iter()
        .position(|r| matches!(r, Record::Message { .. }))
        .unwrap();
    let Record::Message { tick, .. } = tampered.records.remove(at) else {
        unreachable!()
    };
    let outcome = replay::replay(&tampered, &games()).unwrap();
    assert!(
        matches!(&outcome.verdict, Verdict::Diverged { tick: t, what } if *t == tick + 1 && what.contains("world hash")),
        "{:?}",
        outcome.verdict
    );
    assert_eq!(outcome.ticks, tick);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_game_that_reads_a_global_counter_diverges_at_its_first_tick_that_shows_it() {
    let dir = scratch("drift");
    let server = start_recording("drifty", &dir).await;
    let mut a = connect(&server.ws_url("drift")).await;
    hello(&mut a, "ada").await;
    while recv_snapshot(&mut a).await.tick < 10 {}
    server.stop().await.unwrap();

    let recording = replay::read(&dir.join("room-drift")).unwrap();
    let outcome = replay::replay(&recording, &games()).unwrap();
    // Ticks 1 to 4 do not read the counter and match; tick 5 is the first that does.
    assert_eq!(outcome.ticks, 4);
    assert!(
        matches!(&outcome.verdict, Verdict::Diverged { tick: 5, what } if what.contains("world hash")),
        "{:?}",
        outcome.verdict
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_served_replay_shows_viewers_the_recorded_world_of_every_tick() {
    let dir = scratch("serve");
    let server = start_recording("scored", &dir).await;
    let mut a = connect(&server.ws_url("show")).await;
    hello(&mut a, "ada").await;
    moves(&mut a, 1, 3, Vec2::new(0.6, 0.8)).await;
    send(
        &mut a,
        &ClientMsg::Message(GameMessage { payload: vec![7] }),
    )
    .await;
    event(&mut a, &[7]).await;
    moves(&mut a, 4, 6, -Vec2::Y).await;
    server.stop().await.unwrap();
    let recording = replay::read(&dir.join("room-show")).unwrap();
    let recorded: Vec<[u8; 8]> = recording
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Tick { hash, .. } => Some(*hash),
            _ => None,
        })
        .collect();
    let last = recorded.len() as u64;

    // Served at the recorded rate, from a fresh room: its tick N is recorded tick N.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let config = Config {
        game: serve::REPLAY_GAME.into(),
        tick_rate: recording.header.tick_rate,
        npcs: 0,
        ..common::config()
    };
    let games = serve::games(std::sync::Arc::new(recording), games()).unwrap();
    let task = tokio::spawn(tickcast::server::serve(
        listener,
        config,
        games,
        shutdown.clone(),
        CancellationToken::new(),
    ));
    let viewer_server = TestServer {
        addr,
        shutdown,
        task,
    };
    let mut v = connect(&viewer_server.ws_url("show")).await;
    let welcome = hello(&mut v, "viewer").await;
    assert_eq!(welcome.game, serve::REPLAY_GAME);
    assert_eq!(welcome.fields.len(), 1, "the recorded game's fields");
    assert_eq!(welcome.fields[0].name, "score");
    // The viewer's input changes nothing.
    send(&mut v, &input_msg(1, Vec2::X)).await;
    let mut world = World::default();
    let mut checked = 0;
    loop {
        let s = recv_snapshot(&mut v).await;
        world.apply(&s).unwrap();
        // After the last recorded tick the last world stays.
        let want = recorded[(s.tick.min(last) - 1) as usize];
        assert_eq!(world_hash(world.entities.iter()), want, "tick {}", s.tick);
        checked += 1;
        if s.tick >= last + 3 {
            break;
        }
    }
    assert!(checked >= 4, "{checked} snapshots checked");
    viewer_server.stop().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
