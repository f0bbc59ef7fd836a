//! Combining the reports of several `tickcast-bots` processes into one. A merge is
//! exact: histograms are added and their percentiles read again, counters are summed
//! and rates recomputed from the sums, so the result is what one process running all
//! the bots would have reported.

use std::time::Duration;

use super::series::{merge_series, SeriesMergeError};
use super::{HistogramCodecError, Histograms, Report, Totals};

/// Why reports could not be merged. `index` is the position of the offending report
/// in the list given to [`merge`].
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// The list was empty.
    #[error("no reports to merge")]
    Empty,
    /// A report without histograms (from an older tickcast-bots): its percentiles
    /// cannot be combined with anything.
    #[error("report {index} has no histograms (written by an older tickcast-bots?)")]
    NoHistograms {
        /// Which report.
        index: usize,
    },
    /// A histogram of a report could not be decoded.
    #[error("report {index}: histogram {name}: {source}")]
    Histogram {
        /// Which report.
        index: usize,
        /// Which histogram (`rtt`, `connect`, ...).
        name: &'static str,
        /// What was wrong with it.
        source: HistogramCodecError,
    },
    /// A close code key that is not a number.
    #[error("report {index}: close code {code:?} is not a number")]
    BadCloseCode {
        /// Which report.
        index: usize,
        /// The key as written.
        code: String,
    },
    /// A `connected_bot_s` that is negative, not finite or too large.
    #[error("report {index}: connected_bot_s {value} is not a duration")]
    BadConnectedTime {
        /// Which report.
        index: usize,
        /// The value as written.
        value: f64,
    },
    /// A histogram of a report's time series could not be decoded.
    #[error(transparent)]
    Series(#[from] SeriesMergeError),
}

impl MergeError {
    /// Position of the report at fault in the list given to [`merge`], if one is.
    pub fn index(&self) -> Option<usize> {
        match self {
            Self::Empty => None,
            Self::NoHistograms { index }
            | Self::Histogram { index, .. }
            | Self::BadCloseCode { index, .. }
            | Self::BadConnectedTime { index, .. } => Some(*index),
            Self::Series(e) => Some(e.index),
        }
    }
}

/// Combines the reports of several `tickcast-bots` processes into one, as if one
/// process had run all their bots: counters and bots are summed, histograms are added
/// and their percentiles read again, rates are recomputed from the summed totals
/// (per second of summed connected bot time), and the duration is the longest run's
/// (the processes are assumed to run side by side). Time series are merged by
/// wall-clock second ([`merge_series`] says how they are aligned); reports without
/// one add nothing to it. The conditioned link is kept when every report names the
/// same one (or none); otherwise `link` is absent and `links_differ` is set. Bots per
/// node (`--matchmake`) are summed node by node.
///
/// # Errors
/// [`MergeError`] for an empty list, a report without histograms, or a field this
/// tool would not have written.
pub fn merge(reports: &[Report]) -> Result<Report, MergeError> {
    if reports.is_empty() {
        return Err(MergeError::Empty);
    }
    let mut totals = Totals::default();
    let mut histograms = Histograms::new();
    let mut bots_requested = 0;
    let mut duration_s = 0.0f64;
    let mut rooms = 1;
    let mut processes = 0;
    let mut urls: Vec<&str> = Vec::new();
    let mut behaviours: Vec<&str> = Vec::new();
    let mut commands: Vec<&str> = Vec::new();
    let mut series = Vec::new();
    let mut per_node = std::collections::BTreeMap::<String, u64>::new();
    for (index, report) in reports.iter().enumerate() {
        let encoded = report
            .histograms
            .as_ref()
            .ok_or(MergeError::NoHistograms { index })?;
        let decoded = encoded
            .decode()
            .map_err(|(name, source)| MergeError::Histogram {
                index,
                name,
                source,
            })?;
        histograms.merge(&decoded);
        totals.merge(&report.totals(index)?);
        bots_requested += report.bots_requested;
        if report.duration_s.is_finite() {
            duration_s = duration_s.max(report.duration_s);
        }
        rooms = rooms.max(report.rooms);
        processes += report.processes.max(1);
        push_distinct(&mut urls, &report.url);
        push_distinct(&mut behaviours, &report.behaviour);
        push_distinct(&mut commands, &report.command);
        if let Some(s) = &report.series {
            series.push((index, s));
        }
        for (node, bots) in &report.per_node {
            *per_node.entry(node.clone()).or_default() += bots;
        }
    }
    let mut merged = Report::new(
        &urls.join(", "),
        bots_requested,
        Duration::try_from_secs_f64(duration_s).unwrap_or_default(),
        &totals,
        &histograms,
    );
    merged.rooms = rooms;
    merged.behaviour = behaviours.join(",");
    merged.processes = processes;
    merged.command = commands.join("; ");
    merged.series = merge_series(&series)?;
    merged.per_node = per_node;
    // The fraction asked for, when all asked for the same; otherwise what it came to.
    if reports
        .iter()
        .all(|r| r.verify_fraction == reports[0].verify_fraction)
    {
        merged.verify_fraction = reports[0].verify_fraction;
    }
    // One link for all: keep it. Different links (or some bots on none): no one link
    // describes the figures, so say that they differ rather than name one of them.
    let first = &reports[0];
    if reports
        .iter()
        .all(|r| r.link == first.link && !r.links_differ)
    {
        merged.link = first.link.clone();
    } else {
        merged.links_differ = true;
    }
    Ok(merged)
}

/// Appends `item` unless it is empty or already listed, keeping first-seen order.
fn push_distinct<'a>(list: &mut Vec<&'a str>, item: &'a str) {
    if !item.is_empty() && !list.contains(&item) {
        list.push(item);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::record;
    use crate::report::tests::{ms, sample};

    /// A report of one process whose bots measured `samples` (ms) for every latency.
    fn process_report(
        samples: std::ops::RangeInclusive<u64>,
        secs: u64,
        code: u16,
    ) -> (Totals, Histograms) {
        let mut h = Histograms::new();
        for i in samples.clone() {
            record(&mut h.rtt, ms(i));
            record(&mut h.snapshot_gap, ms(i % 40 + 1));
            record(&mut h.input_ack, ms(i * 3));
            record(&mut h.connect, ms(i * 7));
        }
        let n = samples.count() as u64;
        let mut totals = Totals {
            bots_connected: n,
            bots_failed: 1,
            connected_time: Duration::from_secs(secs),
            snapshots_received: 30 * secs,
            snapshots_missed: n,
            bytes_received: 1000 * secs,
            naive_bytes: 4000 * secs,
            inputs_sent: 30 * secs,
            pings_sent: secs,
            ..Totals::default()
        };
        totals.close_code(code);
        totals.error("connect: http 409");
        (totals, h)
    }

    #[test]
    fn merging_reports_equals_one_report_over_all_samples() {
        let url = "ws://127.0.0.1:1/ws";
        let (ta, ha) = process_report(1..=50, 20, 1000);
        let (tb, hb) = process_report(51..=300, 60, 4003);
        let a = Report::new(url, 60, Duration::from_secs(30), &ta, &ha);
        let b = Report::new(url, 260, Duration::from_secs(31), &tb, &hb);
        // Through JSON, as files between processes.
        let read = |r: &Report| -> Report {
            serde_json::from_str(&serde_json::to_string(r).expect("write")).expect("read")
        };
        let merged = merge(&[read(&a), read(&b)]).expect("merge");

        let mut all_totals = ta.clone();
        all_totals.merge(&tb);
        let mut all_h = ha.clone();
        all_h.merge(&hb);
        let mut one = Report::new(url, 320, Duration::from_secs(31), &all_totals, &all_h);
        assert_eq!(merged.processes, 2);
        one.processes = 2;
        assert_eq!(merged, one);

        // And the figures are those of all samples, not an average of the two p99s.
        assert_eq!(merged.rtt_ms.count, 300);
        assert!(
            (merged.rtt_ms.p99 - 297.0).abs() < 0.3,
            "{:?}",
            merged.rtt_ms
        );
        let averaged = (a.rtt_ms.p99 + b.rtt_ms.p99) / 2.0;
        assert!((merged.rtt_ms.p99 - averaged).abs() > 50.0);
        // Rates from summed totals: 30 snapshots per bot-second on both sides.
        assert_eq!(merged.snapshots_per_bot_per_s, 30.0);
        assert_eq!(merged.bytes_per_bot_per_s, 1000.0);
        assert_eq!(merged.bots_failed, 2);
        assert_eq!(merged.errors.get("connect: http 409"), Some(&2));
        assert_eq!(merged.close_codes.get("1000"), Some(&1));
        assert_eq!(merged.close_codes.get("4003"), Some(&1));
        assert_eq!(merged.snapshots_missed, 300);
        assert_eq!(merged.duration_s, 31.0);
        assert!(merged.summary().contains("merged      2 processes"));
    }

    #[test]
    fn merge_sums_bots_per_node() {
        let url = "ws://127.0.0.1:1/ws";
        let (ta, ha) = process_report(1..=50, 20, 1000);
        let (tb, hb) = process_report(51..=100, 20, 1000);
        let mut reports = [
            Report::new(url, 10, Duration::from_secs(20), &ta, &ha),
            Report::new(url, 10, Duration::from_secs(20), &tb, &hb),
        ];
        reports[0].per_node = [("ws://a:1".to_owned(), 6), ("ws://b:2".to_owned(), 4)].into();
        reports[1].per_node = [("ws://b:2".to_owned(), 5), ("ws://c:3".to_owned(), 5)].into();
        let merged = merge(&reports).unwrap();
        let expected: std::collections::BTreeMap<String, u64> = [
            ("ws://a:1".to_owned(), 6),
            ("ws://b:2".to_owned(), 9),
            ("ws://c:3".to_owned(), 5),
        ]
        .into();
        assert_eq!(merged.per_node, expected);
    }

    #[test]
    fn merge_keeps_a_link_all_reports_share_and_flags_different_ones() {
        let lte = crate::link::Profile::named("lte").map(|p| p.spec());
        let wifi = crate::link::Profile::named("wifi-busy").map(|p| p.spec());
        assert!(lte.is_some() && wifi.is_some());
        let on = |link: &Option<crate::link::LinkSpec>| {
            let mut r = sample();
            r.link = link.clone();
            r
        };
        let same = merge(&[on(&lte), on(&lte)]).expect("merge");
        assert_eq!((same.link.clone(), same.links_differ), (lte.clone(), false));
        assert!(same.summary().contains("link        lte: 35 ms"), "{same}");
        let none = merge(&[on(&None), on(&None)]).expect("merge");
        assert_eq!((none.link, none.links_differ), (None, false));
        for mixed in [[on(&lte), on(&wifi)], [on(&lte), on(&None)]] {
            let m = merge(&mixed).expect("merge");
            assert_eq!((m.link.clone(), m.links_differ), (None, true));
            assert!(
                m.summary().contains("differs between the merged reports"),
                "{m}"
            );
            // Through JSON, and merged again: it still differs.
            let back: Report =
                serde_json::from_str(&serde_json::to_string(&m).expect("write")).expect("read");
            let again = merge(&[back, on(&lte)]).expect("merge");
            assert!(again.links_differ);
        }
    }

    #[test]
    fn merge_refuses_what_it_cannot_merge() {
        assert!(matches!(merge(&[]), Err(MergeError::Empty)));
        // A report of an older version: no histograms, none of the new fields.
        let mut v = serde_json::to_value(sample()).expect("json");
        for key in [
            "histograms",
            "reconnects",
            "connected_bot_s",
            "rooms",
            "processes",
        ] {
            v.as_object_mut().expect("object").remove(key);
        }
        let old: Report = serde_json::from_value(v).expect("old reports still parse");
        assert_eq!((old.rooms, old.processes, old.reconnects), (1, 1, 0));
        assert!(matches!(
            merge(&[sample(), old]),
            Err(MergeError::NoHistograms { index: 1 })
        ));
        let mut bad = sample();
        bad.close_codes.insert("bye".into(), 1);
        assert!(matches!(
            merge(&[bad]),
            Err(MergeError::BadCloseCode { index: 0, .. })
        ));
        let mut bad = sample();
        bad.connected_bot_s = -1.0;
        assert!(matches!(
            merge(&[bad]),
            Err(MergeError::BadConnectedTime { index: 0, .. })
        ));
    }
}
