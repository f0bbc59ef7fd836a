//! Matchmaking tickets between nodes: the node that reserved a seat in Redis signs a
//! ticket with the cluster secret (`--cluster-secret-file`); the node that owns the room
//! verifies it with no call to Redis. I/O-free: the time is passed in.
//!
//! A ticket is a compact HS256 JWT (jsonwebtoken, the crate the player tokens use) with
//! four claims: `room`, `node` (the owning node), `rid` (the reservation id, the member of
//! `P:resv:N:R` that holds the seat) and `exp` (Unix seconds, the reservation's expiry
//! rounded up). Signed rather than stored, so a join costs the owning node no Redis round
//! trip; the owner releases the reservation (`Directory::release_seat`) once the player
//! is in, and remembers used `rid`s until their `exp` to keep a ticket single-use.

use std::path::Path;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The shortest secret accepted: 256 bits, the size of HS256's output.
pub const MIN_SECRET_BYTES: usize = 32;

/// The longest ticket [`verify`] parses; a real one is about 250 bytes.
pub const MAX_TICKET_BYTES: usize = 1024;

/// The secret all nodes of a cluster share. Its `Debug` never shows it.
#[derive(Clone)]
pub struct ClusterSecret(Vec<u8>);

impl std::fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClusterSecret({} bytes)", self.0.len())
    }
}

/// Why a secret was refused.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read the cluster secret file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Too short to resist guessing.
    #[error("the cluster secret has {0} bytes; it needs at least {MIN_SECRET_BYTES}")]
    TooShort(usize),
}

impl ClusterSecret {
    /// A secret from its bytes.
    ///
    /// # Errors
    /// [`SecretError::TooShort`] under [`MIN_SECRET_BYTES`].
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, SecretError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(SecretError::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// The secret in `path` (`--cluster-secret-file`), without trailing whitespace, so a
    /// file written by `echo` or an editor holds the same secret as one without a newline.
    ///
    /// # Errors
    /// [`SecretError`].
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let mut bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.display().to_string(),
            source,
        })?;
        while bytes.last().is_some_and(u8::is_ascii_whitespace) {
            bytes.pop();
        }
        Self::new(bytes)
    }
}

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketClaims {
    /// The room the seat is in.
    pub room: String,
    /// The node that owns the room, and the only one that accepts the ticket.
    pub node: String,
    /// The reservation id in Redis.
    pub rid: String,
    /// Expiry, Unix seconds.
    pub exp: u64,
}

/// Why a ticket was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    /// Not a ticket signed with this cluster's secret (or not a JWT at all).
    #[error("invalid ticket: {0}")]
    Invalid(String),
    /// Signed for a room on another node: the player went to the wrong URL.
    #[error("ticket is for node {0}")]
    WrongNode(String),
    /// Its reservation has expired (its seat may be someone else's now).
    #[error("expired ticket")]
    Expired,
}

/// Signs `claims` with `secret`.
///
/// # Errors
/// Only if serialising the claims fails, which four plain fields cannot.
pub fn sign(claims: &TicketClaims, secret: &ClusterSecret) -> Result<String, TicketError> {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(&secret.0),
    )
    .map_err(|e| TicketError::Invalid(e.to_string()))
}

/// Checks `ticket` on node `node` at `now_unix_secs`.
///
/// # Errors
/// [`TicketError`]: a bad signature, another algorithm, missing claims or a ticket over
/// [`MAX_TICKET_BYTES`] are [`TicketError::Invalid`]; a valid one for another node is
/// [`TicketError::WrongNode`]; one at or past its `exp` is [`TicketError::Expired`].
pub fn verify(
    ticket: &str,
    secret: &ClusterSecret,
    node: &str,
    now_unix_secs: u64,
) -> Result<TicketClaims, TicketError> {
    if ticket.len() > MAX_TICKET_BYTES {
        return Err(TicketError::Invalid(format!(
            "longer than {MAX_TICKET_BYTES} bytes"
        )));
    }
    // HS256 only; the expiry is checked below against the time passed in, not the clock.
    let mut validation = Validation::new(Algorithm::HS256);
    validation.validate_exp = false;
    validation.set_required_spec_claims::<&str>(&[]);
    let claims = jsonwebtoken::decode::<TicketClaims>(
        ticket,
        &DecodingKey::from_secret(&secret.0),
        &validation,
    )
    .map_err(|e| TicketError::Invalid(e.to_string()))?
    .claims;
    if claims.node != node {
        return Err(TicketError::WrongNode(claims.node));
    }
    if now_unix_secs >= claims.exp {
        return Err(TicketError::Expired);
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fill: u8) -> ClusterSecret {
        ClusterSecret::new(vec![fill; MIN_SECRET_BYTES]).expect("32 bytes")
    }

    fn claims() -> TicketClaims {
        TicketClaims {
            room: "lobby-1".into(),
            node: "eu-1".into(),
            rid: "0123abcd".into(),
            exp: 1_000,
        }
    }

    #[test]
    fn a_signed_ticket_verifies_on_its_node_until_it_expires() {
        let t = sign(&claims(), &secret(7)).expect("sign");
        assert_eq!(verify(&t, &secret(7), "eu-1", 999), Ok(claims()));
        assert_eq!(
            verify(&t, &secret(7), "eu-1", 1_000),
            Err(TicketError::Expired)
        );
        assert_eq!(
            verify(&t, &secret(7), "eu-2", 999),
            Err(TicketError::WrongNode("eu-1".into()))
        );
    }

    #[test]
    fn another_secret_or_a_changed_claim_is_invalid() {
        let t = sign(&claims(), &secret(7)).expect("sign");
        assert!(matches!(
            verify(&t, &secret(8), "eu-1", 0),
            Err(TicketError::Invalid(_))
        ));
        // Swap the payload for one naming another room, keeping the signature.
        let parts: Vec<&str> = t.split('.').collect();
        let other = sign(
            &TicketClaims {
                room: "lobby-2".into(),
                ..claims()
            },
            &secret(9),
        )
        .expect("sign");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            other.split('.').nth(1).expect("payload"),
            parts[2]
        );
        assert!(matches!(
            verify(&forged, &secret(7), "eu-1", 0),
            Err(TicketError::Invalid(_))
        ));
        assert!(matches!(
            verify("not a jwt", &secret(7), "eu-1", 0),
            Err(TicketError::Invalid(_))
        ));
        assert!(matches!(
            verify(&"a".repeat(MAX_TICKET_BYTES + 1), &secret(7), "eu-1", 0),
            Err(TicketError::Invalid(_))
        ));
    }

    #[test]
    fn secrets_are_checked_and_read_without_trailing_newline() {
        assert!(matches!(
            ClusterSecret::new(vec![1; MIN_SECRET_BYTES - 1]),
            Err(SecretError::TooShort(31))
        ));
        let path = std::env::temp_dir().join(format!("tickcast-secret-{}", std::process::id()));
        std::fs::write(&path, format!("{}\n", "s".repeat(MIN_SECRET_BYTES))).expect("write");
        let from_file = ClusterSecret::from_file(&path).expect("read");
        std::fs::remove_file(&path).expect("remove");
        let t = sign(&claims(), &from_file).expect("sign");
        let direct = ClusterSecret::new("s".repeat(MIN_SECRET_BYTES)).expect("secret");
        assert_eq!(verify(&t, &direct, "eu-1", 0), Ok(claims()));
        assert_eq!(format!("{direct:?}"), "ClusterSecret(32 bytes)");
    }
}
