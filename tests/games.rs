//! Games plugged in at run time: a registry of named factories, `--game` for rooms
//! created on demand, `"game"` in `POST /rooms`, and each room's own world size,
//! quantum and view radius. Real sockets on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::{config, connect, hello, http_json, recv_snapshot, WAIT};
use tickcast::server::game::{EntityId, Game, GameOptions, Games};
use tickcast::shared::glam::Vec2;
use tickcast::shared::{EntityKind, EntityState, Input};
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
    fn spawn_player(&mut self) -> EntityId {
        let id = self.next;
        self.next += 1;
        self.players.push(id);
        id
    }

    fn despawn_player(&mut self, entity: EntityId) {
        self.players.retain(|&e| e != entity);
    }

    fn apply_input(&mut self, _: EntityId, _: &Input) {}

    fn step(&mut self, _: f32) {}

    fn world_size(&self) -> Vec2 {
        Vec2::splat(10.0)
    }

    fn write_state(&self, out: &mut Vec<EntityState>) {
        let post = |id: u32, kind| EntityState {
            id,
            kind,
            pos: Vec2::new(id as f32, 5.0),
            vel: Vec2::ZERO,
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
        r#"unknown game "chess"; known games: arena, posts"#
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
        r#"--game: unknown game "chess"; known games: arena, posts"#
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
