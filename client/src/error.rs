//! Everything that can go wrong with one player connection, as one typed error.
//!
//! [`crate::connection::Connection`] returns [`ClientError`] from connecting, sending and
//! receiving; the bot swarm counts failures by [`ClientError::kind`], so the report says
//! "connect: http 409" or "close 4003" rather than a free-form message.

use fastwebsockets::WebSocketError;
use tickcast_shared::{DecodeError, DisconnectReason, EncodeError};

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
    /// Close 4010: the server requires a player token and our `Hello` carried none
    /// (see [`crate::ConnectOptions::auth_token`]). Asking again without one gets the
    /// same answer.
    #[error("the server requires a player token (close 4010)")]
    AuthRequired,
    /// Close 4011: the server did not accept the player token: not a JWT, signed with
    /// another key or algorithm, a required claim missing, or another issuer or
    /// audience than the server's.
    #[error("the server refused the player token as invalid (close 4011)")]
    AuthInvalid,
    /// Close 4012: the player token has expired. A fresh token from the game's backend
    /// joins again; the same one never will.
    #[error("the player token has expired (close 4012)")]
    AuthExpired,
    /// Close 4013: the player token is bound (`room` claim) to another room than the
    /// one asked for.
    #[error("the player token is not valid for this room (close 4013)")]
    AuthWrongRoom,
    /// Close 4014: a newer connection authenticated as the same player took the seat
    /// over (the player opened the game elsewhere); this one is over, and reconnecting
    /// would only take the seat back from the newer one.
    #[error("a newer connection of the same player took the seat (close 4014)")]
    Replaced,
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
            // Grouped by close code like every other close, as the report's table is.
            Self::AuthRequired => close_kind(DisconnectReason::AuthRequired),
            Self::AuthInvalid => close_kind(DisconnectReason::AuthInvalid),
            Self::AuthExpired => close_kind(DisconnectReason::AuthExpired),
            Self::AuthWrongRoom => close_kind(DisconnectReason::AuthWrongRoom),
            Self::Replaced => close_kind(DisconnectReason::Replaced),
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

    /// The error for a close frame from the server: the typed variant for the codes
    /// that have one (4010-4014), [`ClientError::Closed`] for the others.
    pub fn from_close(code: u16, reason: String) -> Self {
        match DisconnectReason::from_code(code) {
            Some(DisconnectReason::AuthRequired) => Self::AuthRequired,
            Some(DisconnectReason::AuthInvalid) => Self::AuthInvalid,
            Some(DisconnectReason::AuthExpired) => Self::AuthExpired,
            Some(DisconnectReason::AuthWrongRoom) => Self::AuthWrongRoom,
            Some(DisconnectReason::Replaced) => Self::Replaced,
            _ => Self::Closed { code, reason },
        }
    }

    /// The server's close reason behind this error, when it is one tickcast defines
    /// (a [`ClientError::Closed`] with a known code, or a typed close such as
    /// [`ClientError::AuthExpired`] or [`ClientError::SessionExpired`]).
    pub fn close_reason(&self) -> Option<DisconnectReason> {
        match self {
            Self::Closed { code, .. } => DisconnectReason::from_code(*code),
            Self::AuthRequired => Some(DisconnectReason::AuthRequired),
            Self::AuthInvalid => Some(DisconnectReason::AuthInvalid),
            Self::AuthExpired => Some(DisconnectReason::AuthExpired),
            Self::AuthWrongRoom => Some(DisconnectReason::AuthWrongRoom),
            Self::Replaced => Some(DisconnectReason::Replaced),
            Self::SessionExpired => Some(DisconnectReason::SessionExpired),
            _ => None,
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

/// The [`ClientError::kind`] of a close with `reason`'s code.
fn close_kind(reason: DisconnectReason) -> String {
    format!("close {}", reason.code())
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
    fn token_refusals_are_typed_and_keep_their_close_code_as_kind() {
        let typed = [
            (4010, DisconnectReason::AuthRequired),
            (4011, DisconnectReason::AuthInvalid),
            (4012, DisconnectReason::AuthExpired),
            (4013, DisconnectReason::AuthWrongRoom),
            (4014, DisconnectReason::Replaced),
        ];
        for (code, reason) in typed {
            let e = ClientError::from_close(code, reason.reason().into());
            assert!(!matches!(e, ClientError::Closed { .. }), "{code}: {e:?}");
            assert_eq!(e.close_reason(), Some(reason));
            assert_eq!(e.kind(), format!("close {code}"));
            assert!(!e.is_connection_loss(), "{code}");
            assert!(e.to_string().contains(&format!("close {code}")), "{e}");
        }
        assert!(matches!(
            ClientError::from_close(4011, String::new()),
            ClientError::AuthInvalid
        ));
        assert!(matches!(
            ClientError::from_close(4014, String::new()),
            ClientError::Replaced
        ));
        // Every other code stays a plain close, reason kept.
        for code in [1000, 1001, 4003, 4008, 4009, 4015, 4999] {
            match ClientError::from_close(code, "why".into()) {
                ClientError::Closed { code: got, reason } => {
                    assert_eq!((got, reason.as_str()), (code, "why"));
                }
                other => panic!("{code}: {other:?}"),
            }
        }
        assert_eq!(
            ClientError::from_close(4008, String::new()).close_reason(),
            Some(DisconnectReason::SessionExpired)
        );
        assert_eq!(
            ClientError::from_close(4999, String::new()).close_reason(),
            None
        );
        assert_eq!(ClientError::ConnectionLost.close_reason(), None);
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
