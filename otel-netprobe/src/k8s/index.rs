//! The IP index: who an address belongs to, published as an immutable snapshot.
//!
//! [`IndexStore`] holds the trimmed objects (keyed by UID) and builds [`IpIndex`] snapshots,
//! which readers use without locks. Rules:
//! - a live pod's IP names the pod; a hostNetwork pod shares its node's IP and names the node;
//! - a service's ClusterIPs name the service; an EndpointSlice endpoint (IP, port) names the
//!   service a backing pod serves on that port;
//! - a node's addresses name the node;
//! - a deleted pod's IP keeps resolving for a grace period (late packets of a dying pod are
//!   still attributed), unless a live pod has taken the IP over, which wins at once.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

/// What owns a pod, as a workload: a Deployment (via its ReplicaSet), StatefulSet, DaemonSet,
/// Job, CronJob (via its Job), or the pod itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `CronJob`, `ReplicaSet`, `Pod`.
    pub kind: &'static str,
    /// Its name.
    pub name: Arc<str>,
}

/// A pod, trimmed to what naming needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Node it runs on.
    pub node: Arc<str>,
    /// Its workload.
    pub workload: Workload,
    /// `status.podIPs` (both families).
    pub ips: Vec<IpAddr>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
}

/// A service, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// ClusterIPs (empty for headless services).
    pub cluster_ips: Vec<IpAddr>,
}

/// Who an address (and port) belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// A pod, and the service it serves on the looked-up port, if any.
    Pod {
        /// The pod.
        pod: Arc<Pod>,
        /// The service an EndpointSlice maps (IP, port) to.
        service: Option<Arc<Service>>,
    },
    /// A service's ClusterIP.
    Service(Arc<Service>),
    /// A node's address.
    Node(Arc<str>),
}

/// An immutable index snapshot.
#[derive(Debug, Default)]
pub struct IpIndex {
    by_ip: FxHashMap<IpAddr, Owner>,
    endpoints: FxHashMap<(IpAddr, u16), Arc<Service>>,
}

impl IpIndex {
    /// The owner of `ip`; with `port` (the server port of a flow towards it), the service a
    /// backing pod serves on it.
    pub fn lookup(&self, ip: IpAddr, port: Option<u16>) -> Option<Owner> {
        let owner = self.by_ip.get(&ip)?;
        match (owner, port) {
            (Owner::Pod { pod, .. }, Some(p)) => Some(Owner::Pod {
                pod: Arc::clone(pod),
                service: self.endpoints.get(&(ip, p)).cloned(),
            }),
            _ => Some(owner.clone()),
        }
    }

    /// Addresses indexed.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }
}

/// An EndpointSlice entry: a backing pod's (IP, port) and the service it serves.
type Endpoint = ((IpAddr, u16), Arc<Service>);

struct PodRecord {
    pod: Arc<Pod>,
    /// Set when the pod was deleted: it keeps resolving until `deleted + grace`.
    deleted: Option<Instant>,
}

/// The authoritative objects, keyed by UID, from which snapshots are built.
pub struct IndexStore {
    grace: Duration,
    pods: HashMap<String, PodRecord>,
    services: HashMap<String, Arc<Service>>,
    nodes: HashMap<String, (Arc<str>, Vec<IpAddr>)>,
    /// Per EndpointSlice UID: its (IP, port) → service entries.
    slices: HashMap<String, Vec<Endpoint>>,
}

impl IndexStore {
    /// An empty store; deleted pods resolve for `grace`.
    pub fn new(grace: Duration) -> Self {
        Self {
            grace,
            pods: HashMap::new(),
            services: HashMap::new(),
            nodes: HashMap::new(),
            slices: HashMap::new(),
        }
    }

    /// A pod was added or changed.
    pub fn upsert_pod(&mut self, uid: &str, pod: Pod) {
        self.pods.insert(
            uid.to_owned(),
            PodRecord {
                pod: Arc::new(pod),
                deleted: None,
            },
        );
    }

    /// A pod was deleted at `now`: it resolves for the grace period.
    pub fn delete_pod(&mut self, uid: &str, now: Instant) {
        if let Some(r) = self.pods.get_mut(uid) {
            r.deleted.get_or_insert(now);
        }
    }

    /// A service was added or changed.
    pub fn upsert_service(&mut self, uid: &str, svc: Service) {
        self.services.insert(uid.to_owned(), Arc::new(svc));
    }

    /// A service was deleted.
    pub fn delete_service(&mut self, uid: &str) {
        self.services.remove(uid);
    }

    /// A node was added or changed.
    pub fn upsert_node(&mut self, name: &str, addresses: Vec<IpAddr>) {
        self.nodes
            .insert(name.to_owned(), (Arc::from(name), addresses));
    }

    /// A node was deleted.
    pub fn delete_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// An EndpointSlice of `service` was added or changed: its ready endpoints' addresses on
    /// its ports.
    pub fn upsert_slice(
        &mut self,
        uid: &str,
        service: Service,
        addresses: &[IpAddr],
        ports: &[u16],
    ) {
        let svc = Arc::new(service);
        let entries = addresses
            .iter()
            .flat_map(|ip| ports.iter().map(move |p| (*ip, *p)))
            .map(|k| (k, Arc::clone(&svc)))
            .collect();
        self.slices.insert(uid.to_owned(), entries);
    }

    /// An EndpointSlice was deleted.
    pub fn delete_slice(&mut self, uid: &str) {
        self.slices.remove(uid);
    }

    /// Forgets pods whose grace period is over; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pods.len();
        let grace = self.grace;
        self.pods
            .retain(|_, r| r.deleted.is_none_or(|d| now.duration_since(d) < grace));
        before - self.pods.len()
    }

    /// Pods known (deleted ones in their grace period included).
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Builds a snapshot. Precedence for one IP: a live pod, then a deleted pod in its grace
    /// period, then a service, then a node (hostNetwork pods name their node).
    pub fn build(&self) -> IpIndex {
        let mut by_ip: FxHashMap<IpAddr, Owner> = FxHashMap::default();
        by_ip.reserve(self.pods.len() + self.services.len() + self.nodes.len());
        for (name, addrs) in self.nodes.values() {
            for ip in addrs {
                by_ip.insert(*ip, Owner::Node(Arc::clone(name)));
            }
        }
        for svc in self.services.values() {
            for ip in &svc.cluster_ips {
                by_ip.insert(*ip, Owner::Service(Arc::clone(svc)));
            }
        }
        // Deleted pods first, so a live pod with the same IP overwrites them.
        for live in [false, true] {
            for r in self.pods.values().filter(|r| r.deleted.is_none() == live) {
                if r.pod.host_network {
                    continue;
                }
                for ip in &r.pod.ips {
                    by_ip.insert(
                        *ip,
                        Owner::Pod {
                            pod: Arc::clone(&r.pod),
                            service: None,
                        },
                    );
                }
            }
        }
        let endpoints = self
            .slices
            .values()
            .flatten()
            .map(|(k, s)| (*k, Arc::clone(s)))
            .collect();
        IpIndex { by_ip, endpoints }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn pod(name: &str, ips: &[&str], host: bool) -> Pod {
        Pod {
            namespace: "shop".into(),
            name: name.into(),
            node: "node-1".into(),
            workload: Workload {
                kind: "Deployment",
                name: "checkout".into(),
            },
            ips: ips.iter().map(|s| ip(s)).collect(),
            host_network: host,
        }
    }

    fn owner_name(o: Option<Owner>) -> String {
        match o {
            Some(Owner::Pod { pod, service }) => {
                format!(
                    "pod {}{}",
                    pod.name,
                    service
                        .map(|s| format!(" svc {}", s.name))
                        .unwrap_or_default()
                )
            }
            Some(Owner::Service(s)) => format!("svc {}", s.name),
            Some(Owner::Node(n)) => format!("node {n}"),
            None => "none".into(),
        }
    }

    #[test]
    fn pods_services_nodes_and_endpoints() {
        let mut s = IndexStore::new(Duration::from_secs(30));
        s.upsert_node("node-1", vec![ip("192.0.2.10")]);
        s.upsert_pod("u1", pod("checkout-1", &["10.244.0.11", "fd00::11"], false));
        s.upsert_pod("u2", pod("agent", &["192.0.2.10"], true));
        let svc = Service {
            namespace: "shop".into(),
            name: "payments".into(),
            cluster_ips: vec![ip("10.96.0.10")],
        };
        s.upsert_service("s1", svc.clone());
        s.upsert_slice("e1", svc, &[ip("10.244.0.11")], &[8443]);
        let idx = s.build();
        assert_eq!(
            owner_name(idx.lookup(ip("10.244.0.11"), None)),
            "pod checkout-1"
        );
        assert_eq!(
            owner_name(idx.lookup(ip("fd00::11"), None)),
            "pod checkout-1"
        );
        assert_eq!(
            owner_name(idx.lookup(ip("10.244.0.11"), Some(8443))),
            "pod checkout-1 svc payments"
        );
        assert_eq!(
            owner_name(idx.lookup(ip("10.244.0.11"), Some(9090))),
            "pod checkout-1"
        );
        assert_eq!(
            owner_name(idx.lookup(ip("10.96.0.10"), Some(443))),
            "svc payments"
        );
        // A hostNetwork pod shares the node's address: it names the node.
        assert_eq!(
            owner_name(idx.lookup(ip("192.0.2.10"), None)),
            "node node-1"
        );
        assert_eq!(owner_name(idx.lookup(ip("203.0.113.1"), None)), "none");
    }

    #[test]
    fn deleted_pods_resolve_for_the_grace_period_and_reuse_wins() {
        let mut s = IndexStore::new(Duration::from_secs(30));
        let t0 = Instant::now();
        s.upsert_pod("u1", pod("old", &["10.244.0.20"], false));
        s.delete_pod("u1", t0);
        assert_eq!(
            owner_name(s.build().lookup(ip("10.244.0.20"), None)),
            "pod old"
        );
        // The IP is reused by a new pod: it takes over at once.
        s.upsert_pod("u2", pod("new", &["10.244.0.20"], false));
        assert_eq!(
            owner_name(s.build().lookup(ip("10.244.0.20"), None)),
            "pod new"
        );
        s.delete_pod("u2", t0);
        s.upsert_pod("u3", pod("other", &["10.244.0.21"], false));
        s.delete_pod("u3", t0);
        assert_eq!(s.expire(t0 + Duration::from_secs(29)), 0);
        assert_eq!(s.expire(t0 + Duration::from_secs(31)), 3);
        assert!(s.build().lookup(ip("10.244.0.21"), None).is_none());
    }
}
