//! The latest-wins snapshot slot between a room and one player's writer.
//!
//! The room puts a snapshot in at every tick without waiting; the writer takes whatever
//! is there when the socket is ready for more. If the writer has not taken the previous
//! one, it is replaced and counted as skipped: a slow player gets fewer, newer
//! snapshots, and never holds up the tick, the other players, or memory.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::room::SnapshotOutlet;
use crate::snapshot::PlayerSnapshot;

#[derive(Debug, Default)]
struct Shared {
    latest: Mutex<Option<PlayerSnapshot>>,
    ready: Notify,
    skipped: AtomicU64,
}

/// The room's end.
#[derive(Debug, Clone)]
pub struct SlotSender(Arc<Shared>);

/// The writer's end.
#[derive(Debug)]
pub struct SlotReceiver(Arc<Shared>);

/// A new empty slot.
pub fn slot() -> (SlotSender, SlotReceiver) {
    let shared = Arc::new(Shared::default());
    (SlotSender(Arc::clone(&shared)), SlotReceiver(shared))
}

impl SnapshotOutlet for SlotSender {
    fn offer(&self, snapshot: PlayerSnapshot) {
        let replaced = self
            .0
            .latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .replace(snapshot);
        if replaced.is_some() {
            self.0.skipped.fetch_add(1, Relaxed);
        }
        // Stores a permit if the writer is busy writing, so it never misses a wake-up.
        self.0.ready.notify_one();
    }
}

impl SlotReceiver {
    /// Waits for a snapshot and takes it. Cancel-safe: a snapshot is only removed from
    /// the slot by the call that returns it.
    pub async fn next(&self) -> PlayerSnapshot {
        loop {
            if let Some(s) = self
                .0
                .latest
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
            {
                return s;
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

    #[tokio::test]
    async fn keeps_only_the_newest_and_counts_the_rest() {
        let (tx, rx) = slot();
        tx.offer(snap(1));
        tx.offer(snap(2));
        tx.offer(snap(3));
        assert_eq!(rx.next().await.frame.tick, 3);
        assert_eq!(rx.take_skipped(), 2);
        assert_eq!(rx.take_skipped(), 0);
        // A wake-up stored while nothing waited does not lose the next snapshot.
        let waiter = tokio::spawn(async move { rx.next().await.frame.tick });
        tokio::task::yield_now().await;
        tx.offer(snap(4));
        assert_eq!(waiter.await.unwrap(), 4);
    }
}
