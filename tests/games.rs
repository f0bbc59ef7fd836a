//! Games plugged in at run time: a registry of named factories, `--game` for rooms
//! created on demand, `"game"` in `POST /rooms`, and each room's own world size,
//! quantum and view radius. Real sockets on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{config, connect, expect_close, hello, http_json, recv, recv_snapshot, send, WAIT};
use tickcast::server::game::{
    EntityId, Events, Game, GameOptions, Games, MessageRefused, PlayerId,
};
use tickcast::shared::glam::Vec2;
use tickcast::shared::{ClientMsg, EntityKind, EntityState, GameMessage, Input, ServerMsg};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A game no server was compiled around: a 10 x 10 world of `npcs` posts in a row and
/// one still avatar per player, on a coarse grid of whole units.
struct Posts {
    npcs: u32,
    players: Vec<EntityId>,
    next: EntityId,
}

impl Game for Posts {
    fn spawn_player(&mut self, _player: PlayerId) -> EntityId {
        let id = self.next;
        self.next += 1;
        self.players.push(id);
        id
    }

    fn despawn_player(&mut self, entity: EntityId) {
        self.players.retain(|&e| e != entity);
    }

    fn apply_input(&mut self, _: EntityId, _: &Input) {}

    fn step(&mut self, _: f32, _: &mut Events) {}

    fn world_size(&self) -> Vec2 {
        Vec2::splat(10.0)
    }

    fn write_state(&self, out: &mut Vec<EntityState>) {
        let post = |id: u32, kind| EntityState {
            id,
            kind,
            pos: Vec2::new(id as f32, 5.0),
            vel: Vec2::ZERO,
            fields: Default::default(),
        };
        out.extend((0..self.npcs).map(|id| post(id, EntityKind::Npc)));
        out.extend(self.players.iter().map(|&id| post(id, EntityKind::Avatar)));
    }

    fn pos_quantum(&self) -> f32 {
        1.0
    }
}

fn games() -> Games {
    Games::builtin().with("posts", |o: &GameOptions| Posts {
        npcs: o.npcs.min(8),
        players: Vec::new(),
        next: 100,
    })
}

async fn start_with(games: Games, game: &str) -> (std::net::SocketAddr, CancellationToken) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let config = tickcast::server::Config {
        game: game.into(),
        npcs: 3,
        ..config()
    };
    tokio::spawn(tickcast::server::serve(
        listener,
        config,
        games,
        stop.clone(),
        CancellationToken::new(),
    ));
    (addr, stop)
}

#[tokio::test]
async fn rooms_created_on_demand_run_the_game_named_by_the_game_flag() {
    let (addr, stop) = start_with(games(), "posts").await;
    let mut ws = connect(&format!("ws://{addr}/ws?room=hall")).await;
    let welcome = hello(&mut ws, "ada").await;
    // The room's own game decides the world and the precision players see.
    assert_eq!(welcome.world_size, Vec2::splat(10.0));
    assert_eq!(welcome.pos_quantum, 1.0);
    assert_eq!(welcome.entity_id, 100);
    let keyframe = recv_snapshot(&mut ws).await;
    assert_eq!(keyframe.base_tick, 0);
    assert_eq!(keyframe.added.len(), 4, "three posts and the avatar");
    assert_eq!(keyframe.added[3].pos, [100, 5], "whole units, not 1/16");
    let (status, room) = http_json(addr, "GET", "/rooms/hall", "").await;
    assert_eq!(status, 200);
    assert_eq!(room["game"], "posts");
    stop.cancel();
}

#[tokio::test]
async fn the_room_api_creates_rooms_of_any_registered_game() {
    let (addr, stop) = start_with(games(), "arena").await;
    let (status, posts) = http_json(addr, "POST", "/rooms", r#"{"game":"posts","npcs":2}"#).await;
    assert_eq!(status, 201, "{posts}");
    assert_eq!(posts["game"], "posts");
    let (status, arena) = http_json(addr, "POST", "/rooms", "{}").await;
    assert_eq!(status, 201);
    assert_eq!(arena["game"], "arena", "the --game default");

    let (status, list) = http_json(addr, "GET", "/rooms", "").await;
    assert_eq!(status, 200);
    let mut games: Vec<(String, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["game"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    games.sort();
    let mut expected = vec![
        (posts["id"].as_str().unwrap().to_owned(), "posts".to_owned()),
        (arena["id"].as_str().unwrap().to_owned(), "arena".to_owned()),
    ];
    expected.sort();
    assert_eq!(games, expected);

    let id = posts["id"].as_str().unwrap();
    let mut ws = connect(&format!("ws://{addr}/ws?room={id}")).await;
    let welcome = hello(&mut ws, "bo").await;
    assert_eq!(welcome.world_size, Vec2::splat(10.0));
    assert_eq!(recv_snapshot(&mut ws).await.added.len(), 3);

    let (status, err) = http_json(addr, "POST", "/rooms", r#"{"game":"chess"}"#).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"],
        r#"unknown game "chess"; known games: arena, posts, tag"#
    );
    stop.cancel();
}

#[tokio::test]
async fn a_room_keeps_the_view_radius_it_was_created_with() {
    let (addr, stop) = start_with(games(), "arena").await;
    // Posts stand at x = 0..7 (whole units) on y = 5; the avatar at x = 100 sees none
    // within 50 units, and every one of them within 200.
    for (radius, seen) in [(50.0, 1), (200.0, 9)] {
        let body = format!(r#"{{"game":"posts","npcs":8,"view_radius":{radius}}}"#);
        let (status, room) = http_json(addr, "POST", "/rooms", &body).await;
        assert_eq!(status, 201, "{room}");
        assert_eq!(room["view_radius"], radius);
        let id = room["id"].as_str().unwrap();
        let mut ws = connect(&format!("ws://{addr}/ws?room={id}")).await;
        hello(&mut ws, "cy").await;
        let keyframe = recv_snapshot(&mut ws).await;
        assert_eq!(keyframe.added.len(), seen, "radius {radius}");
    }
    let (status, err) = http_json(addr, "POST", "/rooms", r#"{"view_radius":-1}"#).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("view_radius must be 0 to 1000000"))
    );
    stop.cancel();
}

#[tokio::test]
async fn a_server_refuses_to_start_with_an_unknown_game() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = tickcast::server::Config {
        game: "chess".into(),
        ..config()
    };
    let run = tickcast::server::serve(
        listener,
        config,
        games(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    let err = tokio::time::timeout(WAIT, run)
        .await
        .expect("returns at once")
        .expect_err("refused");
    assert_eq!(
        err.to_string(),
        r#"--game: unknown game "chess"; known games: arena, posts, tag"#
    );
}

#[test]
fn out_of_range_flags_are_not_the_callers_error() {
    // The operator may run rooms beyond what the API lets a caller ask for; a request
    // that sets nothing takes those defaults without a 400.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let config = tickcast::server::Config {
            tick_rate: 300,
            ..config()
        };
        tokio::spawn(tickcast::server::run(listener, config, stop.clone()));
        let (status, room) = http_json(addr, "POST", "/rooms", "{}").await;
        assert_eq!(status, 201, "{room}");
        assert_eq!(room["tick_rate"], 300);
        let (status, _) = http_json(addr, "POST", "/rooms", r#"{"tick_rate":300}"#).await;
        assert_eq!(status, 400, "a caller's own value is bounded");
        stop.cancel();
    });
}

/// A game that answers each message with an event to its sender (the bytes reversed)
/// and refuses an empty one.
struct Echo(Posts);

impl Game for Echo {
    fn spawn_player(&mut self, player: PlayerId) -> EntityId {
        self.0.spawn_player(player)
    }
    fn despawn_player(&mut self, entity: EntityId) {
        self.0.despawn_player(entity);
    }
    fn apply_input(&mut self, _: EntityId, _: &Input) {}
    fn step(&mut self, _: f32, _: &mut Events) {}
    fn world_size(&self) -> Vec2 {
        self.0.world_size()
    }
    fn write_state(&self, out: &mut Vec<EntityState>) {
        self.0.write_state(out);
    }
    fn on_message(
        &mut self,
        player: PlayerId,
        _: EntityId,
        message: &[u8],
        events: &mut Events,
    ) -> Result<(), MessageRefused> {
        if message.is_empty() {
            return Err(MessageRefused);
        }
        events.to_player(player, message.iter().rev().copied().collect::<Vec<u8>>());
        Ok(())
    }
}

#[tokio::test]
async fn game_messages_and_events_travel_over_a_real_socket() {
    let games = Games::new().with("echo", |_: &GameOptions| {
        Echo(Posts {
            npcs: 0,
            players: Vec::new(),
            next: 1,
        })
    });
    let (addr, stop) = start_with(games, "echo").await;
    let url = format!("ws://{addr}/ws?room=talk");
    let mut watcher = connect(&url).await;
    hello(&mut watcher, "watcher").await;
    let mut talker = connect(&url).await;
    hello(&mut talker, "talker").await;

    send(&mut talker, &message(vec![1, 2, 3])).await;
    let event = loop {
        match recv(&mut talker).await {
            ServerMsg::Event(event) => break event,
            ServerMsg::Snapshot(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(event.payload, [3, 2, 1], "the game's answer, to its sender");

    // Over the size limit (1 KiB by default): 1009. Refused by the game: 4009.
    send(&mut talker, &message(vec![0; 1025])).await;
    assert_eq!(
        expect_close(&mut talker).await,
        (1009, "message too big".to_owned())
    );
    let mut refused = connect(&url).await;
    hello(&mut refused, "refused").await;
    send(&mut refused, &message(Vec::new())).await;
    assert_eq!(
        expect_close(&mut refused).await,
        (4009, "game message refused".to_owned())
    );
    // The watcher heard no event and plays on.
    let tick = recv_snapshot(&mut watcher).await.tick;
    loop {
        match recv(&mut watcher).await {
            ServerMsg::Snapshot(s) if s.tick > tick => break,
            ServerMsg::Snapshot(_) => {}
            other => panic!("the watcher got {other:?}"),
        }
    }
    stop.cancel();
}

fn message(payload: Vec<u8>) -> ClientMsg {
    ClientMsg::Message(GameMessage { payload })
}
