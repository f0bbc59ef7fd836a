//! Bots on bad networks (client::link), over real sockets on 127.0.0.1: the rtt the
//! bots measure follows the configured latency, a bandwidth cap below the snapshot
//! stream makes the server skip snapshots for that bot only, and the JS client's
//! interpolation buffer rides out the jitter of a conditioned link.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::time::{Duration, Instant};

use common::*;
use tickcast::client::link::burst_bytes;
use tickcast::client::{
    run_swarm, BehaviourKind, Conditioning, ConnectOptions, Connection, Event, LinkSpec, Report,
    SwarmConfig, TlsTrust,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A swarm of three bots in `room`, over `link`.
async fn swarm(url: String, link: Option<LinkSpec>) -> Report {
    let config = SwarmConfig {
        url,
        bots: 3,
        duration: ms(3000),
        ramp: ms(200),
        link,
        ..SwarmConfig::default()
    };
    tokio::time::timeout(WAIT, run_swarm(config, CancellationToken::new()))
        .await
        .expect("the swarm ends with its duration")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measured_rtt_follows_the_configured_latency() {
    let server = start(config()).await;
    let slow = LinkSpec {
        latency: ms(40),
        ..LinkSpec::default()
    };
    let (plain, conditioned) = tokio::join!(
        swarm(server.ws_url("plain"), None),
        swarm(server.ws_url("far"), Some(slow.clone())),
    );
    for r in [&plain, &conditioned] {
        assert_eq!(r.bots_connected, 3, "{r}");
        assert!(r.errors.is_empty(), "{r}");
        // Each bot pings as it starts playing and every second after: at least one
        // answered ping per bot in a run of three seconds.
        assert!(r.rtt_ms.count >= 3, "{r}");
    }
    // The report says how the links were conditioned, next to what the bots measured.
    assert_eq!(plain.link, None);
    assert_eq!(conditioned.link, Some(slow));
    assert!(
        conditioned.summary().contains("40 ms ± 0 ms one-way"),
        "{conditioned}"
    );

    // Every byte waits 40 ms each way: no rtt can be shorter than 80 ms, nor a connect
    // (the upgrade and Hello/Welcome are two round trips over the link) shorter than
    // 160 ms. These are bounds of the model, not of the machine's speed.
    assert!(conditioned.rtt_ms.p50 >= 80.0, "{conditioned}");
    assert!(conditioned.connect_ms.p50 >= 160.0, "{conditioned}");
    // And the link adds no more than that: what the server takes to answer (at most
    // a tick, if it answers on its tick) is the same for both swarms.
    let tick_ms = 1000.0 / f64::from(config().tick_rate);
    let added = conditioned.rtt_ms.p50 - plain.rtt_ms.p50;
    assert!(
        added <= 80.0 + tick_ms,
        "the median rtt rose by {added:.1} ms (plain {}, conditioned {})",
        plain.rtt_ms.p50,
        conditioned.rtt_ms.p50
    );
    server.stop().await.unwrap();
}

/// One snapshot as a player's task saw it: its tick, when it arrived, and the payload
/// bytes the player had received by then (this snapshot's included).
#[derive(Debug, Clone, Copy)]
struct Arrival {
    tick: u64,
    at: Instant,
    bytes: u64,
}

/// Reads snapshots until `stop`, publishing each one and keeping them all.
async fn read_ticks(
    mut conn: Connection,
    latest: watch::Sender<Option<Arrival>>,
    stop: CancellationToken,
) -> Vec<Arrival> {
    let mut seen: Vec<Arrival> = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            event = conn.next_event() => match event.unwrap() {
                Event::Snapshot(s) => {
                    if let Some(prev) = seen.last() {
                        assert!(s.tick > prev.tick, "tick {} after {}", s.tick, prev.tick);
                    }
                    let arrival = Arrival {
                        tick: s.tick,
                        at: Instant::now(),
                        bytes: conn.session().stats().bytes_received,
                    };
                    seen.push(arrival);
                    latest.send_replace(Some(arrival));
                }
                Event::Pong { .. } | Event::Game(_) => {}
                Event::Closed { code, reason } => panic!("closed: {code} {reason}"),
            }
        }
    }
    seen
}

/// Waits, for at most `bound`, until `rx` has published an arrival that `done` accepts;
/// panics with `what` otherwise.
async fn wait_arrival(
    rx: &watch::Receiver<Option<Arrival>>,
    bound: Duration,
    what: &str,
    done: impl FnMut(&Option<Arrival>) -> bool,
) -> Arrival {
    let mut rx = rx.clone();
    let seen = tokio::time::timeout(bound, rx.wait_for(done))
        .await
        .unwrap_or_else(|_| panic!("waited {bound:?} for {what}"))
        .expect("the player's task ended (see its panic above)");
    // Copied out: the caller must not hold the borrow across an `.await`.
    (*seen).expect("wait_for accepted an arrival")
}

/// Bots circling in the room: every avatar changes every tick, so every snapshot
/// carries all of them (constant-velocity NPCs cost nothing in a delta).
const CIRCLERS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bandwidth_cap_makes_the_server_skip_snapshots_for_that_bot_only() {
    let mut c = config();
    // The kernel's smallest send buffer, so that it does not absorb the excess: what
    // the buffers between the room and a capped player hold, the player sees late.
    c.send_buffer = 1;
    let server = start(c).await;
    let url = server.ws_url("capped");
    let load = CancellationToken::new();
    let circlers = tokio::spawn(run_swarm(
        SwarmConfig {
            url: url.clone(),
            bots: CIRCLERS,
            // Until `load` is cancelled: the circlers must outlast the test.
            duration: Duration::from_secs(600),
            ramp: ms(200),
            behaviour: BehaviourKind::Circle,
            name_prefix: "circler".into(),
            ..SwarmConfig::default()
        },
        load.clone(),
    ));

    // The unconditioned player measures the stream once every circler is in: its mean
    // bytes per delta.
    let mut plain = Connection::connect(ConnectOptions::new(url.clone(), "plain"))
        .await
        .unwrap();
    let tick_rate = u64::from(plain.welcome().tick_rate);
    let npcs = config().npcs as usize;
    let mut measured: Option<(u64, u64)> = None;
    loop {
        let event = tokio::time::timeout(WAIT, plain.next_event())
            .await
            .unwrap();
        if !matches!(event.unwrap(), Event::Snapshot(_)) {
            continue;
        }
        let stats = plain.session().stats();
        match measured {
            None if plain.session().world().entities.len() == npcs + CIRCLERS + 1 => {
                measured = Some((stats.bytes_received, stats.snapshots_received));
            }
            Some((_, from)) if stats.snapshots_received - from >= 30 => break,
            _ => {}
        }
    }
    let (bytes0, snaps0) = measured.unwrap();
    let stats = plain.session().stats();
    let per_snapshot = (stats.bytes_received - bytes0) / (stats.snapshots_received - snaps0);
    // A quarter of what the room sends each second.
    let rate = per_snapshot * tick_rate / 4;
    let spec = LinkSpec {
        bandwidth: Some(rate),
        ..LinkSpec::default()
    };
    println!(
        "{per_snapshot} bytes per delta at {tick_rate} Hz: capped at {rate} B/s, queue {} B",
        spec.queue_limit()
    );
    let stop = CancellationToken::new();
    let (tx, plain_latest) = watch::channel(None);
    let plain_task = tokio::spawn(read_ticks(plain, tx, stop.clone()));

    let capped = Connection::connect(ConnectOptions {
        link: Some(Conditioning { spec, seed: 1 }),
        ..ConnectOptions::new(url.clone(), "capped")
    })
    .await
    .unwrap();
    let (tx, capped_latest) = watch::channel(None);
    let capped_task = tokio::spawn(read_ticks(capped, tx, stop.clone()));

    // Once the buffers between the room and the capped player (the server's send
    // buffer, the kernel's receive buffer, the link's queue: a few KiB each) are full,
    // the server starts skipping. From then on the link stays full, so every later
    // tick is one the server offered while skipping: the window is four seconds of
    // ticks from there (the kernels pass the stream on in bursts of about a second, so
    // a shorter window sees too few of them to average out).
    eventually("the server skips snapshots", || async {
        match server_metric(server.addr, "tickcast_snapshots_skipped_total").await {
            Some(n) if n > 0 => Ok(n),
            other => Err(format!("skipped: {other:?}")),
        }
    })
    .await;
    let from = wait_arrival(&plain_latest, WAIT, "a tick of the plain player", |a| {
        a.is_some()
    })
    .await
    .tick;
    let window_ticks = 4 * tick_rate;
    let end = from + window_ticks;
    // What those buffers hold reaches the player only at the capped rate, so it sees
    // the window a while after the server skipped in it: bound the wait by twice the
    // time they take to drain at that rate, plus the usual wait.
    let buffered = 64 * 1024;
    let drain = WAIT + Duration::from_secs_f64(2.0 * buffered as f64 / rate as f64);
    wait_arrival(
        &capped_latest,
        drain,
        "the capped player's window to pass",
        |a| a.is_some_and(|a| a.tick > end),
    )
    .await;
    let plain_upto = wait_arrival(&plain_latest, WAIT, "a tick of the plain player", |a| {
        a.is_some()
    })
    .await
    .tick;
    let capped_upto = capped_latest.borrow().map_or(0, |a| a.tick);
    let allowed = left_out(server.addr, "capped").await;
    stop.cancel();
    let plain = plain_task.await.unwrap();
    let capped = capped_task.await.unwrap();
    load.cancel();
    let circlers = circlers.await.unwrap();
    assert_eq!(circlers.bots_connected, CIRCLERS as u64, "{circlers}");

    // The window: the capped player's snapshots of ticks `from` to `end`.
    let window: Vec<Arrival> = capped
        .iter()
        .copied()
        .filter(|a| (from..=end).contains(&a.tick))
        .collect();
    let (Some(first), Some(last)) = (window.first().copied(), window.last().copied()) else {
        panic!("the capped player received no snapshot of ticks {from} to {end}");
    };
    let n = window.len() as u64;
    println!("capped: {n} snapshots of ticks {from} to {end}");

    // The cap holds: between two arrivals the capped player received no more payload
    // than the bucket's burst plus the rate for the time, plus what the 16 KiB pipe
    // between the link and the player held at the first one.
    let elapsed = last.at - first.at;
    let budget = burst_bytes(rate) + (rate as f64 * elapsed.as_secs_f64()) as u64 + 16 * 1024;
    let got = last.bytes - first.bytes;
    assert!(got <= budget, "{got} bytes in {elapsed:?} at {rate} B/s");
    // So it could take about a quarter of the ticks of the window (deltas that span
    // skipped ticks are no smaller): the server skipped at least half of them.
    assert!(
        n * 2 <= window_ticks,
        "the capped player received {n} snapshots in {window_ticks} ticks"
    );

    // Every tick a player did not see is one the server accounts for: a catch-up tick
    // (missed by every player) or a snapshot a slow player's slot skipped. The capped
    // player's misses are skips the server counted; the plain player, unconditioned,
    // keeps every snapshot the room broadcast, or the two players' misses together
    // would exceed what the server counted.
    let ticks = |seen: &[Arrival]| seen.iter().map(|a| a.tick).collect::<Vec<_>>();
    let plain_missing = missing_before(&ticks(&plain), plain_upto);
    let capped_missing = missing_before(&ticks(&capped), capped_upto);
    assert!(
        capped_missing >= window_ticks / 2,
        "the capped player missed only {capped_missing} ticks"
    );
    assert!(
        plain_missing <= allowed.catch_up,
        "the plain player missed {plain_missing} ticks; the server accounts for {} catch-up \
         ticks",
        allowed.catch_up
    );
    assert!(
        plain_missing + capped_missing <= 2 * allowed.catch_up + allowed.skipped,
        "the players missed {plain_missing} + {capped_missing} ticks; the server accounts \
         for {} catch-up ticks and {} skipped snapshots",
        allowed.catch_up,
        allowed.skipped
    );
    server.stop().await.unwrap();
}

/// A private CA and a certificate it signed for `localhost`, as PEM files in a
/// directory of their own (removed on drop): a server for `wss://`.
struct LocalPki {
    dir: std::path::PathBuf,
}

impl LocalPki {
    fn new() -> LocalPki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let dir = std::env::temp_dir().join(format!("tickcast-link-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        LocalPki { dir }
    }
}

impl Drop for LocalPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conditioned_link_carries_wss() {
    let pki = LocalPki::new();
    let server = start(tickcast::server::Config {
        tls_cert: Some(pki.dir.join("cert.pem")),
        tls_key: Some(pki.dir.join("key.pem")),
        ..config()
    })
    .await;
    let trust = TlsTrust::with_ca_pem_file(&pki.dir.join("ca.pem")).unwrap();
    let url = format!("wss://localhost:{}/ws?room=far", server.addr.port());
    let started = Instant::now();
    let mut conn = Connection::connect(ConnectOptions {
        tls: trust,
        link: Some(Conditioning {
            spec: LinkSpec {
                latency: ms(40),
                ..LinkSpec::default()
            },
            seed: 3,
        }),
        ..ConnectOptions::new(url, "far")
    })
    .await
    .unwrap();
    // The link is below TLS: the TLS 1.3 handshake, the upgrade and Hello/Welcome are
    // three round trips over it, 80 ms each at the least.
    let connect = started.elapsed();
    assert!(connect >= ms(240), "connected in {connect:?}");
    conn.send_ping().await.unwrap();
    let rtt = loop {
        match tokio::time::timeout(WAIT, conn.next_event()).await.unwrap() {
            Ok(Event::Pong { rtt }) => break rtt,
            Ok(Event::Snapshot(_) | Event::Game(_)) => continue,
            Ok(Event::Closed { code, reason }) => panic!("closed: {code} {reason}"),
            Err(e) => panic!("connection failed: {e}"),
        }
    };
    assert!(rtt >= ms(80), "rtt {rtt:?} over a 40 ms link");
    conn.close("done").await.unwrap();
    server.stop().await.unwrap();
}

/// Replays snapshot arrivals through the JS client's `Interpolator`, rendering at
/// 60 Hz, once with its default buffer and once with none. Prints, for each, the
/// largest and the 99th-percentile distance (in ticks of movement of an entity moving
/// one unit per tick) between what it renders and a steady clock.
const RENDER_SCRIPT: &str = r#"
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const { Interpolator, World } = await import(pathToFileURL(process.env.TICKCAST_JS).href);
const { tickRate, arrivals } = JSON.parse(readFileSync(process.env.TICKCAST_ARRIVALS, "utf8"));
const tickMs = 1000 / tickRate;
// One entity moving 1 unit per tick along x: 100 quanta of 0.01.
const world = (tick) => new World(tick, Uint32Array.of(1), Uint8Array.of(0),
  Int32Array.of(tick * 100, 0), Int32Array.of(100, 0), new Int32Array(16));
function render(options) {
  const interp = new Interpolator({ tickRate, posQuantum: 0.01, ...options });
  const start = arrivals[0][1], end = arrivals[arrivals.length - 1][1];
  const lags = [];
  let next = 0;
  for (let now = start; now <= end; now += 1000 / 60) {
    while (next < arrivals.length && arrivals[next][1] <= now) {
      interp.push(world(arrivals[next][0]), arrivals[next][1]);
      next++;
    }
    const out = interp.sample(now);
    // After a second of warm-up: how far the rendered entity is behind a clock
    // running at exactly the tick rate.
    if (out && now >= start + 1000) lags.push(now / tickMs - out.entities[0].x);
  }
  const sorted = [...lags].sort((a, b) => a - b);
  const median = sorted[Math.floor(sorted.length / 2)];
  const errors = lags.map((l) => Math.abs(l - median)).sort((a, b) => a - b);
  return { frames: errors.length, max: errors[errors.length - 1], p99: errors[Math.floor(errors.length * 0.99)] };
}
console.log(JSON.stringify({
  buffered: render({}),
  unbuffered: render({ delayTicks: 0, addJitter: false }),
}));
"#;

/// Whether `node` runs; outside CI a missing one skips the test.
fn node_available() -> bool {
    let found = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "node is required under CI=true"
        );
        println!("SKIPPED: node not found; install Node.js 18 or later");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_js_interpolation_buffer_rides_out_jitter() {
    if !node_available() {
        return;
    }
    let server = start(config()).await;
    let jittery = LinkSpec {
        latency: ms(40),
        jitter: ms(20),
        ..LinkSpec::default()
    };
    let mut conn = Connection::connect(ConnectOptions {
        link: Some(Conditioning {
            spec: jittery,
            seed: 7,
        }),
        ..ConnectOptions::new(server.ws_url("jitter"), "jittery")
    })
    .await
    .unwrap();
    let tick_rate = conn.welcome().tick_rate;
    let tick_ms = 1000.0 / f64::from(tick_rate);
    // Four seconds of snapshots: their ticks and arrival times.
    let epoch = Instant::now();
    let mut arrivals: Vec<(u64, f64)> = Vec::new();
    while arrivals.len() < 4 * usize::from(tick_rate) {
        let event = tokio::time::timeout(WAIT, conn.next_event()).await.unwrap();
        if let Event::Snapshot(s) = event.unwrap() {
            arrivals.push((s.tick, epoch.elapsed().as_secs_f64() * 1000.0));
        }
    }
    conn.close("done").await.unwrap();
    server.stop().await.unwrap();

    // The link did jitter: the arrival offsets (arrival minus tick time) spread over
    // most of the 40 ms that the draws span.
    let offsets: Vec<f64> = arrivals
        .iter()
        .map(|(tick, at)| at - *tick as f64 * tick_ms)
        .collect();
    let spread = offsets.iter().copied().fold(f64::MIN, f64::max)
        - offsets.iter().copied().fold(f64::MAX, f64::min);
    assert!(spread >= 20.0, "arrival offsets spread over {spread:.1} ms");

    let path = std::env::temp_dir().join(format!("tickcast-link-{}.json", std::process::id()));
    let data = serde_json::json!({ "tickRate": tick_rate, "arrivals": arrivals });
    std::fs::write(&path, data.to_string()).unwrap();
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("web/tickcast.js");
    let out = std::process::Command::new("node")
        .args(["--input-type=module", "-e", RENDER_SCRIPT])
        .env("TICKCAST_JS", &js)
        .env("TICKCAST_ARRIVALS", &path)
        .output()
        .unwrap();
    std::fs::remove_file(&path).ok();
    assert!(
        out.status.success(),
        "node failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    println!("render error in ticks of movement: {result}");
    let figure = |which: &str, what: &str| result[which][what].as_f64().unwrap();
    assert!(figure("buffered", "frames") >= 150.0, "{result}");

    // With the buffer (2 ticks plus the measured jitter), the entity moves at a steady
    // pace: never more than half a tick's movement off a steady clock. Without it, the
    // render clock runs into the newest snapshot and waits for the next: the entity
    // stops and jumps, and is off by more than half a tick in more than 1% of frames.
    assert!(figure("buffered", "max") <= 0.5, "{result}");
    assert!(figure("unbuffered", "p99") > 0.5, "{result}");
}
