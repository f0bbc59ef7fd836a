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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tickcast_shared::DisconnectReason;
use tokio::sync::Notify;

use crate::room::PlayerOutlet;
use crate::snapshot::PlayerSnapshot;

#[derive(Debug, Default)]
struct Pending {
    snapshot: Option<PlayerSnapshot>,
    events: VecDeque<Bytes>,
    disconnect: Option<DisconnectReason>,
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

/// The writer's end.
#[derive(Debug)]
pub struct SlotReceiver(Arc<Shared>);

/// What the writer takes next.
#[derive(Debug)]
pub enum Delivery {
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
    (SlotSender(Arc::clone(&shared)), SlotReceiver(shared))
}

impl PlayerOutlet for SlotSender {
    fn offer(&self, snapshot: PlayerSnapshot) {
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
    /// Waits for something to deliver and takes it: a disconnect, else the oldest
    /// event, else the snapshot. Cancel-safe: nothing is removed from the slot but by
    /// the call that returns it.
    pub async fn next(&self) -> Delivery {
        loop {
            {
                let mut pending = self.0.lock();
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
            self.0.ready.notified().await;
        }
    }

    /// Snapshots replaced before this writer took them, and resets the count.
    pub fn take_skipped(&self) -> u64 {
        self.0.skipped.swap(0, Relaxed)
    }
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
        let (tx, rx) = slot(4);
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
        let (tx, rx) = slot(4);
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
        let (tx, rx) = slot(2);
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
}
