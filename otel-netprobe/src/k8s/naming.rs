//! Naming flow ends: an address (and the server port) → pod, service, node, a configured
//! CIDR group, `external` or `unknown`.

use std::{net::IpAddr, sync::Arc};

use super::index::{Entry, IpIndex, Pod, Service};
use crate::config::{Cidr, K8sConfig, glob_match};

/// The naming settings that do not change while the agent runs.
#[derive(Debug)]
pub struct NamingRules {
    /// Whether the Kubernetes API is in use (otherwise every end is `unknown`).
    pub cluster: bool,
    /// This agent's node (`K8S_NODE_NAME` or `NODE_NAME`): its pods are this node's
    /// ([`Origin`]). `None`: not known, and every pod counts as this node's.
    pub node: Option<Arc<str>>,
    groups: Vec<(Cidr, Arc<str>)>,
    cluster_cidrs: Vec<Cidr>,
    include: Vec<String>,
    exclude: Vec<String>,
    external: Arc<str>,
    fixed: Fixed,
}

/// Shared copies of the fixed names, so series keys hold pointers, not new strings.
#[derive(Debug)]
pub struct Fixed {
    /// `Service`.
    pub service: Arc<str>,
    /// `Node`.
    pub node: Arc<str>,
    /// `external` (as a kind).
    pub external: Arc<str>,
    /// `unknown`.
    pub unknown: Arc<str>,
}

impl NamingRules {
    /// Rules from the (validated) `k8s` section; `cluster`: whether the API is in use.
    pub fn new(cfg: &K8sConfig, cluster: bool) -> Self {
        let mut groups: Vec<(Cidr, Arc<str>)> = cfg
            .cidr_groups
            .iter()
            .flat_map(|g| {
                let name: Arc<str> = Arc::from(g.name.as_str());
                g.cidrs
                    .iter()
                    .filter_map(move |c| Some((c.parse().ok()?, Arc::clone(&name))))
            })
            .collect();
        // Most specific first.
        groups.sort_by_key(|g| std::cmp::Reverse(g.0.prefix()));
        Self {
            cluster,
            node: None,
            groups,
            cluster_cidrs: cfg
                .cluster_cidrs
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            include: cfg.namespaces.include.clone(),
            exclude: cfg.namespaces.exclude.clone(),
            external: Arc::from(EXTERNAL),
            fixed: Fixed {
                service: Arc::from("Service"),
                node: Arc::from("Node"),
                external: Arc::from(EXTERNAL),
                unknown: Arc::from(UNKNOWN),
            },
        }
    }

    /// These rules for the agent on node `node`.
    #[must_use]
    pub fn on_node(mut self, node: Option<&str>) -> Self {
        self.node = node.filter(|n| !n.is_empty()).map(Arc::from);
        self
    }

    /// The fixed names.
    pub fn fixed(&self) -> &Fixed {
        &self.fixed
    }

    /// No cluster, no groups, no filter.
    pub fn standalone() -> Self {
        Self::new(&K8sConfig::default(), false)
    }

    /// Whether a namespace filter is configured.
    pub fn filters(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty()
    }

    /// Whether a namespace is reported and counted.
    pub fn namespace_allowed(&self, ns: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_match(p, ns)))
            && !self.exclude.iter().any(|p| glob_match(p, ns))
    }
}

/// The workload name of ends outside the cluster (and of no CIDR group).
pub const EXTERNAL: &str = "external";
/// The workload name of ends that cannot be named (no API, not listed yet).
pub const UNKNOWN: &str = "unknown";

/// What one end of a flow is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer<'a> {
    /// A pod (live, or deleted within its grace period).
    Pod(&'a Pod),
    /// A service's ClusterIP.
    Service(&'a Service),
    /// A node (hostNetwork pods included).
    Node(&'a Arc<str>),
    /// Outside the cluster: a CIDR group's name, or `external`.
    External(&'a Arc<str>),
    /// Not known (no API, not yet listed, or an unlisted address in the cluster's ranges).
    Unknown,
}

impl Peer<'_> {
    /// The end's namespace, if it has one.
    pub fn namespace(&self) -> Option<&Arc<str>> {
        match self {
            Peer::Pod(p) => Some(&p.namespace),
            Peer::Service(s) => Some(&s.namespace),
            _ => None,
        }
    }

    /// Whether the index knew the address.
    pub fn found(&self) -> bool {
        matches!(self, Peer::Pod(_) | Peer::Service(_) | Peer::Node(_))
    }
}

/// Where a flow's packets came from, relative to the node that saw them
/// (`netprobe.origin`): a packet crossing nodes is seen on both, once from `this_node` (where
/// it left its pod or node) and once from `other_node`, so a cluster-wide sum over
/// `netprobe.origin != other_node` counts every packet once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// From a pod of this node, or the node itself (its addresses, hostNetwork pods).
    ThisNode,
    /// From a pod or node elsewhere in the cluster.
    OtherNode,
    /// From outside the cluster, or an address the index does not know (yet).
    Outside,
}

impl Origin {
    /// The attribute's value.
    pub fn name(self) -> &'static str {
        match self {
            Self::ThisNode => "this_node",
            Self::OtherNode => "other_node",
            Self::Outside => "outside",
        }
    }
}

/// The addresses of this process' network namespace (the node's, for a hostNetwork agent),
/// loopback included; empty if they cannot be read.
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&raw mut head) } != 0 {
        return out;
    }
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: ifa_addr points to a sockaddr whose family says its real type.
            let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
            if family == libc::AF_INET {
                // SAFETY: an AF_INET address is a sockaddr_in (read unaligned: the list gives
                // no alignment promise beyond sockaddr's).
                let a = unsafe { ifa.ifa_addr.cast::<libc::sockaddr_in>().read_unaligned() };
                out.push(IpAddr::from(a.sin_addr.s_addr.to_ne_bytes()));
            } else if family == libc::AF_INET6 {
                // SAFETY: an AF_INET6 address is a sockaddr_in6 (read unaligned, as above).
                let a = unsafe { ifa.ifa_addr.cast::<libc::sockaddr_in6>().read_unaligned() };
                out.push(IpAddr::from(a.sin6_addr.s6_addr));
            }
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the list from getifaddrs, freed once.
    unsafe { libc::freeifaddrs(head) };
    out.sort_unstable();
    out.dedup();
    out
}

/// Whether `ip` can be a peer beyond the node's links: link-local, multicast, loopback and
/// unspecified addresses are never `external` (neighbour discovery, DHCP, mDNS).
fn routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            !(v.is_link_local()
                || v.is_multicast()
                || v.is_loopback()
                || v.is_unspecified()
                || v.is_broadcast())
        }
        IpAddr::V6(v) => {
            !(v.is_unicast_link_local()
                || v.is_multicast()
                || v.is_loopback()
                || v.is_unspecified())
        }
    }
}

/// The index of one moment with the rules: everything needed to name a flow's ends.
#[derive(Clone, Debug)]
pub struct Naming {
    /// The index snapshot.
    pub index: Arc<IpIndex>,
    /// The rules.
    pub rules: Arc<NamingRules>,
    /// The addresses of the agent's network namespace (the node's own, under hostNetwork):
    /// a flow from one of them left this node.
    pub local: Arc<[IpAddr]>,
}

impl Naming {
    /// Standalone: nothing can be named.
    pub fn standalone() -> Self {
        Self {
            index: Arc::default(),
            rules: Arc::new(NamingRules::standalone()),
            local: Arc::from([]),
        }
    }

    /// Where a flow from `ip` (named `peer`) came from, relative to this node.
    pub fn origin(&self, ip: IpAddr, peer: Peer<'_>) -> Origin {
        if self.local.contains(&ip) {
            return Origin::ThisNode;
        }
        let mine = |node: &str| self.rules.node.as_deref().is_none_or(|me| me == node);
        match peer {
            Peer::Pod(p) if mine(&p.node) => Origin::ThisNode,
            Peer::Node(n) if mine(n) => Origin::ThisNode,
            Peer::Pod(_) | Peer::Node(_) => Origin::OtherNode,
            // A ClusterIP as a source is a reply translated by a proxy in this node's
            // namespace: it left this node.
            Peer::Service(_) => Origin::ThisNode,
            Peer::External(_) | Peer::Unknown => Origin::Outside,
        }
    }

    /// What `ip` is.
    pub fn peer(&self, ip: IpAddr) -> Peer<'_> {
        match self.index.get(ip) {
            Some(Entry::Pod(p)) => return Peer::Pod(p),
            Some(Entry::Service(s)) => return Peer::Service(s),
            Some(Entry::Node(n)) => return Peer::Node(n),
            None => {}
        }
        if let Some((_, name)) = self.rules.groups.iter().find(|(c, _)| c.contains(ip)) {
            return Peer::External(name);
        }
        if !self.rules.cluster
            || !self.index.synced
            || !routable(ip)
            || self.rules.cluster_cidrs.iter().any(|c| c.contains(ip))
        {
            return Peer::Unknown;
        }
        Peer::External(&self.rules.external)
    }

    /// What `ip` is when it serves on `port`: a hostNetwork pod on its node's address is
    /// named by the ports it declares; otherwise as [`Self::peer`].
    pub fn peer_at(&self, ip: IpAddr, port: Option<u16>) -> Peer<'_> {
        if let Some(p) = port.and_then(|p| self.index.host_port(ip, p)) {
            return Peer::Pod(p);
        }
        self.peer(ip)
    }

    /// The service behind (`ip`, `port`) when `ip` is the server: its ClusterIP, or a backing
    /// pod's endpoint.
    pub fn service<'a>(
        &'a self,
        peer: Peer<'a>,
        ip: IpAddr,
        port: Option<u16>,
    ) -> Option<&'a Service> {
        match peer {
            Peer::Service(s) => Some(s),
            Peer::Pod(_) => port.and_then(|p| self.index.endpoint(ip, p)).map(|s| &**s),
            _ => None,
        }
    }

    /// Whether `ip` is certainly the server on `port`: a ClusterIP on one of its ports, or an
    /// endpoint of a service.
    pub fn serves(&self, ip: IpAddr, port: u16) -> bool {
        match self.index.get(ip) {
            Some(Entry::Service(s)) => s.ports.contains(&port),
            Some(Entry::Pod(_)) => self.index.endpoint(ip, port).is_some(),
            Some(Entry::Node(_)) => {
                self.index.host_port(ip, port).is_some() || self.index.endpoint(ip, port).is_some()
            }
            None => false,
        }
    }

    /// Whether a flow between these ends is reported under the namespace filter.
    pub fn keep(&self, src: Peer<'_>, dst: Peer<'_>) -> bool {
        let r = &self.rules;
        let (a, b) = (src.namespace(), dst.namespace());
        let excluded =
            |ns: Option<&Arc<str>>| ns.is_some_and(|n| r.exclude.iter().any(|p| glob_match(p, n)));
        if excluded(a) || excluded(b) {
            return false;
        }
        r.include.is_empty()
            || [a, b]
                .into_iter()
                .flatten()
                .any(|n| r.include.iter().any(|p| glob_match(p, n)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{
        config::CidrGroup,
        k8s::index::{IndexStore, Kind, OwnerRef, Record},
    };

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn naming(synced: bool) -> Naming {
        let now = Instant::now();
        let mut s = IndexStore::new(Duration::from_secs(30));
        let pod = |ns: &str, name: &str, addr: &str| Record::Pod {
            pod: Pod {
                namespace: ns.into(),
                name: name.into(),
                node: "node-1".into(),
                owner: None,
                workload: OwnerRef {
                    kind: "Pod".into(),
                    name: name.into(),
                },
                ips: vec![ip(addr)],
                host_network: false,
                host_ports: Vec::new(),
            },
            terminal: false,
        };
        s.upsert("a", pod("shop", "web", "10.244.0.11"), now);
        s.upsert("b", pod("kube-system", "dns", "10.244.0.12"), now);
        if synced {
            for k in Kind::ALL {
                s.begin_relist(k);
            }
            s.upsert("a", pod("shop", "web", "10.244.0.11"), now);
            s.upsert("b", pod("kube-system", "dns", "10.244.0.12"), now);
            for k in Kind::ALL {
                s.finish_relist(k, now);
            }
        }
        let cfg = K8sConfig {
            cidr_groups: vec![CidrGroup {
                name: "corp".into(),
                cidrs: vec!["192.168.0.0/16".into()],
            }],
            cluster_cidrs: vec!["10.244.0.0/16".into()],
            namespaces: crate::config::NamespaceFilter {
                include: vec![],
                exclude: vec!["kube-*".into()],
            },
            ..K8sConfig::default()
        };
        Naming {
            index: Arc::new(s.build()),
            rules: Arc::new(NamingRules::new(&cfg, true)),
            local: Arc::from([]),
        }
    }

    #[test]
    fn origin_is_this_node_for_its_pods_and_addresses_only() {
        let mut n = naming(true);
        let web = ip("10.244.0.11");
        let origin = |n: &Naming, a: IpAddr| n.origin(a, n.peer(a));
        // No node name: every pod is this node's.
        assert_eq!(origin(&n, web), Origin::ThisNode);
        for (me, expected) in [("node-1", Origin::ThisNode), ("node-2", Origin::OtherNode)] {
            n.rules = Arc::new(NamingRules::new(&K8sConfig::default(), true).on_node(Some(me)));
            assert_eq!(origin(&n, web), expected, "on {me}");
        }
        // On node-2, its own addresses are this node's whatever the index says.
        assert_eq!(origin(&n, ip("192.0.2.7")), Origin::Outside);
        n.local = Arc::from([ip("192.0.2.7"), web]);
        assert_eq!(origin(&n, ip("192.0.2.7")), Origin::ThisNode);
        assert_eq!(origin(&n, web), Origin::ThisNode);
        assert_eq!(Origin::OtherNode.name(), "other_node");
        assert!(local_addresses().contains(&ip("127.0.0.1")));
    }

    #[test]
    fn external_only_once_synced_and_groups_and_cluster_ranges() {
        let n = naming(false);
        assert!(matches!(n.peer(ip("10.244.0.11")), Peer::Pod(p) if &*p.name == "web"));
        assert_eq!(n.peer(ip("203.0.113.1")), Peer::Unknown);
        assert!(matches!(n.peer(ip("192.168.3.4")), Peer::External(g) if &**g == "corp"));
        let n = naming(true);
        assert!(matches!(n.peer(ip("203.0.113.1")), Peer::External(g) if &**g == EXTERNAL));
        assert_eq!(n.peer(ip("10.244.9.9")), Peer::Unknown);
        assert_eq!(n.peer(ip("fe80::1")), Peer::Unknown);
        assert_eq!(n.peer(ip("ff02::16")), Peer::Unknown);
        assert_eq!(n.peer(ip("169.254.1.1")), Peer::Unknown);
    }

    #[test]
    fn namespace_filter() {
        let n = naming(true);
        let (web, dns, out) = (
            n.peer(ip("10.244.0.11")),
            n.peer(ip("10.244.0.12")),
            n.peer(ip("203.0.113.1")),
        );
        assert!(n.keep(web, out));
        assert!(!n.keep(web, dns));
        assert!(!n.keep(dns, out));
        assert!(n.rules.namespace_allowed("shop"));
        assert!(!n.rules.namespace_allowed("kube-system"));
    }
}
