//! Player tokens: the signed JSON Web Token a server with player authentication wants in
//! every `Hello` (docs/PROTOCOL.md, section 3, *Player authentication*).
//!
//! A real game gets its token from its own backend, after the player logged in, and
//! hands it to [`crate::ConnectOptions::auth_token`] as a [`PlayerToken`]. A load test
//! has no backend, so `tickcast-bots --jwt-secret-file` signs one for each bot itself
//! with [`BotTokens`], using the same HS256 secret as the server's
//! `--auth-jwt-secret-file`. Minting is I/O-free: the secret's bytes and the time come
//! in, the token comes out; reading the file is the caller's job.
//!
//! Both types keep their secret out of `Debug`: options and configs get logged, and a
//! token there is a seat anyone could take.

use std::fmt;
use std::time::Duration;

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};

/// Extra lifetime of a bot's token beyond the end of its run: covers clock skew, the
/// ramp, and a resume near the end, which presents the token again.
pub const BOT_TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// A signed player token, sent in `Hello` (and again in every resume).
///
/// Its `Debug` form hides the token itself.
#[derive(Clone, PartialEq, Eq)]
pub struct PlayerToken(String);

impl PlayerToken {
    /// Wraps a token as the game's backend issued it (the compact JWT form,
    /// `header.claims.signature`). Not checked here: the server is the judge.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token as sent on the wire.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlayerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PlayerToken(<{} bytes>)", self.0.len())
    }
}

impl From<String> for PlayerToken {
    fn from(token: String) -> Self {
        Self(token)
    }
}

impl From<&str> for PlayerToken {
    fn from(token: &str) -> Self {
        Self(token.to_owned())
    }
}

/// The claims a bot's token carries (the table of docs/PROTOCOL.md, section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlayerClaims {
    /// The player's identity: for a bot, its name (`PREFIX-N`).
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// Display name; the server shows it instead of `Hello.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The one room the token may join.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Issuer, for a server started with `--auth-jwt-issuer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Audience, for a server started with `--auth-jwt-audience`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// Why no token could be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The secret has no bytes: every token would be forgeable, and the server refuses
    /// such a secret too.
    #[error("the HS256 secret is empty")]
    EmptySecret,
    /// The claims could not be encoded (a bug, not bad input).
    #[error("signing the token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// How a swarm signs its bots' tokens: the server's HS256 secret and the claims to
/// match its settings.
///
/// Its `Debug` form hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct BotTokens {
    secret: Vec<u8>,
    /// Put each bot's room in its token (`room` claim), so the token is good for that
    /// room only, as a backend that hands out per-match tokens would do.
    pub room_claim: bool,
    /// `iss` claim, to match the server's `--auth-jwt-issuer`.
    pub issuer: Option<String>,
    /// `aud` claim, to match the server's `--auth-jwt-audience`.
    pub audience: Option<String>,
}

impl fmt::Debug for BotTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotTokens")
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("room_claim", &self.room_claim)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl BotTokens {
    /// Signs with `secret`, with no `room`, `iss` or `aud` claim.
    ///
    /// # Errors
    /// [`TokenError::EmptySecret`] for an empty secret.
    pub fn new(secret: Vec<u8>) -> Result<Self, TokenError> {
        if secret.is_empty() {
            return Err(TokenError::EmptySecret);
        }
        Ok(Self {
            secret,
            room_claim: false,
            issuer: None,
            audience: None,
        })
    }

    /// Signs with the secret read from a file in the format of the server's
    /// `--auth-jwt-secret-file`: its bytes, with the trailing line ending (`\n`, `\r`)
    /// that `echo` or an editor adds trimmed, as the server trims it, so that one file
    /// is the same secret on both sides.
    ///
    /// # Errors
    /// [`TokenError::EmptySecret`] when nothing is left.
    pub fn from_secret_file_contents(mut contents: Vec<u8>) -> Result<Self, TokenError> {
        while matches!(contents.last(), Some(b'\n' | b'\r')) {
            contents.pop();
        }
        Self::new(contents)
    }

    /// The claims of the bot named `name` in `room`, expiring at `exp` (seconds since
    /// the epoch): `sub` and `name` are the bot's name, so every bot is its own player.
    pub fn claims(&self, name: &str, room: &str, exp: u64) -> PlayerClaims {
        PlayerClaims {
            sub: name.to_owned(),
            exp,
            name: Some(name.to_owned()),
            room: self.room_claim.then(|| room.to_owned()),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
        }
    }

    /// Signs the token of the bot named `name` in `room`, expiring at `exp`.
    ///
    /// # Errors
    /// [`TokenError::Sign`] if the claims do not encode (not expected).
    pub fn mint(&self, name: &str, room: &str, exp: u64) -> Result<PlayerToken, TokenError> {
        sign_hs256(&self.secret, &self.claims(name, room, exp))
    }
}

/// Signs `claims` with HS256 and `secret`.
///
/// # Errors
/// [`TokenError::EmptySecret`] for an empty secret; [`TokenError::Sign`] if the claims
/// do not encode.
pub fn sign_hs256(secret: &[u8], claims: &PlayerClaims) -> Result<PlayerToken, TokenError> {
    if secret.is_empty() {
        return Err(TokenError::EmptySecret);
    }
    let token = encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )?;
    Ok(PlayerToken(token))
}

/// The expiry of a token that must last a run of `run` from `now_unix` (seconds since
/// the epoch): the run, plus [`BOT_TOKEN_MARGIN`], rounded up to whole seconds.
pub fn expiry_after(now_unix: u64, run: Duration) -> u64 {
    let lifetime = run.saturating_add(BOT_TOKEN_MARGIN);
    let secs = lifetime.as_secs() + u64::from(lifetime.subsec_nanos() > 0);
    now_unix.saturating_add(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{decode, DecodingKey, Validation};

    const SECRET: &[u8] = b"load-test-secret";

    fn decoded(token: &PlayerToken, secret: &[u8]) -> jsonwebtoken::errors::Result<PlayerClaims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        decode::<PlayerClaims>(
            token.as_str(),
            &DecodingKey::from_secret(secret),
            &validation,
        )
        .map(|data| data.claims)
    }

    #[test]
    fn a_bot_token_names_the_bot_and_verifies_with_the_secret() {
        let tokens = BotTokens::new(SECRET.to_vec()).expect("secret");
        let token = tokens
            .mint("bot-7", "arena-1", 1_900_000_000)
            .expect("mint");
        let claims = decoded(&token, SECRET).expect("verifies");
        assert_eq!(
            claims,
            PlayerClaims {
                sub: "bot-7".into(),
                exp: 1_900_000_000,
                name: Some("bot-7".into()),
                room: None,
                iss: None,
                aud: None,
            }
        );
        let header = jsonwebtoken::decode_header(token.as_str()).expect("header");
        assert_eq!(header.alg, Algorithm::HS256);
        assert!(decoded(&token, b"another secret").is_err());
        // Absent claims are left out, not sent as null.
        let payload = token.as_str().split('.').nth(1).expect("payload");
        let json =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
                .expect("base64url");
        let json: serde_json::Value = serde_json::from_slice(&json).expect("json");
        let keys: Vec<&String> = json.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["exp", "name", "sub"]);
    }

    #[test]
    fn room_issuer_and_audience_claims_when_asked() {
        let tokens = BotTokens {
            room_claim: true,
            issuer: Some("studio".into()),
            audience: Some("tickcast".into()),
            ..BotTokens::new(SECRET.to_vec()).expect("secret")
        };
        let token = tokens.mint("load-0", "room-3", 5).expect("mint");
        let claims = decoded(&token, SECRET).expect("verifies");
        assert_eq!(claims.room.as_deref(), Some("room-3"));
        assert_eq!(claims.iss.as_deref(), Some("studio"));
        assert_eq!(claims.aud.as_deref(), Some("tickcast"));
        assert_eq!((claims.sub.as_str(), claims.exp), ("load-0", 5));
        // What a server with --auth-jwt-issuer/--auth-jwt-audience checks.
        let mut server = Validation::new(Algorithm::HS256);
        server.validate_exp = false;
        server.set_issuer(&["studio"]);
        server.set_audience(&["tickcast"]);
        let key = DecodingKey::from_secret(SECRET);
        assert!(decode::<PlayerClaims>(token.as_str(), &key, &server).is_ok());
        server.set_audience(&["another"]);
        assert!(decode::<PlayerClaims>(token.as_str(), &key, &server).is_err());
    }

    #[test]
    fn the_secret_file_loses_its_trailing_line_ending_only() {
        let file = |bytes: &[u8]| BotTokens::from_secret_file_contents(bytes.to_vec());
        let token = |t: BotTokens| t.mint("b-0", "r", 9).expect("mint");
        let plain = token(BotTokens::new(SECRET.to_vec()).expect("secret"));
        assert_eq!(token(file(b"load-test-secret\n").expect("lf")), plain);
        assert_eq!(token(file(b"load-test-secret\r\n").expect("crlf")), plain);
        assert_eq!(token(file(b"load-test-secret").expect("bare")), plain);
        assert_eq!(token(file(b"load-test-secret\n\n").expect("two")), plain);
        assert_ne!(token(file(b"load-test-secret \n").expect("space")), plain);
        assert_ne!(token(file(b"\nload-test-secret").expect("leading")), plain);
        assert!(matches!(file(b"\n"), Err(TokenError::EmptySecret)));
        assert!(matches!(file(b""), Err(TokenError::EmptySecret)));
    }

    #[test]
    fn expiry_covers_the_run_and_the_margin() {
        assert_eq!(expiry_after(1_000, Duration::from_secs(30)), 1_090);
        assert_eq!(expiry_after(1_000, Duration::from_millis(1_500)), 1_062);
        assert_eq!(expiry_after(u64::MAX - 1, Duration::from_secs(5)), u64::MAX);
    }

    #[test]
    fn debug_hides_secrets() {
        let tokens = BotTokens::new(SECRET.to_vec()).expect("secret");
        let shown = format!("{tokens:?}");
        assert!(!shown.contains("load-test-secret"), "{shown}");
        assert!(shown.contains("<16 bytes>"), "{shown}");
        let token = tokens.mint("bot-1", "r", 9).expect("mint");
        let shown = format!("{token:?}");
        assert!(!shown.contains(token.as_str()), "{shown}");
        assert_eq!(
            shown,
            format!("PlayerToken(<{} bytes>)", token.as_str().len())
        );
    }
}
