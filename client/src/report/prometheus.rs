//! A small reader of the Prometheus text exposition format (version 0.0.4), for the
//! few series of a tickcast server that a load report plots: players, and the per-room
//! tick duration and tick lateness histograms (summed over rooms).
//!
//! Only sample lines are read (`name{label="value",...} value [timestamp]`); `# HELP`
//! and `# TYPE` lines and blank lines are skipped. A line that does not follow the
//! format is an error naming its line number, so a page from something that is not a
//! Prometheus endpoint counts as a failed scrape rather than as zeros.

use std::collections::BTreeMap;

/// The players gauge of the server (all rooms).
pub const PLAYERS: &str = "tickcast_players";
/// The per-room histogram of the time one tick takes to compute.
pub const TICK_DURATION: &str = "tickcast_room_tick_duration_seconds";
/// The per-room histogram of how late each tick wake-up was.
pub const TICK_LATENESS: &str = "tickcast_room_tick_lateness_seconds";

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLine<'a> {
    /// Metric name, with its `_bucket` / `_sum` / `_count` suffix if any.
    pub name: &'a str,
    /// Labels in page order, values unescaped.
    pub labels: Vec<(&'a str, String)>,
    /// The value (`+Inf`, `-Inf` and `NaN` included).
    pub value: f64,
}

impl MetricLine<'_> {
    /// The value of label `name`, if the line has it.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A line that is not of the text format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metrics line {line}: {what}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// Every sample line of `text`.
///
/// # Errors
/// [`ParseError`] for the first line that is not a comment, blank, or a sample.
pub fn parse(text: &str) -> Result<Vec<MetricLine<'_>>, ParseError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        out.push(parse_line(line).map_err(|what| ParseError { line: i + 1, what })?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<MetricLine<'_>, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        rest = parse_labels(after, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next().ok_or("no value")?).ok_or("bad value")?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().map_err(|_| "bad timestamp")?;
    }
    if fields.next().is_some() {
        return Err("trailing text");
    }
    Ok(MetricLine {
        name,
        labels,
        value,
    })
}

/// Reads `name="value",...}` and returns what follows the closing brace.
fn parse_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(&'a str, String)>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find('=').ok_or("label without '='")?;
        let key = rest[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("bad label name");
        }
        let quoted = rest[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value not quoted")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let end = loop {
            match chars.next().ok_or("unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("unterminated escape")?.1 {
                    'n' => value.push('\n'),
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    _ => return Err("bad escape in label value"),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key, value));
        rest = quoted[end + 1..].trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label");
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// A histogram family summed over its label sets (rooms): cumulative bucket counts
/// by upper bound, sum and count.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct HistogramReading {
    /// `(le, cumulative count)`, by increasing `le`; the last is `+Inf`.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations.
    pub count: f64,
}

impl HistogramReading {
    fn read(lines: &[MetricLine<'_>], family: &str) -> Self {
        let mut by_le: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        let mut out = Self::default();
        for line in lines {
            let Some(suffix) = line.name.strip_prefix(family) else {
                continue;
            };
            match suffix {
                "_bucket" => {
                    let Some(le) = line.label("le") else { continue };
                    let Some(bound) = parse_value(le) else {
                        continue;
                    };
                    by_le.entry(le.to_owned()).or_insert((bound, 0.0)).1 += line.value;
                }
                "_sum" => out.sum += line.value,
                "_count" => out.count += line.value,
                _ => {}
            }
        }
        out.buckets = by_le.into_values().collect();
        out.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    /// What was observed between `earlier` and `self`: `(count, mean, p99)` with the
    /// values in the family's unit, or `None` when nothing was observed. A family that
    /// went down (a room's series removed when it ended) is read as restarted, so only
    /// `self` counts. The p99 is interpolated linearly within its bucket, as
    /// Prometheus's `histogram_quantile` does; past the largest finite bound it is
    /// that bound.
    pub fn since(&self, earlier: &Self) -> Option<(f64, f64, f64)> {
        let restarted = self.count < earlier.count;
        let base = |le: f64| {
            if restarted {
                return 0.0;
            }
            earlier
                .buckets
                .iter()
                .find(|(b, _)| *b == le)
                .map_or(0.0, |(_, n)| *n)
        };
        let (count, sum) = if restarted {
            (self.count, self.sum)
        } else {
            (self.count - earlier.count, self.sum - earlier.sum)
        };
        if count <= 0.0 {
            return None;
        }
        let rank = 0.99 * count;
        let mut lower = 0.0;
        let mut below = 0.0;
        let mut p99 = lower;
        for (le, cumulative) in &self.buckets {
            let n = (cumulative - base(*le)).max(0.0);
            if n >= rank {
                p99 = if le.is_finite() {
                    let inside = n - below;
                    let frac = if inside > 0.0 {
                        (rank - below) / inside
                    } else {
                        1.0
                    };
                    lower + (le - lower) * frac
                } else {
                    lower
                };
                break;
            }
            if le.is_finite() {
                lower = *le;
                p99 = lower;
            }
            below = n;
        }
        Some((count, sum / count, p99))
    }
}

/// What a tickcast server's `/metrics` page says at one moment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ServerReading {
    /// Players in rooms (`tickcast_players`), if the page has it.
    pub players: Option<f64>,
    /// Tick compute time, summed over rooms, seconds.
    pub tick_duration: HistogramReading,
    /// Tick wake-up lateness, summed over rooms, seconds.
    pub tick_lateness: HistogramReading,
}

impl ServerReading {
    /// Reads the series a load report plots from a metrics page.
    ///
    /// # Errors
    /// [`ParseError`] if the page is not in the text format.
    pub fn from_page(text: &str) -> Result<Self, ParseError> {
        let lines = parse(text)?;
        Ok(Self {
            players: lines.iter().find(|l| l.name == PLAYERS).map(|l| l.value),
            tick_duration: HistogramReading::read(&lines, TICK_DURATION),
            tick_lateness: HistogramReading::read(&lines, TICK_LATENESS),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_labels_escapes_and_special_values() {
        let page = "# HELP x A help.\n# TYPE x counter\n\n\
                    x_total 3\n\
                    y{a=\"1\",b=\"q\\\"uo\\\\te\\n\"} +Inf 1700000000\n\
                    z{le=\"0.5\",} NaN\n\
                    w -Inf\n";
        let lines = parse(page).expect("parse");
        assert_eq!(lines.len(), 4);
        assert_eq!((lines[0].name, lines[0].value), ("x_total", 3.0));
        assert_eq!(lines[1].label("a"), Some("1"));
        assert_eq!(lines[1].label("b"), Some("q\"uo\\te\n"));
        assert_eq!(lines[1].value, f64::INFINITY);
        assert!(lines[2].value.is_nan());
        assert_eq!(lines[2].label("le"), Some("0.5"));
        assert_eq!(lines[3].value, f64::NEG_INFINITY);
    }

    #[test]
    fn malformed_lines_are_errors_with_their_number() {
        for (page, line) in [
            ("ok 1\n<html>\n", 2),
            ("x{a=1} 2\n", 1),
            ("x{a=\"1\" 2\n", 1),
            ("x 1 2 3\n", 1),
            ("x\n", 1),
            ("x abc\n", 1),
            ("# c\n\nx{a=\"\\q\"} 1\n", 3),
        ] {
            assert_eq!(parse(page).map_err(|e| e.line), Err(line), "{page:?}");
        }
    }

    /// A page with two rooms' tick histograms (bounds 1, 2, 4 ms) and `players`.
    fn page(a: [u64; 4], b: [u64; 4], sum: f64, players: u64) -> String {
        let mut text = format!("# TYPE tickcast_players gauge\ntickcast_players {players}\n");
        for (room, counts) in [("a", a), ("b", b)] {
            for (le, n) in ["0.001", "0.002", "0.004", "+Inf"].iter().zip(counts) {
                text += &format!("{TICK_DURATION}_bucket{{room=\"{room}\",le=\"{le}\"}} {n}\n");
            }
            text += &format!("{TICK_DURATION}_sum{{room=\"{room}\"}} {sum}\n");
            text += &format!("{TICK_DURATION}_count{{room=\"{room}\"}} {}\n", counts[3]);
        }
        text
    }

    #[test]
    fn histograms_sum_over_rooms_and_differ_between_readings() {
        let before =
            ServerReading::from_page(&page([0, 0, 0, 0], [0, 0, 0, 0], 0.0, 0)).expect("before");
        // 100 ticks in all: 50 under 1 ms, 48 in (1, 2] ms, 2 in (2, 4] ms.
        let after = ServerReading::from_page(&page([25, 49, 50, 50], [25, 49, 50, 50], 0.05, 7))
            .expect("after");
        assert_eq!(after.players, Some(7.0));
        assert_eq!(after.tick_duration.count, 100.0);
        assert_eq!(after.tick_duration.buckets.len(), 4);
        let (count, mean, p99) = after
            .tick_duration
            .since(&before.tick_duration)
            .expect("ticks");
        assert_eq!(count, 100.0);
        assert!((mean - 0.001).abs() < 1e-12);
        // Rank 99 of 100 is halfway through the (2, 4] ms bucket's 2 ticks.
        assert!((p99 - 0.003).abs() < 1e-12, "{p99}");
        assert_eq!(after.tick_duration.since(&after.tick_duration), None);
        // A room ended: the sums went down, so `after` is read on its own.
        let fewer =
            ServerReading::from_page(&page([1, 1, 1, 1], [0, 0, 0, 0], 0.0005, 1)).expect("fewer");
        let (count, _, p99) = fewer
            .tick_duration
            .since(&after.tick_duration)
            .expect("restart");
        assert_eq!(count, 1.0);
        assert!((p99 - 0.00099).abs() < 1e-12, "{p99}");
        // Past the last finite bound: that bound.
        let slow =
            ServerReading::from_page(&page([0, 0, 0, 10], [0, 0, 0, 0], 1.0, 1)).expect("slow");
        assert_eq!(
            slow.tick_duration.since(&before.tick_duration).map(|x| x.2),
            Some(0.004)
        );
        assert_eq!(
            ServerReading::from_page("").expect("empty"),
            ServerReading::default()
        );
    }
}
