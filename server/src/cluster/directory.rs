//! The async client of the room directory: one per node, cheap to clone, with one
//! background task that keeps the node registered.
//!
//! The node's own state (its rooms) lives here first, in a local mirror, and Redis gets
//! a copy: a write updates the mirror, then sends one script. While Redis is unreachable
//! writes stop at the mirror (returning [`DirectoryError::Unavailable`] at once, never
//! waiting on a dead socket), and the background task retries with [`Backoff`] until a
//! full registration from the mirror succeeds; the node keeps running meanwhile. Writes
//! are serialised, and each sends the mirror's state as it is when sent, so two writes
//! of one room can never land in Redis in the wrong order.
//!
//! Phase 2 wiring, in a handful of calls: [`Directory::start`] at boot (spawn the
//! returned task on the server's tracker); [`Directory::publish_room`],
//! [`Directory::update_players`], [`Directory::remove_room`] from the room lifecycle;
//! [`Directory::list_public`] for `GET /rooms`; [`Directory::reserve_seat`], then
//! [`Directory::place_new_room`] and [`Directory::reserve_seat_in`] for `POST /matchmake`;
//! [`Directory::verify_ticket`] and [`Directory::release_seat`] at the owning node's join;
//! [`Directory::health`] for `/readyz`; [`Directory::metrics`] for `/metrics`;
//! [`Directory::leave`] first thing in the drain.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisError, ScriptInvocation};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::backoff::Backoff;
use super::health::{DirectoryMetrics, Health};
use super::keys::{check_node_id, Keys};
use super::records::{
    parse_node, parse_placement, parse_reserve, parse_room, seats_value, NodeRecord, Placement,
    Reservation, RoomInfo, RoomRecord,
};
use super::scripts::Scripts;
use super::ticket::{self, TicketClaims, TicketError};
use super::{ClusterConfig, DirectoryError};

/// Why the directory is degraded before its first registration.
const NOT_REGISTERED: &str = "not registered yet";

/// One node's handle on the cluster directory. Clones share everything.
#[derive(Clone)]
pub struct Directory {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("node", &self.inner.config.node_id)
            .field("url", &self.inner.config.public_url)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: ClusterConfig,
    keys: Keys,
    conn: ConnectionManager,
    scripts: Scripts,
    local: Mutex<Local>,
    /// Held across every write to Redis: writes land in the order they were sent.
    writes: tokio::sync::Mutex<()>,
    health: Mutex<Health>,
    metrics: DirectoryMetrics,
    /// Wakes the background task early: the directory just became degraded.
    wake: Notify,
    /// Cancelled by [`Directory::leave`]: the background task ends.
    stop: CancellationToken,
}

/// The node's own state, which Redis copies.
#[derive(Debug, Default)]
struct Local {
    rooms: BTreeMap<String, RoomInfo>,
    /// Redis may not hold the mirror: the next sync is a full registration.
    dirty: bool,
    /// Registered at least once (later registrations are re-registrations).
    registered: bool,
    /// [`Directory::leave`] ran: nothing is written any more.
    left: bool,
}

impl Directory {
    /// A directory for the node `config` describes, and the task that keeps it
    /// registered (register now, refresh every `config.refresh`, re-register after Redis
    /// comes back). Spawn the task; it ends after [`Directory::leave`]. Redis need not be
    /// up: the connection is made lazily and retried, and [`Directory::health`] says
    /// degraded until the first registration. Call within a tokio runtime.
    ///
    /// # Errors
    /// [`DirectoryError::Config`]: a bad node id or Redis URL, or a refresh period not
    /// shorter than the TTL.
    pub fn start(
        config: ClusterConfig,
    ) -> Result<(Self, impl Future<Output = ()> + Send + 'static), DirectoryError> {
        check_node_id(&config.node_id).map_err(DirectoryError::Config)?;
        if config.refresh.is_zero() || config.refresh >= config.node_ttl {
            return Err(DirectoryError::Config(format!(
                "the refresh period ({:?}) must be shorter than the node TTL ({:?})",
                config.refresh, config.node_ttl
            )));
        }
        if config.ticket_ttl < Duration::from_millis(1) {
            return Err(DirectoryError::Config(
                "the ticket TTL must be at least 1 ms".into(),
            ));
        }
        let client = redis::Client::open(config.redis_url.as_str())
            .map_err(|e| DirectoryError::Config(format!("--redis {}: {e}", config.redis_url)))?;
        // One quick reconnection try per call: the background task's backoff, not the
        // connection manager's, paces the retries, and a call never hangs for long.
        let manager = ConnectionManagerConfig::new()
            .set_number_of_retries(1)
            .set_min_delay(config.backoff_base)
            .set_max_delay(config.backoff_cap)
            .set_connection_timeout(Some(config.redis_timeout))
            .set_response_timeout(Some(config.redis_timeout));
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| DirectoryError::Config(format!("--redis {}: {e}", config.redis_url)))?;
        let metrics = DirectoryMetrics::default();
        metrics.degraded.set(1);
        let directory = Self {
            inner: Arc::new(Inner {
                keys: Keys::new(config.prefix.clone()),
                config,
                conn,
                scripts: Scripts::default(),
                local: Mutex::default(),
                writes: tokio::sync::Mutex::new(()),
                health: Mutex::new(Health::Degraded(NOT_REGISTERED.into())),
                metrics,
                wake: Notify::new(),
                stop: CancellationToken::new(),
            }),
        };
        let task = directory.clone().maintain();
        Ok((directory, task))
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.inner.config.node_id
    }

    /// This node's public URL.
    pub fn public_url(&self) -> &str {
        &self.inner.config.public_url
    }

    /// The configuration it was started with.
    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// Healthy, or degraded and why (for `/readyz`).
    pub fn health(&self) -> Health {
        lock(&self.inner.health).clone()
    }

    /// The counters (register them with [`DirectoryMetrics::register`]).
    pub fn metrics(&self) -> &DirectoryMetrics {
        &self.inner.metrics
    }

    /// Publishes `room` (new or changed) on this node.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] or [`DirectoryError::NotRegistered`]: the room is
    /// kept and published when Redis answers again; nothing for the caller to do.
    pub async fn publish_room(&self, room: RoomInfo) -> Result<(), DirectoryError> {
        let id = room.id.clone();
        let new = lock(&self.inner.local)
            .rooms
            .insert(id.clone(), room)
            .is_none();
        self.sync_room(&id, new).await
    }

    /// Sets the players of a published room; a room not published is ignored.
    ///
    /// # Errors
    /// As [`Directory::publish_room`].
    pub async fn update_players(&self, room: &str, players: u32) -> Result<(), DirectoryError> {
        match lock(&self.inner.local).rooms.get_mut(room) {
            Some(info) if info.players != players => info.players = players,
            _ => return Ok(()),
        }
        self.sync_room(room, false).await
    }

    /// Removes a room of this node (it ended), with its reservations.
    ///
    /// # Errors
    /// As [`Directory::publish_room`].
    pub async fn remove_room(&self, room: &str) -> Result<(), DirectoryError> {
        if lock(&self.inner.local).rooms.remove(room).is_none() {
            return Ok(());
        }
        self.sync_room(room, false).await
    }

    /// Matchmaking: holds a seat in the fullest public room with a free seat on any live
    /// node, for `ticket_ttl`, and signs the ticket for it. `None` when no room has a
    /// free seat: then [`Directory::place_new_room`].
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when Redis does not answer.
    pub async fn reserve_seat(&self) -> Result<Option<Reservation>, DirectoryError> {
        self.reserve(None).await
    }

    /// Holds a seat in room `room` of node `node` (a room just placed and created), if it
    /// is public, live and has a free seat.
    ///
    /// # Errors
    /// As [`Directory::reserve_seat`].
    pub async fn reserve_seat_in(
        &self,
        node: &str,
        room: &str,
    ) -> Result<Option<Reservation>, DirectoryError> {
        self.reserve(Some((node, room))).await
    }

    async fn reserve(
        &self,
        target: Option<(&str, &str)>,
    ) -> Result<Option<Reservation>, DirectoryError> {
        let rid = random_hex::<16>();
        let ttl_ms = millis(self.inner.config.ticket_ttl);
        let (node, room) = target.unwrap_or(("", ""));
        let mut inv = self.inner.scripts.reserve.prepare_invoke();
        inv.key(self.inner.keys.nodes())
            .arg(self.inner.keys.prefix())
            .arg(ttl_ms)
            .arg(&rid)
            .arg(node)
            .arg(room);
        let reply: Vec<String> = self.call(&inv).await?;
        let Some(held) = parse_reserve(&reply).map_err(DirectoryError::Reply)? else {
            self.inner.metrics.reservations_none.inc();
            return Ok(None);
        };
        let claims = TicketClaims {
            room: held.room.clone(),
            node: held.node.clone(),
            rid: rid.clone(),
            exp: held.expires_at_ms.div_ceil(1000),
        };
        let ticket = ticket::sign(&claims, &self.inner.config.secret)
            .map_err(|e| DirectoryError::Reply(e.to_string()))?;
        self.inner.metrics.reservations.inc();
        Ok(Some(Reservation {
            id: rid,
            node: held.node,
            room: held.room,
            url: held.url,
            expires_at_ms: held.expires_at_ms,
            taken: held.taken,
            capacity: held.capacity,
            ticket,
        }))
    }

    /// Frees a reserved seat: the player joined (their seat now counts as a player), or
    /// gave up. Returns whether the reservation was still held.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when Redis does not answer (the seat then frees
    /// itself when the reservation expires).
    pub async fn release_seat(
        &self,
        node: &str,
        room: &str,
        rid: &str,
    ) -> Result<bool, DirectoryError> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(self.inner.keys.reservations(node, room)).arg(rid);
        let mut conn = self.inner.conn.clone();
        self.inner.metrics.redis_calls.inc();
        match cmd.query_async::<i64>(&mut conn).await {
            Ok(n) => Ok(n == 1),
            Err(e) => Err(self.failed(&e)),
        }
    }

    /// Where to open a new room: the least-loaded live node (load under 1), counted as
    /// pending there until that node publishes a new room. `None` when no live node has
    /// room.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when Redis does not answer.
    pub async fn place_new_room(&self) -> Result<Option<Placement>, DirectoryError> {
        let mut inv = self.inner.scripts.place.prepare_invoke();
        inv.key(self.inner.keys.nodes())
            .arg(self.inner.keys.prefix());
        let reply: Vec<String> = self.call(&inv).await?;
        let placement = parse_placement(&reply).map_err(DirectoryError::Reply)?;
        if placement.is_some() {
            self.inner.metrics.placements.inc();
        }
        Ok(placement)
    }

    /// The live nodes, by id.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when Redis does not answer.
    pub async fn list_nodes(&self) -> Result<Vec<NodeRecord>, DirectoryError> {
        let mut inv = self.inner.scripts.nodes.prepare_invoke();
        inv.key(self.inner.keys.nodes())
            .arg(self.inner.keys.prefix());
        let reply: Vec<Vec<String>> = self.call(&inv).await?;
        let mut nodes = reply
            .iter()
            .map(|fields| parse_node(fields))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DirectoryError::Reply)?;
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(nodes)
    }

    /// Every room of every live node, public or not, by node then room id, each with its
    /// reservations now.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when Redis does not answer.
    pub async fn list_rooms(&self) -> Result<Vec<RoomRecord>, DirectoryError> {
        let mut inv = self.inner.scripts.rooms.prepare_invoke();
        inv.key(self.inner.keys.nodes())
            .arg(self.inner.keys.prefix());
        let reply: Vec<Vec<String>> = self.call(&inv).await?;
        let mut rooms = reply
            .iter()
            .map(|fields| parse_room(fields))
            .collect::<Result<Vec<_>, _>>()
            .map_err(DirectoryError::Reply)?;
        rooms.sort_by(|a, b| (&a.node, &a.id).cmp(&(&b.node, &b.id)));
        Ok(rooms)
    }

    /// The public rooms of every live node (`GET /rooms` on any node).
    ///
    /// # Errors
    /// As [`Directory::list_rooms`].
    pub async fn list_public(&self) -> Result<Vec<RoomRecord>, DirectoryError> {
        let mut rooms = self.list_rooms().await?;
        rooms.retain(|r| r.public);
        Ok(rooms)
    }

    /// Checks a ticket presented to this node at `now`: signed with the cluster secret,
    /// for this node, unexpired. I/O-free ([`ticket::verify`]); the caller then checks
    /// the room and releases the seat.
    ///
    /// # Errors
    /// [`TicketError`].
    pub fn verify_ticket(
        &self,
        ticket: &str,
        now: SystemTime,
    ) -> Result<TicketClaims, TicketError> {
        let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        ticket::verify(ticket, &self.inner.config.secret, self.node_id(), secs)
    }

    /// Leaves the directory (first step of a drain): stops the refresh, then removes the
    /// node, its rooms and their reservations in one script, so no matchmaking picks it
    /// from then on. Later writes are ignored.
    ///
    /// # Errors
    /// [`DirectoryError::Unavailable`] when Redis does not answer; the node's records
    /// then expire within the TTL, as a dead node's do.
    pub async fn leave(&self) -> Result<(), DirectoryError> {
        let rooms: Vec<String> = {
            let mut local = lock(&self.inner.local);
            local.left = true;
            local.rooms.keys().cloned().collect()
        };
        self.inner.stop.cancel();
        let _writes = self.inner.writes.lock().await;
        let keys = &self.inner.keys;
        let node = self.node_id();
        let mut inv = self.inner.scripts.leave.prepare_invoke();
        inv.key(keys.nodes())
            .key(keys.node(node))
            .key(keys.rooms(node))
            .key(keys.seats(node));
        for room in &rooms {
            inv.key(keys.reservations(node, room));
        }
        inv.arg(node);
        let _: i64 = self.call(&inv).await?;
        info!(node, "left the cluster directory");
        Ok(())
    }

    /// The background task: registers, refreshes, and after failures retries with
    /// backoff until a full registration succeeds.
    async fn maintain(self) {
        let config = &self.inner.config;
        let mut backoff = Backoff::new(config.backoff_base, config.backoff_cap);
        let mut wait = Duration::ZERO;
        loop {
            tokio::select! {
                () = self.inner.stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
                () = self.inner.wake.notified() => {}
            }
            wait = match self.sync().await {
                Ok(()) => {
                    backoff.reset();
                    if lock(&self.inner.local).dirty {
                        Duration::ZERO
                    } else {
                        config.refresh
                    }
                }
                Err(e) => {
                    let wait = backoff.next(rand::random());
                    debug!(node = %config.node_id, error = %e, ?wait, "directory sync failed");
                    wait
                }
            };
        }
    }

    /// One refresh: a heartbeat while Redis holds the node, else a full registration
    /// from the mirror.
    async fn sync(&self) -> Result<(), DirectoryError> {
        let _writes = self.inner.writes.lock().await;
        let (dirty, left) = {
            let local = lock(&self.inner.local);
            (local.dirty, local.left)
        };
        if left {
            return Ok(());
        }
        let keys = &self.inner.keys;
        let node = self.node_id();
        let ttl_ms = millis(self.inner.config.node_ttl);
        if !dirty && lock(&self.inner.local).registered {
            let mut inv = self.inner.scripts.heartbeat.prepare_invoke();
            inv.key(keys.node(node))
                .key(keys.rooms(node))
                .key(keys.seats(node))
                .arg(ttl_ms);
            let alive: i64 = self.call(&inv).await?;
            if alive == 1 {
                self.set_healthy();
                return Ok(());
            }
            warn!(node, "redis no longer holds this node; re-registering");
        }
        let mut inv = self.inner.scripts.register.prepare_invoke();
        inv.key(keys.nodes())
            .key(keys.node(node))
            .key(keys.rooms(node))
            .key(keys.seats(node))
            .arg(ttl_ms)
            .arg(node)
            .arg(self.public_url());
        let again = {
            let mut local = lock(&self.inner.local);
            let (rooms, players, load) = self.totals(&local);
            inv.arg(rooms).arg(players).arg(load);
            for room in local.rooms.values() {
                inv.arg(&room.id)
                    .arg(self.record_json(room))
                    .arg(if room.public { "1" } else { "0" })
                    .arg(seats_value(room));
            }
            local.dirty = false;
            local.registered
        };
        let _: i64 = self.call(&inv).await?;
        if again {
            self.inner.metrics.reregistrations.inc();
        }
        lock(&self.inner.local).registered = true;
        info!(node, again, "registered in the cluster directory");
        self.set_healthy();
        Ok(())
    }

    /// Sends room `id`'s state in the mirror (absent: removed) and the node's totals.
    async fn sync_room(&self, id: &str, new: bool) -> Result<(), DirectoryError> {
        {
            let mut local = lock(&self.inner.local);
            if local.left {
                return Ok(());
            }
            if let Health::Degraded(why) = self.health() {
                local.dirty = true;
                return Err(if local.registered {
                    DirectoryError::Unavailable(why)
                } else {
                    DirectoryError::NotRegistered
                });
            }
        }
        let _writes = self.inner.writes.lock().await;
        let keys = &self.inner.keys;
        let node = self.node_id();
        let mut inv = self.inner.scripts.sync_room.prepare_invoke();
        inv.key(keys.node(node))
            .key(keys.rooms(node))
            .key(keys.seats(node))
            .key(keys.reservations(node, id));
        {
            let local = lock(&self.inner.local);
            if local.left {
                return Ok(());
            }
            let (rooms, players, load) = self.totals(&local);
            inv.arg(rooms).arg(players).arg(load).arg(id);
            match local.rooms.get(id) {
                Some(room) => inv
                    .arg(self.record_json(room))
                    .arg(if room.public { "1" } else { "0" })
                    .arg(seats_value(room)),
                None => inv.arg("").arg("0").arg(""),
            };
            inv.arg(if new { "1" } else { "0" });
        }
        let written: i64 = self.call(&inv).await?;
        if written == 1 {
            return Ok(());
        }
        // Redis lost the node (restarted) before the refresh noticed.
        self.degrade("redis no longer holds this node; re-registering".into());
        Err(DirectoryError::NotRegistered)
    }

    /// Rooms, players and load of the node (load = players / `node_capacity`, with
    /// four decimals so the scripts compare what the node compared).
    fn totals(&self, local: &Local) -> (usize, u64, String) {
        let players: u64 = local.rooms.values().map(|r| u64::from(r.players)).sum();
        let capacity = self.inner.config.node_capacity;
        let load = if capacity == 0 {
            0.0
        } else {
            players as f64 / f64::from(capacity)
        };
        (local.rooms.len(), players, format!("{load:.4}"))
    }

    fn record_json(&self, room: &RoomInfo) -> String {
        let record = RoomRecord::new(room, self.node_id(), self.public_url());
        // Plain strings, integers and a bool: serialising cannot fail.
        serde_json::to_string(&record).unwrap_or_default()
    }

    /// Runs one script, counting the call and, on failure, degrading.
    async fn call<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, DirectoryError> {
        let mut conn = self.inner.conn.clone();
        self.inner.metrics.redis_calls.inc();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.failed(&e))
    }

    /// Counts a failed call and degrades.
    fn failed(&self, e: &RedisError) -> DirectoryError {
        self.inner.metrics.redis_errors.inc();
        let why = e.to_string();
        self.degrade(why.clone());
        DirectoryError::Unavailable(why)
    }

    /// Marks the directory out of step with Redis: the next sync is a full
    /// registration, and the background task is woken on the way from healthy.
    fn degrade(&self, why: String) {
        lock(&self.inner.local).dirty = true;
        let was_healthy = {
            let mut health = lock(&self.inner.health);
            let was = health.is_healthy();
            *health = Health::Degraded(why.clone());
            was
        };
        self.inner.metrics.degraded.set(1);
        if was_healthy {
            warn!(node = %self.node_id(), why, "cluster directory degraded");
            self.inner.wake.notify_one();
        }
    }

    fn set_healthy(&self) {
        *lock(&self.inner.health) = Health::Healthy;
        self.inner.metrics.degraded.set(0);
    }
}

/// A poisoned lock still holds consistent data here (every critical section is a few
/// assignments), so a panic elsewhere does not take the directory down.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `N` random bytes in hex: reservation ids (128 bits, unguessable, so a ticket cannot
/// be forged by guessing another player's reservation).
fn random_hex<const N: usize>() -> String {
    let bytes: [u8; N] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterSecret;

    fn config() -> ClusterConfig {
        let secret = ClusterSecret::new([7u8; 32]).expect("secret");
        ClusterConfig::new("redis://127.0.0.1:1/", "n1", "ws://n1:8080", secret)
    }

    #[tokio::test]
    async fn a_configuration_that_cannot_work_is_refused_at_start() {
        let mut bad_id = config();
        bad_id.node_id = "n:1".into();
        let mut slow = config();
        slow.refresh = slow.node_ttl;
        let mut url = config();
        url.redis_url = "http://127.0.0.1:1/".into();
        for c in [bad_id, slow, url] {
            assert!(matches!(
                Directory::start(c).map(|_| ()),
                Err(DirectoryError::Config(_))
            ));
        }
    }

    #[tokio::test]
    async fn without_redis_the_node_stays_degraded_and_keeps_its_rooms() {
        let (directory, task) = Directory::start(config()).expect("start");
        assert_eq!(directory.health(), Health::Degraded(NOT_REGISTERED.into()));
        let room = RoomInfo {
            id: "r".into(),
            game: "arena".into(),
            players: 1,
            capacity: 4,
            public: true,
        };
        assert_eq!(
            directory.publish_room(room.clone()).await,
            Err(DirectoryError::NotRegistered)
        );
        assert_eq!(
            lock(&directory.inner.local).rooms.get("r"),
            Some(&room),
            "kept for the registration"
        );
        // The background task ends after leave, even with Redis unreachable.
        let task = tokio::spawn(task);
        assert!(matches!(
            directory.leave().await,
            Err(DirectoryError::Unavailable(_))
        ));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends")
            .expect("no panic");
        assert_eq!(directory.metrics().degraded.get(), 1);
    }
}
