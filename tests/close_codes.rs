//! Close codes of PROTOCOL.md section 7 that need a misbehaving client: 1002 for a broken
//! WebSocket frame, 4002 for an input `seq` that does not increase, 4005 for a client
//! that lets its reliable queue overflow. Each closes only the offender, with the
//! documented code and reason, while another player of the room keeps receiving
//! snapshots.
//!
//! 1011 (`InternalError`) has no test: the server sends it only when encoding its own
//! `Welcome`, `Pong` or snapshot into a `Vec` fails (server/src/net/connection.rs,
//! `write_loop`), which bincode never does for these types, so no input provokes it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::*;
use glam::Vec2;
use tickcast::shared::codec::encode_to_vec;
use tickcast::shared::{ClientMsg, DisconnectReason, Ping};
use tokio::io::AsyncReadExt;

fn input(seq: u32) -> ClientMsg {
    input_msg(seq, Vec2::X)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_websocket_frames_close_with_1002_and_the_room_plays_on() {
    let server = start(config()).await;
    let url = server.ws_url("frames");
    let mut watcher = Watcher::join(&url).await;
    let mut tick = watcher.wait_past(0).await;
    let path = "/ws?room=frames";
    let ping = encode_to_vec(&ClientMsg::Ping(Ping { nonce: 7 })).unwrap();

    // Each case: what is wrong with the one frame sent after a Hello, the frame's first
    // byte (FIN, RSV1-3, opcode), its payload, and the rule the close reason names.
    let cases: [(&str, u8, &[u8], &str); 7] = [
        (
            "RSV1 set on a binary frame",
            0xc2,
            &ping,
            "reserved bits set",
        ),
        (
            "RSV3 set on a binary frame",
            0x92,
            &ping,
            "reserved bits set",
        ),
        ("reserved data opcode 0x3", 0x83, &ping, "unknown opcode"),
        ("reserved control opcode 0xB", 0x8b, b"", "unknown opcode"),
        ("a fragmented ping", 0x09, b"x", "fragmented control frame"),
        (
            "a ping of 126 bytes",
            0x89,
            &[0u8; 126],
            "control frame too long",
        ),
        (
            "a continuation with no message",
            0x80,
            &ping,
            "continuation without a message",
        ),
    ];
    for (what, head, payload, rule) in cases {
        let mut ws = RawWs::connect(server.addr, path, None).await;
        ws.hello("mallory").await;
        ws.send_frame(head, payload).await;
        assert_eq!(
            ws.expect_close().await,
            (DisconnectReason::ProtocolError.code(), rule.to_owned()),
            "{what}"
        );
        tick = watcher.wait_past(tick).await;
    }

    // A new message started inside a fragmented one.
    let mut ws = RawWs::connect(server.addr, path, None).await;
    ws.hello("mallory").await;
    ws.send_frame(0x02, &ping[..1]).await;
    ws.send_frame(0x82, &ping).await;
    assert_eq!(
        ws.expect_close().await,
        (
            DisconnectReason::ProtocolError.code(),
            "new message inside a fragmented one".to_owned()
        ),
        "a binary frame inside a fragmented message"
    );

    // A broken frame before Hello is a framing error too, not an unexpected message.
    let mut ws = RawWs::connect(server.addr, path, None).await;
    ws.send_frame(0xa2, &encode_to_vec(&hello_msg("early")).unwrap())
        .await;
    assert_eq!(
        ws.expect_close().await,
        (
            DisconnectReason::ProtocolError.code(),
            "reserved bits set".to_owned()
        ),
        "RSV2 on the Hello"
    );

    // The watcher was never disturbed and still receives new ticks; the offenders left.
    let tick = watcher.wait_past(tick).await;
    watcher.wait_past(tick + 3).await;
    wait_players(server.addr, "frames", 1).await;
    assert!(watcher.finish().await.len() > 3);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_input_seq_that_does_not_increase_closes_with_4002() {
    let server = start(config()).await;
    let url = server.ws_url("seq");
    let mut watcher = Watcher::join(&url).await;
    let mut tick = watcher.wait_past(0).await;

    for (what, seqs) in [
        ("repeated", [1, 2, 3, 3]),
        ("decreasing", [1, 2, 7, 4]),
        ("back to zero", [1, 2, 3, 0]),
    ] {
        let mut ws = connect(&url).await;
        hello(&mut ws, "mallory").await;
        // The increasing ones are fine: the server applies them (the newest wins)...
        for seq in &seqs[..3] {
            send(&mut ws, &input(*seq)).await;
        }
        loop {
            let s = recv_snapshot(&mut ws).await;
            if s.last_input_seq == seqs[2] {
                break;
            }
            assert!(s.last_input_seq < seqs[2], "{what}: {s:?}");
        }
        // ...and the one that does not increase ends the connection.
        send(&mut ws, &input(seqs[3])).await;
        let (code, reason) = expect_close(&mut ws).await;
        assert_eq!(
            (code, reason),
            close_of(DisconnectReason::UnexpectedMessage),
            "{what}: {seqs:?}"
        );
        tick = watcher.wait_past(tick).await;
    }

    // The room went on for the watcher, and the offenders left it.
    watcher.wait_past(tick + 3).await;
    wait_players(server.addr, "seq", 1).await;
    watcher.finish().await;
    server.stop().await.unwrap();
}

/// A server whose writers block on a keyframe that a client with a small receive
/// buffer does not read, and whose reliable queue holds 4 messages.
async fn slow_consumer_server() -> TestServer {
    let mut c = config();
    // A keyframe of about 30 KB, far more than the 4 KiB socket buffers on both sides
    // (the kernel doubles them) hold: the writer of a client that does not read stays
    // blocked in it, so the Pongs it owes can only queue.
    c.npcs = 3000;
    c.send_buffer = 4096;
    c.reliable_queue = 4;
    // The pings must overflow the queue, not the rate limit (1008).
    c.max_messages_per_sec = 100_000;
    start(c).await
}

/// Joins room `queue` with a client that then reads nothing, waits until the server's
/// writer is blocked on its keyframe, lets a watcher join, and overflows the reliable
/// queue: 4 pings are queued and the player stays, the fifth closes it.
async fn overflow(server: &TestServer) -> (RawWs, Watcher) {
    let mut ws = RawWs::connect(server.addr, "/ws?room=queue", Some(SMALL_WINDOW)).await;
    ws.send(&hello_msg("deaf")).await;
    // The writer has started on the keyframe (counted before it is written), and the
    // client is alone in the room, so that is the write that cannot finish.
    wait_until("snapshots started", Some(1), || {
        server_metric(server.addr, "tickcast_snapshots_sent_total")
    })
    .await;
    let mut watcher = Watcher::join(&server.ws_url("queue")).await;
    watcher.wait_past(0).await;
    for nonce in 0..4 {
        ws.send(&ClientMsg::Ping(Ping { nonce })).await;
    }
    // An input queues nothing. The reader handles messages in order, so once it has
    // read the input (two Hellos, four pings, one input) the four Pongs have fitted.
    ws.send(&input(1)).await;
    wait_until("messages read past a full queue", Some(7), || {
        server_metric(server.addr, "tickcast_messages_received_total")
    })
    .await;
    assert_eq!(players(server.addr, "queue").await, 2);
    ws.send(&ClientMsg::Ping(Ping { nonce: 4 })).await;
    wait_players(server.addr, "queue", 1).await;
    (ws, watcher)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_lets_its_reliable_queue_overflow_is_closed_with_4005() {
    let server = slow_consumer_server().await;
    let (mut ws, mut watcher) = overflow(&server).await;
    let tick = watcher.wait_past(0).await;
    // The close frame waits behind what the client did not read; reading lets it out.
    assert_eq!(
        ws.expect_close().await,
        close_of(DisconnectReason::SlowConsumer)
    );
    let tick = watcher.wait_past(tick).await;
    watcher.wait_past(tick + 3).await;
    watcher.finish().await;
    // Counted once the connection's tasks are done, just after the close frame went out.
    wait_until("4005 closes", Some(1), || {
        server_metric(
            server.addr,
            "tickcast_connections_closed_total{code=\"4005\"}",
        )
    })
    .await;
    server.stop().await.unwrap();
}

/// A slow consumer still sends what a game client sends every tick. The close frame
/// must reach it all the same: the server has to take in (and drop) what the client
/// sent after the overflow while its last frames drain, or the kernel answers the
/// unread bytes with a reset that discards the unsent keyframe tail and the close frame.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_that_kept_sending_still_receives_its_4005() {
    let server = slow_consumer_server().await;
    let (mut ws, watcher) = overflow(&server).await;
    ws.send(&input(2)).await;
    // Reads as a slow client does, a little at a time, until the server has counted the
    // close (its socket is closed then) or ended the stream.
    let closed = || {
        server_metric(
            server.addr,
            "tickcast_connections_closed_total{code=\"4005\"}",
        )
    };
    let drained = tokio::time::timeout(WAIT, async {
        while closed().await != Some(1) {
            let mut chunk = [0u8; 512];
            match ws.stream.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => ws.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    })
    .await
    .expect("the server neither closed nor stopped sending");
    if let Err(e) = drained {
        panic!(
            "the connection failed before the close frame arrived ({e}); {} bytes read",
            ws.buf.len()
        );
    }
    let read_rest = async {
        loop {
            let mut chunk = [0u8; 4096];
            match ws.stream.read(&mut chunk).await {
                Ok(0) => return Ok(()),
                Ok(n) => ws.buf.extend_from_slice(&chunk[..n]),
                Err(e) => return Err(e),
            }
        }
    };
    if let Err(e) = tokio::time::timeout(WAIT, read_rest).await.expect("no EOF") {
        panic!(
            "the connection was reset before the close frame arrived ({e}); {} bytes read",
            ws.buf.len()
        );
    }
    assert_eq!(
        ws.expect_close().await,
        close_of(DisconnectReason::SlowConsumer)
    );
    watcher.finish().await;
    server.stop().await.unwrap();
}
