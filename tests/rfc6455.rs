//! RFC 6455 to the letter, over real sockets: every framing rule a client can break
//! closes that client with the documented code and a reason naming the rule
//! (docs/PROTOCOL.md, "Closes"), while a watcher player in the same room loses no
//! snapshot; and every frame, pings and empty fragments included, counts against the
//! rate limit.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::raw::frame_bytes;
use common::*;

/// A player in `room` that has joined, ready to break a rule.
async fn joined(server: &TestServer, room: &str) -> RawWs {
    let mut raw = RawWs::connect(server.addr, &format!("/ws?room={room}"), None).await;
    raw.hello("mallory").await;
    raw
}

/// A close frame's payload: the code, then the reason's bytes.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_framing_rule_closes_only_its_breaker_with_its_code() {
    let mut c = config();
    c.tick_rate = 20;
    let server = start(c).await;
    let mut watcher = Watcher::join(&server.ws_url("rfc")).await;
    watcher.advances(1).await;

    let long_close = close_payload(1000, &[b'a'; 124]);
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "unmasked binary",
            frame_bytes(0x82, b"x", false),
            1002,
            "unmasked frame",
        ),
        (
            "unmasked ping",
            frame_bytes(0x89, b"", false),
            1002,
            "unmasked frame",
        ),
        (
            "close of 126 bytes",
            frame_bytes(0x88, &long_close, true),
            1002,
            "control frame too long",
        ),
        (
            "pong of 126 bytes",
            frame_bytes(0x8A, &[0; 126], true),
            1002,
            "control frame too long",
        ),
        (
            "fragmented ping",
            frame_bytes(0x09, b"", true),
            1002,
            "fragmented control frame",
        ),
        (
            "RSV1",
            frame_bytes(0xC2, b"x", true),
            1002,
            "reserved bits set",
        ),
        (
            "opcode 3",
            frame_bytes(0x83, b"x", true),
            1002,
            "unknown opcode",
        ),
        (
            "opcode 0xB",
            frame_bytes(0x8B, b"", true),
            1002,
            "unknown opcode",
        ),
        (
            "continuation without a start",
            frame_bytes(0x80, b"x", true),
            1002,
            "continuation without a message",
        ),
        (
            "new data frame inside a fragmented one",
            [frame_bytes(0x02, b"a", true), frame_bytes(0x82, b"b", true)].concat(),
            1002,
            "new message inside a fragmented one",
        ),
        (
            "invalid UTF-8 in a text frame",
            frame_bytes(0x81, &[b'o', b'k', 0xFF], true),
            1007,
            "invalid UTF-8 in text message",
        ),
        (
            // 0xCE starts a two-byte character; 0x28 cannot continue it. The message
            // never ends: it fails at the fragment, not at the end.
            "invalid UTF-8 across text fragments",
            [
                frame_bytes(0x01, &[b'a', 0xCE], true),
                frame_bytes(0x00, &[0x28], true),
            ]
            .concat(),
            1007,
            "invalid UTF-8 in text message",
        ),
        (
            "invalid UTF-8 in a close reason",
            frame_bytes(0x88, &close_payload(1000, &[0xC3, 0x28]), true),
            1007,
            "invalid UTF-8 in close reason",
        ),
        (
            "close code 1005",
            frame_bytes(0x88, &close_payload(1005, b""), true),
            1002,
            "invalid close code",
        ),
        (
            "close code 1006",
            frame_bytes(0x88, &close_payload(1006, b""), true),
            1002,
            "invalid close code",
        ),
        (
            "close code 999",
            frame_bytes(0x88, &close_payload(999, b""), true),
            1002,
            "invalid close code",
        ),
        (
            "close code 2000",
            frame_bytes(0x88, &close_payload(2000, b""), true),
            1002,
            "invalid close code",
        ),
        (
            "close of one byte",
            frame_bytes(0x88, &[0x03], true),
            1002,
            "close payload of one byte",
        ),
    ];
    for (what, bytes, code, reason) in cases {
        let mut raw = joined(&server, "rfc").await;
        raw.send_bytes(&bytes).await;
        assert_eq!(
            raw.expect_close().await,
            (code, reason.to_owned()),
            "{what}"
        );
        watcher.advances(1).await;
    }

    // A valid close code from the peer is echoed, and an application code too.
    for code in [1000u16, 4321] {
        let mut raw = joined(&server, "rfc").await;
        raw.send_frame(0x88, &close_payload(code, b"bye")).await;
        assert_eq!(raw.expect_close().await, (code, String::new()));
    }

    // The room played on; every tick the watcher missed is one the server accounts for.
    watcher.advances(5).await;
    let upto = watcher.latest();
    let allowed = left_out(server.addr, "rfc").await;
    let missing = missing_before(&watcher.finish().await, upto);
    assert!(
        missing <= allowed.catch_up + allowed.skipped,
        "the watcher missed {missing} ticks; the server accounts for {} catch-up ticks and {} \
         skipped snapshots",
        allowed.catch_up,
        allowed.skipped
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn pings_and_empty_fragments_count_against_the_rate_limit() {
    let mut c = config();
    c.max_messages_per_sec = 20;
    let server = start(c).await;
    let floods: [(&str, Vec<u8>); 2] = [
        ("pings only", frame_bytes(0x89, b"p", true).repeat(40)),
        (
            "empty continuations of a message that never ends",
            [
                frame_bytes(0x02, b"", true),
                frame_bytes(0x00, b"", true).repeat(40),
            ]
            .concat(),
        ),
    ];
    for (what, flood) in floods {
        let mut raw = joined(&server, "flood").await;
        raw.send_bytes(&flood).await;
        assert_eq!(
            raw.expect_close().await,
            (1008, "too many frames per second".to_owned()),
            "{what}"
        );
    }
    // Within the limit, pings are answered and the connection stays.
    let mut raw = joined(&server, "flood").await;
    raw.send_bytes(&frame_bytes(0x89, b"hi", true).repeat(5))
        .await;
    for _ in 0..5 {
        loop {
            match raw.frame().await {
                (0xA, payload) => break assert_eq!(payload, b"hi"),
                (0x2 | 0x9, _) => continue,
                (op, _) => panic!("unexpected opcode {op:#x}"),
            }
        }
    }
    server.stop().await.unwrap();
}
