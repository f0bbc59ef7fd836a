//! The client library's automatic reconnection against a real server, through a small TCP
//! proxy that the test can cut like a network failure (both sockets dropped, no close
//! frame): the player is resumed with the same ids and position and can move again; a
//! resume after the grace ends with 4008; a reconnection that outlasts its budget gives up;
//! and a bot swarm cut mid-run resumes every bot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use glam::Vec2;
use tickcast::client::{
    run_swarm, ClientError, ConnectOptions, Connection, ReconnectPolicy, ReconnectingConnection,
    SessionEvent, SwarmConfig,
};
use tickcast::shared::delta::QEntity;
use tickcast::shared::Snapshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Quick retries, so that the tests spend their time on what they check.
fn fast_policy(budget: Duration) -> ReconnectPolicy {
    ReconnectPolicy {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        budget,
    }
}

async fn next(conn: &mut ReconnectingConnection) -> Result<SessionEvent, ClientError> {
    tokio::time::timeout(WAIT, conn.next_event())
        .await
        .expect("no event in time")
}

async fn next_snapshot(conn: &mut ReconnectingConnection) -> Snapshot {
    loop {
        match next(conn).await.unwrap() {
            SessionEvent::Snapshot(s) => return s,
            SessionEvent::Pong { .. } => continue,
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }
}

/// The player's avatar in the world the client reconstructed.
fn avatar(conn: &ReconnectingConnection) -> QEntity {
    let id = conn.welcome().entity_id;
    *conn
        .session()
        .world()
        .entities
        .iter()
        .find(|e| e.id == id)
        .expect("own avatar in view")
}

/// Reads until a snapshot acknowledges input `seq` and `ok` holds for the avatar.
async fn until_applied(
    conn: &mut ReconnectingConnection,
    seq: u32,
    ok: impl Fn(&QEntity) -> bool,
) -> QEntity {
    for _ in 0..60 {
        let s = next_snapshot(conn).await;
        let me = avatar(conn);
        if s.last_input_seq >= seq && ok(&me) {
            return me;
        }
    }
    panic!("input {seq} not applied as expected: {:?}", avatar(conn));
}

/// Reads events after a cut until the loss is reported (snapshots already in flight
/// may come first).
async fn until_reconnecting(conn: &mut ReconnectingConnection) -> String {
    for _ in 0..60 {
        match next(conn).await.unwrap() {
            SessionEvent::Reconnecting { cause } => return cause,
            SessionEvent::Snapshot(_) | SessionEvent::Pong { .. } => continue,
            other => panic!("expected Reconnecting, got {other:?}"),
        }
    }
    panic!("the cut was not noticed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_resumes_the_same_player_where_it_stood() {
    let mut c = config();
    c.reconnect_grace = Duration::from_secs(5);
    let server = start(c).await;
    let proxy = Proxy::start(server.addr).await;
    let opts = ConnectOptions::new(proxy.url("cut"), "traveller");
    let policy = fast_policy(Duration::from_secs(5));
    let mut conn = ReconnectingConnection::connect(opts, Some(policy))
        .await
        .unwrap();
    let welcome = conn.welcome().clone();
    assert_eq!(conn.session_token(), &welcome.session_token);

    // Move, then stop, and wait until the server has applied the stop.
    next_snapshot(&mut conn).await;
    let start = avatar(&conn);
    assert_eq!(conn.send_input(Vec2::new(0.6, 0.8), 0).await.unwrap(), 1);
    until_applied(&mut conn, 1, |me| me.pos != start.pos).await;
    assert_eq!(conn.send_input(Vec2::ZERO, 0).await.unwrap(), 2);
    let stopped = until_applied(&mut conn, 2, |me| me.vel == [0, 0]).await;
    assert_eq!(conn.session().acked_seq(), 2);

    proxy.cut();
    let cause = until_reconnecting(&mut conn).await;
    assert!(
        ["connection lost", "io: connection reset"].contains(&cause.as_str()),
        "{cause}"
    );
    assert!(conn.is_reconnecting());
    assert!(matches!(
        conn.send_input(Vec2::X, 0).await,
        Err(ClientError::Reconnecting)
    ));
    let attempts = match next(&mut conn).await.unwrap() {
        SessionEvent::Reconnected { attempts } => attempts,
        other => panic!("expected Reconnected, got {other:?}"),
    };
    assert_eq!(proxy.proxied(), 2, "one connection, then one resume");
    assert_eq!(attempts, 1, "the proxy let the first attempt through");
    assert_eq!(conn.reconnects(), 1);
    let again = conn.welcome();
    assert_eq!(
        (again.player_id, again.entity_id, again.session_token),
        (welcome.player_id, welcome.entity_id, welcome.session_token)
    );
    assert_eq!(conn.session().acked_seq(), 0, "acks start over");

    let keyframe = next_snapshot(&mut conn).await;
    assert_eq!(keyframe.base_tick, 0, "a resume starts with a keyframe");
    assert_eq!(keyframe.last_input_seq, 0);
    assert_eq!(
        avatar(&conn).pos,
        stopped.pos,
        "the avatar waited where it stood"
    );

    // It moves again, with sequence numbers starting over and acknowledged.
    assert_eq!(conn.send_input(Vec2::X, 0).await.unwrap(), 1);
    until_applied(&mut conn, 1, |me| me.pos[0] > stopped.pos[0]).await;
    assert_eq!(conn.session().acked_seq(), 1);
    let stats = conn.session().stats();
    assert_eq!((stats.inputs_sent, stats.reconnects), (3, 1));
    assert!(stats.keyframes_received >= 2, "{stats:?}");

    let closed = conn.close("done").await;
    assert!(matches!(closed, Ok(Some(1000))), "{closed:?}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_after_the_grace_ends_with_session_expired() {
    let grace = Duration::from_millis(200);
    let mut c = config();
    c.reconnect_grace = grace;
    let server = start(c).await;
    let proxy = Proxy::start(server.addr).await;
    // Keeps the room open, so that it is the grace that expires, not the room.
    let watcher = Connection::connect(ConnectOptions::new(server.ws_url("brief"), "watcher"))
        .await
        .unwrap();
    let opts = ConnectOptions::new(proxy.url("brief"), "blip");
    // A budget that the wait for the grace cannot use up on a loaded machine.
    let mut conn = ReconnectingConnection::connect(opts, Some(fast_policy(Duration::from_secs(5))))
        .await
        .unwrap();
    for _ in 0..3 {
        next_snapshot(&mut conn).await;
    }

    // Refuse every attempt until the server has let the player go: the grace is over
    // when `/rooms` no longer counts it, and only then may an attempt reach the server.
    let cut_at = Instant::now();
    proxy.cut_and_refuse(WAIT);
    until_reconnecting(&mut conn).await;
    wait_players(server.addr, "brief", 1).await;
    proxy.accept_again();
    let result = next(&mut conn).await;
    assert!(
        matches!(result, Err(ClientError::SessionExpired)),
        "{result:?}"
    );
    assert!(cut_at.elapsed() >= grace, "expired only after the grace");
    // Attempts come at most 50 ms, then 100 ms apart, and the grace is 200 ms.
    assert!(proxy.refused() >= 1, "the first attempts were refused");
    assert_eq!(
        proxy.proxied(),
        2,
        "the first connection, then the resume answered with 4008"
    );
    assert_eq!(conn.reconnects(), 0);
    // It is over: nothing reconnects any more.
    assert!(next(&mut conn).await.is_err());
    assert!(!conn.is_reconnecting());

    watcher.close("done").await.unwrap();
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnection_gives_up_when_its_budget_runs_out() {
    let server = start(config()).await;
    let proxy = Proxy::start(server.addr).await;
    let budget = Duration::from_secs(1);
    let opts = ConnectOptions::new(proxy.url("patient"), "quitter");
    let mut conn = ReconnectingConnection::connect(opts, Some(fast_policy(budget)))
        .await
        .unwrap();
    next_snapshot(&mut conn).await;

    // Refused for longer than `next` waits: a client that ignored its budget would
    // never return, and `next` fails after WAIT.
    let cut_at = Instant::now();
    proxy.cut_and_refuse(WAIT * 2);
    until_reconnecting(&mut conn).await;
    let result = next(&mut conn).await;
    let took = cut_at.elapsed();
    match &result {
        Err(ClientError::ReconnectFailed { attempts, last }) => {
            // Delays of at most 50 ms, then 100 ms: a second attempt fits in the budget
            // with 850 ms to spare.
            assert!(*attempts >= 2, "{result:?}");
            assert!(last.is_connection_loss(), "{result:?}");
            assert!(proxy.refused() >= 1);
        }
        other => panic!("expected ReconnectFailed, got {other:?}"),
    }
    // The last delay and attempt are cut to what is left of the budget, so it gives up
    // at the budget plus scheduling delays, for which 2 s is plenty on a loaded machine.
    assert!(
        took >= budget && took < budget + Duration::from_secs(2),
        "{took:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swarm_cut_mid_run_resumes_every_bot() {
    let server = start(config()).await;
    let proxy = Proxy::start(server.addr).await;
    let config = SwarmConfig {
        url: proxy.url("swarm-cut"),
        bots: 4,
        duration: Duration::from_millis(2500),
        ramp: Duration::from_millis(200),
        reconnect: Some(fast_policy(Duration::from_secs(5))),
        ..SwarmConfig::default()
    };
    let swarm = tokio::spawn(run_swarm(config, CancellationToken::new()));
    // Cut once the server has welcomed all four, through four connections. The room
    // does not exist until the first bot's Hello.
    wait_until("players in room swarm-cut", Some(4), || {
        room_players(server.addr, "swarm-cut")
    })
    .await;
    assert_eq!(proxy.proxied(), 4, "every bot connected before the cut");
    proxy.cut();
    let report = tokio::time::timeout(WAIT, swarm).await.unwrap().unwrap();

    assert_eq!(
        (
            report.bots_connected,
            report.bots_failed,
            report.bots_disconnected
        ),
        (4, 0, 0),
        "{report}"
    );
    assert_eq!(report.reconnects, 4, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.close_codes.get("1000"), Some(&4), "{report}");
    assert_eq!(proxy.proxied(), 8);
    assert!(report.input_ack_ms.count > 0, "{report}");
    server.stop().await.unwrap();
}
