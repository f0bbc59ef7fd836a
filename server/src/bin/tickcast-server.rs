//! `tickcast-server`: parses flags, binds, and runs until Ctrl-C or SIGTERM.

use anyhow::Context;
use clap::Parser;
use tickcast_server::Config;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let config = Config::parse();
    // Before the bind: from the moment the port is open, a SIGTERM drains instead of
    // killing the process.
    let signals = Signals::install().context("cannot install signal handlers")?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn(signals.stop(drain.clone(), force.clone()));
    tickcast_server::run_until(listener, config, drain, force).await
}

/// Ctrl-C and (on Unix) SIGTERM, what orchestrators send before killing a process.
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {}
                _ = self.interrupt.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The first signal starts the drain; a second one ends it at once.
    async fn stop(mut self, drain: CancellationToken, force: CancellationToken) {
        self.next().await;
        drain.cancel();
        self.next().await;
        force.cancel();
    }
}
