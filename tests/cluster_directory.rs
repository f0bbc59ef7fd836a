//! The cluster room directory (issue 12, part 1) against a real `redis-server`: several
//! `Directory` instances in this process play the nodes of one cluster.
//!
//! Each test starts its own Redis on a free loopback port (tests/common/redis.rs) and
//! gives its nodes short TTLs, so expiry is driven by the configuration rather than by
//! waiting out the production 10 s.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::redis::RedisServer;
use common::{POLL, WAIT};
use tickcast::server::cluster::{
    ClusterConfig, ClusterSecret, Directory, DirectoryError, Health, RoomInfo, TicketError,
};
use tokio::task::JoinHandle;

const SECRET: &[u8] = b"test-cluster-secret-0123456789abcdef";

/// A node of the test cluster: short TTL and refresh, quick retries.
fn config(redis: &RedisServer, id: &str) -> ClusterConfig {
    let secret = ClusterSecret::new(SECRET).expect("secret");
    let mut c = ClusterConfig::new(redis.url(), id, format!("ws://{id}.test:8080"), secret);
    c.prefix = "test".into();
    c.node_ttl = Duration::from_secs(2);
    c.refresh = Duration::from_millis(200);
    c.ticket_ttl = Duration::from_secs(10);
    c.node_capacity = 100;
    c.backoff_base = Duration::from_millis(20);
    c.backoff_cap = Duration::from_millis(200);
    c.redis_timeout = Duration::from_millis(500);
    c
}

/// Starts a node and waits until it is registered.
async fn node(config: ClusterConfig) -> (Directory, JoinHandle<()>) {
    let (directory, task) = Directory::start(config).expect("start");
    let task = tokio::spawn(task);
    wait_for("registration", || async { directory.health().is_healthy() }).await;
    (directory, task)
}

/// Polls `check` until it holds, failing after [`WAIT`].
async fn wait_for<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

fn room(id: &str, players: u32, capacity: u32, public: bool) -> RoomInfo {
    RoomInfo {
        id: id.into(),
        game: "arena".into(),
        players,
        capacity,
        public,
    }
}

async fn raw(redis: &RedisServer) -> ::redis::aio::MultiplexedConnection {
    ::redis::Client::open(redis.url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect")
}

async fn pttl(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
    ::redis::cmd("PTTL")
        .arg(key)
        .query_async(conn)
        .await
        .expect("PTTL")
}

/// `INFO commandstats` as command -> calls.
async fn command_calls(conn: &mut ::redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = ::redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .expect("INFO");
    info.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("cmdstat_")?;
            let (name, stats) = rest.split_once(':')?;
            let calls = stats.strip_prefix("calls=")?.split(',').next()?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

async fn reset_stats(conn: &mut ::redis::aio::MultiplexedConnection) {
    let _: () = ::redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(conn)
        .await
        .expect("RESETSTAT");
}

#[tokio::test]
async fn nodes_register_and_rooms_are_listed_across_nodes() {
    let Some(redis) = RedisServer::start("nodes_register_and_rooms_are_listed_across_nodes") else {
        return;
    };
    let (a, _ta) = node(config(&redis, "a")).await;
    let (b, _tb) = node(config(&redis, "b")).await;
    let (c, _tc) = node(config(&redis, "c")).await;

    let nodes = c.list_nodes().await.expect("nodes");
    let seen: Vec<(&str, &str, u32)> = nodes
        .iter()
        .map(|n| (n.id.as_str(), n.url.as_str(), n.rooms))
        .collect();
    assert_eq!(
        seen,
        [
            ("a", "ws://a.test:8080", 0),
            ("b", "ws://b.test:8080", 0),
            ("c", "ws://c.test:8080", 0)
        ]
    );

    a.publish_room(room("r1", 3, 8, true))
        .await
        .expect("publish");
    a.publish_room(room("secret", 1, 2, false))
        .await
        .expect("publish");
    b.publish_room(room("r2", 0, 4, true))
        .await
        .expect("publish");

    let public = c.list_public().await.expect("list");
    let seen: Vec<(&str, &str, &str, u32, u32)> = public
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.node.as_str(),
                r.url.as_str(),
                r.players,
                r.capacity,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("r1", "a", "ws://a.test:8080", 3, 8),
            ("r2", "b", "ws://b.test:8080", 0, 4)
        ]
    );
    let all = c.list_rooms().await.expect("list");
    assert_eq!(all.len(), 3);
    assert!(all.iter().any(|r| r.id == "secret" && !r.public));

    // Counts follow the room's life, and the node's totals with them.
    a.update_players("r1", 5).await.expect("update");
    b.remove_room("r2").await.expect("remove");
    let public = c.list_public().await.expect("list");
    assert_eq!(public.len(), 1);
    assert_eq!((public[0].id.as_str(), public[0].players), ("r1", 5));
    let nodes = c.list_nodes().await.expect("nodes");
    let totals: Vec<(u32, u32, f64)> = nodes.iter().map(|n| (n.rooms, n.players, n.load)).collect();
    assert_eq!(totals, [(2, 6, 0.06), (0, 0, 0.0), (0, 0, 0.0)]);
}

#[tokio::test]
async fn concurrent_matchmaking_on_several_nodes_never_overfills_a_room() {
    let Some(redis) = RedisServer::start("concurrent_matchmaking_never_overfills") else {
        return;
    };
    let (a, _ta) = node(config(&redis, "a")).await;
    let (b, _tb) = node(config(&redis, "b")).await;
    let (c, _tc) = node(config(&redis, "c")).await;
    a.publish_room(room("big", 0, 10, true))
        .await
        .expect("publish");
    // A private room is never offered, however empty.
    b.publish_room(room("private", 0, 50, false))
        .await
        .expect("publish");

    // 50 requests at once, spread over the three nodes.
    let directories = [a.clone(), b.clone(), c.clone()];
    let requests: Vec<_> = (0..50)
        .map(|i| {
            let d = directories[i % 3].clone();
            tokio::spawn(async move { d.reserve_seat().await })
        })
        .collect();
    let mut seats = Vec::new();
    let mut none = 0;
    for r in requests {
        match r.await.expect("task").expect("reserve") {
            Some(seat) => seats.push(seat),
            None => none += 1,
        }
    }
    assert_eq!((seats.len(), none), (10, 40));
    assert!(seats
        .iter()
        .all(|s| s.node == "a" && s.room == "big" && s.url == "ws://a.test:8080"));
    let mut taken: Vec<u32> = seats.iter().map(|s| s.taken).collect();
    taken.sort_unstable();
    assert_eq!(taken, (1..=10).collect::<Vec<_>>());
    let listed = b.list_public().await.expect("list");
    assert_eq!((listed[0].id.as_str(), listed[0].reserved), ("big", 10));

    // Every ticket verifies on the owning node, for its reservation, and only there.
    let now = SystemTime::now();
    for seat in &seats {
        let claims = a.verify_ticket(&seat.ticket, now).expect("verify");
        assert_eq!(
            (claims.room.as_str(), claims.rid.as_str()),
            ("big", seat.id.as_str())
        );
        assert_eq!(
            b.verify_ticket(&seat.ticket, now),
            Err(TicketError::WrongNode("a".into()))
        );
    }
    let mut rids: Vec<&str> = seats.iter().map(|s| s.id.as_str()).collect();
    rids.sort_unstable();
    rids.dedup();
    assert_eq!(rids.len(), 10);

    // Full: a new room goes to a live node with the least load.
    let placement = c.place_new_room().await.expect("place").expect("a node");
    assert_ne!(placement.node, "a");
}

#[tokio::test]
async fn the_fullest_room_fills_first_and_new_rooms_go_to_the_least_loaded_node() {
    let Some(redis) = RedisServer::start("fullest_room_first") else {
        return;
    };
    let (a, _ta) = node(config(&redis, "a")).await;
    let (b, _tb) = node(config(&redis, "b")).await;
    a.publish_room(room("half", 5, 10, true))
        .await
        .expect("publish");
    b.publish_room(room("nearly", 3, 4, true))
        .await
        .expect("publish");
    b.publish_room(room("empty", 0, 10, true))
        .await
        .expect("publish");

    let mut order = Vec::new();
    for _ in 0..4 {
        let seat = a.reserve_seat().await.expect("reserve").expect("a seat");
        order.push(format!("{}/{}", seat.node, seat.room));
    }
    // nearly 3/4 -> full; half 5/10 -> 6/10 ...; ties go to the lower node id.
    assert_eq!(order, ["b/nearly", "a/half", "a/half", "a/half"]);

    // a carries 5 players of 100, b 3: b is less loaded.
    assert_eq!(
        a.place_new_room().await.expect("place").map(|p| p.node),
        Some("b".into())
    );
    // A node at full load takes no new room.
    let mut full = config(&redis, "c");
    full.node_capacity = 4;
    let (c, _tc) = node(full).await;
    c.publish_room(room("c1", 4, 4, false))
        .await
        .expect("publish");
    let mut placed = Vec::new();
    for _ in 0..3 {
        placed.push(a.place_new_room().await.expect("place").expect("node").node);
    }
    // The lowest load wins whatever is pending there (b at 0.03 vs a at 0.05; pending
    // only breaks ties), and c, at load 1, is never picked.
    assert!(placed.iter().all(|n| n == "b"), "{placed:?}");

    // Two idle nodes of equal load: the pending count spreads a burst of placements.
    let (d, _td) = node(config(&redis, "d")).await;
    let (e, _te) = node(config(&redis, "e")).await;
    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
    c.leave().await.expect("leave");
    let first = d.place_new_room().await.expect("place").expect("node").node;
    let second = d.place_new_room().await.expect("place").expect("node").node;
    assert_eq!((first.as_str(), second.as_str()), ("d", "e"));
    // Once d opens the room it was sent, its pending placement is no longer counted.
    d.publish_room(room("d1", 0, 10, true))
        .await
        .expect("publish");
    e.publish_room(room("e1", 0, 10, true))
        .await
        .expect("publish");
    let third = e.place_new_room().await.expect("place").expect("node").node;
    assert_eq!(third, "d");
}

#[tokio::test]
async fn an_expired_or_released_reservation_frees_its_seat() {
    let Some(redis) = RedisServer::start("an_expired_reservation_frees_its_seat") else {
        return;
    };
    // Two nodes with different ticket TTLs reserve in one room: the short one expires
    // while the long one (and so the reservations key) lives on.
    let mut short = config(&redis, "a");
    short.ticket_ttl = Duration::from_millis(300);
    let (a, _ta) = node(short).await;
    let (b, _tb) = node(config(&redis, "b")).await;
    a.publish_room(room("trio", 1, 3, true))
        .await
        .expect("publish");

    let long = b.reserve_seat().await.expect("reserve").expect("a seat");
    let first = a.reserve_seat().await.expect("reserve").expect("a seat");
    assert_eq!((long.taken, first.taken, first.capacity), (2, 3, 3));
    assert_eq!(a.reserve_seat().await.expect("reserve"), None);

    // The short seat comes back once it expires, and not before; the long one holds.
    let deadline = Instant::now() + WAIT;
    let again = loop {
        if let Some(seat) = a.reserve_seat().await.expect("reserve") {
            break seat;
        }
        assert!(Instant::now() < deadline, "the seat never came back");
        tokio::time::sleep(POLL).await;
    };
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    assert!(
        now_ms >= u128::from(first.expires_at_ms),
        "freed before it expired"
    );
    assert_eq!(again.taken, 3);
    let listed = b.list_public().await.expect("list");
    assert_eq!(listed[0].reserved, 2);
    // Its ticket has expired with it.
    assert_eq!(
        a.verify_ticket(&first.ticket, SystemTime::now() + Duration::from_secs(1)),
        Err(TicketError::Expired)
    );

    // A released seat is free at once; releasing twice finds nothing.
    assert_eq!(a.release_seat("a", "trio", &long.id).await, Ok(true));
    assert_eq!(a.release_seat("a", "trio", &long.id).await, Ok(false));
    let freed = b
        .reserve_seat()
        .await
        .expect("reserve")
        .expect("the released seat");
    assert_eq!(freed.taken, 3);
}

#[tokio::test]
async fn a_node_that_stops_refreshing_vanishes_within_its_ttl_with_its_rooms_and_seats() {
    let Some(redis) = RedisServer::start("a_dead_node_vanishes") else {
        return;
    };
    let mut conn = raw(&redis).await;
    let mut dying = config(&redis, "a");
    dying.node_ttl = Duration::from_millis(800);
    dying.ticket_ttl = Duration::from_secs(60);
    let ttl = dying.node_ttl;
    let (a, task) = node(dying).await;
    let (b, _tb) = node(config(&redis, "b")).await;
    a.publish_room(room("doomed", 0, 4, true))
        .await
        .expect("publish");
    let seat = b.reserve_seat().await.expect("reserve").expect("a seat");
    assert_eq!(seat.room, "doomed");

    // The process dies: its refresh stops, nothing is removed on its behalf.
    task.abort();
    let died = Instant::now();
    for key in ["test:node:a", "test:rooms:a", "test:seats:a"] {
        let left = pttl(&mut conn, key).await;
        assert!(left > 0 && left <= 800, "{key} PTTL {left}");
    }
    wait_for("the dead node to vanish", || async {
        b.list_nodes()
            .await
            .expect("nodes")
            .iter()
            .all(|n| n.id != "a")
    })
    .await;
    assert!(
        died.elapsed() <= ttl + Duration::from_secs(1),
        "{:?}",
        died.elapsed()
    );

    // Its rooms went with it, and its reserved seat no longer holds anything.
    assert!(b.list_rooms().await.expect("rooms").is_empty());
    assert_eq!(b.reserve_seat().await.expect("reserve"), None);
    assert_eq!(
        b.place_new_room().await.expect("place").map(|p| p.node),
        Some("b".into())
    );
    let members: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg("test:nodes")
        .query_async(&mut conn)
        .await
        .expect("SMEMBERS");
    assert_eq!(members, ["b"]);
    for key in ["test:node:a", "test:rooms:a", "test:seats:a"] {
        assert_eq!(pttl(&mut conn, key).await, -2, "{key} still exists");
    }
    // The reservation's own key only outlives the node until the ticket TTL.
    let left = pttl(&mut conn, "test:resv:a:doomed").await;
    assert!(left <= 60_000, "reservations PTTL {left}");
}

#[tokio::test]
async fn redis_restarted_under_running_nodes_degrades_then_they_register_again() {
    let Some(mut redis) = RedisServer::start("redis_restarted_under_running_nodes") else {
        return;
    };
    let (a, _ta) = node(config(&redis, "a")).await;
    let (b, _tb) = node(config(&redis, "b")).await;
    a.publish_room(room("before", 2, 8, true))
        .await
        .expect("publish");

    redis.kill();
    wait_for("a degraded", || async { !a.health().is_healthy() }).await;
    let Health::Degraded(why) = a.health() else {
        unreachable!("waited for it")
    };
    assert!(!why.is_empty());
    // Writes are kept, the cluster-wide view is unavailable, the node goes on.
    assert!(matches!(
        a.publish_room(room("during", 1, 8, true)).await,
        Err(DirectoryError::Unavailable(_))
    ));
    a.update_players("before", 3).await.expect_err("degraded");
    assert!(matches!(
        a.reserve_seat().await,
        Err(DirectoryError::Unavailable(_))
    ));
    let errors = a.metrics().redis_errors.get();
    assert!(errors >= 1, "errors counted: {errors}");
    assert_eq!(a.metrics().degraded.get(), 1);
    assert_eq!(a.metrics().reregistrations.get(), 0);

    redis.restart();
    wait_for("a healthy", || async { a.health().is_healthy() }).await;
    wait_for("b healthy", || async { b.health().is_healthy() }).await;
    assert_eq!(a.metrics().degraded.get(), 0);
    assert_eq!(a.metrics().reregistrations.get(), 1);
    assert_eq!(b.metrics().reregistrations.get(), 1);

    // Everything a held, including what changed while Redis was away, is back.
    let rooms: Vec<(String, u32)> = b
        .list_public()
        .await
        .expect("list")
        .into_iter()
        .map(|r| (r.id, r.players))
        .collect();
    assert_eq!(rooms, [("before".to_owned(), 3), ("during".to_owned(), 1)]);
    let nodes: Vec<String> = b
        .list_nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(nodes, ["a", "b"]);
    assert!(a.reserve_seat().await.expect("reserve").is_some());
    // The re-registered rooms expire with the node again.
    let mut conn = raw(&redis).await;
    for key in ["test:node:a", "test:rooms:a", "test:seats:a"] {
        let left = pttl(&mut conn, key).await;
        assert!(left > 0 && left <= 2000, "{key} PTTL {left}");
    }

    // Redis loses everything between two refreshes (a restart faster than one): no
    // call fails, and the next refresh finds the node gone and registers it again.
    let _: () = ::redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("FLUSHALL");
    wait_for("a registered again", || async {
        a.metrics().reregistrations.get() == 2
    })
    .await;
    let rooms = b.list_public().await.expect("list");
    assert_eq!(rooms.len(), 2);
}

#[tokio::test]
async fn a_leaving_node_is_gone_from_the_directory_at_once() {
    let Some(redis) = RedisServer::start("a_leaving_node_is_gone") else {
        return;
    };
    let (a, task) = node(config(&redis, "a")).await;
    let (b, _tb) = node(config(&redis, "b")).await;
    a.publish_room(room("ra", 1, 4, true))
        .await
        .expect("publish");
    let seat = b.reserve_seat().await.expect("reserve").expect("seat");
    assert_eq!(seat.node, "a");

    a.leave().await.expect("leave");
    // No waiting: the very next call sees it gone.
    let nodes: Vec<String> = b
        .list_nodes()
        .await
        .expect("nodes")
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert_eq!(nodes, ["b"]);
    assert!(b.list_rooms().await.expect("rooms").is_empty());
    assert_eq!(b.reserve_seat().await.expect("reserve"), None);
    assert_eq!(
        b.place_new_room().await.expect("place").map(|p| p.node),
        Some("b".into())
    );
    let mut conn = raw(&redis).await;
    assert_eq!(pttl(&mut conn, "test:resv:a:ra").await, -2);

    // Its refresh has stopped, and later writes do not bring it back.
    tokio::time::timeout(WAIT, task)
        .await
        .expect("task ends")
        .expect("task");
    a.publish_room(room("late", 0, 4, true))
        .await
        .expect("ignored");
    assert!(b.list_rooms().await.expect("rooms").is_empty());
    assert_eq!(pttl(&mut conn, "test:node:a").await, -2);
}

/// The directory's cost in Redis, for docs/PERFORMANCE.md: round trips and commands
/// per join (one reservation) and per refresh at rest.
#[tokio::test]
async fn the_directory_costs_one_round_trip_per_join_and_per_refresh() {
    let Some(redis) = RedisServer::start("directory_cost") else {
        return;
    };
    let mut conn = raw(&redis).await;
    // No refresh during the join measurement: long TTLs.
    let quiet = |id: &str| {
        let mut c = config(&redis, id);
        c.node_ttl = Duration::from_secs(120);
        c.refresh = Duration::from_secs(60);
        c
    };
    let (a, _ta) = node(quiet("a")).await;
    let (b, _tb) = node(quiet("b")).await;
    let (c, _tc) = node(quiet("c")).await;
    for (d, n) in [(&a, "a"), (&b, "b"), (&c, "c")] {
        for i in 0..10 {
            d.publish_room(room(&format!("{n}{i}"), 0, 50, true))
                .await
                .expect("publish");
        }
    }
    // Warm the script cache, so the figures are the steady state.
    a.reserve_seat().await.expect("reserve");

    const JOINS: u64 = 100;
    reset_stats(&mut conn).await;
    for _ in 0..JOINS {
        a.reserve_seat().await.expect("reserve").expect("seat");
    }
    let calls = command_calls(&mut conn).await;
    assert_eq!(calls.get("evalsha"), Some(&JOINS), "{calls:?}");
    let inner: u64 = calls
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "evalsha" | "config|resetstat" | "info" | "pexpire"
            )
        })
        .map(|(_, n)| n)
        .sum();
    // Per join: TIME, SMEMBERS, then per node EXISTS + HGETALL, per public room ZCOUNT,
    // then ZREMRANGEBYSCORE + ZADD + PTTL + HGET for the seat held, and a PEXPIRE when
    // the reservations key would otherwise die before the new seat (not when another
    // seat was held in the same millisecond).
    assert_eq!(inner, JOINS * (2 + 3 * 2 + 30 + 4), "{calls:?}");
    let pexpire = calls.get("pexpire").copied().unwrap_or(0);
    assert!(pexpire <= JOINS, "{calls:?}");
    println!(
        "FIGURE: per join (3 nodes, 30 public rooms): 1 round trip (EVALSHA), {} Redis commands inside it",
        (inner + pexpire) as f64 / JOINS as f64
    );

    // At rest: one node refreshing every 50 ms, nothing else.
    a.leave().await.expect("leave");
    b.leave().await.expect("leave");
    c.leave().await.expect("leave");
    let mut busy = config(&redis, "r");
    busy.refresh = Duration::from_millis(50);
    let (r, _tr) = node(busy).await;
    // After its first refresh, which loads the refresh script into Redis.
    wait_for("a first refresh", || async {
        r.metrics().redis_calls.get() >= 2
    })
    .await;
    reset_stats(&mut conn).await;
    let deadline = Instant::now() + WAIT;
    let calls = loop {
        let calls = command_calls(&mut conn).await;
        if calls.get("evalsha").copied().unwrap_or(0) >= 10 {
            break calls;
        }
        assert!(Instant::now() < deadline, "no ten refreshes: {calls:?}");
        tokio::time::sleep(POLL).await;
    };
    let refreshes = calls["evalsha"];
    assert_eq!(calls.get("pexpire"), Some(&(3 * refreshes)), "{calls:?}");
    let others: Vec<&String> = calls
        .keys()
        .filter(|n| {
            !matches!(
                n.as_str(),
                "evalsha" | "pexpire" | "info" | "config|resetstat"
            )
        })
        .collect();
    assert!(others.is_empty(), "{calls:?}");
    println!(
        "FIGURE: at rest per node: 1 round trip (EVALSHA, 3 PEXPIRE) per refresh = 1/3 round trip and 1 command per second at the default 3 s"
    );
}
