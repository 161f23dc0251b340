//! Settings of the embedded HTTP server: where it listens and the bounds that keep a slow or
//! hostile client from holding the agent's descriptors or memory (in the chart it listens on
//! every address of every node).

use std::{net::SocketAddr, time::Duration};

use serde::Deserialize;

use super::{ConfigError, HTTP_PORT, de_duration};

/// Embedded HTTP server settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Listen address. Default: `0.0.0.0:9464`.
    pub listen: SocketAddr,
    /// Serve at all. Default: `true`.
    pub enabled: bool,
    /// A request's head (request line and headers) must arrive whole within this long of the
    /// server starting to wait for it: after the connection is accepted, and again after each
    /// response on a keep-alive connection, so it is also how long an idle keep-alive
    /// connection is kept. Default: `10s`. Range: 100ms..=5m.
    #[serde(deserialize_with = "de_duration")]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves either way for this long is closed (a client that
    /// stops reading its response). Default: `30s`. Range: 1s..=1h.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// Connections served at once. When full, a new connection takes the place of the
    /// longest-idle one that has no request in progress (a scrape is answered during a
    /// slow-client flood); when every one is answering a request, the new one is refused.
    /// Both are counted in `netprobe_agent_http_connections_total`. Default: 256.
    /// Range: 4..=65536.
    pub max_connections: usize,
    /// Largest request head in bytes; a larger one is answered 431 and the connection closed.
    /// Default: 16384. Range: 8192..=1048576.
    pub max_header_bytes: usize,
    /// Most header fields in a request; more are answered 431. Default: 64. Range: 1..=1024.
    pub max_headers: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], HTTP_PORT)),
            enabled: true,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 256,
            max_header_bytes: 16_384,
            max_headers: 64,
        }
    }
}

impl HttpConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(Duration::from_millis(100)..=Duration::from_secs(300))
            .contains(&self.header_read_timeout)
        {
            return Err(ConfigError::invalid(
                "http.header_read_timeout",
                "must be in 100ms..=5m",
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&self.idle_timeout) {
            return Err(ConfigError::invalid(
                "http.idle_timeout",
                "must be in 1s..=1h",
            ));
        }
        for (key, value, range) in [
            ("http.max_connections", self.max_connections, 4..=65_536),
            (
                "http.max_header_bytes",
                self.max_header_bytes,
                8192..=1_048_576,
            ),
            ("http.max_headers", self.max_headers, 1..=1024),
        ] {
            if !range.contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{value} is out of range {}..={}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn refusal(yaml: &str) -> (String, String) {
        match Config::from_yaml(yaml) {
            Err(ConfigError::Invalid { key, reason }) => (key, reason),
            other => panic!("accepted or unexpected: {other:?}"),
        }
    }

    #[test]
    fn bounds_are_validated_with_the_key_named() {
        let c =
            Config::from_yaml("http:\n  header_read_timeout: 2s\n  max_connections: 4\n").unwrap();
        assert_eq!(
            c.http.header_read_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(c.http.max_connections, 4);
        assert_eq!(
            refusal("http:\n  max_connections: 3\n"),
            (
                "http.max_connections".into(),
                "3 is out of range 4..=65536".into()
            )
        );
        assert_eq!(
            refusal("http:\n  max_header_bytes: 4096\n").0,
            "http.max_header_bytes"
        );
        assert_eq!(
            refusal("http:\n  header_read_timeout: 50ms\n"),
            (
                "http.header_read_timeout".into(),
                "must be in 100ms..=5m".into()
            )
        );
        assert_eq!(
            refusal("http:\n  idle_timeout: 2h\n").0,
            "http.idle_timeout"
        );
    }
}
