//! Everything that can go wrong with one player connection, as one typed error.
//!
//! [`crate::connection::Connection`] returns [`ClientError`] from connecting, sending and
//! receiving; the bot swarm counts failures by [`ClientError::kind`], so the report says
//! "connect: http 409" or "close 4003" rather than a free-form message.

use fastwebsockets::WebSocketError;
use tickcast_shared::{DecodeError, EncodeError};

/// Why a connection could not be made or could not go on.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not a `ws://` or `wss://host[:port]/path[?room=NAME]` URL this client
    /// can use.
    #[error("invalid url: {0}")]
    InvalidUrl(String),
    /// The upgrade request could not be built (a header value that is not valid HTTP).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// TCP connect, WebSocket handshake and `Hello`/`Welcome` together took longer than
    /// the connect timeout.
    #[error("connect timed out")]
    ConnectTimeout,
    /// The server answered the upgrade with an HTTP status other than 101 (400: no
    /// subprotocol, 403: origin refused, 409: room full, ...).
    #[error("server refused the upgrade with HTTP {status}")]
    HttpStatus {
        /// The HTTP status code of the refusal.
        status: u16,
    },
    /// The 101 response did not select the `tickcast.v2` subprotocol.
    #[error("server did not select subprotocol {expected} (got {got:?})")]
    SubprotocolMismatch {
        /// What we offered.
        expected: &'static str,
        /// What the server answered in `Sec-WebSocket-Protocol`, if anything.
        got: Option<String>,
    },
    /// The server's `Welcome` carries another protocol version.
    #[error("server speaks protocol version {server}, we speak {ours}")]
    VersionMismatch {
        /// The server's version.
        server: u16,
        /// Ours, [`tickcast_shared::PROTOCOL_VERSION`].
        ours: u16,
    },
    /// The server closed the connection with a close frame before we expected it
    /// (during connect), or a send was attempted after it did.
    #[error("closed by server: {code} {reason:?}")]
    Closed {
        /// The close code received (1005 if the frame carried none).
        code: u16,
        /// The close reason received.
        reason: String,
    },
    /// The connection is closing or closed on our side; nothing more can be sent.
    #[error("connection is closed")]
    NotOpen,
    /// The TCP connection ended without a close frame.
    #[error("connection lost without a close frame")]
    ConnectionLost,
    /// The local address to connect from could not be bound (on most systems only
    /// 127.0.0.1 of the loopback range exists unless configured; Linux has all of
    /// 127.0.0.0/8).
    #[error("cannot bind local address {local}: {source}")]
    Bind {
        /// The local address asked for.
        local: std::net::IpAddr,
        /// Why the bind failed.
        source: std::io::Error,
    },
    /// The server's host resolves to no address of the local address's family
    /// (an IPv4 local address for an IPv6-only host, or the reverse).
    #[error("no address of the server matches the family of local address {local}")]
    AddressFamily {
        /// The local address asked for.
        local: std::net::IpAddr,
    },
    /// The TLS handshake of a `wss://` connection failed: the server's certificate is
    /// not trusted or does not name the host, or the server sent a TLS alert. Not a
    /// connection loss: asking again gets the same answer.
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// The TLS trust settings could not be built (an unreadable or empty CA file).
    #[error("TLS setup: {0}")]
    TlsSetup(String),
    /// A socket read or write failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed (bad framing, bad handshake headers, HTTP error).
    #[error("websocket: {0}")]
    WebSocket(WebSocketError),
    /// A message from the server was larger than the client accepts (all fragments counted).
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooBig {
        /// Bytes received so far for the message.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A binary message from the server did not decode as a `ServerMsg`.
    #[error("undecodable server message: {0}")]
    Decode(#[from] DecodeError),
    /// A snapshot did not apply to the world we hold (wrong base, bad entity ids).
    #[error("snapshot: {0}")]
    Delta(#[from] tickcast_shared::delta::DeltaError),
    /// One of our messages could not be encoded (a bug, not a network condition).
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// The server sent something valid on its own but not here: a text frame, a
    /// snapshot before the `Welcome`, a second `Welcome`.
    #[error("protocol violation by server: {0}")]
    Protocol(String),
    /// The caller passed an input the server would refuse (non-finite movement).
    #[error("invalid input: {0}")]
    InvalidInput(&'static str),
    /// The connection was lost and a [`crate::ReconnectingConnection`] is connecting
    /// again: nothing was sent. Transient; keep calling `next_event`, which reports
    /// the outcome.
    #[error("reconnecting; nothing was sent")]
    Reconnecting,
    /// The server refused to resume the session (close 4008): its reconnect grace is
    /// over, or the session ended. The player is gone; joining again makes a new one.
    #[error("the server no longer has this session (close 4008)")]
    SessionExpired,
    /// Reconnection ran out of its time budget without resuming the session.
    #[error("gave up reconnecting after {attempts} attempts: {last}")]
    ReconnectFailed {
        /// Connection attempts made.
        attempts: u32,
        /// Why the last attempt failed (the loss itself if no attempt was made).
        #[source]
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// A short, low-cardinality label for counting failures in a report
    /// (`"http 409"`, `"close 4003"`, `"timeout"`, `"io: connection refused"`, ...).
    pub fn kind(&self) -> String {
        match self {
            Self::InvalidUrl(_) => "invalid url".into(),
            Self::InvalidRequest(_) => "invalid request".into(),
            Self::ConnectTimeout => "timeout".into(),
            Self::HttpStatus { status } => format!("http {status}"),
            Self::SubprotocolMismatch { .. } => "subprotocol".into(),
            Self::VersionMismatch { .. } => "version".into(),
            Self::Closed { code, .. } => format!("close {code}"),
            Self::NotOpen => "not open".into(),
            Self::ConnectionLost => "connection lost".into(),
            Self::Bind { source, .. } => format!("bind: {}", source.kind()),
            Self::AddressFamily { .. } => "address family".into(),
            // rustls' messages are short and fixed ("invalid peer certificate:
            // UnknownIssuer"), so they group well.
            Self::Tls(e) => format!("tls: {e}"),
            Self::TlsSetup(_) => "tls setup".into(),
            // The ErrorKind is still low-cardinality, and "connection refused" vs
            // "connection reset" is what an operator needs to tell apart.
            Self::Io(e) => format!("io: {}", e.kind()),
            Self::WebSocket(_) => "websocket".into(),
            Self::MessageTooBig { .. } => "too big".into(),
            Self::Decode(_) => "decode".into(),
            Self::Delta(_) => "bad snapshot".into(),
            Self::Encode(_) => "encode".into(),
            Self::Protocol(_) => "protocol".into(),
            Self::InvalidInput(_) => "invalid input".into(),
            Self::Reconnecting => "reconnecting".into(),
            Self::SessionExpired => "session expired".into(),
            // Still low-cardinality: the last failure's own label.
            Self::ReconnectFailed { last, .. } => format!("reconnect gave up: {}", last.kind()),
        }
    }

    /// Whether this error means the connection itself was lost, rather than ended on
    /// purpose by either side: the socket ended without a close frame, a read or write
    /// failed, or (while connecting again) the TCP connect, the HTTP exchange or the
    /// connect timeout failed. Only these are worth reconnecting for; a close frame
    /// from the server, an HTTP refusal or a protocol error is an answer, and asking
    /// again would get the same one.
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            Self::ConnectionLost
                | Self::Io(_)
                | Self::ConnectTimeout
                // hyper's error when the TCP connection ends during the upgrade.
                | Self::WebSocket(WebSocketError::HTTPError(_))
        )
    }
}

impl From<WebSocketError> for ClientError {
    /// Lifts the errors that have a meaning of their own out of fastwebsockets' enum,
    /// so a refused handshake is an HTTP status and a dropped socket is `ConnectionLost`.
    fn from(e: WebSocketError) -> Self {
        match e {
            WebSocketError::InvalidStatusCode(status) => Self::HttpStatus { status },
            WebSocketError::UnexpectedEOF => Self::ConnectionLost,
            WebSocketError::ConnectionClosed => Self::NotOpen,
            WebSocketError::IoError(io) => Self::Io(io),
            other => Self::WebSocket(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_status_becomes_http_status() {
        let e = ClientError::from(WebSocketError::InvalidStatusCode(409));
        assert!(matches!(e, ClientError::HttpStatus { status: 409 }));
        assert_eq!(e.kind(), "http 409");
    }

    #[test]
    fn kinds_are_short_labels() {
        assert_eq!(
            ClientError::from(WebSocketError::UnexpectedEOF).kind(),
            "connection lost"
        );
        let closed = ClientError::Closed {
            code: 4000,
            reason: "room is full".into(),
        };
        assert_eq!(closed.kind(), "close 4000");
        let io = ClientError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(io.kind(), "io: connection refused");
        let gave_up = ClientError::ReconnectFailed {
            attempts: 7,
            last: Box::new(io),
        };
        assert_eq!(gave_up.kind(), "reconnect gave up: io: connection refused");
        assert_eq!(ClientError::SessionExpired.kind(), "session expired");
    }

    #[test]
    fn only_a_lost_connection_is_worth_reconnecting_for() {
        let lost = [
            ClientError::ConnectionLost,
            ClientError::ConnectTimeout,
            ClientError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            ClientError::from(WebSocketError::UnexpectedEOF),
        ];
        assert!(lost.iter().all(ClientError::is_connection_loss));
        let answered = [
            ClientError::Closed {
                code: 1001,
                reason: "server shutting down".into(),
            },
            ClientError::HttpStatus { status: 503 },
            ClientError::Protocol("a second Welcome".into()),
            ClientError::WebSocket(WebSocketError::InvalidFragment),
            ClientError::SessionExpired,
            ClientError::NotOpen,
        ];
        assert!(!answered.iter().any(ClientError::is_connection_loss));
    }
}
