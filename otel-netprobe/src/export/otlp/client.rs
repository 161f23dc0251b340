//! Sending one `ExportMetricsServiceRequest`: OTLP/HTTP (protobuf POST, gzip) or OTLP/gRPC
//! (tonic), with a deadline and retries for the errors the OTLP spec calls retryable: after the
//! wait the backend asks for (HTTP `Retry-After`, gRPC `google.rpc.RetryInfo`), else with
//! exponential backoff. A wait that outlasts the export's deadline fails the export, and the
//! next one is not sent before that time. An accepted export may still have points rejected
//! (OTLP `partial_success`): [`Accepted`] says how many.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message as _;
use tokio::time::Instant;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{codec::CompressionEncoding, metadata::MetadataValue, transport::Channel};
use tonic_types::StatusExt as _;

use super::tls::{grpc_tls, rustls_config};
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
        /// How long the backend asked to wait before a retry (`Retry-After`, `RetryInfo`).
        retry_after: Option<Duration>,
    },
    /// The backend asked to wait longer than this export may take; not sent.
    #[error("the backend asked to wait {}.{:03} s more before the next export", .wait.as_secs(), .wait.subsec_millis())]
    Throttled {
        /// How much longer.
        wait: Duration,
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
            SendError::Tls { .. } | SendError::Throttled { .. } => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            SendError::Refused { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// What the backend said of an export it accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Accepted {
    /// Attempts made (1: no retry).
    pub attempts: u32,
    /// Data points it rejected nonetheless (OTLP `partial_success`; 0: none).
    pub rejected: u64,
    /// Why, in the backend's words (may be empty).
    pub message: String,
}

impl Accepted {
    fn of(response: &ExportMetricsServiceResponse) -> Self {
        let partial = response.partial_success.as_ref();
        Self {
            attempts: 0,
            rejected: partial.map_or(0, |p| p.rejected_data_points.max(0) as u64),
            message: partial.map(|p| p.error_message.clone()).unwrap_or_default(),
        }
    }
}

/// One OTLP destination.
pub struct OtlpClient {
    cfg: OtlpConfig,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    grpc: Option<tonic::client::Grpc<Channel>>,
    url: hyper::Uri,
    /// No export before this: the backend asked for a wait that outlasted an export.
    not_before: Option<Instant>,
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
            not_before: None,
        })
    }

    /// Sends `body` (an encoded `ExportMetricsServiceRequest`), retrying retryable failures
    /// until the configured timeout runs out: after the wait the backend asked for, else with
    /// exponential backoff (100 ms, doubling, at most 5 s).
    pub async fn send(&mut self, body: Vec<u8>) -> Result<Accepted, SendError> {
        let body = Bytes::from(body);
        let deadline = Instant::now() + self.cfg.timeout;
        if let Some(until) = self.not_before.take() {
            if until > deadline {
                self.not_before = Some(until);
                return Err(SendError::Throttled {
                    wait: until - Instant::now(),
                });
            }
            tokio::time::sleep_until(until).await;
        }
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let result = match tokio::time::timeout(left, self.send_once(body.clone())).await {
                Ok(r) => r,
                Err(elapsed) => Err(SendError::Unreachable(Box::new(elapsed))),
            };
            let e = match result {
                Ok(accepted) => {
                    return Ok(Accepted {
                        attempts,
                        ..accepted
                    });
                }
                Err(e) if e.retryable() => e,
                Err(e) => return Err(e),
            };
            let wait = e.retry_after().unwrap_or(backoff);
            if Instant::now() + wait >= deadline {
                // The next export waits what the backend asked for.
                self.not_before = e.retry_after().map(|w| Instant::now() + w);
                return Err(e);
            }
            tokio::time::sleep(wait).await;
            if e.retry_after().is_none() {
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }

    async fn send_once(&mut self, body: Bytes) -> Result<Accepted, SendError> {
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
                .unary(request, path, ExportCodec)
                .await
                .map(|response| Accepted::of(response.get_ref()))
                .map_err(|s| {
                    use tonic::Code;
                    let retry_after = s.get_details_retry_info().and_then(|r| r.retry_delay);
                    // RESOURCE_EXHAUSTED is retryable only when the server says when.
                    let retryable = matches!(
                        s.code(),
                        Code::Cancelled
                            | Code::DeadlineExceeded
                            | Code::Aborted
                            | Code::OutOfRange
                            | Code::Unavailable
                            | Code::DataLoss
                    ) || (s.code() == Code::ResourceExhausted
                        && retry_after.is_some());
                    SendError::Refused {
                        status: format!("gRPC {:?}", s.code()),
                        retryable,
                        retry_after,
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
        let retry_after = retry_after(response.headers());
        // Read the body whatever the status, so the connection can be reused.
        let body = response
            .into_body()
            .collect()
            .await
            .map(http_body_util::Collected::to_bytes)
            .unwrap_or_default();
        if status.is_success() {
            // An unreadable answer to an accepted request is taken as full success.
            let response = ExportMetricsServiceResponse::decode(body).unwrap_or_default();
            Ok(Accepted::of(&response))
        } else {
            Err(SendError::Refused {
                status: format!("HTTP {status}"),
                retryable: matches!(status.as_u16(), 429 | 502 | 503 | 504),
                retry_after,
            })
        }
    }
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(hyper::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or_default())
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

/// A gRPC codec for bytes that are already an encoded request, and the response (empty, or a
/// partial-success notice).
#[derive(Clone, Copy, Default)]
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = Bytes;
    type Decode = ExportMetricsServiceResponse;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ExportCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        use bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ExportCodec {
    type Item = ExportMetricsServiceResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Self::Error> {
        use bytes::Buf as _;
        // An unreadable answer to an accepted request is taken as full success.
        let response = ExportMetricsServiceResponse::decode(&mut *src).unwrap_or_default();
        src.advance(src.remaining());
        Ok(Some(response))
    }
}
