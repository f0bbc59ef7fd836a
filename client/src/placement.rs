//! Where and when each bot of a swarm connects: its room, its source address and its
//! moment in the ramp. Pure functions of the bot's index, so a test can check them
//! without a socket.
//!
//! - Rooms: with `--rooms K`, bot `i` joins `{prefix}-{i % K}`, put in the `room=`
//!   query parameter of the URL. Round-robin rather than blocks keeps the rooms equally
//!   full at every moment of the ramp.
//! - Source addresses: each TCP connection needs a local port, and one local address
//!   has only the ephemeral range (about 28,000 ports on Linux by default) to give.
//!   Against a loopback server, every address of 127.0.0.0/8 is ours on Linux, so the
//!   swarm binds bot `i` to `127.0.0.{1 + i % N}`: N times the ports. An explicit bind
//!   reserves its port for that address alone (the kernel picks it before it knows the
//!   destination), hence [`BOTS_PER_SOURCE_ADDR`] well under the range.
//! - Ramp: bot `i` connects at `ramp * (i + jitter) / bots`, with jitter in `[0, 1)`:
//!   evenly spread, but not on an exact grid that timer granularity would turn into
//!   bursts.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hyper::Uri;
use tickcast_shared::validate::{self, InvalidText};
use tickcast_shared::websocket::query_param;

/// Bots given to one source address when `--source-addrs` is left to choose. The server
/// counts connections per client address (`--max-connections-per-ip`, 256 by default),
/// so a local swarm spreads over addresses to stay under it with a margin for a
/// tester's own connections; 200 is also far below Linux's ephemeral port range
/// (32768–60999), so a previous run's connections in TIME_WAIT never run it out.
pub const BOTS_PER_SOURCE_ADDR: usize = 200;

/// Most source addresses used: 127.0.0.1 to 127.0.0.254. That is 50,800 bots at
/// [`BOTS_PER_SOURCE_ADDR`], more than one process on one machine holds.
pub const MAX_SOURCE_ADDRS: usize = 254;

/// Why a swarm's URL and rooms cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// The URL does not parse, or has no host.
    #[error("invalid url {0:?}")]
    InvalidUrl(String),
    /// A room name made from the prefix breaks the server's rules for room names.
    #[error("room name {room:?}: {reason}")]
    InvalidRoom {
        /// The offending name (the last one, the longest).
        room: String,
        /// Which rule it breaks.
        reason: InvalidText,
    },
    /// `--rooms 0`.
    #[error("the number of rooms must be at least 1")]
    NoRooms,
}

/// The `room` query parameter of `url`, if it has a non-empty one. Read with the same
/// [`query_param`] as the connection reads the room it asks for, so both agree: the
/// first `room=` counts, and an empty first one means no room.
pub fn url_room(url: &str) -> Option<&str> {
    let query = url.split_once('?').map(|(_, query)| query);
    query_param(query, "room").filter(|room| !room.is_empty())
}

/// `url` with its `room` query parameter set to `room`: the first `room=` is replaced
/// in place, any later ones are dropped (the client reads the first), and one is
/// appended when there is none. Other parameters are kept in order.
pub fn with_room(url: &str, room: &str) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut params: Vec<String> = Vec::new();
    let mut replaced = false;
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        if kv == "room" || kv.starts_with("room=") {
            if !replaced {
                params.push(format!("room={room}"));
                replaced = true;
            }
        } else {
            params.push(kv.to_owned());
        }
    }
    if !replaced {
        params.push(format!("room={room}"));
    }
    format!("{base}?{}", params.join("&"))
}

/// How a swarm's bots are spread over rooms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rooms {
    url: String,
    prefix: String,
    count: usize,
}

impl Rooms {
    /// `count` rooms named `{prefix}-0` ... on `url`. `prefix` defaults to the URL's
    /// own room, or the server's default room when the URL names none. One room means
    /// the URL exactly as given, with no renaming.
    ///
    /// # Errors
    /// [`PlacementError::NoRooms`] for zero rooms, [`PlacementError::InvalidRoom`] when
    /// the longest generated name is not a valid room name.
    pub fn new(url: &str, prefix: Option<&str>, count: usize) -> Result<Self, PlacementError> {
        if count == 0 {
            return Err(PlacementError::NoRooms);
        }
        let prefix = prefix
            .or_else(|| url_room(url))
            .unwrap_or(tickcast_shared::DEFAULT_ROOM)
            .to_owned();
        let rooms = Self {
            url: url.to_owned(),
            prefix,
            count,
        };
        if count > 1 {
            // Names only grow with the index, so the last one is the longest.
            let last = rooms.room_name(count - 1);
            validate::room_name(&last)
                .map_err(|reason| PlacementError::InvalidRoom { room: last, reason })?;
        }
        Ok(rooms)
    }

    /// How many rooms.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Name of room `i` (`{prefix}-{i}`).
    pub fn room_name(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// The URL bot `index` connects to.
    pub fn url_for(&self, index: usize) -> String {
        if self.count <= 1 {
            self.url.clone()
        } else {
            with_room(&self.url, &self.room_name(index % self.count))
        }
    }
}

/// Whether `url`'s host is an IPv4 loopback literal (`127.x.y.z`), the only case in
/// which the swarm spreads source addresses: there every 127/8 address reaches the
/// server. A name such as `localhost` may resolve to `::1`, so it is left alone.
///
/// # Errors
/// [`PlacementError::InvalidUrl`] when the URL does not parse.
pub fn is_loopback_v4(url: &str) -> Result<bool, PlacementError> {
    let uri: Uri = url
        .parse()
        .map_err(|_| PlacementError::InvalidUrl(url.to_owned()))?;
    let host = uri
        .host()
        .ok_or_else(|| PlacementError::InvalidUrl(url.to_owned()))?;
    Ok(host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback()))
}

/// How many source addresses `bots` bots use: `requested` when given, otherwise
/// `ceil(bots / BOTS_PER_SOURCE_ADDR)`; always within `1..=MAX_SOURCE_ADDRS`.
pub fn source_addr_count(requested: Option<usize>, bots: usize) -> usize {
    requested
        .unwrap_or_else(|| bots.div_ceil(BOTS_PER_SOURCE_ADDR))
        .clamp(1, MAX_SOURCE_ADDRS)
}

/// The local address bot `index` binds to when `count` loopback source addresses are
/// in use: `127.0.0.{1 + index % count}`. `None` (let the kernel choose) for a single
/// address: binding then gains nothing and only makes port allocation stricter.
pub fn source_ip(index: usize, count: usize) -> Option<IpAddr> {
    if count <= 1 {
        return None;
    }
    let k = index % count.min(MAX_SOURCE_ADDRS);
    // k < 254, so the last octet is 1..=254.
    let octet = u8::try_from(k + 1).unwrap_or(u8::MAX - 1);
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, octet)))
}

/// When bot `index` of `bots` connects, from the start of the run: slot `index` of
/// `bots` equal slots of `ramp`, at `jitter` (in `[0, 1)`, clamped) into the slot.
pub fn connect_offset(index: usize, bots: usize, ramp: Duration, jitter: f64) -> Duration {
    if bots == 0 {
        return Duration::ZERO;
    }
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ramp.mul_f64(((index as f64 + jitter) / bots as f64).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_parameter_is_replaced_or_added() {
        assert_eq!(
            with_room("ws://127.0.0.1:1/ws", "a-0"),
            "ws://127.0.0.1:1/ws?room=a-0"
        );
        assert_eq!(
            with_room("ws://h/ws?room=lobby&token=x", "a-1"),
            "ws://h/ws?room=a-1&token=x"
        );
        assert_eq!(
            with_room("ws://h/ws?token=x", "r"),
            "ws://h/ws?token=x&room=r"
        );
        assert_eq!(
            with_room("ws://h/ws?x=1&room=a&room=b&room", "c"),
            "ws://h/ws?x=1&room=c"
        );
        assert_eq!(with_room("ws://h/ws?", "c"), "ws://h/ws?room=c");
        // Only a parameter named exactly `room` is touched.
        assert_eq!(
            with_room("ws://h/ws?roomy=1", "c"),
            "ws://h/ws?roomy=1&room=c"
        );
    }

    #[test]
    fn url_room_reads_the_first_room_parameter() {
        assert_eq!(url_room("ws://h/ws?x=1&room=arena&room=b"), Some("arena"));
        assert_eq!(url_room("ws://h/ws?room="), None);
        // The first `room=` decides, even when empty; a bare `room` or a longer name
        // is not it.
        assert_eq!(url_room("ws://h/ws?room=&room=b"), None);
        assert_eq!(url_room("ws://h/ws?room&roomy=x&room=a"), Some("a"));
        assert_eq!(url_room("ws://h/ws"), None);
    }

    #[test]
    fn bots_go_round_robin_over_rooms() {
        let rooms = Rooms::new("ws://127.0.0.1:9/ws?room=arena&t=1", None, 3).expect("valid");
        let urls: Vec<String> = (0..4).map(|i| rooms.url_for(i)).collect();
        assert_eq!(
            urls,
            [
                "ws://127.0.0.1:9/ws?room=arena-0&t=1",
                "ws://127.0.0.1:9/ws?room=arena-1&t=1",
                "ws://127.0.0.1:9/ws?room=arena-2&t=1",
                "ws://127.0.0.1:9/ws?room=arena-0&t=1",
            ]
        );
        // An explicit prefix wins; no room in the URL falls back to the default room.
        let rooms = Rooms::new("ws://h/ws", Some("load"), 2).expect("valid");
        assert_eq!(rooms.url_for(1), "ws://h/ws?room=load-1");
        let rooms = Rooms::new("ws://h/ws", None, 2).expect("valid");
        assert_eq!(
            rooms.url_for(0),
            format!("ws://h/ws?room={}-0", tickcast_shared::DEFAULT_ROOM)
        );
        // One room: the URL exactly as given.
        let one = Rooms::new("ws://h/ws?room=x", Some("y"), 1).expect("valid");
        assert_eq!(one.url_for(5), "ws://h/ws?room=x");
    }

    #[test]
    fn bad_room_names_are_refused_up_front() {
        assert_eq!(
            Rooms::new("ws://h/ws", None, 0),
            Err(PlacementError::NoRooms)
        );
        assert!(matches!(
            Rooms::new("ws://h/ws", Some("a b"), 2),
            Err(PlacementError::InvalidRoom {
                reason: InvalidText::BadChar,
                ..
            })
        ));
        // 62 bytes + "-9" fits in 64; + "-10" does not.
        let long = "r".repeat(62);
        assert!(Rooms::new("ws://h/ws", Some(&long), 10).is_ok());
        assert!(matches!(
            Rooms::new("ws://h/ws", Some(&long), 11),
            Err(PlacementError::InvalidRoom { room, .. }) if room.ends_with("-10")
        ));
    }

    #[test]
    fn source_addresses_cycle_over_loopback() {
        assert_eq!(source_addr_count(None, 1), 1);
        assert_eq!(source_addr_count(None, 200), 1);
        assert_eq!(source_addr_count(None, 201), 2);
        assert_eq!(source_addr_count(None, 2_000), 10);
        assert_eq!(source_addr_count(None, 0), 1);
        assert_eq!(source_addr_count(Some(4), 10), 4);
        assert_eq!(source_addr_count(Some(0), 10), 1);
        assert_eq!(source_addr_count(Some(10_000), 10), MAX_SOURCE_ADDRS);

        assert_eq!(source_ip(5, 1), None);
        let ips: Vec<Option<IpAddr>> = (0..4).map(|i| source_ip(i, 3)).collect();
        let v4 = |d| Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, d)));
        assert_eq!(ips, [v4(1), v4(2), v4(3), v4(1)]);
        // The largest count never leaves 127.0.0.1..=127.0.0.254.
        assert_eq!(source_ip(253, MAX_SOURCE_ADDRS), v4(254));
        assert_eq!(source_ip(254, MAX_SOURCE_ADDRS), v4(1));
        assert_eq!(source_ip(300, 100_000), v4(47));
    }

    #[test]
    fn only_ipv4_loopback_literals_spread_source_addresses() {
        assert_eq!(is_loopback_v4("ws://127.0.0.1:8080/ws"), Ok(true));
        assert_eq!(is_loopback_v4("ws://127.3.2.1/ws?room=a"), Ok(true));
        assert_eq!(is_loopback_v4("ws://localhost:8080/ws"), Ok(false));
        assert_eq!(is_loopback_v4("ws://[::1]:8080/ws"), Ok(false));
        assert_eq!(is_loopback_v4("ws://10.0.0.1/ws"), Ok(false));
        assert!(is_loopback_v4("not a url").is_err());
    }

    #[test]
    fn ramp_offsets_are_spread_and_bounded() {
        let ramp = Duration::from_secs(1);
        assert_eq!(connect_offset(0, 10, ramp, 0.0), Duration::ZERO);
        assert_eq!(connect_offset(5, 10, ramp, 0.0), Duration::from_millis(500));
        assert_eq!(connect_offset(5, 10, ramp, 0.5), Duration::from_millis(550));
        // Each bot stays in its own slot, so order and spacing hold on average.
        for i in 0..10 {
            let early = connect_offset(i, 10, ramp, 0.0);
            let late = connect_offset(i, 10, ramp, 0.999);
            assert!(late < connect_offset(i + 1, 10, ramp, 0.0) || i == 9);
            assert!(early <= late && late <= ramp);
        }
        assert!(connect_offset(9, 10, ramp, f64::NAN) <= ramp);
        assert!(connect_offset(9, 10, ramp, 7.0) <= ramp);
        assert_eq!(connect_offset(3, 0, ramp, 0.5), Duration::ZERO);
        assert_eq!(connect_offset(3, 10, Duration::ZERO, 0.5), Duration::ZERO);
    }
}
