//! OTLP export settings, and how the standard `OTEL_*` environment variables apply to them.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, de_duration};

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (default port 4317).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (default port 4318): what Prometheus, VictoriaMetrics and
    /// Mimir accept directly.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// Parses the `OTEL_EXPORTER_OTLP_PROTOCOL` spelling.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            "http/json" => Err("http/json is not supported: use grpc or http/protobuf".into()),
            other => Err(format!(
                "unknown protocol {other:?}: use grpc or http/protobuf"
            )),
        }
    }
}

/// OTLP export settings. The standard `OTEL_*` variables override the file (see
/// [`OtlpConfig::apply_env`]); command-line flags override both.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Endpoint URL, e.g. `http://otel-collector:4317` (gRPC) or `http://collector:4318`
    /// (HTTP: `/v1/metrics` is appended). Empty: no OTLP export. Default: empty.
    pub endpoint: String,
    /// `grpc` or `http/protobuf`. Default: `grpc`.
    pub protocol: OtlpProtocol,
    /// Extra request headers (e.g. authentication); never logged. Default: none.
    pub headers: std::collections::BTreeMap<String, String>,
    /// Timeout of one export request, retries included. Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Compress requests with gzip. Default: `true`.
    pub gzip: bool,
    /// How often to export. Default: `15s`.
    #[serde(deserialize_with = "de_duration")]
    pub interval: Duration,
    /// `k8s.cluster.name` resource attribute, when set. Default: empty.
    pub cluster_name: String,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES` adds to these). Default: none.
    pub resource_attributes: std::collections::BTreeMap<String, String>,
    /// PEM file of the CA that signed the endpoint's certificate (`https://` endpoints); the
    /// system's roots when empty. Env: `OTEL_EXPORTER_OTLP_CERTIFICATE`. Default: empty.
    pub ca_file: String,
    /// PEM client certificate for mutual TLS. Env: `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`.
    /// Default: empty.
    pub cert_file: String,
    /// PEM private key of `cert_file`. Env: `OTEL_EXPORTER_OTLP_CLIENT_KEY`. Default: empty.
    pub key_file: String,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: String::new(),
            protocol: OtlpProtocol::Grpc,
            headers: std::collections::BTreeMap::new(),
            timeout: Duration::from_secs(10),
            gzip: true,
            interval: Duration::from_secs(15),
            cluster_name: String::new(),
            resource_attributes: std::collections::BTreeMap::new(),
            ca_file: String::new(),
            cert_file: String::new(),
            key_file: String::new(),
        }
    }
}

/// Splits `k1=v1,k2=v2` (the `OTEL_*_HEADERS` / `OTEL_RESOURCE_ATTRIBUTES` format, values
/// percent-encoded).
fn parse_pairs(key: &str, text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    text.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                ConfigError::invalid(key, format!("{:?} is not key=value", pair.trim()))
            })?;
            Ok((percent_decode(k.trim()), percent_decode(v.trim())))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

impl OtlpConfig {
    /// Applies the standard variables: `OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`, `_PROTOCOL`,
    /// `_HEADERS`, `_TIMEOUT` (ms), `_COMPRESSION`, `OTEL_METRIC_EXPORT_INTERVAL` (ms),
    /// `OTEL_RESOURCE_ATTRIBUTES`; `env` looks a variable up (tests pass their own).
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        let get = |generic: &'static str, specific: &'static str| {
            env(specific)
                .map(|v| (specific, v))
                .or_else(|| env(generic).map(|v| (generic, v)))
        };
        if let Some((_, v)) = get(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
        ) {
            self.endpoint = v;
        }
        if let Some((k, v)) = get(
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
        ) {
            self.protocol = OtlpProtocol::parse(&v).map_err(|r| ConfigError::invalid(k, r))?;
        }
        if let Some((k, v)) = get(
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_METRICS_HEADERS",
        ) {
            self.headers.extend(parse_pairs(k, &v)?);
        }
        let millis = |k: &'static str, v: &str| {
            v.trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| {
                    ConfigError::invalid(k, format!("{v:?} is not a number of milliseconds"))
                })
        };
        if let Some((k, v)) = get(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT",
        ) {
            self.timeout = millis(k, &v)?;
        }
        if let Some((k, v)) = get(
            "OTEL_EXPORTER_OTLP_COMPRESSION",
            "OTEL_EXPORTER_OTLP_METRICS_COMPRESSION",
        ) {
            self.gzip = match v.trim() {
                "gzip" => true,
                "none" | "" => false,
                other => {
                    return Err(ConfigError::invalid(
                        k,
                        format!("unknown compression {other:?}: use gzip or none"),
                    ));
                }
            };
        }
        if let Some(v) = env("OTEL_METRIC_EXPORT_INTERVAL") {
            self.interval = millis("OTEL_METRIC_EXPORT_INTERVAL", &v)?;
        }
        for (generic, specific, field) in [
            (
                "OTEL_EXPORTER_OTLP_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_METRICS_CERTIFICATE",
                &mut self.ca_file,
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_CERTIFICATE",
                &mut self.cert_file,
            ),
            (
                "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                "OTEL_EXPORTER_OTLP_METRICS_CLIENT_KEY",
                &mut self.key_file,
            ),
        ] {
            if let Some(v) = env(specific).or_else(|| env(generic)) {
                *field = v;
            }
        }
        if let Some(v) = env("OTEL_RESOURCE_ATTRIBUTES") {
            self.resource_attributes
                .extend(parse_pairs("OTEL_RESOURCE_ATTRIBUTES", &v)?);
        }
        Ok(())
    }

    /// Checks the endpoint and timings (key names as in the file).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.endpoint.is_empty() {
            return Ok(());
        }
        let uri: hyper::Uri = self.endpoint.parse().map_err(|e| {
            ConfigError::invalid(
                "otlp.endpoint",
                format!("{:?} is not a URL: {e}", self.endpoint),
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err(ConfigError::invalid(
                "otlp.endpoint",
                format!("{:?} must start with http:// or https://", self.endpoint),
            ));
        }
        for (key, path) in [
            ("otlp.ca_file", &self.ca_file),
            ("otlp.cert_file", &self.cert_file),
            ("otlp.key_file", &self.key_file),
        ] {
            if !path.is_empty() {
                std::fs::read(path)
                    .map_err(|e| ConfigError::invalid(key, format!("cannot read {path}: {e}")))?;
            }
        }
        if self.cert_file.is_empty() != self.key_file.is_empty() {
            return Err(ConfigError::invalid(
                "otlp.key_file",
                "a client certificate needs its key, and a key its certificate (otlp.cert_file)",
            ));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(ConfigError::invalid(
                "otlp.endpoint",
                format!("{:?} has no host", self.endpoint),
            ));
        }
        if self.timeout < Duration::from_millis(100) || self.timeout > Duration::from_secs(300) {
            return Err(ConfigError::invalid(
                "otlp.timeout",
                "must be between 100ms and 300s",
            ));
        }
        if self.interval < Duration::from_secs(1) {
            return Err(ConfigError::invalid("otlp.interval", "must be at least 1s"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn err(yaml: &str) -> (String, String) {
        match Config::from_yaml(yaml).unwrap_err() {
            ConfigError::Invalid { key, reason } => (key, reason),
            other @ ConfigError::Read { .. } => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn otlp_from_the_environment() {
        let env = |k: &str| {
            match k {
                "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4318"),
                "OTEL_EXPORTER_OTLP_PROTOCOL" => Some("http/protobuf"),
                "OTEL_EXPORTER_OTLP_HEADERS" => Some("authorization=Bearer%20x, tenant=a"),
                "OTEL_EXPORTER_OTLP_METRICS_TIMEOUT" => Some("2500"),
                "OTEL_METRIC_EXPORT_INTERVAL" => Some("5000"),
                "OTEL_RESOURCE_ATTRIBUTES" => Some("k8s.cluster.name=prod,team=net"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let mut o = OtlpConfig::default();
        o.apply_env(env).unwrap();
        o.validate().unwrap();
        assert_eq!(o.endpoint, "http://collector:4318");
        assert_eq!(o.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(o.headers["authorization"], "Bearer x");
        assert_eq!(o.timeout, Duration::from_millis(2500));
        assert_eq!(o.interval, Duration::from_secs(5));
        assert_eq!(o.resource_attributes["k8s.cluster.name"], "prod");
    }

    #[test]
    fn pairs_are_percent_decoded_as_the_spec_says() {
        let pairs = parse_pairs("k", "a%3Db=x%2Cy, ok=%E2%9C%93, stray=100%").unwrap();
        let got: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        assert_eq!(got, [("a=b", "x,y"), ("ok", "\u{2713}"), ("stray", "100%")]);
    }

    #[test]
    fn bad_otlp_settings_name_the_key() {
        let mut o = OtlpConfig::default();
        let e = o.apply_env(|k| (k == "OTEL_EXPORTER_OTLP_PROTOCOL").then(|| "udp".to_owned()));
        assert!(
            matches!(e, Err(ConfigError::Invalid { ref key, .. }) if key == "OTEL_EXPORTER_OTLP_PROTOCOL")
        );
        assert_eq!(
            err("otlp:\n  endpoint: \"collector:4317\"\n").0,
            "otlp.endpoint"
        );
        assert_eq!(err("otlp:\n  endpoint: \"http://\"\n").0, "otlp.endpoint");
        assert_eq!(err("otlp:\n  protocol: http/json\n").0, "otlp.protocol");
        assert_eq!(
            err("otlp:\n  endpoint: http://c:4317\n  interval: 10ms\n").0,
            "otlp.interval"
        );
        let (key, reason) =
            err("otlp:\n  endpoint: https://c:4317\n  ca_file: /nonexistent/ca.pem\n");
        assert_eq!(key, "otlp.ca_file");
        assert!(
            reason.contains("cannot read /nonexistent/ca.pem"),
            "{reason}"
        );
        assert_eq!(err("otlp:\n  endpoint: ftp://c:4317\n").0, "otlp.endpoint");
        assert_eq!(
            err("otlp:\n  endpoint: https://c:4317\n  cert_file: /etc/hostname\n").0,
            "otlp.key_file"
        );
    }
}
