//! One plain HTTP/1.1 request on a fresh connection: the socket part of the bots' side
//! requests, the server's metrics page ([`crate::scrape`]) and matchmaking
//! ([`crate::matchmake`]). hyper's client connection, with no pool: each is one request
//! a second, or one per bot, and a kept-alive pool would only hold sockets open.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper::http::request::Builder;
use hyper::{StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A server's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

/// Sends `request` (its method, path and headers; `Host` is added from `uri`) to the
/// host and port of `uri`, and reads the answer, whatever its status, up to `max_body`
/// bytes. Bounded in time by the caller.
///
/// # Errors
/// What failed, as text: a URL without a host, the connection, the exchange, or a body
/// over `max_body`.
pub(crate) async fn exchange(
    uri: &Uri,
    request: Builder,
    max_body: usize,
) -> Result<Answer, String> {
    let host = uri.host().ok_or_else(|| format!("no host in {uri}"))?;
    let port = uri.port_u16().unwrap_or(80);
    // `[::1]` in a URL is `::1` to connect to.
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let stream = TcpStream::connect((connect_host, port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "http client connection ended");
        }
    });
    let authority = uri
        .authority()
        .map_or_else(|| host.to_owned(), |a| a.as_str().to_owned());
    let result = async {
        let request = request
            .header(hyper::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body = Limited::new(response.into_body(), max_body)
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Answer { status, body })
    }
    .await;
    driver.abort();
    result
}
