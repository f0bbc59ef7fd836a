//! The JSON room API: list, inspect, create and delete rooms, and matchmake.
//!
//! Every answer is JSON, errors included (`{"error": "..."}` with a status that says
//! what went wrong: 400 bad options, 401 missing or wrong admin token, 404 no such
//! room, 405 wrong method, 408 body too slow, 413 body too large, 429 too many rooms or
//! requests, 503 draining). docs/HOSTING.md is the contract.
//!
//! Reading rooms is open to anyone; with `--admin-token-file`, creating and deleting
//! them needs the token. `POST /matchmake` and rooms created without the token are
//! limited per client address ([`super::per_ip`]).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{
    HeaderMap, HeaderValue, ALLOW, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::per_ip::{retry_after_secs, PerIp};
use crate::config::Config;
use crate::game::Games;
use crate::rooms::{JoinRefused, RoomOptions};
use crate::ServerCtx;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 4096;

/// Highest `tick_rate` `POST /rooms` accepts.
pub const MAX_ROOM_TICK_RATE: u64 = 240;

type Body = Full<Bytes>;

/// The bearer token that creating and deleting rooms needs (`--admin-token-file`).
pub struct AdminToken(Vec<u8>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never in a log.
        f.write_str("AdminToken(..)")
    }
}

impl AdminToken {
    /// The token in `path`: its text without trailing whitespace (the newline an editor
    /// or `echo` adds).
    ///
    /// # Errors
    /// If the file cannot be read, or holds nothing but whitespace: an empty token
    /// would let every request through, so the server refuses to start instead.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("--admin-token-file {}: {e}", path.display()))?;
        Self::from_bytes(&text).ok_or_else(|| {
            anyhow::anyhow!("--admin-token-file {}: the file is empty", path.display())
        })
    }

    /// The token of a file's contents, trailing whitespace trimmed; `None` if empty.
    fn from_bytes(text: &[u8]) -> Option<Self> {
        let end = text
            .iter()
            .rposition(|b| !b.is_ascii_whitespace())
            .map_or(0, |i| i + 1);
        (end > 0).then(|| Self(text[..end].to_vec()))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`. The comparison
    /// takes the same time wherever the first differing byte is, so response times do
    /// not tell a guesser how much of a token was right (only its length may show).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        let Some(token) = value
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
            .map(|_| &value[7..])
        else {
            return false;
        };
        bool::from(token.ct_eq(&self.0))
    }
}

/// A JSON 404, for paths a listener does not serve.
pub fn not_found(message: &str) -> Response<Body> {
    json(
        StatusCode::NOT_FOUND,
        &ErrorBody {
            error: message.to_owned(),
        },
    )
}

/// Handles one API request from `client` (its address as [`super::client_ip`] finds it).
pub async fn handle(
    req: Request<Incoming>,
    client: IpAddr,
    ctx: &Arc<ServerCtx>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let writes = matches!(
        (&method, path.as_str()),
        (&Method::POST, "/rooms") | (&Method::DELETE, _)
    );
    let admin = ctx
        .admin_token
        .as_ref()
        .map(|token| token.admits(req.headers()));
    let result = match (method, path.as_str()) {
        _ if writes && admin == Some(false) => {
            ctx.metrics.count_limited("admin_token");
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "this needs the admin token: Authorization: Bearer TOKEN",
            ))
        }
        (Method::GET, "/rooms") => Ok(list(ctx).await),
        (Method::POST, "/rooms") => create(req, client, admin == Some(true), ctx).await,
        (Method::POST, "/matchmake") => matchmake(req, client, ctx).await,
        (Method::GET, p) if p.starts_with("/rooms/") => room(ctx, &p["/rooms/".len()..]),
        (Method::DELETE, p) if p.starts_with("/rooms/") => delete(ctx, &p["/rooms/".len()..]),
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path",
        )),
    };
    let mut response = result.unwrap_or_else(ApiError::into_response);
    if response.status() == StatusCode::METHOD_NOT_ALLOWED {
        // RFC 9110 section 15.5.6: a 405 lists the methods the resource supports.
        let allow = match path.as_str() {
            "/rooms" => "GET, POST",
            "/matchmake" => "POST",
            _ => "GET, DELETE",
        };
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

/// An API failure: the status and the message of the JSON error body, and when a
/// retry may succeed (rate limits).
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    fn into_response(self) -> Response<Body> {
        let mut r = json(
            self.status,
            &ErrorBody {
                error: self.message,
            },
        );
        if let Some(secs) = self.retry_after {
            r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110 section 11.6.1: a 401 names the scheme that would work.
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// One token of `limit` for `client`, or a 429 that says when to retry, counted in
/// `/metrics` under `reason`.
fn take(
    limit: &PerIp,
    client: IpAddr,
    (what, reason): (&str, &'static str),
    ctx: &ServerCtx,
) -> Result<(), ApiError> {
    limit.try_take(client, Instant::now()).map_err(|wait| {
        ctx.metrics.count_limited(reason);
        let secs = retry_after_secs(wait);
        ApiError {
            retry_after: Some(secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many {what} from your address; retry in {secs} s"),
            )
        }
    })
}

/// Takes one room creation from `client`'s budget (`--room-creates-per-ip-per-min`):
/// every way the API opens a room on someone's behalf is counted the same.
fn take_room_create(client: IpAddr, ctx: &ServerCtx) -> Result<(), ApiError> {
    take(
        &ctx.room_create_limit,
        client,
        ("rooms created", "room_creates_per_ip"),
        ctx,
    )
}

impl From<JoinRefused> for ApiError {
    fn from(e: JoinRefused) -> Self {
        let status = match e {
            JoinRefused::TooManyRooms => StatusCode::TOO_MANY_REQUESTS,
            JoinRefused::Full => StatusCode::CONFLICT,
            JoinRefused::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            JoinRefused::UnknownSession | JoinRefused::NoSuchRoom => StatusCode::NOT_FOUND,
            JoinRefused::UnknownGame(_) => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.to_string())
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body =
        serde_json::to_vec(value).unwrap_or_else(|_| b"{\"error\":\"encoding failed\"}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// Reads the whole body, at most [`MAX_BODY_BYTES`], within `--handshake-timeout`: a
/// client that announces a body and then sends it slowly (or never) would otherwise
/// hold its connection, and its permit, for as long as it likes.
async fn body(req: Request<Incoming>, ctx: &ServerCtx) -> Result<Bytes, ApiError> {
    let limit = ctx.config.handshake_timeout;
    let collect = Limited::new(req.into_body(), MAX_BODY_BYTES).collect();
    match tokio::time::timeout(limit, collect).await {
        Err(_) => {
            ctx.metrics.count_limited("body_timeout");
            Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request body did not arrive within {} (handshake-timeout)",
                    humantime::format_duration(limit)
                ),
            ))
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_BODY_BYTES} bytes"),
        )),
        Ok(Err(e)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("cannot read body: {e}"),
        )),
    }
}

/// The options `POST /rooms` accepts; anything else is refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRequest {
    game: Option<String>,
    max_players: Option<usize>,
    tick_rate: Option<u16>,
    npcs: Option<u32>,
    private: Option<bool>,
    view_radius: Option<f32>,
}

impl CreateRequest {
    /// The room's options: each field given, checked against its bounds, or the
    /// server's default. Only what the request sets is checked: the operator's own
    /// flags (say `--tick-rate 300`) are not the caller's error. The bounds on NPCs and
    /// players are the operator's (`--max-room-npcs`, `--max-room-players`): they bound
    /// the CPU and memory one request can commit the server to.
    fn options(
        self,
        games: &Games,
        defaults: RoomOptions,
        config: &Config,
    ) -> Result<RoomOptions, ApiError> {
        let bad = |what: String| ApiError::new(StatusCode::BAD_REQUEST, what);
        let in_range = |name: &str, value: Option<u64>, lo: u64, hi: u64| match value {
            Some(v) if !(lo..=hi).contains(&v) => Err(bad(format!("{name} must be {lo} to {hi}"))),
            _ => Ok(()),
        };
        let max_players = config.max_room_players;
        in_range(
            "max_players",
            self.max_players.map(|v| v as u64),
            1,
            max_players,
        )?;
        in_range(
            "tick_rate",
            self.tick_rate.map(u64::from),
            1,
            MAX_ROOM_TICK_RATE,
        )?;
        let max_npcs = u64::from(config.max_room_npcs);
        in_range("npcs", self.npcs.map(u64::from), 0, max_npcs)?;
        if let Some(r) = self.view_radius {
            if !(r.is_finite() && (0.0..=1e6).contains(&r)) {
                return Err(bad("view_radius must be 0 to 1000000".into()));
            }
        }
        if let Some(game) = &self.game {
            if !games.contains(game) {
                return Err(bad(games.unknown(game).to_string()));
            }
        }
        Ok(RoomOptions {
            game: self.game.unwrap_or(defaults.game),
            max_players: self.max_players.unwrap_or(defaults.max_players),
            tick_rate: self.tick_rate.unwrap_or(defaults.tick_rate),
            npcs: self.npcs.unwrap_or(defaults.npcs),
            private: self.private.unwrap_or(false),
            view_radius: self.view_radius.unwrap_or(defaults.view_radius),
        })
    }
}

async fn create(
    req: Request<Incoming>,
    client: IpAddr,
    admin: bool,
    ctx: &Arc<ServerCtx>,
) -> Result<Response<Body>, ApiError> {
    let bytes = body(req, ctx).await?;
    let request: CreateRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("bad options: {e}")))?
    };
    let defaults = RoomOptions::defaults(&ctx.config);
    let options = request.options(ctx.rooms.games(), defaults, &ctx.config)?;
    if !admin {
        // Without the admin token, a created room is on the caller's room budget.
        take_room_create(client, ctx)?;
    }
    let room = ctx.rooms.create(options)?;
    Ok(json(StatusCode::CREATED, &room.info()))
}

fn room(ctx: &ServerCtx, id: &str) -> Result<Response<Body>, ApiError> {
    let room = ctx
        .rooms
        .get(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no room {id:?}")))?;
    Ok(json(StatusCode::OK, &room.info()))
}

fn delete(ctx: &ServerCtx, id: &str) -> Result<Response<Body>, ApiError> {
    if !ctx.rooms.delete(id) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no room {id:?}"),
        ));
    }
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

#[derive(Serialize)]
struct Matchmade {
    room: String,
    ticket: String,
    expires_in_ms: u128,
    /// Where to connect: `/ws?room=R&ticket=T` on a single node; with `--redis`, the
    /// owning node's public URL in front of it.
    url: String,
    /// With `--redis`: the owning node's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
}

/// A room of `GET /rooms` with `--redis`: this node's rooms as without it, plus where
/// they are; other nodes' rooms as the directory has them.
#[derive(Serialize)]
#[serde(untagged)]
enum Listed {
    Here {
        #[serde(flatten)]
        info: crate::rooms::RoomInfo,
        node: String,
        url: String,
        reserved: u32,
    },
    Elsewhere(crate::cluster::RoomRecord),
}

/// `GET /rooms`: this node's public rooms; with `--redis`, those of every live node,
/// by node then id, each with `node`, `url` and the seats `reserved` by matchmaking.
/// While Redis is unreachable, only this node's rooms (they are the ones it knows).
async fn list(ctx: &ServerCtx) -> Response<Body> {
    let local = ctx.rooms.list_public();
    let Some(node) = &ctx.cluster else {
        return json(StatusCode::OK, &local);
    };
    let directory = node.directory();
    let me = directory.node_id();
    let records = directory.list_public().await.unwrap_or_default();
    let reserved = |id: &str| {
        records
            .iter()
            .find(|r| r.node == me && r.id == id)
            .map_or(0, |r| r.reserved)
    };
    let mut listed: Vec<(String, String, Listed)> = local
        .into_iter()
        .map(|info| {
            let key = (me.to_owned(), info.id.clone());
            let reserved = reserved(&info.id);
            let here = Listed::Here {
                info,
                node: me.to_owned(),
                url: directory.public_url().to_owned(),
                reserved,
            };
            (key.0, key.1, here)
        })
        .collect();
    for record in records.iter().filter(|r| r.node != me) {
        listed.push((
            record.node.clone(),
            record.id.clone(),
            Listed::Elsewhere(record.clone()),
        ));
    }
    listed.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let rooms: Vec<Listed> = listed.into_iter().map(|(_, _, l)| l).collect();
    json(StatusCode::OK, &rooms)
}

/// `POST /cluster/rooms` (`--redis`, node to node): another node placed a new room
/// here; this node creates it with its default options, publishes it, and answers 201
/// `{"room": ID}`. Needs a placement token signed with the cluster secret
/// ([`crate::cluster::Node::placement_token`]), else 401.
pub async fn place(req: Request<Incoming>, ctx: &ServerCtx) -> Response<Body> {
    let result = async {
        if req.method() != Method::POST {
            let mut r = ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "use POST").into_response();
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return Ok(r);
        }
        let node = ctx.cluster.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "this node is not in a cluster (--redis)",
            )
        })?;
        let token = bearer(req.headers()).ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "this needs a placement token")
        })?;
        node.check_placement(token)
            .map_err(|why| ApiError::new(StatusCode::UNAUTHORIZED, why))?;
        let room = create_here(ctx, node).await?;
        #[derive(Serialize)]
        struct Created {
            room: String,
        }
        Ok(json(StatusCode::CREATED, &Created { room }))
    };
    result.await.unwrap_or_else(ApiError::into_response)
}

/// Opens a room with the default options on this node and publishes it: when this
/// returns, the directory has it (or Redis is unreachable, and the reserve that follows
/// says so).
async fn create_here(ctx: &ServerCtx, node: &crate::cluster::Node) -> Result<String, ApiError> {
    let room = ctx.rooms.create(RoomOptions::defaults(&ctx.config))?;
    node.flush().await;
    Ok(room.name().to_owned())
}

/// The answer for a seat reserved in the directory.
fn matchmade(r: crate::cluster::Reservation, ctx: &ServerCtx) -> Response<Body> {
    let url = format!(
        "{}/ws?room={}&ticket={}",
        r.url.trim_end_matches('/'),
        r.room,
        r.ticket
    );
    json(
        StatusCode::OK,
        &Matchmade {
            room: r.room,
            ticket: r.ticket,
            expires_in_ms: ctx.tickets.ttl().as_millis(),
            url,
            node: Some(r.node),
        },
    )
}

/// Matchmaking across the cluster (`--redis`): the fullest public room with a free
/// seat on any live node; else a new room on the least-loaded node (this one creates it
/// itself, another one is asked to with `POST /cluster/rooms`), and its first seat. One
/// request at a time per node ([`crate::cluster::Node::matchmaking`]). `Ok(None)`: Redis
/// is unreachable, and the caller matchmakes among this node's rooms instead.
async fn cluster_matchmake(
    node: &crate::cluster::Node,
    client: IpAddr,
    ctx: &ServerCtx,
) -> Result<Option<Response<Body>>, ApiError> {
    use crate::cluster::DirectoryError;
    let failed = |e: DirectoryError| match e {
        DirectoryError::Unavailable(_) | DirectoryError::NotRegistered => Ok(None),
        other => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            other.to_string(),
        )),
    };
    if ctx.draining.is_cancelled() {
        return Err(JoinRefused::ShuttingDown.into());
    }
    let _turn = node.matchmaking.lock().await;
    let directory = node.directory();
    // A room placed here can fill with other nodes' players before this request
    // reserves in it: then the search starts again (a few times: each round either
    // finds a seat or opens a room).
    for _ in 0..PLACEMENT_ROUNDS {
        match directory.reserve_seat().await {
            Ok(Some(r)) => return Ok(Some(matchmade(r, ctx))),
            Ok(None) => {}
            Err(e) => return failed(e),
        }
        // The matchmaker will open a room for this player: on its room budget.
        take_room_create(client, ctx)?;
        let placement = match directory.place_new_room().await {
            Ok(Some(p)) => p,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "no node of the cluster has room for a new room",
                ))
            }
            Err(e) => return failed(e),
        };
        let mut owner = placement.node;
        let room = if owner == directory.node_id() {
            create_here(ctx, node).await?
        } else {
            let asked = match node.placement_token(&owner) {
                Ok(token) => node.ask_to_create(&placement.url, &token).await,
                Err(e) => Err(e),
            };
            match asked {
                Ok(room) => room,
                Err(why) => {
                    // The player still gets a seat: in a room of this node.
                    tracing::warn!(node = %owner, error = %why, "placement on another node failed; opening the room here");
                    owner = directory.node_id().to_owned();
                    create_here(ctx, node).await?
                }
            }
        };
        match directory.reserve_seat_in(&owner, &room).await {
            Ok(Some(r)) => return Ok(Some(matchmade(r, ctx))),
            Ok(None) => {}
            Err(e) => return failed(e),
        }
    }
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "every room opened for this request filled before its seat was reserved; retry",
    ))
}

/// Rounds of reserve, place, reserve one cluster matchmaking request makes at most.
const PLACEMENT_ROUNDS: usize = 3;

async fn matchmake(
    req: Request<Incoming>,
    client: IpAddr,
    ctx: &Arc<ServerCtx>,
) -> Result<Response<Body>, ApiError> {
    take(
        &ctx.matchmake_limit,
        client,
        ("matchmaking requests", "matchmake_per_ip"),
        ctx,
    )?;
    // After the rate limit, so a flood of bad tokens costs no more than one of requests.
    if let Some(verifier) = &ctx.auth {
        player_token(verifier, req.headers())?;
    }
    // The body is optional and not used yet, but still bounded.
    body(req, ctx).await?;
    if let Some(node) = &ctx.cluster {
        if let Some(answer) = cluster_matchmake(node, client, ctx).await? {
            return Ok(answer);
        }
    }
    if !has_public_seat(ctx) {
        // The matchmaker will open a room for this player: on its room budget.
        take_room_create(client, ctx)?;
    }
    let seat = ctx.rooms.matchmake()?;
    let room = seat.room().name().to_owned();
    let ticket = ctx.tickets.issue(seat, Instant::now());
    // With --redis but Redis unreachable: a seat on this node, at its public URL.
    let here = ctx.cluster.as_ref().map(|node| node.directory());
    let url = format!(
        "{}/ws?room={room}&ticket={ticket}",
        here.map_or("", |d| d.public_url().trim_end_matches('/'))
    );
    Ok(json(
        StatusCode::OK,
        &Matchmade {
            room,
            ticket,
            expires_in_ms: ctx.tickets.ttl().as_millis(),
            url,
            node: here.map(|d| d.node_id().to_owned()),
        },
    ))
}

/// The token of `Authorization: Bearer TOKEN`, if there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .map(HeaderValue::as_bytes)
        .and_then(|value| {
            value
                .get(..7)
                .filter(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
                .map(|_| &value[7..])
        })
        .and_then(|token| std::str::from_utf8(token).ok())
}

/// With player authentication on, `POST /matchmake` needs the player's token as
/// `Authorization: Bearer TOKEN`, verified as a `Hello`'s is: else 401. A token with a
/// `room` claim is refused with 403: it may join only that room, while matchmaking
/// chooses the room, so the seat it would reserve could never be used (a backend that
/// places players in rooms itself sends them to `/ws?room=` directly).
fn player_token(verifier: &crate::auth::Verifier, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |message: String| ApiError::new(StatusCode::UNAUTHORIZED, message);
    let token = bearer(headers).ok_or_else(|| {
        unauthorized("this needs a player token: Authorization: Bearer TOKEN".to_owned())
    })?;
    match verifier.verify_token(token) {
        Ok((_, None)) => Ok(()),
        Ok((_, Some(room))) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("this player token is for room {room:?} only: join it at /ws?room={room}"),
        )),
        Err(e) => Err(unauthorized(match e {
            crate::auth::AuthError::Invalid(_) => "player token invalid".to_owned(),
            other => other.to_string(),
        })),
    }
}

/// Whether a public room has a free seat now, so that matchmaking would not open one.
/// Read before the matchmaker takes the registry's lock, so a seat may go meanwhile; the
/// cost of that race is one room created without a token taken, never one refused.
fn has_public_seat(ctx: &ServerCtx) -> bool {
    ctx.rooms
        .list_public()
        .iter()
        .filter_map(|info| ctx.rooms.get(&info.id))
        .any(|room| room.has_space())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_bytes(auth).unwrap());
        h
    }

    #[test]
    fn admin_token_file_is_trimmed_and_never_empty() {
        let token = AdminToken::from_bytes(b"s3cret\r\n").unwrap();
        assert_eq!(token.0, b"s3cret");
        assert!(AdminToken::from_bytes(b"").is_none());
        assert!(AdminToken::from_bytes(b"\n \n").is_none());
        assert_eq!(format!("{token:?}"), "AdminToken(..)");
    }

    #[test]
    fn only_the_exact_bearer_token_is_admitted() {
        let token = AdminToken::from_bytes(b"s3cret").unwrap();
        assert!(token.admits(&headers(b"Bearer s3cret")));
        assert!(token.admits(&headers(b"bearer s3cret")));
        for wrong in [
            &b"Bearer s3cre"[..],
            b"Bearer s3cret2",
            b"Bearer S3CRET",
            b"Basic s3cret",
            b"s3cret",
            b"Bearer",
            b"Bearer ",
        ] {
            assert!(!token.admits(&headers(wrong)), "{wrong:?}");
        }
        assert!(!token.admits(&HeaderMap::new()));
    }
}
