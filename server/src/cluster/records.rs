//! What the directory stores and returns: rooms, nodes, reservations and placements, and
//! the pure parsing of the scripts' replies into them.
//!
//! A room's record is JSON (serde), so a person reading Redis with `redis-cli` sees it
//! whole and a field can be added without a new format. A node's record is a hash, so
//! the scripts read its `url` and `load` without decoding JSON.

use serde::{Deserialize, Serialize};

/// A room as its node states it when publishing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomInfo {
    /// The room's id (its name on its node).
    pub id: String,
    /// The game it runs.
    pub game: String,
    /// Players in it now.
    pub players: u32,
    /// The most players it takes.
    pub capacity: u32,
    /// Listed by `GET /rooms` and open to matchmaking; a private room is joined only by
    /// its id.
    pub public: bool,
}

/// A room as the directory lists it: what its node published, where it lives, and the
/// seats reserved in it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomRecord {
    /// The room's id (its name on its node).
    pub id: String,
    /// The game it runs.
    pub game: String,
    /// Players in it, as its node last published.
    pub players: u32,
    /// The most players it takes.
    pub capacity: u32,
    /// See [`RoomInfo::public`].
    pub public: bool,
    /// The id of the node that runs it.
    pub node: String,
    /// That node's public URL (`--public-url`): where its players connect.
    pub url: String,
    /// Seats held by unexpired matchmaking reservations (filled in by listings; stored
    /// as 0).
    #[serde(default)]
    pub reserved: u32,
}

impl RoomRecord {
    /// The record of `room` on node `node` at `url`.
    pub fn new(room: &RoomInfo, node: &str, url: &str) -> Self {
        Self {
            id: room.id.clone(),
            game: room.game.clone(),
            players: room.players,
            capacity: room.capacity,
            public: room.public,
            node: node.to_owned(),
            url: url.to_owned(),
            reserved: 0,
        }
    }
}

/// A live node as the directory lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its id (`--node-id`).
    pub id: String,
    /// Its public URL (`--public-url`).
    pub url: String,
    /// Rooms it runs.
    pub rooms: u32,
    /// Players in those rooms.
    pub players: u32,
    /// How loaded it says it is: 0 idle, 1 full (placement skips a node at 1 or more).
    pub load: f64,
}

/// A seat held in Redis for one player, and the ticket that claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The reservation id (the member of `P:resv:N:R`, and the ticket's `rid`).
    pub id: String,
    /// The node that owns the room.
    pub node: String,
    /// The room.
    pub room: String,
    /// The owning node's public URL: where the player connects.
    pub url: String,
    /// When the seat is freed if unclaimed, Unix milliseconds (Redis's clock).
    pub expires_at_ms: u64,
    /// Seats taken in the room counting this one (players + reservations).
    pub taken: u32,
    /// The room's capacity.
    pub capacity: u32,
    /// The signed ticket the player presents to the owning node.
    pub ticket: String,
}

/// Where a new room should go when no public room has a free seat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The least-loaded live node.
    pub node: String,
    /// Its public URL.
    pub url: String,
}

/// A seat the reserve script held, before the ticket is signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// See [`Reservation::node`].
    pub node: String,
    /// See [`Reservation::room`].
    pub room: String,
    /// See [`Reservation::url`].
    pub url: String,
    /// See [`Reservation::expires_at_ms`].
    pub expires_at_ms: u64,
    /// See [`Reservation::taken`].
    pub taken: u32,
    /// See [`Reservation::capacity`].
    pub capacity: u32,
}

/// The reserve script's reply: node, room, url, expiry, taken, capacity; `None` for the
/// empty reply (no room with a free seat).
///
/// # Errors
/// A sentence naming the malformed field.
pub fn parse_reserve(reply: &[String]) -> Result<Option<Held>, String> {
    if reply.is_empty() {
        return Ok(None);
    }
    let [node, room, url, exp, taken, cap] = reply else {
        return Err(format!("reserve: {} fields, expected 6", reply.len()));
    };
    Ok(Some(Held {
        node: node.clone(),
        room: room.clone(),
        url: url.clone(),
        expires_at_ms: number(exp, "expiry")?,
        taken: number(taken, "taken")?,
        capacity: number(cap, "capacity")?,
    }))
}

/// The place script's reply: node, url; `None` for the empty reply (no live node with
/// room to spare).
///
/// # Errors
/// A sentence saying what is wrong.
pub fn parse_placement(reply: &[String]) -> Result<Option<Placement>, String> {
    match reply {
        [] => Ok(None),
        [node, url] => Ok(Some(Placement {
            node: node.clone(),
            url: url.clone(),
        })),
        _ => Err(format!("place: {} fields, expected 2", reply.len())),
    }
}

/// One node of the nodes script's reply: id, url, rooms, players, load.
///
/// # Errors
/// A sentence naming the malformed field.
pub fn parse_node(fields: &[String]) -> Result<NodeRecord, String> {
    let [id, url, rooms, players, load] = fields else {
        return Err(format!("node: {} fields, expected 5", fields.len()));
    };
    Ok(NodeRecord {
        id: id.clone(),
        url: url.clone(),
        rooms: number(rooms, "rooms")?,
        players: number(players, "players")?,
        load: load
            .parse()
            .map_err(|_| format!("node {id}: load {load:?} is not a number"))?,
    })
}

/// One room of the rooms script's reply: its JSON record and its reservations now.
///
/// # Errors
/// A sentence saying what is wrong.
pub fn parse_room(fields: &[String]) -> Result<RoomRecord, String> {
    let [json, reserved] = fields else {
        return Err(format!("room: {} fields, expected 2", fields.len()));
    };
    let mut record: RoomRecord =
        serde_json::from_str(json).map_err(|e| format!("room record {json:?}: {e}"))?;
    record.reserved = number(reserved, "reserved")?;
    Ok(record)
}

/// The `P:seats:N` value of a public room: `"players capacity"`, which the scripts split
/// without decoding JSON.
pub fn seats_value(room: &RoomInfo) -> String {
    format!("{} {}", room.players, room.capacity)
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.parse()
        .map_err(|_| format!("{what} {s:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse_reserve(&[]), Ok(None));
        assert_eq!(
            parse_reserve(&strings(&["n1", "r", "ws://a", "1700000000123", "3", "10"])),
            Ok(Some(Held {
                node: "n1".into(),
                room: "r".into(),
                url: "ws://a".into(),
                expires_at_ms: 1_700_000_000_123,
                taken: 3,
                capacity: 10
            }))
        );
        assert!(parse_reserve(&strings(&["n1", "r"])).is_err());
        assert!(parse_reserve(&strings(&["n1", "r", "u", "x", "3", "10"])).is_err());
        assert_eq!(
            parse_placement(&strings(&["n2", "ws://b"])),
            Ok(Some(Placement {
                node: "n2".into(),
                url: "ws://b".into()
            }))
        );
        assert_eq!(parse_placement(&[]), Ok(None));
        let node = parse_node(&strings(&["n1", "ws://a", "2", "7", "0.25"])).expect("node");
        assert_eq!((node.rooms, node.players, node.load), (2, 7, 0.25));
        assert!(parse_node(&strings(&["n1", "ws://a", "2", "7", "lots"])).is_err());
    }

    #[test]
    fn room_records_round_trip_with_reservations_from_the_listing() {
        let info = RoomInfo {
            id: "r1".into(),
            game: "arena".into(),
            players: 3,
            capacity: 8,
            public: true,
        };
        let record = RoomRecord::new(&info, "n1", "ws://a");
        let json = serde_json::to_string(&record).expect("json");
        let listed = parse_room(&[json, "2".into()]).expect("room");
        assert_eq!(listed.reserved, 2);
        assert_eq!(
            RoomRecord {
                reserved: 0,
                ..listed
            },
            record
        );
        assert_eq!(seats_value(&info), "3 8");
        assert!(parse_room(&strings(&["{", "0"])).is_err());
    }
}
