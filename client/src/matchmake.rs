//! Asking a server for a seat: `POST /matchmake` over plain HTTP/1.1 (hyper's client
//! connection, one request per TCP connection), for `tickcast-bots --matchmake`.
//!
//! The answer names the room, the single-use ticket that holds the seat, and the URL to
//! dial with it. A single node answers a path (`/ws?room=R&ticket=T`), resolved here
//! against the server's address; a node of a cluster (`--redis`) answers the owning
//! node's full URL, which may be another node's.

use std::time::Duration;

use hyper::{Request, StatusCode, Uri};
use serde::Deserialize;

use crate::http::exchange;

use crate::token::PlayerToken;

/// Largest answer read: a few hundred bytes in practice.
const MAX_ANSWER: usize = 16 * 1024;

/// Why matchmaking failed.
#[derive(Debug, thiserror::Error)]
pub enum MatchmakeError {
    /// The URL is not `http://host:port`.
    #[error("not an http:// URL: {0}")]
    Url(String),
    /// No answer within the time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// TCP connect or HTTP failed.
    #[error("{0}")]
    Io(String),
    /// The server answered, but not 200; its status and its error text.
    #[error("http {0}: {1}")]
    Status(StatusCode, String),
    /// The answer was not the JSON of a seat.
    #[error("bad answer: {0}")]
    Answer(String),
}

impl MatchmakeError {
    /// A short label for counting failures by kind (`matchmake: http 429`, ...).
    pub fn kind(&self) -> String {
        match self {
            Self::Url(_) => "url".to_owned(),
            Self::Timeout(_) => "timeout".to_owned(),
            Self::Io(_) => "io".to_owned(),
            Self::Status(status, _) => format!("http {}", status.as_u16()),
            Self::Answer(_) => "answer".to_owned(),
        }
    }
}

/// A seat the server reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    /// The room.
    pub room: String,
    /// What to dial: `ws://node/ws?room=R&ticket=T`.
    pub url: String,
    /// The node that owns the room: the `scheme://host:port` of [`Seat::url`].
    pub node: String,
}

#[derive(Deserialize)]
struct Answer {
    room: String,
    url: String,
}

/// Checks that `base` is `http://host[:port]`, so that a typo is refused before a run.
///
/// # Errors
/// [`MatchmakeError::Url`] naming what is wrong.
pub fn check_url(base: &str) -> Result<Uri, MatchmakeError> {
    let uri: Uri = base
        .parse()
        .map_err(|e| MatchmakeError::Url(format!("{base}: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(MatchmakeError::Url(base.to_owned()));
    }
    Ok(uri)
}

/// `POST {base}/matchmake`, with `token` as `Authorization: Bearer` when given, all
/// within `limit`.
///
/// # Errors
/// [`MatchmakeError`]: a bad URL, no connection, a refusal (429, 503, ...) or an
/// answer that is not a seat.
pub async fn request(
    base: &str,
    token: Option<&PlayerToken>,
    limit: Duration,
) -> Result<Seat, MatchmakeError> {
    let uri = check_url(base)?;
    tokio::time::timeout(limit, post(uri, token))
        .await
        .map_err(|_| MatchmakeError::Timeout(limit))?
}

async fn post(uri: Uri, token: Option<&PlayerToken>) -> Result<Seat, MatchmakeError> {
    let mut request = Request::post("/matchmake");
    if let Some(token) = token {
        request = request.header(
            hyper::header::AUTHORIZATION,
            format!("Bearer {}", token.as_str()),
        );
    }
    let answer = exchange(&uri, request, MAX_ANSWER)
        .await
        .map_err(MatchmakeError::Io)?;
    if answer.status != StatusCode::OK {
        let text = String::from_utf8_lossy(&answer.body).trim().to_owned();
        return Err(MatchmakeError::Status(answer.status, text));
    }
    let seat_answer: Answer =
        serde_json::from_slice(&answer.body).map_err(|e| MatchmakeError::Answer(e.to_string()))?;
    let authority = uri.authority().map_or_else(
        || uri.host().unwrap_or_default().to_owned(),
        |a| a.as_str().to_owned(),
    );
    Ok(seat(&authority, seat_answer))
}

/// The seat of `answer`, its URL made absolute against the server at `authority`.
fn seat(authority: &str, answer: Answer) -> Seat {
    let url = if answer.url.starts_with('/') {
        format!("ws://{authority}{}", answer.url)
    } else {
        answer.url
    };
    let node = match url.find("://") {
        Some(i) => {
            let end = url[i + 3..].find('/').map_or(url.len(), |j| i + 3 + j);
            url[..end].to_owned()
        }
        None => url.clone(),
    };
    Seat {
        room: answer.room,
        url,
        node,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute_answers() {
        let local = seat(
            "127.0.0.1:9",
            Answer {
                room: "r".into(),
                url: "/ws?room=r&ticket=t".into(),
            },
        );
        assert_eq!(local.url, "ws://127.0.0.1:9/ws?room=r&ticket=t");
        assert_eq!(local.node, "ws://127.0.0.1:9");
        let remote = seat(
            "127.0.0.1:9",
            Answer {
                room: "r".into(),
                url: "wss://eu-1.example.com/ws?room=r&ticket=a.b.c".into(),
            },
        );
        assert_eq!(remote.node, "wss://eu-1.example.com");
        assert_eq!(remote.room, "r");
    }

    #[test]
    fn only_http_urls() {
        assert!(check_url("http://127.0.0.1:8080").is_ok());
        for bad in ["ws://h:1", "https://h", "h:1"] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
