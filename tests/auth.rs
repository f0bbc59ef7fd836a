//! Player authentication over real sockets (docs/PROTOCOL.md section 3, *Player
//! authentication*; close codes 4010-4014): every refused token closes with its code and
//! creates no room and no player; a good token's `name` claim is the name the server
//! uses; one identity holds one seat per room (a second connection takes it over, the
//! first gets 4014); a resume must come from the same `sub`; `POST /matchmake` needs the
//! token; and a server without authentication ignores a token.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use common::auth::*;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use tickcast::shared::{DisconnectReason, ServerMsg};

const ISSUER: &str = "https://backend.test";
const AUDIENCE: &str = "tickcast-test";

/// A server that requires HS256 tokens with [`SECRET`], issued by [`ISSUER`] for
/// [`AUDIENCE`], with the default 10 s leeway; `key` must outlive it.
async fn hs256_server(key: &KeyFile) -> TestServer {
    let mut c = config();
    c.tick_rate = 20;
    c.auth_jwt_secret_file = Some(key.0.clone());
    c.auth_jwt_issuer = Some(ISSUER.into());
    c.auth_jwt_audience = Some(AUDIENCE.into());
    start(c).await
}

/// Good claims for `sub` on [`hs256_server`].
fn good(sub: &str) -> serde_json::Value {
    with(claims(sub), json!({ "iss": ISSUER, "aud": AUDIENCE }))
}

fn token(sub: &str) -> String {
    mint_hs(SECRET, &good(sub))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_close_with_their_code_and_create_no_room_or_player() {
    let key = KeyFile::new(SECRET);
    let server = hs256_server(&key).await;
    let addr = server.addr;
    let mut watcher = token_watcher(&server.ws_url("arena"), &token("watcher")).await;
    watcher.advances(1).await;

    let other_key = mint_hs(b"another secret that is long enough!!", &good("p"));
    let hs512 = mint(
        Algorithm::HS512,
        &EncodingKey::from_secret(SECRET),
        &good("p"),
    );
    // alg "none": the base64url of {"alg":"none","typ":"JWT"}, real claims, no signature.
    let real = token("p");
    let none = format!(
        "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
        real.split('.').nth(1).unwrap()
    );
    let expired = mint_hs(SECRET, &with(good("p"), json!({ "exp": now() - 60 })));
    let other_room = mint_hs(SECRET, &with(good("p"), json!({ "room": "elsewhere" })));
    let bad_iss = mint_hs(
        SECRET,
        &with(good("p"), json!({ "iss": "https://evil.test" })),
    );
    let bad_aud = mint_hs(SECRET, &with(good("p"), json!({ "aud": "another-game" })));
    let mut no_sub = good("p");
    no_sub.as_object_mut().unwrap().remove("sub");
    let no_sub = mint_hs(SECRET, &no_sub);
    let mut no_exp = good("p");
    no_exp.as_object_mut().unwrap().remove("exp");
    let no_exp = mint_hs(SECRET, &no_exp);
    let too_long = format!("{real}{}", "a".repeat(2048));

    let hello = |t: &str| hello_with_token("mallory", t);
    let cases = [
        (
            "no token",
            hello_msg("mallory"),
            DisconnectReason::AuthRequired,
        ),
        ("garbage", hello("garbage"), DisconnectReason::AuthInvalid),
        (
            "wrong key",
            hello(&other_key),
            DisconnectReason::AuthInvalid,
        ),
        ("alg none", hello(&none), DisconnectReason::AuthInvalid),
        ("HS512", hello(&hs512), DisconnectReason::AuthInvalid),
        ("expired", hello(&expired), DisconnectReason::AuthExpired),
        (
            "other room",
            hello(&other_room),
            DisconnectReason::AuthWrongRoom,
        ),
        ("wrong iss", hello(&bad_iss), DisconnectReason::AuthInvalid),
        ("wrong aud", hello(&bad_aud), DisconnectReason::AuthInvalid),
        ("no sub", hello(&no_sub), DisconnectReason::AuthInvalid),
        ("no exp", hello(&no_exp), DisconnectReason::AuthInvalid),
        ("too long", hello(&too_long), DisconnectReason::AuthInvalid),
    ];
    for (i, (case, msg, want)) in cases.iter().enumerate() {
        // Into a room that does not exist: it still does not afterwards.
        let fresh = format!("ghost-{i}");
        let got = closed_after(&server.ws_url(&fresh), msg).await;
        assert_eq!(got, close_of(*want), "{case}");
        assert_eq!(
            room_players(addr, &fresh).await,
            None,
            "{case}: a room was made"
        );
        // Into the watcher's room: no player is added.
        let got = closed_after(&server.ws_url("arena"), msg).await;
        assert_eq!(got, close_of(*want), "{case} (arena)");
        assert_eq!(
            room_names(addr, "arena").await.unwrap(),
            ["watcher"],
            "{case}"
        );
        watcher.advances(1).await;
    }

    // The room played on throughout: every tick the watcher missed is one the server
    // accounts for (catch-up after a late wake-up, or a snapshot replaced in its slot).
    watcher.advances(5).await;
    let upto = watcher.latest();
    let allowed = left_out(addr, "arena").await;
    let ticks = watcher.finish().await;
    let missing = missing_before(&ticks, upto);
    assert!(
        missing <= allowed.catch_up + allowed.skipped,
        "the watcher missed {missing} ticks; the server accounts for {allowed:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_tokens_join_under_the_name_claim() {
    let key = KeyFile::new(SECRET);
    let server = hs256_server(&key).await;
    let url = server.ws_url("hall");

    // Expired, but within the 10 s leeway.
    let late = mint_hs(SECRET, &with(good("late"), json!({ "exp": now() - 3 })));
    let (_late, _) = welcomed(&url, &hello_with_token("late", &late)).await;
    // A room claim for this very room.
    let here = mint_hs(SECRET, &with(good("here"), json!({ "room": "hall" })));
    let (_here, _) = welcomed(&url, &hello_with_token("here", &here)).await;
    // The name claim replaces Hello.name.
    let named = mint_hs(
        SECRET,
        &with(good("ada-1"), json!({ "name": "Ada Lovelace" })),
    );
    let (mut ada, _) = welcomed(&url, &hello_with_token("not-ada", &named)).await;
    assert!(matches!(recv(&mut ada).await, ServerMsg::Snapshot(_)));
    assert_eq!(
        room_names(server.addr, "hall").await.unwrap(),
        ["late", "here", "Ada Lovelace"]
    );
    server.stop().await.unwrap();
}

/// Reads `ws` until the server has closed the socket.
async fn until_end(ws: &mut Ws) {
    use futures_util::StreamExt;
    tokio::time::timeout(WAIT, async { while let Some(Ok(_)) = ws.next().await {} })
        .await
        .expect("the server kept the socket open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_connection_of_the_same_sub_takes_the_seat_over() {
    let key = KeyFile::new(SECRET);
    let mut c = config();
    c.auth_jwt_secret_file = Some(key.0.clone());
    c.max_players = 2;
    let server = start(c).await;
    let addr = server.addr;
    let url = server.ws_url("seat");
    let good = |sub: &str| mint_hs(SECRET, &claims(sub));
    let (mut first, w1) = welcomed(&url, &hello_with_token("tab-1", &good("s-1"))).await;
    let (_other, _) = welcomed(&url, &hello_with_token("bob", &good("s-2"))).await;
    assert!(matches!(recv(&mut first).await, ServerMsg::Snapshot(_)));

    // The room is full, with this player's own seat: the resume hint lets the upgrade
    // through, and the Hello takes the seat over.
    assert_eq!(refused(&url).await, 409);
    let hinted = format!("{url}&resume=1");
    let (mut second, w2) = welcomed(&hinted, &hello_with_token("tab-2", &good("s-1"))).await;
    assert_eq!(
        (w2.player_id, w2.entity_id, w2.session_token),
        (w1.player_id, w1.entity_id, w1.session_token)
    );
    // As a resume: the new connection starts with a keyframe.
    let first_snapshot = recv_snapshot(&mut second).await;
    assert_eq!(first_snapshot.base_tick, 0, "a keyframe");
    assert_eq!(
        close_within(&mut first).await,
        close_of(DisconnectReason::Replaced)
    );
    // The server closes the old socket only after it told the room the old connection
    // left; a (refused) resume queued behind that leave shows the room handled it, and
    // the leave did not remove the player the new connection now holds.
    until_end(&mut first).await;
    let unknown = resume_with_token("cy", [0xee; 16], &good("s-3"));
    assert_eq!(
        closed_after(&hinted, &unknown).await,
        close_of(DisconnectReason::SessionExpired)
    );
    assert_eq!(
        room_names(addr, "seat").await.unwrap(),
        ["tab-2", "bob"],
        "one seat per identity"
    );
    let from = recv_snapshot(&mut second).await.tick;
    while recv_snapshot(&mut second).await.tick < from + 3 {}
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_must_come_from_the_same_sub() {
    let key = KeyFile::new(SECRET);
    let server = hs256_server(&key).await;
    let addr = server.addr;
    let url = server.ws_url("back");
    let (first, w) = welcomed(&url, &hello_with_token("ada", &token("s-1"))).await;
    // Dropped without a close frame: the seat waits for a resume.
    drop(first);

    let session = w.session_token;
    let expired = close_of(DisconnectReason::SessionExpired);
    let stranger = resume_with_token("eve", session, &token("s-2"));
    assert_eq!(closed_after(&url, &stranger).await, expired);
    assert_eq!(
        closed_after(&url, &resume_msg("eve", session)).await,
        close_of(DisconnectReason::AuthRequired)
    );
    let (mut back, w2) = welcomed(&url, &resume_with_token("ada", session, &token("s-1"))).await;
    assert_eq!((w2.player_id, w2.entity_id), (w.player_id, w.entity_id));
    assert_eq!(recv_snapshot(&mut back).await.base_tick, 0, "a keyframe");
    assert_eq!(room_names(addr, "back").await.unwrap(), ["ada"]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_es256_public_key_verifies_its_tokens_only() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let public = KeyFile::new(pair.public_key_pem().as_bytes());
    let mut c = config();
    c.auth_jwt_public_key_file = Some(public.0.clone());
    let server = start(c).await;
    let url = server.ws_url("ec");
    let signer = EncodingKey::from_ec_pem(pair.serialize_pem().as_bytes()).unwrap();
    let good = mint(Algorithm::ES256, &signer, &claims("ec-1"));
    let (_ws, _) = welcomed(&url, &hello_with_token("ec", &good)).await;
    // HS256 keyed with the public key's own PEM: the algorithm-confusion trick.
    let confused = mint_hs(pair.public_key_pem().as_bytes(), &claims("ec-2"));
    assert_eq!(
        closed_after(&url, &hello_with_token("x", &confused)).await,
        close_of(DisconnectReason::AuthInvalid)
    );
    assert_eq!(room_names(server.addr, "ec").await.unwrap(), ["ec"]);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn matchmaking_needs_a_player_token() {
    let key = KeyFile::new(SECRET);
    let server = hs256_server(&key).await;
    let addr = server.addr;
    let no_iss = mint_hs(SECRET, &claims("no-iss"));
    for bearer in [None, Some("garbage"), Some(no_iss.as_str())] {
        let (status, www, body) = matchmake(addr, bearer).await;
        assert_eq!(
            (status, www.as_deref()),
            (401, Some("Bearer")),
            "{bearer:?}"
        );
        assert!(
            body["error"].as_str().unwrap().contains("player token"),
            "{body}"
        );
    }
    let scoped = mint_hs(SECRET, &with(good("p"), json!({ "room": "r1" })));
    let (status, www, body) = matchmake(addr, Some(&scoped)).await;
    assert_eq!((status, www), (403, None), "{body}");
    assert_eq!(
        body["error"],
        "this player token is for room \"r1\" only: join it at /ws?room=r1"
    );
    let (status, _, body) = matchmake(addr, Some(&token("m-1"))).await;
    assert_eq!(status, 200, "{body}");
    let url = format!("ws://{addr}{}", body["url"].as_str().unwrap());
    let (_ws, _) = welcomed(&url, &hello_with_token("m", &token("m-1"))).await;
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_a_token_is_ignored() {
    let server = start(config()).await;
    let (_ws, _) = welcomed(
        &server.ws_url("open"),
        &hello_with_token("ada", "not.a.token"),
    )
    .await;
    assert_eq!(room_names(server.addr, "open").await.unwrap(), ["ada"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_short_secret_stops_the_server_before_it_serves() {
    let key = KeyFile::new(b"short\n");
    let mut c = config();
    c.auth_jwt_secret_file = Some(key.0.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let err = tickcast::server::run(listener, c, Default::default())
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "--auth-jwt-secret-file {}: the secret is 5 bytes; HS256 needs at least 32 (256 bits)",
            key.0.display()
        )
    );
}
