//! What a `ws://` or `wss://` URL tells a connection: where to connect, whether to
//! speak TLS, what to put in the request, and which room to ask for. Parsed once up
//! front, so a bad URL fails before any socket is opened, and kept by a reconnecting
//! connection, which derives the URL of each resume from it.

use hyper::Uri;
use tickcast_shared::websocket::query_param;

use crate::error::ClientError;

/// The parts of a `ws://` or `wss://` URL a connection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// `wss://`: TLS before the upgrade.
    pub(super) tls: bool,
    /// The host the server's certificate must name (an IPv6 address without brackets).
    pub(super) tls_host: String,
    /// `host:port` for `TcpStream::connect` (a hostname is resolved there).
    pub(super) addr: String,
    /// The `Host` header: the URL's authority as written.
    pub(super) host_header: String,
    /// Request target in origin form (`/ws?room=x`).
    pub(super) path_and_query: String,
    /// The `room` query parameter, or empty (the server then picks its default room).
    /// Room names are restricted to URL-safe characters, so no percent-decoding.
    pub(crate) room: String,
}

impl Target {
    /// The same target for a resume: with the non-secret `resume=1` hint, so that the
    /// handshake does not refuse the upgrade with 409 because the player's own held
    /// seat fills the room, and without a `ticket` (single use: the first connection
    /// spent it). The token itself only ever travels in `Hello.resume`.
    pub(crate) fn for_resume(&self) -> Target {
        let (path, query) = self
            .path_and_query
            .split_once('?')
            .unwrap_or((&self.path_and_query, ""));
        let mut query: Vec<&str> = query
            .split('&')
            .filter(|pair| {
                let key = pair.split_once('=').map_or(*pair, |(k, _)| k);
                !pair.is_empty() && key != "ticket" && key != "resume"
            })
            .collect();
        query.push("resume=1");
        Target {
            path_and_query: format!("{path}?{}", query.join("&")),
            ..self.clone()
        }
    }

    pub(crate) fn parse(url: &str) -> Result<Target, ClientError> {
        let uri: Uri = url
            .parse()
            .map_err(|e| ClientError::InvalidUrl(format!("{url}: {e}")))?;
        let tls = match uri.scheme_str() {
            Some("ws") => false,
            Some("wss") => true,
            _ => {
                return Err(ClientError::InvalidUrl(format!(
                    "{url}: expected ws:// or wss://"
                )))
            }
        };
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::InvalidUrl(format!("{url}: no host")))?;
        if authority.as_str().contains('@') || authority.host().is_empty() {
            return Err(ClientError::InvalidUrl(format!("{url}: bad host")));
        }
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let room = query_param(uri.query(), "room")
            .unwrap_or_default()
            .to_owned();
        Ok(Target {
            tls,
            tls_host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            addr: format!("{}:{port}", authority.host()),
            host_header: authority.as_str().to_owned(),
            path_and_query: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
            room,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        let t = Target::parse("ws://127.0.0.1:8080/ws?room=arena-1&x=y").expect("valid");
        assert_eq!(t.addr, "127.0.0.1:8080");
        assert_eq!(t.host_header, "127.0.0.1:8080");
        assert_eq!(t.path_and_query, "/ws?room=arena-1&x=y");
        assert_eq!(t.room, "arena-1");

        let t = Target::parse("ws://example.com/ws").expect("valid");
        assert_eq!(t.addr, "example.com:80");
        assert_eq!(t.host_header, "example.com");
        assert_eq!(t.room, "");
        // The first `room=` pair names the room; a bare `room` or `roomy=` does not.
        let room = |url: &str| Target::parse(url).expect("valid").room;
        assert_eq!(room("ws://h/ws?room&roomy=x&room=a&room=b"), "a");
        assert_eq!(room("ws://h/ws?room=&room=b"), "");

        let t = Target::parse("ws://[::1]:9000").expect("valid");
        assert_eq!(t.addr, "[::1]:9000");
        assert_eq!(t.path_and_query, "/");
        assert!(!t.tls);

        let t = Target::parse("wss://game.example/ws?room=r").expect("valid");
        assert!(t.tls);
        assert_eq!(t.addr, "game.example:443");
        assert_eq!(t.tls_host, "game.example");
        assert_eq!(t.host_header, "game.example");

        let t = Target::parse("wss://[::1]:8443/ws").expect("valid");
        assert_eq!(
            (t.addr.as_str(), t.tls_host.as_str()),
            ("[::1]:8443", "::1")
        );
    }

    #[test]
    fn a_resume_adds_the_hint_and_drops_the_spent_ticket() {
        let resume = |url: &str| {
            Target::parse(url)
                .expect("valid")
                .for_resume()
                .path_and_query
        };
        assert_eq!(resume("ws://h:1/ws?room=a"), "/ws?room=a&resume=1");
        assert_eq!(
            resume("ws://h:1/ws?room=a&ticket=abc&x=y"),
            "/ws?room=a&x=y&resume=1"
        );
        assert_eq!(resume("ws://h:1/ws?resume=1&room=a"), "/ws?room=a&resume=1");
        assert_eq!(resume("ws://h:1/ws"), "/ws?resume=1");
        assert_eq!(resume("ws://h:1"), "/?resume=1");
        let t = Target::parse("ws://h:1/ws?room=a&ticket=t").expect("valid");
        assert_eq!(t.for_resume().room, "a");
        assert_eq!(t.for_resume().host_header, t.host_header);
    }

    #[test]
    fn bad_urls() {
        for url in [
            "http://h/ws",
            "https://h/ws",
            "h:80/ws",
            "ws://u@h/ws",
            "not a url",
        ] {
            assert!(
                matches!(Target::parse(url), Err(ClientError::InvalidUrl(_))),
                "{url}"
            );
        }
    }
}
