//! The user-space sections of `make bench`.

pub mod agent;
pub mod attach;
pub mod k8s;
pub mod maps;
pub mod pipeline;

/// Resident memory of process `pid` (`self` for this one), bytes (VmRSS).
pub fn rss_bytes(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        })
        .flatten()
        .unwrap_or(0)
        * 1024
}
