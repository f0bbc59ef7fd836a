//! The playable page at `/`: its three files are served from the binary, byte for byte
//! the files of `web/`, and a WebSocket opened by a page the server itself served (its
//! Origin is the server's own scheme, host and port) passes the Origin check with no
//! `--allow-origin`, while every other Origin is refused as before. Real sockets, no
//! browser: what a browser does with the page is tested elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tickcast::shared::SUBPROTOCOL;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::{self, pki_types::ServerName, ClientConfig, RootCertStore};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::Connector;

/// The files as they are in the repository, read at compile time like the server's.
const INDEX: &[u8] = include_bytes!("../web/page/index.html");
const APP: &[u8] = include_bytes!("../web/page/app.js");
const LIBRARY: &[u8] = include_bytes!("../web/tickcast.js");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";

/// A whole HTTP/1.1 response: status, headers (names lowercased), body bytes.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    /// Every value of header `name`.
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Sends one request with `Connection: close` over `stream` and reads the answer to EOF.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    method: &str,
    path: &str,
    host: &str,
) -> Answer {
    let request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut raw))
        .await
        .expect("no answer in time")
        .unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Answer {
        status,
        headers,
        body: raw[end + 4..].to_vec(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Answer {
    let tcp = TcpStream::connect(addr).await.unwrap();
    exchange(tcp, method, path, &addr.to_string()).await
}

/// Checks that `answer` is `body`, served as `content_type` and never from a stale cache.
fn assert_asset(answer: &Answer, content_type: &str, body: &[u8], what: &str) {
    assert_eq!(answer.status, 200, "{what}");
    assert_eq!(answer.all("content-type"), [content_type], "{what}");
    assert_eq!(answer.all("cache-control"), ["no-cache"], "{what}");
    assert_eq!(
        answer.all("content-length"),
        [body.len().to_string()],
        "{what}"
    );
    assert!(
        answer.body == body,
        "{what}: the {} bytes served differ from the {} bytes of the file",
        answer.body.len(),
        body.len()
    );
}

#[tokio::test]
async fn the_page_and_its_modules_are_the_files_of_web_byte_for_byte() {
    let server = start(config()).await;
    for (path, content_type, body) in [
        ("/", HTML, INDEX),
        ("/app.js", JS, APP),
        // The library the page imports is the published file itself, not a copy.
        ("/tickcast.js", JS, LIBRARY),
    ] {
        let answer = request(server.addr, "GET", path).await;
        assert_asset(&answer, content_type, body, path);
        // Only GET: anything else is 405 naming it, as on the other fixed paths.
        let post = request(server.addr, "POST", path).await;
        assert_eq!(post.status, 405, "POST {path}");
        assert_eq!(post.all("allow"), ["GET"], "POST {path}");
    }
    // Nothing else of web/ is served, and the page is only at `/`.
    for path in ["/index.html", "/page/app.js", "/tickcast.d.ts", "/app.js/"] {
        assert_eq!(
            request(server.addr, "GET", path).await.status,
            404,
            "{path}"
        );
    }
    server.stop().await.unwrap();
}

/// The status of an upgrade to `url` with `origin`, and the refusal's body; 101 when
/// accepted (after playing: Hello answered by a Welcome, then a snapshot).
async fn upgrade(url: &str, origin: &str) -> (u16, String) {
    match connect_with(url, Some(SUBPROTOCOL), Some(origin)).await {
        Ok(mut ws) => {
            hello(&mut ws, "page").await;
            recv_snapshot(&mut ws).await;
            (101, String::new())
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default())
                .trim_end()
                .to_owned(),
        ),
        Err(e) => panic!("{origin}: {e}"),
    }
}

#[tokio::test]
async fn the_pages_own_origin_plays_without_a_flag_and_others_are_refused() {
    let server = start(config()).await;
    let url = server.ws_url("lobby");
    let port = server.addr.port();
    // What a browser sends from http://127.0.0.1:PORT/: the Host the socket names.
    assert_eq!(
        upgrade(&url, &format!("http://127.0.0.1:{port}")).await.0,
        101
    );
    assert_eq!(
        upgrade(&url, "http://evil.example").await,
        (403, "origin http://evil.example is not allowed".to_owned())
    );
    // The same host on another port, or another scheme, or another name for the same
    // machine, is another origin.
    for origin in [
        "http://127.0.0.1:1".to_owned(),
        format!("https://127.0.0.1:{port}"),
        format!("http://localhost:{port}"),
        format!("http://127.0.0.1:{port}.evil.example"),
        "null".to_owned(),
    ] {
        assert_eq!(
            upgrade(&url, &origin).await,
            (403, format!("origin {origin} is not allowed")),
            "{origin}"
        );
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn allow_origin_works_as_before_beside_the_own_origin() {
    let mut c = config();
    c.allow_origins = vec!["https://game.example".into()];
    let server = start(c).await;
    let url = server.ws_url("lobby");
    let own = format!("http://{}", server.addr);
    assert_eq!(upgrade(&url, "https://game.example").await.0, 101);
    assert_eq!(upgrade(&url, &own).await.0, 101);
    assert_eq!(upgrade(&url, "https://evil.example").await.0, 403);
    assert_eq!(upgrade(&url, "http://127.0.0.1:1").await.0, 403);
    server.stop().await.unwrap();

    let mut c = config();
    c.allow_origins = vec!["*".into()];
    let server = start(c).await;
    let url = server.ws_url("lobby");
    assert_eq!(upgrade(&url, "https://evil.example").await.0, 101);
    assert_eq!(upgrade(&url, "http://127.0.0.1:1").await.0, 101);
    server.stop().await.unwrap();
}

/// A private CA and a certificate it issued for 127.0.0.1, as PEM files in a directory
/// of their own (removed on drop).
struct Pki {
    dir: PathBuf,
    client: Arc<ClientConfig>,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("tickcast-page-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = Arc::new(
            ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        );
        Pki { dir, client }
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn over_tls_the_page_is_served_and_its_origin_is_https() {
    let pki = Pki::new();
    let server = start(tickcast::server::Config {
        tls_cert: Some(pki.dir.join("cert.pem")),
        tls_key: Some(pki.dir.join("key.pem")),
        ..config()
    })
    .await;
    let addr = server.addr;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::clone(&pki.client))
        .connect(name, tcp)
        .await
        .unwrap();
    let answer = exchange(tls, "GET", "/", &addr.to_string()).await;
    assert_asset(&answer, HTML, INDEX, "GET / over TLS");

    let upgrade_tls = |origin: String| {
        let client = Arc::clone(&pki.client);
        async move {
            let mut req = format!("wss://{addr}/ws?room=lobby")
                .into_client_request()
                .unwrap();
            let headers = req.headers_mut();
            headers.insert(
                "sec-websocket-protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
            headers.insert("origin", HeaderValue::from_str(&origin).unwrap());
            let connecting = tokio_tungstenite::connect_async_tls_with_config(
                req,
                None,
                false,
                Some(Connector::Rustls(client)),
            );
            match tokio::time::timeout(WAIT, connecting).await.unwrap() {
                Ok(_) => 101,
                Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
                Err(e) => panic!("{origin}: {e}"),
            }
        }
    };
    assert_eq!(upgrade_tls(format!("https://{addr}")).await, 101);
    // An http: page is not this server's: it serves only TLS on this port.
    assert_eq!(upgrade_tls(format!("http://{addr}")).await, 403);
    server.stop().await.unwrap();
}
