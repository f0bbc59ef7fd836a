//! `--max-labelled-rooms` over real sockets: clients name rooms, so per-room series are
//! capped. With a cap of 2, the first two rooms get series of their own and every room
//! beyond reports into `room="_other"`; a room that ends takes its series with it and
//! frees its place, and `_other` goes when its last room does.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use tickcast::shared::DisconnectReason;

/// The `room` label of every per-room sample line on the page, with how many lines
/// carry it.
fn rooms_on(text: &str) -> BTreeMap<String, usize> {
    let mut rooms = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((_, rest)) = line.split_once("room=\"") {
            let name = rest.split('"').next().unwrap();
            *rooms.entry(name.to_owned()).or_default() += 1;
        }
    }
    rooms
}

/// Sample lines of one room across its four families: two tick histograms of 11
/// bounds, `+Inf`, sum and count, one overrun counter and one player gauge.
const LINES_PER_ROOM: usize = 2 * (11 + 1 + 2) + 2;

/// What the page says of the rooms: the players of each labelled series, and the
/// global player gauge. Also checks that each series is whole (all four families, the
/// duration histogram's `+Inf` bucket equal to its count: the crate updates a histogram
/// under one lock, so no page shows it half-updated).
fn rooms_seen(text: &str) -> (BTreeMap<String, u64>, u64) {
    let mut players = BTreeMap::new();
    for (room, lines) in rooms_on(text) {
        assert_eq!(lines, LINES_PER_ROOM, "room {room}:\n{text}");
        let duration = "tickcast_room_tick_duration_seconds";
        assert_eq!(
            count(
                text,
                &format!("{duration}_bucket{{room=\"{room}\",le=\"+Inf\"}}")
            ),
            count(text, &format!("{duration}_count{{room=\"{room}\"}}")),
            "room {room}"
        );
        let n = count(text, &format!("tickcast_room_players{{room=\"{room}\"}}"));
        players.insert(room, n);
    }
    (players, count(text, "tickcast_players"))
}

/// Reads `/metrics` until the labelled series are exactly `want` (room, players) and
/// the global gauge is their sum. A player's Welcome is sent before the room counts
/// it, so the counts may trail the Welcome by a moment; the set of series may not,
/// and is checked on every page read.
async fn wait_rooms(addr: SocketAddr, want: &[(&str, u64)]) -> String {
    let want: BTreeMap<String, u64> = want.iter().map(|(r, n)| ((*r).to_owned(), *n)).collect();
    let total: u64 = want.values().sum();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = metrics(addr).await;
        let (seen, global) = rooms_seen(&text);
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "the labelled rooms:\n{text}"
        );
        if seen == want && global == total {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "want {want:?} ({total} players), last seen {seen:?} ({global})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Joins `n` players to `room`, one after another.
async fn join(server: &TestServer, room: &str, n: usize) -> Vec<Ws> {
    let mut players = Vec::new();
    for i in 0..n {
        let mut ws = connect(&server.ws_url(room)).await;
        hello(&mut ws, &format!("{room}{i}")).await;
        players.push(ws);
    }
    players
}

/// Deletes `room` through the API and waits for each of its players' close.
async fn delete(server: &TestServer, room: &str, players: &mut [Ws]) {
    let (status, body) = http(server.addr, "DELETE", &format!("/rooms/{room}"), "").await;
    assert_eq!(status, 204, "{body}");
    for ws in players {
        assert_eq!(
            expect_close(ws).await.0,
            DisconnectReason::RoomClosed.code()
        );
    }
}

#[tokio::test]
async fn rooms_beyond_the_cap_report_into_other() {
    let mut c = config();
    c.max_labelled_rooms = 2;
    let server = start(c).await;
    let addr = server.addr;

    // Each room registers its series before it welcomes its first player, so rooms
    // joined one after another take the places in that order.
    let mut a = join(&server, "a", 1).await;
    let _b = join(&server, "b", 2).await;
    let mut c = join(&server, "c", 3).await;
    let text = wait_rooms(addr, &[("_other", 3), ("a", 1), ("b", 2)]).await;
    assert!(!text.contains("room=\"c\""), "{text}");
    assert_eq!(count(&text, "tickcast_rooms_open"), 3);

    // A fourth room adds up with the third in `_other`.
    let mut d = join(&server, "d", 1).await;
    let text = wait_rooms(addr, &[("_other", 4), ("a", 1), ("b", 2)]).await;
    assert!(!text.contains("room=\"d\""), "{text}");

    // A labelled room that ends takes its series with it before its players see their
    // close, and its place goes to the next room; `_other` is left as it was.
    delete(&server, "a", &mut a).await;
    let (seen, _) = rooms_seen(&metrics(addr).await);
    assert_eq!(
        seen,
        [("_other".to_owned(), 4), ("b".to_owned(), 2)].into(),
        "room a's series are gone"
    );
    let _e = join(&server, "e", 2).await;
    wait_rooms(addr, &[("_other", 4), ("b", 2), ("e", 2)]).await;

    // `_other` stays while a room reports into it, and goes with the last one.
    delete(&server, "c", &mut c).await;
    let (seen, _) = rooms_seen(&metrics(addr).await);
    assert_eq!(
        seen,
        [
            ("_other".to_owned(), 1),
            ("b".to_owned(), 2),
            ("e".to_owned(), 2)
        ]
        .into(),
        "room c's players are counted out of _other"
    );
    delete(&server, "d", &mut d).await;
    let text = metrics(addr).await;
    let (seen, _) = rooms_seen(&text);
    assert_eq!(
        seen,
        [("b".to_owned(), 2), ("e".to_owned(), 2)].into(),
        "no room reports into _other:\n{text}"
    );
    assert_eq!(count(&text, "tickcast_rooms_open"), 2);
    server.stop().await.unwrap();
}
