//! A WebSocket client written out by hand over a TCP stream, for what no WebSocket
//! library lets a test do: send exactly the bytes it is given (reserved bits, unknown
//! opcodes, fragments out of order), and never answer or read anything on its own, so
//! that a ping it reads goes unanswered, which is how a client whose game froze looks
//! to the server.

use std::net::SocketAddr;

use tickcast::shared::codec::{decode_server, encode_to_vec};
use tickcast::shared::{ClientMsg, ServerMsg, Welcome, SUBPROTOCOL};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::{hello_msg, WAIT};

/// The example key of RFC 6455 section 1.3 and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The masking key of every frame sent: a client must mask, and any key will do.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub struct RawWs {
    pub stream: TcpStream,
    /// Bytes read but not yet parsed.
    pub buf: Vec<u8>,
}

impl RawWs {
    /// Upgrades `path` with `tickcast.v2`, and checks the accept key and the echoed
    /// subprotocol of the 101; `recv_buffer` sets SO_RCVBUF before connecting.
    pub async fn connect(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut stream = tokio::time::timeout(WAIT, socket.connect(addr))
            .await
            .expect("connect timed out")
            .unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut ws = Self {
            stream,
            buf: Vec::new(),
        };
        let end = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(end) = ws.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end;
                }
                ws.read_more().await;
            }
        })
        .await
        .expect("no upgrade response in time");
        let head = String::from_utf8(ws.buf[..end].to_vec())
            .unwrap()
            .to_ascii_lowercase();
        ws.buf.drain(..end + 4);
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert!(
            head.contains(&format!(
                "sec-websocket-accept: {}",
                ACCEPT.to_ascii_lowercase()
            )),
            "{head}"
        );
        assert!(
            head.contains(&format!("sec-websocket-protocol: {SUBPROTOCOL}")),
            "{head}"
        );
        ws
    }

    async fn read_more(&mut self) {
        let n = self.stream.read_buf(&mut self.buf).await.unwrap();
        assert_ne!(n, 0, "the server ended the stream without a close frame");
    }

    /// Writes one frame, masked as every client frame must be. `head` is its first byte:
    /// FIN, RSV1-3 and the opcode.
    pub async fn send_frame(&mut self, head: u8, payload: &[u8]) {
        self.send_bytes(&frame_bytes(head, payload, true)).await;
    }

    /// Writes bytes as they are: frames built with [`frame_bytes`], several at once.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends one protocol message as a single binary frame.
    pub async fn send(&mut self, msg: &ClientMsg) {
        self.send_frame(0x82, &encode_to_vec(msg).unwrap()).await;
    }

    /// The next frame from the server: its opcode and payload. Server frames are never
    /// masked, and tickcast's server never fragments.
    pub async fn frame(&mut self) -> (u8, Vec<u8>) {
        tokio::time::timeout(WAIT, async {
            while self.buf.len() < 2 {
                self.read_more().await;
            }
            let (b0, b1) = (self.buf[0], self.buf[1]);
            assert_eq!(b0 & 0xf0, 0x80, "FIN set, no reserved bits: {b0:#04x}");
            assert_eq!(b1 & 0x80, 0, "a server frame must not be masked");
            // Where the payload starts: after a 16- or 64-bit length, or right away.
            let at = match b1 & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            while self.buf.len() < at {
                self.read_more().await;
            }
            let len = match at {
                4 => usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                10 => usize::try_from(u64::from_be_bytes(self.buf[2..10].try_into().unwrap()))
                    .unwrap(),
                _ => usize::from(b1 & 0x7f),
            };
            while self.buf.len() < at + len {
                self.read_more().await;
            }
            let payload = self.buf[at..at + len].to_vec();
            self.buf.drain(..at + len);
            (b0 & 0x0f, payload)
        })
        .await
        .expect("no frame in time")
    }

    /// The next protocol message; ping frames are read and ignored (never answered).
    /// Panics on any other frame.
    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            match self.frame().await {
                (0x2, payload) => return decode_server(&payload).unwrap(),
                (0x9, _) => continue,
                (op, payload) => panic!("expected a message, got opcode {op:#x}: {payload:?}"),
            }
        }
    }

    /// Sends `Hello` and returns the `Welcome`, which must be the next message.
    pub async fn hello(&mut self, name: &str) -> Welcome {
        self.send(&hello_msg(name)).await;
        match self.recv().await {
            ServerMsg::Welcome(w) => w,
            other => panic!("expected Welcome, got {other:?}"),
        }
    }

    /// Reads (without answering anything) up to the server's close frame; returns its
    /// code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        self.expect_close_unanswered().await.0
    }

    /// [`RawWs::expect_close`], also returning how many ping frames went unanswered on
    /// the way.
    pub async fn expect_close_unanswered(&mut self) -> ((u16, String), usize) {
        let mut pings = 0;
        loop {
            match self.frame().await {
                (0x8, p) => {
                    assert!(p.len() >= 2, "close frame without a code");
                    let code = u16::from_be_bytes([p[0], p[1]]);
                    return ((code, String::from_utf8(p[2..].to_vec()).unwrap()), pings);
                }
                (0x9, _) => pings += 1,
                // Snapshots, and the pongs the server owes for pings a test sent.
                (0x2 | 0xA, _) => {}
                (op, payload) => panic!("unexpected opcode {op:#x}: {payload:?}"),
            }
        }
    }
}

/// One client frame: `head` (FIN, RSV1-3, opcode), then the length, then, when `masked`
/// (as a client must), the masking key and the masked payload; unmasked, the payload
/// as it is.
pub fn frame_bytes(head: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mask_bit = if masked { 0x80 } else { 0 };
    let mut frame = vec![head];
    match payload.len() {
        n if n < 126 => frame.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            frame.push(mask_bit | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(mask_bit | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        frame.extend_from_slice(&MASK);
        frame.extend(payload.iter().zip(MASK.iter().cycle()).map(|(b, m)| b ^ m));
    } else {
        frame.extend_from_slice(payload);
    }
    frame
}
