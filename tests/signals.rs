//! Stopping the server by signal, as README.md and docs/HOSTING.md describe it: the first
//! SIGTERM (or Ctrl-C) drains, a second one ends the drain at once, every player then
//! gets close 1001, and the process exits with status 0.
//!
//! In-process, `run_until`'s two tokens stand for the two signals. The `tickcast-server`
//! binary itself is also run and sent real SIGTERMs (Unix only, `kill -TERM`): the
//! signal handling lives in its `main`, which no in-process test reaches.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::*;
use tickcast::shared::DisconnectReason;
use tokio_util::sync::CancellationToken;

/// The close code and reason every player gets when the server stops.
fn going_away() -> (u16, String) {
    (
        DisconnectReason::GoingAway.code(),
        DisconnectReason::GoingAway.reason().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_ends_the_drain_at_once() {
    let mut c = config();
    // Far beyond the test's own deadlines: only the second signal can end this drain.
    c.drain_timeout = Duration::from_secs(3600);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    let task = tokio::spawn(tickcast::server::run_until(
        listener,
        c,
        drain.clone(),
        force.clone(),
    ));
    let mut player = connect(&format!("ws://{addr}/ws?room=signals")).await;
    hello(&mut player, "stays").await;
    recv_snapshot(&mut player).await;

    // The first signal: the server drains, and the game goes on.
    drain.cancel();
    let (status, body) = http(addr, "GET", "/readyz", "").await;
    assert_eq!((status, body.trim()), (503, "draining"));
    let tick = recv_snapshot(&mut player).await.tick;
    assert_eq!(recv_snapshot(&mut player).await.tick, tick + 1);
    assert!(!task.is_finished(), "the drain holds while a player plays");

    // The second: the player is closed with 1001, and the server returns, within a
    // deadline far shorter than the drain timeout.
    force.cancel();
    assert_eq!(expect_close(&mut player).await, going_away());
    tokio::time::timeout(WAIT, task)
        .await
        .expect("run_until returns once the drain is cut short")
        .unwrap()
        .unwrap();
}

/// The `tickcast-server` binary under real signals. Unix only: SIGTERM is sent with
/// `kill -TERM`, and Windows has no SIGTERM to send.
#[cfg(unix)]
mod binary {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::time::SystemTime;

    use tokio::sync::mpsc;

    /// The server binary. Cargo builds a binary, and tells its path in
    /// `CARGO_BIN_EXE_<name>`, only for the integration tests of the package that owns
    /// it, here `tickcast-server`, not this root package. So it is looked up in the
    /// target directory, next to `deps/` where this test runs from, and must have been
    /// built (`cargo build -p tickcast-server`) after the last change to its sources.
    fn server_binary() -> PathBuf {
        if let Some(path) = option_env!("CARGO_BIN_EXE_tickcast-server") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().unwrap();
        let dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test runs from <target>/<profile>/deps");
        let path = dir.join(format!("tickcast-server{}", std::env::consts::EXE_SUFFIX));
        let build = "build it first: cargo build -p tickcast-server --bin tickcast-server \
                     (with --release if the tests run with --release)";
        let built = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|_| panic!("no server binary at {}; {build}", path.display()));
        // An older binary would test old code.
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let sources = [
            "server/src",
            "shared/src",
            "server/Cargo.toml",
            "Cargo.lock",
        ]
        .iter()
        .map(|p| newest(&root.join(p)))
        .max()
        .unwrap();
        assert!(
            built >= sources,
            "{} is older than the server's sources; {build}",
            path.display()
        );
        path
    }

    /// The newest modification time of a file, or of any file under a directory.
    fn newest(path: &Path) -> SystemTime {
        let meta = std::fs::metadata(path).unwrap();
        if !meta.is_dir() {
            return meta.modified().unwrap();
        }
        std::fs::read_dir(path)
            .unwrap()
            .map(|entry| newest(&entry.unwrap().path()))
            .max()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// A running server process, killed if the test ends while it still runs.
    struct Process {
        child: Child,
        /// Its stdout and stderr, line by line (the log, and any error at exit).
        lines: mpsc::UnboundedReceiver<String>,
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
        /// Starts the binary on 127.0.0.1:0 with `args` and returns it with the address
        /// it reports in its "listening" log line.
        async fn start(args: &[&str]) -> (Self, SocketAddr) {
            let mut child = Command::new(server_binary())
                .args(["--listen", "127.0.0.1:0", "--npcs", "16"])
                .args(args)
                .env("RUST_LOG", "info")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (tx, lines) = mpsc::unbounded_channel();
            let stdout = child.stdout.take().unwrap();
            let stderr = child.stderr.take().unwrap();
            forward(stdout, tx.clone());
            forward(stderr, tx);
            let mut process = Self {
                child,
                lines,
                seen: Vec::new(),
            };
            let addr = loop {
                let line = process.next_line().await;
                if let Some(addr) = listening_addr(&line) {
                    break addr;
                }
            };
            (process, addr)
        }

        fn pid(&self) -> String {
            self.child.id().to_string()
        }

        async fn next_line(&mut self) -> String {
            let line = tokio::time::timeout(WAIT, self.lines.recv())
                .await
                .unwrap_or_else(|_| panic!("no log line in time; so far:\n{}", self.log()))
                .unwrap_or_else(|| panic!("the server's output ended:\n{}", self.log()));
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

        fn running(&mut self) -> bool {
            self.child.try_wait().unwrap().is_none()
        }

        /// Waits for the process to exit, at most [`WAIT`].
        async fn exit(&mut self) -> ExitStatus {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                if let Some(status) = self.child.try_wait().unwrap() {
                    return status;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "still running {WAIT:?} later:\n{}",
                    self.log()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Sends each line read from `from` to `to` on a thread of its own, to the end of
    /// the stream, so the process never blocks on a full pipe.
    fn forward(from: impl std::io::Read + Send + 'static, to: mpsc::UnboundedSender<String>) {
        std::thread::spawn(move || {
            for line in BufReader::new(from).lines() {
                let Ok(line) = line else { break };
                // Once the test has stopped listening, the rest is only drained.
                to.send(line).ok();
            }
        });
    }

    /// The address of the server's "listening addr=..." log line, if `line` is it.
    fn listening_addr(line: &str) -> Option<SocketAddr> {
        let plain = strip_ansi(line);
        if !plain.contains("listening") {
            return None;
        }
        let value = plain.split_once("addr=")?.1.split_whitespace().next()?;
        Some(value.parse().unwrap())
    }

    /// `line` without ANSI escape sequences, in case the log is coloured anyway.
    fn strip_ansi(line: &str) -> String {
        let mut out = String::with_capacity(line.len());
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    fn sigterm(process: &Process) {
        let status = Command::new("kill")
            .args(["-TERM", &process.pid()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -TERM failed: {status}");
    }

    /// Waits for `GET /healthz` to answer 200.
    async fn healthy(addr: SocketAddr) {
        assert_eq!(http(addr, "GET", "/healthz", "").await.0, 200);
    }

    /// A player in a room of the server at `addr`, with its first snapshot received.
    async fn player(addr: SocketAddr) -> Ws {
        let mut ws = connect(&format!("ws://{addr}/ws?room=signals")).await;
        hello(&mut ws, "player").await;
        recv_snapshot(&mut ws).await;
        ws
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigterm_drains_closes_players_with_1001_and_exits_0() {
        let (mut server, addr) = Process::start(&["--drain-timeout", "500ms"]).await;
        healthy(addr).await;
        let mut ws = player(addr).await;
        sigterm(&server);
        // The drain runs its 500 ms (the player stays), then every player gets 1001.
        assert_eq!(expect_close(&mut ws).await, going_away());
        let status = server.exit().await;
        assert_eq!(status.code(), Some(0), "{status}:\n{}", server.log());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_sigterm_ends_the_drain_at_once_and_exits_0() {
        let (mut server, addr) = Process::start(&["--drain-timeout", "1h"]).await;
        healthy(addr).await;
        let mut ws = player(addr).await;

        sigterm(&server);
        // The signal is handled by a task of the server: wait for its effect.
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, body) = http(addr, "GET", "/readyz", "").await;
            if (status, body.trim()) == (503, "draining") {
                break;
            }
            assert_eq!((status, body.trim()), (200, "ready"));
            assert!(
                tokio::time::Instant::now() < deadline,
                "no drain:\n{}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let tick = recv_snapshot(&mut ws).await.tick;
        assert_eq!(
            recv_snapshot(&mut ws).await.tick,
            tick + 1,
            "the game goes on"
        );
        assert!(server.running(), "the drain holds while a player plays");

        // The server waits for the second signal in the same step that starts the drain
        // (nothing is awaited between the two), so once `/readyz` has shown the drain,
        // this one is caught.
        sigterm(&server);
        assert_eq!(expect_close(&mut ws).await, going_away());
        let status = server.exit().await;
        assert_eq!(status.code(), Some(0), "{status}:\n{}", server.log());
    }
}
