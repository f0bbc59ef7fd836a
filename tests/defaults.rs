//! The documented defaults are the code's defaults. docs/PROTOCOL.md section 6 is read at
//! test time: every row of its limits table that names a flag must state the default
//! `Config::default()` has, and every fixed limit must match the constant that enforces
//! it. Defaults stated in the prose of PROTOCOL.md and HOSTING.md ("`--ticket-ttl`,
//! default 10 s", "`--max-players` (128)") are held to the same rule.
//!
//! `Config::default()` is the binary's own flag parser run with no arguments (see
//! server/src/config.rs), so these are the defaults of `tickcast-server` as well.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::time::Duration;

use tickcast::server::Config;
use tickcast::shared::codec::{CLIENT_ALLOC_LIMIT, DECODE_ALLOC_LIMIT};
use tickcast::shared::validate::{MAX_NAME_BYTES, MAX_ROOM_BYTES};

const PROTOCOL: &str = include_str!("../docs/PROTOCOL.md");
const HOSTING: &str = include_str!("../docs/HOSTING.md");

/// A default as the docs state it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value {
    Count(u64),
    Time(Duration),
}

/// The default of the flag `--name` in `Config::default()`.
///
/// The destructuring names every field, so a new flag does not compile here until it
/// is given its place: documented (mapped below) or not a documented limit.
fn config_default(flag: &str) -> Value {
    let Config {
        listen: _,
        tls_cert: _,
        tls_key: _,
        auth_jwt_secret_file: _,
        auth_jwt_public_key_file: _,
        auth_jwt_leeway,
        auth_jwt_issuer: _,
        auth_jwt_audience: _,
        game: _,
        tick_rate,
        npcs,
        seed,
        view_radius,
        max_players,
        max_rooms,
        max_connections,
        max_connections_per_ip,
        trusted_proxies: _,
        matchmake_per_ip_per_sec,
        room_creates_per_ip_per_min,
        max_room_npcs,
        max_room_players,
        admin_token_file: _,
        api_listen: _,
        allow_origins: _,
        max_message_bytes,
        max_messages_per_sec,
        handshake_timeout,
        hello_timeout,
        idle_timeout,
        ping_interval,
        reconnect_grace,
        ticket_ttl,
        room_idle_timeout,
        max_catch_up_ticks,
        send_buffer,
        max_game_message_bytes,
        max_game_messages_per_sec,
        max_labelled_rooms,
        reliable_queue,
        agones: _,
        agones_sdk_port: _,
        agones_health_period: _,
        max_bytes_per_player_per_sec,
        redis: _,
        node_id: _,
        public_url: _,
        cluster_secret_file: _,
        cluster_node_ttl: _,
        record: _,
        record_max_bytes,
        record_keep,
        drain_timeout,
        shutdown_grace,
    } = Config::default();
    let count = |n: u64| Value::Count(n);
    match flag {
        "--tick-rate" => count(u64::from(tick_rate)),
        "--npcs" => count(u64::from(npcs)),
        "--seed" => count(seed),
        "--max-players" => count(max_players as u64),
        "--max-rooms" => count(max_rooms as u64),
        "--max-connections" => count(max_connections as u64),
        "--max-connections-per-ip" => count(max_connections_per_ip as u64),
        "--matchmake-per-ip-per-sec" => count(u64::from(matchmake_per_ip_per_sec)),
        "--room-creates-per-ip-per-min" => count(u64::from(room_creates_per_ip_per_min)),
        "--max-room-npcs" => count(u64::from(max_room_npcs)),
        "--max-room-players" => count(max_room_players),
        "--max-message-bytes" => count(max_message_bytes as u64),
        "--max-messages-per-sec" => count(u64::from(max_messages_per_sec)),
        "--max-catch-up-ticks" => count(u64::from(max_catch_up_ticks)),
        "--send-buffer" => count(send_buffer as u64),
        "--reliable-queue" => count(reliable_queue as u64),
        "--max-game-message-bytes" => count(max_game_message_bytes as u64),
        "--max-game-messages-per-sec" => count(u64::from(max_game_messages_per_sec)),
        "--max-labelled-rooms" => count(max_labelled_rooms as u64),
        "--max-bytes-per-player-per-sec" => count(max_bytes_per_player_per_sec),
        "--record-max-bytes" => count(record_max_bytes),
        "--record-keep" => count(record_keep as u64),
        // Whole units by default; a fractional default would not be documented as one.
        "--view-radius" if view_radius.fract() == 0.0 => count(view_radius as u64),
        "--handshake-timeout" => Value::Time(handshake_timeout),
        "--hello-timeout" => Value::Time(hello_timeout),
        "--idle-timeout" => Value::Time(idle_timeout),
        "--ping-interval" => Value::Time(ping_interval),
        "--reconnect-grace" => Value::Time(reconnect_grace),
        "--ticket-ttl" => Value::Time(ticket_ttl),
        "--room-idle-timeout" => Value::Time(room_idle_timeout),
        "--drain-timeout" => Value::Time(drain_timeout),
        "--shutdown-grace" => Value::Time(shutdown_grace),
        "--auth-jwt-leeway" => Value::Time(auth_jwt_leeway),
        other => panic!("the docs name {other}, which is no flag with a default here"),
    }
}

/// The value a documented default starts with: a number, digits grouped with commas
/// ("65,536 bytes (64 KiB)", "1,000"), and a time when a unit follows ("5 s", "500 ms").
fn documented(text: &str) -> Value {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || c == ','))
        .unwrap_or(text.len());
    let digits: String = text[..end].chars().filter(char::is_ascii_digit).collect();
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} does not start with a number"));
    let unit = text[end..]
        .trim_start()
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("");
    match unit {
        "ms" => Value::Time(Duration::from_millis(n)),
        "s" => Value::Time(Duration::from_secs(n)),
        "min" => Value::Time(Duration::from_secs(60 * n)),
        "h" => Value::Time(Duration::from_secs(3600 * n)),
        _ => {
            // A size restated in KiB right after it, "N bytes (K KiB)", must agree.
            let after = text[end..].trim_start()[unit.len()..].trim_start();
            if let Some(kib) = after
                .strip_prefix('(')
                .and_then(|r| r.split_once(')'))
                .and_then(|(inside, _)| inside.strip_suffix(" KiB"))
            {
                assert_eq!(kib.parse::<u64>().map(|k| k * 1024), Ok(n), "{text:?}");
            }
            Value::Count(n)
        }
    }
}

/// The rows of the table under `## 6. Limits`, as cells, the header row excluded.
fn limits_table() -> Vec<Vec<String>> {
    let section = PROTOCOL
        .split_once("\n## 6. Limits\n")
        .expect("PROTOCOL.md has a section 6. Limits")
        .1;
    let rows: Vec<Vec<String>> = section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    assert_eq!(
        rows.first().map(Vec::as_slice),
        Some(&["Limit", "Default", "Flag", "When exceeded"].map(String::from)[..]),
        "the table's columns"
    );
    assert!(
        rows[1].iter().all(|c| c.starts_with("---")),
        "{:?}",
        rows[1]
    );
    rows.into_iter().skip(2).collect()
}

#[test]
fn every_flag_in_the_limits_table_has_its_documented_default() {
    let mut checked = Vec::new();
    for row in limits_table() {
        let [limit, default, flag, _] = &row[..] else {
            panic!("a row of four cells: {row:?}")
        };
        if flag == "fixed" || flag.starts_with("fixed ") {
            continue;
        }
        let flag = flag.trim_matches('`');
        assert!(flag.starts_with("--"), "{limit}: flag {flag:?}");
        assert_eq!(
            documented(default),
            config_default(flag),
            "{limit}: PROTOCOL.md section 6 says {default:?} for {flag}"
        );
        checked.push(flag.to_owned());
    }
    // A row that disappears is noticed too.
    assert_eq!(
        checked,
        [
            "--max-message-bytes",
            "--auth-jwt-leeway",
            "--max-messages-per-sec",
            "--max-game-message-bytes",
            "--max-game-messages-per-sec",
            "--handshake-timeout",
            "--hello-timeout",
            "--ping-interval",
            "--idle-timeout",
            "--reconnect-grace",
            "--ticket-ttl",
            "--max-players",
            "--max-rooms",
            "--max-connections",
            "--max-connections-per-ip",
            "--room-creates-per-ip-per-min",
            "--reliable-queue",
        ]
    );
}

#[test]
fn every_fixed_limit_in_the_table_is_the_constant_that_enforces_it() {
    let rows = limits_table();
    let default_of = |starts: &str| -> String {
        let row = rows
            .iter()
            .find(|r| r[0].starts_with(starts))
            .unwrap_or_else(|| panic!("no row {starts:?} in PROTOCOL.md section 6"));
        assert!(row[2].starts_with("fixed"), "{row:?}");
        row[1].clone()
    };
    // "1–32 bytes of UTF-8, ...": the upper end of the range.
    let upper = |text: String| -> u64 {
        let (_, rest) = text.split_once('–').unwrap_or_else(|| panic!("{text:?}"));
        match documented(rest) {
            Value::Count(n) => n,
            other => panic!("{text:?} is {other:?}"),
        }
    };
    assert_eq!(upper(default_of("Player name")), MAX_NAME_BYTES as u64);
    assert_eq!(upper(default_of("Room name")), MAX_ROOM_BYTES as u64);
    assert_eq!(
        default_of("Decode ceiling, client"),
        format!("{} KiB", CLIENT_ALLOC_LIMIT / 1024)
    );
    assert_eq!(CLIENT_ALLOC_LIMIT % 1024, 0);
    assert_eq!(
        default_of("Decode ceiling, server"),
        format!("{} MiB", DECODE_ALLOC_LIMIT / (1024 * 1024))
    );
    assert_eq!(DECODE_ALLOC_LIMIT % (1024 * 1024), 0);
}

/// Every default stated in `text` next to a flag, as (flag, what follows it): the
/// forms "`--flag`, default X", "`--flag` (default X" and "`--flag` (X)".
fn prose_defaults(text: &str) -> Vec<(String, String)> {
    // Lines are wrapped anywhere, so a default may start on the next line.
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut found = Vec::new();
    for (at, _) in text.match_indices("`--") {
        let rest = &text[at + 1..];
        let Some((flag, after)) = rest.split_once('`') else {
            continue;
        };
        let value = [", default ", " (default "]
            .iter()
            .find_map(|form| after.strip_prefix(form))
            .or_else(|| {
                after
                    .strip_prefix(" (")
                    .filter(|v| v.starts_with(|c: char| c.is_ascii_digit()))
            });
        if let Some(value) = value {
            found.push((flag.to_owned(), value.to_owned()));
        }
    }
    found
}

#[test]
fn defaults_stated_in_the_prose_of_the_docs_are_the_code_defaults() {
    let mut checked = Vec::new();
    for (doc, text) in [("PROTOCOL.md", PROTOCOL), ("HOSTING.md", HOSTING)] {
        for (flag, value) in prose_defaults(text) {
            assert_eq!(
                documented(&value),
                config_default(&flag),
                "{doc} says {flag} defaults to {:?}",
                value.chars().take(30).collect::<String>()
            );
            checked.push(flag);
        }
    }
    checked.sort();
    checked.dedup();
    // The scan must find what is there, or it proves nothing.
    assert_eq!(
        checked,
        [
            "--drain-timeout",
            "--handshake-timeout",
            "--hello-timeout",
            "--max-labelled-rooms",
            "--max-players",
            "--max-room-npcs",
            "--max-room-players",
            "--npcs",
            "--reconnect-grace",
            "--record-keep",
            "--record-max-bytes",
            "--room-idle-timeout",
            "--tick-rate",
            "--ticket-ttl",
            "--view-radius",
        ]
    );
}

#[test]
fn the_documented_value_parser_reads_each_form() {
    assert_eq!(documented("65,536 bytes (64 KiB)"), Value::Count(65_536));
    assert_eq!(documented("1,000"), Value::Count(1000));
    assert_eq!(
        documented("120 sustained, bursts of 120 (token bucket)"),
        Value::Count(120)
    );
    assert_eq!(documented("5 s"), Value::Time(Duration::from_secs(5)));
    assert_eq!(documented("10 s)"), Value::Time(Duration::from_secs(10)));
    assert_eq!(
        documented("5 s after the upgrade"),
        Value::Time(Duration::from_secs(5))
    );
    assert_eq!(documented("128, or the room's own"), Value::Count(128));
    assert_eq!(
        documented("300 ms"),
        Value::Time(Duration::from_millis(300))
    );
}
