//! The client against a tiny scripted server on 127.0.0.1:0 (hyper + fastwebsockets),
//! standing in for tickcast-server: handshake checks, `Hello`/`Welcome`, snapshots
//! (some fragmented), pongs, a WebSocket ping the client must answer, and closes.
//! Every test is bounded by a timeout and takes well under a second.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use glam::Vec2;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tickcast_client::{
    run_swarm, BehaviourKind, ClientError, ConnectOptions, Connection, Event, ReconnectPolicy,
    ReconnectingConnection, SessionEvent, SwarmConfig,
};
use tickcast_shared::codec::{decode, encode_to_vec};
use tickcast_shared::{
    Added, ClientMsg, EntityKind, Hello, Pong, ServerMsg, Snapshot, Welcome, PROTOCOL_VERSION,
    SUBPROTOCOL,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(5);
const TICK_RATE: u16 = 50;
/// The entity the fake server gives every player (the last of its 20 entities).
const OWN_ENTITY: u32 = 19;
/// Another player's avatar in the fake world, west of ours on the same line.
const OTHER_AVATAR: u32 = 3;

/// What the fake server does with each connection.
struct Script {
    /// Refuse the upgrade with this HTTP status.
    refuse: Option<u16>,
    /// Put `tickcast.v1` in the 101 response.
    echo_subprotocol: bool,
    /// Close with this code right after `Hello` instead of welcoming.
    close_instead_of_welcome: Option<u16>,
    /// Close with 1001 after this many snapshots; otherwise run until the client closes.
    close_after: Option<u64>,
    /// Send odd-numbered snapshots as two fragments.
    fragment_odd: bool,
    /// Every `Hello` received, with the `Origin` header of its upgrade.
    hellos: mpsc::UnboundedSender<(Hello, Option<String>)>,
    /// Set when the client answers the server's WebSocket ping.
    got_pong_frame: AtomicBool,
    /// Source addresses of the TCP connections accepted.
    peers: std::sync::Mutex<BTreeSet<IpAddr>>,
    /// Inputs that steer due west, toward [`OTHER_AVATAR`]: what a chasing bot sends.
    westward_inputs: AtomicU32,
}

impl Script {
    fn new() -> (Self, mpsc::UnboundedReceiver<(Hello, Option<String>)>) {
        let (hellos, rx) = mpsc::unbounded_channel();
        let script = Self {
            refuse: None,
            echo_subprotocol: true,
            close_instead_of_welcome: None,
            close_after: None,
            fragment_odd: false,
            hellos,
            got_pong_frame: AtomicBool::new(false),
            peers: std::sync::Mutex::new(BTreeSet::new()),
            westward_inputs: AtomicU32::new(0),
        };
        (script, rx)
    }
}

async fn serve(script: Script) -> anyhow::Result<(SocketAddr, Arc<Script>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let script = Arc::new(script);
    let shared = Arc::clone(&script);
    tokio::spawn(async move {
        while let Ok((stream, peer)) = listener.accept().await {
            if let Ok(mut peers) = shared.peers.lock() {
                peers.insert(peer.ip());
            }
            let script = Arc::clone(&shared);
            tokio::spawn(async move {
                let service = service_fn(move |req| handle(req, Arc::clone(&script)));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok((addr, script))
}

fn status(code: u16) -> anyhow::Result<Response<Empty<Bytes>>> {
    Ok(Response::builder()
        .status(StatusCode::from_u16(code)?)
        .body(Empty::new())?)
}

async fn handle(
    mut req: Request<Incoming>,
    script: Arc<Script>,
) -> anyhow::Result<Response<Empty<Bytes>>> {
    if req.uri().path() != "/ws" {
        return status(404);
    }
    let offered = req
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == SUBPROTOCOL));
    if !offered {
        return status(400);
    }
    if let Some(code) = script.refuse {
        return status(code);
    }
    let origin = req
        .headers()
        .get(ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (mut response, fut) = upgrade::upgrade(&mut req)?;
    if script.echo_subprotocol {
        response.headers_mut().insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    tokio::spawn(async move {
        if let Err(e) = play(fut, script, origin).await {
            eprintln!("fake server connection: {e:#}");
        }
    });
    Ok(response)
}

fn binary(msg: &ServerMsg) -> anyhow::Result<Frame<'static>> {
    Ok(Frame::binary(Payload::Owned(encode_to_vec(msg)?)))
}

/// One connection of the fake server.
async fn play(
    fut: upgrade::UpgradeFut,
    script: Arc<Script>,
    origin: Option<String>,
) -> anyhow::Result<()> {
    let mut ws = fut.await?;
    let frame = ws.read_frame().await?;
    let hello = match decode::<ClientMsg>(&frame.payload, 1024)? {
        ClientMsg::Hello(hello) => hello,
        other => anyhow::bail!("expected Hello, got {other:?}"),
    };
    script.hellos.send((hello, origin)).ok();
    if let Some(code) = script.close_instead_of_welcome {
        ws.write_frame(Frame::close(code, b"room is full")).await?;
        return Ok(());
    }
    let welcome = ServerMsg::Welcome(Welcome {
        protocol_version: PROTOCOL_VERSION,
        player_id: 3,
        entity_id: OWN_ENTITY,
        tick_rate: TICK_RATE,
        server_tick: 1000,
        world_size: Vec2::new(800.0, 600.0),
        session_token: [0; 16],
        pos_quantum: 1.0 / 16.0,
    });
    ws.write_frame(binary(&welcome)?).await?;
    // The client must answer this through its reader's send_fn.
    ws.write_frame(Frame::new(
        true,
        OpCode::Ping,
        None,
        Payload::Owned(b"hb".to_vec()),
    ))
    .await?;

    let (rx, tx) = ws.split(tokio::io::split);
    let tx = Arc::new(Mutex::new(tx));
    let last_seq = Arc::new(AtomicU32::new(0));
    let done = CancellationToken::new();

    let reader = {
        let (tx, last_seq, done, script) = (
            Arc::clone(&tx),
            Arc::clone(&last_seq),
            done.clone(),
            Arc::clone(&script),
        );
        tokio::spawn(async move {
            let mut rx = FragmentCollectorRead::new(rx);
            let mut send = |frame: Frame<'static>| {
                let tx = Arc::clone(&tx);
                async move { tx.lock().await.write_frame(frame).await }
            };
            loop {
                let frame = match rx.read_frame::<_, WebSocketError>(&mut send).await {
                    Ok(frame) => frame,
                    Err(_) => break,
                };
                match frame.opcode {
                    OpCode::Close => break,
                    OpCode::Pong => script.got_pong_frame.store(true, Ordering::SeqCst),
                    OpCode::Binary => match decode::<ClientMsg>(&frame.payload, 1024) {
                        Ok(ClientMsg::Input(input)) => {
                            last_seq.store(input.seq, Ordering::SeqCst);
                            if input.movement.x < -0.99 {
                                script.westward_inputs.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        Ok(ClientMsg::Ping(ping)) => {
                            let pong = ServerMsg::Pong(Pong {
                                nonce: ping.nonce,
                                server_tick: 0,
                            });
                            if let Ok(frame) = binary(&pong) {
                                let _ = tx.lock().await.write_frame(frame).await;
                            }
                        }
                        _ => break,
                    },
                    _ => {}
                }
            }
            done.cancel();
        })
    };

    let period = Duration::from_secs(1) / u32::from(TICK_RATE);
    for tick in 1001u64.. {
        tokio::select! {
            () = done.cancelled() => break,
            () = tokio::time::sleep(period) => {}
        }
        // Keyframes of 20 entities, so every snapshot stands alone. All on one line:
        // ours (OWN_ENTITY) at x = 19, another player's at x = 3, NPCs between.
        let snapshot = ServerMsg::Snapshot(Snapshot {
            tick,
            base_tick: 0,
            last_input_seq: last_seq.load(Ordering::SeqCst),
            removed: Vec::new(),
            changed: Vec::new(),
            added: (0..20)
                .map(|id| Added {
                    id_gap: 0, // consecutive ids
                    kind: if id == OWN_ENTITY as i32 || id == OTHER_AVATAR as i32 {
                        EntityKind::Avatar
                    } else {
                        EntityKind::Npc
                    },
                    pos: [id * 16, tick as i32],
                    vel: [0, 0],
                })
                .collect(),
        });
        let bytes = encode_to_vec(&snapshot)?;
        let mut w = tx.lock().await;
        let written = if script.fragment_odd && tick % 2 == 1 {
            let (a, b) = bytes.split_at(bytes.len() / 2);
            match w
                .write_frame(Frame::new(
                    false,
                    OpCode::Binary,
                    None,
                    Payload::Owned(a.to_vec()),
                ))
                .await
            {
                Ok(()) => {
                    w.write_frame(Frame::new(
                        true,
                        OpCode::Continuation,
                        None,
                        Payload::Owned(b.to_vec()),
                    ))
                    .await
                }
                Err(e) => Err(e),
            }
        } else {
            w.write_frame(Frame::binary(Payload::Owned(bytes))).await
        };
        if written.is_err() {
            break; // the client closed
        }
        if script.close_after == Some(tick - 1000) {
            w.write_frame(Frame::close(1001, b"server shutting down"))
                .await?;
            break;
        }
    }
    tokio::time::timeout(LIMIT, reader)
        .await
        .context("fake server reader did not end")??;
    Ok(())
}

fn url(addr: SocketAddr, room: &str) -> String {
    format!("ws://{addr}/ws?room={room}")
}

#[tokio::test]
async fn welcome_snapshots_pong_then_close_1001() -> anyhow::Result<()> {
    let (mut script, mut hellos) = Script::new();
    script.close_after = Some(6);
    script.fragment_odd = true;
    let (addr, script) = serve(script).await?;

    tokio::time::timeout(LIMIT, async {
        let mut opts = ConnectOptions::new(url(addr, "arena"), "alice");
        opts.origin = Some("http://game.example".into());
        let mut conn = Connection::connect(opts).await?;
        assert_eq!(conn.welcome().entity_id, OWN_ENTITY);
        assert_eq!(conn.welcome().tick_rate, TICK_RATE);

        let (hello, origin) = hellos.recv().await.context("no hello")?;
        assert_eq!(hello.name, "alice");
        assert_eq!(hello.room, "arena");
        assert_eq!(hello.protocol_version, PROTOCOL_VERSION);
        assert_eq!(origin.as_deref(), Some("http://game.example"));

        let first_seq = conn.send_input(Vec2::X, 1).await?;
        assert_eq!(first_seq, 1);
        conn.send_ping().await?;

        let mut ticks = Vec::new();
        let mut rtt = None;
        let (code, reason) = loop {
            match conn.next_event().await? {
                Event::Snapshot(s) => {
                    assert_eq!(conn.session().world().entities.len(), 20);
                    ticks.push(s.tick);
                    // The server closes right after its last snapshot: once our reader
                    // has answered that close, sending is refused, and the close event
                    // follows.
                    match conn.send_input(Vec2::Y, 0).await {
                        Ok(_) | Err(ClientError::NotOpen) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Event::Pong { rtt: r } => rtt = Some(r),
                Event::Closed { code, reason } => break (code, reason),
            }
        };
        assert_eq!(ticks, (1001..=1006).collect::<Vec<_>>());
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
        assert!(rtt.is_some_and(|r| r < LIMIT), "no pong: {rtt:?}");

        let session = conn.session();
        let stats = session.stats();
        assert_eq!(stats.snapshots_received, 6);
        assert_eq!(stats.snapshots_missed, 0);
        assert!(stats.bytes_received > 6 * 20 * 8, "{stats:?}");
        assert!(session.acked_seq() >= 1, "inputs were never acknowledged");
        assert!(script.got_pong_frame.load(Ordering::SeqCst), "no auto-pong");

        // After the close, the connection stays closed.
        assert!(matches!(
            conn.next_event().await,
            Err(ClientError::Closed { code: 1001, .. })
        ));
        assert!(conn.send_input(Vec2::X, 0).await.is_err());
        anyhow::Ok(())
    })
    .await
    .context("timed out")?
}

#[tokio::test]
async fn a_close_frame_is_an_answer_not_a_reason_to_reconnect() -> anyhow::Result<()> {
    let (mut script, mut hellos) = Script::new();
    script.close_after = Some(3);
    let (addr, _) = serve(script).await?;
    tokio::time::timeout(LIMIT, async {
        let opts = ConnectOptions::new(url(addr, "r"), "erin");
        let mut conn =
            ReconnectingConnection::connect(opts, Some(ReconnectPolicy::default())).await?;
        assert_eq!(conn.session_token(), &[0; 16]);
        let mut snapshots = 0;
        let code = loop {
            match conn.next_event().await? {
                SessionEvent::Snapshot(_) => snapshots += 1,
                SessionEvent::Closed { code, .. } => break code,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!((snapshots, code), (3, 1001));
        assert!(!conn.is_reconnecting());
        assert!(matches!(
            conn.next_event().await,
            Err(ClientError::Closed { code: 1001, .. })
        ));
        assert!(matches!(
            conn.send_input(Vec2::X, 0).await,
            Err(ClientError::Closed { code: 1001, .. })
        ));
        assert_eq!(conn.reconnects(), 0);
        let (first, _) = hellos.recv().await.context("no hello")?;
        assert_eq!(first.resume, None);
        assert!(hellos.try_recv().is_err(), "connected again after a close");
        anyhow::Ok(())
    })
    .await
    .context("timed out")?
}

#[tokio::test]
async fn refused_upgrade_carries_the_http_status() -> anyhow::Result<()> {
    for code in [400, 403, 409] {
        let (mut script, _hellos) = Script::new();
        script.refuse = Some(code);
        let (addr, _) = serve(script).await?;
        let result = tokio::time::timeout(
            LIMIT,
            Connection::connect(ConnectOptions::new(url(addr, "r"), "bob")),
        )
        .await?;
        match result {
            Err(ClientError::HttpStatus { status }) => assert_eq!(status, code),
            other => panic!("expected HTTP {code}, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn wrong_path_is_404() -> anyhow::Result<()> {
    let (script, _hellos) = Script::new();
    let (addr, _) = serve(script).await?;
    let opts = ConnectOptions::new(format!("ws://{addr}/nope"), "bob");
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(matches!(
        result,
        Err(ClientError::HttpStatus { status: 404 })
    ));
    Ok(())
}

#[tokio::test]
async fn upgrade_without_subprotocol_is_refused_by_the_client() -> anyhow::Result<()> {
    let (mut script, _hellos) = Script::new();
    script.echo_subprotocol = false;
    let (addr, _) = serve(script).await?;
    let opts = ConnectOptions::new(url(addr, "r"), "bob");
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(
        matches!(
            result,
            Err(ClientError::SubprotocolMismatch { got: None, .. })
        ),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test]
async fn close_instead_of_welcome_is_a_typed_error() -> anyhow::Result<()> {
    let (mut script, _hellos) = Script::new();
    script.close_instead_of_welcome = Some(4000);
    let (addr, _) = serve(script).await?;
    let opts = ConnectOptions::new(url(addr, "full"), "bob");
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    match result {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!((code, reason.as_str()), (4000, "room is full"));
        }
        other => panic!("expected close 4000, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn connect_timeout_is_enforced() -> anyhow::Result<()> {
    // A listener that accepts TCP but never answers HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let mut opts = ConnectOptions::new(url(addr, "r"), "bob");
    opts.connect_timeout = Duration::from_millis(100);
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(
        matches!(result, Err(ClientError::ConnectTimeout)),
        "{result:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_reports_what_it_measured() -> anyhow::Result<()> {
    let (script, mut hellos) = Script::new();
    let (addr, script) = serve(script).await?;
    // Only Linux routes all of 127.0.0.0/8 to loopback out of the box.
    let spread = cfg!(target_os = "linux");
    let config = SwarmConfig {
        url: url(addr, "swarm"),
        bots: 3,
        duration: Duration::from_millis(700),
        ramp: Duration::from_millis(60),
        rooms: 2,
        behaviour: BehaviourKind::Chase,
        source_addrs: Some(if spread { 2 } else { 1 }),
        ..SwarmConfig::default()
    };
    let report = tokio::time::timeout(LIMIT, run_swarm(config, CancellationToken::new())).await?;
    assert_eq!(report.bots_requested, 3);
    assert_eq!(report.bots_connected, 3, "{report}");
    assert_eq!(report.bots_failed, 0, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.close_codes.get("1000"), Some(&3), "{report}");
    assert!(report.snapshots_received >= 3 * 10, "{report}");
    // Sent at 50 Hz; a loaded CI machine may lag, so only a loose bound.
    assert!(report.snapshots_per_bot_per_s > 10.0, "{report}");
    assert!(report.bytes_per_bot_per_s > 0.0, "{report}");
    assert!(report.rtt_ms.count >= 3, "{report}");
    assert!(report.input_ack_ms.count > 0, "{report}");
    assert_eq!(report.connect_ms.count, 3, "{report}");
    assert!(report.snapshot_gap_ms.p50 > 0.0, "{report}");
    assert_eq!(report.reconnects, 0, "{report}");
    assert!(report.histograms.is_some(), "{report}");
    assert_eq!((report.rooms, report.behaviour.as_str()), (2, "chase"));

    // Round-robin over two rooms named after the URL's room.
    let mut rooms = BTreeMap::new();
    while let Ok((hello, _)) = hellos.try_recv() {
        *rooms.entry(hello.room).or_insert(0) += 1;
    }
    let expected: BTreeMap<String, i32> = [("swarm-0".to_owned(), 2), ("swarm-1".to_owned(), 1)]
        .into_iter()
        .collect();
    assert_eq!(rooms, expected);
    // Chasing: once the world is known, bots head west toward the other avatar.
    assert!(
        script.westward_inputs.load(Ordering::SeqCst) > 3,
        "bots did not chase"
    );
    if spread {
        let peers = script.peers.lock().map(|p| p.clone()).unwrap_or_default();
        let v4 = |d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d));
        assert_eq!(peers, BTreeSet::from([v4(1), v4(2)]));
    }
    Ok(())
}

#[tokio::test]
async fn connect_from_a_chosen_local_address() -> anyhow::Result<()> {
    let (script, _hellos) = Script::new();
    let (addr, script) = serve(script).await?;
    let local = if cfg!(target_os = "linux") {
        Ipv4Addr::new(127, 0, 0, 3)
    } else {
        Ipv4Addr::LOCALHOST
    };
    let mut opts = ConnectOptions::new(url(addr, "r"), "carol");
    opts.local_ip = Some(IpAddr::V4(local));
    let conn = tokio::time::timeout(LIMIT, Connection::connect(opts)).await??;
    conn.close("done").await?;
    let peers = script.peers.lock().map(|p| p.clone()).unwrap_or_default();
    assert_eq!(peers, BTreeSet::from([IpAddr::V4(local)]));

    // An IPv6 local address cannot reach an IPv4-only host.
    let mut opts = ConnectOptions::new(url(addr, "r"), "dave");
    opts.local_ip = Some(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(
        matches!(result, Err(ClientError::AddressFamily { .. })),
        "{result:?}"
    );
    Ok(())
}
