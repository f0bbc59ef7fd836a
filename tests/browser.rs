//! The playable page (`GET /`) in a real browser: headless Chromium (Debian's
//! `chromium`), driven by puppeteer-core from `web/browser/<scenario>.mjs`.
//!
//! Each test starts the server in this process, and what else its scenario needs (bots
//! on the client library that record what they see, a TCP proxy to cut a connection, a
//! static page on another origin), then runs `node web/browser/<scenario>.mjs <json>`.
//! The scenario prints one JSON line per step it reaches and waits for the test's answer
//! on stdin (so that the test cuts the connection, or reads its bots, at the right
//! moment), then one line with its result, which the test checks against what the
//! server and the bots saw. See `web/browser/lib.mjs` for the line protocol.
//!
//! Without Chromium, node or `web/node_modules/puppeteer-core` these tests are not a
//! pass: under `CI=true` they fail and say what to install; elsewhere they say loudly
//! on stderr that they skipped. Whatever happens, the test ends node and Chromium (and
//! removes the browser's fresh profile) when it drops its `Scenario`, so no browser
//! outlives its test. The tests take turns (one browser at a time): each is timed
//! against the game's ticks, and two browsers at once on a small machine only make
//! that noisier.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use common::browser::*;
use common::*;
use glam::Vec2;
use serde_json::{json, Value};
use tickcast::client::{ConnectOptions, Connection, Event};
use tickcast::server::game::AVATAR_SPEED;
use tickcast::server::Config;
use tickcast::shared::{EntityKind, EntityState, Welcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// One browser at a time (see the module doc): held for the whole test.
async fn one_browser_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// Prints a measured figure where a passing run shows it (see `browser_available`).
fn report(line: &str) {
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A running `node web/browser/<name>.mjs`: its lines, its stdin for answers, and what
/// it wrote to stderr (shown when the test fails). Dropping it ends node and Chromium
/// (see `Drop`) and removes the browser's profile.
struct Scenario {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    profile: PathBuf,
    /// Chromium's pid, the id of its process group, once node has said it.
    browser: Option<u32>,
    /// Whether the result line came (node then exits by itself, the browser closed).
    finished: bool,
}

impl Scenario {
    /// Starts the scenario with `args`, to which the browser's fresh profile directory
    /// and the deadline are added.
    fn start(name: &'static str, mut args: Value) -> Scenario {
        static RUNS: AtomicUsize = AtomicUsize::new(0);
        let profile = std::env::temp_dir().join(format!(
            "tickcast-browser-{}-{}",
            std::process::id(),
            RUNS.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&profile).unwrap();
        args["userDataDir"] = json!(profile);
        args["deadlineMs"] = json!(SCENARIO_DEADLINE.as_millis() as u64);
        args["chromium"] = json!(CHROMIUM);
        let mut child = Command::new("node")
            .arg(repo().join(format!("web/browser/{name}.mjs")))
            .arg(args.to_string())
            .current_dir(repo())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own, led by node, which `Drop` can kill whole (puppeteer
            // starts Chromium in yet another group, which it reports).
            .process_group(0)
            .spawn()
            .expect("node starts");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Scenario {
            name,
            child,
            stdin,
            lines,
            stderr,
            profile,
            browser: None,
            finished: false,
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Notes a `{"browser": PID}` line; true if `value` was one.
    fn browser_line(&mut self, value: &Value) -> bool {
        match value.get("browser") {
            Some(pid) => {
                self.browser = pid.as_u64().and_then(|p| u32::try_from(p).ok());
                true
            }
            None => false,
        }
    }

    /// The next step or result line, parsed. Panics on an `error` line, on the end of
    /// output, and if nothing comes before the scenario's deadline.
    async fn next(&mut self) -> Value {
        let limit = SCENARIO_DEADLINE + Duration::from_secs(10);
        loop {
            let line = match tokio::time::timeout(limit, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!(
                    "{}: node ended without a result; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
                Err(_) => panic!(
                    "{}: nothing for {limit:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                ),
            };
            let value: Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", self.name));
            if self.browser_line(&value) {
                continue;
            }
            if let Some(error) = value.get("error") {
                panic!(
                    "{}: {}\nstderr:\n{}",
                    self.name,
                    error.as_str().unwrap_or_default(),
                    self.stderr()
                );
            }
            self.finished = value.get("result").is_some();
            return value;
        }
    }

    /// Waits for step `name` and returns its line.
    async fn step(&mut self, name: &str) -> Value {
        let value = self.next().await;
        assert_eq!(value["step"], name, "{}: {value}", self.name);
        value
    }

    /// Lets the scenario go on past the step it waits at, with `answer`.
    fn answer(&mut self, answer: Value) {
        writeln!(self.stdin, "{answer}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Waits for the result line and returns the result.
    async fn result(&mut self) -> Value {
        let value = self.next().await;
        match value.get("result") {
            Some(result) => result.clone(),
            None => panic!("{}: expected the result, got {value}", self.name),
        }
    }
}

/// Sends `signal` to `target` (a pid, or `-pgid` for a whole process group) with
/// kill(1); false if kill could not be run or did not deliver it.
fn kill(signal: &str, target: &str) -> bool {
    Command::new("kill")
        .args([signal, "--", target])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Waits up to `limit` for `child` to exit (and reaps it); true if it did.
fn exited_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if std::time::Instant::now() >= deadline => return false,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for Scenario {
    /// Node, then Chromium, whatever state the test left them in. After its result
    /// node exits by itself, the browser closed. Otherwise (the test failed, or the
    /// scenario hangs) SIGTERM makes node exit, and puppeteer kills Chromium's process
    /// group as node exits. If node has not exited in 5 s, its process group is killed
    /// (before node is reaped, so that its id cannot belong to another group yet), and
    /// so is Chromium's if it still runs.
    fn drop(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                self.browser_line(&value);
            }
        }
        let node = self.child.id();
        if !self.finished {
            kill("-TERM", &node.to_string());
        }
        if !exited_within(&mut self.child, Duration::from_secs(5)) {
            if !kill("-KILL", &format!("-{node}")) {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
        if let Some(pid) = self.browser {
            // Only while that pid is still Chromium's (a live process keeps its pid).
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains("chromium") {
                kill("-KILL", &format!("-{pid}"));
            }
        }
        // Chromium's last processes may still be writing into its profile for a moment.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.profile).is_ok() || !self.profile.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }
}

/// What a bot saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Every snapshot's tick, with the avatars in it (world units).
    avatars: Vec<(u64, Vec<EntityState>)>,
    /// Entities in the latest snapshot.
    entities: usize,
    /// WebSocket payload bytes received so far.
    bytes: u64,
    /// Why the bot stopped early, if it did.
    error: Option<String>,
}

impl Seen {
    /// The avatar `id` in the latest snapshot that has it, with that snapshot's tick.
    fn latest(&self, id: u32) -> Option<(u64, EntityState)> {
        self.avatars
            .iter()
            .rev()
            .find_map(|(tick, avatars)| avatars.iter().find(|e| e.id == id).map(|e| (*tick, *e)))
    }

    /// The positions of avatar `id`, tick by tick, from snapshot `from` on.
    fn track(&self, id: u32, from: usize) -> Vec<(u64, EntityState)> {
        self.avatars[from..]
            .iter()
            .filter_map(|(tick, avatars)| avatars.iter().find(|e| e.id == id).map(|e| (*tick, *e)))
            .collect()
    }
}

/// How a bot steers: the movement to send after the snapshot of a tick.
type Steer = fn(u64) -> Vec2;

/// A player on the Rust client library, played by a task of the test: it reads every
/// snapshot, records the avatars in it, and (if it steers) sends an input per snapshot.
struct Bot {
    welcome: Welcome,
    seen: Arc<Mutex<Seen>>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Bot {
    async fn join(url: &str, name: &str, steer: Option<Steer>) -> Bot {
        let mut conn = Connection::connect(ConnectOptions::new(url, name))
            .await
            .unwrap_or_else(|e| panic!("{name} joins: {e}"));
        let welcome = conn.welcome().clone();
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let seen = Arc::clone(&seen);
            let stop = stop.clone();
            async move {
                loop {
                    let event = tokio::select! {
                        () = stop.cancelled() => break,
                        event = conn.next_event() => event,
                    };
                    match event {
                        Ok(Event::Snapshot(snapshot)) => {
                            let session = conn.session();
                            let avatars = session
                                .entities()
                                .filter(|e| e.kind == EntityKind::Avatar)
                                .collect();
                            {
                                let mut seen = seen.lock().unwrap();
                                seen.avatars.push((snapshot.tick, avatars));
                                seen.entities = session.world().entities.len();
                                seen.bytes = session.stats().bytes_received;
                            }
                            if let Some(steer) = steer {
                                if let Err(e) = conn.send_input(steer(snapshot.tick), 0).await {
                                    seen.lock().unwrap().error = Some(e.to_string());
                                    break;
                                }
                            }
                        }
                        Ok(_) => {}
                        Err(e) => {
                            seen.lock().unwrap().error = Some(e.to_string());
                            break;
                        }
                    }
                }
                let _ = conn.close("done").await;
            }
        });
        Bot {
            welcome,
            seen,
            stop,
            task,
        }
    }

    fn entity(&self) -> u32 {
        self.welcome.entity_id
    }

    fn seen(&self) -> MutexGuard<'_, Seen> {
        self.seen.lock().unwrap()
    }

    /// Polls what the bot saw until `found` finds something in it, and returns that.
    async fn until<T>(&self, what: &str, found: impl Fn(&Seen) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            {
                let seen = self.seen();
                if let Some(value) = found(&seen) {
                    return value;
                }
                assert!(seen.error.is_none(), "{what}: the bot stopped: {seen:?}");
                assert!(Instant::now() < deadline, "{what}: not seen in {WAIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until the bot sees avatar `id` standing still, and returns it.
    async fn until_still(&self, id: u32) -> EntityState {
        self.until(&format!("avatar {id} standing still"), |seen| {
            seen.latest(id)
                .map(|(_, e)| e)
                .filter(|e| e.vel == Vec2::ZERO)
        })
        .await
    }

    /// Stops the bot (closing its connection) and returns what it saw.
    async fn stop(self) -> Seen {
        self.stop.cancel();
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
        let seen = self.seen.lock().unwrap().clone();
        assert_eq!(seen.error, None, "the bot failed");
        seen
    }
}

/// An HTTP server on 127.0.0.1:0 that answers every request with one HTML page: a
/// page of another origin than the tickcast server's.
struct Elsewhere {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Elsewhere {
    async fn start(html: &'static str) -> Elsewhere {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    // The request head, up to its blank line (or 8 KiB, or 5 s).
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                        match tokio::time::timeout(WAIT / 2, socket.read(&mut buf)).await {
                            Ok(Ok(n @ 1..)) => head.extend_from_slice(&buf[..n]),
                            _ => return,
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{html}",
                        html.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Elsewhere { addr, task }
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The page's avatars in a result, by id.
fn drawn(hook: &Value) -> Vec<(u64, String, f64, f64)> {
    hook["entities"]
        .as_array()
        .unwrap_or_else(|| panic!("no entities in {hook}"))
        .iter()
        .map(|e| {
            (
                e["id"].as_u64().unwrap(),
                e["kind"].as_str().unwrap().to_owned(),
                e["x"].as_f64().unwrap(),
                e["y"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Where the page draws entity `id`.
fn drawn_at(hook: &Value, id: u64) -> Vec2 {
    drawn(hook)
        .into_iter()
        .find(|e| e.0 == id)
        .map(|(_, _, x, y)| Vec2::new(x as f32, y as f32))
        .unwrap_or_else(|| panic!("entity {id} is not drawn: {hook}"))
}

fn own(hook: &Value) -> Vec2 {
    let own = &hook["own"];
    Vec2::new(
        own["x"]
            .as_f64()
            .unwrap_or_else(|| panic!("no own position: {hook}")) as f32,
        own["y"].as_f64().unwrap() as f32,
    )
}

/// The ids of the drawn entities of one kind, sorted.
fn ids_of(hook: &Value, kind: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = drawn(hook)
        .into_iter()
        .filter(|e| e.1 == kind)
        .map(|e| e.0)
        .collect();
    ids.sort_unstable();
    ids
}

/// How long, in seconds, the page saw a key held (`holdKey` in web/browser/lib.mjs):
/// from its `keydown` event to its `keyup` event, which it must both have seen.
fn page_held(held: &Value) -> f32 {
    let ms = held["pageHeldMs"]
        .as_f64()
        .unwrap_or_else(|| panic!("the page did not see the key pressed and released: {held}"));
    ms as f32 / 1000.0
}

/// A page's uncaught exceptions are failures, whatever the scenario.
fn no_page_errors(page: &Value) {
    assert_eq!(page["errors"], json!([]), "uncaught exceptions in the page");
}

/// The key that moves an avatar at `pos` along x away from the nearer wall, and the
/// sign of the move.
fn x_key(pos: Vec2, world: Vec2) -> (&'static str, f32) {
    if pos.x < world.x / 2.0 {
        ("KeyD", 1.0)
    } else {
        ("KeyA", -1.0)
    }
}

/// The same along y (KeyS moves down the screen, which is +y in the world).
fn y_key(pos: Vec2, world: Vec2) -> (&'static str, f32) {
    if pos.y < world.y / 2.0 {
        ("KeyS", 1.0)
    } else {
        ("KeyW", -1.0)
    }
}

/// How far from the segment `a`-`b` the point `p` is.
fn off_segment(p: Vec2, a: Vec2, b: Vec2) -> f32 {
    let ab = b - a;
    let t = if ab.length_squared() == 0.0 {
        0.0
    } else {
        ((p - a).dot(ab) / ab.length_squared()).clamp(0.0, 1.0)
    };
    p.distance(a + ab * t)
}

/// How far `p` is from the path of `track` (straight between consecutive snapshots):
/// an interpolated position lies on it.
fn off_track(p: Vec2, track: &[(u64, EntityState)]) -> f32 {
    track
        .windows(2)
        .map(|w| off_segment(p, w[0].1.pos, w[1].1.pos))
        .fold(f32::INFINITY, f32::min)
}

/// Bots move around a circle, a turn in 8 s (radius about 127 units), each starting
/// in another direction: always moving, never for long against a wall.
fn circling(tick: u64) -> Vec2 {
    Vec2::from_angle(tick as f32 * std::f32::consts::TAU / (8.0 * 30.0))
}

fn circling_1(tick: u64) -> Vec2 {
    circling(tick + 48)
}
fn circling_2(tick: u64) -> Vec2 {
    circling(tick + 96)
}
fn circling_3(tick: u64) -> Vec2 {
    circling(tick + 144)
}
fn circling_4(tick: u64) -> Vec2 {
    circling(tick + 192)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pages_and_bots_share_a_room() {
    if !browser_available("two_pages_and_bots_share_a_room", "the page") {
        return;
    }
    let _turn = one_browser_at_a_time().await;
    let c = config();
    let npcs = c.npcs as usize;
    let server = start(c).await;
    let room = "shared";
    let url = server.ws_url(room);
    let steers: [Steer; 5] = [circling, circling_1, circling_2, circling_3, circling_4];
    let mut bots = Vec::new();
    for (i, steer) in steers.into_iter().enumerate() {
        bots.push(Bot::join(&url, &format!("bot-{i}"), Some(steer)).await);
    }
    let bot_ids: Vec<u32> = bots.iter().map(Bot::entity).collect();
    let world = bots[0].welcome.world_size;

    let hold = Duration::from_millis(800);
    let mut sc = Scenario::start(
        "share",
        json!({
            "base": format!("http://{}", server.addr),
            "room": room,
            "bots": bot_ids,
            "holdMs": hold.as_millis() as u64,
            "settleMs": 600,
        }),
    );
    let joined = sc.step("joined").await;
    let page_ids: Vec<u32> = (0..2)
        .map(|i| joined["pages"][i]["entityId"].as_u64().unwrap() as u32)
        .collect();
    // Page 0 moves along x, page 1 along y, each away from its nearer wall.
    let start0 = bots[0].until_still(page_ids[0]).await;
    let start1 = bots[0].until_still(page_ids[1]).await;
    let (key0, sign0) = x_key(start0.pos, world);
    let (key1, sign1) = y_key(start1.pos, world);
    let moves_from = bots[0].seen().avatars.len();
    sc.answer(json!({ "keys": [key0, key1] }));

    sc.step("settled").await;
    // Both pages have let go of their keys: the server holds each avatar still where
    // the pages must draw it.
    let end0 = bots[0].until_still(page_ids[0]).await;
    let end1 = bots[0].until_still(page_ids[1]).await;
    sc.answer(json!({}));
    let result = sc.result().await;
    drop(sc);

    let mut seen = Vec::new();
    for bot in bots {
        seen.push(bot.stop().await);
    }
    let seen = &seen[0];
    let pages = result["pages"].as_array().unwrap();
    let mut avatar_ids: Vec<u64> = bot_ids
        .iter()
        .chain(&page_ids)
        .map(|&id| id.into())
        .collect();
    avatar_ids.sort_unstable();
    for (i, page) in pages.iter().enumerate() {
        let other = page_ids[1 - i];
        no_page_errors(page);
        let (before, after) = (&page["before"], &page["after"]);
        assert_eq!(after["state"], "playing", "page {i}");
        assert_eq!(after["room"], room, "page {i}");
        assert_eq!(
            after["entityId"].as_u64(),
            Some(page_ids[i].into()),
            "page {i}"
        );
        assert_eq!(
            after["players"].as_u64(),
            Some(7),
            "page {i}: 5 bots and 2 pages"
        );
        assert_eq!(
            after["entityCount"].as_u64(),
            Some((npcs + 7) as u64),
            "page {i}"
        );
        // Every player's avatar is drawn, the other page's among them, and every NPC.
        assert_eq!(ids_of(after, "Avatar"), avatar_ids, "page {i}'s avatars");
        assert_eq!(ids_of(after, "Npc").len(), npcs, "page {i}'s NPCs");

        // The pages stood still before the keys and after them, where the server has
        // them (the bot's view is the server's, quantised).
        for (id, start, end) in [(page_ids[0], start0, end0), (page_ids[1], start1, end1)] {
            assert!(
                drawn_at(before, id.into()).distance(start.pos) < 1e-3,
                "page {i} draws avatar {id} at {} before, the server has {}",
                drawn_at(before, id.into()),
                start.pos
            );
            assert!(
                drawn_at(after, id.into()).distance(end.pos) < 1e-3,
                "page {i} draws avatar {id} at {} after, the server has {}",
                drawn_at(after, id.into()),
                end.pos
            );
        }
        // Each page sees the other page's avatar move along the other's key only.
        let moved = drawn_at(after, other.into()) - drawn_at(before, other.into());
        let (along, across, sign) = if other == page_ids[0] {
            (moved.x, moved.y, sign0)
        } else {
            (moved.y, moved.x, sign1)
        };
        let held = page_held(&page["held"]);
        assert_eq!(
            across, 0.0,
            "page {i}: the other avatar moved across its key"
        );
        // In the key's direction, and no further than the key was held allows. How far
        // depends on when the page's frame loop got to send the press and the release,
        // which a loaded machine delays (a run moved 39.75 units for a key held 0.81 s),
        // so there is no lower bound beyond moving at all; where it ended is checked
        // exactly above, against the server.
        assert!(
            along * sign > 0.0 && along * sign < AVATAR_SPEED * (held + 0.5),
            "page {i}: the other avatar moved {along} for a key held {held} s"
        );
        // Its own avatar, predicted, ends where the server put it.
        let server_end = if i == 0 { end0.pos } else { end1.pos };
        assert!(
            own(after).distance(server_end) < 1e-3,
            "page {i}: own avatar predicted at {}, the server has {server_end}",
            own(after)
        );
        // Each bot moved in the page, along the path the server gave it.
        for &bot in &bot_ids {
            let track = seen.track(bot, moves_from.saturating_sub(30));
            let (from, to) = (drawn_at(before, bot.into()), drawn_at(after, bot.into()));
            assert!(from.distance(to) > 20.0, "page {i}: bot {bot} did not move");
            for p in [from, to] {
                let off = off_track(p, &track);
                assert!(
                    off < 0.5,
                    "page {i} draws bot {bot} at {p}, {off} off its path"
                );
            }
        }
        // The canvas is not blank, and it moves.
        let canvas = &page["canvas"];
        assert!(canvas["width"].as_u64().unwrap() > 0, "{canvas}");
        assert!(
            canvas["colours"].as_u64().unwrap() >= 2,
            "page {i}: {canvas}"
        );
        assert!(canvas["drawn"].as_u64().unwrap() > 0, "page {i}: {canvas}");
        assert_ne!(
            canvas["digest"], page["canvasLater"]["digest"],
            "page {i}: a still canvas"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_key_moves_the_avatar_as_a_bot_sees() {
    if !browser_available("a_held_key_moves_the_avatar_as_a_bot_sees", "the page") {
        return;
    }
    let _turn = one_browser_at_a_time().await;
    let server = start(config()).await;
    let room = "keys";
    let watcher = Bot::join(&server.ws_url(room), "watcher", None).await;
    let world = watcher.welcome.world_size;
    let rate = f32::from(watcher.welcome.tick_rate);
    let quantum = watcher.welcome.pos_quantum;

    let mut sc = Scenario::start(
        "keys",
        json!({
            "base": format!("http://{}", server.addr),
            "room": room,
            "holdMs": 1000,
            "settleMs": 400,
        }),
    );
    let joined = sc.step("joined").await;
    let id = joined["entityId"].as_u64().unwrap() as u32;
    let start = watcher.until_still(id).await;
    let (key, sign) = x_key(start.pos, world);
    let from = watcher.seen().avatars.len();
    sc.answer(json!({ "key": key }));
    sc.step("released").await;
    // Released: the bot sees the avatar move, then stop.
    let stop = watcher
        .until("the avatar moving, then still", |seen| {
            let track = seen.track(id, from);
            let moved = track.iter().position(|(_, e)| e.vel != Vec2::ZERO)?;
            track[moved..]
                .iter()
                .find(|(_, e)| e.vel == Vec2::ZERO)
                .map(|&(_, e)| e)
        })
        .await;
    sc.answer(json!({}));
    let result = sc.result().await;
    drop(sc);
    let seen = watcher.stop().await;
    no_page_errors(&result);

    // One run of motion, at one velocity along x: the key's direction at the avatar's
    // speed (on the quantum grid), not along y.
    let track = seen.track(id, from);
    let moving: Vec<_> = track.iter().filter(|(_, e)| e.vel != Vec2::ZERO).collect();
    let (first, last) = (moving[0], moving[moving.len() - 1]);
    let vel = first.1.vel;
    assert_eq!(vel.y, 0.0, "moved across the key: {first:?}");
    assert!(
        (vel.x * sign - AVATAR_SPEED).abs() <= quantum * rate,
        "velocity {vel} for a key that moves at {AVATAR_SPEED} units/s"
    );
    for (tick, e) in &track {
        if (first.0..=last.0).contains(tick) {
            assert_eq!(
                e.vel, vel,
                "tick {tick}: the motion changed while the key was held"
            );
        }
    }
    // x grew by a whole number of steps of the velocity, y not at all. The bot may
    // have skipped a snapshot at either end of the motion on a loaded machine, so the
    // number of ticks moved lies between the moving ticks it saw and the ticks between
    // the still ones it saw on each side.
    let moved = stop.pos - start.pos;
    assert_eq!(moved.y, 0.0);
    let step = vel.x / rate;
    let steps = moved.x / step;
    assert!(
        (steps - steps.round()).abs() < 1e-3,
        "moved {} at {} per tick: not a whole number of ticks",
        moved.x,
        step
    );
    // Still before: the bot's whole history, since the last still snapshot it saw may
    // be the one `until_still` returned, before the key was pressed.
    let still_before = seen
        .track(id, 0)
        .iter()
        .filter(|(t, e)| *t < first.0 && e.vel == Vec2::ZERO)
        .map(|(t, _)| *t)
        .max()
        .expect("seen still before it moved");
    let still_after = track
        .iter()
        .filter(|(t, e)| *t > last.0 && e.vel == Vec2::ZERO)
        .map(|(t, _)| *t)
        .min()
        .expect("seen still after it moved");
    let ticks = steps.round();
    let (fewest, most) = (
        (last.0 - first.0 + 1) as f32,
        (still_after - still_before - 1) as f32,
    );
    assert!(
        (fewest..=most).contains(&ticks),
        "moved {ticks} ticks, seen moving for {fewest} and still {most} apart"
    );
    // For as long as the page saw the key held, give or take the scheduling of two
    // inputs (the press and the release): each waits for the page's next frame (its
    // frame loop sends inputs, at most one a tick), then for the server's next tick.
    // On a loaded machine a frame can come late, hence the slack of 12 ticks.
    let held = page_held(&result["held"]);
    let moved_for = ticks / rate;
    report(&format!(
        "browser: key held {held:.3} s in the page; the avatar moved {ticks} ticks \
         ({moved_for:.3} s), {} units",
        moved.x
    ));
    assert!(
        (moved_for - held).abs() <= 0.4,
        "moved for {moved_for} s while the key was held {held} s"
    );
    // The page predicted its avatar from where the server had it to where the server
    // stopped it, and draws it there.
    let (before, after) = (&result["before"], &result["after"]);
    assert!(own(before).distance(start.pos) < 1e-3, "{before}");
    assert!(
        own(after).distance(stop.pos) < 1e-3,
        "predicted at {}, the server has {}",
        own(after),
        stop.pos
    );
    assert!(
        drawn_at(after, id.into()).distance(stop.pos) < 1e-3,
        "{after}"
    );
    assert_eq!(
        after["players"].as_u64(),
        Some(2),
        "the page and the watcher"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_page_resumes_the_same_entity() {
    if !browser_available("a_cut_page_resumes_the_same_entity", "the page") {
        return;
    }
    let _turn = one_browser_at_a_time().await;
    let server = start(config()).await;
    let proxy = Proxy::start(server.addr).await;
    let room = "cut";
    let watcher = Bot::join(&server.ws_url(room), "watcher", None).await;
    let world = watcher.welcome.world_size;

    // The page comes through the proxy, so its WebSocket (to the host it came from)
    // does too.
    let mut sc = Scenario::start(
        "resume",
        json!({
            "base": format!("http://{}", proxy.addr),
            "room": room,
            "holdMs": 500,
        }),
    );
    let joined = sc.step("joined").await;
    let id = joined["entityId"].as_u64().unwrap() as u32;
    let before_cut = watcher.until_still(id).await;
    proxy.cut();
    sc.answer(json!({}));

    let resumed = sc.step("resumed").await;
    assert_eq!(resumed["entityId"].as_u64(), Some(id.into()));
    // The server kept the player (and its avatar) through the cut: one page, one watcher.
    let (status, info) = http_json(server.addr, "GET", &format!("/rooms/{room}"), "").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(info["players"], 2, "{info}");
    let back = watcher.until_still(id).await;
    assert_eq!(back.pos, before_cut.pos, "the avatar waited where it stood");
    let (key, sign) = x_key(back.pos, world);
    let from = watcher.seen().avatars.len();
    sc.answer(json!({ "key": key }));
    let result = sc.result().await;
    drop(sc);
    // The resumed page steers the same avatar.
    let moved = watcher
        .until("the resumed avatar moving", |seen| {
            seen.track(id, from)
                .last()
                .map(|(_, e)| (e.pos.x - back.pos.x) * sign)
                .filter(|&dx| dx > 20.0)
        })
        .await;
    let seen = watcher.stop().await;
    no_page_errors(&result);

    let (first, again) = (&result["joined"], &result["resumed"]);
    assert_eq!(
        (&again["entityId"], &again["playerId"]),
        (&first["entityId"], &first["playerId"]),
        "the same player and entity after the resume"
    );
    assert_eq!(first["reconnects"], 0);
    assert_eq!(again["reconnects"], 1);
    let states: Vec<&str> = result["states"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap_or("null"))
        .collect();
    assert_eq!(states.first(), Some(&"playing"), "{states:?}");
    assert_eq!(states.last(), Some(&"playing"), "{states:?}");
    assert!(states.contains(&"reconnecting"), "{states:?}");
    assert!(!states.contains(&"closed"), "{states:?}");
    let banners = result["banners"].to_string();
    assert!(banners.contains("reconnecting"), "banners shown: {banners}");
    // Two avatars in the room, never a third: the page was not joined anew.
    assert!(
        seen.avatars.iter().all(|(_, a)| a.len() <= 2),
        "a third avatar appeared"
    );
    assert!(moved > 20.0);
    assert!(
        own(&result["moved"]).x * sign > back.pos.x * sign + 20.0,
        "the page predicts its avatar moving: {}",
        result["moved"]
    );
    server.stop().await.unwrap();
}

/// The page of another origin: one WebSocket with the tickcast subprotocol for each
/// `ws` query parameter, each recorded in `window.results`.
const ELSEWHERE_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8"><title>another origin</title>
<script>
window.results = [];
for (const url of new URLSearchParams(location.search).getAll("ws")) {
  const r = { url, opened: false, error: false, code: null, protocol: null };
  window.results.push(r);
  const ws = new WebSocket(url, "tickcast.v2");
  ws.onopen = () => { r.opened = true; r.protocol = ws.protocol; ws.close(1000, "seen"); };
  ws.onerror = () => { r.error = true; };
  ws.onclose = (e) => { r.code = e.code; };
}
</script>
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_from_another_origin_is_refused() {
    if !browser_available("a_page_from_another_origin_is_refused", "the page") {
        return;
    }
    let _turn = one_browser_at_a_time().await;
    let elsewhere = Elsewhere::start(ELSEWHERE_PAGE).await;
    let foreign = format!("http://{}", elsewhere.addr);
    // The same page against a server that does not list its origin, and (to show that
    // the origin is all that differs) one that does.
    let strict = start(config()).await;
    let mut c = config();
    c.allow_origins = vec![foreign.clone()];
    let listing = start(c).await;
    let page = format!(
        "{foreign}/?ws={}&ws={}",
        strict
            .ws_url("guarded")
            .replace('?', "%3F")
            .replace('=', "%3D"),
        listing
            .ws_url("guarded")
            .replace('?', "%3F")
            .replace('=', "%3D"),
    );
    let mut sc = Scenario::start("origin", json!({ "page": page }));
    let result = sc.result().await;
    drop(sc);
    no_page_errors(&result);
    assert_eq!(result["origin"], foreign.as_str());
    let (refused, allowed) = (&result["results"][0], &result["results"][1]);
    assert_eq!(refused["url"], strict.ws_url("guarded").as_str());
    assert_eq!(
        (&refused["opened"], &refused["error"], &refused["code"]),
        (&json!(false), &json!(true), &json!(1006)),
        "the browser saw the handshake fail: {refused}"
    );
    assert_eq!(
        (&allowed["opened"], &allowed["protocol"], &allowed["code"]),
        (&json!(true), &json!("tickcast.v2"), &json!(1000)),
        "a listed origin connects: {allowed}"
    );
    let refusals = |text: &str| count(text, "tickcast_handshakes_refused_total");
    assert_eq!(refusals(&metrics(strict.addr).await), 1, "one 403");
    assert_eq!(refusals(&metrics(listing.addr).await), 0);
    strict.stop().await.unwrap();
    listing.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_draws_a_crowd() {
    if !browser_available("a_page_draws_a_crowd", "the page") {
        return;
    }
    let _turn = one_browser_at_a_time().await;
    let npcs = 1000;
    let server = start(Config { npcs, ..config() }).await;
    let room = "crowd";
    let watcher = Bot::join(&server.ws_url(room), "watcher", None).await;
    let entities = npcs as usize + 2;
    let mut sc = Scenario::start(
        "crowd",
        json!({
            "base": format!("http://{}", server.addr),
            "room": room,
            "entities": entities,
            "sampleMs": 4000,
        }),
    );
    sc.step("drawing").await;
    let (bytes0, at0) = (watcher.seen().bytes, Instant::now());
    sc.answer(json!({}));
    sc.step("sampled").await;
    let (bytes1, at1) = (watcher.seen().bytes, Instant::now());
    assert_eq!(watcher.seen().entities, entities);
    sc.answer(json!({}));
    let result = sc.result().await;
    drop(sc);
    watcher.stop().await;
    no_page_errors(&result);

    let last = &result["last"];
    assert_eq!(
        last["entitiesLength"].as_u64(),
        Some(entities as u64),
        "{last}"
    );
    assert_eq!(
        last["entityCount"].as_u64(),
        Some(entities as u64),
        "{last}"
    );
    assert_eq!(last["npcs"].as_u64(), Some(npcs.into()), "{last}");
    assert_eq!(last["players"].as_u64(), Some(2), "{last}");
    let samples = result["samples"].as_array().unwrap();
    let frames = |s: &Value| s["frames"].as_u64().unwrap();
    assert!(
        frames(&samples[samples.len() - 1]) > frames(&samples[0]),
        "the page stopped drawing: {samples:?}"
    );
    let canvas = &result["canvas"];
    assert!(canvas["colours"].as_u64().unwrap() >= 2, "{canvas}");
    assert!(canvas["drawn"].as_u64().unwrap() > 0, "{canvas}");

    let bot_bytes_per_sec = (bytes1 - bytes0) as f64 / (at1 - at0).as_secs_f64();
    report(&format!(
        "browser: {entities} entities: frame {:.2} ms (median of {} samples of frameMs), \
         page {:.0} B/s (HUD bytesPerSec, median), {} snapshots/s; a bot in the same room \
         {bot_bytes_per_sec:.0} B/s",
        result["frameMs"].as_f64().unwrap_or(f64::NAN),
        samples.len(),
        result["bytesPerSec"].as_f64().unwrap_or(f64::NAN),
        result["snapshotsPerSec"],
    ));
    server.stop().await.unwrap();
}
