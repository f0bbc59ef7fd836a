//! The checks of a WebSocket upgrade request that fastwebsockets leaves to us:
//! path and room, subprotocol, Origin. Pure functions over the request head, so every
//! refusal is unit-tested without a socket; [`super::http`] turns a [`Refusal`] into
//! the HTTP response.

use hyper::header::{HeaderMap, HOST, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::StatusCode;
use tickcast_shared::{validate, DEFAULT_ROOM, SUBPROTOCOL};

/// Why an upgrade was refused, as the HTTP status and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Status to answer with.
    pub status: StatusCode,
    /// One line saying what was wrong and what is accepted.
    pub message: String,
    /// Seconds after which trying again may succeed (`Retry-After`), for a rate limit.
    pub retry_after: Option<u64>,
}

impl Refusal {
    /// A refusal with `status` and `message`, and no `Retry-After`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// How an upgrade request reached the server, which decides the scheme of the server's
/// own pages: a page served over plain HTTP has an `http:` Origin and opens `ws:`, one
/// served over TLS has an `https:` Origin and opens `wss:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain TCP (`http:` pages, `ws:` sockets).
    Plain,
    /// TLS (`https:` pages, `wss:` sockets).
    Tls,
}

impl Transport {
    /// The scheme of a page this server served over this transport.
    fn page_scheme(self) -> &'static str {
        match self {
            Self::Plain => "http",
            Self::Tls => "https",
        }
    }

    /// The port a URL of that scheme means when it names none.
    fn default_port(self) -> u16 {
        match self {
            Self::Plain => 80,
            Self::Tls => 443,
        }
    }
}

/// Which browser Origins may connect.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    any: bool,
    allowed: Vec<String>,
}

impl OriginPolicy {
    /// From `--allow-origin` values; `*` allows any Origin.
    pub fn new(allowed: &[String]) -> Self {
        Self {
            any: allowed.iter().any(|o| o == "*"),
            allowed: allowed
                .iter()
                .filter(|o| *o != "*")
                .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Requests without Origin come from native clients, which Origin cannot protect
    /// anyway; a browser always sends it, and only the server's own pages (the playable
    /// page at `/`, see [`same_origin`]) and listed Origins may use a player's cookies
    /// and network position to connect.
    fn check(
        &self,
        origin: Option<&[u8]>,
        host: Option<&[u8]>,
        transport: Transport,
    ) -> Result<(), Refusal> {
        let Some(origin) = origin else { return Ok(()) };
        if self.any {
            return Ok(());
        }
        let origin = String::from_utf8_lossy(origin).to_ascii_lowercase();
        let own = host.is_some_and(|host| {
            let host = String::from_utf8_lossy(host).to_ascii_lowercase();
            same_origin(&origin, &host, transport)
        });
        if own || self.allowed.contains(&origin) {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!("origin {origin} is not allowed"),
            ))
        }
    }
}

/// True when `origin` (lowercase) is the origin of a page this server served to the
/// browser that now opens the socket: the scheme matches `transport`, and the host and
/// port equal those of the request's `Host` header (lowercase), a missing port meaning
/// the scheme's default. The browser writes both headers itself and a page cannot
/// forge either, so a foreign page (whose Origin names its own host) never passes.
///
/// Behind a proxy that terminates TLS the Origin says `https:` while this server sees
/// plain TCP: that deployment lists its public origin with `--allow-origin`. Like every
/// same-origin rule, this one trusts the name the browser resolved; it gives a DNS
/// rebinding page nothing that page could not already do with plain HTTP requests.
pub fn same_origin(origin: &str, host: &str, transport: Transport) -> bool {
    let Some(authority) = origin
        .strip_prefix(transport.page_scheme())
        .and_then(|rest| rest.strip_prefix("://"))
    else {
        return false;
    };
    let port = transport.default_port();
    match (host_and_port(authority, port), host_and_port(host, port)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// Splits `host[:port]` (a DNS name, an IPv4 address, or an IPv6 address in brackets)
/// into the host and the port, `default_port` when none is written. `None` for
/// anything else: userinfo, a path, an empty host or port, a port beyond `u16`, so
/// that two strings only compare equal when both are plain authorities.
fn host_and_port(s: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if s.starts_with('[') {
        let end = s.find(']')?;
        let inner = &s[1..end];
        let ipv6 = !inner.is_empty()
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ipv6 {
            return None;
        }
        (&s[..=end], &s[end + 1..])
    } else {
        let end = s.find(':').unwrap_or(s.len());
        let host = &s[..end];
        let name = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !name {
            return None;
        }
        (host, &s[end..])
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => default_port,
        None => return None,
        Some(digits)
            if (1..=5).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            digits.parse().ok()?
        }
        Some(_) => return None,
    };
    Some((host, port))
}

pub use tickcast_shared::websocket::query_param;

/// Reads the room from the query string (`room=NAME`, default `lobby`).
///
/// # Errors
/// 400 when the room name breaks [`validate::room_name`].
pub fn room_from_query(query: Option<&str>) -> Result<String, Refusal> {
    let room = query
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .find(|(k, _)| *k == "room")
        .map(|(_, v)| v)
        .unwrap_or(DEFAULT_ROOM);
    validate::room_name(room)
        .map(|()| room.to_owned())
        .map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                format!("invalid room name: {e}; use 1-64 of [A-Za-z0-9._-]"),
            )
        })
}

/// True when the client offers our subprotocol (the header may be repeated and lists
/// comma-separated tokens).
fn offers_subprotocol(headers: &HeaderMap) -> bool {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// Checks an upgrade request's head, which came over `transport`; returns the room to
/// join.
///
/// # Errors
/// A [`Refusal`]: 400 for a missing subprotocol or a bad room, 403 for an Origin that
/// is neither the server's own (see [`same_origin`]) nor allowed by `origins`.
pub fn check(
    headers: &HeaderMap,
    query: Option<&str>,
    origins: &OriginPolicy,
    transport: Transport,
) -> Result<String, Refusal> {
    if !offers_subprotocol(headers) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("missing or unsupported Sec-WebSocket-Protocol; supported: {SUBPROTOCOL}"),
        ));
    }
    // A request with two Host headers is malformed (RFC 9112 section 3.2): it names
    // no single host, so it is nobody's own page.
    let mut hosts = headers.get_all(HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (Some(host), None) => Some(host.as_bytes()),
        _ => None,
    };
    origins.check(headers.get(ORIGIN).map(|v| v.as_bytes()), host, transport)?;
    room_from_query(query)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn subprotocol_is_required_and_found_in_lists() {
        let none = OriginPolicy::default();
        let r = check(&headers(&[]), None, &none, Transport::Plain).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.message.contains("tickcast.v2"));
        assert!(check(
            &headers(&[("sec-websocket-protocol", "chat")]),
            None,
            &none,
            Transport::Plain
        )
        .is_err());
        let ok = headers(&[
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-protocol", "x, tickcast.v2"),
        ]);
        assert_eq!(check(&ok, None, &none, Transport::Plain).unwrap(), "lobby");
    }

    #[test]
    fn origin_policy() {
        let proto = ("sec-websocket-protocol", "tickcast.v2");
        let listed = OriginPolicy::new(&["https://game.example/".to_owned()]);
        assert!(
            check(&headers(&[proto]), None, &listed, Transport::Plain).is_ok(),
            "native clients send no Origin"
        );
        assert!(check(
            &headers(&[proto, ("origin", "https://GAME.example")]),
            None,
            &listed,
            Transport::Plain
        )
        .is_ok());
        let r = check(
            &headers(&[proto, ("origin", "https://evil.example")]),
            None,
            &listed,
            Transport::Plain,
        )
        .unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(check(
            &headers(&[proto, ("origin", "null")]),
            None,
            &OriginPolicy::default(),
            Transport::Plain
        )
        .is_err());
        let any = OriginPolicy::new(&["*".to_owned()]);
        assert!(check(
            &headers(&[proto, ("origin", "https://evil.example")]),
            None,
            &any,
            Transport::Plain
        )
        .is_ok());
    }

    #[test]
    fn room_query() {
        assert_eq!(room_from_query(Some("room=arena-2")).unwrap(), "arena-2");
        assert_eq!(room_from_query(Some("x=1&room=b")).unwrap(), "b");
        assert_eq!(room_from_query(Some("x=1")).unwrap(), "lobby");
        assert_eq!(room_from_query(None).unwrap(), "lobby");
        assert_eq!(
            room_from_query(Some("room=")).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            room_from_query(Some("room=a%20b")).unwrap_err().status,
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn same_origin_is_scheme_host_and_port() {
        use Transport::{Plain, Tls};
        let yes = [
            ("http://127.0.0.1:8080", "127.0.0.1:8080", Plain),
            ("http://localhost:8080", "localhost:8080", Plain),
            ("https://game.example:8443", "game.example:8443", Tls),
            // A missing port is the scheme's default, on either side.
            ("http://game.example", "game.example", Plain),
            ("http://game.example", "game.example:80", Plain),
            ("http://game.example:80", "game.example", Plain),
            ("https://game.example", "game.example:443", Tls),
            ("http://[::1]:8080", "[::1]:8080", Plain),
            ("http://[::ffff:127.0.0.1]", "[::ffff:127.0.0.1]:80", Plain),
        ];
        for (origin, host, transport) in yes {
            assert!(
                same_origin(origin, host, transport),
                "{origin} / Host {host} / {transport:?}"
            );
        }
        let no = [
            // Another port, host or scheme is another origin.
            ("http://127.0.0.1:1", "127.0.0.1:8080", Plain),
            ("http://127.0.0.1", "127.0.0.1:8080", Plain),
            ("http://evil.example:8080", "127.0.0.1:8080", Plain),
            ("http://localhost:8080", "127.0.0.1:8080", Plain),
            ("http://[::1]:8080", "[::1]:8081", Plain),
            ("https://127.0.0.1:8080", "127.0.0.1:8080", Plain),
            ("http://127.0.0.1:8080", "127.0.0.1:8080", Tls),
            ("https://game.example", "game.example", Plain),
            ("http://game.example", "game.example", Tls),
            ("ws://127.0.0.1:8080", "127.0.0.1:8080", Plain),
            // Not an origin, or not an authority: never equal, even to itself.
            ("null", "null", Plain),
            ("http://127.0.0.1:8080/", "127.0.0.1:8080", Plain),
            ("http://127.0.0.1:8080", "127.0.0.1:8080/", Plain),
            ("http://u@127.0.0.1:8080", "u@127.0.0.1:8080", Plain),
            ("http://127.0.0.1:", "127.0.0.1:", Plain),
            ("http://127.0.0.1:99999", "127.0.0.1:99999", Plain),
            ("http://127.0.0.1:+80", "127.0.0.1:+80", Plain),
            ("http://:8080", ":8080", Plain),
            ("http://", "", Plain),
            ("http://[zz]:1", "[zz]:1", Plain),
            ("http://[]:1", "[]:1", Plain),
            ("http://a:1:2", "a:1:2", Plain),
        ];
        for (origin, host, transport) in no {
            assert!(
                !same_origin(origin, host, transport),
                "{origin} / Host {host} / {transport:?}"
            );
        }
    }

    #[test]
    fn the_servers_own_origin_needs_no_flag() {
        let proto = ("sec-websocket-protocol", "tickcast.v2");
        let none = OriginPolicy::default();
        let upgrade = |origin: &'static str, host: &'static str, policy: &OriginPolicy| {
            check(
                &headers(&[proto, ("origin", origin), ("host", host)]),
                None,
                policy,
                Transport::Plain,
            )
        };
        assert_eq!(
            upgrade("http://127.0.0.1:8080", "127.0.0.1:8080", &none).unwrap(),
            "lobby"
        );
        // Both headers are compared without regard to case.
        assert!(upgrade("HTTP://Game.Example:8080", "game.EXAMPLE:8080", &none).is_ok());
        let r = upgrade("http://127.0.0.1:1", "127.0.0.1:8080", &none).unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(r.message, "origin http://127.0.0.1:1 is not allowed");
        assert_eq!(
            upgrade("http://evil.example", "127.0.0.1:8080", &none)
                .unwrap_err()
                .status,
            StatusCode::FORBIDDEN
        );
        // Over TLS the page's origin is https.
        let tls = |origin: &'static str| {
            check(
                &headers(&[proto, ("origin", origin), ("host", "game.example")]),
                None,
                &none,
                Transport::Tls,
            )
        };
        assert!(tls("https://game.example").is_ok());
        assert_eq!(
            tls("http://game.example").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        // Without a Host header, or with two, there is no own origin to compare with.
        let no_host = headers(&[proto, ("origin", "http://127.0.0.1:8080")]);
        assert!(check(&no_host, None, &none, Transport::Plain).is_err());
        let two_hosts = headers(&[
            proto,
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(check(&two_hosts, None, &none, Transport::Plain).is_err());
        // The allow-list still works beside the rule, for other origins only.
        let listed = OriginPolicy::new(&["https://game.example".to_owned()]);
        assert!(upgrade("https://game.example", "127.0.0.1:8080", &listed).is_ok());
        assert!(upgrade("http://127.0.0.1:8080", "127.0.0.1:8080", &listed).is_ok());
        assert!(upgrade("https://evil.example", "127.0.0.1:8080", &listed).is_err());
    }
}
