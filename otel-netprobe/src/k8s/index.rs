//! The IP index: who an address belongs to, published as an immutable snapshot.
//!
//! [`IndexStore`] holds the trimmed objects (keyed by UID) and builds [`IpIndex`] snapshots,
//! which readers use without locks. Rules:
//! - a live pod's IP names the pod; a hostNetwork pod shares its node's IP and names the node;
//! - a service's ClusterIPs name the service; an EndpointSlice endpoint (IP, port) names the
//!   service a backing pod serves on that port;
//! - a node's addresses name the node;
//! - a deleted pod's IP keeps resolving for a grace period (late packets of a dying pod are
//!   still attributed), unless a live pod has taken the IP over, which wins at once;
//! - a pod's workload is its controller, followed up one level: a ReplicaSet's Deployment, a
//!   Job's CronJob.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use rustc_hash::FxHashMap;

/// The resources the index is built from (one watcher each).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// core/v1 pods.
    Pod,
    /// core/v1 services.
    Service,
    /// discovery.k8s.io/v1 EndpointSlices.
    EndpointSlice,
    /// core/v1 nodes.
    Node,
    /// apps/v1 ReplicaSets (to name a pod's Deployment).
    ReplicaSet,
    /// batch/v1 Jobs (to name a pod's CronJob).
    Job,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 6] = [
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Node,
        Kind::ReplicaSet,
        Kind::Job,
    ];

    /// The resource's plural name, as in RBAC rules and the agent's metrics.
    pub fn resource(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::Node => "nodes",
            Kind::ReplicaSet => "replicasets",
            Kind::Job => "jobs",
        }
    }
}

/// A controller reference: kind and name (same namespace as the object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnerRef {
    /// `ReplicaSet`, `StatefulSet`, `DaemonSet`, `Job`, `Deployment`, `CronJob`, ...
    pub kind: Arc<str>,
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
    /// Node it runs on (empty while unscheduled).
    pub node: Arc<str>,
    /// Its controller, as listed in its owner references.
    pub owner: Option<OwnerRef>,
    /// Its workload, resolved when the index is built: the owner's owner for ReplicaSets and
    /// Jobs, the owner otherwise, the pod itself without an owner.
    pub workload: OwnerRef,
    /// `status.podIPs` (both families).
    pub ips: Vec<IpAddr>,
    /// `spec.hostNetwork`.
    pub host_network: bool,
    /// For hostNetwork pods: the ports its containers declare, which name the pod on its
    /// node's addresses (the node's other ports name the node).
    pub host_ports: Vec<u16>,
}

/// A service, trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Service {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// ClusterIPs (empty for headless and ExternalName services).
    pub cluster_ips: Vec<IpAddr>,
    /// Service ports.
    pub ports: Vec<u16>,
}

/// An EndpointSlice, trimmed: the service it belongs to and its endpoints' (IP, port) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// Namespace.
    pub namespace: Arc<str>,
    /// The service (label `kubernetes.io/service-name`).
    pub service: Arc<str>,
    /// Endpoint addresses.
    pub addresses: Vec<IpAddr>,
    /// Ports (the pods' target ports).
    pub ports: Vec<u16>,
}

/// A ReplicaSet or Job, trimmed to its own controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Controlled {
    /// Namespace.
    pub namespace: Arc<str>,
    /// Name.
    pub name: Arc<str>,
    /// Its controller (a Deployment, a CronJob), if any.
    pub owner: Option<OwnerRef>,
}

/// A trimmed object of any kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A pod; `terminal` (Succeeded or Failed) pods have released their IPs.
    Pod {
        /// The pod.
        pod: Pod,
        /// Phase Succeeded or Failed.
        terminal: bool,
    },
    /// A service.
    Service(Service),
    /// An EndpointSlice.
    Slice(Slice),
    /// A node: its name and InternalIP/ExternalIP addresses.
    Node(Arc<str>, Vec<IpAddr>),
    /// A ReplicaSet.
    ReplicaSet(Controlled),
    /// A Job.
    Job(Controlled),
}

impl Record {
    /// The kind of object.
    pub fn kind(&self) -> Kind {
        match self {
            Record::Pod { .. } => Kind::Pod,
            Record::Service(_) => Kind::Service,
            Record::Slice(_) => Kind::EndpointSlice,
            Record::Node(..) => Kind::Node,
            Record::ReplicaSet(_) => Kind::ReplicaSet,
            Record::Job(_) => Kind::Job,
        }
    }
}

/// What an address belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A pod.
    Pod(Arc<Pod>),
    /// A service's ClusterIP.
    Service(Arc<Service>),
    /// A node's address.
    Node(Arc<str>),
}

/// Live pods and services of one namespace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NamespaceCounts {
    /// Pods not deleted and not finished.
    pub pods: u64,
    /// Services.
    pub services: u64,
}

/// Objects held per kind, for the agent's metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexSizes {
    /// Per [`Kind::ALL`] entry: objects held.
    pub objects: [u64; 6],
    /// Addresses indexed.
    pub addresses: u64,
    /// (IP, port) endpoints indexed.
    pub endpoints: u64,
}

/// An immutable index snapshot.
#[derive(Debug, Default)]
pub struct IpIndex {
    by_ip: FxHashMap<IpAddr, Entry>,
    endpoints: FxHashMap<(IpAddr, u16), Arc<Service>>,
    /// hostNetwork pods by (node address, declared port).
    host_ports: FxHashMap<(IpAddr, u16), Arc<Pod>>,
    /// Per namespace, live pods and services.
    pub namespaces: BTreeMap<Arc<str>, NamespaceCounts>,
    /// Every watcher has completed its first list: an address not found is not in the cluster.
    pub synced: bool,
    /// Sizes, for the agent's metrics.
    pub sizes: IndexSizes,
}

impl IpIndex {
    /// What `ip` belongs to.
    pub fn get(&self, ip: IpAddr) -> Option<&Entry> {
        self.by_ip.get(&ip)
    }

    /// The service a backing pod serves on (`ip`, `port`), from the EndpointSlices.
    pub fn endpoint(&self, ip: IpAddr, port: u16) -> Option<&Arc<Service>> {
        self.endpoints.get(&(ip, port))
    }

    /// The hostNetwork pod serving (`ip`, `port`) on its node's address.
    pub fn host_port(&self, ip: IpAddr, port: u16) -> Option<&Arc<Pod>> {
        self.host_ports.get(&(ip, port))
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

struct PodRecord {
    pod: Arc<Pod>,
    /// Set when the pod was deleted (or finished): it keeps resolving until `deleted + grace`.
    deleted: Option<Instant>,
}

/// The authoritative objects, keyed by UID, from which snapshots are built.
pub struct IndexStore {
    grace: Duration,
    pods: HashMap<String, PodRecord>,
    services: HashMap<String, Arc<Service>>,
    nodes: HashMap<String, (Arc<str>, Vec<IpAddr>)>,
    slices: HashMap<String, Slice>,
    replicasets: HashMap<String, Controlled>,
    jobs: HashMap<String, Controlled>,
    /// Strings shared by many objects (namespaces, nodes, owners), stored once.
    strings: HashSet<Arc<str>>,
    /// Per kind being re-listed: the UIDs listed so far.
    relisting: HashMap<Kind, HashSet<String>>,
    synced: HashSet<Kind>,
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
            replicasets: HashMap::new(),
            jobs: HashMap::new(),
            strings: HashSet::new(),
            relisting: HashMap::new(),
            synced: HashSet::new(),
        }
    }

    /// The stored copy of `s`, shared with every other object that names it.
    pub fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strings.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&a));
        a
    }

    /// An object was added or changed (`now`: when, for pods that finished).
    pub fn upsert(&mut self, uid: &str, record: Record, now: Instant) {
        if let Some(seen) = self.relisting.get_mut(&record.kind()) {
            seen.insert(uid.to_owned());
        }
        match record {
            Record::Pod { pod, terminal } => {
                let deleted = if terminal {
                    // A finished pod keeps its first finish time.
                    Some(self.pods.get(uid).and_then(|r| r.deleted).unwrap_or(now))
                } else {
                    None
                };
                let pod = Arc::new(self.intern_pod(pod));
                self.pods.insert(uid.to_owned(), PodRecord { pod, deleted });
            }
            Record::Service(mut s) => {
                s.namespace = self.intern(&s.namespace);
                self.services.insert(uid.to_owned(), Arc::new(s));
            }
            Record::Slice(mut s) => {
                s.namespace = self.intern(&s.namespace);
                s.service = self.intern(&s.service);
                self.slices.insert(uid.to_owned(), s);
            }
            Record::Node(name, addrs) => {
                let name = self.intern(&name);
                self.nodes.insert(uid.to_owned(), (name, addrs));
            }
            Record::ReplicaSet(c) => {
                let c = self.intern_controlled(c);
                self.replicasets.insert(uid.to_owned(), c);
            }
            Record::Job(c) => {
                let c = self.intern_controlled(c);
                self.jobs.insert(uid.to_owned(), c);
            }
        }
    }

    fn intern_owner(&mut self, o: Option<OwnerRef>) -> Option<OwnerRef> {
        o.map(|o| OwnerRef {
            kind: self.intern(&o.kind),
            name: self.intern(&o.name),
        })
    }

    fn intern_pod(&mut self, mut p: Pod) -> Pod {
        p.namespace = self.intern(&p.namespace);
        p.node = self.intern(&p.node);
        p.owner = self.intern_owner(p.owner);
        p.workload = OwnerRef {
            kind: self.intern(&p.workload.kind),
            name: self.intern(&p.workload.name),
        };
        p
    }

    fn intern_controlled(&mut self, mut c: Controlled) -> Controlled {
        c.namespace = self.intern(&c.namespace);
        c.owner = self.intern_owner(c.owner);
        c
    }

    /// An object was deleted at `now`. Pods resolve for the grace period; others go at once.
    pub fn delete(&mut self, kind: Kind, uid: &str, now: Instant) {
        match kind {
            Kind::Pod => {
                if let Some(r) = self.pods.get_mut(uid) {
                    r.deleted.get_or_insert(now);
                }
            }
            Kind::Service => drop(self.services.remove(uid)),
            Kind::EndpointSlice => drop(self.slices.remove(uid)),
            Kind::Node => drop(self.nodes.remove(uid)),
            Kind::ReplicaSet => drop(self.replicasets.remove(uid)),
            Kind::Job => drop(self.jobs.remove(uid)),
        }
    }

    /// A (re-)list of `kind` starts: objects it does not list were deleted meanwhile.
    pub fn begin_relist(&mut self, kind: Kind) {
        self.relisting.insert(kind, HashSet::new());
    }

    /// The list of `kind` is complete: deletes what it did not list; `kind` is synced.
    pub fn finish_relist(&mut self, kind: Kind, now: Instant) {
        let Some(seen) = self.relisting.remove(&kind) else {
            return;
        };
        let gone: Vec<String> = match kind {
            Kind::Pod => stale(self.pods.keys(), &seen),
            Kind::Service => stale(self.services.keys(), &seen),
            Kind::EndpointSlice => stale(self.slices.keys(), &seen),
            Kind::Node => stale(self.nodes.keys(), &seen),
            Kind::ReplicaSet => stale(self.replicasets.keys(), &seen),
            Kind::Job => stale(self.jobs.keys(), &seen),
        };
        for uid in gone {
            self.delete(kind, &uid, now);
        }
        self.synced.insert(kind);
    }

    /// Forgets pods whose grace period is over; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.pods.len();
        let grace = self.grace;
        self.pods
            .retain(|_, r| r.deleted.is_none_or(|d| now.duration_since(d) < grace));
        before - self.pods.len()
    }

    /// Whether some deleted pod is waiting for its grace period to end.
    pub fn has_deleted_pods(&self) -> bool {
        self.pods.values().any(|r| r.deleted.is_some())
    }

    /// Pods known (deleted ones in their grace period included).
    pub fn pods(&self) -> usize {
        self.pods.len()
    }

    /// Distinct names stored once for every object that names them.
    pub fn interned(&self) -> usize {
        self.strings.len()
    }

    /// Resolves each pod's workload (a ReplicaSet's Deployment, a Job's CronJob). Runs on
    /// every rebuild, so it allocates only for pods whose workload changed.
    fn resolve_workloads(&mut self) {
        fn by_name(m: &HashMap<String, Controlled>) -> HashMap<(&str, &str), Option<&OwnerRef>> {
            m.values()
                .map(|c| ((&*c.namespace, &*c.name), c.owner.as_ref()))
                .collect()
        }
        let pod_kind = self.intern("Pod");
        let (rs, jobs) = (by_name(&self.replicasets), by_name(&self.jobs));
        for r in self.pods.values_mut() {
            let p = &r.pod;
            let (kind, name) = match &p.owner {
                None => (&pod_kind, &p.name),
                Some(o) => {
                    let parents = match &*o.kind {
                        "ReplicaSet" => Some(&rs),
                        "Job" => Some(&jobs),
                        _ => None,
                    };
                    match parents.and_then(|m| m.get(&(&*p.namespace, &*o.name))) {
                        Some(Some(w)) => (&w.kind, &w.name),
                        _ => (&o.kind, &o.name),
                    }
                }
            };
            if *kind != p.workload.kind || *name != p.workload.name {
                let mut pod = (**p).clone();
                pod.workload = OwnerRef {
                    kind: Arc::clone(kind),
                    name: Arc::clone(name),
                };
                r.pod = Arc::new(pod);
            }
        }
    }

    /// Builds a snapshot. Precedence for one IP: a live pod, then a deleted pod in its grace
    /// period, then a service, then a node (hostNetwork pods name their node).
    pub fn build(&mut self) -> IpIndex {
        self.resolve_workloads();
        let mut by_ip: FxHashMap<IpAddr, Entry> = FxHashMap::default();
        by_ip.reserve(self.pods.len() + self.services.len() + self.nodes.len());
        for (name, addrs) in self.nodes.values() {
            for ip in addrs {
                by_ip.insert(*ip, Entry::Node(Arc::clone(name)));
            }
        }
        let mut namespaces: BTreeMap<Arc<str>, NamespaceCounts> = BTreeMap::new();
        let mut services: HashMap<(Arc<str>, Arc<str>), Arc<Service>> = HashMap::new();
        for svc in self.services.values() {
            namespaces
                .entry(Arc::clone(&svc.namespace))
                .or_default()
                .services += 1;
            services.insert(
                (Arc::clone(&svc.namespace), Arc::clone(&svc.name)),
                Arc::clone(svc),
            );
            for ip in &svc.cluster_ips {
                by_ip.insert(*ip, Entry::Service(Arc::clone(svc)));
            }
        }
        // Deleted pods first, so a live pod with the same IP overwrites them.
        let mut host_ports = FxHashMap::default();
        for live in [false, true] {
            for r in self.pods.values().filter(|r| r.deleted.is_none() == live) {
                if live {
                    namespaces
                        .entry(Arc::clone(&r.pod.namespace))
                        .or_default()
                        .pods += 1;
                }
                if r.pod.host_network {
                    for ip in &r.pod.ips {
                        for port in &r.pod.host_ports {
                            host_ports.insert((*ip, *port), Arc::clone(&r.pod));
                        }
                    }
                    continue;
                }
                for ip in &r.pod.ips {
                    by_ip.insert(*ip, Entry::Pod(Arc::clone(&r.pod)));
                }
            }
        }
        let mut endpoints = FxHashMap::default();
        for s in self.slices.values() {
            let key = (Arc::clone(&s.namespace), Arc::clone(&s.service));
            let svc = services.get(&key).cloned().unwrap_or_else(|| {
                Arc::new(Service {
                    namespace: key.0,
                    name: key.1,
                    cluster_ips: Vec::new(),
                    ports: Vec::new(),
                })
            });
            for ip in &s.addresses {
                for port in &s.ports {
                    endpoints.insert((*ip, *port), Arc::clone(&svc));
                }
            }
        }
        let objects = [
            self.pods.len(),
            self.services.len(),
            self.slices.len(),
            self.nodes.len(),
            self.replicasets.len(),
            self.jobs.len(),
        ]
        .map(|n| n as u64);
        // Names no object holds any more (a ReplicaSet of an old rollout, a CronJob's finished
        // Job, a deleted namespace): without this the set grows for the agent's lifetime.
        // Names the index being built holds are kept; those only the previous index held go
        // at the next build.
        self.strings.retain(|s| Arc::strong_count(s) > 1);
        IpIndex {
            sizes: IndexSizes {
                objects,
                addresses: by_ip.len() as u64,
                endpoints: endpoints.len() as u64,
            },
            by_ip,
            endpoints,
            host_ports,
            namespaces,
            synced: Kind::ALL.iter().all(|k| self.synced.contains(k)),
        }
    }
}

fn stale<'a>(keys: impl Iterator<Item = &'a String>, seen: &HashSet<String>) -> Vec<String> {
    keys.filter(|k| !seen.contains(*k)).cloned().collect()
}

#[cfg(test)]
mod tests;
