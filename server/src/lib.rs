//! tickcast-server: authoritative fixed-tick game rooms over WebSockets.
//!
//! The I/O-free core decides behaviour: [`game`] (rules, the demo [`game::Arena`]),
//! [`room`] (players, inputs, one quantised frame per tick), [`snapshot`] (each
//! player's delta against what it holds), [`grid`] (areas of interest), [`schedule`]
//! (when ticks are due), [`limits`] (rate limiting). The async shell moves bytes: [`net`] (HTTP,
//! upgrade, reader and writer per connection), [`rooms`] (the registry and one tick
//! task per room), [`slot`] (the latest-wins hand-off from a room to a writer).
//!
//! [`run`] is the whole server; the binary and the tests call it with a bound listener.

pub mod config;
pub mod game;
pub mod grid;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod room;
pub mod rooms;
pub mod schedule;
pub mod slot;
pub mod snapshot;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use config::Config;
use metrics::Metrics;
use net::handshake::OriginPolicy;
use rooms::Rooms;

/// What every task of a running server shares.
#[derive(Debug)]
pub struct ServerCtx {
    /// The configuration it was started with.
    pub config: Arc<Config>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The rooms.
    pub rooms: Arc<Rooms>,
    /// Allowed browser Origins.
    pub origins: OriginPolicy,
    /// Cancelled to stop the server.
    pub shutdown: CancellationToken,
    /// Every task the server spawns, so shutdown can wait for them.
    pub tasks: TaskTracker,
}

impl ServerCtx {
    /// The view radius in position quanta (0: whole world). Every room uses the Arena's
    /// quantum, [`game::DEFAULT_POS_QUANTUM`].
    pub fn view_radius_quanta(&self) -> i64 {
        (f64::from(self.config.view_radius) / f64::from(game::DEFAULT_POS_QUANTUM)).round() as i64
    }
}

/// Runs the server on `listener` until `shutdown` is cancelled, then closes every
/// connection with 1001 (going away), waits up to `--shutdown-grace` for the close
/// frames to go out, and returns.
///
/// # Errors
/// None today once the listener is bound; kept fallible for future setup steps.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::default());
    let tasks = TaskTracker::new();
    let ctx = Arc::new(ServerCtx {
        origins: OriginPolicy::new(&config.allow_origins),
        rooms: Rooms::new(
            Arc::clone(&config),
            Arc::clone(&metrics),
            tasks.clone(),
            shutdown.clone(),
        ),
        config,
        metrics,
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    });
    info!(addr = %listener.local_addr()?, tick_rate = ctx.config.tick_rate, npcs = ctx.config.npcs, "listening");
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                // Snapshots are latency-sensitive and already one write per message.
                let _ = stream.set_nodelay(true);
                if ctx.config.send_buffer > 0 {
                    if let Err(e) =
                        socket2::SockRef::from(&stream).set_send_buffer_size(ctx.config.send_buffer)
                    {
                        warn!(error = %e, "cannot set the send buffer size");
                    }
                }
                tasks.spawn(net::http::serve(stream, peer, Arc::clone(&ctx)));
            }
            Err(e) => {
                // Usually out of file descriptors: back off briefly instead of spinning.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    info!("shutting down");
    tasks.close();
    if tokio::time::timeout(ctx.config.shutdown_grace, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            remaining = tasks.len(),
            "tasks still running after the shutdown grace; exiting anyway"
        );
    }
    Ok(())
}
