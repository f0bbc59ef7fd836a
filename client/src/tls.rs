//! Which servers a `wss://` connection trusts, and the TLS handshake itself.
//!
//! By default a client trusts the public web PKI (Mozilla's roots, compiled in through
//! `webpki-roots`, so a bot behaves the same on every machine whatever its system
//! store holds). A server with a private or self-signed certificate is trusted by
//! adding its CA with [`TlsTrust::with_ca_pem_file`] (`tickcast-bots --ca-cert`).
//! There is deliberately no switch that turns verification off: a load test against a
//! server that presents the wrong certificate should fail loudly.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::ClientError;

/// The certificate authorities a client accepts for `wss://`, as a ready rustls
/// configuration. Cheap to clone (an `Arc`); build it once and share it among bots.
#[derive(Clone)]
pub struct TlsTrust(Arc<ClientConfig>);

impl TlsTrust {
    /// Trust the public web PKI only.
    pub fn public_roots() -> Self {
        static PUBLIC: OnceLock<TlsTrust> = OnceLock::new();
        PUBLIC.get_or_init(|| Self::build(public_store())).clone()
    }

    /// Trust the public web PKI and the CA certificates in `path` (PEM, one or more
    /// "BEGIN CERTIFICATE" blocks): how a client reaches a server with a self-signed or
    /// private-CA certificate.
    ///
    /// # Errors
    /// [`ClientError::TlsSetup`] when the file cannot be read or holds no usable
    /// certificate; the message names the file.
    pub fn with_ca_pem_file(path: &Path) -> Result<Self, ClientError> {
        let setup = |what: String| ClientError::TlsSetup(format!("{}: {what}", path.display()));
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| setup(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| setup(e.to_string()))?;
        if certs.is_empty() {
            return Err(setup("no PEM \"BEGIN CERTIFICATE\" block".into()));
        }
        Self::with_ca_certs(certs).map_err(|e| setup(e.to_string()))
    }

    /// Trust the public web PKI and `certs`.
    ///
    /// # Errors
    /// [`ClientError::TlsSetup`] when a certificate cannot be used as a trust anchor.
    pub fn with_ca_certs(certs: Vec<CertificateDer<'static>>) -> Result<Self, ClientError> {
        let mut roots = public_store();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| ClientError::TlsSetup(format!("CA certificate: {e}")))?;
        }
        Ok(Self::build(roots))
    }

    fn build(roots: RootCertStore) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // An invariant of rustls, nothing a peer controls.
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("rustls' ring provider supports its own default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        // The WebSocket upgrade is HTTP/1.1 (RFC 6455); say so, so that a server that
        // also speaks h2 does not pick it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self(Arc::new(config))
    }

    /// Runs the TLS handshake on `stream` for `host` (a DNS name or an IP address,
    /// which the certificate must name). Any byte stream will do, not only a
    /// `TcpStream`: a bot on a conditioned link runs TLS over the link's stream, so
    /// that the handshake and every record cross the emulated network.
    pub(crate) async fn connect<S>(
        &self,
        host: &str,
        stream: S,
    ) -> Result<TlsStream<S>, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| ClientError::InvalidUrl(format!("{host}: not a TLS server name: {e}")))?;
        TlsConnector::from(Arc::clone(&self.0))
            .connect(name, stream)
            .await
            .map_err(|e| {
                // tokio-rustls wraps TLS alerts and certificate errors in io::Error;
                // those are answers (asking again gets the same), unlike a reset socket.
                match e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                {
                    Some(tls) => ClientError::Tls(tls.clone()),
                    None => ClientError::Io(e),
                }
            })
    }
}

impl Default for TlsTrust {
    fn default() -> Self {
        Self::public_roots()
    }
}

/// Two trusts are equal when they are the same configuration (not merely equivalent).
impl PartialEq for TlsTrust {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for TlsTrust {}

impl std::fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTrust").finish_non_exhaustive()
    }
}

fn public_store() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}
