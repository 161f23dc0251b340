//! The multi-node lab: two node namespaces joined by an underlay (a bridge in its own
//! namespace, routes between the nodes' pod CIDRs, as a flat-network CNI does), pods on each
//! node behind the node's pod bridge, an outside host on the underlay, and a control-plane
//! namespace for the API server and Prometheus, which reach the nodes' loopbacks (and the nodes
//! theirs) by in-process forwarding, so that this traffic never crosses the lab's links.
//!
//! Every namespace and link is made here and removed on drop, also when the test fails.

use crate::common::{Netns, unique};

/// One node: its namespace, addresses and pods.
pub struct Node {
    /// `spec.nodeName` of its pods, `K8S_NODE_NAME` of its agent.
    pub name: &'static str,
    /// The node's underlay address (its Node object's InternalIP).
    pub ip: &'static str,
    /// Pod addresses (IPv4, IPv6), one pod namespace each.
    pub pod_ips: &'static [(&'static str, &'static str)],
    /// The pods (dropped before the node).
    pub pods: Vec<Netns>,
    /// The node's namespace.
    pub ns: Netns,
}

/// The nodes' fixed plan: name, underlay addresses, pod CIDR (IPv4 /24 prefix, IPv6 /64
/// prefix), pods.
struct Plan {
    name: &'static str,
    ip: &'static str,
    ip6: &'static str,
    cidr: &'static str,
    cidr6: &'static str,
    pods: &'static [(&'static str, &'static str)],
}

const PLANS: [Plan; 2] = [
    Plan {
        name: "node-a",
        ip: "10.99.0.1",
        ip6: "fd00:99::1",
        cidr: "10.244.0",
        cidr6: "fd00:244:0:0",
        pods: &[
            ("10.244.0.11", "fd00:244::11"),
            ("10.244.0.12", "fd00:244::12"),
        ],
    },
    Plan {
        name: "node-b",
        ip: "10.99.0.3",
        ip6: "fd00:99::3",
        cidr: "10.244.1",
        cidr6: "fd00:244:0:1",
        pods: &[("10.244.1.11", "fd00:244:0:1::11")],
    },
];

/// The outside host's addresses.
pub const OUTSIDE: &str = "10.99.0.2";
/// Its IPv6 address.
pub const OUTSIDE6: &str = "fd00:99::2";

/// The lab. Fields drop in order: nodes (pods first), outside, control plane, underlay.
pub struct ClusterLab {
    /// node-a and node-b.
    pub nodes: Vec<Node>,
    /// The outside host.
    pub outside: Netns,
    /// Where the API server and Prometheus run (no links: reached by forwarding).
    pub control: Netns,
    /// The underlay's bridge (dropped last).
    _underlay: Netns,
}

fn quiet(ns: &Netns) {
    // Quiet, deterministic links: no duplicate address detection, no router solicits.
    ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
    ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
    ns.sysctl("net.ipv6.conf.default.router_solicitations", "0");
}

impl ClusterLab {
    /// Builds it.
    pub fn new(tag: &str) -> Self {
        let p = unique(tag);
        let underlay = Netns::new(&format!("{p}-ul"));
        let outside = Netns::new(&format!("{p}-out"));
        let control = Netns::new(&format!("{p}-cp"));
        control.ip("link set lo up");
        quiet(&outside);
        underlay.ip("link add br0 type bridge");
        underlay.ip("link set br0 up");
        let uplink = |ns: &Netns, port: &str| {
            underlay.ip(&format!(
                "link add {port} type veth peer name eth0 netns {}",
                ns.name
            ));
            underlay.ip(&format!("link set {port} master br0 up"));
        };
        uplink(&outside, "ul-out");
        outside.ip(&format!("addr add {OUTSIDE}/24 dev eth0"));
        outside.ip(&format!("addr add {OUTSIDE6}/64 dev eth0 nodad"));
        outside.ip("link set eth0 up");
        let mut nodes = Vec::new();
        for (i, plan) in PLANS.iter().enumerate() {
            let ns = Netns::new(&format!("{p}-n{i}"));
            quiet(&ns);
            ns.sysctl("net.ipv4.ip_forward", "1");
            ns.sysctl("net.ipv6.conf.all.forwarding", "1");
            uplink(&ns, &format!("ul-n{i}"));
            ns.ip(&format!("addr add {}/24 dev eth0", plan.ip));
            ns.ip(&format!("addr add {}/64 dev eth0 nodad", plan.ip6));
            ns.ip("link set eth0 up");
            ns.ip("link add br0 type bridge");
            ns.ip(&format!("addr add {}.1/24 dev br0", plan.cidr));
            ns.ip(&format!("addr add {}::1/64 dev br0 nodad", plan.cidr6));
            ns.ip("link set br0 up");
            let mut pods = Vec::new();
            for (j, (v4, v6)) in plan.pods.iter().enumerate() {
                let pod = Netns::new(&format!("{p}-n{i}p{j}"));
                quiet(&pod);
                ns.ip(&format!(
                    "link add vethpod{j} type veth peer name eth0 netns {}",
                    pod.name
                ));
                ns.ip(&format!("link set vethpod{j} master br0 up"));
                pod.ip(&format!("addr add {v4}/24 dev eth0"));
                pod.ip(&format!("addr add {v6}/64 dev eth0 nodad"));
                pod.ip("link set eth0 up");
                pod.ip(&format!("route add default via {}.1", plan.cidr));
                pod.ip(&format!("-6 route add default via {}::1", plan.cidr6));
                pods.push(pod);
            }
            outside.ip(&format!("route add {}.0/24 via {}", plan.cidr, plan.ip));
            outside.ip(&format!(
                "-6 route add {}::/64 via {}",
                plan.cidr6, plan.ip6
            ));
            nodes.push(Node {
                name: plan.name,
                ip: plan.ip,
                pod_ips: plan.pods,
                pods,
                ns,
            });
        }
        // The flat network: each node routes the other's pod CIDR to it over the underlay.
        for (i, node) in nodes.iter().enumerate() {
            let other = &PLANS[1 - i];
            node.ns
                .ip(&format!("route add {}.0/24 via {}", other.cidr, other.ip));
            node.ns.ip(&format!(
                "-6 route add {}::/64 via {}",
                other.cidr6, other.ip6
            ));
        }
        Self {
            nodes,
            outside,
            control,
            _underlay: underlay,
        }
    }
}
