//! TLS for `wss://` and `https://`, terminated in the server with rustls.
//!
//! With `--tls-cert` and `--tls-key` every accepted TCP connection first completes a TLS
//! handshake, then carries the same HTTP/1.1 and WebSocket traffic as a plain one; the
//! rest of the server does not know the difference. The TLS handshake gets its own
//! `--handshake-timeout`, so a peer that opens TCP and stalls in TLS is dropped as surely
//! as one that stalls in HTTP.
//!
//! ALPN offers only `http/1.1`: WebSockets over HTTP/2 (RFC 8441) are not served, and a
//! client that asks for h2 alone is refused in the handshake instead of mid-request.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The TLS settings of a server: what [`tokio_rustls::TlsAcceptor`] is made from, once
/// per connection (an `Arc` clone).
pub type TlsConfig = Arc<rustls::ServerConfig>;

/// Builds the settings from a PEM certificate chain (leaf first, as web servers expect)
/// and a PEM private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// When a file cannot be read, holds no certificate or key, or the key does not match
/// the certificate; the message names the file.
pub fn load(cert_path: &Path, key_path: &Path) -> anyhow::Result<TlsConfig> {
    let chain = CertificateDer::pem_file_iter(cert_path)
        .with_context(|| format!("reading TLS certificate {}", cert_path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing TLS certificate {}", cert_path.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "no certificate in {} (expected PEM \"BEGIN CERTIFICATE\")",
        cert_path.display()
    );
    let key = PrivateKeyDer::from_pem_file(key_path)
        .with_context(|| format!("reading TLS private key {}", key_path.display()))?;
    from_pem_parts(chain, key)
}

/// Builds the settings from a certificate chain and a key already in memory.
///
/// # Errors
/// When the key does not match the leaf certificate or is of an unsupported kind.
pub fn from_pem_parts(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<TlsConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("TLS certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
