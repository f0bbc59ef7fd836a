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
use tokio::sync::{mpsc, Mutex};
use tokio_util::task::AbortOnDropHandle;
use tracing::Instrument;

use super::reader::{read_loop, Inbound, INBOUND_QUEUE};
use super::writer::{close_with, write_msg};
use super::{ConnectOptions, Link, SharedWriter, Target, MAX_MESSAGE_BYTES};
use crate::error::ClientError;

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
) -> Result<Opened, ClientError> {
    tokio::time::timeout(timeout, open_within(opts, target, resume))
        .await
        .map_err(|_| ClientError::ConnectTimeout)?
}

/// [`open`] without the timeout around it.
async fn open_within(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
) -> Result<Opened, ClientError> {
    let tcp = open_tcp(&target.addr, opts.local_ip).await?;
    // Inputs are tiny and latency is the point; never wait to coalesce them.
    tcp.set_nodelay(true)?;
    if target.tls {
        let tls = opts.tls.connect(&target.tls_host, tcp).await?;
        join(opts, target, resume, tls).await
    } else {
        join(opts, target, resume, tcp).await
    }
}

/// The WebSocket upgrade, `Hello` and `Welcome` on an open stream (TCP, or TLS over
/// TCP for `wss://`); past the upgrade the stream's type is erased.
async fn join<S>(
    opts: &ConnectOptions,
    target: &Target,
    resume: Option<SessionToken>,
    stream: S,
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
    let (events, mut inbound) = mpsc::channel(INBOUND_QUEUE);
    let reader = tokio::spawn(read_loop(read, Arc::clone(&writer), events).in_current_span());
    let reader = AbortOnDropHandle::new(reader);

    let mut buf = Vec::with_capacity(64);
    let hello = ClientMsg::Hello(Hello {
        protocol_version: PROTOCOL_VERSION,
        name: opts.name.clone(),
        room: target.room.clone(),
        resume,
        auth_token: None,
    });
    write_msg(&writer, &mut buf, &hello).await?;

    let (welcome, welcome_bytes) = match inbound.recv().await {
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
        Some(Inbound::Closed { code, reason }) => return Err(ClientError::Closed { code, reason }),
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
        link: Link {
            writer,
            inbound,
            _reader: reader,
        },
        welcome,
        welcome_bytes,
    })
}

/// Opens the TCP connection to `addr` (`host:port`), from `local_ip` when given.
///
/// Without a local address, `TcpStream::connect` tries every resolved address in turn.
/// With one, only resolved addresses of the same family can work, so the first of
/// them is used.
async fn open_tcp(addr: &str, local_ip: Option<IpAddr>) -> Result<TcpStream, ClientError> {
    let Some(local) = local_ip else {
        return Ok(TcpStream::connect(addr).await?);
    };
    let remote = tokio::net::lookup_host(addr)
        .await?
        .find(|remote| remote.is_ipv4() == local.is_ipv4())
        .ok_or(ClientError::AddressFamily { local })?;
    let socket = if local.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket
        .bind(SocketAddr::new(local, 0))
        .map_err(|source| ClientError::Bind { local, source })?;
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
