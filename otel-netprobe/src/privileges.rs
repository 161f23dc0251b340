//! The capabilities the agent needs — CAP_BPF (load programs, create maps), CAP_NET_ADMIN
//! (attach them to interfaces) and, on kernels whose verifier asks for it, CAP_PERFMON — and a
//! one-line refusal that names the one missing, before anything is loaded; and the process
//! limit the agent raises itself (open files).

/// Capability numbers (`linux/capability.h`).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What the agent may not do.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivilegeError {
    /// A capability is missing.
    #[error(
        "missing capability {cap}, needed to {why} (run as root, or grant CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON)"
    )]
    Missing {
        /// Its name.
        cap: &'static str,
        /// What it is for.
        why: &'static str,
    },
}

/// The effective capability set of this process (`CapEff` in /proc/self/status).
pub fn effective() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

fn has(set: u64, cap: u32) -> bool {
    set & (1 << cap) != 0
}

/// Checks a capability set: CAP_BPF (or CAP_SYS_ADMIN, which covers it) and CAP_NET_ADMIN.
pub fn check_set(set: u64) -> Result<(), PrivilegeError> {
    if !has(set, CAP_BPF) && !has(set, CAP_SYS_ADMIN) {
        return Err(PrivilegeError::Missing {
            cap: "CAP_BPF",
            why: "load eBPF programs and create their maps",
        });
    }
    if !has(set, CAP_NET_ADMIN) {
        return Err(PrivilegeError::Missing {
            cap: "CAP_NET_ADMIN",
            why: "attach programs to interfaces",
        });
    }
    Ok(())
}

/// Checks this process's capabilities.
pub fn check() -> Result<(), PrivilegeError> {
    check_set(effective())
}

/// When loading the programs was refused for lack of permission: the capability that explains
/// it (CAP_PERFMON, which some kernels' verifiers require for what the programs read).
pub fn explain_refusal(permission_denied: bool) -> Option<PrivilegeError> {
    let set = effective();
    (permission_denied && !has(set, CAP_PERFMON) && !has(set, CAP_SYS_ADMIN)).then_some(
        PrivilegeError::Missing {
            cap: "CAP_PERFMON",
            why: "pass this kernel's verifier",
        },
    )
}

/// Raises the soft limit on open files to the hard limit and returns `(before, after)`.
///
/// Container runtimes may start the agent with a soft limit of 1024, which a node with many
/// pods (a link per interface, the maps, the HTTP server's connections) can reach; the hard
/// limit is what the operator granted. Failing is harmless: the old limit stays.
pub fn raise_open_files_limit() -> (u64, u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) != 0 {
            return (0, 0);
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) != 0 {
                return (before, before);
            }
        }
        (before, lim.rlim_cur)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_capability() {
        let all = 1 << CAP_BPF | 1 << CAP_NET_ADMIN | 1 << CAP_PERFMON;
        assert_eq!(check_set(all), Ok(()));
        assert_eq!(check_set(1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN), Ok(()));
        let e = check_set(all & !(1 << CAP_BPF)).unwrap_err().to_string();
        assert!(
            e.starts_with("missing capability CAP_BPF, needed to load"),
            "{e}"
        );
        let e = check_set(all & !(1 << CAP_NET_ADMIN))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("missing capability CAP_NET_ADMIN"), "{e}");
        assert!(!e.contains('\n'));
    }
}
