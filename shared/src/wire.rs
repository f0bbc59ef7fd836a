//! How [`ClientMsg`] and [`ServerMsg`] are laid out on the wire, where that differs from
//! their Rust shape: the v2 extras cost nothing when they are empty.
//!
//! Protocol v2 gave inputs a game payload and snapshots a list of field changes. Most
//! inputs carry no payload, and a game that declares no fields (the Arena) never has a
//! field change, so sending an empty payload and an empty list with every message would
//! make v2 cost one byte per input and per snapshot more than v1 for the same game. So
//! each has two variants on the wire: the plain one, laid out exactly as in v1, and one
//! with the extra appended (`InputWithPayload` = 4, `FieldSnapshot` = 4). The encoder
//! picks the plain one whenever the extra is empty; the decoder accepts both (a field
//! snapshot with an empty list is valid, just not what an encoder writes).
//!
//! `Hello` is the same: the plain variant 0 is the v2 layout without a player token, and
//! `HelloWithToken` = 5 appends the token, so servers that require no authentication and
//! clients that send no token keep the bytes they had.
//!
//! The public types keep one variant each (`Input` always has its `payload`,
//! `Snapshot` always has its `fields`): serde converts through the enums here.

use glam::Vec2;
use serde::{Deserialize, Serialize};

use crate::message::{
    Added, Changed, ClientMsg, GameEvent, GameMessage, Hello, Input, Ping, Pong, ServerMsg,
    SessionToken, Snapshot, Welcome,
};

/// [`ClientMsg`] as it travels; variant indices are the wire's.
#[derive(Serialize, Deserialize)]
pub(crate) enum ClientWire {
    Hello(PlainHello),
    Input(PlainInput),
    Ping(Ping),
    Message(GameMessage),
    InputWithPayload(Input),
    HelloWithToken(TokenHello),
}

/// A hello without a player token: the layout before authentication existed.
#[derive(Serialize, Deserialize)]
pub(crate) struct PlainHello {
    protocol_version: u16,
    name: String,
    room: String,
    resume: Option<SessionToken>,
}

/// A hello with a player token, appended after the plain fields.
#[derive(Serialize, Deserialize)]
pub(crate) struct TokenHello {
    protocol_version: u16,
    name: String,
    room: String,
    resume: Option<SessionToken>,
    auth_token: String,
}

/// An input without a payload: the v1 layout.
#[derive(Serialize, Deserialize)]
pub(crate) struct PlainInput {
    seq: u32,
    movement: Vec2,
    buttons: u16,
}

/// [`ServerMsg`] as it travels; variant indices are the wire's.
#[derive(Serialize, Deserialize)]
pub(crate) enum ServerWire {
    Welcome(Welcome),
    Snapshot(PlainSnapshot),
    Pong(Pong),
    Event(GameEvent),
    FieldSnapshot(Snapshot),
}

/// A snapshot without field changes: the v1 layout.
#[derive(Serialize, Deserialize)]
pub(crate) struct PlainSnapshot {
    tick: u64,
    base_tick: u64,
    last_input_seq: u32,
    removed: Vec<u32>,
    changed: Vec<Changed>,
    added: Vec<Added>,
}

impl From<ClientMsg> for ClientWire {
    fn from(msg: ClientMsg) -> Self {
        match msg {
            ClientMsg::Hello(Hello {
                protocol_version,
                name,
                room,
                resume,
                auth_token: None,
            }) => Self::Hello(PlainHello {
                protocol_version,
                name,
                room,
                resume,
            }),
            ClientMsg::Hello(Hello {
                protocol_version,
                name,
                room,
                resume,
                auth_token: Some(auth_token),
            }) => Self::HelloWithToken(TokenHello {
                protocol_version,
                name,
                room,
                resume,
                auth_token,
            }),
            ClientMsg::Input(i) if i.payload.is_empty() => Self::Input(PlainInput {
                seq: i.seq,
                movement: i.movement,
                buttons: i.buttons,
            }),
            ClientMsg::Input(i) => Self::InputWithPayload(i),
            ClientMsg::Ping(p) => Self::Ping(p),
            ClientMsg::Message(m) => Self::Message(m),
        }
    }
}

impl From<ClientWire> for ClientMsg {
    fn from(wire: ClientWire) -> Self {
        match wire {
            ClientWire::Hello(h) => Self::Hello(Hello {
                protocol_version: h.protocol_version,
                name: h.name,
                room: h.room,
                resume: h.resume,
                auth_token: None,
            }),
            ClientWire::HelloWithToken(h) => Self::Hello(Hello {
                protocol_version: h.protocol_version,
                name: h.name,
                room: h.room,
                resume: h.resume,
                auth_token: Some(h.auth_token),
            }),
            ClientWire::Input(i) => Self::Input(Input {
                seq: i.seq,
                movement: i.movement,
                buttons: i.buttons,
                payload: Default::default(),
            }),
            ClientWire::InputWithPayload(i) => Self::Input(i),
            ClientWire::Ping(p) => Self::Ping(p),
            ClientWire::Message(m) => Self::Message(m),
        }
    }
}

impl From<ServerMsg> for ServerWire {
    fn from(msg: ServerMsg) -> Self {
        match msg {
            ServerMsg::Welcome(w) => Self::Welcome(w),
            ServerMsg::Snapshot(s) if s.fields.is_empty() => Self::Snapshot(PlainSnapshot {
                tick: s.tick,
                base_tick: s.base_tick,
                last_input_seq: s.last_input_seq,
                removed: s.removed,
                changed: s.changed,
                added: s.added,
            }),
            ServerMsg::Snapshot(s) => Self::FieldSnapshot(s),
            ServerMsg::Pong(p) => Self::Pong(p),
            ServerMsg::Event(e) => Self::Event(e),
        }
    }
}

impl From<ServerWire> for ServerMsg {
    fn from(wire: ServerWire) -> Self {
        match wire {
            ServerWire::Welcome(w) => Self::Welcome(w),
            ServerWire::Snapshot(s) => Self::Snapshot(Snapshot {
                tick: s.tick,
                base_tick: s.base_tick,
                last_input_seq: s.last_input_seq,
                removed: s.removed,
                changed: s.changed,
                added: s.added,
                fields: Vec::new(),
            }),
            ServerWire::FieldSnapshot(s) => Self::Snapshot(s),
            ServerWire::Pong(p) => Self::Pong(p),
            ServerWire::Event(e) => Self::Event(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::codec::{decode_client, decode_server, encode_to_vec};
    use crate::message::*;
    use crate::payload::InputPayload;

    #[test]
    fn empty_extras_cost_nothing_and_both_forms_decode() {
        let plain = Input {
            seq: 1,
            movement: glam::Vec2::X,
            buttons: 0,
            payload: InputPayload::default(),
        };
        let bytes = encode_to_vec(&ClientMsg::Input(plain)).unwrap();
        // Variant 1, seq, two f32, buttons: the v1 layout, no payload length.
        assert_eq!(bytes.len(), 1 + 1 + 8 + 1);
        assert_eq!(bytes[0], 1);
        assert_eq!(decode_client(&bytes, 64).unwrap(), ClientMsg::Input(plain));
        let with = Input {
            payload: InputPayload::new(&[9]).unwrap(),
            ..plain
        };
        let bytes = encode_to_vec(&ClientMsg::Input(with)).unwrap();
        assert_eq!((bytes[0], bytes.len()), (4, 1 + 1 + 8 + 1 + 2));
        assert_eq!(decode_client(&bytes, 64).unwrap(), ClientMsg::Input(with));

        let snapshot = Snapshot {
            tick: 2,
            base_tick: 1,
            last_input_seq: 0,
            removed: vec![],
            changed: vec![],
            added: vec![],
            fields: vec![],
        };
        let bytes = encode_to_vec(&ServerMsg::Snapshot(snapshot.clone())).unwrap();
        assert_eq!(
            bytes,
            [1, 2, 1, 0, 0, 0, 0],
            "the v1 layout of an empty delta"
        );
        let with = Snapshot {
            fields: vec![FieldChange {
                skip: 0,
                field: 1,
                delta: -1,
            }],
            ..snapshot.clone()
        };
        let bytes = encode_to_vec(&ServerMsg::Snapshot(with.clone())).unwrap();
        assert_eq!(bytes, [4, 2, 1, 0, 0, 0, 0, 1, 0, 1, 1]);
        assert_eq!(decode_server(&bytes).unwrap(), ServerMsg::Snapshot(with));
        // A field snapshot with an empty list is not what an encoder writes, but valid.
        assert_eq!(
            decode_server(&[4, 2, 1, 0, 0, 0, 0, 0]).unwrap(),
            ServerMsg::Snapshot(snapshot)
        );
    }
}
