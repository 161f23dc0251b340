//! Where the kernel state that survives a restart is pinned, and what a SIGTERM does with it.

use std::path::PathBuf;

use serde::Deserialize;

/// What a SIGTERM does with the attached programs and the pinned state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnSigterm {
    /// In a cluster, keep when the agent's own DaemonSet stays (a rollout, a restart of the
    /// pod) and remove when it is gone or being deleted (`helm uninstall`), read from the API
    /// with the chart's read-only RBAC; keep when the API does not answer in time. Standalone,
    /// remove.
    #[default]
    Auto,
    /// Always keep: the programs stay attached and the state pinned for the next agent
    /// (`otel-netprobe cleanup` removes them).
    Keep,
    /// Always remove: detach and unpin (a rollout then restarts every total from zero).
    Remove,
}

/// Restart continuity: the maps and links pinned in a bpffs directory, adopted by the next
/// agent (see the README's "Restarts").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PinningConfig {
    /// Pin maps and links so that a crash or a rollout loses no count and detaches nothing.
    /// Default: `true` (without a bpffs at `path` the agent runs unpinned and says so once).
    pub enabled: bool,
    /// A directory on a bpffs; the agent keeps its state in `netns-<inode>/` below it, one per
    /// network namespace. Default: `/sys/fs/bpf/otel-netprobe`.
    pub path: PathBuf,
    /// On SIGTERM: `auto` (in a cluster, keep for a rollout and remove for an uninstall, told
    /// apart by the agent's own DaemonSet; standalone, remove), `keep` or `remove`. A crash or
    /// SIGKILL always keeps. Default: `auto`.
    pub on_sigterm: OnSigterm,
}

impl Default for PinningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("/sys/fs/bpf/otel-netprobe"),
            on_sigterm: OnSigterm::Auto,
        }
    }
}
