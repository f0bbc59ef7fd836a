//! The checks of a WebSocket upgrade request that fastwebsockets leaves to us:
//! path and room, subprotocol, Origin. Pure functions over the request head, so every
//! refusal is unit-tested without a socket; [`super::http`] turns a [`Refusal`] into
//! the HTTP response.

use hyper::header::{HeaderMap, ORIGIN, SEC_WEBSOCKET_PROTOCOL};
use hyper::StatusCode;
use tickcast_shared::{validate, DEFAULT_ROOM, SUBPROTOCOL};

/// Why an upgrade was refused, as the HTTP status and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Status to answer with.
    pub status: StatusCode,
    /// One line saying what was wrong and what is accepted.
    pub message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
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
    /// anyway; a browser always sends it, and only listed Origins may use a player's
    /// cookies and network position to connect.
    fn check(&self, origin: Option<&[u8]>) -> Result<(), Refusal> {
        let Some(origin) = origin else { return Ok(()) };
        if self.any {
            return Ok(());
        }
        let origin = String::from_utf8_lossy(origin).to_ascii_lowercase();
        if self.allowed.contains(&origin) {
            Ok(())
        } else {
            Err(Refusal::new(
                StatusCode::FORBIDDEN,
                format!("origin {origin} is not allowed"),
            ))
        }
    }
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

/// Checks an upgrade request's head; returns the room to join.
///
/// # Errors
/// A [`Refusal`]: 400 for a missing subprotocol or a bad room, 403 for an Origin that
/// is not allowed.
pub fn check(
    headers: &HeaderMap,
    query: Option<&str>,
    origins: &OriginPolicy,
) -> Result<String, Refusal> {
    if !offers_subprotocol(headers) {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("missing or unsupported Sec-WebSocket-Protocol; supported: {SUBPROTOCOL}"),
        ));
    }
    origins.check(headers.get(ORIGIN).map(|v| v.as_bytes()))?;
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
        let r = check(&headers(&[]), None, &none).unwrap_err();
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert!(r.message.contains("tickcast.v2"));
        assert!(check(&headers(&[("sec-websocket-protocol", "chat")]), None, &none).is_err());
        let ok = headers(&[
            ("sec-websocket-protocol", "chat"),
            ("sec-websocket-protocol", "x, tickcast.v2"),
        ]);
        assert_eq!(check(&ok, None, &none).unwrap(), "lobby");
    }

    #[test]
    fn origin_policy() {
        let proto = ("sec-websocket-protocol", "tickcast.v2");
        let listed = OriginPolicy::new(&["https://game.example/".to_owned()]);
        assert!(
            check(&headers(&[proto]), None, &listed).is_ok(),
            "native clients send no Origin"
        );
        assert!(check(
            &headers(&[proto, ("origin", "https://GAME.example")]),
            None,
            &listed
        )
        .is_ok());
        let r = check(
            &headers(&[proto, ("origin", "https://evil.example")]),
            None,
            &listed,
        )
        .unwrap_err();
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert!(check(
            &headers(&[proto, ("origin", "null")]),
            None,
            &OriginPolicy::default()
        )
        .is_err());
        let any = OriginPolicy::new(&["*".to_owned()]);
        assert!(check(
            &headers(&[proto, ("origin", "https://evil.example")]),
            None,
            &any
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
}
