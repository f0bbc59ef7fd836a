//! The JSON room API: list, inspect, create and delete rooms, and matchmake.
//!
//! Every answer is JSON, errors included (`{"error": "..."}` with a status that says
//! what went wrong: 400 bad options, 404 no such room, 405 wrong method, 413 body too
//! large, 429 too many rooms, 503 draining). docs/HOSTING.md is the contract.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::game::Games;
use crate::rooms::{JoinRefused, RoomOptions};
use crate::ServerCtx;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 4096;

type Body = Full<Bytes>;

/// Handles one API request.
pub async fn handle(req: Request<Incoming>, ctx: &Arc<ServerCtx>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let result = match (method, path.as_str()) {
        (Method::GET, "/rooms") => Ok(json(StatusCode::OK, &ctx.rooms.list_public())),
        (Method::POST, "/rooms") => create(req, ctx).await,
        (Method::POST, "/matchmake") => matchmake(req, ctx).await,
        (Method::GET, p) if p.starts_with("/rooms/") => room(ctx, &p["/rooms/".len()..]),
        (Method::DELETE, p) if p.starts_with("/rooms/") => delete(ctx, &p["/rooms/".len()..]),
        _ => Err(ApiError(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this path".into(),
        )),
    };
    let mut response = result
        .unwrap_or_else(|ApiError(status, message)| json(status, &ErrorBody { error: message }));
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

/// An API failure: the status and the message of the JSON error body.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl From<JoinRefused> for ApiError {
    fn from(e: JoinRefused) -> Self {
        let status = match e {
            JoinRefused::TooManyRooms => StatusCode::TOO_MANY_REQUESTS,
            JoinRefused::Full => StatusCode::CONFLICT,
            JoinRefused::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            JoinRefused::UnknownSession | JoinRefused::NoSuchRoom => StatusCode::NOT_FOUND,
            JoinRefused::UnknownGame(_) => StatusCode::BAD_REQUEST,
        };
        Self(status, e.to_string())
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

/// Reads the whole body, at most [`MAX_BODY_BYTES`].
async fn body(req: Request<Incoming>) -> Result<Bytes, ApiError> {
    match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_BODY_BYTES} bytes"),
        )),
        Err(e) => Err(ApiError(
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
    /// flags (say `--tick-rate 300`) are not the caller's error.
    fn options(self, games: &Games, defaults: RoomOptions) -> Result<RoomOptions, ApiError> {
        let bad = |what: String| ApiError(StatusCode::BAD_REQUEST, what);
        let in_range = |name: &str, value: Option<u64>, lo: u64, hi: u64| match value {
            Some(v) if !(lo..=hi).contains(&v) => Err(bad(format!("{name} must be {lo} to {hi}"))),
            _ => Ok(()),
        };
        in_range("max_players", self.max_players.map(|v| v as u64), 1, 10_000)?;
        in_range("tick_rate", self.tick_rate.map(u64::from), 1, 240)?;
        in_range("npcs", self.npcs.map(u64::from), 0, 100_000)?;
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

async fn create(req: Request<Incoming>, ctx: &Arc<ServerCtx>) -> Result<Response<Body>, ApiError> {
    let bytes = body(req).await?;
    let request: CreateRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        CreateRequest::default()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("bad options: {e}")))?
    };
    let options = request.options(ctx.rooms.games(), RoomOptions::defaults(&ctx.config))?;
    let room = ctx.rooms.create(options)?;
    Ok(json(StatusCode::CREATED, &room.info()))
}

fn room(ctx: &ServerCtx, id: &str) -> Result<Response<Body>, ApiError> {
    let room = ctx
        .rooms
        .get(id)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no room {id:?}")))?;
    Ok(json(StatusCode::OK, &room.info()))
}

fn delete(ctx: &ServerCtx, id: &str) -> Result<Response<Body>, ApiError> {
    if !ctx.rooms.delete(id) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no room {id:?}")));
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
    url: String,
}

async fn matchmake(
    req: Request<Incoming>,
    ctx: &Arc<ServerCtx>,
) -> Result<Response<Body>, ApiError> {
    // The body is optional and not used yet, but still bounded.
    body(req).await?;
    let seat = ctx.rooms.matchmake()?;
    let room = seat.room().name().to_owned();
    let ticket = ctx.tickets.issue(seat, Instant::now());
    let url = format!("/ws?room={room}&ticket={ticket}");
    Ok(json(
        StatusCode::OK,
        &Matchmade {
            room,
            ticket,
            expires_in_ms: ctx.tickets.ttl().as_millis(),
            url,
        },
    ))
}
