//! A well-behaved player in the room under test, reading in its own task: the witness
//! that a room plays on while the test does something to another player or the server.

use futures_util::StreamExt;
use tickcast::shared::codec::decode_server;
use tickcast::shared::delta::World;
use tickcast::shared::ServerMsg;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::{connect, hello, Ws, WAIT};

/// It reads everything (tungstenite answers the server's pings), applies every snapshot
/// to the world it holds, and publishes the newest tick it applied. Its task panics if
/// the connection ends, a tick is not newer than the one before, or a snapshot does not
/// apply (a delta against something the player does not hold).
pub struct Watcher {
    /// The newest tick it has received and applied (0 before its first snapshot).
    latest: watch::Receiver<u64>,
    stop: CancellationToken,
    /// Every tick it received, in order, once `stop` fires.
    task: JoinHandle<Vec<u64>>,
}

impl Watcher {
    /// Joins `url`; the player is in the room when this returns.
    pub async fn join(url: &str) -> Self {
        let mut ws = connect(url).await;
        hello(&mut ws, "watcher").await;
        Self::watch(ws)
    }

    /// Watches a player that is already in its room (its `Welcome` read), however it
    /// joined: with a player token, through a ticket, ...
    pub fn watch(ws: Ws) -> Self {
        let (tx, latest) = watch::channel(0);
        let stop = CancellationToken::new();
        let task = tokio::spawn(watch_snapshots(ws, tx, stop.clone()));
        Self { latest, stop, task }
    }

    /// The newest tick it has applied (0 before its first snapshot).
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Waits until it has received a snapshot of a tick after `tick`; returns that tick.
    pub async fn wait_past(&mut self, tick: u64) -> u64 {
        let seen = tokio::time::timeout(WAIT, self.latest.wait_for(|t| *t > tick))
            .await
            .unwrap_or_else(|_| panic!("the watcher received nothing after tick {tick}"))
            .expect("the watcher's task ended (see its panic above)");
        *seen
    }

    /// Waits until it has received a snapshot at least `ticks` (1 or more) ticks newer
    /// than the one it held when called: the room still ticks and this player still
    /// hears about it.
    pub async fn advances(&mut self, ticks: u64) {
        assert!(ticks >= 1, "advancing by no tick proves nothing");
        let from = self.latest();
        self.wait_past(from + ticks - 1).await;
    }

    /// Stops it; returns every tick it received, in order.
    pub async fn finish(self) -> Vec<u64> {
        self.stop.cancel();
        self.task.await.expect("the watcher failed")
    }
}

async fn watch_snapshots(
    mut ws: Ws,
    latest: watch::Sender<u64>,
    stop: CancellationToken,
) -> Vec<u64> {
    let mut world = World::default();
    let mut ticks: Vec<u64> = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            msg = ws.next() => match msg {
                Some(Ok(Message::Binary(b))) => {
                    if let ServerMsg::Snapshot(s) = decode_server(&b).unwrap() {
                        let prev = ticks.last().copied().unwrap_or(0);
                        assert!(s.tick > prev, "tick {} after {prev}", s.tick);
                        world.apply(&s).unwrap_or_else(|e| panic!("tick {}: {e}", s.tick));
                        ticks.push(s.tick);
                        latest.send_replace(s.tick);
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("the watcher lost its connection: {other:?}"),
            }
        }
    }
    ticks
}
