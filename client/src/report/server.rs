//! What the server itself said during a run, from its `/metrics` page scraped once a
//! second (`tickcast-bots --metrics-url`): players, tick duration and tick lateness
//! per second. The bots see the server from outside; these say whether a bad second
//! was the server's own doing (a slow or late tick) or the network's.
//!
//! This part is I/O-free: the swarm fetches the page and hands its text (or why it
//! could not) to a [`ServerRecorder`]. A failed scrape is counted and its last reason
//! kept, never fatal: the series simply has no sample for that second.

use serde::{Deserialize, Serialize};
use std::time::Duration;

use super::prometheus::ServerReading;

/// One second of the server's metrics: what changed since the previous scrape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    /// Seconds since the start of the run, on the same axis as the bots' samples.
    pub second: u64,
    /// Players in rooms at the scrape (`tickcast_players`), if the page had it.
    pub players: Option<f64>,
    /// Ticks computed since the previous scrape, all rooms.
    pub ticks: f64,
    /// Mean tick compute time over those ticks, ms.
    pub tick_mean_ms: Option<f64>,
    /// 99th percentile of it, ms (interpolated within the server's buckets).
    pub tick_p99_ms: Option<f64>,
    /// Mean tick wake-up lateness, ms.
    pub lateness_mean_ms: Option<f64>,
    /// 99th percentile of it, ms.
    pub lateness_p99_ms: Option<f64>,
}

/// The scrapes of one metrics URL.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ServerSeries {
    /// The URL scraped.
    pub url: String,
    /// Scrapes attempted.
    pub scrapes: u64,
    /// Scrapes that failed (no answer, not 200, not the text format).
    pub failures: u64,
    /// Why the last failed scrape failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// One sample per successful scrape after the first.
    pub samples: Vec<ServerSample>,
}

impl ServerSeries {
    /// Adds this series, shifted by `offset` seconds, into `into`: into the entry of
    /// the same URL if there is one (several bot processes scraping one server saw the
    /// same thing, so for a second that entry already has, its sample is kept and this
    /// one dropped), else as a new entry.
    pub fn merge_into(&self, into: &mut Vec<ServerSeries>, offset: u64) {
        let shifted = self.samples.iter().map(|s| ServerSample {
            second: s.second + offset,
            ..s.clone()
        });
        match into.iter_mut().find(|s| s.url == self.url) {
            Some(existing) => {
                existing.scrapes += self.scrapes;
                existing.failures += self.failures;
                if self.last_error.is_some() {
                    existing.last_error.clone_from(&self.last_error);
                }
                for sample in shifted {
                    if let Err(at) = existing
                        .samples
                        .binary_search_by_key(&sample.second, |s| s.second)
                    {
                        existing.samples.insert(at, sample);
                    }
                }
            }
            None => into.push(ServerSeries {
                samples: shifted.collect(),
                ..self.clone()
            }),
        }
    }
}

/// Builds a [`ServerSeries`] from scrapes.
#[derive(Debug)]
pub struct ServerRecorder {
    series: ServerSeries,
    previous: Option<ServerReading>,
}

impl ServerRecorder {
    /// A recorder for scrapes of `url`.
    pub fn new(url: &str) -> Self {
        Self {
            series: ServerSeries {
                url: url.to_owned(),
                ..ServerSeries::default()
            },
            previous: None,
        }
    }

    /// Records the scrape started `elapsed` after the run's start: the page's text, or
    /// why there was none.
    pub fn scraped(&mut self, elapsed: Duration, page: Result<&str, String>) {
        self.series.scrapes += 1;
        let reading =
            page.and_then(|text| ServerReading::from_page(text).map_err(|e| e.to_string()));
        let reading = match reading {
            Ok(reading) => reading,
            Err(e) => {
                self.series.failures += 1;
                self.series.last_error = Some(e);
                return;
            }
        };
        if let Some(previous) = &self.previous {
            let second = elapsed.as_secs_f64().round() as u64;
            let after = self.series.samples.last().map_or(0, |s| s.second + 1);
            let ms = |x: f64| x * 1000.0;
            let tick = reading.tick_duration.since(&previous.tick_duration);
            let late = reading.tick_lateness.since(&previous.tick_lateness);
            self.series.samples.push(ServerSample {
                second: second.max(after),
                players: reading.players,
                ticks: tick.map_or(0.0, |t| t.0),
                tick_mean_ms: tick.map(|t| ms(t.1)),
                tick_p99_ms: tick.map(|t| ms(t.2)),
                lateness_mean_ms: late.map(|t| ms(t.1)),
                lateness_p99_ms: late.map(|t| ms(t.2)),
            });
        }
        self.previous = Some(reading);
    }

    /// The series recorded so far.
    pub fn finish(self) -> ServerSeries {
        self.series
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::prometheus::{PLAYERS, TICK_DURATION};

    fn page(ticks: u64, players: u64) -> String {
        format!(
            "{PLAYERS} {players}\n\
             {TICK_DURATION}_bucket{{room=\"a\",le=\"0.001\"}} {ticks}\n\
             {TICK_DURATION}_bucket{{room=\"a\",le=\"+Inf\"}} {ticks}\n\
             {TICK_DURATION}_sum{{room=\"a\"}} {}\n\
             {TICK_DURATION}_count{{room=\"a\"}} {ticks}\n",
            ticks as f64 * 0.0005
        )
    }

    #[test]
    fn failures_are_counted_and_samples_are_differences() {
        let mut rec = ServerRecorder::new("http://127.0.0.1:1/metrics");
        rec.scraped(Duration::ZERO, Ok(&page(0, 0)));
        rec.scraped(
            Duration::from_millis(1_002),
            Err("connection refused".into()),
        );
        rec.scraped(Duration::from_millis(2_001), Ok(&page(60, 4)));
        rec.scraped(Duration::from_millis(2_999), Ok("<html>not metrics</html>"));
        rec.scraped(Duration::from_millis(4_000), Ok(&page(90, 4)));
        let s = rec.finish();
        assert_eq!((s.scrapes, s.failures), (5, 2));
        assert!(s
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("metrics line 1")));
        let rows: Vec<(u64, Option<f64>, f64)> = s
            .samples
            .iter()
            .map(|x| (x.second, x.players, x.ticks))
            .collect();
        assert_eq!(rows, [(2, Some(4.0), 60.0), (4, Some(4.0), 30.0)]);
        assert_eq!(s.samples[0].tick_mean_ms, Some(0.5));
        assert_eq!(s.samples[0].lateness_mean_ms, None);
    }

    #[test]
    fn merging_one_url_keeps_one_sample_per_second() {
        let one = |seconds: &[u64], players: f64| ServerSeries {
            url: "http://s/metrics".into(),
            scrapes: seconds.len() as u64,
            failures: 0,
            last_error: None,
            samples: seconds
                .iter()
                .map(|&second| ServerSample {
                    second,
                    players: Some(players),
                    ticks: 30.0,
                    tick_mean_ms: None,
                    tick_p99_ms: None,
                    lateness_mean_ms: None,
                    lateness_p99_ms: None,
                })
                .collect(),
        };
        let mut all = Vec::new();
        one(&[1, 2, 3], 1.0).merge_into(&mut all, 0);
        one(&[1, 2], 2.0).merge_into(&mut all, 2);
        let mut other = one(&[1], 3.0);
        other.url = "http://t/metrics".into();
        other.merge_into(&mut all, 0);
        assert_eq!(all.len(), 2);
        let rows: Vec<(u64, Option<f64>)> = all[0]
            .samples
            .iter()
            .map(|s| (s.second, s.players))
            .collect();
        assert_eq!(
            rows,
            [
                (1, Some(1.0)),
                (2, Some(1.0)),
                (3, Some(1.0)),
                (4, Some(2.0))
            ]
        );
        assert_eq!(all[0].scrapes, 5);
    }
}
