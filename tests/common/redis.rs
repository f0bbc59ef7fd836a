//! A real `redis-server` for the cluster tests: Debian's package, started on a free
//! loopback port with no persistence, killed when the guard drops.
//!
//! Outside CI a machine without `redis-server` skips these tests with a `SKIPPED:` line
//! naming the package; under `CI=true` it fails them (`.ci/run` installs the package).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use super::{POLL, WAIT};

/// The program the tests start.
pub const REDIS_SERVER: &str = "redis-server";

/// One `redis-server` process on `127.0.0.1:port`. Dropping it kills the process.
pub struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers `PING`; `None` (after
    /// printing `SKIPPED:`) when `redis-server` is not installed outside CI.
    ///
    /// # Panics
    /// When it is not installed under `CI=true`, or does not start.
    pub fn start(test: &str) -> Option<Self> {
        let installed = Command::new(REDIS_SERVER)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !installed {
            let what =
                "redis-server not found: install redis-server (apt-get install -y redis-server)";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{test}: {what}");
            }
            // The stderr handle itself, which the harness does not capture, so the skip
            // shows in a passing run.
            let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {what}");
            return None;
        }
        // A port the kernel just handed out and took back: free unless another process
        // takes it in the moment between, when redis-server exits and another is tried.
        let mut tries = 0;
        loop {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut server = Self { port, child: None };
            match server.spawn() {
                Ok(()) => return Some(server),
                Err(e) if tries < 3 => {
                    tries += 1;
                    let _ = writeln!(std::io::stderr(), "{test}: {e}; trying another port");
                }
                Err(e) => panic!("{test}: {e}"),
            }
        }
    }

    /// `redis://127.0.0.1:port/`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port, empty (nothing was persisted).
    pub fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn() {
            panic!("restart: {e}");
        }
    }

    /// Starts `redis-server` on `self.port` and waits until it answers; an error when it
    /// exits first (the port was taken).
    fn spawn(&mut self) -> Result<(), String> {
        let child = Command::new(REDIS_SERVER)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().display().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + WAIT;
        while !self.answers_ping() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return Err(format!(
                    "redis-server on port {} exited: {status}",
                    self.port
                ));
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer on port {} within {WAIT:?}",
                self.port
            );
            std::thread::sleep(POLL);
        }
        Ok(())
    }

    fn answers_ping(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, POLL * 10) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(POLL * 10));
        let mut reply = [0u8; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
