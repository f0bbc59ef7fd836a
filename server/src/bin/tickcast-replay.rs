//! `tickcast-replay DIR/room-ID`: re-runs a recorded room (`tickcast-server --record DIR`)
//! with no network and checks that every tick reproduces the recorded world.
//!
//! Exit status: 0 when every tick matched, 1 at the first diverging tick, 2 when the
//! recording cannot be read or replayed, 3 when it is incomplete (the writer dropped
//! records) and matched up to the gap.
//!
//! With `--serve ADDR`, after the check it serves the replay as a read-only room at
//! `--speed` times the recorded rate: every room a viewer joins on `ws://ADDR/ws` replays
//! the recording from its first tick (see `tickcast_server::record::serve`), until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tickcast_server::record::replay::{self, Recording, Verdict};
use tickcast_server::record::serve;
use tickcast_server::{Config, Games};
use tokio_util::sync::CancellationToken;

/// Replays a room recording and checks it tick by tick.
#[derive(Debug, Parser)]
#[command(name = "tickcast-replay", version)]
struct Args {
    /// The recording's first file, `DIR/room-ID`; `room-ID.1`, `.2`... are read after it.
    recording: PathBuf,

    /// After the check, serve the replay to viewers (a browser page or bots) on this
    /// address as a read-only room; Ctrl-C stops.
    #[arg(long, value_name = "ADDR")]
    serve: Option<SocketAddr>,

    /// Replay speed when serving: 2 plays twice as fast, 0.5 at half speed (the room
    /// ticks at the recorded rate times this, rounded, from 1 to 1000 ticks/s).
    #[arg(long, default_value_t = 1.0, value_name = "X")]
    speed: f64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let recording = match replay::read(&args.recording) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tickcast-replay: {e}");
            return ExitCode::from(2);
        }
    };
    let h = &recording.header;
    println!(
        "room {}: game {} seed {} npcs {} at {} ticks/s, {} file(s), {} records",
        h.room,
        h.game,
        h.seed,
        h.npcs,
        h.tick_rate,
        recording.segments,
        recording.records.len()
    );
    if let Some((file, offset)) = &recording.torn {
        println!(
            "note: {} ends in a torn record at byte {offset} (ignored)",
            file.display()
        );
    }
    let outcome = match replay::replay(&recording, &Games::builtin()) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("tickcast-replay: {e}");
            return ExitCode::from(2);
        }
    };
    let players: Vec<String> = outcome
        .players
        .iter()
        .map(|(id, name)| format!("{id}:{name}"))
        .collect();
    println!(
        "ticks {}, players {} [{}], inputs {}, messages {}",
        outcome.ticks,
        outcome.players.len(),
        players.join(", "),
        outcome.inputs,
        outcome.messages
    );
    let status = match outcome.verdict {
        Verdict::Ok => {
            println!("OK: all {} ticks reproduced", outcome.ticks);
            ExitCode::SUCCESS
        }
        Verdict::Diverged { tick, what } => {
            println!("DIVERGED at tick {tick}: {what}");
            ExitCode::from(1)
        }
        Verdict::Incomplete { after, dropped } => {
            println!("INCOMPLETE: {dropped} records were dropped after tick {after}; ticks up to it reproduced");
            ExitCode::from(3)
        }
    };
    match args.serve {
        Some(addr) => match serve_replay(recording, addr, args.speed) {
            Ok(()) => status,
            Err(e) => {
                eprintln!("tickcast-replay: --serve {addr}: {e:#}");
                ExitCode::from(2)
            }
        },
        None => status,
    }
}

/// Serves `recording` on `addr` until Ctrl-C.
fn serve_replay(recording: Recording, addr: SocketAddr, speed: f64) -> anyhow::Result<()> {
    if !(speed.is_finite() && speed > 0.0) {
        anyhow::bail!("--speed must be a positive number, not {speed}");
    }
    let recorded = f64::from(recording.header.tick_rate);
    // Clamped to 1..=1000 first, so the cast is exact.
    let tick_rate = (recorded * speed).round().clamp(1.0, 1000.0) as u16;
    let games = serve::games(Arc::new(recording), Games::builtin())?;
    let config = Config {
        listen: addr,
        game: serve::REPLAY_GAME.into(),
        tick_rate,
        npcs: 0,
        drain_timeout: Duration::ZERO,
        ..Config::default()
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!(
            "serving the replay on ws://{}/ws?room=NAME at {tick_rate} ticks/s ({speed}x); each room replays from its first tick; Ctrl-C stops",
            listener.local_addr()?
        );
        let (drain, force) = (CancellationToken::new(), CancellationToken::new());
        let stop = drain.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.cancel();
            }
        });
        tickcast_server::serve(listener, config, games, drain, force).await
    })
}
