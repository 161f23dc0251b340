//! Sending one `ExportMetricsServiceRequest`: OTLP/HTTP (protobuf POST, gzip) or OTLP/gRPC
//! (tonic), with a deadline and retries with backoff for the errors the OTLP spec calls
//! retryable.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{
    codec::CompressionEncoding,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

use crate::config::{OtlpConfig, OtlpProtocol};

/// An export that failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The backend answered with an error status (HTTP status or gRPC code).
    #[error("the backend refused the export: {status}")]
    Refused {
        /// Status as received.
        status: String,
        /// Whether the OTLP spec says to retry.
        retryable: bool,
    },
    /// No answer: connection refused, reset, timed out.
    #[error("the backend is unreachable")]
    Unreachable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The TLS settings could not be used (bad PEM, key not matching the certificate).
    #[error("otlp TLS settings: {what}")]
    Tls {
        /// Which file or step.
        what: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SendError {
    fn retryable(&self) -> bool {
        match self {
            SendError::Refused { retryable, .. } => *retryable,
            SendError::Unreachable(_) => true,
            SendError::Tls { .. } => false,
        }
    }
}

/// One OTLP destination.
pub struct OtlpClient {
    cfg: OtlpConfig,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    grpc: Option<tonic::client::Grpc<Channel>>,
    url: hyper::Uri,
}

impl OtlpClient {
    /// A client for `cfg` (already validated); connects lazily.
    pub fn new(cfg: &OtlpConfig) -> Result<Self, SendError> {
        let base = cfg.endpoint.trim_end_matches('/');
        let url = match cfg.protocol {
            // The spec: a generic endpoint gets the signal path appended.
            OtlpProtocol::HttpProtobuf if !base.ends_with("/v1/metrics") => {
                format!("{base}/v1/metrics")
            }
            _ => base.to_owned(),
        };
        let url: hyper::Uri = url
            .parse()
            .map_err(|e| SendError::Unreachable(Box::new(e)))?;
        let tls = url.scheme_str() == Some("https");
        let grpc = if cfg.protocol == OtlpProtocol::Grpc {
            let mut endpoint = Channel::from_shared(cfg.endpoint.clone())
                .map_err(|e| SendError::Unreachable(Box::new(e)))?;
            if tls {
                endpoint = endpoint
                    .tls_config(grpc_tls(cfg)?)
                    .map_err(|e| SendError::Tls {
                        what: "gRPC TLS configuration".into(),
                        source: Box::new(e),
                    })?;
            }
            let channel = endpoint
                .connect_timeout(cfg.timeout)
                .timeout(cfg.timeout)
                .connect_lazy();
            let mut c = tonic::client::Grpc::new(channel);
            if cfg.gzip {
                // A gRPC server answers a gzip request in gzip (grpc-go, so the Collector, does):
                // without accepting it, tonic reports an export the server took as UNIMPLEMENTED.
                c = c
                    .send_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Gzip);
            }
            Some(c)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            http: Client::builder(TokioExecutor::new()).build(
                hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(rustls_config(cfg)?)
                    .https_or_http()
                    .enable_http1()
                    .build(),
            ),
            grpc,
            url,
        })
    }

    /// Sends `req`, retrying retryable failures with exponential backoff until the configured
    /// timeout runs out. Returns the number of attempts made.
    /// `body` is an encoded `ExportMetricsServiceRequest`.
    pub async fn send(&mut self, body: Vec<u8>) -> Result<u32, SendError> {
        let body = Bytes::from(body);
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = match tokio::time::timeout(left, self.send_once(body.clone())).await {
                Ok(r) => r,
                Err(elapsed) => Err(SendError::Unreachable(Box::new(elapsed))),
            };
            match result {
                Ok(()) => return Ok(attempts),
                Err(e) if e.retryable() && tokio::time::Instant::now() + backoff < deadline => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn send_once(&mut self, body: Bytes) -> Result<(), SendError> {
        if let Some(grpc) = &mut self.grpc {
            grpc.ready()
                .await
                .map_err(|e| SendError::Unreachable(Box::new(e)))?;
            let mut request = tonic::Request::new(body);
            for (k, v) in &self.cfg.headers {
                let (Ok(key), Ok(value)) = (
                    k.to_ascii_lowercase()
                        .parse::<tonic::metadata::MetadataKey<_>>(),
                    MetadataValue::try_from(v.as_str()),
                ) else {
                    continue;
                };
                request.metadata_mut().insert(key, value);
            }
            let path = hyper::http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            );
            return grpc
                .unary(request, path, RawCodec)
                .await
                .map(|_| ())
                .map_err(|s| {
                    use tonic::Code;
                    let retryable = matches!(
                        s.code(),
                        Code::Cancelled
                            | Code::DeadlineExceeded
                            | Code::Aborted
                            | Code::OutOfRange
                            | Code::Unavailable
                            | Code::DataLoss
                            | Code::ResourceExhausted
                    );
                    SendError::Refused {
                        status: format!("gRPC {:?}", s.code()),
                        retryable,
                    }
                });
        }
        let mut builder =
            hyper::Request::post(self.url.clone()).header("content-type", "application/x-protobuf");
        let body = if self.cfg.gzip {
            builder = builder.header("content-encoding", "gzip");
            Bytes::from(gzip(&body))
        } else {
            body
        };
        for (k, v) in &self.cfg.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(Full::new(body))
            .map_err(|e| SendError::Unreachable(Box::new(e)))?;
        let response = self
            .http
            .request(request)
            .await
            .map_err(|e| SendError::Unreachable(Box::new(e)))?;
        let status = response.status();
        // Drain the body so the connection can be reused.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(SendError::Refused {
                status: format!("HTTP {status}"),
                retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
            })
        }
    }
}

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
fn grpc_tls(cfg: &OtlpConfig) -> Result<ClientTlsConfig, SendError> {
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
fn rustls_config(cfg: &OtlpConfig) -> Result<rustls::ClientConfig, SendError> {
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

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}

/// A gRPC codec for bytes that are already an encoded request; the response (empty, or a
/// partial-success notice) is skipped.
#[derive(Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        use bytes::Buf as _;
        src.advance(src.remaining());
        Ok(Some(()))
    }
}
