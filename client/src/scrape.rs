//! Fetching a server's `/metrics` page over plain HTTP/1.1 (hyper's client
//! connection, one request per TCP connection), for `tickcast-bots --metrics-url`.
//! Reading the page is [`crate::report::prometheus`]'s job; this is the socket.

use std::time::Duration;

use hyper::{Request, StatusCode, Uri};

use crate::http::exchange;

/// Largest metrics page read; a tickcast page is a few KiB per room, and the server
/// caps its labelled rooms.
pub const MAX_METRICS_PAGE: usize = 4 << 20;

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    /// The URL is not `http://host:port/path`.
    #[error("not an http:// URL: {0}")]
    Url(String),
    /// No answer within the time limit.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// TCP connect or HTTP failed.
    #[error("{0}")]
    Io(String),
    /// The server answered, but not 200.
    #[error("http {0}")]
    Status(StatusCode),
}

/// Checks that `url` is one [`fetch`] can scrape, so that a typo is refused before a
/// run rather than counted as a failure every second.
///
/// # Errors
/// [`ScrapeError::Url`] naming what is wrong.
pub fn check_url(url: &str) -> Result<Uri, ScrapeError> {
    let uri: Uri = url
        .parse()
        .map_err(|e| ScrapeError::Url(format!("{url}: {e}")))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(ScrapeError::Url(url.to_owned()));
    }
    Ok(uri)
}

/// GETs `url` and returns the body as text, all within `limit`.
///
/// # Errors
/// [`ScrapeError`] for a bad URL, no connection, a status other than 200, a body
/// over [`MAX_METRICS_PAGE`] or not UTF-8, or `limit` passing first.
pub async fn fetch(url: &str, limit: Duration) -> Result<String, ScrapeError> {
    let uri = check_url(url)?;
    tokio::time::timeout(limit, get(uri))
        .await
        .map_err(|_| ScrapeError::Timeout(limit))?
}

async fn get(uri: Uri) -> Result<String, ScrapeError> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    let request = Request::get(path).header(hyper::header::ACCEPT, "text/plain");
    let answer = exchange(&uri, request, MAX_METRICS_PAGE)
        .await
        .map_err(ScrapeError::Io)?;
    if answer.status != StatusCode::OK {
        return Err(ScrapeError::Status(answer.status));
    }
    String::from_utf8(answer.body.to_vec()).map_err(|e| ScrapeError::Io(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_urls_with_a_host() {
        assert!(check_url("http://127.0.0.1:9100/metrics").is_ok());
        assert!(check_url("http://[::1]:9100/metrics").is_ok());
        for bad in ["https://x/metrics", "ws://x/ws", "/metrics", "not a url"] {
            assert!(matches!(check_url(bad), Err(ScrapeError::Url(_))), "{bad}");
        }
    }

    #[tokio::test]
    async fn refused_and_silent_servers_are_errors_not_hangs() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = format!("http://127.0.0.1:{port}/metrics");
        assert!(matches!(
            fetch(&url, Duration::from_secs(5)).await,
            Err(ScrapeError::Io(_))
        ));
        let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/metrics", silent.local_addr().expect("addr"));
        assert!(matches!(
            fetch(&url, Duration::from_millis(200)).await,
            Err(ScrapeError::Timeout(_))
        ));
    }
}
