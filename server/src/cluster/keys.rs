//! Where the directory lives in Redis: every key name, built in one place.
//!
//! All keys start with a prefix (`tickcast` by default) so one Redis can hold several
//! clusters, or a test's keys apart from another's. With `P` the prefix, `N` a node id
//! and `R` a room id:
//!
//! | key | type | TTL | holds |
//! | --- | --- | --- | --- |
//! | `P:nodes` | set | none | the ids of registered nodes (an index; liveness is `P:node:N`) |
//! | `P:node:N` | hash | node TTL | `id`, `url`, `rooms`, `players`, `load`, `pending` |
//! | `P:rooms:N` | hash | node TTL | room id -> the room's JSON record |
//! | `P:seats:N` | hash | node TTL | public room id -> `"players capacity"` (what matchmaking reads) |
//! | `P:resv:N:R` | sorted set | ticket TTL | reservation id, scored by its expiry (ms) |
//!
//! The Lua scripts ([`super::scripts`]) build the same names from the prefix when they
//! walk other nodes' keys; the names here and there must agree, and the integration tests
//! (which write with one and read with the other) check that they do.

/// The prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "tickcast";

/// The longest node id: it is part of every key of the node and of every listing.
pub const MAX_NODE_ID: usize = 64;

/// The key names of one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix`.
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    /// The prefix, which the scripts receive to build the same names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The set of registered node ids.
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Node `node`'s own record; its TTL is the node's liveness.
    pub fn node(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// The JSON records of node `node`'s rooms.
    pub fn rooms(&self, node: &str) -> String {
        format!("{}:rooms:{node}", self.prefix)
    }

    /// Players and capacity of node `node`'s public rooms.
    pub fn seats(&self, node: &str) -> String {
        format!("{}:seats:{node}", self.prefix)
    }

    /// The seats reserved in room `room` of node `node`.
    pub fn reservations(&self, node: &str, room: &str) -> String {
        format!("{}:resv:{node}:{room}", self.prefix)
    }
}

/// Checks a node id (`--node-id`): 1 to [`MAX_NODE_ID`] ASCII letters, digits, `.`,
/// `_` or `-`. No `:`, so `P:resv:N:R` names one node and one room whatever `R` holds.
///
/// # Errors
/// A sentence saying what is wrong with it.
pub fn check_node_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_NODE_ID {
        return Err(format!(
            "node id must be 1 to {MAX_NODE_ID} characters, not {}",
            id.len()
        ));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(c) => Err(format!(
            "node id may hold only letters, digits, '.', '_' and '-', not {c:?}"
        )),
        None => Ok(()),
    }
}

/// A fresh node id (the `--node-id` default): `node-` and 48 random bits in hex, so two
/// nodes started without one do not collide.
pub fn random_node_id() -> String {
    let bytes: [u8; 6] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("node-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_layout() {
        let k = Keys::new("t1");
        assert_eq!(k.nodes(), "t1:nodes");
        assert_eq!(k.node("a"), "t1:node:a");
        assert_eq!(k.rooms("a"), "t1:rooms:a");
        assert_eq!(k.seats("a"), "t1:seats:a");
        assert_eq!(k.reservations("a", "lobby:1"), "t1:resv:a:lobby:1");
    }

    #[test]
    fn node_ids_are_checked() {
        assert_eq!(check_node_id("eu-1.node_2"), Ok(()));
        assert!(check_node_id("").is_err());
        assert!(check_node_id("a:b").is_err());
        assert!(check_node_id("a b").is_err());
        assert!(check_node_id(&"x".repeat(MAX_NODE_ID + 1)).is_err());
        assert_eq!(check_node_id(&"x".repeat(MAX_NODE_ID)), Ok(()));
    }

    #[test]
    fn random_ids_are_valid_and_differ() {
        let (a, b) = (random_node_id(), random_node_id());
        assert_eq!(check_node_id(&a), Ok(()));
        assert_eq!(a.len(), "node-".len() + 12);
        assert_ne!(a, b);
    }
}
