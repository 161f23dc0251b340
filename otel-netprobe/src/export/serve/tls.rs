//! The HTTP server's TLS: the rustls server configuration built from `http.tls`, and which
//! requests a connection without a verified client certificate may make. Only `/healthz`: the
//! kubelet's probes carry no client certificate, and health says nothing about the traffic.

use std::sync::Arc;

use rustls::{
    RootCertStore, ServerConfig,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::WebPkiClientVerifier,
};

use crate::config::HttpTlsConfig;

/// A TLS setting that cannot be used, with the key it came from.
#[derive(Debug, thiserror::Error)]
#[error("config key `{key}`: {reason}")]
pub struct TlsError {
    /// The configuration key (`http.tls.cert_file`, ...).
    pub key: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The server's TLS: its rustls configuration, and whether it asks clients for a certificate.
#[derive(Clone)]
pub struct TlsServer {
    /// The rustls server configuration.
    pub config: Arc<ServerConfig>,
    /// A client CA is configured: requests other than `/healthz` need a verified certificate.
    pub client_auth: bool,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

fn err(key: &'static str, reason: impl Into<String>) -> TlsError {
    TlsError {
        key,
        reason: reason.into(),
    }
}

fn certs(key: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(key, format!("cannot read {path}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(key, format!("{path}: {e}")))?;
    if certs.is_empty() {
        return Err(err(key, format!("{path} holds no PEM certificate")));
    }
    Ok(certs)
}

/// The server configuration of `c`, `None` when TLS is off. With `client_ca_file`, client
/// certificates are asked for and verified against it, but a connection without one is still
/// accepted (for `/healthz` only: see [`allowed_without_client_cert`]).
///
/// # Errors
/// A file that cannot be read or parsed, or a key that does not fit its certificate.
pub fn server_config(c: &HttpTlsConfig) -> Result<Option<TlsServer>, TlsError> {
    if !c.enabled() {
        return Ok(None);
    }
    let chain = certs("http.tls.cert_file", &c.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&c.key_file)
        .map_err(|e| err("http.tls.key_file", format!("{}: {e}", c.key_file)))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| err("http.tls", e.to_string()))?;
    let builder = if c.client_ca_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        for ca in certs("http.tls.client_ca_file", &c.client_ca_file)? {
            roots.add(ca).map_err(|e| {
                err(
                    "http.tls.client_ca_file",
                    format!("{}: {e}", c.client_ca_file),
                )
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .allow_unauthenticated()
            .build()
            .map_err(|e| err("http.tls.client_ca_file", e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        err(
            "http.tls.key_file",
            format!("does not fit the certificate: {e}"),
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsServer {
        config: Arc::new(config),
        client_auth: !c.client_ca_file.is_empty(),
    }))
}

/// Whether a request for `path` is served on a connection whose client presented no verified
/// certificate, when the server asks for one.
pub fn allowed_without_client_cert(path: &str) -> bool {
    path == "/healthz"
}
