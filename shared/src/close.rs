//! Why a connection ended: one value per reason, each with its WebSocket close code.
//!
//! Codes 1000–1011 are the RFC 6455 ones, used with their standard meaning; 4000–4099
//! are tickcast's own (the range RFC 6455 leaves to applications). A disconnect is a
//! plain `Copy` value so that server, client and tests can compare them directly.

/// The reason a tickcast connection was closed, by either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisconnectReason {
    /// 1000: the peer left on purpose.
    Normal,
    /// 1001: the server is shutting down (or draining).
    GoingAway,
    /// 1002: the WebSocket framing itself was broken (bad opcode, bad fragment).
    ProtocolError,
    /// 1003: a text frame; tickcast speaks binary only.
    TextFrame,
    /// 1007: a binary message that does not decode as a tickcast message.
    InvalidPayload,
    /// 1008: the peer broke the rate limit (too many messages of any kind per second).
    RateLimited,
    /// 1009: a message larger than the configured maximum (counted across fragments).
    MessageTooBig,
    /// 1011: the server hit an internal error on this connection.
    InternalError,
    /// 4000: the room already has its maximum number of players.
    RoomFull,
    /// 4001: the client speaks another protocol version.
    VersionMismatch,
    /// 4002: a message that is valid on its own but not in this state
    /// (input before hello, a second hello, an input sequence going backwards).
    UnexpectedMessage,
    /// 4003: nothing was received from the peer for the idle timeout.
    IdleTimeout,
    /// 4004: the client did not send its `Hello` in time after the upgrade.
    HelloTimeout,
    /// 4005: the peer did not read its reliable messages fast enough and its queue overflowed.
    SlowConsumer,
    /// 4006: the room the player was in was closed.
    RoomClosed,
    /// 4007: the name or room in `Hello` is not acceptable (empty, too long, bad characters).
    InvalidHello,
    /// 4008: `Hello::resume` names no session of this room: unknown, its reconnect
    /// grace period is over, or it ended with a close frame.
    SessionExpired,
    /// 4009: the game refused a `GameMessage` this player sent (its `on_message` said
    /// the message is not valid for this player now).
    GameMessageRefused,
    /// 4010: the server requires a signed player token and `Hello` carried none.
    AuthRequired,
    /// 4011: the player token does not verify: malformed, signed with another key or
    /// algorithm, missing a required claim, or too long.
    AuthInvalid,
    /// 4012: the player token has expired (its `exp` is past, beyond the server's leeway).
    /// A client can fetch a fresh token from its game backend and join again.
    AuthExpired,
    /// 4013: the player token's `room` claim names another room than the one joined.
    AuthWrongRoom,
    /// 4014: a newer connection authenticated as the same player (`sub`) joined this room
    /// and took the seat over; this, the older connection, is closed.
    Replaced,
}

impl DisconnectReason {
    /// Every reason, for tables and tests.
    pub const ALL: [DisconnectReason; 23] = [
        Self::Normal,
        Self::GoingAway,
        Self::ProtocolError,
        Self::TextFrame,
        Self::InvalidPayload,
        Self::RateLimited,
        Self::MessageTooBig,
        Self::InternalError,
        Self::RoomFull,
        Self::VersionMismatch,
        Self::UnexpectedMessage,
        Self::IdleTimeout,
        Self::HelloTimeout,
        Self::SlowConsumer,
        Self::RoomClosed,
        Self::InvalidHello,
        Self::SessionExpired,
        Self::GameMessageRefused,
        Self::AuthRequired,
        Self::AuthInvalid,
        Self::AuthExpired,
        Self::AuthWrongRoom,
        Self::Replaced,
    ];

    /// The WebSocket close code sent for this reason.
    pub const fn code(self) -> u16 {
        match self {
            Self::Normal => 1000,
            Self::GoingAway => 1001,
            Self::ProtocolError => 1002,
            Self::TextFrame => 1003,
            Self::InvalidPayload => 1007,
            Self::RateLimited => 1008,
            Self::MessageTooBig => 1009,
            Self::InternalError => 1011,
            Self::RoomFull => 4000,
            Self::VersionMismatch => 4001,
            Self::UnexpectedMessage => 4002,
            Self::IdleTimeout => 4003,
            Self::HelloTimeout => 4004,
            Self::SlowConsumer => 4005,
            Self::RoomClosed => 4006,
            Self::InvalidHello => 4007,
            Self::SessionExpired => 4008,
            Self::GameMessageRefused => 4009,
            Self::AuthRequired => 4010,
            Self::AuthInvalid => 4011,
            Self::AuthExpired => 4012,
            Self::AuthWrongRoom => 4013,
            Self::Replaced => 4014,
        }
    }

    /// A short default reason text (always well under the 123-byte close-frame limit).
    pub const fn reason(self) -> &'static str {
        match self {
            Self::Normal => "bye",
            Self::GoingAway => "server shutting down",
            Self::ProtocolError => "websocket protocol error",
            Self::TextFrame => "text frames are not supported; send binary",
            Self::InvalidPayload => "message does not decode",
            Self::RateLimited => "too many messages per second",
            Self::MessageTooBig => "message too big",
            Self::InternalError => "internal server error",
            Self::RoomFull => "room is full",
            Self::VersionMismatch => "protocol version mismatch",
            Self::UnexpectedMessage => "unexpected message for this state",
            Self::IdleTimeout => "idle timeout",
            Self::HelloTimeout => "no hello in time",
            Self::SlowConsumer => "reliable queue overflowed",
            Self::RoomClosed => "room closed",
            Self::InvalidHello => "invalid name or room in hello",
            Self::SessionExpired => "session unknown or expired",
            Self::GameMessageRefused => "game message refused",
            Self::AuthRequired => "player token required",
            Self::AuthInvalid => "player token invalid",
            Self::AuthExpired => "player token expired",
            Self::AuthWrongRoom => "player token not valid for this room",
            Self::Replaced => "seat taken over by a newer connection",
        }
    }

    /// Maps a received close code back to a reason; `None` for codes tickcast does not use.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.code() == code)
    }
}

impl std::fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.reason(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_round_trip() {
        for r in DisconnectReason::ALL {
            assert_eq!(DisconnectReason::from_code(r.code()), Some(r));
            assert!(
                r.reason().len() <= 123,
                "{r:?} reason too long for a close frame"
            );
        }
        let mut codes: Vec<u16> = DisconnectReason::ALL.iter().map(|r| r.code()).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), DisconnectReason::ALL.len());
        assert_eq!(DisconnectReason::from_code(3999), None);
    }
}
