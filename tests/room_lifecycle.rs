//! The life of rooms, as docs/HOSTING.md and docs/PROTOCOL.md (sections 2, 3 and 6)
//! describe it, over real sockets: the `--max-rooms` limit at the handshake (503), at
//! `Hello` when two new rooms race (close 4000) and in the API (429); an empty room
//! ending by itself after `--room-idle-timeout`; the API refusing new rooms and
//! matchmaking with 503 while the server drains; and matchmaking that opens a new room
//! when no public room has a free seat.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use serde_json::json;
use tickcast::shared::DisconnectReason;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The ids of `GET /rooms`, in the order the server lists them.
async fn listed(addr: SocketAddr) -> Vec<String> {
    let (status, rooms) = http_json(addr, "GET", "/rooms", "").await;
    assert_eq!(status, 200, "{rooms}");
    rooms
        .as_array()
        .unwrap_or_else(|| panic!("GET /rooms is not an array: {rooms}"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_rooms_refuses_a_new_room_at_the_handshake_at_hello_and_in_the_api() {
    let mut c = config();
    c.max_rooms = 1;
    c.max_players = 2;
    let server = start(c).await;
    let addr = server.addr;

    // Both upgrades pass: no room exists yet, and a room is only created by the Hello
    // of its first player. So the race PROTOCOL.md section 3 step 4 covers can be set up
    // exactly: two connections to two new rooms, then their Hellos one after the other.
    let mut first = connect(&server.ws_url("first")).await;
    let mut racer = connect(&server.ws_url("racer")).await;
    hello(&mut first, "first").await;
    send(&mut racer, &hello_msg("racer")).await;
    assert_eq!(
        expect_close(&mut racer).await,
        close_of(DisconnectReason::RoomFull),
        "a second room at --max-rooms 1 is refused at Hello with 4000"
    );

    // Now that the server hosts its one room, a join naming a new room is refused at the
    // handshake, with a body that says why.
    assert_eq!(
        refusal(&server.ws_url("third")).await,
        (503, "too many rooms on this server".to_owned())
    );
    assert_eq!(listed(addr).await, ["first"], "the racer made no room");

    // The room that exists can still be joined: the limit is on rooms, not players.
    let mut second = connect(&server.ws_url("first")).await;
    hello(&mut second, "second").await;
    wait_players(addr, "first", 2).await;

    // The API may not create a room either, and matchmaking finds no seat (the one room
    // is full) and may not open a room: both 429, with a JSON error.
    let (status, body) = http_json(addr, "POST", "/rooms", "{}").await;
    assert_eq!(
        (status, body),
        (429, json!({"error": "too many rooms"})),
        "POST /rooms at --max-rooms"
    );
    let (status, body) = http_json(addr, "POST", "/matchmake", "").await;
    assert_eq!(
        (status, body),
        (429, json!({"error": "too many rooms"})),
        "POST /matchmake with every room full at --max-rooms"
    );
    assert_eq!(listed(addr).await, ["first"]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_room_ends_after_the_idle_timeout_and_an_occupied_one_does_not() {
    const IDLE: Duration = Duration::from_millis(300);
    let mut c = config();
    c.room_idle_timeout = IDLE;
    let server = start(c).await;
    let addr = server.addr;

    // A room made by the API that nobody joins: its idle time starts at its creation.
    let (status, made) = http_json(addr, "POST", "/rooms", "{}").await;
    assert_eq!(status, 201, "{made}");
    let made = made["id"].as_str().unwrap().to_owned();

    // A room with a player stays while the player is in, however long that is. Time is
    // counted in the room's own ticks: at 30 ticks per second the 300 ms idle timeout is
    // 9 ticks, and the player stays for 30, over three times as long.
    let mut player = connect(&server.ws_url("kept")).await;
    let joined_at = hello(&mut player, "stays").await.server_tick;
    let idle_ticks = (IDLE.as_secs_f64() * 30.0).ceil() as u64;
    let mut last = joined_at;
    while last < joined_at + 3 * idle_ticks + 3 {
        last = recv_snapshot(&mut player).await.tick;
    }
    let (status, kept) = http_json(addr, "GET", "/rooms/kept", "").await;
    assert_eq!(status, 200, "the occupied room is still there: {kept}");
    assert_eq!(kept["players"].as_u64(), Some(1), "{kept}");
    // Meanwhile the room nobody joined has ended (it was idle from its creation on).
    eventually("only the occupied room left in GET /rooms", || async {
        let ids = listed(addr).await;
        if ids == ["kept"] {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;

    // Once its last player leaves, it goes too.
    leave(&mut player).await;
    eventually("the emptied room gone from GET /rooms", || async {
        let ids = listed(addr).await;
        if ids.is_empty() {
            Ok(())
        } else {
            Err(format!("{ids:?}"))
        }
    })
    .await;
    for id in [made.as_str(), "kept"] {
        let (status, body) = http_json(addr, "GET", &format!("/rooms/{id}"), "").await;
        assert_eq!(
            (status, body),
            (404, json!({"error": format!("no room {id:?}")}))
        );
    }
    let (_, metrics) = http(addr, "GET", "/metrics", "").await;
    assert!(
        metrics.lines().any(|l| l == "tickcast_rooms_open 0"),
        "no room is open:\n{metrics}"
    );

    // The name is free again: a join creates a new room, whose tick count starts over.
    let mut again = connect(&server.ws_url("kept")).await;
    let fresh = hello(&mut again, "again").await.server_tick;
    assert!(
        fresh < last,
        "a new room (at tick {fresh}), not the old one (at tick {last})"
    );
    server.stop().await.unwrap();
}

/// A server run with [`tickcast::server::run_until`], so a test holds both tokens.
struct Draining {
    addr: SocketAddr,
    drain: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

async fn start_until(config: tickcast::server::Config) -> Draining {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let drain = CancellationToken::new();
    let task = tokio::spawn(tickcast::server::run_until(
        listener,
        config,
        drain.clone(),
        CancellationToken::new(),
    ));
    Draining { addr, drain, task }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_api_answers_503_to_new_rooms_and_matchmaking_while_draining() {
    let mut c = config();
    // Far longer than the test: the drain lasts exactly as long as the player stays.
    c.drain_timeout = Duration::from_secs(3600);
    let server = start_until(c).await;
    let addr = server.addr;
    let mut player = connect(&format!("ws://{addr}/ws?room=running")).await;
    hello(&mut player, "stays").await;
    recv_snapshot(&mut player).await;
    let (status, body) = http_json(addr, "POST", "/rooms", "{}").await;
    assert_eq!(status, 201, "rooms are created before the drain: {body}");

    // The drain token is the server's own: once cancelled, every later request sees it.
    server.drain.cancel();
    let shutting_down = json!({"error": "server is shutting down"});
    assert_eq!(
        http_json(addr, "POST", "/rooms", "{}").await,
        (503, shutting_down.clone()),
        "POST /rooms while draining"
    );
    assert_eq!(
        http_json(addr, "POST", "/matchmake", "").await,
        (503, shutting_down),
        "POST /matchmake while draining"
    );
    // The running game goes on, and the rest of the API still answers.
    // (Strictly later, not necessarily the next tick: a loaded machine may skip one.)
    let tick = recv_snapshot(&mut player).await.tick;
    assert!(recv_snapshot(&mut player).await.tick > tick);
    let (status, room) = http_json(addr, "GET", "/rooms/running", "").await;
    assert_eq!((status, room["players"].as_u64()), (200, Some(1)), "{room}");
    assert!(!server.task.is_finished(), "a player is still playing");

    // The last player leaving ends the drain.
    leave(&mut player).await;
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("the drain ends when the last player leaves")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchmaking_opens_a_new_room_when_no_public_room_has_space() {
    let mut c = config();
    c.max_players = 1; // the default options: one seat per matchmade room
    let server = start(c).await;
    let addr = server.addr;
    let is_id = |id: &str| {
        id.len() == 12
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };

    // No room at all: matchmaking opens one, with the server's default options.
    let (status, first) = http_json(addr, "POST", "/matchmake", "").await;
    assert_eq!(status, 200, "{first}");
    let m1 = first["room"].as_str().unwrap().to_owned();
    assert!(is_id(&m1), "{m1:?}");
    assert_eq!(listed(addr).await, [m1.as_str()]);
    // Its one seat is held by the ticket, so a plain join finds it full.
    assert_eq!(refused(&server.ws_url(&m1)).await, 409);

    // A private room with free seats is never matchmade; a public one whose only seat is
    // taken by a player has no space.
    let (_, private) = http_json(
        addr,
        "POST",
        "/rooms",
        r#"{"private":true,"max_players":4}"#,
    )
    .await;
    let private = private["id"].as_str().unwrap().to_owned();
    let (_, full) = http_json(addr, "POST", "/rooms", r#"{"max_players":1}"#).await;
    let full = full["id"].as_str().unwrap().to_owned();
    let mut sitter = connect(&server.ws_url(&full)).await;
    hello(&mut sitter, "sitter").await;
    wait_players(addr, &full, 1).await;

    let (status, second) = http_json(addr, "POST", "/matchmake", "").await;
    assert_eq!(status, 200, "{second}");
    let m2 = second["room"].as_str().unwrap().to_owned();
    assert!(is_id(&m2), "{m2:?}");
    assert!(
        ![&m1, &private, &full].contains(&&m2),
        "a new room: {m2} is none of {m1}, {private}, {full}"
    );
    let (status, room) = http_json(addr, "GET", &format!("/rooms/{m2}"), "").await;
    assert_eq!(status, 200, "{room}");
    assert_eq!(
        (
            room["capacity"].as_u64(),
            room["tick_rate"].as_u64(),
            room["npcs"].as_u64(),
            room["private"].as_bool(),
            room["players"].as_u64()
        ),
        (Some(1), Some(30), Some(16), Some(false), Some(0)),
        "the default options (--max-players 1, --tick-rate 30, --npcs 16), public, empty"
    );
    let mut public = vec![m1.clone(), m2.clone(), full.clone()];
    public.sort();
    assert_eq!(listed(addr).await, public, "three public rooms, by id");

    // Each ticket takes its holder into its own room.
    for (m, room) in [(&first, &m1), (&second, &m2)] {
        let mut ws = connect(&format!("ws://{addr}{}", m["url"].as_str().unwrap())).await;
        hello(&mut ws, "ticketed").await;
        wait_players(addr, room, 1).await;
    }
    server.stop().await.unwrap();
}
