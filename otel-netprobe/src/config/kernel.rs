//! Settings of the kernel tables besides the flows: TCP connections, drops and DNS.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, de_duration};

/// TCP connection tracking (handshakes, failures, closes).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionsConfig {
    /// Capacity of the kernel's connection table (connections in their handshake or open; an
    /// LRU: when full, the least recently touched leave it, counted in
    /// `netprobe_agent_connections_evicted_total`). Default: 32768, about 4 MiB of kernel
    /// memory with its client-end index. Range: 1024..=4194304.
    pub capacity: u32,
    /// A SYN without a SYN-ACK this long is a failed connection (`unanswered`). Default:
    /// `60s` (Linux gives up on a connect after about 127 s of retries). Range: 1s..=10m.
    #[serde(deserialize_with = "de_duration")]
    pub handshake_timeout: Duration,
    /// An open connection whose flow carried nothing this long is closed (`idle`). Default:
    /// `5m`. Range: 10s..=24h. A flow with an open connection is kept (not forgotten after
    /// `flows.idle_timeout`) until the connection ends.
    #[serde(deserialize_with = "de_duration")]
    pub idle_timeout: Duration,
}

impl Default for ConnectionsConfig {
    fn default() -> Self {
        Self {
            capacity: netprobe_ebpf::DEFAULT_CONNS_CAPACITY,
            handshake_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(300),
        }
    }
}

impl ConnectionsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if !(1024..=4_194_304).contains(&self.capacity) {
            return Err(ConfigError::invalid(
                "connections.capacity",
                format!("{} is out of range 1024..=4194304", self.capacity),
            ));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&self.handshake_timeout) {
            return Err(ConfigError::invalid(
                "connections.handshake_timeout",
                "must be in 1s..=10m",
            ));
        }
        if !(Duration::from_secs(10)..=Duration::from_secs(86_400)).contains(&self.idle_timeout) {
            return Err(ConfigError::invalid(
                "connections.idle_timeout",
                "must be in 10s..=24h",
            ));
        }
        Ok(())
    }
}

/// Dropped packets, from the kernel's `kfree_skb` tracepoint.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DropsConfig {
    /// Count the packets the kernel drops, per flow and reason. Needs the kernel's BTF (without
    /// it the agent says so once and goes on without). Default: `true`.
    pub enabled: bool,
}

impl Default for DropsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// DNS queries and responses, matched in the kernel at the packet hooks.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Match DNS queries to their responses (UDP and TCP on `ports`): responses by code,
    /// latency, unanswered queries. Off, the programs skip DNS and its tables take no memory.
    /// Default: `true`.
    pub enabled: bool,
    /// The ports DNS servers answer on, 1 to 4 of them, none 0. Default: `[53]`.
    pub ports: Vec<u16>,
    /// A query without a response this long is counted unanswered
    /// (`netprobe.dns.queries.unanswered`), when the read after it finds it. Default: `5s`
    /// (the resolver's usual retry). Range: 1s..=2m.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Capacity of the kernel's pending-query table (queries in flight on the node): when
    /// full, a query is counted in `netprobe_agent_dns_untracked_total{kind="query"}`.
    /// Default: 16384 (about 2 MiB). Range: 1024..=1048576.
    pub capacity: u32,
    /// Capacity of the kernel's answered-query table (client, server, server port and
    /// response code). Default: 8192 (about 2 MiB). Range: 1024..=1048576.
    pub stats_capacity: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            ports: vec![53],
            timeout: Duration::from_secs(5),
            capacity: netprobe_ebpf::dns::DEFAULT_DNS_QUERIES_CAPACITY,
            stats_capacity: netprobe_ebpf::dns::DEFAULT_DNS_STATS_CAPACITY,
        }
    }
}

impl DnsConfig {
    /// The programs' `DNS_PORTS` global: the ports, or 0 when DNS is off.
    pub fn ports_global(&self) -> u64 {
        if self.enabled {
            netprobe_ebpf::dns::dns_ports_global(&self.ports)
        } else {
            0
        }
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let max = netprobe_ebpf::dns::MAX_DNS_PORTS;
        if self.ports.is_empty() || self.ports.len() > max {
            return Err(ConfigError::invalid(
                "dns.ports",
                format!("must list 1 to {max} ports, not {}", self.ports.len()),
            ));
        }
        if self.ports.contains(&0) {
            return Err(ConfigError::invalid("dns.ports", "0 is not a port"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(120)).contains(&self.timeout) {
            return Err(ConfigError::invalid("dns.timeout", "must be in 1s..=2m"));
        }
        for (key, value) in [
            ("dns.capacity", self.capacity),
            ("dns.stats_capacity", self.stats_capacity),
        ] {
            if !(1024..=1_048_576).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("{value} is out of range 1024..=1048576"),
                ));
            }
        }
        Ok(())
    }
}
