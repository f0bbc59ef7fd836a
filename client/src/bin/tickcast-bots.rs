//! `tickcast-bots`: runs a swarm of bot players against a tickcast server and prints
//! what it measured. All the work is in `tickcast_client::swarm`; this is flags in,
//! report out.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use humantime::parse_duration;
use tickcast_client::{run_swarm, Report, SwarmConfig};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// Load-test a tickcast server with bot players.
///
/// Each bot joins like a game client, sends inputs at the room's tick rate and a ping
/// every second, and reads every snapshot. At the end the report (connects, snapshot
/// rate, latency percentiles, bandwidth, close codes, errors) is printed. Ctrl-C ends
/// the run early and still reports. Many bots need many file descriptors: raise
/// `ulimit -n` first. Exits with status 1 if no bot connected.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Server WebSocket URL; add `?room=NAME` to pick a room.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Number of bots.
    #[arg(long, default_value_t = 10)]
    bots: usize,
    /// Length of the run, ramp included (`20s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time over which bots connect, evenly spread.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    ramp: Duration,
    /// Write the report as JSON to FILE, or to stdout with `-` (the summary then goes
    /// to stderr, so stdout is pure JSON).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// `Origin` header to send.
    #[arg(long)]
    origin: Option<String>,
    /// Bot names are `PREFIX-N`.
    #[arg(long, default_value = "bot", value_name = "PREFIX")]
    name_prefix: String,
    /// Inputs per second per bot (default: the room's tick rate).
    #[arg(long, value_name = "HZ", value_parser = positive_rate)]
    input_rate: Option<f64>,
    /// Limit on each bot's connect (TCP, handshake, Hello/Welcome).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    connect_timeout: Duration,
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(hz) if hz.is_finite() && hz > 0.0 => Ok(hz),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();

    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: stopping the bots");
            on_ctrl_c.cancel();
        }
    });

    let config = SwarmConfig {
        url: args.url,
        bots: args.bots,
        duration: args.duration,
        ramp: args.ramp,
        name_prefix: args.name_prefix,
        origin: args.origin,
        input_rate_hz: args.input_rate,
        connect_timeout: args.connect_timeout,
    };
    let report = run_swarm(config, cancel).await;
    write_outputs(&report, args.json.as_deref())?;

    if report.bots_connected == 0 && report.bots_requested > 0 {
        anyhow::bail!("no bot connected");
    }
    Ok(())
}

fn write_outputs(report: &Report, json: Option<&std::path::Path>) -> anyhow::Result<()> {
    let to_stdout = json.is_some_and(|p| p.as_os_str() == "-");
    if to_stdout {
        eprint!("{}", report.summary());
    } else {
        print!("{}", report.summary());
    }
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(report).context("encoding the report")?;
        if to_stdout {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{text}").context("writing the report to stdout")?;
        } else {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing the report to {}", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse() {
        let args = Args::try_parse_from([
            "tickcast-bots",
            "--url",
            "ws://127.0.0.1:1/ws?room=a",
            "--bots",
            "100",
            "--duration",
            "20s",
            "--ramp",
            "500ms",
            "--json",
            "-",
        ])
        .expect("valid flags");
        assert_eq!(args.bots, 100);
        assert_eq!(args.duration, Duration::from_secs(20));
        assert_eq!(args.ramp, Duration::from_millis(500));
        assert_eq!(args.json, Some(PathBuf::from("-")));
        assert!(Args::try_parse_from(["tickcast-bots", "--duration", "20"]).is_err());
        assert!(Args::try_parse_from(["tickcast-bots", "--input-rate", "0"]).is_err());
    }
}
