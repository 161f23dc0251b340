//! The user-space sections of `make bench`.

pub mod agent;
pub mod attach;
pub mod collector;
pub mod k8s;
pub mod k8s_api;
pub mod maps;
pub mod pipeline;
pub mod soak;

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

/// CPU time (user + system) of process `pid` so far, seconds.
pub fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces and parentheses): the state is the
    // first, utime and stime (fields 14 and 15 of proc(5)) the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}
