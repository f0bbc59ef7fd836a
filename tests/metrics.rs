//! `/metrics` (Prometheus text) and `/readyz` over real sockets: per-room tick
//! histograms, rejected inputs, closes by code, and readiness at the connection limit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use futures_util::SinkExt;
use tickcast::shared::codec::decode_server;
use tickcast::shared::{ClientMsg, DisconnectReason, Ping, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

/// What one client has read, counted the way the server counts what it writes: every
/// frame but the close, and every payload byte.
#[derive(Debug, Default)]
struct Tally {
    frames: u64,
    bytes: u64,
    snapshots: u64,
    keyframes: u64,
    /// Ticks of the snapshots read, in order.
    ticks: Vec<u64>,
}

impl Tally {
    /// Reads one frame: `Ok(message)` for a protocol message, `Err(close code)` at the
    /// server's close. Control frames are counted and skipped.
    async fn read(&mut self, ws: &mut Ws) -> Result<ServerMsg, u16> {
        loop {
            match next_message(ws).await {
                Message::Binary(bytes) => {
                    self.frames += 1;
                    self.bytes += bytes.len() as u64;
                    let msg = decode_server(&bytes).unwrap();
                    if let ServerMsg::Snapshot(s) = &msg {
                        self.snapshots += 1;
                        self.keyframes += u64::from(s.base_tick == 0);
                        if let Some(last) = self.ticks.last() {
                            assert!(s.tick > *last, "tick {} after {last}", s.tick);
                        }
                        self.ticks.push(s.tick);
                    }
                    return Ok(msg);
                }
                // The server's keepalive pings (empty) count as frames too.
                Message::Ping(payload) => {
                    self.frames += 1;
                    self.bytes += payload.len() as u64;
                }
                Message::Close(Some(frame)) => return Err(u16::from(frame.code)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// Sends Hello and reads the Welcome.
    async fn hello(&mut self, ws: &mut Ws, name: &str) {
        send(ws, &hello_msg(name)).await;
        match self.read(ws).await {
            Ok(ServerMsg::Welcome(_)) => {}
            other => panic!("expected Welcome, got {other:?}"),
        }
    }
}

/// Reads `/metrics` until a page shows the room's tick histogram whole: its `+Inf`
/// bucket equal to its count. The two are separate atomics that a tick updates one
/// after the other, so a page rendered during a tick's update may show them one apart;
/// a room ticking every 33 ms leaves such a page rare, and ten in a row impossible
/// unless the histogram is wrong.
async fn page_with_whole_histogram(addr: std::net::SocketAddr, room: &str) -> String {
    let count_series = format!("tickcast_room_tick_duration_seconds_count{{room=\"{room}\"}}");
    let inf_series =
        format!("tickcast_room_tick_duration_seconds_bucket{{room=\"{room}\",le=\"+Inf\"}}");
    let mut seen = Vec::new();
    for _ in 0..10 {
        let text = metrics(addr).await;
        let (inf, n) = (count(&text, &inf_series), count(&text, &count_series));
        if inf == n {
            return text;
        }
        seen.push((inf, n));
    }
    panic!("the +Inf bucket never matched the count: {seen:?}");
}

#[tokio::test]
async fn metrics_count_ticks_per_room_rejections_and_closes() {
    let server = start(config()).await;
    let mut player = connect(&server.ws_url("metered")).await;
    let mut seen = Tally::default();
    seen.hello(&mut player, "p").await;
    while seen.snapshots < 5 {
        seen.read(&mut player).await.unwrap();
    }
    assert_eq!(seen.keyframes, 1, "a keyframe first, then deltas");

    // Another player, closed by the server for an undecodable message; everything
    // it was sent, it reads before the close.
    let mut bad = connect(&server.ws_url("metered")).await;
    let mut bad_seen = Tally::default();
    bad_seen.hello(&mut bad, "bad").await;
    bad.send(Message::Binary(vec![0xff; 3].into()))
        .await
        .unwrap();
    let code = loop {
        if let Err(code) = bad_seen.read(&mut bad).await {
            break code;
        }
    };
    assert_eq!(code, DisconnectReason::InvalidPayload.code());

    let before = std::mem::take(&mut seen.ticks);
    let text = page_with_whole_histogram(server.addr, "metered").await;
    // Everything the server had written to `player` when it rendered the page reaches
    // the player before the reply to a ping sent after the page arrived: one writer per
    // connection writes in order. So each counter lies between what the two players
    // had read before the page and what they read before the pong.
    let before_page = (seen.frames, seen.bytes, seen.snapshots, seen.keyframes);
    send(&mut player, &ClientMsg::Ping(Ping { nonce: 7 })).await;
    let pong = loop {
        let before_msg = (seen.frames, seen.bytes, seen.snapshots, seen.keyframes);
        if let ServerMsg::Pong(p) = seen.read(&mut player).await.unwrap() {
            break (p, before_msg);
        }
    };
    let (pong, before_pong) = pong;
    assert_eq!(pong.nonce, 7);
    let within = |series: &str, lo: u64, hi: u64| {
        let v = count(&text, series);
        assert!(
            (lo..=hi).contains(&v),
            "{series} = {v}, expected {lo}..={hi}"
        );
    };
    let (b, p0, p1) = (&bad_seen, before_page, before_pong);
    within(
        "tickcast_frames_sent_total",
        b.frames + p0.0,
        b.frames + p1.0,
    );
    within("tickcast_bytes_sent_total", b.bytes + p0.1, b.bytes + p1.1);
    within(
        "tickcast_snapshots_sent_total",
        b.snapshots + p0.2,
        b.snapshots + p1.2,
    );
    within(
        "tickcast_keyframes_sent_total",
        b.keyframes + p0.3,
        b.keyframes + p1.3,
    );

    // Ticks: the page was rendered after `player` read the snapshots in `before`, and
    // before the room's tick was read for the pong. A tick is counted just after its
    // snapshot is offered, so only the last snapshot read may not be counted yet.
    let [.., second_last, _] = before[..] else {
        panic!("five snapshots read: {before:?}")
    };
    within("tickcast_ticks_total", second_last, pong.server_tick);
    // Every snapshot read came from a wake-up of its own, each wake-up runs at least
    // one tick, and the last wake-up read may still be finishing.
    let wakeups = count(
        &text,
        "tickcast_room_tick_duration_seconds_count{room=\"metered\"}",
    );
    assert!(
        (before.len() as u64 - 1..=pong.server_tick).contains(&wakeups),
        "{wakeups} wake-ups, {} snapshots read, tick {} after the page",
        before.len(),
        pong.server_tick
    );
    // Lateness is observed first in each wake-up, and rendered after the duration.
    let late = count(
        &text,
        "tickcast_room_tick_lateness_seconds_count{room=\"metered\"}",
    );
    assert!(
        (wakeups..=pong.server_tick).contains(&late),
        "{late} lateness observations, {wakeups} wake-ups"
    );
    assert_eq!(count(&text, "tickcast_inputs_rejected_total"), 1);
    assert_eq!(
        count(&text, "tickcast_connections_closed_total{code=\"1007\"}"),
        1
    );
    assert_eq!(count(&text, "tickcast_rooms_open"), 1);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_turns_503_at_the_connection_limit() {
    // The cap counts every TCP connection at accept, the probe's own included, so the
    // probe keeps one connection open and asks over it.
    let mut c = config();
    c.max_connections = 2;
    let server = start(c).await;
    let mut probe = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(get_on(&mut probe, "/readyz").await.0, 200);
    assert_eq!(get_on(&mut probe, "/healthz").await.0, 200);
    let mut only = connect(&server.ws_url("lobby")).await;
    hello(&mut only, "only").await;
    let (status, body) = get_on(&mut probe, "/readyz").await;
    assert_eq!((status, body.trim()), (503, "at the connection limit"));
    assert_eq!(refused(&server.ws_url("lobby")).await, 503);
    assert_eq!(
        get_on(&mut probe, "/healthz").await.0,
        200,
        "alive while not ready"
    );
    server.stop().await.unwrap();
}

/// `GET path` on a connection kept open; the status and body (`Content-Length` long).
async fn get_on(s: &mut tokio::net::TcpStream, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&raw).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return (head[9..12].parse().unwrap(), body.to_owned());
            }
        }
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed mid-response");
        raw.extend_from_slice(&buf[..n]);
    }
}
