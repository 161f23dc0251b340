//! Sending one `ExportMetricsServiceRequest`: OTLP/HTTP (protobuf POST, gzip) or OTLP/gRPC
//! (tonic), with a deadline and retries with backoff for the errors the OTLP spec calls
//! retryable.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
};
use prost::Message;
use tonic::{codec::CompressionEncoding, metadata::MetadataValue, transport::Channel};

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
}

impl SendError {
    fn retryable(&self) -> bool {
        match self {
            SendError::Refused { retryable, .. } => *retryable,
            SendError::Unreachable(_) => true,
        }
    }
}

/// One OTLP destination.
pub struct OtlpClient {
    cfg: OtlpConfig,
    http: Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    grpc: Option<MetricsServiceClient<Channel>>,
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
        let grpc = if cfg.protocol == OtlpProtocol::Grpc {
            let channel = Channel::from_shared(cfg.endpoint.clone())
                .map_err(|e| SendError::Unreachable(Box::new(e)))?
                .connect_timeout(cfg.timeout)
                .timeout(cfg.timeout)
                .connect_lazy();
            let mut c = MetricsServiceClient::new(channel);
            if cfg.gzip {
                c = c.send_compressed(CompressionEncoding::Gzip);
            }
            Some(c)
        } else {
            None
        };
        Ok(Self {
            cfg: cfg.clone(),
            http: Client::builder(TokioExecutor::new()).build_http(),
            grpc,
            url,
        })
    }

    /// Sends `req`, retrying retryable failures with exponential backoff until the configured
    /// timeout runs out. Returns the number of attempts made.
    pub async fn send(&mut self, req: &ExportMetricsServiceRequest) -> Result<u32, SendError> {
        let deadline = tokio::time::Instant::now() + self.cfg.timeout;
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let result = match tokio::time::timeout(left, self.send_once(req)).await {
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

    async fn send_once(&mut self, req: &ExportMetricsServiceRequest) -> Result<(), SendError> {
        if let Some(grpc) = &mut self.grpc {
            let mut request = tonic::Request::new(req.clone());
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
            return grpc.export(request).await.map(|_| ()).map_err(|s| {
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
        let body = req.encode_to_vec();
        let mut builder =
            hyper::Request::post(self.url.clone()).header("content-type", "application/x-protobuf");
        let body = if self.cfg.gzip {
            builder = builder.header("content-encoding", "gzip");
            gzip(&body)
        } else {
            body
        };
        for (k, v) in &self.cfg.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        let request = builder
            .body(Full::new(Bytes::from(body)))
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

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4),
        flate2::Compression::fast(),
    );
    let _ = e.write_all(data);
    e.finish().unwrap_or_default()
}
