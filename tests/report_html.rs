//! The load report with plots, end to end: a real server's `/metrics` page read by
//! the report's parser, and a short swarm (scraping that page) whose HTML report is
//! opened in headless Chromium (Debian's `chromium`, driven by puppeteer-core from
//! `web/browser/report.mjs`) with JavaScript disabled, to check from the DOM that
//! every plot draws as many points as the report has samples, that the server's
//! metrics are plotted, and to take a screenshot.
//!
//! Without Chromium, node or `web/node_modules/puppeteer-core` the browser test is not
//! a pass: under `CI=true` it fails and says what to install; elsewhere it prints
//! `SKIPPED:` on stderr. Node runs in a process group of its own, which the test kills
//! whole if it outlives its deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::browser::*;
use common::*;
use serde_json::{json, Value};
use tickcast::client::report::prometheus::{ServerReading, PLAYERS};
use tickcast::client::report::{html, Report, Sample, Series};
use tickcast::client::{run_swarm, scrape, ConnectOptions, Connection, SwarmConfig};
use tokio_util::sync::CancellationToken;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tickcast-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Chromium's last processes may still be writing into its profile for a moment.
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.0).is_ok() || !self.0.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }
}

/// Runs `node web/browser/<name>.mjs <args>` to its end (it has no steps) and returns
/// its result; kills node's process group if it outlives the deadline.
fn run_scenario(name: &str, mut args: Value, profile: &Path) -> Value {
    args["userDataDir"] = json!(profile);
    args["deadlineMs"] = json!(SCENARIO_DEADLINE.as_millis() as u64);
    args["chromium"] = json!(CHROMIUM);
    let mut child = Command::new("node")
        .arg(repo().join(format!("web/browser/{name}.mjs")))
        .arg(args.to_string())
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("node starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let stdout = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = out.read_to_string(&mut text);
        text
    });
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        text
    });
    let limit = std::time::Instant::now() + SCENARIO_DEADLINE + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() >= limit {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let mut result = None;
    for line in stdout.lines() {
        let value: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}\nstderr:\n{stderr}"));
        if let Some(error) = value.get("error") {
            panic!("{name}: {error}\nstderr:\n{stderr}");
        }
        if let Some(r) = value.get("result") {
            result = Some(r.clone());
        }
    }
    // A `{"browser": pid}` line: puppeteer kills Chromium's group as node exits.
    match (status, result) {
        (Some(_), Some(result)) => result,
        (status, _) => panic!("{name}: no result (exit {status:?}); stderr:\n{stderr}"),
    }
}

#[tokio::test]
async fn a_real_metrics_page_is_read_by_the_report_parser() {
    let server = start(config()).await;
    let url = format!("http://{}/metrics", server.addr);
    let mut players = Vec::new();
    for name in ["ada", "bob"] {
        let opts = ConnectOptions::new(server.ws_url("metrics"), name);
        players.push(Connection::connect(opts).await.expect("player joins"));
    }
    // Wait until the server counts both players and has ticked the room.
    let deadline = tokio::time::Instant::now() + WAIT;
    let reading = loop {
        let page = scrape::fetch(&url, Duration::from_secs(5))
            .await
            .expect("scrape");
        let reading = ServerReading::from_page(&page).expect("the page parses");
        if reading.players == Some(2.0) && reading.tick_duration.count > 0.0 {
            break reading;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "players {:?}, ticks {}",
            reading.players,
            reading.tick_duration.count
        );
        tokio::time::sleep(POLL).await;
    };
    // The same figure as the common helpers read from the page.
    let page = metrics(server.addr).await;
    assert_eq!(metric(&page, PLAYERS), 2.0);
    // One room: 11 bucket bounds and +Inf, cumulative, the last equal to the count.
    for h in [&reading.tick_duration, &reading.tick_lateness] {
        assert_eq!(h.buckets.len(), 12, "{h:?}");
        assert!(h.buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{h:?}");
        assert_eq!(h.buckets.last().map(|b| b.0), Some(f64::INFINITY));
        assert_eq!(h.buckets.last().map(|b| b.1), Some(h.count));
    }
    for p in players {
        p.close("done").await.expect("close");
    }
    server.stop().await.unwrap();
}

/// Points each over-time plot's lines must draw for `series`, by plot id and line
/// name (the rules of `report::html`).
fn expected_points(series: &Series) -> Vec<(&'static str, &'static str, usize)> {
    let count = |f: &dyn Fn(&Sample) -> bool| series.samples.iter().filter(|s| f(s)).count();
    let all = series.samples.len();
    let rtt = count(&|s| s.rtt_ms.count > 0);
    let gap = count(&|s| s.gap_ms.count > 0);
    let bw = count(&|s| s.bot_s > 0.0);
    vec![
        ("connected", "connected", all),
        ("snapshots", "snapshots/s", all),
        ("gap", "p50", gap),
        ("gap", "p99", gap),
        ("rtt", "p50", rtt),
        ("rtt", "p99", rtt),
        ("bandwidth", "down", bw),
        ("bandwidth", "up", bw),
        ("failures", "errors", all),
        ("failures", "close 1000", all),
    ]
}

#[tokio::test]
async fn the_html_report_of_a_real_run_renders_its_plots_in_chromium() {
    let server = start(config()).await;
    let report: Report = run_swarm(
        SwarmConfig {
            url: server.ws_url("plots"),
            bots: 4,
            duration: Duration::from_millis(3_500),
            ramp: Duration::from_millis(500),
            metrics_url: Some(format!("http://{}/metrics", server.addr)),
            ..SwarmConfig::default()
        },
        CancellationToken::new(),
    )
    .await;
    server.stop().await.unwrap();
    assert_eq!(report.bots_connected, 4, "{report}");
    let series = report.series.clone().expect("a run has a series");
    // Samples on seconds 1, 2, 3, then the last, shorter one on 4.
    let seconds: Vec<u64> = series.samples.iter().map(|s| s.second).collect();
    assert_eq!(seconds, [1, 2, 3, 4], "{series:?}");
    assert_eq!(series.samples[2].connected, 4);
    // Every bot closed with 1000 at the end, in the last sample.
    assert_eq!(series.samples[3].closes.get("1000"), Some(&4));
    let sum = |f: fn(&Sample) -> u64| series.samples.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.snapshots), report.snapshots_received);
    assert_eq!(sum(|s| s.errors), report.errors.values().sum::<u64>());
    // Connected bot-time, integrated per second, adds up to the run's (which counts
    // from each Welcome to each bot's end: the same moments, a few µs apart).
    let bot_s: f64 = series.samples.iter().map(|s| s.bot_s).sum();
    assert!(
        (bot_s - report.connected_bot_s).abs() < 0.01 * report.connected_bot_s,
        "{bot_s} vs {}",
        report.connected_bot_s
    );
    let [server_series] = &series.servers[..] else {
        panic!("one scraped server: {:?}", series.servers)
    };
    assert_eq!(server_series.failures, 0, "{server_series:?}");
    // A scrape at the start and then every second while the bots ran.
    assert!(server_series.scrapes >= 4, "{server_series:?}");
    assert_eq!(
        server_series.samples.len() as u64,
        server_series.scrapes - 1,
        "{server_series:?}"
    );
    assert!(server_series.samples.iter().any(|s| s.players == Some(4.0)));

    if !browser_available(
        "the_html_report_of_a_real_run_renders_its_plots_in_chromium",
        "the HTML report",
    ) {
        return;
    }
    let dir = TempDir::new("report-html");
    let file = dir.0.join("report.html");
    let screenshot = dir.0.join("report.png");
    let profile = dir.0.join("profile");
    std::fs::create_dir_all(&profile).unwrap();
    std::fs::write(&file, html::render(&report)).unwrap();
    let result = run_scenario(
        "report",
        json!({ "file": file, "screenshot": screenshot }),
        &profile,
    );

    assert_eq!(result["errors"], json!([]), "{result}");
    assert_eq!(result["scripts"], 0);
    assert_eq!(result["url"], json!(report.url));
    let plots = result["plots"].as_array().unwrap();
    let ids: Vec<&str> = plots.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "connected",
            "snapshots",
            "gap",
            "rtt",
            "bandwidth",
            "failures",
            "server-tick",
            "server-lateness",
            "server-players",
            "cdf-rtt",
            "cdf-gap",
            "cdf-input-ack",
            "cdf-connect"
        ]
    );
    let plot = |id: &str| plots.iter().find(|p| p["id"] == id).unwrap();
    let path = |id: &str, name: &str| {
        plot(id)["paths"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{id} has no line {name}: {}", plot(id)))
            .clone()
    };
    for p in plots {
        // Laid out at its size (640 x 240 and a 1px CSS border), with data.
        let size = (p["width"].as_f64(), p["height"].as_f64());
        assert_eq!(size, (Some(642.0), Some(242.0)), "{p}");
        assert_eq!(p["noData"], false, "{p}");
    }
    for (id, name, n) in expected_points(&series) {
        if matches!(id, "connected" | "snapshots" | "failures") {
            assert_eq!(n, 4, "{id}/{name}: a point in every sample");
        }
        let line = path(id, name);
        assert_eq!(line["dataPoints"], n, "{id}/{name}: {line}");
        assert_eq!(line["drawn"], n, "{id}/{name}: {line}");
        if n > 1 {
            assert!(
                line["length"].as_f64().unwrap() > 0.0,
                "{id}/{name}: {line}"
            );
        }
        assert_eq!(plot(id)["marker"], true, "{id}: the ramp is marked");
    }
    // The server's plots: a point for every scrape that reported the value.
    let with = |f: fn(&tickcast::client::report::ServerSample) -> Option<f64>| {
        server_series
            .samples
            .iter()
            .filter(|s| f(s).is_some())
            .count()
    };
    for (id, name, n) in [
        ("server-players", "players", with(|s| s.players)),
        ("server-tick", "mean", with(|s| s.tick_mean_ms)),
        ("server-tick", "p99", with(|s| s.tick_p99_ms)),
        ("server-lateness", "mean", with(|s| s.lateness_mean_ms)),
    ] {
        assert_eq!(
            n,
            server_series.samples.len(),
            "{id}/{name}: every scrape had it"
        );
        let line = path(id, name);
        assert_eq!(
            (line["dataPoints"].as_u64(), line["drawn"].as_u64()),
            (Some(n as u64), Some(n as u64)),
            "{id}/{name}"
        );
    }
    // The CDFs: 100 percent steps and 3 tail quantiles each.
    for id in ["cdf-rtt", "cdf-gap", "cdf-input-ack", "cdf-connect"] {
        assert_eq!(path(id, "CDF")["drawn"], 103, "{id}");
    }
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let _ = writeln!(
        std::io::stderr(),
        "report_html: {} samples, {} server samples, screenshot {} bytes",
        series.samples.len(),
        server_series.samples.len(),
        png.len()
    );
    // For a person to look at: TICKCAST_KEEP_REPORT=/some/path keeps the page and
    // the screenshot as /some/path.html and .png.
    if let Ok(keep) = std::env::var("TICKCAST_KEEP_REPORT") {
        let _ = std::fs::copy(&file, Path::new(&keep).with_extension("html"));
        let _ = std::fs::copy(&screenshot, Path::new(&keep).with_extension("png"));
    }
}
