//! Settings of the embedded HTTP server: where it listens, its TLS, and the bounds that keep a
//! slow or hostile client from holding the agent's descriptors or memory (in the chart it
//! listens on every address of every node unless `agent.listenOn: hostIP`).

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
    /// TLS for the server. Default: off (plain HTTP).
    pub tls: HttpTlsConfig,
}

/// TLS of the embedded HTTP server: on when `cert_file` is set.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpTlsConfig {
    /// PEM certificate chain the server presents. Empty: plain HTTP. Default: empty.
    pub cert_file: String,
    /// PEM private key of `cert_file`. Default: empty.
    pub key_file: String,
    /// PEM CA(s) whose client certificates are required for `/metrics` and `/api/v1/summary`
    /// (`/healthz` answers without one: the kubelet's probes have none). Empty: no client
    /// certificate asked for. Default: empty.
    pub client_ca_file: String,
}

impl HttpTlsConfig {
    /// Whether the server speaks TLS.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(ConfigError::invalid(
                "http.tls.key_file",
                "a server certificate needs its key, and a key its certificate (http.tls.cert_file)",
            ));
        }
        if !self.client_ca_file.is_empty() && self.cert_file.is_empty() {
            return Err(ConfigError::invalid(
                "http.tls.client_ca_file",
                "client certificates need TLS: set http.tls.cert_file and http.tls.key_file",
            ));
        }
        for (key, path) in [
            ("http.tls.cert_file", &self.cert_file),
            ("http.tls.key_file", &self.key_file),
            ("http.tls.client_ca_file", &self.client_ca_file),
        ] {
            if !path.is_empty() {
                std::fs::read(path)
                    .map_err(|e| ConfigError::invalid(key, format!("cannot read {path}: {e}")))?;
            }
        }
        Ok(())
    }
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
            tls: HttpTlsConfig::default(),
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
        self.tls.validate()
    }
}

/// Parses a listen address (`--listen`): `host:port`, also with the IPv4 host in brackets
/// (`[10.0.0.5]:9464`), so that a template can write `[$(HOST_IP)]:9464` for either family.
///
/// # Errors
/// The reason, when `s` is no socket address.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some((host, port)) = s.strip_prefix('[').and_then(|rest| rest.split_once("]:"))
        && let (Ok(ip), Ok(port)) = (host.parse::<std::net::Ipv4Addr>(), port.parse::<u16>())
    {
        return Ok(SocketAddr::from((ip, port)));
    }
    Err(format!(
        "{s:?} is not an address:port, e.g. 0.0.0.0:9464 or [::]:9464"
    ))
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

    #[test]
    fn tls_keys_are_checked_with_the_key_named() {
        assert_eq!(
            refusal("http:\n  tls:\n    cert_file: /etc/hostname\n").0,
            "http.tls.key_file"
        );
        assert_eq!(
            refusal("http:\n  tls:\n    client_ca_file: /etc/hostname\n").0,
            "http.tls.client_ca_file"
        );
        let (key, reason) = refusal(
            "http:\n  tls:\n    cert_file: /nonexistent/tls.crt\n    key_file: /etc/hostname\n",
        );
        assert_eq!(key, "http.tls.cert_file");
        assert!(
            reason.starts_with("cannot read /nonexistent/tls.crt"),
            "{reason}"
        );
        assert!(Config::from_yaml("http:\n  tls:\n    cert_fil: x\n").is_err());
    }

    #[test]
    fn listen_takes_a_bracketed_ipv4_host() {
        use super::parse_listen;
        assert_eq!(
            parse_listen("[10.0.0.5]:9464"),
            Ok(std::net::SocketAddr::from(([10, 0, 0, 5], 9464)))
        );
        assert_eq!(
            parse_listen("[fd00::5]:9464").map(|a| a.to_string()),
            Ok("[fd00::5]:9464".to_owned())
        );
        assert_eq!(parse_listen("0.0.0.0:1").map(|a| a.port()), Ok(1));
        assert!(parse_listen("[10.0.0.5]").is_err());
        assert!(parse_listen("[]:9464").is_err());
    }
}
