//! Where the kernel state that survives a restart is pinned.

use std::path::PathBuf;

use serde::Deserialize;

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
    /// On SIGTERM in a cluster, keep the programs attached and the state pinned for the next
    /// agent (a rollout then costs no count) instead of going away. Default: `false`, because
    /// the agent cannot yet tell a rollout from `helm uninstall`: with it on, run
    /// `otel-netprobe cleanup` on each node after uninstalling. A crash or SIGKILL always
    /// keeps; a standalone SIGTERM never does.
    pub keep_on_sigterm: bool,
}

impl Default for PinningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("/sys/fs/bpf/otel-netprobe"),
            keep_on_sigterm: false,
        }
    }
}
