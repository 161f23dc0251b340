//! The OTLP client's TLS settings for `https://` endpoints: the system's roots or
//! `otlp.ca_file`, and a client certificate for mutual TLS; a file that cannot be used is
//! named by its key.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::client::SendError;
use crate::config::OtlpConfig;

fn tls_err(what: &str) -> impl FnOnce(Box<dyn std::error::Error + Send + Sync>) -> SendError + '_ {
    move |source| SendError::Tls {
        what: what.to_owned(),
        source,
    }
}

fn read(path: &str, what: &str) -> Result<Vec<u8>, SendError> {
    std::fs::read(path).map_err(|e| tls_err(what)(Box::new(e)))
}

/// tonic's TLS settings: the configured CA (or the system's roots) and the client identity.
pub(super) fn grpc_tls(cfg: &OtlpConfig) -> Result<ClientTlsConfig, SendError> {
    let mut tls = ClientTlsConfig::new();
    tls = if cfg.ca_file.is_empty() {
        tls.with_native_roots()
    } else {
        tls.ca_certificate(Certificate::from_pem(read(&cfg.ca_file, "otlp.ca_file")?))
    };
    if !cfg.cert_file.is_empty() {
        let cert = read(&cfg.cert_file, "otlp.cert_file")?;
        let key = read(&cfg.key_file, "otlp.key_file")?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(tls)
}

/// rustls settings for OTLP/HTTP over `https://` (also built for `http://`, where unused).
pub(super) fn rustls_config(cfg: &OtlpConfig) -> Result<rustls::ClientConfig, SendError> {
    let mut roots = rustls::RootCertStore::empty();
    if cfg.ca_file.is_empty() {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    } else {
        for cert in CertificateDer::pem_file_iter(&cfg.ca_file)
            .map_err(|e| tls_err("otlp.ca_file")(Box::new(e)))?
        {
            let cert = cert.map_err(|e| tls_err("otlp.ca_file")(Box::new(e)))?;
            roots
                .add(cert)
                .map_err(|e| tls_err("otlp.ca_file")(Box::new(e)))?;
        }
        if roots.is_empty() {
            let e: Box<dyn std::error::Error + Send + Sync> =
                format!("no PEM certificate in {}", cfg.ca_file).into();
            return Err(tls_err("otlp.ca_file")(e));
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| tls_err("TLS versions")(Box::new(e)))?
    .with_root_certificates(roots);
    if cfg.cert_file.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cfg.cert_file)
        .map_err(|e| tls_err("otlp.cert_file")(Box::new(e)))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("otlp.cert_file")(Box::new(e)))?;
    let key = PrivateKeyDer::from_pem_file(&cfg.key_file)
        .map_err(|e| tls_err("otlp.key_file")(Box::new(e)))?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| tls_err("otlp.cert_file and otlp.key_file")(Box::new(e)))
}
