//! Player authentication helpers: key files, tokens minted the way a game backend
//! would (with `jsonwebtoken`), `Hello`s that carry them, `POST /matchmake` with a
//! bearer token, and a watching player that joins with a token.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use tickcast::shared::{ClientMsg, Hello, SessionToken, Welcome, PROTOCOL_VERSION};
use tokio::net::TcpStream;

use super::{connect, expect_close, http_json, parse_response, recv_welcome, send, Ws, WAIT};

/// The HS256 secret of the tests: 36 bytes, above the 32 the server requires.
pub const SECRET: &[u8] = b"tickcast-tests-only-secret-0123456789";

/// A file that is removed when dropped.
pub struct KeyFile(pub PathBuf);

impl KeyFile {
    /// Writes `contents` to a file of its own in the temporary directory.
    pub fn new(contents: &[u8]) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tickcast-auth-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Seconds since the epoch, the clock of `exp`.
pub fn now() -> u64 {
    get_current_timestamp()
}

/// The claims of a good token for `sub`, valid for ten minutes.
pub fn claims(sub: &str) -> Value {
    json!({ "sub": sub, "exp": now() + 600 })
}

/// `base` with `extra`'s fields added (or replaced).
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

/// A token signed with `alg` and `key`.
pub fn mint(alg: Algorithm, key: &EncodingKey, claims: &Value) -> String {
    encode(&Header::new(alg), claims, key).unwrap()
}

/// An HS256 token signed with `secret`.
pub fn mint_hs(secret: &[u8], claims: &Value) -> String {
    mint(Algorithm::HS256, &EncodingKey::from_secret(secret), claims)
}

/// A `Hello` that joins as a new player named `name`, with a player token.
pub fn hello_with_token(name: &str, token: &str) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        room: String::new(),
        resume: None,
        auth_token: Some(token.into()),
    })
}

/// A `Hello` that resumes the session of `session`, with a player token.
pub fn resume_with_token(name: &str, session: SessionToken, token: &str) -> ClientMsg {
    ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: name.into(),
        room: String::new(),
        resume: Some(session),
        auth_token: Some(token.into()),
    })
}

/// Connects to `url`, sends `hello` and returns the connection and its `Welcome`.
pub async fn welcomed(url: &str, hello: &ClientMsg) -> (Ws, Welcome) {
    let mut ws = connect(url).await;
    send(&mut ws, hello).await;
    let welcome = recv_welcome(&mut ws).await;
    (ws, welcome)
}

/// Connects to `url`, sends `hello`, and returns the close code and reason it gets.
pub async fn closed_after(url: &str, hello: &ClientMsg) -> (u16, String) {
    let mut ws = connect(url).await;
    send(&mut ws, hello).await;
    close_within(&mut ws).await
}

/// The code and reason of the close frame `ws` gets within [`WAIT`], whatever comes
/// before it: a connection that is welcomed and plays on instead fails the test in
/// bounded time rather than reading snapshots forever.
pub async fn close_within(ws: &mut Ws) -> (u16, String) {
    tokio::time::timeout(WAIT, expect_close(ws))
        .await
        .expect("no close frame in time")
}

/// The `player_names` of `GET /rooms/{room}`, or `None` if there is no such room.
pub async fn room_names(addr: SocketAddr, room: &str) -> Option<Vec<String>> {
    let (status, body) = http_json(addr, "GET", &format!("/rooms/{room}"), "").await;
    match status {
        404 => None,
        200 => Some(
            body["player_names"]
                .as_array()
                .unwrap_or_else(|| panic!("no player_names in {body}"))
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect(),
        ),
        other => panic!("GET /rooms/{room}: {other} {body}"),
    }
}

/// `POST /matchmake` with `Authorization: Bearer <bearer>` when given: the status, the
/// `WWW-Authenticate` header if any, and the JSON body.
pub async fn matchmake(addr: SocketAddr, bearer: Option<&str>) -> (u16, Option<String>, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST /matchmake HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: 0\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .unwrap()
        .unwrap();
    let head = String::from_utf8_lossy(&raw).to_string();
    let www = head
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("www-authenticate")
                .then(|| value.trim().to_owned())
        });
    let (status, body) = parse_response(&raw);
    (status, www, serde_json::from_str(&body).unwrap())
}

/// A [`super::Watcher`] that joined with a player token.
pub async fn token_watcher(url: &str, token: &str) -> super::Watcher {
    let (ws, _) = welcomed(url, &hello_with_token("watcher", token)).await;
    super::Watcher::watch(ws)
}
