//! `--agones`: the server tells the Agones SDK sidecar (its REST API) Ready once it
//! serves, Health at its period, the players Counter as players come and go, and
//! Shutdown last, after the drain; a sidecar that fails or is not there yet never stops
//! the games. The sidecar here is a stub in this process (a hyper server on
//! 127.0.0.1:0) that records every call; its port reaches the server through the
//! config, not the environment, so tests in parallel do not race.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tickcast::server::Config;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Health period of these tests: short, so that several calls arrive quickly.
const HEALTH_PERIOD: Duration = Duration::from_millis(100);

/// One call the stub received.
#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: String,
    at: Instant,
    /// Whether it came with `Content-Type: application/json`.
    json_type: bool,
    /// For `POST /ready`: what the server's `GET /healthz` answered, asked by the stub
    /// while it held the Ready call.
    server_healthz: Option<u16>,
}

impl Call {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} {}: body {:?}: {e}", self.method, self.path, self.body))
    }

    /// `(count, capacity)` of a players Counter update.
    fn counter(&self) -> Option<(String, String)> {
        if !self.is("PATCH", "/v1beta1/counters/players") {
            return None;
        }
        let v = self.json();
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("{k} of {v} is not a string"))
                .to_owned()
        };
        Some((field("count"), field("capacity")))
    }
}

/// What the stub shares with its connections.
struct Shared {
    calls: Mutex<Vec<Call>>,
    /// The status it answers with.
    status: AtomicU16,
    /// The server asked on Ready.
    server: Mutex<Option<SocketAddr>>,
    /// What `GET /gameserver` answers.
    gameserver: Mutex<serde_json::Value>,
}

/// A stub Agones sidecar recording every call.
struct Stub {
    port: u16,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Stub {
    async fn start() -> Self {
        Self::serve(TcpListener::bind("127.0.0.1:0").await.unwrap())
    }

    fn serve(listener: TcpListener) -> Self {
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            calls: Mutex::new(Vec::new()),
            status: AtomicU16::new(200),
            server: Mutex::new(None),
            gameserver: Mutex::new(serde_json::json!({})),
        });
        let task = tokio::spawn(accept(listener, Arc::clone(&shared)));
        Self { port, shared, task }
    }

    fn answer(&self, status: u16) {
        self.shared.status.store(status, Relaxed);
    }

    fn probe(&self, server: SocketAddr) {
        *self.shared.server.lock().unwrap() = Some(server);
    }

    fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// Waits until the calls so far satisfy `done`; returns them.
    async fn wait(&self, what: &str, done: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        eventually(what, || {
            let calls = self.calls();
            let result = if done(&calls) {
                Ok(calls)
            } else {
                Err(summary(&calls))
            };
            async move { result }
        })
        .await
    }

    /// Waits for `n` calls of `method path` in all.
    async fn wait_count(&self, method: &str, path: &str, n: usize) -> Vec<Call> {
        self.wait(&format!("{n} × {method} {path}"), |calls| {
            count_of(calls, method, path) >= n
        })
        .await
    }

    /// Waits for a players Counter update with `(count, capacity)` after `from` calls.
    async fn wait_counter(&self, from: usize, count: u64, capacity: u64) -> usize {
        let want = (count.to_string(), capacity.to_string());
        let calls = self
            .wait(&format!("players Counter {want:?}"), |calls| {
                calls[from.min(calls.len())..]
                    .iter()
                    .any(|c| c.counter().as_ref() == Some(&want))
            })
            .await;
        from + calls[from..]
            .iter()
            .position(|c| c.counter().as_ref() == Some(&want))
            .unwrap()
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn count_of(calls: &[Call], method: &str, path: &str) -> usize {
    calls.iter().filter(|c| c.is(method, path)).count()
}

fn summary(calls: &[Call]) -> String {
    let lines: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {} {}", c.method, c.path, c.body))
        .collect();
    format!("{} calls: {lines:?}", calls.len())
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| record(req, Arc::clone(&shared)));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn record(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let at = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let json_type = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/json");
    let req_is_gameserver = method == "GET" && path == "/gameserver";
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let server = *shared.server.lock().unwrap();
    let server_healthz = match (method.as_str(), path.as_str(), server) {
        ("POST", "/ready", Some(addr)) => Some(http(addr, "GET", "/healthz", "").await.0),
        _ => None,
    };
    shared.calls.lock().unwrap().push(Call {
        method,
        path,
        body,
        at,
        json_type,
        server_healthz,
    });
    let status = StatusCode::from_u16(shared.status.load(Relaxed)).unwrap();
    let answer = if req_is_gameserver {
        shared.gameserver.lock().unwrap().to_string()
    } else {
        "{}".to_owned()
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(answer)))
        .unwrap())
}

/// A test server told to talk to the sidecar on `port`, taking 4 rooms of 8 players
/// (a capacity of 32).
fn agones_config(port: u16) -> Config {
    Config {
        agones: true,
        agones_sdk_port: Some(port),
        agones_health_period: HEALTH_PERIOD,
        max_rooms: 4,
        max_players: 8,
        ..config()
    }
}

/// Joins `room` and says hello; the player is in the room when this returns.
async fn join(server: &TestServer, room: &str) -> Ws {
    let mut ws = connect(&server.ws_url(room)).await;
    hello(&mut ws, "p").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_health_players_then_shutdown_after_the_drain() {
    let stub = Stub::start().await;
    let mut c = agones_config(stub.port);
    c.drain_timeout = WAIT;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    stub.probe(addr);
    let drain = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(tickcast::server::run(listener, c, drain.clone()));
    let server = TestServer {
        addr,
        shutdown: drain.clone(),
        task,
    };

    // Ready first, while the server already answers HTTP.
    let calls = stub.wait_count("POST", "/ready", 1).await;
    let ready = &calls[0];
    assert!(
        ready.is("POST", "/ready"),
        "first call: {}",
        summary(&calls)
    );
    assert_eq!(ready.json(), serde_json::json!({}));
    assert_eq!(
        ready.server_healthz,
        Some(200),
        "the server serves when it says Ready"
    );
    assert_eq!(
        count_of(&calls, "POST", "/ready"),
        1,
        "Ready accepted once is not repeated"
    );

    // Health repeats, with an empty object each time.
    let calls = stub.wait_count("POST", "/health", 3).await;
    for h in calls.iter().filter(|c| c.is("POST", "/health")) {
        assert_eq!(h.json(), serde_json::json!({}));
    }
    assert_eq!(count_of(&calls, "POST", "/ready"), 1);

    // The players Counter: empty, then one player, then empty again.
    let at = stub.wait_counter(0, 0, 32).await;
    let mut player = join(&server, "r1").await;
    let at = stub.wait_counter(at + 1, 1, 32).await;
    leave(&mut player).await;
    let at = stub.wait_counter(at + 1, 0, 32).await;

    // A player in the room when the drain starts: capacity shrinks to the count (no
    // free seat), the server goes on calling Health, and says nothing of Shutdown
    // while the player plays.
    let mut player = join(&server, "r1").await;
    let at = stub.wait_counter(at + 1, 1, 32).await;
    drain.cancel();
    let at = stub.wait_counter(at + 1, 1, 1).await;
    let healths = count_of(&stub.calls(), "POST", "/health");
    stub.wait_count("POST", "/health", healths + 2).await;
    assert_eq!(
        count_of(&stub.calls(), "POST", "/shutdown"),
        0,
        "still draining"
    );
    recv_snapshot(&mut player).await;

    // The last player leaves: the drain is over, the server stops, Shutdown is last.
    let left = Instant::now();
    leave(&mut player).await;
    tokio::time::timeout(WAIT, server.task)
        .await
        .expect("the server stops once the drain is over")
        .unwrap()
        .unwrap();
    let calls = stub.calls();
    let last = calls.last().unwrap();
    assert!(
        last.is("POST", "/shutdown"),
        "last call: {}",
        summary(&calls)
    );
    assert_eq!(last.json(), serde_json::json!({}));
    assert_eq!(
        count_of(&calls, "POST", "/shutdown"),
        1,
        "{}",
        summary(&calls)
    );
    assert!(last.at > left, "Shutdown comes after the last player left");
    assert!(at < calls.len() - 1);
    assert!(calls.iter().all(|c| c.json_type), "every call is JSON");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_answering_500_does_not_stop_the_games() {
    let stub = Stub::start().await;
    stub.answer(500);
    let server = start(agones_config(stub.port)).await;
    let mut watcher = Watcher::join(&server.ws_url("r1")).await;

    // Ready is tried again and again (with backoff), Health goes on at its period, and
    // no Counter update is sent before the sidecar has accepted Ready.
    let calls = stub.wait_count("POST", "/ready", 3).await;
    assert!(calls[0].is("POST", "/ready"), "{}", summary(&calls));
    stub.wait_count("POST", "/health", 3).await;
    assert_eq!(calls.iter().filter_map(Call::counter).count(), 0);
    watcher.advances(10).await;

    // The sidecar recovers: Ready once more, and the Counter with the watcher in it.
    let before = stub.calls().len();
    stub.answer(200);
    let at = stub.wait_counter(before, 1, 32).await;
    let calls = stub.calls();
    let readies: Vec<&Call> = calls[before..=at]
        .iter()
        .filter(|c| c.is("POST", "/ready"))
        .collect();
    assert_eq!(readies.len(), 1, "{}", summary(&calls));
    watcher.advances(10).await;

    // Shutdown refused: tried a bounded number of times, and the server still stops.
    stub.answer(500);
    watcher.finish().await;
    server.stop().await.unwrap();
    let calls = stub.calls();
    assert_eq!(
        count_of(&calls, "POST", "/shutdown"),
        3,
        "{}",
        summary(&calls)
    );
    assert!(calls.last().unwrap().is("POST", "/shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_that_starts_late_is_told_ready_when_it_comes() {
    // A free port with nothing on it yet: connections to it are refused.
    let reserved = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let server = start(agones_config(port)).await;

    // No sidecar: the games go on.
    let mut watcher = Watcher::join(&server.ws_url("r1")).await;
    watcher.advances(30).await;
    let (status, _) = http(server.addr, "GET", "/readyz", "").await;
    assert_eq!(status, 200, "the server is ready to its own probes");

    // The sidecar comes up on its port: Ready, then the Counter.
    let stub = Stub::serve(TcpListener::bind(("127.0.0.1", port)).await.unwrap());
    let calls = stub
        .wait("Ready, then the Counter", |calls| {
            calls.iter().any(|c| c.counter().is_some())
        })
        .await;
    // Health may come first (it keeps its period); Ready follows the first answer
    // at once, not after the backoff that the refused tries built up.
    let first_ready = calls.iter().position(|c| c.is("POST", "/ready"));
    assert!(matches!(first_ready, Some(0 | 1)), "{}", summary(&calls));
    assert_eq!(count_of(&calls, "POST", "/ready"), 1);
    stub.wait_counter(0, 1, 32).await;
    watcher.advances(10).await;
    watcher.finish().await;
    server.stop().await.unwrap();
    assert!(stub.calls().last().unwrap().is("POST", "/shutdown"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_url_comes_from_the_gameserver_resource() {
    let stub = Stub::start().await;
    let discover = || tickcast::server::agones::discover_public_url(stub.port, "ws");
    // Before Agones has placed the pod: no address yet, a clear error.
    *stub.shared.gameserver.lock().unwrap() =
        serde_json::json!({"status": {"state": "Creating", "address": "", "ports": []}});
    let err = discover().await.unwrap_err().to_string();
    assert!(err.contains("no address"), "{err}");
    *stub.shared.gameserver.lock().unwrap() = serde_json::json!({
        "object_meta": {"name": "tickcast-abcde-xyz12"},
        "status": {
            "state": "Scheduled",
            "address": "203.0.113.7",
            "ports": [{"name": "default", "port": 7623}]
        }
    });
    assert_eq!(discover().await.unwrap(), "ws://203.0.113.7:7623");
    stub.answer(500);
    let err = discover().await.unwrap_err().to_string();
    assert!(err.contains("500"), "{err}");
    let calls = stub.calls();
    assert_eq!(
        count_of(&calls, "GET", "/gameserver"),
        3,
        "{}",
        summary(&calls)
    );
}
