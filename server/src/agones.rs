//! Running as an Agones game server (`--agones`).
//!
//! Agones runs each game server next to an SDK sidecar and moves it through its
//! lifecycle by what the server tells that sidecar. This module tells it, over the
//! sidecar's REST API on 127.0.0.1 ([`sidecar`]), what [`schedule`] decides:
//! - Ready, once the listener is bound (retried with backoff: the sidecar may start
//!   after us);
//! - Health every `--agones-health-period`, for as long as the server runs;
//! - the Counter `players`: the players in our rooms and how many we take (the
//!   Counters API is beta and on by default, where player tracking is an alpha feature
//!   gate that is off; a Counter also needs no player ids, which the rooms keep to
//!   themselves); a draining server reports no free seat;
//! - Shutdown, last, once the drain is over and the connections are closed.
//!
//! The sidecar is never in the games' way: its failures are logged (once per streak)
//! and retried, and nothing in the serving path waits for it.

pub mod schedule;
pub mod sidecar;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::Config;
use schedule::{Call, Players, Report, Schedule};
use sidecar::Sidecar;

/// The sidecar's REST port when neither `--agones-sdk-port` nor `AGONES_SDK_HTTP_PORT`
/// says otherwise (Agones' own default).
pub const DEFAULT_SDK_PORT: u16 = 9358;

/// The environment variable in which Agones gives a game server the sidecar's port.
pub const SDK_PORT_ENV: &str = "AGONES_SDK_HTTP_PORT";

/// How often the player count is read between calls: the rooms do not announce
/// changes, and reading one atomic is nothing.
const PLAYERS_POLL: Duration = Duration::from_millis(250);

/// Tries of the final Shutdown call, with [`schedule::backoff`] between them: a sidecar
/// that is gone must not hold the process for long.
const SHUTDOWN_TRIES: u32 = 3;

/// The sidecar port: `flag`, else `env` (the value of [`SDK_PORT_ENV`]) when it is a
/// port number, else [`DEFAULT_SDK_PORT`].
pub fn sdk_port(flag: Option<u16>, env: Option<&str>) -> u16 {
    flag.or_else(|| env.and_then(|v| v.trim().parse().ok()))
        .unwrap_or(DEFAULT_SDK_PORT)
}

/// Players this server takes at most, reported as the Counter's capacity: every room
/// full (`--max-rooms` × `--max-players`), but no more than `--max-connections`.
pub fn capacity(config: &Config) -> u64 {
    let rooms = u64::try_from(config.max_rooms).unwrap_or(u64::MAX);
    let per_room = u64::try_from(config.max_players).unwrap_or(u64::MAX);
    let connections = u64::try_from(config.max_connections).unwrap_or(u64::MAX);
    rooms.saturating_mul(per_room).min(connections)
}

/// The URL players dial to reach this GameServer, from the GameServer resource that
/// the sidecar serves ([`Sidecar::gameserver`]): `scheme://status.address:port`, the
/// port being the host port Agones picked for the port named `default`. Inside the pod
/// nothing else knows that port, so this is where `--public-url` comes from under
/// Agones. `None` while the GameServer has no address or no such port yet.
pub fn public_url(gameserver: &serde_json::Value, scheme: &str) -> Option<String> {
    let status = gameserver.get("status")?;
    let address = status.get("address")?.as_str().filter(|a| !a.is_empty())?;
    let port = status
        .get("ports")?
        .as_array()?
        .iter()
        .find(|p| p.get("name").and_then(|n| n.as_str()) == Some("default"))?
        .get("port")?;
    // proto3 JSON may write a number as a string.
    let port: u16 = match port {
        serde_json::Value::Number(n) => u16::try_from(n.as_u64()?).ok()?,
        serde_json::Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_owned()
    };
    Some(format!("{scheme}://{host}:{port}"))
}

/// Asks the sidecar on `port` for [`public_url`] (one try; the caller decides how
/// often to ask again).
///
/// # Errors
/// The sidecar cannot be reached or answers with an error, or the GameServer has no
/// address or `default` port yet (then [`sidecar::SidecarError::Status`] with the
/// sidecar's 200 and a note).
pub async fn discover_public_url(port: u16, scheme: &str) -> Result<String, sidecar::SidecarError> {
    let gameserver = Sidecar::new(port).gameserver().await?;
    public_url(&gameserver, scheme).ok_or_else(|| sidecar::SidecarError::Status {
        status: hyper::StatusCode::OK,
        body: "the GameServer has no address or no port named default yet".to_owned(),
    })
}

/// The running link to the sidecar: [`Agones::start`] it once listening, and
/// [`Agones::shutdown`] it last.
#[derive(Debug)]
pub struct Agones {
    sidecar: Sidecar,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Agones {
    /// Starts telling the sidecar about this server: Ready first, then Health and the
    /// players Counter, reading the player count from `metrics` and whether the server
    /// drains from `draining`. Call it once the listener is bound.
    pub fn start(config: &Config, metrics: Arc<Metrics>, draining: CancellationToken) -> Self {
        let env = std::env::var(SDK_PORT_ENV).ok();
        let port = sdk_port(config.agones_sdk_port, env.as_deref());
        let sidecar = Sidecar::new(port);
        let stop = CancellationToken::new();
        let link = Link {
            sidecar,
            schedule: Schedule::new(Instant::now().into_std(), config.agones_health_period),
            capacity: capacity(config),
            metrics,
            draining,
            stop: stop.clone(),
        };
        info!(port, capacity = link.capacity, "telling the Agones sidecar");
        Self {
            sidecar,
            stop,
            task: tokio::spawn(link.run()),
        }
    }

    /// Stops the calls (a call under way finishes first, so Shutdown is the last the
    /// sidecar hears), then calls Shutdown, trying [`SHUTDOWN_TRIES`] times at most.
    /// Never fails: a sidecar that cannot be told is logged, and the process ends anyway.
    pub async fn shutdown(self) {
        self.stop.cancel();
        if let Err(e) = self.task.await {
            warn!(error = %e, "the Agones task ended abnormally");
        }
        for attempt in 1..=SHUTDOWN_TRIES {
            match self.sidecar.shutdown().await {
                Ok(()) => {
                    info!("told the Agones sidecar: Shutdown");
                    return;
                }
                Err(e) if attempt == SHUTDOWN_TRIES => {
                    warn!(error = %e, attempts = attempt, "could not tell the Agones sidecar Shutdown");
                }
                Err(e) => {
                    debug!(error = %e, attempt, "Agones Shutdown failed; retrying");
                    tokio::time::sleep(schedule::backoff(attempt)).await;
                }
            }
        }
    }
}

/// The task's state: the schedule and what it reads.
struct Link {
    sidecar: Sidecar,
    schedule: Schedule,
    capacity: u64,
    metrics: Arc<Metrics>,
    draining: CancellationToken,
    stop: CancellationToken,
}

impl Link {
    fn players(&self) -> Players {
        Players::observed(
            self.metrics.players.load(Relaxed),
            self.capacity,
            self.draining.is_cancelled(),
        )
    }

    /// Makes each call as it falls due, one at a time, until told to stop. A call under
    /// way is not cut short by the stop (it is bounded by its own timeout).
    async fn run(mut self) {
        loop {
            let now = Instant::now();
            let players = self.players();
            if let Some(call) = self.schedule.poll_call(now.into_std(), players) {
                let result = self.sidecar.call(call).await;
                let report =
                    self.schedule
                        .handle_result(call, result.is_ok(), Instant::now().into_std());
                log(call, report, result.err());
                if self.stop.is_cancelled() {
                    return;
                }
                continue;
            }
            let due = Instant::from_std(self.schedule.poll_timeout(players));
            let wake = due.min(now + PLAYERS_POLL);
            tokio::select! {
                () = self.stop.cancelled() => return,
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// One log line per change: the first failure of a streak, and the recovery.
fn log(call: Call, report: Report, error: Option<sidecar::SidecarError>) {
    match (report, error) {
        (Report::Failing, Some(e)) => {
            warn!(?call, error = %e, "Agones sidecar call failed; retrying (games go on)");
        }
        (Report::Recovered { failures }, _) => {
            info!(?call, failures, "Agones sidecar call succeeded again");
        }
        (_, Some(e)) => debug!(?call, error = %e, "Agones sidecar call failed again"),
        (_, None) if call == Call::Ready => info!("told the Agones sidecar: Ready"),
        (_, None) => debug!(?call, "Agones sidecar call done"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_port_comes_from_the_flag_then_the_environment() {
        assert_eq!(sdk_port(Some(1234), Some("5678")), 1234);
        assert_eq!(sdk_port(None, Some("5678")), 5678);
        assert_eq!(sdk_port(None, Some(" 5678\n")), 5678);
        assert_eq!(sdk_port(None, Some("not a port")), DEFAULT_SDK_PORT);
        assert_eq!(sdk_port(None, Some("70000")), DEFAULT_SDK_PORT);
        assert_eq!(sdk_port(None, None), 9358);
    }

    #[test]
    fn the_agones_flags() {
        use clap::Parser;
        let off = Config::default();
        assert!(!off.agones);
        assert_eq!(off.agones_sdk_port, None);
        assert_eq!(off.agones_health_period, Duration::from_secs(2));
        let on = Config::try_parse_from([
            "x",
            "--agones",
            "--agones-sdk-port",
            "9400",
            "--agones-health-period",
            "1s",
        ]);
        let on = on.map_err(|e| e.to_string());
        assert_eq!(
            on.map(|c| (c.agones, c.agones_sdk_port, c.agones_health_period)),
            Ok((true, Some(9400), Duration::from_secs(1)))
        );
        // Sidecar settings without `--agones` would be silently ignored: a usage error.
        assert!(Config::try_parse_from(["x", "--agones-sdk-port", "9400"]).is_err());
        assert!(Config::try_parse_from(["x", "--agones-health-period", "1s"]).is_err());
    }

    #[test]
    fn the_public_url_is_the_gameservers_address_and_default_port() {
        let gs = serde_json::json!({
            "object_meta": {"name": "tickcast-abcde-xyz12"},
            "status": {
                "state": "Scheduled",
                "address": "203.0.113.7",
                "ports": [{"name": "metrics", "port": 7100}, {"name": "default", "port": 7623}]
            }
        });
        assert_eq!(
            public_url(&gs, "ws").as_deref(),
            Some("ws://203.0.113.7:7623")
        );
        let v6 = serde_json::json!({
            "status": {"address": "2001:db8::7", "ports": [{"name": "default", "port": "7623"}]}
        });
        assert_eq!(
            public_url(&v6, "wss").as_deref(),
            Some("wss://[2001:db8::7]:7623")
        );
        let not_yet =
            serde_json::json!({"status": {"state": "Creating", "address": "", "ports": []}});
        assert_eq!(public_url(&not_yet, "ws"), None);
        let no_default = serde_json::json!({
            "status": {"address": "203.0.113.7", "ports": [{"name": "game", "port": 7623}]}
        });
        assert_eq!(public_url(&no_default, "ws"), None);
    }

    #[test]
    fn capacity_is_every_room_full_within_the_connection_cap() {
        let config = Config {
            max_rooms: 8,
            max_players: 16,
            ..Config::default()
        };
        assert_eq!(capacity(&config), 128);
        let defaults = Config::default();
        assert_eq!(
            capacity(&defaults),
            20_000,
            "1000 × 128 capped by --max-connections"
        );
    }
}
