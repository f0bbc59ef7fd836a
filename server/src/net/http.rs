//! HTTP/1.1 on each accepted TCP connection: routing, the upgrade to WebSocket, and the
//! handshake timeout.
//!
//! Every connection arrives here holding its admission permit ([`super::admission`]);
//! one turned away at accept gets [`refuse_at_accept`] instead. hyper enforces its
//! header-read timeout only when it is given a timer, so the builder gets one: a
//! connection that never finishes its request headers is closed after
//! `--handshake-timeout`. Upgrades are accepted only after the checks in
//! [`super::handshake`] and the capacity checks (rooms, room size, rooms created per
//! client address) pass; the 101 response echoes the subprotocol.
//!
//! With `--api-listen` the room API moves to its own listener: [`Listener::Api`] serves
//! only `/rooms*` and `/healthz`, and [`Listener::Main`] answers `/rooms*` with 404.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, RETRY_AFTER, SEC_WEBSOCKET_PROTOCOL};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tickcast_shared::SUBPROTOCOL;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::admission::{OpenWebSocket, Permit, Refused};
use super::handshake::{self, Refusal};
use super::tls::TlsConfig;
use super::{api, client_ip, connection, page, per_ip};
use crate::ServerCtx;

type Body = Full<Bytes>;

/// Which listener a connection came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `--listen`: players, the page, matchmaking, health and metrics (and the room API
    /// unless `--api-listen` is given).
    Main,
    /// `--api-listen`: the room API and `/healthz` only.
    Api,
}

/// One accepted connection: where it came from and the permit it holds.
#[derive(Debug, Clone)]
pub struct Conn {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The listener that accepted it.
    pub listener: Listener,
    /// Its admission permit, shared with the WebSocket task after an upgrade.
    pub permit: Arc<Permit>,
}

/// How long a refused connection is read from after the canned 503, so that closing it
/// with its request unread does not make the kernel reset it before the client has read
/// the answer.
const REFUSAL_LINGER: Duration = Duration::from_millis(500);

/// Turns away a connection over a cap at accept. On a plain port it gets a canned 503
/// naming the cap (its request is never parsed); on a TLS port it is just closed, since
/// anything written before the handshake would be garbage to a TLS client.
pub async fn refuse_at_accept(mut stream: TcpStream, refused: Refused, tls: bool) {
    if tls {
        return;
    }
    let write = async {
        stream.write_all(refused.canned_response()).await?;
        stream.shutdown().await?;
        // Read (and discard) what the client sends until it closes, briefly and bounded.
        let mut sink = [0u8; 1024];
        let mut left: usize = 16 * 1024;
        while left > 0 {
            match stream.read(&mut sink).await? {
                0 => break,
                n => left = left.saturating_sub(n),
            }
        }
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(REFUSAL_LINGER, write).await;
}

/// Completes the TLS handshake on one TCP connection, then serves HTTP on it as
/// [`serve`] does. The handshake must finish within `--handshake-timeout`; a failed or
/// stalled one (a plain-text client on a TLS port, an untrusted certificate, a port
/// scanner) is counted and the connection dropped, affecting no one else.
pub async fn serve_tls(tls: TlsConfig, stream: TcpStream, conn: Conn, ctx: Arc<ServerCtx>) {
    let peer = conn.peer;
    let accept = TlsAcceptor::from(tls).accept(stream);
    let handshake = tokio::time::timeout(ctx.config.handshake_timeout, accept);
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                ctx.metrics.tls_handshakes_failed.inc();
                debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                ctx.metrics.tls_handshakes_failed.inc();
                debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        () = ctx.shutdown.cancelled() => return,
    };
    serve(stream, conn, ctx).await;
}

/// Serves HTTP on one connection (plain TCP, or TLS after [`serve_tls`]) until it
/// closes, upgrades, or the server stops.
pub async fn serve<S>(stream: S, conn: Conn, ctx: Arc<ServerCtx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = conn.peer;
    let service = {
        let ctx = Arc::clone(&ctx);
        service_fn(move |req| route(req, conn.clone(), Arc::clone(&ctx)))
    };
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(ctx.config.handshake_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
        () = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(ctx.config.shutdown_grace, conn).await;
        }
    }
}

async fn route(
    req: Request<Incoming>,
    conn: Conn,
    ctx: Arc<ServerCtx>,
) -> Result<Response<Body>, Infallible> {
    let peer = conn.peer;
    let client = client_ip::client_ip(peer, req.headers(), &ctx.config.trusted_proxies);
    let path = req.uri().path().to_owned();
    let path = path.as_str();
    if conn.listener == Listener::Api {
        return Ok(match (req.method(), path) {
            (_, p) if is_room_api(p) => api::handle(req, client, &ctx).await,
            (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
            _ => api::not_found("the API listener serves only /rooms and /healthz"),
        });
    }
    if is_room_api(path) && ctx.api_elsewhere {
        return Ok(api::not_found(
            "the room API is served on its own listener (--api-listen)",
        ));
    }
    if is_room_api(path) || path == "/matchmake" {
        return Ok(api::handle(req, client, &ctx).await);
    }
    // Node to node (`--redis`): on the listener whose address is the public URL.
    if path == crate::cluster::node::PLACE_PATH {
        return Ok(api::place(req, &ctx).await);
    }
    // The playable page and its modules (GET only; other methods get 405 below).
    if let (&Method::GET, Some(asset)) = (req.method(), page::asset(req.uri().path())) {
        return Ok(asset.response());
    }
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => upgrade(req, &conn, &ctx).unwrap_or_else(|refusal| {
            ctx.metrics.handshakes_refused.inc();
            debug!(%peer, status = %refusal.status, reason = %refusal.message, "upgrade refused");
            let mut r = text(refusal.status, refusal.message);
            if let Some(secs) = refusal.retry_after {
                r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
            }
            r
        }),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => match not_ready(&ctx) {
            // Still 200: a node cut off from Redis keeps serving its rooms and direct
            // joins, so taking it out of rotation would only lose players. The body
            // says what is missing (listing other nodes, cluster matchmaking).
            None => match ctx.cluster.as_ref().map(|node| node.directory().health()) {
                Some(crate::cluster::Health::Degraded(why)) => {
                    text(StatusCode::OK, format!("degraded: {why}"))
                }
                _ => text(StatusCode::OK, "ready"),
            },
            Some(why) => text(StatusCode::SERVICE_UNAVAILABLE, why),
        },
        (&Method::GET, "/metrics") => match ctx.metrics.render() {
            Ok(page) => {
                let mut r = text(StatusCode::OK, page);
                r.headers_mut().insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
                );
                r
            }
            Err(_) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the metrics could not be encoded",
            ),
        },
        (_, path)
            if matches!(path, "/ws" | "/healthz" | "/readyz" | "/metrics")
                || page::asset(path).is_some() =>
        {
            let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
            // RFC 9110 section 15.5.6: a 405 lists the methods the resource supports.
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; WebSocket endpoint is GET /ws?room=NAME",
        ),
    };
    Ok(response)
}

/// The paths of the JSON room API that `--api-listen` moves (`/matchmake` stays with
/// the players).
fn is_room_api(path: &str) -> bool {
    path == "/rooms" || path.starts_with("/rooms/")
}

/// Why the server would not take a new player now, if it would not. An orchestrator
/// stops sending players to a server whose `/readyz` is not 200.
fn not_ready(ctx: &ServerCtx) -> Option<&'static str> {
    if ctx.shutdown.is_cancelled() {
        Some("shutting down")
    } else if ctx.draining.is_cancelled() {
        Some("draining")
    } else if ctx.admission.open() >= ctx.admission.max_total() {
        // Counting the probe's own connection: the next one would be turned away.
        Some("at the connection limit")
    } else {
        None
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn refuse(status: StatusCode, message: &str) -> Refusal {
    Refusal::new(status, message)
}

/// Checks an upgrade request and, if it passes, answers 101 and starts the connection.
fn upgrade(
    mut req: Request<Incoming>,
    conn: &Conn,
    ctx: &Arc<ServerCtx>,
) -> Result<Response<Body>, Refusal> {
    let peer = conn.peer;
    // A resuming player's own held seat would make its room look full; its Hello (with
    // the secret token) decides instead, and the room still refuses a fresh join when full.
    // For the same reason a resume may come in while the server drains: its match is
    // still running, and a network blip must not cost the player its place in it. A
    // fresh join through the hint is refused by the Hello (close 1001).
    let resuming = handshake::query_param(req.uri().query(), "resume").is_some();
    if ctx.shutdown.is_cancelled() || (ctx.draining.is_cancelled() && !resuming) {
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down",
        ));
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&req) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)",
        ));
    }
    let transport = match ctx.tls {
        Some(_) => handshake::Transport::Tls,
        None => handshake::Transport::Plain,
    };
    let room = handshake::check(req.headers(), req.uri().query(), &ctx.origins, transport)?;
    let ticket = handshake::query_param(req.uri().query(), "ticket").map(str::to_owned);
    if ticket.is_none() && !resuming {
        match ctx.rooms.get(&room) {
            // Seats held by matchmaking tickets count as taken.
            Some(handle) if !handle.has_space() => {
                return Err(refuse(StatusCode::CONFLICT, "room is full"))
            }
            None if ctx.rooms.len() >= ctx.config.max_rooms => {
                return Err(refuse(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "too many rooms on this server",
                ));
            }
            // This join creates the room: a token of its client's room budget.
            None => {
                let client = client_ip::client_ip(peer, req.headers(), &ctx.config.trusted_proxies);
                if let Err(wait) = ctx.room_create_limit.try_take(client, Instant::now()) {
                    ctx.metrics.count_limited("room_creates_per_ip");
                    let secs = per_ip::retry_after_secs(wait);
                    return Err(Refusal {
                        retry_after: Some(secs),
                        ..refuse(
                            StatusCode::TOO_MANY_REQUESTS,
                            &format!(
                                "too many rooms created from your address \
                                 (room-creates-per-ip-per-min); join an existing room or \
                                 retry in {secs} s"
                            ),
                        )
                    });
                }
            }
            _ => {}
        }
    }
    // Last, so a ticket is only used up by a join that can go ahead.
    let seat = match ticket {
        // A cluster ticket (a signed JWT, so it has dots; local tickets are hex).
        Some(ticket) if ticket.contains('.') => {
            let Some(node) = &ctx.cluster else {
                return Err(refuse(
                    StatusCode::FORBIDDEN,
                    "unknown or already used ticket",
                ));
            };
            let rid = node
                .redeem(&ticket, &room)
                .map_err(|why| Refusal::new(StatusCode::FORBIDDEN, why))?;
            match ctx.rooms.seat_for_ticket(&room, rid) {
                Ok(seat) => Some(seat),
                Err(e) => return Err(Refusal::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
            }
        }
        Some(ticket) => match ctx
            .tickets
            .redeem(&ticket, &room, std::time::Instant::now())
        {
            Ok(seat) => Some(seat),
            Err(e) => return Err(Refusal::new(StatusCode::FORBIDDEN, e.to_string())),
        },
        None => None,
    };
    let (response, on_upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("bad upgrade request: {e}"),
            ))
        }
    };
    let task_ctx = Arc::clone(ctx);
    // Counted open from here, and the connection's permit kept, until the WebSocket's
    // task ends (or the upgrade fails).
    let open = OpenWebSocket::new(Arc::clone(&conn.permit), Arc::clone(&ctx.metrics));
    ctx.tasks.spawn(async move {
        let _open = open;
        match on_upgrade.await {
            Ok(ws) => connection::serve(ws, task_ctx, room, peer, seat).await,
            Err(e) => warn!(%peer, error = %e, "upgrade did not complete"),
        }
    });
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(Response::from_parts(parts, Full::new(Bytes::new())))
}
