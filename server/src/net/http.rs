//! HTTP/1.1 on each accepted TCP connection: routing, the upgrade to WebSocket, and the
//! handshake timeout.
//!
//! hyper enforces its header-read timeout only when it is given a timer, so the builder
//! gets one: a connection that never finishes its request headers is closed after
//! `--handshake-timeout`. Upgrades are accepted only after the checks in
//! [`super::handshake`] and the capacity checks (connections, rooms, room size) pass;
//! the 101 response echoes the subprotocol.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, SEC_WEBSOCKET_PROTOCOL};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tickcast_shared::SUBPROTOCOL;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use super::handshake::{self, Refusal};
use super::tls::TlsConfig;
use super::{api, connection, page};
use crate::ServerCtx;

type Body = Full<Bytes>;

/// Completes the TLS handshake on one TCP connection, then serves HTTP on it as
/// [`serve`] does. The handshake must finish within `--handshake-timeout`; a failed or
/// stalled one (a plain-text client on a TLS port, an untrusted certificate, a port
/// scanner) is counted and the connection dropped, affecting no one else.
pub async fn serve_tls(tls: TlsConfig, stream: TcpStream, peer: SocketAddr, ctx: Arc<ServerCtx>) {
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
    serve(stream, peer, ctx).await;
}

/// Serves HTTP on one connection (plain TCP, or TLS after [`serve_tls`]) until it
/// closes, upgrades, or the server stops.
pub async fn serve<S>(stream: S, peer: SocketAddr, ctx: Arc<ServerCtx>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = {
        let ctx = Arc::clone(&ctx);
        service_fn(move |req| route(req, peer, Arc::clone(&ctx)))
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
    peer: SocketAddr,
    ctx: Arc<ServerCtx>,
) -> Result<Response<Body>, Infallible> {
    if is_api(req.uri().path()) {
        return Ok(api::handle(req, &ctx).await);
    }
    // The playable page and its modules (GET only; other methods get 405 below).
    if let (&Method::GET, Some(asset)) = (req.method(), page::asset(req.uri().path())) {
        return Ok(asset.response());
    }
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/ws") => upgrade(req, peer, &ctx).unwrap_or_else(|refusal| {
            ctx.metrics.handshakes_refused.inc();
            debug!(%peer, status = %refusal.status, reason = %refusal.message, "upgrade refused");
            text(refusal.status, refusal.message)
        }),
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok"),
        (&Method::GET, "/readyz") => match not_ready(&ctx) {
            None => text(StatusCode::OK, "ready"),
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

/// The paths of the JSON room API.
fn is_api(path: &str) -> bool {
    path == "/rooms" || path == "/matchmake" || path.starts_with("/rooms/")
}

/// Why the server would not take a new player now, if it would not. An orchestrator
/// stops sending players to a server whose `/readyz` is not 200.
fn not_ready(ctx: &ServerCtx) -> Option<&'static str> {
    if ctx.shutdown.is_cancelled() {
        Some("shutting down")
    } else if ctx.draining.is_cancelled() {
        Some("draining")
    } else if ctx.metrics.connections_open.load(Relaxed) >= ctx.config.max_connections as u64 {
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
    Refusal {
        status,
        message: message.to_owned(),
    }
}

/// Checks an upgrade request and, if it passes, answers 101 and starts the connection.
fn upgrade(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    ctx: &Arc<ServerCtx>,
) -> Result<Response<Body>, Refusal> {
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
            _ => {}
        }
    }
    // Reserve the connection slot before answering 101, so the limit is never exceeded.
    let open = ctx.metrics.connections_open.fetch_add(1, Relaxed);
    let release = || ctx.metrics.connections_open.fetch_sub(1, Relaxed);
    if open >= ctx.config.max_connections as u64 {
        release();
        return Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many connections",
        ));
    }
    // Last, so a ticket is only used up by a join that can go ahead.
    let seat = match ticket {
        Some(ticket) => match ctx
            .tickets
            .redeem(&ticket, &room, std::time::Instant::now())
        {
            Ok(seat) => Some(seat),
            Err(e) => {
                release();
                return Err(Refusal {
                    status: StatusCode::FORBIDDEN,
                    message: e.to_string(),
                });
            }
        },
        None => None,
    };
    let (response, on_upgrade) = match fastwebsockets::upgrade::upgrade(&mut req) {
        Ok(pair) => pair,
        Err(e) => {
            release();
            return Err(Refusal {
                status: StatusCode::BAD_REQUEST,
                message: format!("bad upgrade request: {e}"),
            });
        }
    };
    let task_ctx = Arc::clone(ctx);
    ctx.tasks.spawn(async move {
        match on_upgrade.await {
            Ok(ws) => connection::serve(ws, task_ctx, room, peer, seat).await,
            Err(e) => {
                task_ctx.metrics.connections_open.fetch_sub(1, Relaxed);
                warn!(%peer, error = %e, "upgrade did not complete");
            }
        }
    });
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(Response::from_parts(parts, Full::new(Bytes::new())))
}
