//! This node's part in the cluster (`--redis`): the glue between the rooms and the
//! [`Directory`].
//!
//! - The rooms announce what changes ([`Event`]) on an unbounded channel, without
//!   waiting: a room's tick never awaits Redis. One task ([`forward`]) writes the events
//!   to the directory in the order they were sent, so a room's publication always
//!   precedes its player counts, and a player's count precedes the release of the seat
//!   they were reserved: in between the seat counts twice for a moment (a matchmaker may
//!   then open a room one seat early), never zero times (which could overfill a room).
//! - Cluster tickets presented at the upgrade are checked here: signature, node, room,
//!   expiry, and single use ([`UsedRids`]).
//! - A new room placed on another node is created by that node itself: this node asks
//!   it with `POST /cluster/rooms`, authenticated by a short-lived token signed with the
//!   cluster secret ([`Node::placement_token`]), and then reserves the first seat in it.
//!   The owner publishes the room before answering, so the seat can be reserved at
//!   once. Rooms are only ever written to the directory by their own node.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::ticket::{self, TicketClaims};
use super::{ClusterConfig, Directory, DirectoryError, RoomInfo};
use crate::tickets::UsedRids;

/// The path on which a node creates a room placed on it by another node.
pub const PLACE_PATH: &str = "/cluster/rooms";

/// Reservation ids of placement tokens start with this, so a placement token is never
/// taken for a player's ticket, nor the reverse (ticket ids are hex).
const PLACE_PREFIX: &str = "place-";

/// Largest answer read from another node.
const MAX_ANSWER_BYTES: usize = 4096;

/// What the rooms tell the directory.
#[derive(Debug)]
pub enum Event {
    /// A room opened.
    Opened(RoomInfo),
    /// A room's player count changed.
    Players {
        /// The room.
        room: String,
        /// Players in it now.
        players: u32,
    },
    /// A room closed.
    Closed(String),
    /// A player came with a cluster ticket and joined (or tried): free the reservation.
    Release {
        /// The room.
        room: String,
        /// The reservation id.
        rid: String,
    },
    /// Answered once every event sent before it was written (or failed).
    Flush(oneshot::Sender<()>),
}

/// This node in the cluster.
#[derive(Debug)]
pub struct Node {
    directory: Directory,
    events: mpsc::UnboundedSender<Event>,
    used: UsedRids,
    /// Taken by each matchmaking request on this node for its reserve, place, create,
    /// reserve sequence: concurrent requests on one node then fill the room the first
    /// one opened instead of each opening its own.
    pub matchmaking: tokio::sync::Mutex<()>,
}

impl Node {
    /// Joins the cluster `config` describes: the directory and the events' writer.
    /// Returns the node and the task to spawn (it ends after [`Directory::leave`] and
    /// once every sender of events is gone).
    ///
    /// # Errors
    /// As [`Directory::start`].
    pub fn start(
        config: ClusterConfig,
    ) -> Result<(Arc<Self>, impl Future<Output = ()> + Send + 'static), DirectoryError> {
        let (directory, maintain) = Directory::start(config)?;
        let (events, rx) = mpsc::unbounded_channel();
        let node = Arc::new(Self {
            directory: directory.clone(),
            events,
            used: UsedRids::default(),
            matchmaking: tokio::sync::Mutex::new(()),
        });
        let task = async move {
            tokio::join!(maintain, forward(directory, rx));
        };
        Ok((node, task))
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Where the rooms send their [`Event`]s.
    pub fn events(&self) -> mpsc::UnboundedSender<Event> {
        self.events.clone()
    }

    /// Waits until every event sent so far has been written to the directory (or
    /// failed to be: the directory then keeps it for its next registration).
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.events.send(Event::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Checks a cluster ticket presented for `room`: signed with the cluster secret,
    /// for this node and this room, unexpired, never used here before. Returns its
    /// reservation id, to release once the player is in.
    ///
    /// # Errors
    /// Why it is refused, for the 403's body.
    pub fn redeem(&self, ticket: &str, room: &str) -> Result<String, String> {
        let claims = self
            .directory
            .verify_ticket(ticket, SystemTime::now())
            .map_err(|e| e.to_string())?;
        if claims.rid.starts_with(PLACE_PREFIX) {
            return Err("invalid ticket: not a player's ticket".to_owned());
        }
        if claims.room != room {
            return Err("ticket is for another room".to_owned());
        }
        if !self.used.first_use(&claims.rid, claims.exp, unix_secs()) {
            return Err("unknown or already used ticket".to_owned());
        }
        Ok(claims.rid)
    }

    /// A token that lets this node ask `node` to create a room (valid one ticket TTL,
    /// once).
    ///
    /// # Errors
    /// Only if signing fails, which it does not for these plain fields.
    pub fn placement_token(&self, node: &str) -> Result<String, String> {
        let ttl = self.directory.config().ticket_ttl.as_secs().max(1);
        let nonce: [u8; 16] = rand::random();
        let hex: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let claims = TicketClaims {
            room: String::new(),
            node: node.to_owned(),
            rid: format!("{PLACE_PREFIX}{hex}"),
            exp: unix_secs() + ttl,
        };
        ticket::sign(&claims, &self.directory.config().secret).map_err(|e| e.to_string())
    }

    /// Checks the token of a `POST /cluster/rooms` (see [`Node::placement_token`]).
    ///
    /// # Errors
    /// Why it is refused, for the 401's body.
    pub fn check_placement(&self, token: &str) -> Result<(), String> {
        let claims = self
            .directory
            .verify_ticket(token, SystemTime::now())
            .map_err(|e| e.to_string())?;
        if !claims.rid.starts_with(PLACE_PREFIX) {
            return Err("not a placement token".to_owned());
        }
        if !self.used.first_use(&claims.rid, claims.exp, unix_secs()) {
            return Err("placement token already used".to_owned());
        }
        Ok(())
    }

    /// Asks the node at `url` (its public URL) to create a room, with `token` from
    /// [`Node::placement_token`]. Returns the new room's id, published by then.
    ///
    /// # Errors
    /// Why not: the URL is not `ws://` or `http://` (a `wss://` node is not asked: this
    /// node has no TLS client; the caller opens the room itself), the node did not
    /// answer within the Redis timeout, or refused.
    pub async fn ask_to_create(&self, url: &str, token: &str) -> Result<String, String> {
        let limit = self.directory.config().redis_timeout;
        tokio::time::timeout(limit, ask(url, token))
            .await
            .map_err(|_| format!("{url} did not answer within {limit:?}"))?
    }
}

/// `host:port` of a plain `ws://` or `http://` URL.
fn authority(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("ws://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("{url}: only ws:// and http:// nodes can be asked"))?;
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(
        if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        },
    )
}

#[derive(serde::Deserialize)]
struct Created {
    room: String,
}

async fn ask(url: &str, token: &str) -> Result<String, String> {
    let addr = authority(url)?;
    let stream = TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = Request::builder()
        .method(Method::POST)
        .uri(PLACE_PATH)
        .header(HOST, addr.as_str())
        .header(AUTHORIZATION, format!("Bearer {token}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("{addr}: {e}"))?
        .to_bytes();
    if status != StatusCode::CREATED {
        return Err(format!(
            "{addr} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ));
    }
    serde_json::from_slice::<Created>(&body)
        .map(|c| c.room)
        .map_err(|e| format!("{addr}: bad answer: {e}"))
}

/// Writes the rooms' events to the directory, in order, until every sender is gone.
/// A failed write is kept by the directory and published with its next registration:
/// nothing to retry here.
pub async fn forward(directory: Directory, mut rx: mpsc::UnboundedReceiver<Event>) {
    let node = directory.node_id().to_owned();
    while let Some(event) = rx.recv().await {
        let result = match event {
            Event::Opened(room) => directory.publish_room(room).await,
            Event::Players { room, players } => directory.update_players(&room, players).await,
            Event::Closed(room) => directory.remove_room(&room).await,
            Event::Release { room, rid } => {
                directory.release_seat(&node, &room, &rid).await.map(|_| ())
            }
            Event::Flush(done) => {
                let _ = done.send(());
                Ok(())
            }
        };
        if let Err(e) = result {
            debug!(error = %e, "directory write deferred");
        }
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_urls_are_asked() {
        assert_eq!(authority("ws://10.0.0.5:8080").unwrap(), "10.0.0.5:8080");
        assert_eq!(authority("http://h:1/x?y").unwrap(), "h:1");
        assert_eq!(authority("ws://h").unwrap(), "h:80");
        assert!(authority("wss://h:443").is_err());
        assert!(authority("ws://").is_err());
    }
}
