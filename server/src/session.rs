//! One connection's protocol rules, I/O-free: frames and the time go in, what to do
//! comes out.
//!
//! A [`Session`] decides everything about a player's connection that does not need a
//! socket: that `Hello` comes first and only once, that it names this room and this
//! protocol version, that input sequence numbers only grow, that messages stay under
//! the size and rate limits, and when the connection has been silent too long. The
//! async shell ([`crate::net::connection`]) reads a frame, hands it to
//! [`Session::handle_frame`], and carries out the [`Request`] it gets back (join the
//! room, store an input, answer a ping) or closes with the [`End`] it gets instead.
//! Its only timer is [`Session::poll_timeout`]; when it fires, the shell calls
//! [`Session::handle_timeout`].
//!
//! The same type runs in the in-process stepper (`tickcast::stepper`), so every rule
//! here is tested with a manual clock and no socket, and the real connection cannot
//! drift from what those tests check.

use std::time::{Duration, Instant};

use tickcast_shared::codec::decode_client;
use tickcast_shared::websocket::{
    Close, CloseError, DataFrame, FragmentError, MessageKind, Reassembly, Utf8Stream,
};
use tickcast_shared::{validate, ClientMsg, DisconnectReason, Hello, Input, PROTOCOL_VERSION};

use crate::config::Config;
use crate::limits::TokenBucket;

/// The limits a session enforces; each has a flag (see [`Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message, all fragments together.
    pub max_message_bytes: usize,
    /// Sustained frames per second, and the burst: every frame counts (data,
    /// continuation, empty fragments, ping, pong), since each one costs a read.
    pub max_messages_per_sec: u32,
    /// Time from the upgrade to `Hello`.
    pub hello_timeout: Duration,
    /// Silence after which the connection is given up.
    pub idle_timeout: Duration,
    /// Largest `GameMessage` payload.
    pub max_game_message_bytes: usize,
    /// Sustained game messages per second, and the burst (on top of the message rate).
    pub max_game_messages_per_sec: u32,
}

impl From<&Config> for Limits {
    fn from(config: &Config) -> Self {
        Self {
            max_message_bytes: config.max_message_bytes,
            max_messages_per_sec: config.max_messages_per_sec,
            hello_timeout: config.hello_timeout,
            idle_timeout: config.idle_timeout,
            max_game_message_bytes: config.max_game_message_bytes,
            max_game_messages_per_sec: config.max_game_messages_per_sec,
        }
    }
}

/// One frame as read from the socket (after the frame parser's own checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameIn<'a> {
    /// A data frame: binary, text or continuation, with its FIN bit.
    Data {
        /// Which data frame.
        frame: DataFrame,
        /// Last frame of its message.
        fin: bool,
        /// Its payload.
        payload: &'a [u8],
    },
    /// A ping or pong frame (the pong a ping owes is sent by the frame layer).
    Control,
    /// A close frame's payload.
    Close(&'a [u8]),
}

/// What the shell must do for a frame: the protocol's answer to a valid message.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Join the room, or resume the session `hello.resume` names; then report the
    /// outcome with [`Session::handle_joined`] before handing over the next frame.
    Join(Hello),
    /// Store the player's newest input (validated: `seq` grew, `movement` is finite).
    Input(Input),
    /// Answer with a `Pong` carrying `nonce` and the room's tick.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// Hand a game message (within its size and rate limits) to the room's game.
    Message(Vec<u8>),
}

/// How the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The server closes it with this reason (its code and text go in the close frame).
    Server(DisconnectReason),
    /// The peer sent a valid close frame with this code (`None`: it gave none); the
    /// answer echoes it.
    Peer(Option<u16>),
}

impl End {
    /// True when the server refused a message the peer sent (undecodable, out of
    /// order, too big, too fast, text): what `tickcast_inputs_rejected_total` counts.
    /// Framing errors, bad hellos and timeouts are counted by their close code only.
    pub fn is_rejection(self) -> bool {
        matches!(
            self,
            End::Server(
                DisconnectReason::InvalidPayload
                    | DisconnectReason::MessageTooBig
                    | DisconnectReason::RateLimited
                    | DisconnectReason::UnexpectedMessage
                    | DisconnectReason::TextFrame
            )
        )
    }
}

/// Where the connection is in the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Upgraded; nothing but `Hello` is accepted, until the hello deadline.
    AwaitHello,
    /// `Hello` was accepted and the room is deciding.
    Joining,
    /// In the room: inputs and pings.
    Playing,
    /// Over; nothing more is accepted.
    Closed,
}

/// The protocol state of one connection.
#[derive(Debug)]
pub struct Session {
    room: String,
    limits: Limits,
    phase: Phase,
    framing: Framing,
    game_bucket: TokenBucket,
    hello_deadline: Instant,
    /// When the peer was last heard from (any frame at all).
    last_heard: Instant,
    last_seq: u32,
}

impl Session {
    /// A session for a connection upgraded at `now` onto `room`.
    pub fn new(room: impl Into<String>, limits: Limits, now: Instant) -> Self {
        Self {
            room: room.into(),
            limits,
            phase: Phase::AwaitHello,
            framing: Framing::new(limits.max_message_bytes, limits.max_messages_per_sec, now),
            game_bucket: TokenBucket::new(
                limits.max_game_messages_per_sec,
                limits.max_game_messages_per_sec,
                now,
            ),
            hello_deadline: now + limits.hello_timeout,
            last_heard: now,
            last_seq: 0,
        }
    }

    /// The room this connection asked for.
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Where the connection is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The WebSocket rule a refused frame broke, to name in the close reason instead
    /// of the close code's general text (see [`Framing::detail`]).
    pub fn detail(&self) -> Option<&'static str> {
        self.framing.detail()
    }

    /// The moment [`Session::handle_timeout`] must be called if no frame arrives first:
    /// the hello deadline before `Hello`, then the idle deadline, which every frame
    /// pushes back. One timer per connection, moved only when this value moves.
    pub fn poll_timeout(&self) -> Instant {
        match self.phase {
            Phase::AwaitHello => self.hello_deadline,
            _ => self.last_heard + self.limits.idle_timeout,
        }
    }

    /// Checks the deadlines at `now`.
    ///
    /// # Errors
    /// [`End::Server`] with `HelloTimeout` or `IdleTimeout` once the deadline passed.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<(), End> {
        if now < self.poll_timeout() || self.phase == Phase::Closed {
            return Ok(());
        }
        let reason = match self.phase {
            Phase::AwaitHello => DisconnectReason::HelloTimeout,
            _ => DisconnectReason::IdleTimeout,
        };
        Err(self.end(End::Server(reason)))
    }

    /// Takes one frame received at `now`. Returns what to do for a whole, valid
    /// message (`None` for a fragment, a control frame, or a message needing no answer).
    ///
    /// # Errors
    /// The [`End`] of the connection: a close from the peer, or a rule the frame broke.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        frame: FrameIn<'_>,
    ) -> Result<Option<Request>, End> {
        if self.phase == Phase::Closed {
            return Err(End::Server(DisconnectReason::UnexpectedMessage));
        }
        self.last_heard = now;
        let message = match self.framing.handle(now, frame) {
            Ok(Some(message)) => message,
            Ok(None) => return Ok(None),
            Err(end) => return Err(self.end(end)),
        };
        let bytes = match message {
            (MessageKind::Binary, bytes) => bytes,
            (MessageKind::Text, _) => {
                return Err(self.end(End::Server(DisconnectReason::TextFrame)))
            }
        };
        let msg = match decode_client(bytes, self.limits.max_message_bytes) {
            Ok(msg) => msg,
            Err(_) => return Err(self.end(End::Server(DisconnectReason::InvalidPayload))),
        };
        self.handle_message(now, msg)
            .map_err(|reason| self.end(End::Server(reason)))
    }

    /// Applies one decoded message to the protocol state.
    fn handle_message(
        &mut self,
        now: Instant,
        msg: ClientMsg,
    ) -> Result<Option<Request>, DisconnectReason> {
        match (msg, self.phase) {
            (ClientMsg::Hello(hello), Phase::AwaitHello) => {
                check_hello(&hello, &self.room)?;
                self.phase = Phase::Joining;
                Ok(Some(Request::Join(hello)))
            }
            (ClientMsg::Input(input), Phase::Playing) => {
                if input.seq <= self.last_seq {
                    return Err(DisconnectReason::UnexpectedMessage);
                }
                if !input.movement.is_finite() {
                    return Err(DisconnectReason::InvalidPayload);
                }
                self.last_seq = input.seq;
                Ok(Some(Request::Input(input)))
            }
            (ClientMsg::Ping(ping), Phase::Playing) => {
                Ok(Some(Request::Pong { nonce: ping.nonce }))
            }
            (ClientMsg::Message(message), Phase::Playing) => {
                if message.payload.len() > self.limits.max_game_message_bytes {
                    return Err(DisconnectReason::MessageTooBig);
                }
                if !self.game_bucket.try_take(now) {
                    return Err(DisconnectReason::RateLimited);
                }
                Ok(Some(Request::Message(message.payload)))
            }
            // A second hello, anything but hello first, or anything while joining.
            _ => Err(DisconnectReason::UnexpectedMessage),
        }
    }

    /// Reports how the join that [`Request::Join`] asked for went: `Ok` when the
    /// player is in the room (the shell sends the `Welcome`), or the reason it is not.
    ///
    /// # Errors
    /// The refusal, as the [`End`] of the connection.
    pub fn handle_joined(&mut self, outcome: Result<(), DisconnectReason>) -> Result<(), End> {
        match outcome {
            Ok(()) if self.phase == Phase::Joining => {
                self.phase = Phase::Playing;
                Ok(())
            }
            Ok(()) => Err(self.end(End::Server(DisconnectReason::InternalError))),
            Err(reason) => Err(self.end(End::Server(reason))),
        }
    }

    fn end(&mut self, end: End) -> End {
        self.phase = Phase::Closed;
        end
    }
}

/// The frame rules every server connection applies before a message means anything:
/// the game's [`Session`] and the echo endpoint (`examples/echo.rs`, which the Autobahn
/// suite drives) run the same ones, so what the suite checks is what players get.
///
/// In order: a close frame is read to the letter ([`Close::parse`]); every other frame
/// takes a token from the rate limit, whatever its kind, so a flood of pings or of empty
/// fragments costs the peer like one of messages; fragments must come in order; a text
/// message's UTF-8 is checked fragment by fragment ([`Utf8Stream`]); and the whole
/// message must fit the size limit ([`Reassembly`]). Frame-header rules (masking,
/// control-frame length, reserved bits, opcodes) are checked earlier, on the raw bytes,
/// by [`tickcast_shared::frame_audit`].
#[derive(Debug)]
pub struct Framing {
    reassembly: Reassembly,
    text: Utf8Stream,
    /// True inside a fragmented text message.
    in_text: bool,
    bucket: TokenBucket,
    detail: Option<&'static str>,
}

impl Framing {
    /// Rules for messages of at most `max_message_bytes`, and `frames_per_sec` frames
    /// per second sustained with the same burst, starting at `now`.
    pub fn new(max_message_bytes: usize, frames_per_sec: u32, now: Instant) -> Self {
        Self {
            reassembly: Reassembly::new(max_message_bytes),
            text: Utf8Stream::new(),
            in_text: false,
            bucket: TokenBucket::new(frames_per_sec, frames_per_sec, now),
            detail: None,
        }
    }

    /// The rule the refused frame broke, in words, once [`Framing::handle`] refused
    /// one for a reason more precise than its close code's: the close frame carries it.
    pub fn detail(&self) -> Option<&'static str> {
        self.detail
    }

    /// Takes one frame received at `now`. Returns a whole message when this frame
    /// completes one, `None` for a fragment or a ping or pong.
    ///
    /// # Errors
    /// [`End::Peer`] for a valid close frame; [`End::Server`] with 1002 (bad close
    /// payload, fragments out of order), 1007 (not UTF-8), 1008 (rate) or 1009 (size).
    pub fn handle<'a>(
        &'a mut self,
        now: Instant,
        frame: FrameIn<'a>,
    ) -> Result<Option<(MessageKind, &'a [u8])>, End> {
        let (frame, fin, payload) = match frame {
            FrameIn::Close(payload) => {
                return Err(match Close::parse(payload) {
                    Ok(close) => End::Peer(close.code),
                    Err(e) => self.refuse(e.reason(), close_detail(e)),
                })
            }
            FrameIn::Control if self.bucket.try_take(now) => return Ok(None),
            FrameIn::Data {
                frame,
                fin,
                payload,
            } if self.bucket.try_take(now) => (frame, fin, payload),
            FrameIn::Control | FrameIn::Data { .. } => {
                return Err(self.refuse(DisconnectReason::RateLimited, "too many frames per second"))
            }
        };
        match (frame, self.reassembly.in_progress()) {
            (DataFrame::Continuation, false) => {
                return Err(self.refuse(
                    DisconnectReason::ProtocolError,
                    "continuation without a message",
                ))
            }
            (DataFrame::Binary | DataFrame::Text, true) => {
                return Err(self.refuse(
                    DisconnectReason::ProtocolError,
                    "new message inside a fragmented one",
                ))
            }
            _ => {}
        }
        let text = frame == DataFrame::Text || (frame == DataFrame::Continuation && self.in_text);
        if text {
            if self.text.push(payload, fin).is_err() {
                return Err(self.refuse(
                    DisconnectReason::InvalidPayload,
                    "invalid UTF-8 in text message",
                ));
            }
            self.in_text = !fin;
        }
        self.reassembly.push(frame, fin, payload).map_err(|e| {
            let detail = match e {
                FragmentError::TooBig { .. } => "message too big",
                FragmentError::OutOfOrder => "fragments out of order",
            };
            self.detail = Some(detail);
            End::Server(e.reason())
        })
    }

    fn refuse(&mut self, reason: DisconnectReason, detail: &'static str) -> End {
        self.detail = Some(detail);
        End::Server(reason)
    }
}

/// The words of a close-payload rule.
fn close_detail(e: CloseError) -> &'static str {
    match e {
        CloseError::Truncated => "close payload of one byte",
        CloseError::InvalidCode(_) => "invalid close code",
        CloseError::InvalidUtf8 => "invalid UTF-8 in close reason",
    }
}

/// A `Hello` is acceptable: our version, a valid name, and this room (or none).
fn check_hello(hello: &Hello, room: &str) -> Result<(), DisconnectReason> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(DisconnectReason::VersionMismatch);
    }
    if validate::player_name(&hello.name).is_err() || !(hello.room.is_empty() || hello.room == room)
    {
        return Err(DisconnectReason::InvalidHello);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use glam::Vec2;
    use tickcast_shared::codec::encode_to_vec;
    use tickcast_shared::Ping;

    const LIMITS: Limits = Limits {
        max_message_bytes: 1024,
        max_messages_per_sec: 10,
        hello_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(15),
        max_game_message_bytes: 100,
        max_game_messages_per_sec: 3,
    };

    fn bytes(msg: &ClientMsg) -> Vec<u8> {
        encode_to_vec(msg).expect("encodes")
    }

    fn binary(payload: &[u8]) -> FrameIn<'_> {
        FrameIn::Data {
            frame: DataFrame::Binary,
            fin: true,
            payload,
        }
    }

    fn hello(room: &str) -> ClientMsg {
        ClientMsg::Hello(Hello {
            protocol_version: PROTOCOL_VERSION,
            name: "ada".into(),
            room: room.into(),
            resume: None,
            auth_token: None,
        })
    }

    fn input(seq: u32, movement: Vec2) -> ClientMsg {
        ClientMsg::Input(Input {
            seq,
            movement,
            ..Input::default()
        })
    }

    /// A session that has joined `lobby` at `t0`.
    fn playing(t0: Instant) -> Session {
        let mut s = Session::new("lobby", LIMITS, t0);
        let req = s.handle_frame(t0, binary(&bytes(&hello("lobby"))));
        assert!(matches!(req, Ok(Some(Request::Join(_)))), "{req:?}");
        assert_eq!(s.phase(), Phase::Joining);
        s.handle_joined(Ok(())).expect("joins");
        assert_eq!(s.phase(), Phase::Playing);
        s
    }

    fn server_end(r: Result<Option<Request>, End>) -> DisconnectReason {
        match r {
            Err(End::Server(reason)) => reason,
            other => panic!("expected a server close, got {other:?}"),
        }
    }

    #[test]
    fn hello_first_then_inputs_and_pings() {
        let t0 = Instant::now();
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, binary(&bytes(&input(3, Vec2::X)))),
            Ok(Some(Request::Input(Input {
                seq: 3,
                movement: Vec2::X,
                ..Input::default()
            })))
        );
        assert_eq!(
            s.handle_frame(t0, binary(&bytes(&ClientMsg::Ping(Ping { nonce: 9 })))),
            Ok(Some(Request::Pong { nonce: 9 }))
        );
    }

    #[test]
    fn anything_before_hello_or_a_second_hello_is_unexpected() {
        let t0 = Instant::now();
        for first in [input(1, Vec2::X), ClientMsg::Ping(Ping { nonce: 1 })] {
            let mut s = Session::new("lobby", LIMITS, t0);
            assert_eq!(
                server_end(s.handle_frame(t0, binary(&bytes(&first)))),
                DisconnectReason::UnexpectedMessage
            );
            assert_eq!(s.phase(), Phase::Closed);
        }
        let mut s = playing(t0);
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&bytes(&hello(""))))),
            DisconnectReason::UnexpectedMessage
        );
        // Messages pipelined behind Hello before the room answered are not accepted
        // either: the shell reports the join before it reads on.
        let mut s = Session::new("lobby", LIMITS, t0);
        s.handle_frame(t0, binary(&bytes(&hello(""))))
            .expect("hello");
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&bytes(&input(1, Vec2::X))))),
            DisconnectReason::UnexpectedMessage
        );
    }

    #[test]
    fn a_hello_must_match_version_name_and_room() {
        let t0 = Instant::now();
        let cases = [
            (
                Hello {
                    protocol_version: PROTOCOL_VERSION + 1,
                    name: "ada".into(),
                    room: String::new(),
                    resume: None,
                    auth_token: None,
                },
                DisconnectReason::VersionMismatch,
            ),
            (
                Hello {
                    protocol_version: PROTOCOL_VERSION,
                    name: String::new(),
                    room: String::new(),
                    resume: None,
                    auth_token: None,
                },
                DisconnectReason::InvalidHello,
            ),
            (
                Hello {
                    protocol_version: PROTOCOL_VERSION,
                    name: "ada".into(),
                    room: "elsewhere".into(),
                    resume: None,
                    auth_token: None,
                },
                DisconnectReason::InvalidHello,
            ),
        ];
        for (hello, expected) in cases {
            let mut s = Session::new("lobby", LIMITS, t0);
            let frame = bytes(&ClientMsg::Hello(hello));
            assert_eq!(server_end(s.handle_frame(t0, binary(&frame))), expected);
        }
    }

    #[test]
    fn a_refused_join_ends_with_its_reason() {
        let t0 = Instant::now();
        let mut s = Session::new("lobby", LIMITS, t0);
        s.handle_frame(t0, binary(&bytes(&hello(""))))
            .expect("hello");
        assert_eq!(
            s.handle_joined(Err(DisconnectReason::RoomFull)),
            Err(End::Server(DisconnectReason::RoomFull))
        );
        assert_eq!(s.phase(), Phase::Closed);
        // A join reported while none was asked for is a shell bug, not the peer's.
        let mut s = Session::new("lobby", LIMITS, t0);
        assert_eq!(
            s.handle_joined(Ok(())),
            Err(End::Server(DisconnectReason::InternalError))
        );
    }

    #[test]
    fn input_seq_must_grow_and_movement_be_finite() {
        let t0 = Instant::now();
        let mut s = playing(t0);
        s.handle_frame(t0, binary(&bytes(&input(5, Vec2::X))))
            .expect("first input");
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&bytes(&input(5, Vec2::X))))),
            DisconnectReason::UnexpectedMessage
        );
        let mut s = playing(t0);
        s.handle_frame(t0, binary(&bytes(&input(5, Vec2::X))))
            .expect("first input");
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&bytes(&input(4, Vec2::X))))),
            DisconnectReason::UnexpectedMessage
        );
        let mut s = playing(t0);
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&bytes(&input(1, Vec2::new(f32::NAN, 0.0)))))),
            DisconnectReason::InvalidPayload
        );
    }

    #[test]
    fn bad_bytes_text_and_size_close_with_their_codes() {
        let t0 = Instant::now();
        let mut s = playing(t0);
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&[0xff, 0xff, 0xff]))),
            DisconnectReason::InvalidPayload
        );
        let mut s = playing(t0);
        let text = FrameIn::Data {
            frame: DataFrame::Text,
            fin: true,
            payload: b"hi",
        };
        assert_eq!(
            server_end(s.handle_frame(t0, text)),
            DisconnectReason::TextFrame
        );
        let mut s = playing(t0);
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&[0; 1025]))),
            DisconnectReason::MessageTooBig
        );
        // The size limit counts every fragment of one message.
        let mut s = playing(t0);
        let half = FrameIn::Data {
            frame: DataFrame::Binary,
            fin: false,
            payload: &[0; 600],
        };
        let rest = FrameIn::Data {
            frame: DataFrame::Continuation,
            fin: true,
            payload: &[0; 600],
        };
        assert_eq!(s.handle_frame(t0, half), Ok(None));
        assert_eq!(
            server_end(s.handle_frame(t0, rest)),
            DisconnectReason::MessageTooBig
        );
        let mut s = playing(t0);
        let orphan = FrameIn::Data {
            frame: DataFrame::Continuation,
            fin: true,
            payload: b"x",
        };
        assert_eq!(
            server_end(s.handle_frame(t0, orphan)),
            DisconnectReason::ProtocolError
        );
    }

    #[test]
    fn a_fragmented_message_is_one_message() {
        let t0 = Instant::now();
        let mut s = playing(t0);
        let msg = bytes(&input(1, Vec2::Y));
        let (a, b) = msg.split_at(2);
        let first = FrameIn::Data {
            frame: DataFrame::Binary,
            fin: false,
            payload: a,
        };
        let last = FrameIn::Data {
            frame: DataFrame::Continuation,
            fin: true,
            payload: b,
        };
        assert_eq!(s.handle_frame(t0, first), Ok(None));
        assert!(matches!(
            s.handle_frame(t0, last),
            Ok(Some(Request::Input(Input { seq: 1, .. })))
        ));
    }

    #[test]
    fn the_rate_limit_allows_its_burst_then_its_rate() {
        let t0 = Instant::now();
        let mut s = playing(t0); // Hello took one token of the ten.
        let ping = bytes(&ClientMsg::Ping(Ping { nonce: 0 }));
        for _ in 0..9 {
            s.handle_frame(t0, binary(&ping)).expect("within the burst");
        }
        // 10 per second: a token comes back every 100 ms.
        let t1 = t0 + Duration::from_millis(100);
        s.handle_frame(t1, binary(&ping)).expect("refilled");
        assert_eq!(
            server_end(s.handle_frame(t1, binary(&ping))),
            DisconnectReason::RateLimited
        );
    }

    #[test]
    fn every_frame_counts_against_the_rate_limit() {
        let t0 = Instant::now();
        // Pings and pongs alone: ten in the burst, the eleventh is refused.
        let mut s = playing(t0); // Hello took one token.
        for _ in 0..9 {
            assert_eq!(s.handle_frame(t0, FrameIn::Control), Ok(None));
        }
        assert_eq!(
            server_end(s.handle_frame(t0, FrameIn::Control)),
            DisconnectReason::RateLimited
        );
        assert_eq!(s.detail(), Some("too many frames per second"));
        // Empty fragments of a message that never ends.
        let mut s = playing(t0);
        let empty = |frame| FrameIn::Data {
            frame,
            fin: false,
            payload: &[],
        };
        assert_eq!(s.handle_frame(t0, empty(DataFrame::Binary)), Ok(None));
        for _ in 0..8 {
            assert_eq!(s.handle_frame(t0, empty(DataFrame::Continuation)), Ok(None));
        }
        assert_eq!(
            server_end(s.handle_frame(t0, empty(DataFrame::Continuation))),
            DisconnectReason::RateLimited
        );
    }

    #[test]
    fn text_utf8_is_checked_per_fragment() {
        let t0 = Instant::now();
        let mut s = playing(t0);
        let text = |frame, fin, payload| FrameIn::Data {
            frame,
            fin,
            payload,
        };
        // Valid so far: the character is cut, not broken.
        assert_eq!(
            s.handle_frame(t0, text(DataFrame::Text, false, &[b'a', 0xE2])),
            Ok(None)
        );
        // 0x28 cannot continue it: refused at once, before the message ends.
        assert_eq!(
            server_end(s.handle_frame(t0, text(DataFrame::Continuation, false, &[0x28]))),
            DisconnectReason::InvalidPayload
        );
        assert_eq!(s.detail(), Some("invalid UTF-8 in text message"));
        // Valid text is still not the game's language.
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, text(DataFrame::Text, false, &[0xE2, 0x82])),
            Ok(None)
        );
        assert_eq!(
            server_end(s.handle_frame(t0, text(DataFrame::Continuation, true, &[0xAC]))),
            DisconnectReason::TextFrame
        );
    }

    #[test]
    fn fragment_order_rules_name_themselves() {
        let t0 = Instant::now();
        let frame = |frame, fin| FrameIn::Data {
            frame,
            fin,
            payload: b"x",
        };
        let mut s = playing(t0);
        assert_eq!(
            server_end(s.handle_frame(t0, frame(DataFrame::Continuation, true))),
            DisconnectReason::ProtocolError
        );
        assert_eq!(s.detail(), Some("continuation without a message"));
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, frame(DataFrame::Binary, false)),
            Ok(None)
        );
        assert_eq!(
            server_end(s.handle_frame(t0, frame(DataFrame::Text, true))),
            DisconnectReason::ProtocolError
        );
        assert_eq!(s.detail(), Some("new message inside a fragmented one"));
    }

    #[test]
    fn hello_and_idle_deadlines() {
        let t0 = Instant::now();
        let mut s = Session::new("lobby", LIMITS, t0);
        assert_eq!(s.poll_timeout(), t0 + LIMITS.hello_timeout);
        assert_eq!(s.handle_timeout(t0 + Duration::from_millis(4999)), Ok(()));
        assert_eq!(
            s.handle_timeout(t0 + LIMITS.hello_timeout),
            Err(End::Server(DisconnectReason::HelloTimeout))
        );

        let mut s = playing(t0);
        assert_eq!(s.poll_timeout(), t0 + LIMITS.idle_timeout);
        // Any frame, a pong frame included, is a sign of life that moves the deadline.
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(s.handle_frame(t1, FrameIn::Control), Ok(None));
        assert_eq!(s.poll_timeout(), t1 + LIMITS.idle_timeout);
        assert_eq!(s.handle_timeout(t0 + LIMITS.idle_timeout), Ok(()));
        assert_eq!(
            s.handle_timeout(t1 + LIMITS.idle_timeout),
            Err(End::Server(DisconnectReason::IdleTimeout))
        );
    }

    #[test]
    fn close_frames_are_read_to_the_letter() {
        let t0 = Instant::now();
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, FrameIn::Close(&[0x03, 0xE8, b'o', b'k'])),
            Err(End::Peer(Some(1000)))
        );
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, FrameIn::Close(&[])),
            Err(End::Peer(None))
        );
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, FrameIn::Close(&1005u16.to_be_bytes())),
            Err(End::Server(DisconnectReason::ProtocolError))
        );
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, FrameIn::Close(&[0x03, 0xE8, 0xC3])),
            Err(End::Server(DisconnectReason::InvalidPayload))
        );
    }

    #[test]
    fn game_messages_are_size_and_rate_limited() {
        let t0 = Instant::now();
        let message = |len: usize| {
            bytes(&ClientMsg::Message(tickcast_shared::GameMessage {
                payload: vec![7; len],
            }))
        };
        let mut s = playing(t0);
        assert_eq!(
            s.handle_frame(t0, binary(&message(100))),
            Ok(Some(Request::Message(vec![7; 100])))
        );
        // Three per second, a burst of three: the fourth at once is too many, though
        // the connection's general rate (ten) has room.
        s.handle_frame(t0, binary(&message(1))).expect("second");
        s.handle_frame(t0, binary(&message(1))).expect("third");
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&message(1)))),
            DisconnectReason::RateLimited
        );
        let mut s = playing(t0);
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&message(101)))),
            DisconnectReason::MessageTooBig
        );
        // Before joining, a game message is out of order like any other.
        let mut s = Session::new("lobby", LIMITS, t0);
        assert_eq!(
            server_end(s.handle_frame(t0, binary(&message(1)))),
            DisconnectReason::UnexpectedMessage
        );
    }
}
