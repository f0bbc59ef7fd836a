//! The client against a tiny scripted server on 127.0.0.1:0 (hyper + fastwebsockets),
//! standing in for tickcast-server: handshake checks, `Hello`/`Welcome`, snapshots
//! (some fragmented), pongs, a WebSocket ping the client must answer, and closes.
//! Every test is bounded by a timeout and takes about a second at most.
//!
//! The fake server's own failures fail the test: every connection task reports its
//! end, and each test calls [`FakeServer::finish`], which waits for all of them and
//! returns what went wrong.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

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
    ReconnectingConnection, SessionEvent, SnapshotDecoding, SwarmConfig,
};
use tickcast_shared::codec::{decode, encode_to_vec, peek_snapshot_header};
use tickcast_shared::{
    Added, Changed, ClientMsg, EntityKind, Hello, Pong, ServerMsg, Snapshot, Welcome,
    PROTOCOL_VERSION, SUBPROTOCOL,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const LIMIT: Duration = Duration::from_secs(5);
const TICK_RATE: u16 = 50;
/// The entity the fake server gives every player (the last of its 20 entities).
const OWN_ENTITY: u32 = 19;
/// Another player's avatar in the fake world, west of ours on the same line.
const OTHER_AVATAR: u32 = 3;
/// Due west: where a chasing bot steers once it knows the fake world.
const WEST: Vec2 = Vec2::new(-1.0, 0.0);

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
    /// Break two snapshots: the 5th (tick 1005) is a delta against a tick the client
    /// never held, and the 7th (tick 1007) has a valid header and a body that is no
    /// encoding at all.
    broken: bool,
    /// Every `Hello` received, with the `Origin` header of its upgrade.
    hellos: mpsc::UnboundedSender<(Hello, Option<String>)>,
    /// Set when the client answers the server's WebSocket ping.
    got_pong_frame: AtomicBool,
    /// Source addresses of the TCP connections accepted.
    peers: StdMutex<BTreeSet<IpAddr>>,
    /// What each upgraded connection received and wrote, in the order they started.
    logs: StdMutex<Vec<Arc<Log>>>,
    /// Connection and accept tasks, awaited by [`FakeServer::finish`].
    tasks: TaskTracker,
    /// Everything that went wrong on the fake server's side.
    errors: StdMutex<Vec<String>>,
}

/// What one connection of the fake server received and wrote.
#[derive(Debug, Default)]
struct Log {
    /// Every input received: its sequence number and movement.
    inputs: StdMutex<Vec<(u32, Vec2)>>,
    /// Protocol pings received (each one answered with a `Pong`).
    pings: AtomicU64,
    /// `Pong` messages written.
    pongs: AtomicU64,
    /// Snapshots written.
    snapshots: AtomicU64,
    /// Payload bytes of every protocol message written (Welcome, snapshots, pongs).
    bytes: AtomicU64,
    /// Size of the Welcome and of the smallest snapshot written.
    welcome_bytes: AtomicU64,
    smallest_snapshot: AtomicU64,
}

impl Log {
    fn wrote(&self, bytes: usize) {
        self.bytes.fetch_add(bytes as u64, Ordering::SeqCst);
    }

    fn inputs(&self) -> Vec<(u32, Vec2)> {
        lock(&self.inputs).clone()
    }
}

/// A std mutex whose poisoning (a panic elsewhere already failed the test) is ignored.
fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
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
            broken: false,
            hellos,
            got_pong_frame: AtomicBool::new(false),
            peers: StdMutex::new(BTreeSet::new()),
            logs: StdMutex::new(Vec::new()),
            tasks: TaskTracker::new(),
            errors: StdMutex::new(Vec::new()),
        };
        (script, rx)
    }

    fn fail(&self, what: impl std::fmt::Display) {
        lock(&self.errors).push(what.to_string());
    }

    fn logs(&self) -> Vec<Arc<Log>> {
        lock(&self.logs).clone()
    }

    fn peers(&self) -> BTreeSet<IpAddr> {
        lock(&self.peers).clone()
    }
}

/// A running fake server.
struct FakeServer {
    addr: SocketAddr,
    script: Arc<Script>,
    stop: CancellationToken,
}

impl FakeServer {
    /// Stops accepting, waits (within [`LIMIT`]) for every connection to end, and
    /// returns the fake server's failures, if any.
    async fn finish(&self) -> anyhow::Result<Vec<String>> {
        self.stop.cancel();
        self.script.tasks.close();
        tokio::time::timeout(LIMIT, self.script.tasks.wait())
            .await
            .context("a fake server connection did not end")?;
        Ok(lock(&self.script.errors).clone())
    }

    /// [`FakeServer::finish`], failing on any failure of the fake server.
    async fn finish_cleanly(&self) -> anyhow::Result<()> {
        let errors = self.finish().await?;
        anyhow::ensure!(errors.is_empty(), "fake server failed: {errors:#?}");
        Ok(())
    }
}

async fn serve(script: Script) -> anyhow::Result<FakeServer> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let script = Arc::new(script);
    let stop = CancellationToken::new();
    let (shared, stopped) = (Arc::clone(&script), stop.clone());
    script.tasks.spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                () = stopped.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => return shared.fail(format!("accept: {e}")),
                },
            };
            lock(&shared.peers).insert(peer.ip());
            let script = Arc::clone(&shared);
            shared.tasks.spawn(async move {
                let service = service_fn({
                    let script = Arc::clone(&script);
                    move |req| handle(req, Arc::clone(&script))
                });
                if let Err(e) = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await
                {
                    script.fail(format!("http from {peer}: {e}"));
                }
            });
        }
    });
    Ok(FakeServer { addr, script, stop })
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
    let log = Arc::new(Log::default());
    lock(&script.logs).push(Arc::clone(&log));
    let tasks = script.tasks.clone();
    tasks.spawn(async move {
        if let Err(e) = play(fut, Arc::clone(&script), origin, log).await {
            script.fail(format!("connection: {e:#}"));
        }
    });
    Ok(response)
}

fn binary(msg: &ServerMsg) -> anyhow::Result<Frame<'static>> {
    Ok(Frame::binary(Payload::Owned(encode_to_vec(msg)?)))
}

/// One connection of the fake server. Ends with `Ok` only after a close handshake:
/// the client's close answered, or the client's answer to the server's close.
async fn play(
    fut: upgrade::UpgradeFut,
    script: Arc<Script>,
    origin: Option<String>,
    log: Arc<Log>,
) -> anyhow::Result<()> {
    let mut ws = fut.await?;
    // Closes are handled below, so that an answer to our own close is not answered.
    ws.set_auto_close(false);
    let frame = ws.read_frame().await.context("reading Hello")?;
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
        game: "arena".into(),
        fields: Vec::new(),
    });
    let welcome = binary(&welcome)?;
    let len = welcome.payload.len();
    ws.write_frame(welcome).await?;
    log.wrote(len);
    log.welcome_bytes.store(len as u64, Ordering::SeqCst);
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
    // Set before the server's close is written, so the reader knows a close it reads
    // is the answer.
    let closing = Arc::new(AtomicBool::new(false));

    let reader = {
        let (tx, last_seq, done, script, log, closing) = (
            Arc::clone(&tx),
            Arc::clone(&last_seq),
            done.clone(),
            Arc::clone(&script),
            Arc::clone(&log),
            Arc::clone(&closing),
        );
        tokio::spawn(async move {
            let _done = done.drop_guard();
            let mut rx = FragmentCollectorRead::new(rx);
            let mut send = |frame: Frame<'static>| {
                let tx = Arc::clone(&tx);
                async move { tx.lock().await.write_frame(frame).await }
            };
            loop {
                let frame = rx
                    .read_frame::<_, WebSocketError>(&mut send)
                    .await
                    .context("reading")?;
                match frame.opcode {
                    OpCode::Close if closing.load(Ordering::SeqCst) => return Ok(()),
                    OpCode::Close => {
                        // The client closes: answer with its code, as RFC 6455 asks.
                        let answer = Frame::close_raw(frame.payload.to_vec().into());
                        tx.lock()
                            .await
                            .write_frame(answer)
                            .await
                            .context("answering the client's close")?;
                        return Ok(());
                    }
                    OpCode::Pong => script.got_pong_frame.store(true, Ordering::SeqCst),
                    OpCode::Binary => match decode::<ClientMsg>(&frame.payload, 1024)? {
                        ClientMsg::Input(input) => {
                            last_seq.store(input.seq, Ordering::SeqCst);
                            lock(&log.inputs).push((input.seq, input.movement));
                        }
                        ClientMsg::Ping(ping) => {
                            log.pings.fetch_add(1, Ordering::SeqCst);
                            let pong = binary(&ServerMsg::Pong(Pong {
                                nonce: ping.nonce,
                                server_tick: 0,
                            }))?;
                            let len = pong.payload.len();
                            tx.lock().await.write_frame(pong).await.context("pong")?;
                            log.pongs.fetch_add(1, Ordering::SeqCst);
                            log.wrote(len);
                        }
                        other => anyhow::bail!("unexpected {other:?}"),
                    },
                    other => anyhow::bail!("unexpected {other:?} frame"),
                }
            }
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
            fields: Vec::new(),
        });
        let mut bytes = encode_to_vec(&snapshot)?;
        if script.broken && tick == 1005 {
            bytes = encode_to_vec(&ServerMsg::Snapshot(Snapshot {
                tick,
                base_tick: 1,
                last_input_seq: last_seq.load(Ordering::SeqCst),
                removed: Vec::new(),
                changed: vec![Changed {
                    skip: 0,
                    dpos: [1, 1],
                    dvel: [0, 0],
                }],
                added: Vec::new(),
                fields: Vec::new(),
            }))?;
        }
        if script.broken && tick == 1007 {
            let header = peek_snapshot_header(&bytes)?.context("a snapshot has a header")?;
            bytes.truncate(header.len);
            bytes.extend_from_slice(&[0xff, 0xff, 0xff]);
        }
        let len = bytes.len();
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
            // The client is gone; the reader says whether it closed properly.
            break;
        }
        log.snapshots.fetch_add(1, Ordering::SeqCst);
        log.wrote(len);
        let smallest = log.smallest_snapshot.load(Ordering::SeqCst);
        if smallest == 0 || (len as u64) < smallest {
            log.smallest_snapshot.store(len as u64, Ordering::SeqCst);
        }
        if script.close_after == Some(tick - 1000) {
            closing.store(true, Ordering::SeqCst);
            w.write_frame(Frame::close(1001, b"server shutting down"))
                .await?;
            break;
        }
    }
    tokio::time::timeout(LIMIT, reader)
        .await
        .context("fake server reader did not end")??
}

fn url(addr: SocketAddr, room: &str) -> String {
    format!("ws://{addr}/ws?room={room}")
}

#[tokio::test]
async fn welcome_snapshots_pong_then_close_1001() -> anyhow::Result<()> {
    let (mut script, mut hellos) = Script::new();
    script.close_after = Some(6);
    script.fragment_odd = true;
    let fake = serve(script).await?;
    let addr = fake.addr;

    let began = Instant::now();
    let (inputs_sent, stats, acked, last_ack, rtt) = tokio::time::timeout(LIMIT, async {
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

        let mut inputs_sent = vec![conn.send_input(Vec2::X, 1).await?];
        assert_eq!(inputs_sent, [1]);
        conn.send_ping().await?;

        let mut ticks = Vec::new();
        let mut rtt = None;
        let mut last_ack = 0;
        let (code, reason) = loop {
            match conn.next_event().await? {
                Event::Snapshot(s) => {
                    assert_eq!(conn.session().world().entities.len(), 20);
                    ticks.push(s.tick);
                    last_ack = s.last_input_seq;
                    // The server closes right after its last snapshot: once our reader
                    // has answered that close, sending is refused, and the close event
                    // follows.
                    match conn.send_input(Vec2::Y, 0).await {
                        Ok(seq) => inputs_sent.push(seq),
                        Err(ClientError::NotOpen) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Event::Pong { rtt: r } => {
                    assert_eq!(rtt, None, "one ping, one pong");
                    rtt = Some(r);
                }
                Event::Game(payload) => panic!("no game events were sent: {payload:?}"),
                Event::Closed { code, reason } => break (code, reason),
            }
        };
        assert_eq!(ticks, (1001..=1006).collect::<Vec<_>>());
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));

        // After the close, the connection stays closed.
        assert!(matches!(
            conn.next_event().await,
            Err(ClientError::Closed { code: 1001, .. })
        ));
        assert!(matches!(
            conn.send_input(Vec2::X, 0).await,
            Err(ClientError::Closed { code: 1001, .. })
        ));
        let session = conn.session();
        anyhow::Ok((
            inputs_sent,
            session.stats(),
            session.acked_seq(),
            last_ack,
            rtt,
        ))
    })
    .await
    .context("timed out")??;
    fake.finish_cleanly().await?;

    assert_eq!(stats.snapshots_received, 6);
    assert_eq!(stats.snapshots_missed, 0, "the fake sends every tick");
    assert_eq!(stats.pongs_received, 1);
    let rtt = rtt.context("no pong")?;
    assert!(
        rtt <= began.elapsed(),
        "a round trip of {rtt:?} in a shorter test"
    );
    // The client read everything the server wrote before its close: the Welcome, six
    // snapshots (three of them in two fragments) and the pong.
    let [log] = &fake.script.logs()[..] else {
        anyhow::bail!("one connection expected")
    };
    assert_eq!(
        (
            log.snapshots.load(Ordering::SeqCst),
            log.pongs.load(Ordering::SeqCst)
        ),
        (6, 1)
    );
    assert_eq!(stats.bytes_received, log.bytes.load(Ordering::SeqCst));
    assert_eq!(stats.messages_received, 1 + 6 + 1);
    // Every input sent arrived, in order; the client's ack is the server's last one,
    // which names an input that arrived.
    let seqs: Vec<u32> = log.inputs().iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs, inputs_sent,
        "inputs sent before the close all arrived"
    );
    assert_eq!(acked, last_ack, "the client keeps the server's last ack");
    assert!(
        last_ack == 0 || seqs.contains(&last_ack),
        "ack {last_ack} of inputs {seqs:?}"
    );
    assert!(
        fake.script.got_pong_frame.load(Ordering::SeqCst),
        "no auto-pong"
    );
    Ok(())
}

/// The same broken stream read both ways: a verifying connection stops at the delta
/// that does not apply (and closes with 1007), while a header-only one never decodes
/// an entity, so neither the bad delta nor the garbage body stops it, and it counts
/// exactly what the server wrote.
#[tokio::test]
async fn only_a_verifying_connection_decodes_and_applies_snapshots() -> anyhow::Result<()> {
    let (mut script, _hellos) = Script::new();
    script.close_after = Some(8);
    script.broken = true;
    let fake = serve(script).await?;
    let addr = fake.addr;
    let (verified, peeked) = tokio::time::timeout(LIMIT, async {
        let opts = ConnectOptions::new(url(addr, "r"), "verifier");
        let mut conn = Connection::connect_with(opts, SnapshotDecoding::Rebuild).await?;
        let mut ticks = Vec::new();
        let verified = loop {
            match conn.next_event().await {
                Ok(Event::Snapshot(s)) => {
                    assert_eq!(conn.session().world().entities.len(), 20);
                    ticks.push(s.tick);
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(e) => break e,
            }
        };
        assert_eq!(ticks, [1001, 1002, 1003, 1004]);
        // Its close (1007, for the bad delta) reaches the fake server before this
        // connection's socket is dropped: the fake ends cleanly only after a close.
        drop(conn);

        let opts = ConnectOptions::new(url(addr, "r"), "peeker");
        let mut conn = Connection::connect_with(opts, SnapshotDecoding::HeaderOnly).await?;
        let seq = conn.send_input(Vec2::X, 0).await?;
        let mut snapshots = Vec::new();
        let code = loop {
            match conn.next_event().await? {
                Event::Snapshot(s) => {
                    assert!(conn.session().world().entities.is_empty());
                    assert!(s.added.is_empty() && s.changed.is_empty());
                    snapshots.push((s.tick, s.base_tick, s.last_input_seq));
                }
                Event::Closed { code, .. } => break code,
                other => panic!("unexpected {other:?}"),
            }
        };
        assert_eq!(code, 1001);
        let ticks: Vec<u64> = snapshots.iter().map(|s| s.0).collect();
        assert_eq!(ticks, (1001..=1008).collect::<Vec<_>>());
        assert_eq!(
            snapshots[4].1, 1,
            "the bad delta's base, read from its header"
        );
        assert!(snapshots.iter().all(|s| s.2 == 0 || s.2 == seq));
        anyhow::Ok((verified, conn.session().stats()))
    })
    .await
    .context("timed out")??;
    fake.finish_cleanly().await?;
    assert!(
        matches!(
            verified,
            ClientError::Delta(tickcast_shared::delta::DeltaError::WrongBase { .. })
        ),
        "{verified:?}"
    );
    let [_, log] = &fake.script.logs()[..] else {
        anyhow::bail!("two connections expected")
    };
    assert_eq!(log.snapshots.load(Ordering::SeqCst), 8);
    assert_eq!(peeked.snapshots_received, 8);
    assert_eq!(peeked.keyframes_received, 7, "all but the bad delta");
    assert_eq!(peeked.snapshots_missed, 0);
    assert_eq!(peeked.bytes_received, log.bytes.load(Ordering::SeqCst));
    assert_eq!(peeked.messages_received, 1 + 8);
    assert_eq!(peeked.naive_bytes, 0, "no world, no naive size");
    Ok(())
}

#[tokio::test]
async fn a_close_frame_is_an_answer_not_a_reason_to_reconnect() -> anyhow::Result<()> {
    let (mut script, mut hellos) = Script::new();
    script.close_after = Some(3);
    let fake = serve(script).await?;
    tokio::time::timeout(LIMIT, async {
        let opts = ConnectOptions::new(url(fake.addr, "r"), "erin");
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
        anyhow::Ok(())
    })
    .await
    .context("timed out")??;
    // Once the fake stopped accepting and every connection ended, one Hello is all
    // there ever was.
    fake.finish_cleanly().await?;
    let (first, _) = hellos.recv().await.context("no hello")?;
    assert_eq!(first.resume, None);
    assert!(hellos.try_recv().is_err(), "connected again after a close");
    assert_eq!(fake.script.logs().len(), 1);
    Ok(())
}

#[tokio::test]
async fn refused_upgrade_carries_the_http_status() -> anyhow::Result<()> {
    for code in [400, 403, 409] {
        let (mut script, _hellos) = Script::new();
        script.refuse = Some(code);
        let fake = serve(script).await?;
        let result = tokio::time::timeout(
            LIMIT,
            Connection::connect(ConnectOptions::new(url(fake.addr, "r"), "bob")),
        )
        .await?;
        match result {
            Err(ClientError::HttpStatus { status }) => assert_eq!(status, code),
            other => panic!("expected HTTP {code}, got {other:?}"),
        }
        fake.finish_cleanly().await?;
    }
    Ok(())
}

#[tokio::test]
async fn wrong_path_is_404() -> anyhow::Result<()> {
    let (script, _hellos) = Script::new();
    let fake = serve(script).await?;
    let opts = ConnectOptions::new(format!("ws://{}/nope", fake.addr), "bob");
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(
        matches!(result, Err(ClientError::HttpStatus { status: 404 })),
        "{result:?}"
    );
    fake.finish_cleanly().await
}

#[tokio::test]
async fn upgrade_without_subprotocol_is_refused_by_the_client() -> anyhow::Result<()> {
    let (mut script, _hellos) = Script::new();
    script.echo_subprotocol = false;
    let fake = serve(script).await?;
    let opts = ConnectOptions::new(url(fake.addr, "r"), "bob");
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(
        matches!(
            result,
            Err(ClientError::SubprotocolMismatch { got: None, .. })
        ),
        "{result:?}"
    );
    // The client hung up right after the 101, before saying Hello.
    assert_eq!(
        fake.finish().await?,
        ["connection: reading Hello: Unexpected EOF"]
    );
    Ok(())
}

#[tokio::test]
async fn close_instead_of_welcome_is_a_typed_error() -> anyhow::Result<()> {
    let (mut script, _hellos) = Script::new();
    script.close_instead_of_welcome = Some(4000);
    let fake = serve(script).await?;
    let opts = ConnectOptions::new(url(fake.addr, "full"), "bob");
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    match result {
        Err(ClientError::Closed { code, reason }) => {
            assert_eq!((code, reason.as_str()), (4000, "room is full"));
        }
        other => panic!("expected close 4000, got {other:?}"),
    }
    fake.finish_cleanly().await
}

#[tokio::test]
async fn connect_timeout_is_enforced() -> anyhow::Result<()> {
    // A listener that accepts TCP but never answers HTTP.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let hold = tokio::spawn(async move {
        let (stream, _) = listener.accept().await?;
        anyhow::Ok(stream)
    });
    let mut opts = ConnectOptions::new(url(addr, "r"), "bob");
    opts.connect_timeout = Duration::from_millis(100);
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(
        matches!(result, Err(ClientError::ConnectTimeout)),
        "{result:?}"
    );
    // The client did reach the listener: the timeout covered the silent server, not a
    // failed TCP connect.
    let _held = tokio::time::timeout(LIMIT, hold).await???;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swarm_reports_what_it_measured() -> anyhow::Result<()> {
    const BOTS: u64 = 3;
    let (script, mut hellos) = Script::new();
    let fake = serve(script).await?;
    // Only Linux routes all of 127.0.0.0/8 to loopback out of the box.
    let spread = cfg!(target_os = "linux");
    let config = SwarmConfig {
        url: url(fake.addr, "swarm"),
        bots: BOTS as usize,
        duration: Duration::from_millis(1000),
        ramp: Duration::from_millis(60),
        rooms: 2,
        behaviour: BehaviourKind::Chase,
        source_addrs: Some(if spread { 2 } else { 1 }),
        ..SwarmConfig::default()
    };
    let report = tokio::time::timeout(LIMIT, run_swarm(config, CancellationToken::new())).await?;
    fake.finish_cleanly().await?;
    let logs = fake.script.logs();
    let sum = |f: fn(&Log) -> &AtomicU64| -> u64 {
        logs.iter().map(|l| f(l).load(Ordering::SeqCst)).sum()
    };

    assert_eq!(report.bots_requested, BOTS);
    assert_eq!(report.bots_connected, BOTS, "{report}");
    assert_eq!(report.bots_failed, 0, "{report}");
    assert!(report.errors.is_empty(), "{report}");
    assert_eq!(report.close_codes.get("1000"), Some(&BOTS), "{report}");
    assert_eq!(report.connect_ms.count, BOTS, "{report}");
    assert_eq!(report.reconnects, 0, "{report}");
    // The histograms behind the percentiles travel with the report, so that reports
    // merge exactly: the same observations.
    let histograms = report
        .histograms
        .as_ref()
        .context("no histograms")?
        .decode()
        .map_err(|(name, e)| anyhow::anyhow!("{name}: {e}"))?;
    assert_eq!(
        [
            histograms.rtt.len(),
            histograms.snapshot_gap.len(),
            histograms.input_ack.len(),
            histograms.connect.len(),
        ],
        [
            report.rtt_ms.count,
            report.snapshot_gap_ms.count,
            report.input_ack_ms.count,
            report.connect_ms.count,
        ]
    );
    assert_eq!((report.rooms, report.behaviour.as_str()), (2, "chase"));
    assert_eq!(logs.len() as u64, BOTS, "one connection per bot");

    // The fake writes every tick, so no bot misses one; a bot counts what it read
    // before its run ended, which is at most what was written to it.
    let received = report.snapshots_received;
    assert_eq!(report.snapshots_missed, 0, "{report}");
    assert!(received <= sum(|l| &l.snapshots), "{report}");
    let per_bot_s = |n: u64| n as f64 / report.connected_bot_s;
    assert!((report.snapshots_per_bot_per_s - per_bot_s(received)).abs() < 1e-9);
    // Bytes: at least each Welcome and every snapshot counted, at most everything the
    // fake wrote (pongs included).
    let welcome = logs[0].welcome_bytes.load(Ordering::SeqCst);
    let smallest = logs
        .iter()
        .map(|l| l.smallest_snapshot.load(Ordering::SeqCst))
        .min()
        .unwrap_or(0);
    assert!(
        (BOTS * welcome + received * smallest..=sum(|l| &l.bytes)).contains(&report.bytes_received),
        "{report}"
    );
    assert!((report.bytes_per_bot_per_s - per_bot_s(report.bytes_received)).abs() < 1e-9);
    assert!(report.rtt_ms.count <= report.pings_sent.min(sum(|l| &l.pongs)));
    assert!(report.input_ack_ms.count <= report.inputs_sent.min(received));
    // Each bot pings as it starts, and gets a snapshot 20 ms after its Welcome and an
    // ack one snapshot after its first input; the last bot starts 60 ms into a 1 s run,
    // so only a stall of most of a second could leave a bot without a pong, a snapshot
    // gap (one per snapshot after its first) or an ack.
    assert!(report.rtt_ms.count >= BOTS, "{report}");
    assert_eq!(report.snapshot_gap_ms.count, received - BOTS, "{report}");
    assert!(report.input_ack_ms.count >= BOTS, "{report}");

    // Round-robin over two rooms named after the URL's room.
    let mut rooms = BTreeMap::new();
    while let Ok((hello, _)) = hellos.try_recv() {
        *rooms.entry(hello.room).or_insert(0) += 1;
    }
    let expected: BTreeMap<String, i32> = [("swarm-0".to_owned(), 2), ("swarm-1".to_owned(), 1)]
        .into_iter()
        .collect();
    assert_eq!(rooms, expected);
    // Every input arrived, in order. Chasing: once a bot knows the world it steers due
    // west, toward the other avatar, and keeps doing so; its last input, sent most of a
    // second after its first snapshot, is one of those.
    for (i, log) in logs.iter().enumerate() {
        let inputs = log.inputs();
        let seqs: Vec<u32> = inputs.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=seqs.len() as u32).collect::<Vec<_>>(), "bot {i}");
        let chasing = inputs
            .iter()
            .position(|(_, m)| *m == WEST)
            .with_context(|| format!("bot {i} never chased: {inputs:?}"))?;
        assert!(
            inputs[chasing..].iter().all(|(_, m)| *m == WEST),
            "bot {i} stopped chasing: {inputs:?}"
        );
    }
    if spread {
        let v4 = |d| IpAddr::V4(Ipv4Addr::new(127, 0, 0, d));
        assert_eq!(fake.script.peers(), BTreeSet::from([v4(1), v4(2)]));
    }
    Ok(())
}

#[tokio::test]
async fn connect_from_a_chosen_local_address() -> anyhow::Result<()> {
    let (script, _hellos) = Script::new();
    let fake = serve(script).await?;
    let local = if cfg!(target_os = "linux") {
        Ipv4Addr::new(127, 0, 0, 3)
    } else {
        Ipv4Addr::LOCALHOST
    };
    let mut opts = ConnectOptions::new(url(fake.addr, "r"), "carol");
    opts.local_ip = Some(IpAddr::V4(local));
    let conn = tokio::time::timeout(LIMIT, Connection::connect(opts)).await??;
    assert_eq!(conn.close("done").await?, Some(1000));

    // An IPv6 local address cannot reach an IPv4-only host.
    let mut opts = ConnectOptions::new(url(fake.addr, "r"), "dave");
    opts.local_ip = Some(IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
    let result = tokio::time::timeout(LIMIT, Connection::connect(opts)).await?;
    assert!(
        matches!(result, Err(ClientError::AddressFamily { .. })),
        "{result:?}"
    );
    fake.finish_cleanly().await?;
    assert_eq!(fake.script.peers(), BTreeSet::from([IpAddr::V4(local)]));
    Ok(())
}
