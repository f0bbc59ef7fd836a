//! The async shell of the link model: a bot's TCP stream with a bad network in
//! between. [`condition`] takes the connected `TcpStream` and returns the stream the
//! bot uses instead (TLS and the WebSocket go on top of it, unaware). Two tasks pump
//! the bytes, one per direction, each through its own [`LinkModel`]:
//!
//! ```text
//! bot (TLS, WebSocket) <-> duplex pipe <-> [uplink model]   -> TCP -> server
//!                                     <-  [downlink model] <- TCP <-
//! ```
//!
//! A pump reads only while its model has room, so a link slower than the server's
//! snapshots fills the model's bottleneck queue, then the kernel's buffers, and the
//! server meets backpressure (and skips snapshots) as on a real slow link. When the
//! bot drops its stream, the uplink pump sees the end, lets what is in flight arrive,
//! and shuts the TCP write side; the server then closes, which ends the downlink pump.

use bytes::Bytes;
use std::io;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};
use tracing::Instrument;

use super::{LinkModel, LinkSpec, SEGMENT_BYTES};

/// Bytes the pipe between the bot and the pumps holds each way: what the kernel's
/// socket buffer would hold for a bot that is slow to read.
const PIPE_BYTES: usize = 16 * 1024;

/// Most bytes a pump reads at once.
const READ_BYTES: usize = 16 * SEGMENT_BYTES;

/// Runs `tcp` through `spec`, in both directions, with draws seeded by `seed` (the
/// uplink with `seed`, the downlink with a different value derived from it). Returns
/// the stream to use instead of `tcp`. Must be called within a tokio runtime.
pub fn condition(tcp: TcpStream, spec: &LinkSpec, seed: u64) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let (bot_read, bot_write) = tokio::io::split(theirs);
    let (tcp_read, tcp_write) = tcp.into_split();
    let up = LinkModel::new(spec, seed);
    let down = LinkModel::new(spec, seed ^ 0x9e37_79b9_7f4a_7c15);
    tokio::spawn(pump(bot_read, tcp_write, up, "uplink").in_current_span());
    tokio::spawn(pump(tcp_read, bot_write, down, "downlink").in_current_span());
    ours
}

/// Moves bytes from `from` to `to` through `model` until `from` ends (and everything
/// held has arrived) or either side fails.
async fn pump<R, W>(from: R, to: W, model: LinkModel, direction: &'static str)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if let Err(e) = run_pump(from, to, model).await {
        // The ordinary end of a connection that is dropped or reset.
        tracing::debug!(direction, error = %e, "conditioned link ended");
    }
}

/// The loop of [`pump`]. Time is tokio's clock throughout (the model takes it as a
/// `std` instant), so that reads, arrivals and wake-ups are on one clock.
async fn run_pump<R, W>(mut from: R, mut to: W, mut model: LinkModel) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut chunk = vec![0u8; READ_BYTES];
    let mut open = true;
    loop {
        let now = Instant::now();
        // Hand over everything that has arrived; a slow receiver blocks us here, which
        // is backpressure too.
        while let Some(bytes) = model.poll_transmit(now.into_std()) {
            to.write_all(&bytes).await?;
        }
        if !open && model.is_empty() {
            return to.shutdown().await;
        }
        // Read no more than the queue has room for: a larger read would let the model
        // hold more than a real bottleneck does, and hide the slow link from the sender.
        let room = if open {
            model.room(now.into_std()).min(READ_BYTES)
        } else {
            0
        };
        let reading = room > 0;
        // The next arrival, or sooner the moment the queue frees room to read again.
        let mut due = model.poll_timeout();
        if open && !reading {
            due = match (due, model.poll_room(now.into_std())) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let due = due.map(Instant::from_std);
        tokio::select! {
            // `read` is cancel-safe: when the timer wins, nothing was taken from `from`.
            read = from.read(&mut chunk[..room]), if reading => {
                let n = read?;
                if n == 0 {
                    open = false;
                } else {
                    let bytes = Bytes::copy_from_slice(&chunk[..n]);
                    model.handle_bytes(Instant::now().into_std(), bytes);
                }
            }
            () = sleep_until(due.unwrap_or(now)), if due.is_some() => {}
            // Neither reading nor anything due: only a queue that drains by time,
            // which `due` always covers; this branch keeps `select!` total.
            () = std::future::pending::<()>(), if !reading && due.is_none() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};
    use tokio::time::timeout;

    use super::*;
    use crate::link::burst_bytes;

    /// No byte for this long means the pump has stalled; it moves a byte every few ms.
    const STALLED: Duration = Duration::from_secs(20);

    /// A pump whose sender writes far faster than the link's rate (what the server does
    /// to a capped bot) keeps the stream moving: every byte arrives, once and in order,
    /// the stream ends when the sender's does, and by any moment no more has arrived
    /// than the bucket's burst plus the rate for the time since the first write.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flooded_capped_pump_delivers_every_byte_in_order_within_the_rate() {
        let rate = 200_000u64;
        let spec = LinkSpec {
            bandwidth: Some(rate),
            ..LinkSpec::default()
        };
        let (mut sender, pump_in) = tokio::io::duplex(PIPE_BYTES);
        let (pump_out, mut receiver) = tokio::io::duplex(PIPE_BYTES);
        // Half a second of the link, far more than every buffer on the way holds.
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let start = Instant::now();
        tokio::spawn(pump(pump_in, pump_out, LinkModel::new(&spec, 1), "test"));
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            sender.write_all(&sent).await?;
            sender.shutdown().await
        });

        let mut got = Vec::with_capacity(data.len());
        let mut buf = vec![0u8; 4096];
        loop {
            let n = timeout(STALLED, receiver.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("the pump stalled after {} bytes", got.len()))
                .expect("the pipe reads");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            let allowed = burst_bytes(rate) as f64 + rate as f64 * start.elapsed().as_secs_f64();
            assert!(
                got.len() as f64 <= allowed + 1.0,
                "{} bytes by {:?}",
                got.len(),
                start.elapsed()
            );
        }
        assert!(
            got == data,
            "{} of {} bytes, in order",
            got.len(),
            data.len()
        );
        timeout(STALLED, writer)
            .await
            .expect("the sender's writes all completed")
            .expect("the writer task")
            .expect("the writes");
    }

    /// A sender that always has bytes ready, counting down from `left`, and recording
    /// the largest read the pump asked of it.
    struct Flood {
        left: usize,
        largest: Arc<AtomicUsize>,
    }

    impl AsyncRead for Flood {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            self.largest.fetch_max(buf.remaining(), Ordering::Relaxed);
            let n = buf.remaining().min(self.left);
            buf.put_slice(&vec![7u8; n]);
            self.left -= n;
            Poll::Ready(Ok(()))
        }
    }

    /// The pump never takes more than its bottleneck queue has room for, however much
    /// the sender has ready: a read of a whole `READ_BYTES` past the limit would make
    /// the link hold more than a real one, and hide its slowness from the server.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pump_reads_no_more_than_its_queue_has_room_for() {
        let rate = 100_000u64;
        let spec = LinkSpec {
            bandwidth: Some(rate),
            ..LinkSpec::default()
        };
        let limit = spec.queue_limit();
        assert!(
            limit < READ_BYTES,
            "the test needs a queue smaller than a read"
        );
        let largest = Arc::new(AtomicUsize::new(0));
        let total = 40_000;
        let flood = Flood {
            left: total,
            largest: Arc::clone(&largest),
        };
        let (pump_out, mut receiver) = tokio::io::duplex(PIPE_BYTES);
        tokio::spawn(pump(flood, pump_out, LinkModel::new(&spec, 1), "test"));
        let mut got = 0usize;
        let mut buf = vec![0u8; 4096];
        loop {
            let n = timeout(STALLED, receiver.read(&mut buf))
                .await
                .unwrap_or_else(|_| panic!("the pump stalled after {got} bytes"))
                .expect("the pipe reads");
            if n == 0 {
                break;
            }
            got += n;
        }
        assert_eq!(got, total);
        let largest = largest.load(Ordering::Relaxed);
        assert!(
            largest <= limit,
            "a read of {largest} bytes; the queue holds {limit}"
        );
    }
}
