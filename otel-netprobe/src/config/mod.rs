//! Agent configuration: one YAML file, every field with a default, validated before anything
//! starts. Unknown keys and invalid values are rejected with the key's path and the reason.

use std::{path::Path, time::Duration};

use serde::{Deserialize, Deserializer};

mod http;
mod k8s;
mod kernel;
mod metrics;
mod otlp;
mod pinning;
pub use http::{HttpConfig, HttpTlsConfig, parse_listen};
pub use k8s::{Cidr, CidrGroup, K8sConfig, K8sMode, NamespaceFilter};
pub use kernel::{ConnectionsConfig, DnsConfig, DropsConfig};
pub use metrics::{EndPart, FlowAttr, MetricsConfig, Side, flow_attr};
pub use otlp::{OtlpConfig, OtlpProtocol};
pub use pinning::{OnSigterm, PinningConfig};

/// Default OTLP/gRPC port (the agent's default endpoint and the collector's receiver).
pub const OTLP_GRPC_PORT: u16 = 4317;
/// Default OTLP/HTTP port.
pub const OTLP_HTTP_PORT: u16 = 4318;
/// Default port of the agent's own HTTP server (Prometheus `/metrics`).
pub const HTTP_PORT: u16 = 9464;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file's path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The YAML did not match the schema (unknown key, wrong type, bad value).
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the offending key (`.` for the document itself).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    fn invalid(key: &str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Which interfaces to attach to, and with which hook.
    pub interfaces: InterfacesConfig,
    /// Flow table sizing, polling and expiry.
    pub flows: FlowsConfig,
    /// The embedded HTTP server (Prometheus `/metrics`, `/api/v1/summary`, `/healthz`).
    pub http: HttpConfig,
    /// OTLP push to a collector or backend (off unless an endpoint is set).
    pub otlp: OtlpConfig,
    /// Attribute sets and series budgets of the flow metrics (both exporters).
    pub metrics: MetricsConfig,
    /// Kubernetes awareness: naming flow ends by namespace, workload, service, pod and node.
    pub k8s: K8sConfig,
    /// TCP connection tracking: table size and timeouts.
    pub connections: ConnectionsConfig,
    /// Dropped packets.
    pub drops: DropsConfig,
    /// DNS queries, responses and their latency.
    pub dns: DnsConfig,
    /// Kernel state pinned in bpffs, so that a restart loses no count.
    pub pinning: PinningConfig,
}

/// Where a packet is counted on an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Hook {
    /// XDP in native (driver) mode; falls back to TC ingress where the driver cannot run it.
    Xdp,
    /// XDP in generic (skb) mode: for tests and drivers without native XDP.
    XdpGeneric,
    /// TC/TCX ingress.
    Tc,
    /// Not attached.
    None,
}

impl Hook {
    /// Lower-case name, as logged and exported.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Xdp => "xdp",
            Hook::XdpGeneric => "xdp_generic",
            Hook::Tc => "tc",
            Hook::None => "none",
        }
    }
}

/// Interface selection and hook choice.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct InterfacesConfig {
    /// Name patterns (`*` and `?` wildcards) of interfaces to attach to. Default: `["*"]`.
    pub include: Vec<String>,
    /// Name patterns never attached, checked after `include`. Default: `[]`. Loopback and
    /// bridge/bond masters are always skipped (their ports are attached instead).
    pub exclude: Vec<String>,
    /// Hook for physical interfaces (backed by a device). Default: `xdp`.
    pub physical_hook: Hook,
    /// Hook for virtual interfaces (veth, tunnels, ...). Default: `tc`, because native XDP on a
    /// veth turns off GRO/TSO and costs most of its throughput.
    pub virtual_hook: Hook,
    /// Per-name overrides, first match wins: e.g. `[{name: "eth0", hook: xdp}]`.
    pub overrides: Vec<HookOverride>,
    /// Also count locally originated packets at TC egress (host-network processes).
    /// Default: `true`.
    pub egress: bool,
}

impl Default for InterfacesConfig {
    fn default() -> Self {
        Self {
            include: vec!["*".into()],
            exclude: Vec::new(),
            physical_hook: Hook::Xdp,
            virtual_hook: Hook::Tc,
            overrides: Vec::new(),
            egress: true,
        }
    }
}

/// A hook chosen for interfaces whose names match a pattern.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HookOverride {
    /// Name pattern (`*` and `?` wildcards).
    pub name: String,
    /// The hook to use.
    pub hook: Hook,
}

/// Flow table settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FlowsConfig {
    /// Capacity of the kernel's IPv4 flow table (flows). Default: 196608. With the IPv6 table's
    /// default, about 50 MiB of kernel memory whatever the CPU count. Range: 1024..=16777216.
    pub capacity: u32,
    /// Capacity of the kernel's IPv6 flow table (flows). Default: 65536. Range: 1024..=16777216.
    pub capacity_ipv6: u32,
    /// How often the kernel table is read. Default: `1s`.
    #[serde(deserialize_with = "de_duration")]
    pub poll_interval: Duration,
    /// A flow idle this long in the kernel table is moved out of it (its counts are kept in user
    /// space). Default: `10s`.
    #[serde(deserialize_with = "de_duration")]
    pub kernel_idle_timeout: Duration,
    /// A flow idle this long is forgotten and its series stop being reported. Default: `60s`.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
    /// How many top talkers the summary lists. Default: 10.
    pub top_talkers: usize,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        Self {
            capacity: netprobe_ebpf::DEFAULT_FLOW4_CAPACITY,
            capacity_ipv6: netprobe_ebpf::DEFAULT_FLOW6_CAPACITY,
            poll_interval: Duration::from_secs(1),
            kernel_idle_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            top_talkers: 10,
        }
    }
}

/// Parses `500ms`, `10s`, `2m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("invalid duration {text:?}: missing unit (ms, s, m or h)"))?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number followed by ms, s, m or h")
    })?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n * 60)),
        "h" => Ok(Duration::from_secs(n * 3600)),
        _ => Err(format!(
            "invalid duration {text:?}: unit must be ms, s, m or h"
        )),
    }
}

pub(crate) fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

/// The key a parse error names, as a dotted path (`.` for the document), and whether the
/// failure was a key that is not a name (a sequence or a map where a key belongs: serde says
/// `?` for it, which names nothing; the mapping that holds it is named instead).
fn key_of(path: &serde_path_to_error::Path) -> (String, bool) {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    for segment in path {
        match segment {
            Segment::Unknown => return (if key.is_empty() { ".".into() } else { key }, true),
            Segment::Seq { index } => {
                key.push('[');
                key.push_str(&index.to_string());
                key.push(']');
            }
            Segment::Map { key: k } | Segment::Enum { variant: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
            }
        }
    }
    (if key.is_empty() { ".".into() } else { key }, false)
}

impl Config {
    /// Reads and validates a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    /// Parses and validates YAML text. An empty document is the default configuration.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Config = if text.trim().is_empty() {
            Config::default()
        } else {
            let de = serde_norway::Deserializer::from_str(text);
            serde_path_to_error::deserialize(de).map_err(|e| {
                let (key, bad_key) = key_of(e.path());
                let full = e.into_inner().to_string();
                // serde_norway prefixes the parent path ("flows: unknown field ..."), which the
                // key already says, and appends "at line L column C", which helps: keep that.
                let reason = match full.split_once(": ") {
                    Some((prefix, rest)) if !prefix.contains(' ') && key.starts_with(prefix) => {
                        rest.to_owned()
                    }
                    _ => full,
                };
                let reason = if bad_key {
                    format!("holds a key that is not a name ({reason})")
                } else {
                    reason
                };
                ConfigError::invalid(&key, reason)
            })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let f = &self.flows;
        for (key, value) in [
            ("flows.capacity", f.capacity),
            ("flows.capacity_ipv6", f.capacity_ipv6),
        ] {
            if !(1024..=16_777_216).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value} is out of range 1024..=16777216"),
                ));
            }
        }
        if f.poll_interval < Duration::from_millis(100) {
            return Err(ConfigError::invalid(
                "flows.poll_interval",
                "must be at least 100ms",
            ));
        }
        if f.kernel_idle_timeout < f.poll_interval {
            return Err(ConfigError::invalid(
                "flows.kernel_idle_timeout",
                "must be at least flows.poll_interval",
            ));
        }
        if f.idle_timeout < f.kernel_idle_timeout {
            return Err(ConfigError::invalid(
                "flows.idle_timeout",
                "must be at least flows.kernel_idle_timeout",
            ));
        }
        if f.top_talkers == 0 || f.top_talkers > 1000 {
            return Err(ConfigError::invalid(
                "flows.top_talkers",
                "must be in 1..=1000",
            ));
        }
        let i = &self.interfaces;
        if i.include.is_empty() {
            return Err(ConfigError::invalid(
                "interfaces.include",
                "must list at least one pattern (\"*\" for all)",
            ));
        }
        for (n, p) in i.include.iter().enumerate() {
            check_pattern(&format!("interfaces.include[{n}]"), p)?;
        }
        for (n, p) in i.exclude.iter().enumerate() {
            check_pattern(&format!("interfaces.exclude[{n}]"), p)?;
        }
        for (n, o) in i.overrides.iter().enumerate() {
            check_pattern(&format!("interfaces.overrides[{n}].name"), &o.name)?;
        }
        self.metrics.validate()?;
        self.k8s.validate()?;
        self.connections.validate()?;
        self.dns.validate()?;
        if self.pinning.enabled && !self.pinning.path.is_absolute() {
            return Err(ConfigError::invalid(
                "pinning.path",
                "must be an absolute path (a directory on a bpffs)",
            ));
        }
        self.http.validate()?;
        self.otlp.validate()
    }
}

fn check_pattern(key: &str, pattern: &str) -> Result<(), ConfigError> {
    if pattern.is_empty() || pattern.len() > 64 {
        return Err(ConfigError::invalid(
            key,
            "pattern must be 1 to 64 characters",
        ));
    }
    if pattern.chars().any(|c| c.is_whitespace() || c == '/') {
        return Err(ConfigError::invalid(
            key,
            format!("{pattern:?} cannot match an interface name (no spaces or '/')"),
        ));
    }
    Ok(())
}

/// Matches `name` against a pattern with `*` (any run) and `?` (one character).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config fuzz target's crash-7bf41be1 (seed `regression_key_not_a_name.yaml`): a key
    /// that is a sequence was reported as config key `?`, which names nothing. Now the
    /// mapping that holds it is named — the document at the top, a section inside one — and
    /// the reason says what is wrong.
    #[test]
    fn regression_a_key_that_is_not_a_name_names_its_mapping() {
        let top = "[]owflows:\n  y: acty: 0\ns:\n  y: acty: 0\n";
        let Err(ConfigError::Invalid { key, reason }) = Config::from_yaml(top) else {
            panic!("accepted");
        };
        assert_eq!(key, ".");
        assert!(
            reason.starts_with("holds a key that is not a name (invalid type: sequence"),
            "{reason}"
        );
        let nested = "flows:\n  [1, 2]: 3\n";
        let Err(ConfigError::Invalid { key, reason }) = Config::from_yaml(nested) else {
            panic!("accepted");
        };
        assert_eq!(key, "flows");
        assert!(
            reason.starts_with("holds a key that is not a name"),
            "{reason}"
        );
        let listed = "interfaces:\n  overrides:\n    - {[x]: 1}\n";
        let Err(ConfigError::Invalid { key, .. }) = Config::from_yaml(listed) else {
            panic!("accepted");
        };
        assert_eq!(key, "interfaces.overrides[0]");
    }

    #[test]
    fn empty_yaml_is_the_default() {
        assert_eq!(Config::from_yaml("").unwrap(), Config::default());
        assert_eq!(Config::from_yaml("{}").unwrap(), Config::default());
    }

    #[test]
    fn the_documented_example_is_the_default() {
        let text = include_str!("../../netprobe.example.yaml");
        assert_eq!(Config::from_yaml(text).unwrap(), Config::default());
    }

    #[test]
    fn full_example_parses() {
        let c = Config::from_yaml(
            "interfaces:\n  include: [\"eth*\", \"veth*\"]\n  exclude: [\"docker0\"]\n  physical_hook: tc\n  overrides:\n    - {name: eth0, hook: xdp}\n  egress: false\nflows:\n  capacity: 4096\n  poll_interval: 500ms\n  kernel_idle_timeout: 5s\n  idle_timeout: 2m\nhttp:\n  listen: 127.0.0.1:9999\n",
        )
        .unwrap();
        assert_eq!(c.interfaces.physical_hook, Hook::Tc);
        assert_eq!(c.interfaces.overrides[0].hook, Hook::Xdp);
        assert_eq!(c.flows.poll_interval, Duration::from_millis(500));
        assert_eq!(c.flows.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.http.listen.port(), 9999);
    }

    fn err(yaml: &str) -> (String, String) {
        match Config::from_yaml(yaml).unwrap_err() {
            ConfigError::Invalid { key, reason } => (key, reason),
            other @ ConfigError::Read { .. } => panic!("unexpected {other}"),
        }
    }

    #[test]
    fn unknown_key_is_named() {
        let (key, reason) = err("flows:\n  capacty: 10\n");
        assert_eq!(key, "flows.capacty");
        assert!(reason.contains("unknown field `capacty`"), "{reason}");
    }

    #[test]
    fn bad_values_name_the_key() {
        assert_eq!(
            err("flows:\n  idle_timeout: soon\n").0,
            "flows.idle_timeout"
        );
        assert_eq!(err("flows:\n  capacity: 10\n").0, "flows.capacity");
        assert_eq!(err("flows:\n  capacity: -1\n").0, "flows.capacity");
        assert_eq!(
            err("interfaces:\n  virtual_hook: ebpf\n").0,
            "interfaces.virtual_hook"
        );
        assert_eq!(err("http:\n  listen: nowhere\n").0, "http.listen");
        assert_eq!(err("interfaces:\n  include: []\n").0, "interfaces.include");
        assert_eq!(
            err("flows:\n  idle_timeout: 1s\n  kernel_idle_timeout: 5s\n").0,
            "flows.idle_timeout"
        );
    }

    #[test]
    fn on_sigterm_takes_three_values_and_a_bad_one_names_the_key() {
        for (text, want) in [
            ("auto", OnSigterm::Auto),
            ("keep", OnSigterm::Keep),
            ("remove", OnSigterm::Remove),
        ] {
            let c = Config::from_yaml(&format!("pinning:\n  on_sigterm: {text}\n")).unwrap();
            assert_eq!(c.pinning.on_sigterm, want, "{text}");
        }
        let (key, reason) = err("pinning:\n  on_sigterm: sometimes\n");
        assert_eq!(key, "pinning.on_sigterm");
        assert!(reason.contains("unknown variant `sometimes`"), "{reason}");
        // The unreleased boolean it replaces is gone, named as unknown.
        assert_eq!(
            err("pinning:\n  keep_on_sigterm: true\n").0,
            "pinning.keep_on_sigterm"
        );
    }

    #[test]
    fn dns_settings_are_checked() {
        for (yaml, reason) in [
            ("dns:\n  ports: []\n", "must list 1 to 4 ports, not 0"),
            (
                "dns:\n  ports: [53, 54, 55, 56, 57]\n",
                "must list 1 to 4 ports, not 5",
            ),
            ("dns:\n  ports: [53, 0]\n", "0 is not a port"),
        ] {
            assert_eq!(err(yaml), ("dns.ports".into(), reason.into()), "{yaml}");
        }
        assert_eq!(err("dns:\n  ports: [70000]\n").0, "dns.ports[0]");
        assert_eq!(err("dns:\n  timeout: 500ms\n").0, "dns.timeout");
        assert_eq!(err("dns:\n  capacity: 10\n").0, "dns.capacity");
        assert_eq!(err("dns:\n  stats_capacity: 0\n").0, "dns.stats_capacity");
        let c = Config::from_yaml("dns:\n  ports: [53, 5353]\n  timeout: 2s\n").unwrap();
        assert_eq!(
            c.dns.ports_global(),
            netprobe_ebpf::dns::dns_ports_global(&[53, 5353])
        );
        let off = Config::from_yaml("dns:\n  enabled: false\n").unwrap();
        assert_eq!(off.dns.ports_global(), 0, "off: the programs skip DNS");
    }

    #[test]
    fn metrics_attributes_are_checked() {
        assert_eq!(
            err("metrics:\n  flow_attributes: [source.address, source.port]\n").0,
            "metrics.flow_attributes[1]"
        );
        assert_eq!(err("metrics:\n  max_series: 0\n").0, "metrics.max_series");
        let c = Config::from_yaml(
            "metrics:\n  flow_attributes: [destination.address, destination.port]\n",
        )
        .unwrap();
        assert_eq!(c.metrics.flow_attributes.map(|a| a.len()), Some(2));
        assert_eq!(
            err("k8s:\n  cidr_groups:\n    - {name: vpn, cidrs: [10.8.0.0/33]}\n").0,
            "k8s.cidr_groups[0].cidrs[0]"
        );
        assert_eq!(err("k8s:\n  mode: maybe\n").0, "k8s.mode");
        assert_eq!(
            err("k8s:\n  cluster_cidrs: [fd00::/129]\n").0,
            "k8s.cluster_cidrs[0]"
        );
        assert_eq!(
            err("k8s:\n  namespaces:\n    exclude: [\"\"]\n").0,
            "k8s.namespaces.exclude[0]"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3h").unwrap(), Duration::from_secs(10800));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("5d").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "eth0"));
        assert!(glob_match("veth*", "veth1234"));
        assert!(!glob_match("veth*", "eth0"));
        assert!(glob_match("eth?", "eth0"));
        assert!(!glob_match("eth?", "eth10"));
        assert!(glob_match("*0", "eth0"));
        assert!(glob_match("e*h*0", "eth0"));
    }
}
