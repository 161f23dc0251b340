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
}

impl Default for PinningConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("/sys/fs/bpf/otel-netprobe"),
        }
    }
}
