//! Settings of the kernel tables besides the flows: TCP connections and drops.

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
