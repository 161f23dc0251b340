//! The agent's Kubernetes watchers (the real kube-rs client and watcher, unmodified) against
//! an API server that speaks the real list/watch protocol: pod lifecycle, IP reuse, services
//! and their endpoints, owners, hostNetwork pods, 410 Gone, dropped connections, and an outage.

mod common;

use std::{
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use common::{
    apiserver::{FakeApiServer, Security, TlsFiles},
    cluster, wait_until,
};
use k8s_openapi::api::core::v1::Pod;
use otel_netprobe::{
    config::{K8sConfig, K8sMode},
    k8s::{
        K8s,
        index::IpIndex,
        naming::{Naming, NamingRules, Peer},
    },
};

const DEADLINE: Duration = Duration::from_secs(60);

/// A server, its kubeconfig, and the agent's watchers on it.
struct Cluster {
    api: FakeApiServer,
    k8s: K8s,
    rules: Arc<NamingRules>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn start(api: FakeApiServer, grace: Duration) -> Cluster {
    let dir = std::env::temp_dir().join(common::unique("kubecfg"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("kubeconfig");
    api.write_kubeconfig(&path);
    let cfg = K8sConfig {
        mode: K8sMode::Cluster,
        kubeconfig: path.display().to_string(),
        delete_grace: grace,
        ..K8sConfig::default()
    };
    let k8s = K8s::start(&cfg)
        .expect("watchers start")
        .expect("cluster mode");
    Cluster {
        api,
        k8s,
        rules: Arc::new(NamingRules::new(&cfg, true)),
        _dir: TempDir(dir),
    }
}

impl Cluster {
    fn index(&self) -> Arc<IpIndex> {
        self.k8s.shared().index()
    }

    fn naming(&self) -> Naming {
        Naming {
            index: self.index(),
            rules: Arc::clone(&self.rules),
        }
    }

    /// How `ip` (with `port`, for endpoints) is named now: "pod NAME KIND/WORKLOAD [svc S]",
    /// "svc S", "node N", "external", "unknown".
    fn name(&self, ip: &str, port: Option<u16>) -> String {
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
    fn name_at(&self, ip: &str, port: u16) -> String {
        let naming = self.naming();
        describe(naming.peer_at(ip.parse().expect("ip"), Some(port)))
    }

    /// Waits until `ip` is named `want`.
    fn wait_name(&self, ip: &str, port: Option<u16>, want: &str) {
        let ok = wait_until(DEADLINE, || self.name(ip, port) == want);
        assert!(ok, "{ip}: want {want:?}, got {:?}", self.name(ip, port));
    }

    fn wait_synced(&self) {
        assert!(
            wait_until(DEADLINE, || self.index().synced),
            "the watchers never completed their lists"
        );
    }

    fn restarts(&self, resource: &str) -> u64 {
        let h = self.k8s.shared().health();
        let i = otel_netprobe::k8s::resources()
            .iter()
            .position(|r| *r == resource)
            .expect("resource");
        h.watch_restarts[i]
    }
}

fn describe(peer: Peer<'_>) -> String {
    match peer {
        Peer::Pod(p) => format!("pod {} {}/{}", p.name, p.workload.kind, p.workload.name),
        Peer::Service(s) => format!("svc {}", s.name),
        Peer::Node(n) => format!("node {n}"),
        Peer::External(g) => g.to_string(),
        Peer::Unknown => "unknown".into(),
    }
}

#[test]
fn pods_services_owners_and_host_network() {
    let api = FakeApiServer::start_local();
    // Objects that exist before the agent starts arrive with the first list.
    api.apply(&cluster::node("node-a", "192.0.2.10"));
    api.apply(&cluster::replicaset("shop", "checkout-7d9f", "checkout"));
    api.apply(&cluster::pod(
        "shop",
        "checkout-7d9f-abcde",
        &["10.244.0.11", "fd00:244::11"],
        "node-a",
        Some(("ReplicaSet", "checkout-7d9f")),
    ));
    let c = start(api, Duration::from_secs(30));
    c.wait_synced();
    assert_eq!(
        c.name("10.244.0.11", None),
        "pod checkout-7d9f-abcde Deployment/checkout"
    );
    assert_eq!(
        c.name("fd00:244::11", None),
        "pod checkout-7d9f-abcde Deployment/checkout"
    );
    assert_eq!(c.name("192.0.2.10", None), "node node-a");
    // Once synced, an address nobody has is outside the cluster.
    assert_eq!(c.name("203.0.113.7", None), "external");

    // Objects that arrive while watching: a StatefulSet pod behind a service, a Job's pod
    // (named by its CronJob), and a hostNetwork pod (which names its node).
    c.api.apply(&cluster::pod(
        "payments",
        "payments-0",
        &["10.244.0.12"],
        "node-a",
        Some(("StatefulSet", "payments")),
    ));
    c.api.apply(&cluster::service(
        "payments",
        "payments",
        &["10.96.0.10"],
        443,
        8443,
    ));
    c.api.apply(&cluster::slice(
        "payments",
        "payments-x1",
        "payments",
        &["10.244.0.12"],
        8443,
    ));
    c.api.apply(&cluster::job("ops", "backup-2911", "backup"));
    c.api.apply(&cluster::pod(
        "ops",
        "backup-2911-q7",
        &["10.244.0.13"],
        "node-a",
        Some(("Job", "backup-2911")),
    ));
    c.api.apply(&cluster::host_pod(
        "kube-system",
        "node-exporter-x",
        "192.0.2.10",
        "node-a",
        9100,
    ));
    c.wait_name("10.96.0.10", Some(443), "svc payments");
    c.wait_name(
        "10.244.0.12",
        Some(8443),
        "pod payments-0 StatefulSet/payments svc payments",
    );
    assert_eq!(
        c.name("10.244.0.12", Some(9090)),
        "pod payments-0 StatefulSet/payments"
    );
    c.wait_name("10.244.0.13", None, "pod backup-2911-q7 CronJob/backup");
    assert_eq!(c.name("192.0.2.10", None), "node node-a");
    // ... except on the port the hostNetwork pod declares.
    assert_eq!(
        c.name_at("192.0.2.10", 9100),
        "pod node-exporter-x DaemonSet/node-exporter-x"
    );
    assert_eq!(c.name_at("192.0.2.10", 22), "node node-a");
    // Per-namespace counts: the hostNetwork pod counts in its namespace.
    let idx = c.index();
    let count = |ns: &str| idx.namespaces.get(ns).map(|n| (n.pods, n.services));
    assert_eq!(count("shop"), Some((1, 0)));
    assert_eq!(count("payments"), Some((1, 1)));
    assert_eq!(count("kube-system"), Some((1, 0)));

    // The service loses its endpoint; then the service goes.
    c.api.apply(&cluster::slice(
        "payments",
        "payments-x1",
        "payments",
        &[],
        8443,
    ));
    c.wait_name(
        "10.244.0.12",
        Some(8443),
        "pod payments-0 StatefulSet/payments",
    );
    c.api
        .delete::<k8s_openapi::api::core::v1::Service>(Some("payments"), "payments");
    c.wait_name("10.96.0.10", Some(443), "external");
}

#[test]
fn deleted_pods_linger_and_a_reused_ip_switches_at_once() {
    let api = FakeApiServer::start_local();
    for (name, ip) in [("old", "10.244.0.20"), ("gone", "10.244.0.21")] {
        api.apply(&cluster::pod("shop", name, &[ip], "node-a", None));
    }
    // A grace period far longer than any wait here: whatever changes within a deadline changes
    // because of what the API said, never because the grace period ran out.
    let c = start(api, Duration::from_secs(3600));
    c.wait_synced();
    assert_eq!(c.name("10.244.0.21", None), "pod gone Pod/gone");
    // Deleted: still named (late packets of a dying pod), also once later events are applied
    // (the watch delivers them in order: the marker comes after the deletion).
    c.api.delete::<Pod>(Some("shop"), "gone");
    c.api.apply(&cluster::pod(
        "shop",
        "marker",
        &["10.244.0.22"],
        "node-a",
        None,
    ));
    c.wait_name("10.244.0.22", None, "pod marker Pod/marker");
    assert_eq!(c.name("10.244.0.21", None), "pod gone Pod/gone");
    // The IP of a deleted pod is reused by a new pod: the new pod wins at once, an hour before
    // the old one's grace period ends.
    c.api.delete::<Pod>(Some("shop"), "old");
    c.api.apply(&cluster::pod(
        "shop",
        "new",
        &["10.244.0.20"],
        "node-a",
        None,
    ));
    c.wait_name("10.244.0.20", None, "pod new Pod/new");
}

#[test]
fn deleted_pods_are_forgotten_after_the_grace_period() {
    let api = FakeApiServer::start_local();
    api.apply(&cluster::pod(
        "shop",
        "gone",
        &["10.244.0.23"],
        "node-a",
        None,
    ));
    let c = start(api, Duration::from_secs(2));
    c.wait_synced();
    assert_eq!(c.name("10.244.0.23", None), "pod gone Pod/gone");
    c.api.delete::<Pod>(Some("shop"), "gone");
    c.wait_name("10.244.0.23", None, "external");
}

#[test]
fn gone_and_dropped_watches_are_resumed() {
    let api = FakeApiServer::start_local();
    api.apply(&cluster::pod("shop", "a", &["10.244.0.31"], "node-a", None));
    let c = start(api, Duration::from_secs(0));
    c.wait_synced();
    let lists = c.api.lists("pods");
    let watches = c.api.watches("pods");
    // A dropped connection: the watcher resumes from its resourceVersion, without a re-list.
    c.api.drop_watches();
    c.api
        .apply(&cluster::pod("shop", "b", &["10.244.0.32"], "node-a", None));
    c.wait_name("10.244.0.32", None, "pod b Pod/b");
    assert!(c.api.watches("pods") > watches, "the watch was resumed");
    assert_eq!(
        c.api.lists("pods"),
        lists,
        "no re-list after a dropped connection"
    );
    // 410 Gone: while the agent is cut off, a pod is deleted and the history is compacted;
    // the resumed watch gets 410, the watcher re-lists, and the pod missing from the list is
    // deleted.
    c.api.outage();
    c.api.delete::<Pod>(Some("shop"), "a");
    c.api
        .apply(&cluster::pod("shop", "c", &["10.244.0.33"], "node-a", None));
    c.api.compact();
    c.api.recover();
    c.wait_name("10.244.0.33", None, "pod c Pod/c");
    c.wait_name("10.244.0.31", None, "external");
    assert!(c.api.lists("pods") > lists, "a re-list after 410 Gone");
    assert!(c.restarts("pods") >= 1, "the failures are counted");
}

#[test]
fn an_api_outage_keeps_the_last_names_and_recovers() {
    let api = FakeApiServer::start_local();
    api.apply(&cluster::pod("shop", "a", &["10.244.0.41"], "node-a", None));
    api.apply(&cluster::pod("shop", "b", &["10.244.0.42"], "node-a", None));
    let c = start(api, Duration::from_secs(0));
    c.wait_synced();
    c.api.outage();
    // The store changes while the agent cannot see it.
    c.api.delete::<Pod>(Some("shop"), "a");
    c.api
        .apply(&cluster::pod("shop", "d", &["10.244.0.44"], "node-a", None));
    assert!(
        wait_until(DEADLINE, || c.restarts("pods") >= 1),
        "the failed watch is counted"
    );
    // Meanwhile the last known names keep naming.
    assert_eq!(c.name("10.244.0.41", None), "pod a Pod/a");
    assert!(c.index().synced);
    c.api.recover();
    c.wait_name("10.244.0.44", None, "pod d Pod/d");
    c.wait_name("10.244.0.41", None, "external");
    assert_eq!(c.name("10.244.0.42", None), "pod b Pod/b");
}

#[test]
fn unreachable_at_start_means_unknown_until_the_first_list() {
    let api = FakeApiServer::start_local();
    api.apply(&cluster::pod("shop", "a", &["10.244.0.51"], "node-a", None));
    api.outage();
    let c = start(api, Duration::from_secs(30));
    assert!(
        wait_until(DEADLINE, || c.restarts("pods") >= 1),
        "the failed list is counted"
    );
    assert!(!c.index().synced);
    assert_eq!(c.name("10.244.0.51", None), "unknown");
    assert_eq!(c.name("203.0.113.7", None), "unknown");
    c.api.recover();
    c.wait_synced();
    assert_eq!(c.name("10.244.0.51", None), "pod a Pod/a");
    assert_eq!(c.name("203.0.113.7", None), "external");
}

#[test]
fn cluster_mode_without_an_api_refuses_to_start() {
    let dir = std::env::temp_dir().join(common::unique("nokube"));
    let cfg = K8sConfig {
        mode: K8sMode::Cluster,
        kubeconfig: dir.join("missing").display().to_string(),
        ..K8sConfig::default()
    };
    let Err(e) = K8s::start(&cfg) else {
        panic!("a missing kubeconfig must stop the start")
    };
    let msg = e.to_string();
    assert!(
        msg.contains("k8s.kubeconfig") && msg.contains("missing"),
        "{msg}"
    );
}

#[test]
fn https_and_a_bearer_token_as_a_real_cluster_serves_them() {
    let dir = TempDir(std::env::temp_dir().join(common::unique("k8stls")));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    common::certs::make(&dir.0);
    let security = Security {
        tls: Some(TlsFiles {
            cert: dir.0.join("server.pem"),
            key: dir.0.join("server.key"),
            ca: dir.0.join("ca.pem"),
        }),
        token: Some("s3cr3t-token".into()),
    };
    let port = Arc::new(std::sync::atomic::AtomicU16::new(0));
    let bind = move || {
        let l =
            std::net::TcpListener::bind(("127.0.0.1", port.load(Ordering::Relaxed))).expect("bind");
        port.store(l.local_addr().expect("addr").port(), Ordering::Relaxed);
        l
    };
    let api = FakeApiServer::start_secure(bind, security);
    assert!(api.url().starts_with("https://"), "{}", api.url());
    api.apply(&cluster::pod("shop", "a", &["10.244.0.61"], "node-a", None));
    // The right token over TLS: the index fills.
    let c = start(api, Duration::from_secs(30));
    c.wait_synced();
    assert_eq!(c.name("10.244.0.61", None), "pod a Pod/a");
    assert_eq!(c.api.unauthorized(), 0);
    // A wrong token: every request is refused, the failures are counted, nothing is named.
    let wrong = dir.0.join("wrong-kubeconfig");
    c.api
        .write_kubeconfig_with_token(&wrong, Some("not-the-token"));
    let cfg = K8sConfig {
        mode: K8sMode::Cluster,
        kubeconfig: wrong.display().to_string(),
        ..K8sConfig::default()
    };
    let refused = K8s::start(&cfg).expect("starts").expect("cluster mode");
    let restarts = |k: &K8s| k.shared().health().watch_restarts.iter().sum::<u64>();
    assert!(
        wait_until(DEADLINE, || restarts(&refused) >= 6),
        "each watcher's refused list is counted"
    );
    assert!(c.api.unauthorized() >= 6);
    assert!(!refused.shared().index().synced);
    assert!(refused.shared().index().is_empty());
}
