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
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let (drain, force) = (CancellationToken::new(), CancellationToken::new());
    tokio::spawn(stop_on_signals(drain.clone(), force.clone()));
    tickcast_server::run_until(listener, config, drain, force).await
}

/// The first Ctrl-C or SIGTERM (what orchestrators send before killing) starts the
/// drain; a second one ends it at once.
async fn stop_on_signals(drain: CancellationToken, force: CancellationToken) {
    wait_for_signal().await;
    drain.cancel();
    wait_for_signal().await;
    force.cancel();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
