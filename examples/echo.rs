//! A WebSocket echo endpoint on tickcast's own reader, for the Autobahn test suite.
//!
//! ```sh
//! cargo run --release --example echo -- 127.0.0.1:9001
//! kosoku -m fuzzingclient -x '12.*' -x '13.*' -o /tmp/autobahn 127.0.0.1:9001
//! ```
//! (`.ci/autobahn.sh` does both; docs/AUTOBAHN.md has the results.)
//!
//! Every connection is read exactly as a game connection is: the same audited stream
//! and frame reader (`tickcast_server::net::frames`: masking, control frames, reserved
//! bits, opcodes, errors mapped to close codes), and the same frame rules
//! (`tickcast_server::session::Framing`: close payloads, fragment order, UTF-8 checked
//! per fragment, the frame-rate and message-size limits). Only the numbers differ: a
//! message may be 16 MiB (Autobahn 9.* sends such) and a million frames per second are
//! allowed (9.* also sends a megabyte in 64-byte fragments). Where a game connection
//! decodes a message, this one sends it back: text as text, binary as binary. Pings
//! are answered, and a peer's close code is echoed.

use std::net::SocketAddr;
use std::time::Duration;

use fastwebsockets::{upgrade, Frame, OpCode, Payload, WebSocket, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tickcast::server::net::frames::{self, frame_in, Failure, Next};
use tickcast::server::session::{End, Framing};
use tickcast::shared::websocket::MessageKind;
use tickcast::shared::DisconnectReason;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::{timeout, Instant};

/// The largest message echoed (Autobahn 9.* sends up to 16 MiB).
const MAX_MESSAGE_BYTES: usize = 16 << 20;
/// Frames per second, sustained and in a burst.
const MAX_FRAMES_PER_SEC: u32 = 1_000_000;
/// Silence after which a connection is closed (4003, like a game connection's).
const IDLE: Duration = Duration::from_secs(60);
/// How long to wait for the peer's close reply after ours.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()?;
    let listener = TcpListener::bind(addr).await?;
    println!("echo listening on ws://{}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let service = service_fn(accept);
            let conn = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

/// Answers any WebSocket upgrade with 101 and starts the echo; anything else gets 400.
async fn accept(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    if !upgrade::is_upgrade_request(&req) {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
        return Ok(response);
    }
    let (response, upgraded) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        if let Ok(ws) = upgraded.await {
            echo(ws).await;
        }
    });
    Ok(response)
}

/// How an echo connection ends: the close frame to send, if any.
enum Ending {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Echo the peer's close (its code, or none).
    Echo(Option<u16>),
    /// The socket is gone.
    Gone,
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(ws: WebSocket<S>) {
    let (mut rx, mut tx) = frames::split(ws, MAX_MESSAGE_BYTES.saturating_add(1));
    let mut framing = Framing::new(
        MAX_MESSAGE_BYTES,
        MAX_FRAMES_PER_SEC,
        std::time::Instant::now(),
    );
    let ending = loop {
        // Pongs are written below, in order with the echoes, from the returned ping.
        let frame = match rx.next(Instant::now() + IDLE, &mut |_| Ok(())).await {
            Next::Frame(frame) => frame,
            Next::TimedOut => {
                let idle = DisconnectReason::IdleTimeout;
                break Ending::Close(idle.code(), idle.reason());
            }
            Next::Failed(Failure::Refused(reason, detail)) => {
                break Ending::Close(reason.code(), detail)
            }
            Next::Failed(Failure::Gone) => break Ending::Gone,
        };
        let reply = match framing.handle(std::time::Instant::now(), frame_in(&frame)) {
            Ok(Some((kind, message))) => {
                let opcode = match kind {
                    MessageKind::Text => OpCode::Text,
                    MessageKind::Binary => OpCode::Binary,
                };
                Frame::new(true, opcode, None, Payload::Borrowed(message))
            }
            Ok(None) if frame.opcode == OpCode::Ping => {
                Frame::pong(Payload::Borrowed(&frame.payload))
            }
            Ok(None) => continue,
            Err(End::Peer(code)) => break Ending::Echo(code),
            Err(End::Server(reason)) => {
                break Ending::Close(reason.code(), framing.detail().unwrap_or(reason.reason()))
            }
        };
        if tx.write_frame(reply).await.is_err() {
            break Ending::Gone;
        }
    };
    let close = match ending {
        Ending::Close(code, reason) => Frame::close(code, reason.as_bytes()),
        // Close::parse let only codes a peer may send through: echo it as is.
        Ending::Echo(Some(code)) => Frame::close(code, &[]),
        Ending::Echo(None) => Frame::close_raw(Payload::Borrowed(&[])),
        Ending::Gone => return,
    };
    let _ = timeout(CLOSE_LINGER, async {
        if tx.write_frame(close).await.is_ok() && tx.flush().await.is_ok() {
            if let Ending::Close(..) = ending {
                rx.drain().await;
            }
        }
    })
    .await;
}
