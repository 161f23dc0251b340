//! The node lab: network namespaces that play a Kubernetes node, its pods and the outside
//! world, plus helpers to run code and send traffic inside them.
//!
//! Every namespace and link is created here and removed on drop, also when a test fails.
//! Traffic only ever flows between these namespaces.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the lab"
)]

pub mod agent;
pub mod apiserver;
pub mod backends;
pub mod binary;
pub mod certs;
pub mod cluster;
pub mod kernel;
pub mod packets;
pub mod proxy;
pub mod reference;
pub mod traffic;
pub mod vm;

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

/// Addresses of the lab.
pub mod addr {
    /// The node's address on the pod bridge (the pods' gateway).
    pub const NODE_BR: &str = "10.244.0.1";
    /// The node's uplink address.
    pub const NODE_UPLINK: &str = "10.99.0.1";
    /// The outside host.
    pub const OUTSIDE: &str = "10.99.0.2";
    /// Pod addresses.
    pub const PODS: [&str; 3] = ["10.244.0.11", "10.244.0.12", "10.244.0.13"];
    /// IPv6: node bridge, pods, outside.
    pub const NODE_BR6: &str = "fd00:244::1";
    /// IPv6 pod addresses.
    pub const PODS6: [&str; 3] = ["fd00:244::11", "fd00:244::12", "fd00:244::13"];
    /// IPv6 outside host.
    pub const OUTSIDE6: &str = "fd00:99::2";
}

/// A simulated node: `node` namespace with a bridge `br0` whose ports are the host ends of
/// three pod veths (`vethpod0..2`), and an uplink `eth0` to an `outside` namespace. The node
/// routes between pods and outside.
pub struct NodeLab {
    /// The pods (each with `eth0` → node).
    pub pods: Vec<Netns>,
    /// The outside host.
    pub outside: Netns,
    /// The node (dropped last: its links go with it).
    pub node: Netns,
}

impl NodeLab {
    /// Builds the lab.
    pub fn new(tag: &str) -> Self {
        let p = unique(tag);
        let node = Netns::new(&format!("{p}-node"));
        let outside = Netns::new(&format!("{p}-out"));
        let pods: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("{p}-pod{i}"))).collect();
        for ns in pods.iter().chain([&node, &outside]) {
            // Quiet, deterministic links: no duplicate address detection, no router solicits.
            ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
            ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
            ns.sysctl("net.ipv6.conf.default.router_solicitations", "0");
        }
        node.sysctl("net.ipv4.ip_forward", "1");
        node.sysctl("net.ipv6.conf.all.forwarding", "1");
        node.ip("link add br0 type bridge");
        node.ip(&format!("addr add {}/24 dev br0", addr::NODE_BR));
        node.ip(&format!("addr add {}/64 dev br0 nodad", addr::NODE_BR6));
        node.ip("link set br0 up");
        for (i, pod) in pods.iter().enumerate() {
            node.ip(&format!(
                "link add vethpod{i} type veth peer name eth0 netns {}",
                pod.name
            ));
            node.ip(&format!("link set vethpod{i} master br0 up"));
            pod.ip(&format!("addr add {}/24 dev eth0", addr::PODS[i]));
            pod.ip(&format!("addr add {}/64 dev eth0 nodad", addr::PODS6[i]));
            pod.ip("link set eth0 up");
            pod.ip(&format!("route add default via {}", addr::NODE_BR));
            pod.ip(&format!("-6 route add default via {}", addr::NODE_BR6));
        }
        node.ip(&format!(
            "link add eth0 type veth peer name eth0 netns {}",
            outside.name
        ));
        node.ip(&format!("addr add {}/24 dev eth0", addr::NODE_UPLINK));
        node.ip("addr add fd00:99::1/64 dev eth0 nodad");
        node.ip("link set eth0 up");
        outside.ip(&format!("addr add {}/24 dev eth0", addr::OUTSIDE));
        outside.ip(&format!("addr add {}/64 dev eth0 nodad", addr::OUTSIDE6));
        outside.ip("link set eth0 up");
        outside.ip(&format!(
            "route add 10.244.0.0/24 via {}",
            addr::NODE_UPLINK
        ));
        outside.ip("-6 route add fd00:244::/64 via fd00:99::1");
        Self {
            pods,
            outside,
            node,
        }
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
