//! The room API end to end over HTTP: create, list, inspect, matchmake and join through
//! the ticket, full rooms, private rooms, delete, and every error status.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use tickcast::shared::{DisconnectReason, SUBPROTOCOL};

#[tokio::test]
async fn create_list_inspect_delete() {
    let server = start(config()).await;
    let addr = server.addr;
    let (status, room) = http_json(
        addr,
        "POST",
        "/rooms",
        r#"{"max_players":8,"tick_rate":20,"npcs":5}"#,
    )
    .await;
    assert_eq!(status, 201, "{room}");
    let id = room["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 12);
    assert_eq!(
        (
            room["capacity"].as_u64(),
            room["tick_rate"].as_u64(),
            room["npcs"].as_u64()
        ),
        (Some(8), Some(20), Some(5))
    );
    assert_eq!(
        (
            room["game"].as_str(),
            room["players"].as_u64(),
            room["private"].as_bool()
        ),
        (Some("arena"), Some(0), Some(false))
    );

    let (status, defaults) = http_json(addr, "POST", "/rooms", "").await;
    assert_eq!(status, 201, "an empty body means the defaults");
    assert_eq!(
        (
            defaults["capacity"].as_u64(),
            defaults["tick_rate"].as_u64()
        ),
        (Some(128), Some(30))
    );
    assert_eq!(
        http(
            addr,
            "DELETE",
            &format!("/rooms/{}", defaults["id"].as_str().unwrap()),
            ""
        )
        .await
        .0,
        204
    );
    let (_, private) = http_json(addr, "POST", "/rooms", r#"{"private":true}"#).await;
    let private_id = private["id"].as_str().unwrap().to_owned();
    let (status, list) = http_json(addr, "GET", "/rooms", "").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str()], "private rooms are not listed");
    assert_eq!(
        http_json(addr, "GET", &format!("/rooms/{private_id}"), "")
            .await
            .0,
        200,
        "but can be inspected"
    );

    // A player joins the created room by id and plays at its tick rate.
    let mut ws = connect(&server.ws_url(&id)).await;
    let welcome = hello(&mut ws, "p").await;
    assert_eq!(welcome.tick_rate, 20);
    recv_snapshot(&mut ws).await;
    let (_, room) = http_json(addr, "GET", &format!("/rooms/{id}"), "").await;
    assert_eq!(room["players"].as_u64(), Some(1));

    // Deleting it closes the player with 4006 and removes it.
    assert_eq!(
        http(addr, "DELETE", &format!("/rooms/{id}"), "").await.0,
        204
    );
    let (code, reason) = expect_close(&mut ws).await;
    assert_eq!(
        (code, reason.as_str()),
        (
            DisconnectReason::RoomClosed.code(),
            DisconnectReason::RoomClosed.reason()
        )
    );
    assert_eq!(
        http_json(addr, "GET", &format!("/rooms/{id}"), "").await.0,
        404
    );
    assert_eq!(
        http_json(addr, "DELETE", &format!("/rooms/{id}"), "")
            .await
            .0,
        404
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn errors_are_json_with_fitting_statuses() {
    let mut c = config();
    c.max_rooms = 2;
    let server = start(c).await;
    let addr = server.addr;
    for (body, what) in [
        (r#"{"max_players":0}"#, "max_players"),
        (r#"{"tick_rate":1000}"#, "tick_rate"),
        (r#"{"npcs":1000000}"#, "npcs"),
        (r#"{"colour":"red"}"#, "unknown field"),
        (r#"{"max_players":"many"}"#, "invalid type"),
        ("not json", "bad options"),
    ] {
        let (status, err) = http_json(addr, "POST", "/rooms", body).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            err["error"].as_str().unwrap().contains(what),
            "{body}: {err}"
        );
    }
    let big = format!(r#"{{"npcs":1{}}}"#, " ".repeat(5000));
    assert_eq!(http_json(addr, "POST", "/rooms", &big).await.0, 413);
    assert_eq!(http_json(addr, "GET", "/rooms/nope", "").await.0, 404);
    assert_eq!(http_json(addr, "PUT", "/rooms", "").await.0, 405);
    assert_eq!(
        http_json(addr, "POST", "/rooms", r#"{"private":true}"#)
            .await
            .0,
        201
    );
    assert_eq!(
        http_json(addr, "POST", "/rooms", r#" {"private": true} "#)
            .await
            .0,
        201
    );
    let (status, err) = http_json(addr, "POST", "/rooms", "{}").await;
    assert_eq!(status, 429, "{err}");
    assert_eq!(
        http_json(addr, "POST", "/matchmake", "").await.0,
        429,
        "no public room with space, and no room for a new one"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn matchmaking_fills_the_fullest_room_through_single_use_tickets() {
    let server = start(config()).await;
    let addr = server.addr;
    let (_, a) = http_json(addr, "POST", "/rooms", r#"{"max_players":2}"#).await;
    let (_, b) = http_json(addr, "POST", "/rooms", r#"{"max_players":8}"#).await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    let mut first = connect(&server.ws_url(&a)).await;
    hello(&mut first, "first").await;

    // Room a is the fullest with space.
    let (status, m) = http_json(addr, "POST", "/matchmake", "").await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["room"].as_str(), Some(a.as_str()));
    let ticket = m["ticket"].as_str().unwrap().to_owned();
    assert_eq!(ticket.len(), 32);
    assert_eq!(
        m["url"].as_str().unwrap(),
        format!("/ws?room={a}&ticket={ticket}")
    );

    // Its last seat is held for the ticket: a plain join is refused, the next match goes to b.
    assert_eq!(refused(&server.ws_url(&a)).await, 409);
    let (_, m2) = http_json(addr, "POST", "/matchmake", "").await;
    assert_eq!(m2["room"].as_str(), Some(b.as_str()));

    // The ticket joins once.
    let url = format!("ws://{addr}{}", m["url"].as_str().unwrap());
    let mut second = connect(&url).await;
    hello(&mut second, "second").await;
    recv_snapshot(&mut second).await;
    assert_eq!(refused(&url).await, 403, "single use");
    let wrong_room = format!(
        "ws://{addr}/ws?room={a}&ticket={}",
        m2["ticket"].as_str().unwrap()
    );
    assert_eq!(refused(&wrong_room).await, 403);
    let made_up = format!("ws://{addr}/ws?room={b}&ticket=00112233445566778899aabbccddeeff");
    assert_eq!(refused(&made_up).await, 403);
    let (_, room_a) = http_json(addr, "GET", &format!("/rooms/{a}"), "").await;
    assert_eq!(room_a["players"].as_u64(), Some(2));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_unused_ticket_expires_and_frees_its_seat() {
    let ttl = Duration::from_millis(300);
    let mut c = config();
    c.ticket_ttl = ttl;
    let server = start(c).await;
    let addr = server.addr;
    let (_, room) = http_json(addr, "POST", "/rooms", r#"{"max_players":1}"#).await;
    let id = room["id"].as_str().unwrap().to_owned();
    let before_issue = Instant::now();
    let (_, m) = http_json(addr, "POST", "/matchmake", "").await;
    assert_eq!(m["room"].as_str(), Some(id.as_str()));
    assert_eq!(m["expires_in_ms"].as_u64(), Some(300));
    assert_eq!(refused(&server.ws_url(&id)).await, 409);

    // The seat comes back once the ticket has expired and the sweep (once a second) has
    // purged it; until then a plain join is refused with 409. Ask until one gets in.
    let deadline = Instant::now() + WAIT;
    let mut ws = loop {
        match connect_with(&server.ws_url(&id), Some(SUBPROTOCOL), None).await {
            Ok(ws) => break ws,
            Err(e) => {
                assert_eq!(refused_status(&e), 409, "the seat is held, nothing else");
                assert!(Instant::now() < deadline, "the seat was never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // The ticket was issued after `before_issue`, so it cannot expire sooner than this.
    assert!(
        before_issue.elapsed() >= ttl,
        "the seat was freed after {:?}, before the ticket's {ttl:?}",
        before_issue.elapsed()
    );
    let url = format!("ws://{addr}{}", m["url"].as_str().unwrap());
    assert_eq!(refused(&url).await, 403, "expired");
    hello(&mut ws, "takes-the-seat").await;
    let (_, room) = http_json(addr, "GET", &format!("/rooms/{id}"), "").await;
    assert_eq!(room["players"].as_u64(), Some(1));
    server.stop().await.unwrap();
}
