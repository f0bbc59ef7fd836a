//! `tickcast-bots --verify-fraction`: the real binary against a real server. A sample
//! of the bots rebuilds the world from every snapshot (the accuracy check); the others
//! read only snapshot headers, and every figure of the report is still measured for
//! every bot: each run is checked against what the server says it sent and left out
//! (tests/common/accounting.rs), once with a tenth of the bots verifying and once with
//! all of them. That the header path counts exactly what the full path counts for the
//! same frames is client/tests/connection.rs's
//! `only_a_verifying_connection_decodes_and_applies_snapshots`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use common::accounting::{left_out, LeftOut};
use common::bots::bots_binary;
use common::*;

const BOTS: u64 = 20;
const ROOM: &str = "verify";

/// Runs `BOTS` bots for two seconds with `--verify-fraction fraction`; returns the JSON
/// report and the text summary.
async fn run_bots(
    bin: PathBuf,
    url: String,
    fraction: &'static str,
) -> (serde_json::Value, String) {
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .args(["--url", &url, "--bots", &BOTS.to_string()])
            .args(["--duration", "2s", "--ramp", "200ms"])
            .args(["--reconnect-budget", "0s", "--json", "-"])
            .args(["--verify-fraction", fraction])
            .output()
            .expect("running tickcast-bots")
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{}\n{stderr}", output.status);
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&output.stdout)));
    (report, stderr)
}

fn u(report: &serde_json::Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {report}"))
}

fn count_of(report: &serde_json::Value, latency: &str) -> u64 {
    report[latency]["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("{latency}.count in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_verifies_and_every_bot_is_measured_alike() {
    let bin = bots_binary();
    for (fraction, verified) in [("0.1", 2), ("1", BOTS)] {
        // A server per run, so that its counters are this run's alone.
        let server = start(config()).await;
        let began = Instant::now();
        let (report, summary) = run_bots(bin.clone(), server.ws_url(ROOM), fraction).await;
        let elapsed = began.elapsed();
        let LeftOut { catch_up, skipped } = left_out(server.addr, ROOM).await;
        let text = metrics(server.addr).await;
        let bots = [
            "bots_requested",
            "bots_connected",
            "bots_failed",
            "bots_disconnected",
            "reconnects",
        ]
        .map(|key| u(&report, key));
        assert_eq!(bots, [BOTS, BOTS, 0, 0, 0], "{report}");
        assert_eq!(report["errors"], serde_json::json!({}), "{report}");
        assert_eq!(
            report["close_codes"]["1000"].as_u64(),
            Some(BOTS),
            "{report}"
        );

        // Exactly bots 0 and 10 of 20 at 0.1; all of them at 1.
        assert_eq!(u(&report, "bots_verified"), verified, "{report}");
        assert_eq!(
            report["verify_fraction"].as_f64(),
            Some(fraction.parse().unwrap()),
            "{report}"
        );
        assert!(
            summary.contains(&format!("verified    {verified} of {BOTS} connected bots")),
            "{summary}"
        );

        // Snapshots, for every bot alike: each tick a bot missed is one the server
        // left out on purpose, nothing arrived that the server did not send, and a
        // gap was measured for every snapshot but each bot's first.
        let received = u(&report, "snapshots_received");
        let missed = u(&report, "snapshots_missed");
        assert!(
            missed <= BOTS * catch_up + skipped,
            "{missed} ticks missed; {catch_up} catch-up ticks, {skipped} skipped snapshots"
        );
        assert!(received <= count(&text, "tickcast_snapshots_sent_total"));
        let most = BOTS as f64 * (elapsed.as_secs_f64() * 30.0 + 2.0);
        assert!(
            received as f64 <= most,
            "{received} snapshots, at most {most}"
        );
        assert_eq!(
            count_of(&report, "snapshot_gap_ms"),
            received - BOTS,
            "{report}"
        );
        // Bytes: the payload of every message the bots handled, which the server wrote.
        let bytes = u(&report, "bytes_received");
        assert!(
            bytes <= count(&text, "tickcast_bytes_sent_total"),
            "{bytes} bytes"
        );
        // Acknowledgements and round trips of every bot, each measured at most once.
        let acks = count_of(&report, "input_ack_ms");
        assert!(
            (BOTS..=u(&report, "inputs_sent")).contains(&acks),
            "{acks} acks: {report}"
        );
        let pongs = count_of(&report, "rtt_ms");
        assert!(
            (BOTS..=u(&report, "pings_sent")).contains(&pongs),
            "{pongs} pongs: {report}"
        );
        // The naive size comes from the verifying bots, whose worlds it needs.
        let naive = report["naive_bytes_per_bot_per_s"].as_f64().unwrap();
        let actual = report["bytes_per_bot_per_s"].as_f64().unwrap();
        assert!(naive > actual, "naive {naive} B/s, sent {actual} B/s");
        server.stop().await.unwrap();
    }
}
