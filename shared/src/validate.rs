//! Rules for the text a peer chooses: player names and room names.
//!
//! Both end up in logs, metrics labels and URLs, so they are kept short and plain.

/// Longest player name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 32;
/// Longest room name, in bytes.
pub const MAX_ROOM_BYTES: usize = 64;
/// Longest player token (`Hello::auth_token`), in bytes. A compact JWT with an RS256
/// signature and a handful of claims is about 600 bytes; 2 KiB leaves room for a few
/// more claims and keeps the whole `Hello` under the 4 KiB client decode ceiling.
pub const MAX_AUTH_TOKEN_BYTES: usize = 2048;

/// Why a name or room was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidText {
    /// Zero length.
    #[error("must not be empty")]
    Empty,
    /// More bytes than allowed.
    #[error("longer than {max} bytes")]
    TooLong {
        /// The limit that was exceeded.
        max: usize,
    },
    /// A character outside the allowed set.
    #[error("contains a character that is not allowed")]
    BadChar,
}

/// A player name: 1..=32 bytes, no control characters.
///
/// # Errors
/// [`InvalidText`] says which rule the name breaks.
pub fn player_name(name: &str) -> Result<(), InvalidText> {
    check(name, MAX_NAME_BYTES, |c| !c.is_control())
}

/// A room name: 1..=64 bytes of ASCII letters, digits, `-`, `_` and `.`
/// (safe in a URL, a log line and a metrics label without escaping).
///
/// # Errors
/// [`InvalidText`] says which rule the name breaks.
pub fn room_name(room: &str) -> Result<(), InvalidText> {
    check(room, MAX_ROOM_BYTES, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
    })
}

fn check(s: &str, max: usize, allowed: impl Fn(char) -> bool) -> Result<(), InvalidText> {
    if s.is_empty() {
        return Err(InvalidText::Empty);
    }
    if s.len() > max {
        return Err(InvalidText::TooLong { max });
    }
    if !s.chars().all(allowed) {
        return Err(InvalidText::BadChar);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(player_name("bot-1 ✓"), Ok(()));
        assert_eq!(player_name(""), Err(InvalidText::Empty));
        assert_eq!(player_name("a\nb"), Err(InvalidText::BadChar));
        assert_eq!(
            player_name(&"x".repeat(33)),
            Err(InvalidText::TooLong { max: 32 })
        );
    }

    #[test]
    fn rooms() {
        assert_eq!(room_name("lobby"), Ok(()));
        assert_eq!(room_name("arena_2.eu-west"), Ok(()));
        assert_eq!(room_name("a b"), Err(InvalidText::BadChar));
        assert_eq!(room_name("../x"), Err(InvalidText::BadChar));
        assert_eq!(
            room_name(&"r".repeat(65)),
            Err(InvalidText::TooLong { max: 64 })
        );
    }
}
