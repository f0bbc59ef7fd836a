//! `tickcast-bots`: runs a swarm of bot players against a tickcast server and prints
//! what it measured, or (`tickcast-bots merge`) combines the JSON reports of several
//! such processes. All the work is in `tickcast_client`; this is flags in, report out,
//! plus what only a process can do: raise its file limit and draw a progress line.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use humantime::parse_duration;
use indicatif::{ProgressBar, ProgressDrawTarget};
use tickcast_client::link::{parse_bandwidth, PROFILES};
use tickcast_client::progress::progress_line;
use tickcast_client::BotTokens;
use tickcast_client::{
    merge, run_swarm_with_progress, BehaviourKind, Progress, ReconnectPolicy, Report,
};
use tickcast_client::{run_swarm, LinkSpec, LossStall, Profile, SwarmConfig, TlsTrust};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

/// File descriptors a process needs beyond one per bot: stdio, the runtime's epoll
/// and wakers, the report file, DNS lookups.
const FD_RESERVE: u64 = 64;

/// How often the progress line is refreshed.
const PROGRESS_PERIOD: Duration = Duration::from_millis(500);

/// Load-test a tickcast server with bot players.
///
/// Each bot joins like a game client, sends inputs at the room's tick rate and a ping
/// every second, and reads every snapshot. At the end the report (connects, snapshot
/// rate, latency percentiles, bandwidth, close codes, errors) is printed. Ctrl-C ends
/// the run early and still reports. The open-file limit is raised to the hard limit
/// at startup; against a loopback IPv4 server, connections are spread over several
/// 127.0.0.x source addresses so that ephemeral ports do not run out. Exits with
/// status 1 if no bot connected.
///
/// Several processes (or machines) can run side by side with `--json FILE` each;
/// `tickcast-bots merge a.json b.json` then combines their reports exactly.
/// `--html FILE` (on a run or a merge) draws the report as one HTML page with plots.
#[derive(Debug, Parser)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Combine the JSON reports of several tickcast-bots processes into one: counts
    /// summed, rates recomputed from the summed totals, histograms merged and their
    /// percentiles read again.
    Merge(MergeArgs),
}

/// Flags of a load run (no subcommand).
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Server WebSocket URL, `ws://` or `wss://`; add `?room=NAME` to pick a room.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// Number of bots.
    #[arg(long, default_value_t = 10)]
    bots: usize,
    /// Length of the run, ramp included (`20s`, `500ms`, `2m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Time over which bots connect, evenly spread with a little jitter.
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
    /// How bots steer: `idle` sends zero movement (inputs still acknowledged),
    /// `circle` turns at a constant rate, `chase` heads for the nearest other avatar.
    #[arg(long, value_enum, default_value_t = BehaviourKind::RandomWalk)]
    behaviour: BehaviourKind,
    /// Spread bots round-robin over K rooms named `PREFIX-0` .. `PREFIX-{K-1}` (the
    /// URL's `room` parameter is replaced); 1 joins the URL's room as given.
    #[arg(long, default_value_t = 1, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..))]
    rooms: u32,
    /// Prefix of the room names with `--rooms` (default: the URL's room, or `lobby`).
    #[arg(long, value_name = "PREFIX")]
    room_prefix: Option<String>,
    /// Connect from N loopback addresses 127.0.0.1 .. 127.0.0.N when the server is
    /// on an IPv4 loopback address (default: one per 200 bots, under the server's
    /// default --max-connections-per-ip of 256).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=254))]
    source_addrs: Option<u16>,
    /// A bot whose connection is lost (no close frame) reconnects and resumes its
    /// player for up to this long, with backoff from 100 ms to 2 s; `0s` disables.
    /// More than the server's `--reconnect-grace` (default 10s) only gets close 4008.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    reconnect_budget: Duration,
    /// For `wss://`: also trust the CA certificate(s) in this PEM file, e.g. a test
    /// server's self-signed certificate. The public web PKI is always trusted.
    #[arg(long, value_name = "PEM")]
    ca_cert: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page with plots (bots,
    /// snapshots, gaps, rtt, bandwidth, errors over time; latency CDFs), readable
    /// offline: see docs/LOAD-REPORTS.md.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Scrape the server's Prometheus page (`http://HOST:PORT/metrics`) once a second
    /// during the run, for plots of its tick duration, tick lateness and players. A
    /// failed scrape is counted in the report, never fatal.
    #[arg(long, value_name = "URL", value_parser = metrics_url)]
    metrics_url: Option<String>,
    /// Matchmake every bot at this server (`http://HOST:PORT`): each asks
    /// `POST /matchmake` for a seat (with its player token under `--jwt-secret-file`)
    /// and joins the room and node of the answer with its ticket; the report counts
    /// bots per node. The URL argument's rooms are then not used.
    #[arg(long, value_name = "URL", value_parser = matchmake_url, conflicts_with = "jwt_room_claim")]
    matchmake: Option<String>,
    /// Share of bots (0 to 1) that decode every snapshot and rebuild the world,
    /// failing loudly (error `delta: ...`, close 1007) on a delta that does not apply:
    /// the accuracy check. Bot i verifies when ceil(i * F) steps up at i: ceil(bots *
    /// F) bots spread evenly, bot 0 always. The others read only each snapshot's
    /// header; bytes, snapshot gaps, missed ticks, input acks, rtt and errors are
    /// measured for every bot alike, the naive-snapshot size by the verifying ones.
    /// With `--behaviour chase` (which steers by the world) every bot verifies;
    /// idle, random-walk and circle never look at the world.
    #[arg(long, value_name = "F", default_value_t = tickcast_client::swarm::DEFAULT_VERIFY_FRACTION,
          value_parser = fraction)]
    verify_fraction: f64,
    #[command(flatten)]
    link: LinkArgs,
    #[command(flatten)]
    auth: AuthArgs,
}

/// Flags of player tokens, for a server that requires player authentication.
#[derive(Debug, Default, clap::Args)]
struct AuthArgs {
    /// Sign a player token (HS256 JWT) for each bot with the secret in FILE, the same
    /// file as the server's `--auth-jwt-secret-file` (its bytes, trailing newlines
    /// trimmed). Each bot's token has `sub` and `name` = its name (`PREFIX-N`) and
    /// expires a minute after the run ends.
    #[arg(long, value_name = "FILE")]
    jwt_secret_file: Option<PathBuf>,
    /// Bind each bot's token to its room (`room` claim), as per-match tokens are.
    #[arg(long, requires = "jwt_secret_file")]
    jwt_room_claim: bool,
    /// `iss` claim of the bots' tokens, to match the server's `--auth-jwt-issuer`.
    #[arg(long, value_name = "ISSUER", requires = "jwt_secret_file")]
    jwt_issuer: Option<String>,
    /// `aud` claim of the bots' tokens, to match the server's `--auth-jwt-audience`.
    #[arg(long, value_name = "AUDIENCE", requires = "jwt_secret_file")]
    jwt_audience: Option<String>,
}

impl AuthArgs {
    /// How the bots sign their tokens; `None` without `--jwt-secret-file`.
    fn tokens(&self) -> anyhow::Result<Option<BotTokens>> {
        let Some(path) = &self.jwt_secret_file else {
            return Ok(None);
        };
        let contents = std::fs::read(path)
            .with_context(|| format!("--jwt-secret-file: reading {}", path.display()))?;
        let mut tokens = BotTokens::from_secret_file_contents(contents)
            .with_context(|| format!("--jwt-secret-file {}", path.display()))?;
        tokens.room_claim = self.jwt_room_claim;
        tokens.issuer.clone_from(&self.jwt_issuer);
        tokens.audience.clone_from(&self.jwt_audience);
        Ok(Some(tokens))
    }
}

/// Flags of the emulated bad network (see docs/BAD-NETWORKS.md).
#[derive(Debug, Default, clap::Args)]
struct LinkArgs {
    /// Condition every bot's link, both directions, with a named profile:
    /// `lte` (35 ms ± 10 ms one-way, 10 Mbit/s, stalls 0.2% × 200 ms),
    /// `wifi-busy` (5 ms ± 20 ms, 5 Mbit/s, stalls 1% × 100 ms),
    /// `transatlantic` (37 ms ± 2 ms, 100 Mbit/s, stalls 0.05% × 300 ms).
    /// The flags below override its values.
    #[arg(long, value_name = "PROFILE", value_parser = link_profile)]
    link: Option<LinkSpec>,
    /// One-way delay added to every byte, in each direction (rtt ≈ 2 × this + the
    /// server's time).
    #[arg(long, value_parser = parse_duration)]
    latency: Option<Duration>,
    /// Each segment's delay varies uniformly by up to ± this (never reordered: a
    /// segment drawn early waits for the one before, as TCP does).
    #[arg(long, value_parser = parse_duration)]
    jitter: Option<Duration>,
    /// Rate limit of each direction: `1mbit`, `500kbit` (bits/s) or `125kB` (bytes/s).
    #[arg(long, value_name = "RATE", value_parser = parse_bandwidth)]
    bandwidth: Option<u64>,
    /// Loss as TCP shows it, a stall: `1%@200ms` holds a segment (and all behind it)
    /// for 200 ms with probability 1% per segment of up to 1448 bytes.
    #[arg(long, value_name = "P%@STALL")]
    loss_stall: Option<LossStall>,
}

impl LinkArgs {
    /// The link these flags describe: the profile's values, overridden by the flags;
    /// `None` when nothing is asked for.
    fn spec(&self) -> Option<LinkSpec> {
        let mut spec = self.link.clone().unwrap_or_default();
        if let Some(latency) = self.latency {
            spec.latency = latency;
        }
        if let Some(jitter) = self.jitter {
            spec.jitter = jitter;
        }
        if self.bandwidth.is_some() {
            spec.bandwidth = self.bandwidth;
        }
        if self.loss_stall.is_some() {
            spec.loss_stall = self.loss_stall;
        }
        (!spec.is_perfect()).then_some(spec)
    }
}

fn link_profile(name: &str) -> Result<LinkSpec, String> {
    Profile::named(name).map(Profile::spec).ok_or_else(|| {
        let names: Vec<&str> = PROFILES.iter().map(|p| p.name).collect();
        format!(
            "{name:?} is not a profile; the profiles are {}",
            names.join(", ")
        )
    })
}

/// Flags of `tickcast-bots merge`.
#[derive(Debug, clap::Args)]
struct MergeArgs {
    /// JSON reports written by `tickcast-bots --json FILE`.
    #[arg(required = true, value_name = "REPORT")]
    reports: Vec<PathBuf>,
    /// Write the merged report as JSON to FILE, or to stdout with `-`.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the merged report as one self-contained HTML page; the time series are
    /// aligned by wall-clock second (see docs/LOAD-REPORTS.md).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

fn matchmake_url(text: &str) -> Result<String, String> {
    tickcast_client::matchmake::check_url(text)
        .map(|_| text.trim_end_matches('/').to_owned())
        .map_err(|e| e.to_string())
}

fn metrics_url(text: &str) -> Result<String, String> {
    tickcast_client::scrape::check_url(text)
        .map(|_| text.to_owned())
        .map_err(|e| e.to_string())
}

/// This process's command line, each argument quoted for a POSIX shell when it needs
/// to be, so that the HTML report shows a command that can be run again.
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(hz) if hz.is_finite() && hz > 0.0 => Ok(hz),
        _ => Err(format!("{text:?} is not a positive number")),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Command::Merge(args)) => merge_reports(&args),
        None => run(cli.run).await,
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let tls = match &args.ca_cert {
        Some(path) => TlsTrust::with_ca_pem_file(path).context("--ca-cert")?,
        None => TlsTrust::public_roots(),
    };
    let config = SwarmConfig {
        url: args.url,
        bots: args.bots,
        duration: args.duration,
        ramp: args.ramp,
        name_prefix: args.name_prefix,
        origin: args.origin,
        input_rate_hz: args.input_rate,
        connect_timeout: args.connect_timeout,
        behaviour: args.behaviour,
        rooms: args.rooms as usize,
        room_prefix: args.room_prefix,
        source_addrs: args.source_addrs.map(usize::from),
        reconnect: (!args.reconnect_budget.is_zero()).then(|| ReconnectPolicy {
            budget: args.reconnect_budget,
            ..ReconnectPolicy::default()
        }),
        tls,
        link: args.link.spec(),
        metrics_url: args.metrics_url,
        tokens: args.auth.tokens()?,
        matchmake: args.matchmake,
        verify_fraction: args.verify_fraction,
    };
    // Refuse bad room names now rather than as thousands of failed connects.
    config.rooms().context("--rooms / --room-prefix")?;
    raise_open_file_limit(config.bots);
    let sources = config.source_addr_count();
    if args.source_addrs.is_some_and(|n| n > 1) && sources == 1 {
        tracing::warn!("--source-addrs ignored: the server is not on an IPv4 loopback address");
    }
    if sources > 1 {
        eprintln!("tickcast-bots: connecting from 127.0.0.1 .. 127.0.0.{sources}");
    }

    let cancel = CancellationToken::new();
    let on_ctrl_c = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::warn!("interrupted: stopping the bots");
            on_ctrl_c.cancel();
        }
    });

    let report = match progress_bar() {
        Some(bar) => {
            let mut prev: Option<Progress> = None;
            let report = run_swarm_with_progress(config, cancel, PROGRESS_PERIOD, |progress| {
                bar.set_message(progress_line(prev.as_ref(), progress));
                prev = Some(*progress);
            })
            .await;
            bar.finish_and_clear();
            report
        }
        None => run_swarm(config, cancel).await,
    };
    let mut report = report;
    report.command = command_line();
    write_outputs(&report, args.json.as_deref(), args.html.as_deref())?;

    if report.bots_connected == 0 && report.bots_requested > 0 {
        anyhow::bail!("no bot connected");
    }
    Ok(())
}

/// A spinner with the live figures on stderr, only when stderr is a terminal: piped
/// or redirected output (CI logs, `2> file`) gets the final report and nothing else.
fn progress_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
    bar.enable_steady_tick(Duration::from_millis(250));
    bar.set_message("starting");
    Some(bar)
}

/// Raises the soft open-file limit to the hard limit, since every bot holds a socket,
/// and says on stderr what it got (with a warning when that is not enough).
fn raise_open_file_limit(bots: usize) {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            match rlimit::getrlimit(rlimit::Resource::NOFILE) {
                Ok((soft, _)) => soft,
                Err(_) => return,
            }
        }
    };
    eprintln!("tickcast-bots: open-file limit {limit}");
    let needed = fds_needed(bots);
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            "open-file limit is below bots + {FD_RESERVE}: some connects will fail with \
             'too many open files'; raise the hard limit (ulimit -Hn) or split the bots \
             over several processes"
        );
    }
}

/// File descriptors a run of `bots` bots needs.
fn fds_needed(bots: usize) -> u64 {
    (bots as u64).saturating_add(FD_RESERVE)
}

fn merge_reports(args: &MergeArgs) -> anyhow::Result<()> {
    let reports = args
        .reports
        .iter()
        .map(|path| read_report(path))
        .collect::<anyhow::Result<Vec<Report>>>()?;
    let merged = merge(&reports).map_err(|e| {
        let which = e
            .index()
            .and_then(|i| args.reports.get(i))
            .map(|path| format!(" ({})", path.display()))
            .unwrap_or_default();
        anyhow::Error::new(e).context(format!("merging the reports{which}"))
    })?;
    write_outputs(&merged, args.json.as_deref(), args.html.as_deref())
}

fn read_report(path: &Path) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a tickcast-bots JSON report", path.display()))
}

fn write_outputs(report: &Report, json: Option<&Path>, html: Option<&Path>) -> anyhow::Result<()> {
    if let Some(path) = html {
        std::fs::write(path, tickcast_client::report::html::render(report))
            .with_context(|| format!("writing the HTML report to {}", path.display()))?;
    }
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
        let cli = Cli::try_parse_from([
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
        assert!(cli.command.is_none());
        let args = cli.run;
        assert_eq!(args.bots, 100);
        assert_eq!(args.duration, Duration::from_secs(20));
        assert_eq!(args.ramp, Duration::from_millis(500));
        assert_eq!(args.json, Some(PathBuf::from("-")));
        assert_eq!(args.behaviour, BehaviourKind::RandomWalk);
        assert_eq!((args.rooms, args.source_addrs), (1, None));
        assert!(Cli::try_parse_from(["tickcast-bots", "--duration", "20"]).is_err());
        assert!(Cli::try_parse_from(["tickcast-bots", "--input-rate", "0"]).is_err());
    }

    #[test]
    fn swarm_flags_parse() {
        let cli = Cli::try_parse_from([
            "tickcast-bots",
            "--behaviour",
            "chase",
            "--rooms",
            "8",
            "--room-prefix",
            "load",
            "--source-addrs",
            "4",
            "--verify-fraction",
            "0.25",
        ])
        .expect("valid flags");
        let args = cli.run;
        assert_eq!(args.verify_fraction, 0.25);
        assert_eq!(
            Cli::try_parse_from(["tickcast-bots"])
                .map(|c| c.run.verify_fraction)
                .ok(),
            Some(tickcast_client::swarm::DEFAULT_VERIFY_FRACTION)
        );
        assert_eq!(args.behaviour, BehaviourKind::Chase);
        assert_eq!(args.rooms, 8);
        assert_eq!(args.room_prefix.as_deref(), Some("load"));
        assert_eq!(args.source_addrs, Some(4));
        for bad in [
            ["--behaviour", "dance"],
            ["--rooms", "0"],
            ["--source-addrs", "0"],
            ["--source-addrs", "255"],
            ["--verify-fraction", "1.5"],
            ["--verify-fraction", "-0.1"],
            ["--verify-fraction", "NaN"],
        ] {
            let mut argv = vec!["tickcast-bots"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
        for name in ["idle", "random-walk", "circle"] {
            assert!(Cli::try_parse_from(["tickcast-bots", "--behaviour", name]).is_ok());
        }
    }

    #[test]
    fn merge_is_an_optional_subcommand() {
        let cli =
            Cli::try_parse_from(["tickcast-bots", "merge", "a.json", "b.json", "--json", "-"])
                .expect("valid merge");
        match cli.command {
            Some(Command::Merge(m)) => {
                assert_eq!(
                    m.reports,
                    [PathBuf::from("a.json"), PathBuf::from("b.json")]
                );
                assert_eq!(m.json, Some(PathBuf::from("-")));
            }
            other => panic!("expected merge, got {other:?}"),
        }
        // Nothing to merge, or run flags mixed in: refused.
        assert!(Cli::try_parse_from(["tickcast-bots", "merge"]).is_err());
        assert!(Cli::try_parse_from(["tickcast-bots", "--bots", "3", "merge", "a.json"]).is_err());
    }

    #[test]
    fn merge_reads_files_and_names_the_bad_one() {
        let dir = std::env::temp_dir().join(format!("tickcast-bots-merge-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let good = dir.join("good.json");
        let report = Report::new(
            "ws://127.0.0.1:1/ws",
            1,
            Duration::from_secs(1),
            &tickcast_client::report::Totals::default(),
            &tickcast_client::report::Histograms::new(),
        );
        std::fs::write(&good, serde_json::to_string(&report).expect("json")).expect("write");
        let out = dir.join("merged.json");
        merge_reports(&MergeArgs {
            reports: vec![good.clone(), good.clone()],
            json: Some(out.clone()),
            html: None,
        })
        .expect("merge");
        let merged = read_report(&out).expect("merged report");
        assert_eq!((merged.bots_requested, merged.processes), (2, 2));

        let bad = dir.join("bad.json");
        std::fs::write(&bad, "{}").expect("write");
        let err = merge_reports(&MergeArgs {
            reports: vec![good, bad],
            json: None,
            html: None,
        })
        .expect_err("bad report");
        assert!(format!("{err:#}").contains("bad.json"), "{err:#}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn link_flags_override_a_profile() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["tickcast-bots"];
            argv.extend(extra);
            Cli::try_parse_from(argv).map(|cli| cli.run.link.spec())
        };
        assert_eq!(parse(&[]).expect("no flags"), None);
        assert_eq!(parse(&["--latency", "0ms"]).expect("perfect"), None);
        let lte = Profile::named("lte").map(Profile::spec);
        assert_eq!(parse(&["--link", "lte"]).expect("profile"), lte);
        let spec = parse(&[
            "--link",
            "lte",
            "--latency",
            "80ms",
            "--jitter",
            "20ms",
            "--bandwidth",
            "1mbit",
            "--loss-stall",
            "1%@200ms",
        ])
        .expect("flags")
        .expect("a link");
        assert_eq!(spec.profile.as_deref(), Some("lte"));
        assert_eq!(spec.latency, Duration::from_millis(80));
        assert_eq!(spec.jitter, Duration::from_millis(20));
        assert_eq!(spec.bandwidth, Some(125_000));
        assert_eq!(
            spec.loss_stall,
            Some(LossStall {
                per_million: 10_000,
                stall: Duration::from_millis(200)
            })
        );
        let only = parse(&["--jitter", "5ms"]).expect("flags").expect("a link");
        assert_eq!((only.profile, only.latency), (None, Duration::ZERO));
        for bad in [
            ["--link", "dialup"],
            ["--bandwidth", "fast"],
            ["--loss-stall", "1%"],
            ["--latency", "80"],
        ] {
            assert!(parse(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn html_and_metrics_flags() {
        let cli = Cli::try_parse_from([
            "tickcast-bots",
            "--html",
            "r.html",
            "--metrics-url",
            "http://127.0.0.1:9/metrics",
        ])
        .expect("valid flags");
        assert_eq!(cli.run.html, Some(PathBuf::from("r.html")));
        assert_eq!(
            cli.run.metrics_url.as_deref(),
            Some("http://127.0.0.1:9/metrics")
        );
        for bad in [
            "ws://127.0.0.1:9/metrics",
            "127.0.0.1:9",
            "https://x/metrics",
        ] {
            assert!(
                Cli::try_parse_from(["tickcast-bots", "--metrics-url", bad]).is_err(),
                "{bad}"
            );
        }
        let cli = Cli::try_parse_from(["tickcast-bots", "merge", "a.json", "--html", "m.html"])
            .expect("merge --html");
        match cli.command {
            Some(Command::Merge(m)) => assert_eq!(m.html, Some(PathBuf::from("m.html"))),
            other => panic!("expected merge, got {other:?}"),
        }
    }

    #[test]
    fn merge_writes_the_html_page() {
        let dir = std::env::temp_dir().join(format!("tickcast-bots-html-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let one = dir.join("one.json");
        let mut report = Report::new(
            "ws://127.0.0.1:1/ws",
            1,
            Duration::from_secs(1),
            &tickcast_client::report::Totals::default(),
            &tickcast_client::report::Histograms::new(),
        );
        report.command = "tickcast-bots --bots 1".into();
        std::fs::write(&one, serde_json::to_string(&report).expect("json")).expect("write");
        let html = dir.join("merged.html");
        merge_reports(&MergeArgs {
            reports: vec![one.clone(), one],
            json: None,
            html: Some(html.clone()),
        })
        .expect("merge");
        let page = std::fs::read_to_string(&html).expect("html written");
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("merged      2 processes"));
        assert!(page.contains("<dd id=\"command\">tickcast-bots --bots 1</dd>"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn jwt_flags_make_the_bot_tokens() {
        let parse = |extra: &[&str]| {
            let mut argv = vec!["tickcast-bots"];
            argv.extend(extra);
            Cli::try_parse_from(argv)
        };
        let tokens_of = |extra: &[&str]| parse(extra).expect("flags").run.auth.tokens();
        assert_eq!(tokens_of(&[]).expect("no file"), None);
        let dir = std::env::temp_dir().join(format!("tickcast-bots-jwt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let secret = dir.join("secret");
        std::fs::write(&secret, "s3cret\n").expect("write");
        let file = secret.to_str().expect("utf-8 path");
        let cli = parse(&[
            "--jwt-secret-file",
            file,
            "--jwt-room-claim",
            "--jwt-issuer",
            "studio",
            "--jwt-audience",
            "game",
        ])
        .expect("flags");
        let tokens = cli.run.auth.tokens().expect("read").expect("tokens");
        let mut want = BotTokens::new(b"s3cret".to_vec()).expect("secret");
        want.room_claim = true;
        want.issuer = Some("studio".into());
        want.audience = Some("game".into());
        assert_eq!(tokens, want);
        // The claims flags mean nothing without a secret.
        let lone: [&[&str]; 3] = [
            &["--jwt-room-claim"],
            &["--jwt-issuer", "x"],
            &["--jwt-audience", "y"],
        ];
        for flags in lone {
            assert!(parse(flags).is_err(), "{flags:?}");
        }
        // A missing or empty file is an error that names the flag, not a run of refusals.
        std::fs::write(&secret, "\n").expect("write");
        let err = tokens_of(&["--jwt-secret-file", file]).expect_err("empty");
        assert!(format!("{err:#}").contains("--jwt-secret-file"), "{err:#}");
        std::fs::remove_dir_all(&dir).ok();
        let err = tokens_of(&["--jwt-secret-file", file]).expect_err("missing");
        assert!(format!("{err:#}").contains("--jwt-secret-file"), "{err:#}");
    }

    #[test]
    fn file_limit_need_includes_a_reserve() {
        assert_eq!(fds_needed(0), 64);
        assert_eq!(fds_needed(10_000), 10_064);
        assert_eq!(fds_needed(usize::MAX), u64::MAX);
    }
}
