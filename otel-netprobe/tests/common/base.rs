//! The lab's basics, which every other part of `common/` builds on: root, shell commands,
//! unique names, network namespaces and running code inside them, deadlines. Kept apart from
//! the rest so that `make demo`'s `demo-cluster` (an example, where the test-only
//! `CARGO_BIN_EXE_*` that other parts name does not exist) can include it with the real API
//! server's harness (`kubeapi/`) and nothing else.

use std::{
    fs::File,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

/// Fails (never skips) when not root: these tests need to create namespaces and load BPF.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "the kernel tests need root (network namespaces, BPF); run `make test` as root"
    );
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("running sh");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A unique prefix per lab so tests can run in parallel.
pub fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "np{}{}{}",
        std::process::id() % 10_000,
        tag,
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    /// Its name (under /run/netns).
    pub name: String,
}

impl Netns {
    /// Creates the namespace with loopback up.
    pub fn new(name: &str) -> Self {
        sh(&format!("ip netns add {name}"));
        let ns = Self {
            name: name.to_owned(),
        };
        ns.ip("link set lo up");
        ns
    }

    /// Runs `ip ARGS` inside the namespace.
    pub fn ip(&self, args: &str) -> String {
        sh(&format!("ip -n {} {args}", self.name))
    }

    /// Runs a shell command inside the namespace.
    pub fn exec(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} {cmd}", self.name))
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec(&format!("sysctl -qw {key}={value}"));
    }

    /// Runs `f` on a thread that has entered this namespace; sockets it creates stay in it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        within(Some(&self.name), f)
    }

    /// Spawns a long-lived thread in this namespace.
    pub fn spawn<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{}", self.name);
        std::thread::spawn(move || {
            enter(&path);
            f()
        })
    }
}

/// Runs `f` on a thread inside the named namespace (`None`: in this thread's), so the sockets
/// and processes it creates live there.
pub fn within<T: Send + 'static>(ns: Option<&str>, f: impl FnOnce() -> T + Send + 'static) -> T {
    let Some(name) = ns else { return f() };
    let path = format!("/run/netns/{name}");
    std::thread::spawn(move || {
        enter(&path);
        f()
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

/// Moves the calling thread into the namespace at `path`.
pub fn enter(path: &str) {
    let f = File::open(path).unwrap_or_else(|e| panic!("open {path}: {e}"));
    // SAFETY: setns on a namespace fd we own; affects only the calling thread.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// How many times longer than on a fast machine the tests wait for anything:
/// `NETPROBE_TEST_PATIENCE` (the kernel-matrix VMs run under software emulation and set 10).
pub fn patience() -> u32 {
    std::env::var("NETPROBE_TEST_PATIENCE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// `d`, scaled by [`patience`]: every deadline a test waits for goes through here.
pub fn patient(d: Duration) -> Duration {
    d * patience()
}

/// The running kernel's (major, minor) version, from its release string.
pub fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release.trim().split(['.', '-']);
    let mut next = || {
        parts
            .next()
            .and_then(|p| p.parse().ok())
            .expect("kernel version")
    };
    (next(), next())
}

/// Polls `cond` every 50 ms until it holds or `timeout` (scaled by [`patience`]) passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + patient(timeout);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
