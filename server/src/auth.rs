//! Player authentication: verifying the signed token a `Hello` carries.
//!
//! The game's own backend logs a player in and signs a JSON Web Token for it; the server
//! only checks that token with a key the operator gives at start-up
//! (`--auth-jwt-secret-file` for HS256, `--auth-jwt-public-key-file` for RS256 or ES256).
//! Reading that file is the only I/O here: [`Verifier::verify`] is a pure function of
//! the token, the room and the clock, so the join path, `POST /matchmake` and the unit
//! tests all call the same code. docs/PROTOCOL.md section 3, *Player authentication*,
//! is the contract.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tickcast_shared::validate::{self, MAX_AUTH_TOKEN_BYTES};
use tickcast_shared::DisconnectReason;

use crate::config::Config;
use crate::room::Arrival;

/// Who a `Hello` for `room` lets in, with `auth` the server's verifier (`None`: player
/// authentication is off, and a token the client sends anyway is ignored). `name` is
/// `Hello.name`, replaced by the token's `name` claim when it has one.
///
/// # Errors
/// The close code: `AuthRequired` without a token, else [`AuthError::reason`].
pub fn admit(
    auth: Option<&Verifier>,
    name: &str,
    token: Option<&str>,
    room: &str,
) -> Result<Arrival, DisconnectReason> {
    let Some(verifier) = auth else {
        return Ok(Arrival {
            name: name.to_owned(),
            identity: None,
        });
    };
    let token = token.ok_or(DisconnectReason::AuthRequired)?;
    let identity = verifier.verify(token, room).map_err(|e| {
        tracing::debug!(error = %e, "player token refused");
        e.reason()
    })?;
    Ok(Arrival {
        name: identity.name.unwrap_or_else(|| name.to_owned()),
        identity: Some(identity.sub),
    })
}

/// Shortest HS256 secret accepted: 256 bits, the size of the hash (RFC 7518 section
/// 3.2). A shorter secret can be guessed offline from any one token a player holds.
pub const MIN_SECRET_BYTES: usize = 32;

/// Who a verified token says the player is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `sub` claim: the player across connections, never empty.
    pub sub: String,
    /// The `name` claim, already checked as a player name; it replaces `Hello.name`.
    pub name: Option<String>,
}

/// Why a token was refused. Each maps to one close code ([`AuthError::reason`]); the
/// detail of `Invalid` is for the server's log, not for the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token does not verify: not a JWT, too long, another key or algorithm, a
    /// required claim missing, another `iss` or `aud`, a bad `name` claim.
    #[error("player token invalid: {0}")]
    Invalid(String),
    /// `exp` is past, beyond the leeway.
    #[error("player token expired")]
    Expired,
    /// The `room` claim names another room.
    #[error("player token is for another room")]
    WrongRoom,
}

impl AuthError {
    /// The close code a `Hello` with this token gets.
    pub fn reason(&self) -> DisconnectReason {
        match self {
            Self::Invalid(_) => DisconnectReason::AuthInvalid,
            Self::Expired => DisconnectReason::AuthExpired,
            Self::WrongRoom => DisconnectReason::AuthWrongRoom,
        }
    }
}

/// The claims the server reads beyond those `jsonwebtoken` checks itself (`exp`,
/// `nbf`, `iss`, `aud`). A claim of the wrong JSON type makes the token invalid.
#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    room: Option<String>,
}

/// What a [`Verifier`] requires besides the signature, from the `--auth-jwt-*` flags.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Clock skew allowed on `exp` and `nbf`, in whole seconds.
    pub leeway_secs: u64,
    /// The `iss` a token must carry, if any.
    pub issuer: Option<String>,
    /// The `aud` a token must carry, if any.
    pub audience: Option<String>,
}

impl Requirements {
    /// The requirements the flags of `config` set.
    pub fn from_config(config: &Config) -> Self {
        Self {
            leeway_secs: config.auth_jwt_leeway.as_secs(),
            issuer: config.auth_jwt_issuer.clone(),
            audience: config.auth_jwt_audience.clone(),
        }
    }
}

/// Checks player tokens against the one key the server was started with.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs, even a public one: the algorithm says enough.
        f.debug_struct("Verifier")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A key file the server cannot start with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The HS256 secret is empty.
    #[error("the secret is empty")]
    EmptySecret,
    /// The HS256 secret is too short to resist guessing.
    #[error("the secret is {0} bytes; HS256 needs at least {MIN_SECRET_BYTES} (256 bits)")]
    ShortSecret(usize),
    /// The file is a private key or a certificate, not a public key.
    #[error("expected a PEM public key (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY), found {0}")]
    NotAPublicKey(String),
    /// The PEM does not hold an RSA or EC public key that can be read.
    #[error("not a readable RSA or EC public key in PEM")]
    Unreadable,
}

impl Verifier {
    /// The verifier the `--auth-jwt-*` flags of `config` ask for, or `None` when player
    /// authentication is off (neither key file given).
    ///
    /// # Errors
    /// The key file cannot be read, or is not a key the server accepts ([`KeyError`]);
    /// the message names the flag and the file, for the start-up error.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        let rules = Requirements::from_config(config);
        let read = |flag: &str, path: &Path| {
            std::fs::read(path).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()))
        };
        if let Some(path) = &config.auth_jwt_secret_file {
            let flag = "--auth-jwt-secret-file";
            let bytes = read(flag, path)?;
            return Self::hs256(&bytes, rules)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()));
        }
        if let Some(path) = &config.auth_jwt_public_key_file {
            let flag = "--auth-jwt-public-key-file";
            let pem = read(flag, path)?;
            return Self::public_key(&pem, rules)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("{flag} {}: {e}", path.display()));
        }
        Ok(None)
    }

    /// HS256 with the shared secret `file` holds: its bytes, with the trailing
    /// newline an editor or `echo` adds trimmed (a secret is otherwise taken as is).
    ///
    /// # Errors
    /// [`KeyError::EmptySecret`], or [`KeyError::ShortSecret`] below
    /// [`MIN_SECRET_BYTES`].
    pub fn hs256(file: &[u8], rules: Requirements) -> Result<Self, KeyError> {
        let end = file
            .iter()
            .rposition(|b| !matches!(b, b'\n' | b'\r'))
            .map_or(0, |i| i + 1);
        let secret = &file[..end];
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        if secret.len() < MIN_SECRET_BYTES {
            return Err(KeyError::ShortSecret(secret.len()));
        }
        Ok(Self::new(
            DecodingKey::from_secret(secret),
            Algorithm::HS256,
            rules,
        ))
    }

    /// RS256 or ES256, whichever the PEM public key is for: an RSA key (`BEGIN PUBLIC
    /// KEY` with the RSA algorithm, or `BEGIN RSA PUBLIC KEY`) means RS256, an EC key
    /// ES256 (P-256; a token signed on another curve does not verify).
    ///
    /// # Errors
    /// [`KeyError::NotAPublicKey`] for a private key or a certificate (a private key
    /// has no business on a game server), [`KeyError::Unreadable`] otherwise.
    pub fn public_key(pem: &[u8], rules: Requirements) -> Result<Self, KeyError> {
        let label = pem_label(pem).ok_or(KeyError::Unreadable)?;
        if label != "PUBLIC KEY" && label != "RSA PUBLIC KEY" {
            return Err(KeyError::NotAPublicKey(format!("BEGIN {label}")));
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(key, Algorithm::RS256, rules));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::new(key, Algorithm::ES256, rules));
        }
        Err(KeyError::Unreadable)
    }

    fn new(key: DecodingKey, algorithm: Algorithm, rules: Requirements) -> Self {
        // Only the key's own algorithm: a token naming another (HS256 with the public
        // key as its secret is the classic trick, `none` the other) never verifies.
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = rules.leeway_secs;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        if let Some(issuer) = &rules.issuer {
            validation.set_issuer(&[issuer]);
            validation.required_spec_claims.insert("iss".to_owned());
        }
        match &rules.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.required_spec_claims.insert("aud".to_owned());
            }
            // No audience configured: an `aud` in the token is the backend's business.
            None => validation.validate_aud = false,
        }
        Self {
            key,
            validation,
            algorithm,
        }
    }

    /// The algorithm tokens must be signed with.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Checks `token` for a player joining `room`, at the current time.
    ///
    /// # Errors
    /// [`AuthError`] says why the token is refused.
    pub fn verify(&self, token: &str, room: &str) -> Result<Identity, AuthError> {
        let (identity, claimed_room) = self.verify_token(token)?;
        match claimed_room {
            Some(claimed) if claimed != room => Err(AuthError::WrongRoom),
            _ => Ok(identity),
        }
    }

    /// Checks `token` without a room to join: the identity and the token's `room`
    /// claim, if it has one, for the caller to decide (`POST /matchmake`).
    ///
    /// # Errors
    /// As [`Verifier::verify`], never [`AuthError::WrongRoom`].
    pub fn verify_token(&self, token: &str) -> Result<(Identity, Option<String>), AuthError> {
        if token.len() > MAX_AUTH_TOKEN_BYTES {
            // Not even parsed: the wire already bounds it, this bounds the work.
            return Err(AuthError::Invalid(format!(
                "longer than {MAX_AUTH_TOKEN_BYTES} bytes"
            )));
        }
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::Invalid(e.to_string()),
            })?
            .claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty sub".to_owned()));
        }
        if let Some(name) = &claims.name {
            validate::player_name(name)
                .map_err(|e| AuthError::Invalid(format!("name claim: {e}")))?;
        }
        Ok((
            Identity {
                sub: claims.sub,
                name: claims.name,
            },
            claims.room,
        ))
    }
}

/// The label of the first PEM block (`PUBLIC KEY` in `-----BEGIN PUBLIC KEY-----`).
fn pem_label(pem: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(pem).ok()?;
    let start = text.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = text[start..].find("-----")?;
    Some(&text[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, get_current_timestamp, EncodingKey, Header};
    use serde_json::{json, Value};

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    /// A throwaway 2048-bit RSA key made with `openssl genpkey` for these tests only
    /// (ring, which rcgen uses, cannot generate RSA keys); it protects nothing.
    const RSA_PRIVATE: &str = "\
-----BEGIN PRIVATE KEY-----\n\
MIIEvwIBADANBgkqhkiG9w0BAQEFAASCBKkwggSlAgEAAoIBAQDulVE9LeVatU+2\n\
0Te3t/mjJ5EYMuR34rY0fiF2RqigUKHF6EEz4MohUqnpB7UYs2ZuIsNQFdQNsP8y\n\
pM7DXlaNgviltPm0xx8oZZcYh3v4d/0PBUOijWoxn02KC4JpXX/EEz2VavZ/QeH4\n\
YJZMRubkMsKmMrMc5tXXsSkh5SYuPtjA0qQD2tYYHlCdP1zj8enIpAEbgBpeSlj5\n\
fbhckJrX9EEWS40ZavsMu2ijEuHNS99CC2J0vdXhzRrr56ly4SEWXHyKUXpW82jc\n\
Mc3qE40Q0ko0NGuq1R9s6D3PJHCkk9CHHv5vt/BUVfFbgpJxBNpve4nGq6YGU+Rd\n\
jSJFR1bdAgMBAAECggEAA+69pVDDmkxpSTXnIXXcnUoaa+fw2KIJx1E563lsL6JM\n\
nFbA9mIy6rwyVUc9fq/8VP3pMsF9WpFrj3Hkf5dnPVNmllKmmAp9Mr0D8dFP449U\n\
wkHftMb4dGNwE4Gvj12NbNW1WuhlskDLgPzUlWLIzQOiLjuhNK2AYlsG9spQaAw0\n\
f6PeFjaoNc1IEHEF/2xgWwsNkT7jydn2xUsPp4bTmDez/542Wefe6TyClCQIrXtk\n\
TTnDEulrrkQea5+d/3huotdg+zHDE1EjwZVgwc6UWdYCKr0EvITRYf86uYMQZ61Q\n\
TkSxbj+PgmFLDMlUwHDdB/QPkgNBRITGU/qCj+F9YQKBgQD9DEg93WypVC6cNnTd\n\
Gz6EjinLu7Hkkyz5adogb3ayVVkWZJxUa+mXOjABva5j3DYc0YM6yF8X4277RwBz\n\
LEH4FLiHlzX+At6MrRYBHvMpt/cJrnLLsU12F2+56HYx6PXH9mrCpkbFEq6IxdSA\n\
8iZRJKWGivxIlhc2JwbMa070oQKBgQDxXdY9IgwzaR1qLFqocGU+YeW2hJttuSmq\n\
3EiLpDvTw4cmWjAlocgN1O7cG3UBWDcMLCW8hCTHMRHy6mOoewLniNXTCzjOuGR4\n\
AZODhauT46SRVYu3qgJxCQR1vlNDeYG32ncLhAIkGhDDgfq5GJWNbHc20Y7zUvWu\n\
cv5bckc8vQKBgQDRgnrJpevSop1YvwmxC16Ot3nJceTOwEArXMW5ty/KZTm2faSl\n\
jRdBG28l8dtSWMAAykLhx4ZcK/T2XQn1Ub5o3RcPRFXysoN6a9BdKzfe4a7KuEHZ\n\
fjoJPUxG2z4JAr2ESvSHps3PWzFgkpLoFBU/d50IsUhB/OrI7jUFyQ79IQKBgQDf\n\
NbdNe7IqzRe9u1zvjlmisigcfU+7zdPBxct1ECGfuZ+/kQIbmxyF5hgrB11SLAFk\n\
SWNwjgfxCekeazJUecX61ulfLW6Qhaer71E6/R/qOUhUevcll5yAaiVsueEIclLK\n\
8sbKqH7OYiiElSyHhjuvuNIaqPt4/IxlksS1Tt6gRQKBgQC0ndO60hFY3GXKxna5\n\
0hdSLCti8HbQIAiiW5d44XYB1VrqycqDTsEn+Ml4zI9I9DJbw52xV+juejYq+sXv\n\
jqsQIqGUtf497/6CBoaTgu7YYu/i5T8sgNt37tMUhwsHW14LPicxE9SYaKq1JcdL\n\
Ge2lcN0eti0tF/+yqzzy9bP7bw==\n\
-----END PRIVATE KEY-----\n\
";
    const RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----\n\
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA7pVRPS3lWrVPttE3t7f5\n\
oyeRGDLkd+K2NH4hdkaooFChxehBM+DKIVKp6Qe1GLNmbiLDUBXUDbD/MqTOw15W\n\
jYL4pbT5tMcfKGWXGId7+Hf9DwVDoo1qMZ9NiguCaV1/xBM9lWr2f0Hh+GCWTEbm\n\
5DLCpjKzHObV17EpIeUmLj7YwNKkA9rWGB5QnT9c4/HpyKQBG4AaXkpY+X24XJCa\n\
1/RBFkuNGWr7DLtooxLhzUvfQgtidL3V4c0a6+epcuEhFlx8ilF6VvNo3DHN6hON\n\
ENJKNDRrqtUfbOg9zyRwpJPQhx7+b7fwVFXxW4KScQTab3uJxqumBlPkXY0iRUdW\n\
3QIDAQAB\n\
-----END PUBLIC KEY-----\n\
";

    fn now() -> u64 {
        get_current_timestamp()
    }

    fn hs(rules: Requirements) -> Verifier {
        Verifier::hs256(SECRET, rules).unwrap()
    }

    fn leeway(secs: u64) -> Requirements {
        Requirements {
            leeway_secs: secs,
            ..Requirements::default()
        }
    }

    fn mint(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
        encode(&Header::new(alg), claims, key).unwrap()
    }

    fn hs_token(claims: &Value) -> String {
        mint(Algorithm::HS256, &EncodingKey::from_secret(SECRET), claims)
    }

    fn alive(sub: &str) -> Value {
        json!({ "sub": sub, "exp": now() + 60 })
    }

    fn invalid(r: Result<Identity, AuthError>) -> bool {
        matches!(r, Err(AuthError::Invalid(_)))
    }

    #[test]
    fn admit_needs_a_token_only_when_auth_is_on_and_takes_the_name_claim() {
        let v = hs(leeway(10));
        let t = hs_token(&json!({ "sub": "p-9", "exp": now() + 60, "name": "Grace" }));
        assert_eq!(
            admit(None, "ada", Some(&t), "r"),
            Ok(Arrival {
                name: "ada".into(),
                identity: None
            })
        );
        assert_eq!(
            admit(Some(&v), "ada", None, "r"),
            Err(DisconnectReason::AuthRequired)
        );
        assert_eq!(
            admit(Some(&v), "ada", Some("x.y.z"), "r"),
            Err(DisconnectReason::AuthInvalid)
        );
        assert_eq!(
            admit(Some(&v), "ada", Some(&t), "r"),
            Ok(Arrival {
                name: "Grace".into(),
                identity: Some("p-9".into())
            })
        );
        let plain = hs_token(&alive("p-9"));
        assert_eq!(
            admit(Some(&v), "ada", Some(&plain), "r").map(|a| a.name),
            Ok("ada".into())
        );
    }

    #[test]
    fn a_good_hs256_token_gives_its_identity() {
        let v = hs(leeway(10));
        let id = v.verify(&hs_token(&alive("p-1")), "lobby").unwrap();
        assert_eq!(
            id,
            Identity {
                sub: "p-1".into(),
                name: None
            }
        );
        let named = json!({ "sub": "p-1", "exp": now() + 60, "name": "Ada" });
        assert_eq!(
            v.verify(&hs_token(&named), "lobby")
                .unwrap()
                .name
                .as_deref(),
            Some("Ada")
        );
    }

    #[test]
    fn the_secret_file_is_trimmed_of_its_newline_and_must_be_long_enough() {
        let mut file = SECRET.to_vec();
        file.extend_from_slice(b"\r\n");
        let v = Verifier::hs256(&file, leeway(0)).unwrap();
        assert!(v.verify(&hs_token(&alive("p")), "r").is_ok());
        assert_eq!(
            Verifier::hs256(b"\n", leeway(0)).unwrap_err(),
            KeyError::EmptySecret
        );
        assert_eq!(
            Verifier::hs256(&SECRET[..31], leeway(0)).unwrap_err(),
            KeyError::ShortSecret(31)
        );
        // Spaces are part of a secret: only line ends are trimmed.
        assert!(Verifier::hs256(&[b' '; 32], leeway(0)).is_ok());
    }

    #[test]
    fn garbage_another_key_and_another_algorithm_are_invalid() {
        let v = hs(leeway(10));
        assert!(invalid(v.verify("not.a.jwt", "r")));
        assert!(invalid(v.verify("", "r")));
        let other = mint(
            Algorithm::HS256,
            &EncodingKey::from_secret(b"another secret, also 32 bytes ok"),
            &alive("p"),
        );
        assert!(invalid(v.verify(&other, "r")));
        let hs512 = mint(
            Algorithm::HS512,
            &EncodingKey::from_secret(SECRET),
            &alive("p"),
        );
        assert!(invalid(v.verify(&hs512, "r")));
        // alg "none", unsigned: the base64url of {"alg":"none","typ":"JWT"}, the claims
        // of a real token, and an empty signature.
        let real = hs_token(&alive("p"));
        let claims = real.split('.').nth(1).unwrap();
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
        assert!(invalid(v.verify(&none, "r")));
    }

    #[test]
    fn a_token_longer_than_the_limit_is_invalid_unparsed() {
        let v = hs(leeway(10));
        let long = "a".repeat(MAX_AUTH_TOKEN_BYTES + 1);
        assert_eq!(
            v.verify(&long, "r"),
            Err(AuthError::Invalid(format!(
                "longer than {MAX_AUTH_TOKEN_BYTES} bytes"
            )))
        );
    }

    #[test]
    fn exp_and_sub_are_required_and_sub_not_empty() {
        let v = hs(leeway(10));
        assert!(invalid(v.verify(&hs_token(&json!({ "sub": "p" })), "r")));
        assert!(invalid(
            v.verify(&hs_token(&json!({ "exp": now() + 60 })), "r")
        ));
        assert!(invalid(v.verify(
            &hs_token(&json!({ "sub": "", "exp": now() + 60 })),
            "r"
        )));
        assert!(invalid(v.verify(
            &hs_token(&json!({ "sub": 7, "exp": now() + 60 })),
            "r"
        )));
    }

    #[test]
    fn expiry_counts_the_leeway() {
        let v = hs(leeway(10));
        let within = json!({ "sub": "p", "exp": now() - 5 });
        assert!(v.verify(&hs_token(&within), "r").is_ok());
        let beyond = json!({ "sub": "p", "exp": now() - 30 });
        assert_eq!(v.verify(&hs_token(&beyond), "r"), Err(AuthError::Expired));
        assert_eq!(AuthError::Expired.reason(), DisconnectReason::AuthExpired);
        // Not before: also with the leeway, and invalid (not expired) when too early.
        let early = json!({ "sub": "p", "exp": now() + 600, "nbf": now() + 300 });
        assert!(invalid(v.verify(&hs_token(&early), "r")));
        let nearly = json!({ "sub": "p", "exp": now() + 600, "nbf": now() + 5 });
        assert!(v.verify(&hs_token(&nearly), "r").is_ok());
    }

    #[test]
    fn the_room_claim_limits_the_room() {
        let v = hs(leeway(10));
        let t = hs_token(&json!({ "sub": "p", "exp": now() + 60, "room": "arena-1" }));
        assert!(v.verify(&t, "arena-1").is_ok());
        assert_eq!(v.verify(&t, "arena-2"), Err(AuthError::WrongRoom));
        assert_eq!(
            AuthError::WrongRoom.reason(),
            DisconnectReason::AuthWrongRoom
        );
        let (_, room) = v.verify_token(&t).unwrap();
        assert_eq!(room.as_deref(), Some("arena-1"));
    }

    #[test]
    fn a_bad_name_claim_is_invalid() {
        let v = hs(leeway(10));
        let control = json!({ "sub": "p", "exp": now() + 60, "name": "a\u{7}b" });
        assert!(invalid(v.verify(&hs_token(&control), "r")));
        let long = json!({ "sub": "p", "exp": now() + 60, "name": "x".repeat(200) });
        assert!(invalid(v.verify(&hs_token(&long), "r")));
        let not_text = json!({ "sub": "p", "exp": now() + 60, "name": 5 });
        assert!(invalid(v.verify(&hs_token(&not_text), "r")));
        assert_eq!(
            AuthError::Invalid(String::new()).reason(),
            DisconnectReason::AuthInvalid
        );
    }

    #[test]
    fn issuer_and_audience_must_match_when_configured_and_are_free_otherwise() {
        let strict = hs(Requirements {
            leeway_secs: 10,
            issuer: Some("https://game.example".into()),
            audience: Some("tickcast".into()),
        });
        let exp = now() + 60;
        let good =
            json!({ "sub": "p", "exp": exp, "iss": "https://game.example", "aud": "tickcast" });
        assert!(strict.verify(&hs_token(&good), "r").is_ok());
        let bad_iss =
            json!({ "sub": "p", "exp": exp, "iss": "https://evil.example", "aud": "tickcast" });
        assert!(invalid(strict.verify(&hs_token(&bad_iss), "r")));
        let bad_aud =
            json!({ "sub": "p", "exp": exp, "iss": "https://game.example", "aud": "other" });
        assert!(invalid(strict.verify(&hs_token(&bad_aud), "r")));
        let neither = json!({ "sub": "p", "exp": exp });
        assert!(invalid(strict.verify(&hs_token(&neither), "r")));
        // Unconfigured, they are not checked, even when present.
        let open = hs(leeway(10));
        assert!(open.verify(&hs_token(&bad_aud), "r").is_ok());
    }

    #[test]
    fn an_ec_public_key_means_es256() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let v = Verifier::public_key(pair.public_key_pem().as_bytes(), leeway(10)).unwrap();
        assert_eq!(v.algorithm(), Algorithm::ES256);
        let signer = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
        let t = mint(Algorithm::ES256, &signer, &alive("p"));
        assert_eq!(v.verify(&t, "r").unwrap().sub, "p");
        // Another EC key's signature does not verify.
        let other = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let other = EncodingKey::from_ec_pem(other.serialize_pem().as_bytes()).unwrap();
        assert!(invalid(
            v.verify(&mint(Algorithm::ES256, &other, &alive("p")), "r")
        ));
        // HS256 with the public key's bytes as the secret: the algorithm-confusion trick.
        let confused = mint(
            Algorithm::HS256,
            &EncodingKey::from_secret(pair.public_key_pem().as_bytes()),
            &alive("p"),
        );
        assert!(invalid(v.verify(&confused, "r")));
    }

    #[test]
    fn an_rsa_public_key_means_rs256() {
        let v = Verifier::public_key(RSA_PUBLIC.as_bytes(), leeway(10)).unwrap();
        assert_eq!(v.algorithm(), Algorithm::RS256);
        let signer = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let t = mint(Algorithm::RS256, &signer, &alive("p"));
        assert_eq!(v.verify(&t, "r").unwrap().sub, "p");
        // Same key, another algorithm of its family: refused.
        let ps = mint(Algorithm::RS512, &signer, &alive("p"));
        assert!(invalid(v.verify(&ps, "r")));
    }

    #[test]
    fn private_keys_certificates_and_junk_are_refused_at_start() {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        assert_eq!(
            Verifier::public_key(pair.serialize_pem().as_bytes(), leeway(0)).unwrap_err(),
            KeyError::NotAPublicKey("BEGIN PRIVATE KEY".into())
        );
        assert_eq!(
            Verifier::public_key(RSA_PRIVATE.as_bytes(), leeway(0)).unwrap_err(),
            KeyError::NotAPublicKey("BEGIN PRIVATE KEY".into())
        );
        assert_eq!(
            Verifier::public_key(b"hello", leeway(0)).unwrap_err(),
            KeyError::Unreadable
        );
        assert_eq!(
            Verifier::public_key(
                b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                leeway(0)
            )
            .unwrap_err(),
            KeyError::Unreadable
        );
    }

    #[test]
    fn the_config_picks_the_verifier_and_names_the_flag_in_errors() {
        let dir = std::env::temp_dir().join(format!("tickcast-auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short");
        std::fs::write(&short, b"tiny\n").unwrap();
        let config = Config {
            auth_jwt_secret_file: Some(short.clone()),
            ..Config::default()
        };
        let e = Verifier::from_config(&config).unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "--auth-jwt-secret-file {}: the secret is 4 bytes; HS256 needs at least 32 (256 bits)",
                short.display()
            )
        );
        let missing = dir.join("missing");
        let config = Config {
            auth_jwt_public_key_file: Some(missing.clone()),
            ..Config::default()
        };
        let e = Verifier::from_config(&config).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "--auth-jwt-public-key-file {}: ",
                missing.display()
            )),
            "{e}"
        );
        assert!(Verifier::from_config(&Config::default()).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
