//! The playable page: `GET /` and the two ES modules it loads, compiled into the binary.
//!
//! A newcomer runs the server and opens `http://127.0.0.1:8080/`: there is nothing to
//! install, build or copy next to the binary, because the files of `web/` are embedded
//! with `include_str!` (cargo rebuilds the server when they change). The page is
//! `web/page/index.html` with `web/page/app.js`, and `app.js` imports the JavaScript
//! client library `web/tickcast.js` exactly as it is published, so the page plays the
//! protocol through the same code a game developer would use.
//!
//! The page opens its WebSocket to the host and port it came from, which passes the
//! Origin check without `--allow-origin` ([`super::handshake::same_origin`]).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Response, StatusCode};

/// One embedded file and how it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The request path it answers.
    pub path: &'static str,
    /// Its `Content-Type`.
    pub content_type: &'static str,
    /// Its bytes, exactly as in `web/`.
    pub body: &'static str,
}

/// Every file of the page. The module scripts must be served with a JavaScript type:
/// browsers refuse to run a module of any other type.
pub const ASSETS: [Asset; 3] = [
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../../web/page/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../web/page/app.js"),
    },
    Asset {
        path: "/tickcast.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../../web/tickcast.js"),
    },
];

/// The asset served at `path`, if any.
pub fn asset(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

impl Asset {
    /// The `200` response carrying the file. `Cache-Control: no-cache` makes the browser
    /// ask again on each load (it may still revalidate), so a page and its modules never
    /// come from two different builds of the server.
    pub fn response(&self) -> Response<Full<Bytes>> {
        let mut r = Response::new(Full::new(Bytes::from_static(self.body.as_bytes())));
        *r.status_mut() = StatusCode::OK;
        let headers = r.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_path_has_one_asset_and_the_page_loads_the_other_two() {
        for a in &ASSETS {
            assert_eq!(asset(a.path), Some(a));
        }
        assert_eq!(asset("/index.html"), None);
        assert_eq!(asset("/app.js/"), None);
        assert_eq!(asset(""), None);
        let page = ASSETS[0].body;
        assert!(page.contains(r#"<script type="module" src="./app.js"></script>"#));
        assert!(ASSETS[1].body.contains(r#"from "./tickcast.js""#));
    }
}
