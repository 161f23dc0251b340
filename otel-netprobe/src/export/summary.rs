//! The traffic summary for people: the table `otel-netprobe summary` prints, and [`fetch`],
//! which gets a running agent's summary (`/api/v1/summary`, JSON).

use std::fmt::Write as _;

use crate::metrics::summary::Summary;

/// The summary as a table for people (`otel-netprobe summary`).
pub fn table(s: &Summary) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "Traffic summary");
    let _ = writeln!(o, "  packets            {:>14}", s.total.packets);
    let _ = writeln!(o, "  bytes              {:>14}", s.total.bytes);
    let _ = writeln!(o, "  flows              {:>14}", s.flows);
    let _ = writeln!(o, "  unique sources     {:>14}", s.unique_sources);
    let _ = writeln!(o, "  unique destinations{:>14}", s.unique_destinations);
    let _ = writeln!(o, "\nProtocol        packets          bytes");
    for (p, v) in &s.protocols {
        let _ = writeln!(o, "  {p:<10} {:>10} {:>14}", v.packets, v.bytes);
    }
    let _ = writeln!(o, "\nTCP flows by state");
    for (state, n) in &s.tcp_states {
        let _ = writeln!(o, "  {state:<12} {n:>8}");
    }
    let _ = writeln!(o, "\nTop talkers (by bytes sent)");
    let _ = writeln!(
        o,
        "  {:<40} {:>10} {:>14} {:>6}  name",
        "source", "packets", "bytes", "flows"
    );
    for t in &s.top_talkers {
        let _ = writeln!(
            o,
            "  {:<40} {:>10} {:>14} {:>6}  {}",
            t.address,
            t.packets,
            t.bytes,
            t.flows,
            t.name.as_deref().unwrap_or("-")
        );
    }
    if !s.namespaces.is_empty() {
        let _ = writeln!(
            o,
            "\nNamespaces        pods services   sent bytes  received bytes"
        );
        for (ns, n) in &s.namespaces {
            let _ = writeln!(
                o,
                "  {ns:<16} {:>4} {:>8} {:>12} {:>15}",
                n.pods, n.services, n.sent.bytes, n.received.bytes
            );
        }
    }
    if !s.metrics.is_empty() {
        let _ = writeln!(o, "\nFlow metrics, totals over their series");
    }
    for m in &s.metrics {
        for r in &m.rows {
            let attrs: Vec<String> = r
                .attributes
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let name = format!("{} {}", m.name, attrs.join(" "));
            let _ = match r.sum {
                // A histogram: how many observations, and their sum in the unit.
                Some(sum) => writeln!(
                    o,
                    "  {:<62} {:>14} observed, sum {sum} {}",
                    name.trim_end(),
                    r.value,
                    m.unit
                ),
                None => writeln!(o, "  {:<62} {:>14} {}", name.trim_end(), r.value, m.unit),
            };
            if !r.buckets.is_empty() {
                let b: Vec<String> = r
                    .buckets
                    .iter()
                    .map(|(le, n)| format!("≤{le}: {n}"))
                    .collect();
                let _ = writeln!(o, "      {}", b.join("  "));
            }
        }
    }
    let _ = writeln!(o, "\nPassed, not in a flow");
    for (k, n) in &s.not_in_flows {
        let _ = writeln!(o, "  {k:<22} {n:>8}");
    }
    o
}

/// The summary of a running agent could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Only `http://HOST:PORT` URLs are supported.
    #[error("{0}: only http:// URLs are supported")]
    Url(String),
    /// Nothing answered at the address: refused, no route, or no connection within 10 s.
    #[error(
        "no agent answers at {host} (tried {url}): is `otel-netprobe run` running there? Point at another agent with --url http://HOST:PORT or NETPROBE_URL"
    )]
    Connect {
        /// HOST:PORT tried.
        host: String,
        /// The URL.
        url: String,
        /// The cause (connection refused, no route, timed out).
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Sending or reading failed after connecting, or no answer came within 20 s in all.
    #[error("talking to {url} failed")]
    Io {
        /// The URL.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The agent did not answer 200.
    #[error("{url}: {status}")]
    Status {
        /// The URL.
        url: String,
        /// The status line.
        status: String,
    },
}

/// The JSON summary of the agent at `base` (e.g. `http://127.0.0.1:9464`), with hyper's client
/// on a runtime of its own (the CLI has none).
pub fn fetch(base: &str) -> Result<String, FetchError> {
    use http_body_util::{BodyExt as _, Empty};
    use hyper_util::{
        client::legacy::{Client, connect::HttpConnector},
        rt::TokioExecutor,
    };
    let url = format!("{}/api/v1/summary", base.trim_end_matches('/'));
    let uri = url
        .parse::<hyper::Uri>()
        .ok()
        .filter(|u| u.scheme_str() == Some("http") && u.host().is_some())
        .ok_or_else(|| FetchError::Url(base.to_owned()))?;
    let io = |source: Box<dyn std::error::Error + Send + Sync>| FetchError::Io {
        url: url.clone(),
        source,
    };
    // What the user typed (or the default) names the place looked at, port included.
    let host = match uri.port_u16() {
        Some(port) => format!("{}:{port}", uri.host().unwrap_or_default()),
        None => format!("{}:80", uri.host().unwrap_or_default()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io(e.into()))?;
    runtime.block_on(async {
        // Connecting has 10 s of its own, so an address that never answers is reported as
        // such (a `Connect` error naming it), not as a slow answer.
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(std::time::Duration::from_secs(10)));
        let client =
            Client::builder(TokioExecutor::new()).build::<_, Empty<bytes::Bytes>>(connector);
        let get = async {
            let response = client.get(uri).await.map_err(|e| {
                if e.is_connect() {
                    FetchError::Connect {
                        host: host.clone(),
                        url: url.clone(),
                        source: e.into(),
                    }
                } else {
                    io(e.into())
                }
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| io(e.into()))?
                .to_bytes();
            Ok::<_, FetchError>((status, body))
        };
        let (status, body) = tokio::time::timeout(std::time::Duration::from_secs(20), get)
            .await
            .map_err(|e| io(e.into()))??;
        if !status.is_success() {
            return Err(FetchError::Status {
                url: url.clone(),
                status: status.to_string(),
            });
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    })
}
