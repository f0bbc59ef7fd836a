//! Opening a connection, up to the moment the server has taken the player: TCP
//! (from a chosen source address for a load tool), TLS for `wss://`, the HTTP upgrade
//! with our subprotocol, `Hello` and `Welcome`. [`open`] is the one path for a first
//! connection and for every resume, so both apply the same checks and the same timeout.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::handshake;
use http_body_util::Empty;
use hyper::header::{
    HeaderMap, CONNECTION, HOST, ORIGIN, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
    SEC_WEBSOCKET_VERSION, UPGRADE,
};
use hyper::Request;
use hyper_util::rt::TokioExecutor;
use tickcast_shared::{
    ClientMsg, DisconnectReason, Hello, ServerMsg, SessionToken, Welcome, PROTOCOL_VERSION,
    SUBPROTOCOL,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Mutex;

use super::reader::{Inbound, Reading};
use super::writer::{close_with, write_msg};
use super::{ConnectOptions, Link, SharedWriter, SnapshotDecoding, Target, MAX_MESSAGE_BYTES};
use crate::error::ClientError;
use crate::link::LinkSpec;

/// A WebSocket that the server has welcomed, not yet attached to a
/// [`Session`](crate::Session).
pub(crate) struct Opened {
    pub(super) link: Link,
    pub(crate) welcome: Welcome,
    /// Payload size of the `Welcome`, for the byte counters.
    pub(super) welcome_bytes: usize,
}

/// Opens a WebSocket to `target` and has the server welcome us, within `timeout`:
/// TCP, the upgrade, `Hello` (as a new player, or resuming the session of `resume`)
/// and the `Welcome`. What [`super::Connection::connect`] does, and each
/// reconnection attempt.
pub(crate) async fn open(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
    timeout: Duration,
    decoding: SnapshotDecoding,
) -> Result<Opened, ClientError> {
    tokio::time::timeout(timeout, open_within(opts, target, resume, decoding))
        .await
        .map_err(|_| ClientError::ConnectTimeout)?
}

/// [`open`] without the timeout around it.
async fn open_within(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
    decoding: SnapshotDecoding,
) -> Result<Opened, ClientError> {
    let recv_buffer = opts
        .link
        .as_ref()
        .and_then(|link| recv_buffer_for(&link.spec));
    let tcp = open_tcp(&target.addr, opts.local_ip, recv_buffer).await?;
    // Inputs are tiny and latency is the point; never wait to coalesce them.
    tcp.set_nodelay(true)?;
    if let Some(link) = opts.link.as_ref().filter(|link| !link.spec.is_perfect()) {
        // The link sits below TLS, as a network does: the handshake and every record
        // cross it.
        let stream = crate::link::stream::condition(tcp, &link.spec, link.seed);
        if target.tls {
            let tls = opts.tls.connect(&target.tls_host, stream).await?;
            return join(opts, target, resume, tls, decoding).await;
        }
        return join(opts, target, resume, stream, decoding).await;
    }
    if target.tls {
        let tls = opts.tls.connect(&target.tls_host, tcp).await?;
        join(opts, target, resume, tls, decoding).await
    } else {
        join(opts, target, resume, tcp, decoding).await
    }
}

/// The WebSocket upgrade, `Hello` and `Welcome` on an open stream (TCP, or TLS over
/// TCP for `wss://`); past the upgrade the stream's type is erased.
async fn join<S>(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
    stream: S,
    decoding: SnapshotDecoding,
) -> Result<Opened, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut request = Request::builder()
        .method("GET")
        .uri(&target.path_and_query)
        .header(HOST, &target.host_header)
        .header(UPGRADE, "websocket")
        .header(CONNECTION, "upgrade")
        .header(SEC_WEBSOCKET_KEY, handshake::generate_key())
        .header(SEC_WEBSOCKET_VERSION, "13")
        .header(SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL);
    if let Some(origin) = &opts.origin {
        request = request.header(ORIGIN, origin);
    }
    let request = request
        .body(Empty::<Bytes>::new())
        .map_err(|e| ClientError::InvalidRequest(e.to_string()))?;

    let (mut ws, response) = handshake::client(&TokioExecutor::new(), request, stream).await?;
    // fastwebsockets checks the status and the Upgrade/Connection headers only.
    check_subprotocol(response.headers())?;
    // fastwebsockets refuses frames whose length is >= this value.
    ws.set_max_message_size(MAX_MESSAGE_BYTES.saturating_add(1));
    ws.set_auto_pong(true);
    ws.set_auto_close(true);
    let (read, write) = ws.split(tokio::io::split);
    let writer: SharedWriter = Arc::new(Mutex::new(write));
    let mut reading = Reading::new(read, Arc::clone(&writer), decoding);

    let mut buf = Vec::with_capacity(64);
    let hello = ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: opts.name.clone(),
        room: target.room.clone(),
        resume,
        // Sent on a resume too: the server checks that it names the same player.
        auth_token: opts
            .auth_token
            .as_ref()
            .map(|token| token.as_str().to_owned()),
    });
    write_msg(&writer, &mut buf, &hello).await?;

    let (welcome, welcome_bytes) = match reading.recv().await {
        Some(Inbound::Message {
            msg: ServerMsg::Welcome(welcome),
            bytes,
            ..
        }) => (welcome, bytes),
        Some(Inbound::Message { msg, .. }) => {
            close_with(&writer, DisconnectReason::UnexpectedMessage).await;
            return Err(ClientError::Protocol(format!(
                "expected Welcome first, got {}",
                msg_name(&msg)
            )));
        }
        Some(Inbound::Header { .. }) => {
            close_with(&writer, DisconnectReason::UnexpectedMessage).await;
            return Err(ClientError::Protocol(
                "expected Welcome first, got Snapshot".into(),
            ));
        }
        Some(Inbound::Closed { code, reason }) => {
            return Err(ClientError::from_close(code, reason))
        }
        Some(Inbound::Failed(e)) => return Err(e),
        None => return Err(ClientError::ConnectionLost),
    };
    if welcome.protocol_version != PROTOCOL_VERSION {
        close_with(&writer, DisconnectReason::VersionMismatch).await;
        return Err(ClientError::VersionMismatch {
            server: welcome.protocol_version,
            ours: PROTOCOL_VERSION,
        });
    }
    tracing::debug!(
        player_id = welcome.player_id,
        tick_rate = welcome.tick_rate,
        resumed = resume.is_some(),
        "welcomed"
    );
    Ok(Opened {
        link: Link { writer, reading },
        welcome,
        welcome_bytes,
    })
}

/// The kernel receive buffer of a rate-limited link's socket: as large as the model's
/// bottleneck queue. The model sits above the kernel, so the kernel's buffer is part
/// of what the server can fill before it meets backpressure; left at its default
/// (autotuned to megabytes) it would hide a slow link from the server for seconds.
///
/// Linux doubles the value asked for (`socket(7)`: room for its bookkeeping), so half
/// the queue is asked for; the kernel's floor (a few KiB) still applies.
fn recv_buffer_for(spec: &LinkSpec) -> Option<u32> {
    spec.bandwidth?;
    Some(
        u32::try_from(spec.queue_limit() / 2)
            .unwrap_or(u32::MAX)
            .min(MAX_CONDITIONED_RECV_BUFFER),
    )
}

/// Largest receive buffer [`recv_buffer_for`] asks for.
const MAX_CONDITIONED_RECV_BUFFER: u32 = 256 * 1024;

/// Opens the TCP connection to `addr` (`host:port`), from `local_ip` when given, with
/// a receive buffer of `recv_buffer` bytes when given (set before connecting, so that
/// the window scale the kernel offers matches it).
///
/// With neither, `TcpStream::connect` tries every resolved address in turn. With a
/// local address, only resolved addresses of the same family can work, so the first
/// of them is used; without one, the first resolved address.
async fn open_tcp(
    addr: &str,
    local_ip: Option<IpAddr>,
    recv_buffer: Option<u32>,
) -> Result<TcpStream, ClientError> {
    if local_ip.is_none() && recv_buffer.is_none() {
        return Ok(TcpStream::connect(addr).await?);
    }
    let mut resolved = tokio::net::lookup_host(addr).await?;
    let remote = match local_ip {
        Some(local) => resolved
            .find(|remote| remote.is_ipv4() == local.is_ipv4())
            .ok_or(ClientError::AddressFamily { local })?,
        None => resolved.next().ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{addr}: no address found"),
            )
        })?,
    };
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let Some(local) = local_ip {
        socket
            .bind(SocketAddr::new(local, 0))
            .map_err(|source| ClientError::Bind { local, source })?;
    }
    Ok(socket.connect(remote).await?)
}

/// Checks that the 101 response selected our subprotocol.
fn check_subprotocol(headers: &HeaderMap) -> Result<(), ClientError> {
    let got = headers
        .get(SEC_WEBSOCKET_PROTOCOL)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_owned());
    if got.as_deref() == Some(SUBPROTOCOL) {
        Ok(())
    } else {
        Err(ClientError::SubprotocolMismatch {
            expected: SUBPROTOCOL,
            got,
        })
    }
}

fn msg_name(msg: &ServerMsg) -> &'static str {
    match msg {
        ServerMsg::Welcome(_) => "Welcome",
        ServerMsg::Snapshot(_) => "Snapshot",
        ServerMsg::Pong(_) => "Pong",
        ServerMsg::Event(_) => "Event",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subprotocol_must_be_echoed() {
        let mut headers = HeaderMap::new();
        assert!(matches!(
            check_subprotocol(&headers),
            Err(ClientError::SubprotocolMismatch { got: None, .. })
        ));
        headers.insert(SEC_WEBSOCKET_PROTOCOL, "other".parse().expect("header"));
        assert!(check_subprotocol(&headers).is_err());
        headers.insert(SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL.parse().expect("header"));
        assert!(check_subprotocol(&headers).is_ok());
    }
}
