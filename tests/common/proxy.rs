//! A TCP proxy on 127.0.0.1:0 that a test can cut like a network failure: both sockets
//! of every connection proxied so far are dropped, so each side sees its connection end
//! without a WebSocket close frame. It can also refuse new connections for a while.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A proxy in front of one server.
pub struct Proxy {
    pub addr: SocketAddr,
    state: Arc<ProxyState>,
    task: JoinHandle<()>,
}

struct ProxyState {
    /// Cancelled to cut every connection proxied so far; replaced by a fresh one.
    cut: Mutex<CancellationToken>,
    /// Until then, new connections are dropped as soon as they are accepted.
    refuse_until: Mutex<Option<Instant>>,
    /// Connections proxied to the server.
    proxied: AtomicUsize,
    /// Connections dropped while refusing.
    refused: AtomicUsize,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(ProxyState {
            cut: Mutex::new(CancellationToken::new()),
            refuse_until: Mutex::new(None),
            proxied: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let refusing = shared
                    .refuse_until
                    .lock()
                    .unwrap()
                    .is_some_and(|until| Instant::now() < until);
                if refusing {
                    shared.refused.fetch_add(1, Ordering::SeqCst);
                    drop(client);
                    continue;
                }
                shared.proxied.fetch_add(1, Ordering::SeqCst);
                let cut = shared.cut.lock().unwrap().clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    // On a cut both sockets are dropped here: each side sees its
                    // connection end without a WebSocket close frame.
                    tokio::select! {
                        () = cut.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
                });
            }
        });
        Proxy { addr, state, task }
    }

    /// The WebSocket URL of `room` through the proxy.
    pub fn url(&self, room: &str) -> String {
        format!("ws://{}/ws?room={room}", self.addr)
    }

    /// Cuts every connection proxied so far; later ones go through.
    pub fn cut(&self) {
        let mut cut = self.state.cut.lock().unwrap();
        cut.cancel();
        *cut = CancellationToken::new();
    }

    /// Cuts, and drops every new connection for `refuse`.
    pub fn cut_and_refuse(&self, refuse: Duration) {
        *self.state.refuse_until.lock().unwrap() = Some(Instant::now() + refuse);
        self.cut();
    }

    /// Ends a refusal started by [`Proxy::cut_and_refuse`]: new connections go through.
    pub fn accept_again(&self) {
        *self.state.refuse_until.lock().unwrap() = None;
    }

    /// How many connections it has proxied to the server.
    pub fn proxied(&self) -> usize {
        self.state.proxied.load(Ordering::SeqCst)
    }

    /// How many connections it has dropped while refusing.
    pub fn refused(&self) -> usize {
        self.state.refused.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}
