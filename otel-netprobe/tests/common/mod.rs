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
mod base;
pub mod binary;
pub mod certs;
pub mod cluster;
pub mod dns;
pub mod kernel;
pub mod kubeapi;
pub mod packets;
pub mod pinned;
pub mod proxy;
pub mod reference;
pub mod traffic;
pub mod vm;
pub mod watchers;

#[allow(
    unused_imports,
    reason = "each test binary uses a different part of the lab"
)]
pub use base::{
    Netns, enter, kernel_version, patience, patient, require_root, sh, unique, wait_until, within,
};

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
