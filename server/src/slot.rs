//! The hand-off between a room and one player's writer: a latest-wins snapshot slot,
//! a small bounded queue of game events, and a disconnect order.
//!
//! The room puts a snapshot in at every tick without waiting; the writer takes whatever
//! is there when the socket is ready for more. If the writer has not taken the previous
//! one, it is replaced and counted as skipped: a slow player gets fewer, newer
//! snapshots, and never holds up the tick, the other players, or memory.
//!
//! Game events are reliable, so they cannot be replaced: they queue, in order, up to
//! the connection's `--reliable-queue`. A player that lets them pile up beyond that is
//! disconnected with `SlowConsumer` rather than let its queue grow without bound. The
//! writer always takes a disconnect first, then events, then the snapshot, so a
//! player sees the events of a tick before that tick's snapshot.
//!
//! # Writing from the tick
//! On a plain-TCP connection the writer lends the slot its [`Direct`] (the socket and
//! the player's snapshot encoder) whenever it has nothing to write. While the slot
//! holds it, [`PlayerOutlet::offer`] encodes the snapshot and writes it with one
//! non-blocking vectored write, in the tick, with no wake-up: the common case costs
//! one `writev`. What the socket does not take at once (it is full, or took part of
//! the frame) becomes the slot's `rest`, the writer is woken, takes the `Direct` back,
//! and finishes the frame when the socket has room; meanwhile newer snapshots wait in
//! the latest-wins slot as before, so a stalled player still only skips snapshots.
//! Anything else for the player (an event, a disconnect, a pong, a ping) also makes the
//! writer take the `Direct` back first, under the same lock the room writes under, so
//! frames never interleave and events still come before their tick's snapshot.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use tickcast_shared::DisconnectReason;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::metrics::Metrics;
use crate::room::PlayerOutlet;
use crate::snapshot::{Encoded, PlayerSnapshot, SnapshotEncoder};

#[derive(Debug, Default)]
struct Pending {
    snapshot: Option<PlayerSnapshot>,
    events: VecDeque<Bytes>,
    disconnect: Option<DisconnectReason>,
    /// The end of a frame the room started writing and the socket did not take: the
    /// writer sends it before anything else.
    rest: Option<Vec<u8>>,
    /// Lent by an idle writer: the room may write snapshots itself.
    direct: Option<Box<Direct>>,
}

impl Pending {
    /// Nothing waits for the writer.
    fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.events.is_empty()
            && self.disconnect.is_none()
            && self.rest.is_none()
    }
}

/// The counters a snapshot write adds to, cloned from the server's metrics once per
/// connection.
#[derive(Debug, Clone)]
pub struct SendCounters {
    snapshots: Counter,
    keyframes: Counter,
    frames: Counter,
    bytes: Counter,
}

impl SendCounters {
    /// The server's snapshot, frame and byte counters.
    pub fn new(metrics: &Metrics) -> Self {
        Self {
            snapshots: metrics.snapshots_sent.clone(),
            keyframes: metrics.keyframes_sent.clone(),
            frames: metrics.frames_sent.clone(),
            bytes: metrics.bytes_sent.clone(),
        }
    }

    /// Counts one snapshot message encoded for the player, before it is written: the
    /// next delta is built against it whatever happens to the write.
    pub fn snapshot(&self, encoded: Encoded) {
        self.snapshots.inc();
        if encoded.keyframe {
            self.keyframes.inc();
        }
    }

    /// Counts one frame of `payload` bytes once it is whole in the socket.
    pub fn frame(&self, payload: usize) {
        self.frames.inc();
        self.bytes.inc_by(payload as u64);
    }
}

/// What writing a player's snapshots takes, handed between its writer and (on plain
/// TCP, while the writer is idle) its room.
#[derive(Debug)]
pub struct Direct {
    /// The socket, when the room may write to it (plain TCP); `None` for TLS.
    socket: Option<Arc<OwnedWriteHalf>>,
    /// What the player's client holds: the base of its next delta.
    pub encoder: SnapshotEncoder,
    /// The message being written, reused.
    pub buf: Vec<u8>,
    /// The payload size of the snapshot whose rest the writer must finish: counted as a
    /// frame once it is whole in the socket.
    unsent: Option<usize>,
    /// Counted on either path, as the writer counts the frames it writes itself.
    pub counters: SendCounters,
}

/// How a write from the tick went.
enum Wrote {
    /// The whole frame is in the socket.
    All,
    /// The socket took only the start (or nothing, or failed): the rest is the writer's.
    Part(Vec<u8>),
    /// The snapshot could not be encoded (not expected): the player must go.
    Failed,
}

impl Direct {
    /// Snapshot state for a player whose client holds nothing yet; `socket` when the
    /// room may write to it itself.
    pub fn new(
        socket: Option<Arc<OwnedWriteHalf>>,
        encoder: SnapshotEncoder,
        counters: SendCounters,
    ) -> Self {
        Self {
            socket,
            encoder,
            buf: Vec::new(),
            unsent: None,
            counters,
        }
    }

    /// Encodes `snapshot` into `buf` and counts it, for the writer to write.
    ///
    /// # Errors
    /// The codec's error (not expected).
    pub fn encode(
        &mut self,
        snapshot: &PlayerSnapshot,
    ) -> Result<Encoded, tickcast_shared::codec::EncodeError> {
        let encoded = self.encoder.encode(snapshot, &mut self.buf)?;
        self.counters.snapshot(encoded);
        Ok(encoded)
    }

    /// Whether the room may write for this player: the socket is a plain TCP one, and
    /// the encode is the cheap whole-world one (a shared body and a header). A view or
    /// a budget makes each player's body its own work, which is better spread over the
    /// writer tasks on every core than done one player after another in the tick.
    fn lendable(&self) -> bool {
        self.socket.is_some() && self.encoder.shares_bodies()
    }

    /// Encodes `snapshot` and writes it as one binary frame without waiting; `None`
    /// when this `Direct` has no socket of its own (TLS).
    fn write_now(&mut self, snapshot: &PlayerSnapshot) -> Option<Wrote> {
        self.socket.as_ref()?;
        let Ok(encoded) = self.encode(snapshot) else {
            return Some(Wrote::Failed);
        };
        let socket = self.socket.as_deref()?;
        let mut header = [0u8; 10];
        let head = binary_header(self.buf.len(), &mut header);
        let total = head.len() + self.buf.len();
        // Full (WouldBlock) or failed counts as nothing written: the writer retries,
        // and meets any error itself.
        let written = socket
            .try_write_vectored(&[IoSlice::new(head), IoSlice::new(&self.buf)])
            .unwrap_or_default();
        if written == total {
            self.counters.frame(encoded.bytes);
            return Some(Wrote::All);
        }
        self.unsent = Some(encoded.bytes);
        let mut rest = Vec::with_capacity(total - written);
        if written < head.len() {
            rest.extend_from_slice(&head[written..]);
            rest.extend_from_slice(&self.buf);
        } else {
            rest.extend_from_slice(&self.buf[written - head.len()..]);
        }
        Some(Wrote::Part(rest))
    }
}

/// The header of one final, unmasked binary frame (a server's) of `len` payload bytes,
/// written into `out`.
pub fn binary_header(len: usize, out: &mut [u8; 10]) -> &[u8] {
    out[0] = 0x82;
    if len < 126 {
        out[1] = len as u8;
        &out[..2]
    } else if let Ok(short) = u16::try_from(len) {
        out[1] = 126;
        out[2..4].copy_from_slice(&short.to_be_bytes());
        &out[..4]
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        &out[..10]
    }
}

#[derive(Debug)]
struct Shared {
    pending: Mutex<Pending>,
    events_capacity: usize,
    ready: Notify,
    skipped: AtomicU64,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        // A poisoned lock only means a panic elsewhere while holding it; the data is
        // still a valid value, so keep going rather than take the player down.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The room's end.
#[derive(Debug, Clone)]
pub struct SlotSender(Arc<Shared>);

/// The writer's end, and the [`Direct`] while the writer holds it.
#[derive(Debug)]
pub struct SlotReceiver {
    shared: Arc<Shared>,
    held: Option<Box<Direct>>,
}

/// What the writer takes next.
#[derive(Debug)]
pub enum Delivery {
    /// The end of a frame the room started: write these bytes as they are, first.
    Rest(Vec<u8>),
    /// End the connection with this reason.
    Disconnect(DisconnectReason),
    /// A game event, encoded.
    Event(Bytes),
    /// The newest snapshot.
    Snapshot(PlayerSnapshot),
}

/// A new empty slot whose event queue holds at most `events_capacity` events.
pub fn slot(events_capacity: usize) -> (SlotSender, SlotReceiver) {
    let shared = Arc::new(Shared {
        pending: Mutex::default(),
        events_capacity: events_capacity.max(1),
        ready: Notify::new(),
        skipped: AtomicU64::new(0),
    });
    (
        SlotSender(Arc::clone(&shared)),
        SlotReceiver { shared, held: None },
    )
}

impl PlayerOutlet for SlotSender {
    fn offer(&self, snapshot: PlayerSnapshot) {
        let mut pending = self.0.lock();
        if pending.is_empty() {
            let wrote = pending
                .direct
                .as_mut()
                .and_then(|direct| direct.write_now(&snapshot));
            if let Some(wrote) = wrote {
                match wrote {
                    Wrote::All => return,
                    Wrote::Part(rest) => pending.rest = Some(rest),
                    Wrote::Failed => {
                        pending.disconnect = Some(DisconnectReason::InternalError);
                    }
                }
                drop(pending);
                self.0.ready.notify_one();
                return;
            }
        }
        drop(pending);
        self.offer_queued(snapshot);
    }

    fn offer_queued(&self, snapshot: PlayerSnapshot) {
        let replaced = self.0.lock().snapshot.replace(snapshot);
        if replaced.is_some() {
            self.0.skipped.fetch_add(1, Relaxed);
        }
        // Stores a permit if the writer is busy writing, so it never misses a wake-up.
        self.0.ready.notify_one();
    }

    fn event(&self, message: Bytes) {
        let mut pending = self.0.lock();
        if pending.events.len() >= self.0.events_capacity {
            pending.events.clear();
            pending
                .disconnect
                .get_or_insert(DisconnectReason::SlowConsumer);
        } else {
            pending.events.push_back(message);
        }
        drop(pending);
        self.0.ready.notify_one();
    }

    fn disconnect(&self, reason: DisconnectReason) {
        self.0.lock().disconnect.get_or_insert(reason);
        self.0.ready.notify_one();
    }
}

impl SlotReceiver {
    /// Waits for something to deliver and takes it: the rest of a frame the room
    /// started, else a disconnect, else the oldest event, else the snapshot. Takes back
    /// a lent [`Direct`] in the same step, so the room writes nothing after it.
    /// Cancel-safe: nothing is removed from the slot but by the call that returns it.
    pub async fn next(&mut self) -> Delivery {
        loop {
            {
                let mut pending = self.shared.lock();
                if !pending.is_empty() && self.held.is_none() {
                    self.held = pending.direct.take();
                }
                if let Some(rest) = pending.rest.take() {
                    return Delivery::Rest(rest);
                }
                if let Some(reason) = pending.disconnect.take() {
                    return Delivery::Disconnect(reason);
                }
                if let Some(event) = pending.events.pop_front() {
                    return Delivery::Event(event);
                }
                if let Some(snapshot) = pending.snapshot.take() {
                    return Delivery::Snapshot(snapshot);
                }
            }
            self.shared.ready.notified().await;
        }
    }

    /// Snapshots replaced before this writer took them, and resets the count.
    pub fn take_skipped(&self) -> u64 {
        self.shared.skipped.swap(0, Relaxed)
    }

    /// Starts holding `direct` (the player is welcomed: snapshots may be encoded).
    pub fn install(&mut self, direct: Direct) {
        self.held = Some(Box::new(direct));
    }

    /// The [`Direct`], once installed, taking it back from the room if lent: from the
    /// return on the room writes nothing until [`SlotReceiver::lend`].
    pub fn direct(&mut self) -> Option<&mut Direct> {
        if self.held.is_none() {
            self.held = self.shared.lock().direct.take();
        }
        self.held.as_deref_mut()
    }

    /// Takes the [`Direct`] back from the room, and the end of a frame it started, if
    /// any: the writer must write that before anything else.
    pub fn take_rest(&mut self) -> Option<Vec<u8>> {
        let mut pending = self.shared.lock();
        if self.held.is_none() {
            self.held = pending.direct.take();
        }
        pending.rest.take()
    }

    /// Lends the [`Direct`] to the room, if it can write (plain TCP) and nothing waits
    /// for the writer: call before waiting.
    pub fn lend(&mut self) {
        let Some(direct) = self.held.take() else {
            return;
        };
        if !direct.lendable() {
            self.held = Some(direct);
            return;
        }
        let mut pending = self.shared.lock();
        if pending.is_empty() {
            pending.direct = Some(direct);
        } else {
            drop(pending);
            self.held = Some(direct);
        }
    }
}

/// Writes what the room could not finish: used by the writer for [`Delivery::Rest`].
///
/// # Errors
/// The socket's error.
pub async fn finish(direct: &mut Direct, rest: &[u8]) -> io::Result<()> {
    match &direct.socket {
        Some(socket) => crate::net::shared_tcp::write_all(socket, rest).await?,
        // Only a lent Direct writes from the room, and only a socket's is lent.
        None => return Err(io::ErrorKind::Unsupported.into()),
    }
    if let Some(payload) = direct.unsent.take() {
        direct.counters.frame(payload);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::WorldFrame;
    use std::sync::Arc;

    fn snap(tick: u64) -> PlayerSnapshot {
        PlayerSnapshot {
            frame: Arc::new(WorldFrame::new(tick, Vec::new())),
            last_input_seq: 0,
            entity: 0,
        }
    }

    fn tick_of(d: Delivery) -> u64 {
        match d {
            Delivery::Snapshot(s) => s.frame.tick,
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn keeps_only_the_newest_and_counts_the_rest() {
        let (tx, mut rx) = slot(4);
        tx.offer(snap(1));
        tx.offer(snap(2));
        tx.offer(snap(3));
        assert_eq!(tick_of(rx.next().await), 3);
        assert_eq!(rx.take_skipped(), 2);
        assert_eq!(rx.take_skipped(), 0);
        // A wake-up stored while nothing waited does not lose the next snapshot.
        let waiter = tokio::spawn(async move { tick_of(rx.next().await) });
        tokio::task::yield_now().await;
        tx.offer(snap(4));
        assert_eq!(waiter.await.unwrap(), 4);
    }

    #[tokio::test]
    async fn events_come_in_order_before_the_snapshot() {
        let (tx, mut rx) = slot(4);
        tx.offer(snap(1));
        tx.event(Bytes::from_static(b"a"));
        tx.event(Bytes::from_static(b"b"));
        for expected in [&b"a"[..], b"b"] {
            match rx.next().await {
                Delivery::Event(e) => assert_eq!(e, expected),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(tick_of(rx.next().await), 1);
    }

    #[tokio::test]
    async fn an_overflowing_event_queue_disconnects_with_slow_consumer() {
        let (tx, mut rx) = slot(2);
        tx.event(Bytes::from_static(b"1"));
        tx.event(Bytes::from_static(b"2"));
        tx.event(Bytes::from_static(b"3"));
        assert!(matches!(
            rx.next().await,
            Delivery::Disconnect(DisconnectReason::SlowConsumer)
        ));
        // The first reason given stands.
        tx.disconnect(DisconnectReason::GameMessageRefused);
        tx.disconnect(DisconnectReason::RoomClosed);
        assert!(matches!(
            rx.next().await,
            Delivery::Disconnect(DisconnectReason::GameMessageRefused)
        ));
    }

    /// A connected pair on loopback: the server's shared write half (lent to a slot)
    /// and the client's end.
    async fn socket_pair() -> (
        Arc<OwnedWriteHalf>,
        tokio::net::TcpStream,
        tokio::net::tcp::OwnedReadHalf,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (server, client) = (accepted.unwrap().0, client.unwrap());
        // Small buffers, so that a peer that does not read fills the socket soon.
        socket2::SockRef::from(&server)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&client)
            .set_recv_buffer_size(4096)
            .unwrap();
        let (read, write) = server.into_split();
        (Arc::new(write), client, read)
    }

    /// One whole frame from `client`: its payload, after checking the header is a
    /// final binary frame, unmasked.
    async fn read_frame(client: &mut tokio::net::TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut head = [0u8; 2];
        client.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], 0x82, "final binary frame");
        let len = match head[1] {
            126 => usize::from(client.read_u16().await.unwrap()),
            127 => usize::try_from(client.read_u64().await.unwrap()).unwrap(),
            n => usize::from(n),
        };
        let mut payload = vec![0; len];
        client.read_exact(&mut payload).await.unwrap();
        payload
    }

    fn world_snap(tick: u64) -> PlayerSnapshot {
        use tickcast_shared::delta::QEntity;
        use tickcast_shared::EntityKind;
        let entities = (1..=3)
            .map(|id| QEntity {
                id,
                kind: EntityKind::Npc,
                pos: [id as i32 * 10 + tick as i32, 0],
                vel: [1, 0],
                fields: Default::default(),
            })
            .collect();
        PlayerSnapshot {
            frame: Arc::new(WorldFrame::new(tick, entities)),
            last_input_seq: tick as u32,
            entity: 1,
        }
    }

    fn tick_in(payload: &[u8]) -> u64 {
        match tickcast_shared::codec::decode_server(payload).unwrap() {
            tickcast_shared::ServerMsg::Snapshot(s) => s.tick,
            other => panic!("expected a snapshot, got {other:?}"),
        }
    }

    fn direct(socket: &Arc<OwnedWriteHalf>, metrics: &Metrics) -> Direct {
        Direct::new(
            Some(Arc::clone(socket)),
            SnapshotEncoder::new(0),
            SendCounters::new(metrics),
        )
    }

    #[tokio::test]
    async fn a_lent_slot_writes_snapshots_from_the_tick_with_nothing_for_the_writer() {
        let (socket, mut client, _read) = socket_pair().await;
        let metrics = Metrics::default();
        let (tx, mut rx) = slot(4);
        rx.install(direct(&socket, &metrics));
        rx.lend();
        for tick in 1..=3 {
            tx.offer(world_snap(tick));
            assert_eq!(tick_in(&read_frame(&mut client).await), tick);
        }
        // Nothing was left for the writer, and every snapshot was counted once.
        assert!(tx.0.lock().is_empty());
        assert_eq!(metrics.snapshots_sent.get(), 3);
        assert_eq!(metrics.frames_sent.get(), 3);
        assert_eq!(rx.take_skipped(), 0);
    }

    #[tokio::test]
    async fn a_full_socket_leaves_the_rest_to_the_writer_and_newer_snapshots_wait() {
        let (socket, mut client, _read) = socket_pair().await;
        let metrics = Metrics::default();
        let (tx, mut rx) = slot(4);
        rx.install(direct(&socket, &metrics));
        rx.lend();
        // The peer is not reading: fill the socket with whole frames from the tick
        // until one does not fit.
        let mut offered = 0;
        loop {
            offered += 1;
            tx.offer(world_snap(offered));
            if !tx.0.lock().is_empty() {
                break;
            }
            assert!(offered < 10_000, "the socket never filled");
        }
        // Two more while the rest waits: latest wins, one counted as skipped.
        tx.offer(world_snap(offered + 1));
        tx.offer(world_snap(offered + 2));
        let Delivery::Rest(rest) = rx.next().await else {
            panic!("expected the rest of the started frame first")
        };
        let reader = tokio::spawn(async move {
            let mut ticks = Vec::new();
            for _ in 0..=offered {
                ticks.push(tick_in(&read_frame(&mut client).await));
            }
            ticks
        });
        // Every encoded snapshot is counted; the frame the socket took only part of
        // is counted as sent once it is whole.
        assert_eq!(metrics.snapshots_sent.get(), offered);
        assert_eq!(metrics.frames_sent.get(), offered - 1);
        let held = rx.direct().expect("taken back with the rest");
        finish(held, &rest).await.unwrap();
        assert_eq!(metrics.frames_sent.get(), offered);
        let Delivery::Snapshot(newest) = rx.next().await else {
            panic!("expected the newest snapshot")
        };
        assert_eq!(newest.frame.tick, offered + 2);
        assert_eq!(rx.take_skipped(), 1);
        let direct = rx.direct().unwrap();
        direct.encode(&newest).unwrap();
        let mut head = [0u8; 10];
        let head = binary_header(direct.buf.len(), &mut head).to_vec();
        crate::net::shared_tcp::write_all(&socket, &[head, direct.buf.clone()].concat())
            .await
            .unwrap();
        let mut expected: Vec<u64> = (1..=offered).collect();
        expected.push(offered + 2);
        assert_eq!(reader.await.unwrap(), expected);
    }

    #[tokio::test]
    async fn an_event_takes_the_socket_back_so_the_snapshot_follows_it() {
        let (socket, _client, _read) = socket_pair().await;
        let metrics = Metrics::default();
        let (tx, mut rx) = slot(4);
        rx.install(direct(&socket, &metrics));
        rx.lend();
        tx.event(Bytes::from_static(b"e"));
        assert!(matches!(rx.next().await, Delivery::Event(_)));
        // The writer holds the socket: this tick's snapshot waits for it.
        tx.offer(world_snap(1));
        assert_eq!(metrics.snapshots_sent.get(), 0);
        assert_eq!(tick_of(rx.next().await), 1);
    }

    #[tokio::test]
    async fn a_player_with_a_view_is_never_written_from_the_tick() {
        let (socket, _client, _read) = socket_pair().await;
        let metrics = Metrics::default();
        let (tx, mut rx) = slot(4);
        rx.install(Direct::new(
            Some(Arc::clone(&socket)),
            SnapshotEncoder::new(100),
            SendCounters::new(&metrics),
        ));
        rx.lend();
        tx.offer(world_snap(1));
        // Its body is its own work: the writer, on any core, encodes and writes it.
        assert_eq!(metrics.snapshots_sent.get(), 0);
        assert_eq!(tick_of(rx.next().await), 1);
        assert!(rx.direct().is_some());
    }

    #[test]
    fn binary_headers_use_the_shortest_length() {
        let mut out = [0u8; 10];
        assert_eq!(binary_header(125, &mut out), [0x82, 125]);
        assert_eq!(binary_header(126, &mut out), [0x82, 126, 0, 126]);
        assert_eq!(binary_header(65_535, &mut out), [0x82, 126, 0xff, 0xff]);
        assert_eq!(
            binary_header(65_536, &mut out),
            [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
    }
}
