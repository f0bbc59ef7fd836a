//! The load report as one self-contained HTML page (`tickcast-bots --html FILE`):
//! inline SVG plots drawn by [`super::svg`], inline CSS, no script and nothing
//! fetched, so the file opens anywhere, offline, and can be attached to an issue.
//!
//! What it shows (docs/LOAD-REPORTS.md says how to read each part): the command line
//! and the server's URL; the summary the text report prints; over time, with the end
//! of the ramp marked, connected bots, snapshots per second, snapshot-gap and rtt
//! p50/p99, bandwidth per bot (down and up), errors and closes by code; the server's
//! tick duration, tick lateness and players when its metrics were scraped; and the
//! CDFs of rtt, snapshot gap, input-to-ack and connect time over the whole run.
//!
//! Which samples become points: connected bots, snapshots per second, errors and
//! closes have a point in every sample; gap and rtt percentiles only in samples that
//! measured one (`count > 0`); bandwidth per bot only in samples with connected
//! bot-time; server lines only where the server reported the value. A missing point
//! breaks the line rather than drawing a false zero.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use hdrhistogram::Histogram;

use super::svg::{escape, render as svg, Line, Plot};
use super::{Report, Sample, Series, ServerSample};

/// Quantiles at which a CDF is drawn: every percent, and the tail in finer steps.
const CDF_TAIL: [f64; 3] = [0.995, 0.999, 1.0];

/// Label of the ramp marker.
const RAMP: &str = "ramp end";

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1340px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ccc}\
.plots{display:flex;flex-wrap:wrap;gap:12px}svg.plot{background:#fff;border:1px solid #eee}\
pre{background:#f6f6f6;padding:10px;overflow-x:auto}dt{font-weight:bold}dd{margin:0 0 8px 0;font-family:monospace;word-break:break-all}\
.note{color:#666}";

/// The whole page for `report`.
pub fn render(report: &Report) -> String {
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>tickcast load report: {url}</title><style>{STYLE}</style></head><body>\
         <h1>tickcast load report</h1><dl>\
         <dt>command</dt><dd id=\"command\">{command}</dd>\
         <dt>server</dt><dd id=\"url\">{url}</dd>",
        url = escape(&report.url),
        command = if report.command.is_empty() {
            "(not recorded)".to_owned()
        } else {
            escape(&report.command)
        },
    );
    if let Some(series) = &report.series {
        let _ = write!(
            page,
            "<dt>started</dt><dd id=\"started\">{} UTC</dd>",
            utc(series.start_unix_ms)
        );
        for server in &series.servers {
            let _ = write!(
                page,
                "<dt>server metrics</dt><dd class=\"metrics-url\">{} ({} scrapes, {} failed{})</dd>",
                escape(&server.url),
                server.scrapes,
                server.failures,
                server
                    .last_error
                    .as_deref()
                    .map(|e| format!("; last error: {}", escape(e)))
                    .unwrap_or_default()
            );
        }
    }
    let _ = write!(
        page,
        "</dl><h2>Summary</h2><pre id=\"summary\">{}</pre>",
        escape(&report.summary())
    );

    page.push_str("<h2>Over time</h2>");
    match &report.series {
        Some(series) => {
            page.push_str("<div class=\"plots\">");
            for plot in time_plots(series) {
                page.push_str(&svg(&plot));
            }
            page.push_str("</div>");
            if !series.servers.is_empty() {
                page.push_str("<h2>Server metrics</h2><div class=\"plots\">");
                for plot in server_plots(series) {
                    page.push_str(&svg(&plot));
                }
                page.push_str("</div>");
            }
        }
        None => page.push_str(
            "<p class=\"note\">This report has no time series (written by an older tickcast-bots).</p>",
        ),
    }

    page.push_str("<h2>Distributions (whole run)</h2><div class=\"plots\">");
    for plot in cdf_plots(report) {
        page.push_str(&svg(&plot));
    }
    page.push_str("</div></body></html>\n");
    page
}

/// A plot over time with the ramp marked.
fn over_time(series: &Series, id: &str, title: &str, unit: &str, lines: Vec<Line>) -> Plot {
    Plot {
        id: id.to_owned(),
        title: title.to_owned(),
        x_label: "seconds since the start".to_owned(),
        y_label: unit.to_owned(),
        lines,
        marker: Some((series.ramp_end_s, RAMP.to_owned())),
        y_max: None,
    }
}

/// A line with a point per sample where `f` has one.
fn line_of(series: &Series, name: &str, f: impl Fn(&Sample) -> Option<f64>) -> Line {
    Line::new(
        name,
        series
            .samples
            .iter()
            .map(|s| f(s).map(|y| (s.second as f64, y)))
            .collect(),
    )
}

/// The plots of what the bots saw, second by second.
pub fn time_plots(series: &Series) -> Vec<Plot> {
    let codes: BTreeSet<&str> = series
        .samples
        .iter()
        .flat_map(|s| s.closes.keys().map(String::as_str))
        .collect();
    let mut failures = vec![line_of(series, "errors", |s| Some(s.errors as f64))];
    for code in codes {
        failures.push(line_of(series, &format!("close {code}"), |s| {
            Some(s.closes.get(code).copied().unwrap_or(0) as f64)
        }));
    }
    let pct = |s: &Sample, rtt: bool, p99: bool| {
        let p = if rtt { &s.rtt_ms } else { &s.gap_ms };
        (p.count > 0).then_some(if p99 { p.p99 } else { p.p50 })
    };
    vec![
        over_time(
            series,
            "connected",
            "Connected bots",
            "bots",
            vec![line_of(series, "connected", |s| Some(s.connected as f64))],
        ),
        over_time(
            series,
            "snapshots",
            "Snapshots per second (all bots)",
            "snapshots/s",
            vec![line_of(series, "snapshots/s", |s| {
                Some(s.snapshots_per_s())
            })],
        ),
        over_time(
            series,
            "gap",
            "Snapshot gap",
            "ms",
            vec![
                line_of(series, "p50", |s| pct(s, false, false)),
                line_of(series, "p99", |s| pct(s, false, true)),
            ],
        ),
        over_time(
            series,
            "rtt",
            "Round-trip time",
            "ms",
            vec![
                line_of(series, "p50", |s| pct(s, true, false)),
                line_of(series, "p99", |s| pct(s, true, true)),
            ],
        ),
        over_time(
            series,
            "bandwidth",
            "Bandwidth per bot",
            "bytes/s",
            vec![
                line_of(series, "down", |s| {
                    (s.bot_s > 0.0).then(|| s.down_per_bot_s())
                }),
                line_of(series, "up", |s| (s.bot_s > 0.0).then(|| s.up_per_bot_s())),
            ],
        ),
        over_time(
            series,
            "failures",
            "Errors and closes (per second, by code)",
            "count",
            failures,
        ),
    ]
}

/// The plots of the server's own metrics, one line per scraped URL.
pub fn server_plots(series: &Series) -> Vec<Plot> {
    let several = series.servers.len() > 1;
    let lines = |what: &str, f: &dyn Fn(&ServerSample) -> Option<f64>| -> Vec<Line> {
        series
            .servers
            .iter()
            .map(|server| {
                let name = if several {
                    format!("{what} {}", server.url)
                } else {
                    what.to_owned()
                };
                Line::new(
                    name,
                    server
                        .samples
                        .iter()
                        .map(|s| f(s).map(|y| (s.second as f64, y)))
                        .collect(),
                )
            })
            .collect()
    };
    let mut tick = lines("mean", &|s| s.tick_mean_ms);
    tick.extend(lines("p99", &|s| s.tick_p99_ms));
    let mut late = lines("mean", &|s| s.lateness_mean_ms);
    late.extend(lines("p99", &|s| s.lateness_p99_ms));
    vec![
        over_time(series, "server-tick", "Server tick duration", "ms", tick),
        over_time(
            series,
            "server-lateness",
            "Server tick lateness",
            "ms",
            late,
        ),
        over_time(
            series,
            "server-players",
            "Server players",
            "players",
            lines("players", &|s| s.players),
        ),
    ]
}

/// The CDF of a microsecond histogram: `(ms, fraction at or below)`.
pub fn cdf(h: &Histogram<u64>) -> Vec<Option<(f64, f64)>> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..100)
        .map(|p| f64::from(p) / 100.0)
        .chain(CDF_TAIL)
        .map(|q| Some((h.value_at_quantile(q) as f64 / 1000.0, q)))
        .collect()
}

/// The four whole-run distributions.
pub fn cdf_plots(report: &Report) -> Vec<Plot> {
    let decoded = report.histograms.as_ref().and_then(|h| {
        h.decode()
            .inspect_err(|(name, e)| {
                tracing::warn!(histogram = name, error = %e, "no CDF for a corrupt histogram");
            })
            .ok()
    });
    let empty = Histogram::new(1).ok();
    let pick = |f: fn(&super::Histograms) -> &Histogram<u64>| -> Vec<Option<(f64, f64)>> {
        match (&decoded, &empty) {
            (Some(h), _) => cdf(f(h)),
            (None, Some(e)) => cdf(e),
            (None, None) => Vec::new(),
        }
    };
    [
        ("cdf-rtt", "Round-trip time", pick(|h| &h.rtt)),
        ("cdf-gap", "Snapshot gap", pick(|h| &h.snapshot_gap)),
        (
            "cdf-input-ack",
            "Input to acknowledgement",
            pick(|h| &h.input_ack),
        ),
        ("cdf-connect", "Connect time", pick(|h| &h.connect)),
    ]
    .into_iter()
    .map(|(id, title, points)| Plot {
        id: id.to_owned(),
        title: format!("{title} (CDF)"),
        x_label: "ms".to_owned(),
        y_label: "fraction at or below".to_owned(),
        lines: vec![Line::new("CDF", points)],
        marker: None,
        y_max: Some(1.0),
    })
    .collect()
}

/// `YYYY-MM-DD HH:MM:SS` of a Unix time in milliseconds (proleptic Gregorian, UTC).
fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{record, Histograms, Interval, SeriesRecorder, ServerRecorder, Totals};
    use std::time::Duration;

    fn report(series: Option<Series>) -> Report {
        let mut h = Histograms::new();
        for i in 1..=100 {
            record(&mut h.rtt, Duration::from_micros(i * 100));
        }
        let mut r = Report::new(
            "ws://127.0.0.1:1/ws?room=<b>&x=\"1\"",
            2,
            Duration::from_secs(3),
            &Totals::default(),
            &h,
        );
        r.command = "tickcast-bots --url 'ws://x/</pre><script>alert(1)</script>'".into();
        r.series = series;
        r
    }

    fn series() -> Series {
        let mut rec = SeriesRecorder::new(1_700_000_000_000, Duration::from_millis(1500));
        for k in 1..=3u64 {
            let mut i = Interval::new();
            i.snapshots = 30;
            i.bytes_down = 3000;
            if k != 2 {
                record(&mut i.rtt, Duration::from_millis(2));
            }
            if k == 3 {
                i.closes.insert(1000, 2);
            }
            rec.push(Duration::from_secs(k), 2, Duration::from_secs(2), &i, false);
        }
        rec.finish()
    }

    /// `(data-name, data-points)` of every line of the plot with `id`.
    fn lines_of(page: &str, id: &str) -> Vec<(String, usize)> {
        let start = page.find(&format!("<svg id=\"{id}\"")).expect(id);
        let svg = &page[start..start + page[start..].find("</svg>").expect("end")];
        svg.split("<path class=\"line\" data-name=\"")
            .skip(1)
            .map(|p| {
                let name = p.split('"').next().unwrap_or_default().to_owned();
                let n = p
                    .split("data-points=\"")
                    .nth(1)
                    .and_then(|x| x.split('"').next())
                    .and_then(|x| x.parse().ok())
                    .unwrap_or(usize::MAX);
                (name, n)
            })
            .collect()
    }

    #[test]
    fn user_strings_cannot_inject_markup() {
        let page = render(&report(Some(series())));
        assert!(
            !page.contains("<script>"),
            "no script from the command line"
        );
        assert!(page.contains("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("room=&lt;b&gt;&amp;x=&quot;1&quot;"));
        assert!(!page.contains("<b>"));
        // One document, no external resource.
        assert_eq!(page.matches("<html").count(), 1);
        for fetch in ["src=", "href=", "@import", "url("] {
            assert!(!page.contains(fetch), "{fetch}");
        }
        assert!(page.contains("2023-11-14 22:13:20 UTC"));
    }

    #[test]
    fn every_plot_has_a_line_per_series_with_its_points() {
        let mut s = series();
        let mut rec = ServerRecorder::new("http://127.0.0.1:1/metrics");
        rec.scraped(Duration::ZERO, Ok("tickcast_players 0\n"));
        rec.scraped(Duration::from_secs(1), Ok("tickcast_players 2\n"));
        rec.scraped(Duration::from_secs(2), Err("timeout".into()));
        s.servers.push(rec.finish());
        let page = render(&report(Some(s)));
        let n = |v: &[(&str, usize)]| -> Vec<(String, usize)> {
            v.iter().map(|(a, b)| ((*a).to_owned(), *b)).collect()
        };
        assert_eq!(lines_of(&page, "connected"), n(&[("connected", 3)]));
        assert_eq!(lines_of(&page, "snapshots"), n(&[("snapshots/s", 3)]));
        // The second without a pong has no rtt point.
        assert_eq!(lines_of(&page, "rtt"), n(&[("p50", 2), ("p99", 2)]));
        assert_eq!(lines_of(&page, "gap"), n(&[]));
        assert_eq!(lines_of(&page, "bandwidth"), n(&[("down", 3), ("up", 3)]));
        assert_eq!(
            lines_of(&page, "failures"),
            n(&[("errors", 3), ("close 1000", 3)])
        );
        assert_eq!(lines_of(&page, "server-players"), n(&[("players", 1)]));
        assert_eq!(lines_of(&page, "server-tick"), n(&[]));
        assert_eq!(lines_of(&page, "cdf-rtt"), n(&[("CDF", 103)]));
        assert_eq!(lines_of(&page, "cdf-connect"), n(&[]));
        assert!(page.contains("1 failed; last error: timeout"));
        // The ramp is marked on every plot over time (6 bots', 3 server's).
        assert_eq!(page.matches("class=\"marker\"").count(), 9);
    }

    #[test]
    fn a_report_without_series_or_histograms_still_renders() {
        let mut r = report(None);
        r.histograms = None;
        r.command.clear();
        let page = render(&r);
        assert!(page.contains("no time series"));
        assert!(page.contains("(not recorded)"));
        assert_eq!(page.matches("no data").count(), 4);
        assert!(!page.contains("<path"));
    }
}
