//! The agent's Kubernetes watchers run in-process (`K8s::start`, the real kube-rs client and
//! watchers), and how they name an address, in one line a test can compare: for the watcher
//! tests against the real API server (`tests/k8s_apiserver.rs`) and the list/watch test
//! server (`tests/k8s.rs`) alike.

use std::{net::IpAddr, path::Path, sync::Arc, time::Duration};

use otel_netprobe::{
    config::{K8sConfig, K8sMode},
    k8s::{
        K8s,
        index::IpIndex,
        naming::{Naming, NamingRules, Peer},
    },
};

use super::wait_until;

/// How long a test waits for the watchers to see a change.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// The watchers, started on a kubeconfig.
pub struct Watchers {
    /// The running watchers.
    pub k8s: K8s,
    rules: Arc<NamingRules>,
}

impl Watchers {
    /// Starts the watchers in cluster mode on `kubeconfig`, deleted pods naming their IP for
    /// `grace`; in the network namespace `netns` when given (where the API server listens).
    pub fn start(kubeconfig: &Path, grace: Duration, netns: Option<&str>) -> Self {
        let cfg = K8sConfig {
            mode: K8sMode::Cluster,
            kubeconfig: kubeconfig.display().to_string(),
            delete_grace: grace,
            ..K8sConfig::default()
        };
        let rules = Arc::new(NamingRules::new(&cfg, true));
        let k8s = super::within(netns, move || {
            K8s::start(&cfg)
                .expect("watchers start")
                .expect("cluster mode")
        });
        Self { k8s, rules }
    }

    /// The current index.
    pub fn index(&self) -> Arc<IpIndex> {
        self.k8s.shared().index()
    }

    fn naming(&self) -> Naming {
        Naming {
            index: self.index(),
            rules: Arc::clone(&self.rules),
            local: Arc::from([]),
        }
    }

    /// How `ip` (with `port`, for endpoints) is named now: "pod NAME KIND/WORKLOAD [svc S]",
    /// "svc S", "node N", "external", "unknown".
    pub fn name(&self, ip: &str, port: Option<u16>) -> String {
        let naming = self.naming();
        let ip: IpAddr = ip.parse().expect("ip");
        let peer = naming.peer(ip);
        let svc = naming
            .service(peer, ip, port)
            .map(|s| format!(" svc {}", s.name))
            .unwrap_or_default();
        match peer {
            Peer::Pod(_) => format!("{}{svc}", describe(peer)),
            _ => describe(peer),
        }
    }

    /// How `ip` is named as the server on `port` (a hostNetwork pod on its declared ports).
    pub fn name_at(&self, ip: &str, port: u16) -> String {
        let naming = self.naming();
        describe(naming.peer_at(ip.parse().expect("ip"), Some(port)))
    }

    /// Waits until `ip` is named `want`.
    pub fn wait_name(&self, ip: &str, port: Option<u16>, want: &str) {
        let ok = wait_until(DEADLINE, || self.name(ip, port) == want);
        assert!(ok, "{ip}: want {want:?}, got {:?}", self.name(ip, port));
    }

    /// Waits until every watcher has completed its first list.
    pub fn wait_synced(&self) {
        assert!(
            wait_until(DEADLINE, || self.index().synced),
            "the watchers never completed their lists: {:?}",
            self.k8s.shared().health()
        );
    }

    /// Watch failures of `resource` so far.
    pub fn restarts(&self, resource: &str) -> u64 {
        let h = self.k8s.shared().health();
        let i = otel_netprobe::k8s::resources()
            .iter()
            .position(|r| *r == resource)
            .expect("resource");
        h.watch_restarts[i]
    }

    /// Watch failures of every resource so far.
    pub fn all_restarts(&self) -> u64 {
        self.k8s.shared().health().watch_restarts.iter().sum()
    }
}

/// One line for what an address belongs to.
pub fn describe(peer: Peer<'_>) -> String {
    match peer {
        Peer::Pod(p) => format!("pod {} {}/{}", p.name, p.workload.kind, p.workload.name),
        Peer::Service(s) => format!("svc {}", s.name),
        Peer::Node(n) => format!("node {n}"),
        Peer::External(g) => g.to_string(),
        Peer::Unknown => "unknown".into(),
    }
}
