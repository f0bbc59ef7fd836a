//! The fixed endpoints (`/ws`, `/healthz`, `/readyz`, `/metrics`) answer only `GET`:
//! any other method gets `405` (PROTOCOL.md section 2), a plain-text body, no upgrade,
//! and an `Allow` header naming `GET` (RFC 9110 section 15.5.6 makes it a MUST).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATHS: [&str; 4] = ["/ws", "/healthz", "/readyz", "/metrics"];

/// Methods that are not `GET`: one with a body, two without, and a made-up one.
const WRONG: [&str; 4] = ["POST", "PUT", "DELETE", "PATCH"];

/// A parsed HTTP/1.1 response: status, headers (names lowercased) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` on a fresh connection and reads one response: its headers, then as
/// many body bytes as `Content-Length` says (the connection may stay open after it).
async fn exchange(addr: SocketAddr, request: &str) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let read = async {
        loop {
            if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(raw[..end].to_vec()).unwrap();
                let answer = parse_head(&head);
                let len: usize = answer
                    .header("content-length")
                    .map_or(0, |v| v.parse().unwrap());
                while raw.len() < end + 4 + len {
                    assert_ne!(s.read_buf(&mut raw).await.unwrap(), 0, "EOF in the body");
                }
                let body = String::from_utf8(raw[end + 4..].to_vec()).unwrap();
                return Answer { body, ..answer };
            }
            assert_ne!(s.read_buf(&mut raw).await.unwrap(), 0, "EOF in the headers");
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .expect("no response in time")
}

/// The status line and headers of a response; the body is filled in by the caller.
fn parse_head(head: &str) -> Answer {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line:?}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header without a colon");
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Answer {
        status,
        headers,
        body: String::new(),
    }
}

/// A request with `method` on `path`; with a small body for the methods that carry one.
async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let body = if method == "GET" { "" } else { "{}" };
    exchange(
        addr,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
    .await
}

#[tokio::test]
async fn every_method_but_get_on_the_fixed_endpoints_is_refused_with_405() {
    let server = start(config()).await;
    for path in PATHS {
        for method in WRONG {
            let a = request(server.addr, method, path).await;
            assert_eq!(a.status, 405, "{method} {path}: {a:?}");
            assert_eq!(a.body, "use GET\n", "{method} {path}");
            assert_eq!(
                a.header("content-type"),
                Some("text/plain; charset=utf-8"),
                "{method} {path}"
            );
        }
    }
    // The same paths still answer GET, so the 405 is about the method alone.
    assert_eq!(request(server.addr, "GET", "/healthz").await.status, 200);
    assert_eq!(request(server.addr, "GET", "/readyz").await.status, 200);
    assert_eq!(request(server.addr, "GET", "/metrics").await.status, 200);
    // A plain GET on /ws is not an upgrade: 400, not 405.
    assert_eq!(request(server.addr, "GET", "/ws").await.status, 400);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_complete_websocket_handshake_with_the_wrong_method_is_not_upgraded() {
    let server = start(config()).await;
    for method in ["POST", "PUT"] {
        let a = exchange(
            server.addr,
            &format!(
                "{method} /ws?room=lobby HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
                 Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
                 Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                 Sec-WebSocket-Protocol: tickcast.v2\r\nContent-Length: 0\r\n\r\n"
            ),
        )
        .await;
        assert_eq!(a.status, 405, "{method}: {a:?}");
        assert_eq!(a.header("sec-websocket-accept"), None, "{method}");
        assert_eq!(a.header("upgrade"), None, "{method}");
    }
    // Nothing was upgraded, so no connection and no room came of it.
    let (_, metrics) = http(server.addr, "GET", "/metrics", "").await;
    assert!(
        metrics.lines().any(|l| l == "tickcast_connections_total 0"),
        "{metrics}"
    );
    assert!(
        metrics.lines().any(|l| l == "tickcast_rooms_open 0"),
        "{metrics}"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_405_names_get_in_its_allow_header() {
    let server = start(config()).await;
    for path in PATHS {
        for method in WRONG {
            let a = request(server.addr, method, path).await;
            assert_eq!(a.status, 405, "{method} {path}");
            assert_eq!(
                a.header("allow"),
                Some("GET"),
                "{method} {path}: RFC 9110 15.5.6 requires Allow in a 405: {a:?}"
            );
        }
    }
    server.stop().await.unwrap();
}
