//! The `tickcast-server` binary under real signals, as README.md and docs/HOSTING.md
//! describe it: the first SIGTERM drains (running games go on, `/readyz` turns 503), a
//! second one ends the drain at once, every player gets close 1001, and the process
//! exits with status 0. The signal handling lives in the binary's `main`, which no
//! in-process test reaches; cargo builds the binary for these tests and names it in
//! `CARGO_BIN_EXE_tickcast-server`. Unix only: SIGTERM is sent with `kill -TERM`.

#![cfg(unix)]
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tickcast_client::{ConnectOptions, Connection, Event};
use tickcast_shared::DisconnectReason;

/// Generous bound on anything a test waits for.
const WAIT: Duration = Duration::from_secs(10);

/// A running server process, killed if the test ends while it still runs.
struct Process {
    child: Child,
    /// Its stdout and stderr, line by line (the log, and any error at exit).
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // Cleanup after a failed test; the failure has been reported already.
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

impl Process {
    /// Starts the binary on 127.0.0.1:0 with `args`; returns it with the address its
    /// "listening" log line reports.
    fn start(args: &[&str]) -> (Self, SocketAddr) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tickcast-server"))
            .args(["--listen", "127.0.0.1:0", "--npcs", "16"])
            .args(args)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        forward(child.stdout.take().unwrap(), tx.clone());
        forward(child.stderr.take().unwrap(), tx);
        let mut process = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        let addr = loop {
            let line = process.next_line();
            if let Some(addr) = listening_addr(&line) {
                break addr;
            }
        };
        (process, addr)
    }

    fn next_line(&mut self) -> String {
        let line = self
            .lines
            .recv_timeout(WAIT)
            .unwrap_or_else(|e| panic!("no log line ({e}); so far:\n{}", self.seen.join("\n")));
        self.seen.push(line.clone());
        line
    }

    /// Everything the process has written so far.
    fn log(&mut self) -> String {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        self.seen.join("\n")
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits for the process to exit, at most [`WAIT`].
    async fn exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Sends each line of `from` to `to` on a thread of its own, so the process never
/// blocks on a full pipe.
fn forward(from: impl Read + Send + 'static, to: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            // Once the test has stopped listening, the rest is only drained.
            to.send(line).ok();
        }
    });
}

/// The address of the "listening addr=..." log line, if `line` is it.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    if !line.contains("listening") {
        return None;
    }
    let value = line.split_once("addr=")?.1.split_whitespace().next()?;
    Some(value.parse().unwrap())
}

/// One plain HTTP GET; returns the status and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {raw:?}"));
    let body = raw.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.trim().to_owned())
}

/// A player in room `signals`, with its first snapshot received.
async fn player(addr: SocketAddr) -> Connection {
    let url = format!("ws://{addr}/ws?room=signals");
    let mut conn = Connection::connect(ConnectOptions::new(url, "player"))
        .await
        .unwrap();
    next_snapshot_tick(&mut conn).await;
    conn
}

async fn next_event(conn: &mut Connection) -> Event {
    tokio::time::timeout(WAIT, conn.next_event())
        .await
        .expect("an event in time")
        .expect("the connection works")
}

async fn next_snapshot_tick(conn: &mut Connection) -> u64 {
    loop {
        match next_event(conn).await {
            Event::Snapshot(s) => return s.tick,
            Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
            _ => {}
        }
    }
}

/// Reads until the close; returns its code and reason.
async fn closed(conn: &mut Connection) -> (u16, String) {
    loop {
        if let Event::Closed { code, reason } = next_event(conn).await {
            return (code, reason);
        }
    }
}

fn going_away() -> (u16, String) {
    let r = DisconnectReason::GoingAway;
    (r.code(), r.reason().to_owned())
}

#[tokio::test]
async fn sigterm_drains_closes_players_with_1001_and_exits_0() {
    let (mut server, addr) = Process::start(&["--drain-timeout", "500ms"]);
    assert_eq!(get(addr, "/healthz"), (200, "ok".to_owned()));
    let mut conn = player(addr).await;
    server.sigterm();
    // The drain runs its 500 ms (the player stays), then every player gets 1001.
    assert_eq!(closed(&mut conn).await, going_away());
    let status = server.exit().await;
    assert_eq!(status.code(), Some(0), "{status}:\n{}", server.log());
}

#[tokio::test]
async fn a_second_sigterm_ends_the_drain_at_once_and_exits_0() {
    let (mut server, addr) = Process::start(&["--drain-timeout", "1h"]);
    let mut conn = player(addr).await;
    server.sigterm();
    // The signal is handled by a task of the server: wait for its effect.
    let deadline = Instant::now() + WAIT;
    loop {
        match get(addr, "/readyz") {
            (503, body) if body == "draining" => break,
            (200, body) if body == "ready" => {}
            other => panic!("/readyz answered {other:?}"),
        }
        assert!(Instant::now() < deadline, "no drain:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The game goes on while the drain holds.
    let tick = next_snapshot_tick(&mut conn).await;
    assert!(next_snapshot_tick(&mut conn).await > tick);
    assert!(server.running(), "the drain holds while a player plays");
    // The second signal: 1001 at once (the drain would last an hour), and exit 0.
    server.sigterm();
    assert_eq!(closed(&mut conn).await, going_away());
    let status = server.exit().await;
    assert_eq!(status.code(), Some(0), "{status}:\n{}", server.log());
}
