//! The Agones SDK sidecar's REST API, as this server uses it: one HTTP/1.1 request per
//! call over a fresh connection to 127.0.0.1 (a call every few seconds needs no pool,
//! and a fresh connection notices a restarted sidecar at once), each bounded by
//! [`REQUEST_TIMEOUT`].
//!
//! Paths and bodies are those of the Agones REST reference: `POST /ready`,
//! `POST /health`, `POST /shutdown` with `{}`, and the Counters API (beta, on by
//! default since Agones 1.41) `PATCH /v1beta1/counters/{name}` with the count and
//! capacity as JSON strings (proto3's JSON form of int64).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::schedule::{Call, Players};

/// Longest a call may take, connection included: a hung sidecar must not hold the
/// Health calls back for long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The Counter that carries the player count and capacity (declared in the Fleet's
/// `spec.template.spec.counters`, see deploy/fleet.yaml).
pub const PLAYERS_COUNTER: &str = "players";

/// Largest answer read from the sidecar (a GameServer resource is a few KiB).
const MAX_BODY_BYTES: usize = 256 * 1024;

/// Most of an error answer's body kept for the log.
const ERROR_BODY_BYTES: usize = 256;

/// Why a call to the sidecar failed.
#[derive(Debug, thiserror::Error)]
pub enum SidecarError {
    /// Nothing listens on the port (the sidecar is not up yet, or gone).
    #[error("cannot connect to the Agones sidecar at {addr}: {source}")]
    Connect {
        /// The sidecar's address.
        addr: SocketAddr,
        /// The socket error.
        source: std::io::Error,
    },
    /// The connection broke, or the answer was not HTTP.
    #[error("HTTP to the Agones sidecar: {0}")]
    Http(#[from] hyper::Error),
    /// The sidecar answered with an error status (e.g. a Counter it does not know).
    #[error("the Agones sidecar answered {status}: {body}")]
    Status {
        /// The status it answered.
        status: StatusCode,
        /// The start of its body.
        body: String,
    },
    /// An answer that is not the JSON asked for.
    #[error("the Agones sidecar's answer is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// No answer within [`REQUEST_TIMEOUT`].
    #[error("the Agones sidecar did not answer within {REQUEST_TIMEOUT:?}")]
    Timeout,
}

/// The sidecar at one port of 127.0.0.1.
#[derive(Debug, Clone, Copy)]
pub struct Sidecar {
    addr: SocketAddr,
}

impl Sidecar {
    /// The sidecar listening on `port` of 127.0.0.1.
    pub fn new(port: u16) -> Self {
        Self {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        }
    }

    /// Makes `call`.
    ///
    /// # Errors
    /// As [`Sidecar::send`].
    pub async fn call(&self, call: Call) -> Result<(), SidecarError> {
        match call {
            Call::Ready => self.send(Method::POST, "/ready", "{}".into()).await,
            Call::Health => self.send(Method::POST, "/health", "{}".into()).await,
            Call::Players(players) => {
                let path = format!("/v1beta1/counters/{PLAYERS_COUNTER}");
                self.send(Method::PATCH, &path, counter_body(players)).await
            }
        }
    }

    /// `POST /shutdown`: the game server is done; Agones deletes its pod.
    ///
    /// # Errors
    /// As [`Sidecar::send`].
    pub async fn shutdown(&self) -> Result<(), SidecarError> {
        self.send(Method::POST, "/shutdown", "{}".into()).await
    }

    /// Sends one JSON request and waits for a success status.
    ///
    /// # Errors
    /// [`SidecarError`]: no connection, a broken one, an error status, or no answer
    /// within [`REQUEST_TIMEOUT`].
    pub async fn send(&self, method: Method, path: &str, body: String) -> Result<(), SidecarError> {
        self.ask(method, path, body).await.map(drop)
    }

    /// `GET /gameserver`: the GameServer resource as the sidecar holds it (its
    /// `status.address` and `status.ports` say where players reach this server).
    ///
    /// # Errors
    /// As [`Sidecar::send`], or [`SidecarError::Json`].
    pub async fn gameserver(&self) -> Result<serde_json::Value, SidecarError> {
        let body = self.ask(Method::GET, "/gameserver", String::new()).await?;
        Ok(serde_json::from_slice(&body)?)
    }

    /// One request; the body of a success answer.
    async fn ask(&self, method: Method, path: &str, body: String) -> Result<Bytes, SidecarError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(method, path, body))
            .await
            .map_err(|_| SidecarError::Timeout)?
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: String,
    ) -> Result<Bytes, SidecarError> {
        let addr = self.addr;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| SidecarError::Connect { addr, source })?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection; it ends when the exchange is over and `sender` dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, addr.to_string())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        // Our own method, path and headers: a build error would be a bug here, but it
        // is reported as a failed call rather than a panic all the same.
        let request = request.map_err(|e| SidecarError::Status {
            status: StatusCode::BAD_REQUEST,
            body: format!("request not built: {e}"),
        })?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await;
        match (status.is_success(), body) {
            (true, Ok(collected)) => Ok(collected.to_bytes()),
            (true, Err(e)) => Err(SidecarError::Status {
                status,
                body: format!("(unreadable: {e})"),
            }),
            (false, body) => {
                let body = match body {
                    Ok(collected) => {
                        let bytes = collected.to_bytes();
                        let kept = &bytes[..bytes.len().min(ERROR_BODY_BYTES)];
                        String::from_utf8_lossy(kept).into_owned()
                    }
                    Err(e) => format!("(unreadable: {e})"),
                };
                Err(SidecarError::Status { status, body })
            }
        }
    }
}

/// The body of a Counter update setting both the capacity and the count (the SDK
/// applies the capacity first, so a count within the new capacity is accepted).
pub fn counter_body(players: Players) -> String {
    format!(
        r#"{{"count":"{}","capacity":"{}"}}"#,
        players.count, players.capacity
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_body_is_proto3_json() {
        let body = counter_body(Players {
            count: 3,
            capacity: 128,
        });
        assert_eq!(body, r#"{"count":"3","capacity":"128"}"#);
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        assert_eq!(parsed["count"], "3");
        assert_eq!(parsed["capacity"], "128");
    }
}
