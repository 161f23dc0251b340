//! The agent's Kubernetes watchers (the real kube-rs client and watchers, in-process) against a
//! real kube-apiserver with etcd (`tests/common/kubeapi/`), speaking as the chart's own
//! ServiceAccount: the chart is installed with the Helm SDK and the watchers use a token of
//! its agent ServiceAccount (TokenRequest), so they work with exactly the chart's ClusterRole.
//!
//! Every object is a real API object, admitted and defaulted by the server: Deployments →
//! ReplicaSets → pods, a StatefulSet, a CronJob → Job → pod, a DaemonSet's hostNetwork pod,
//! Services with ClusterIPs from the server's range, EndpointSlices, a Node; pod status through
//! the status subresource. Names, owners, services, hostNetwork pods, graceful and immediate
//! deletion, IP reuse, finished pods and the grace period are checked here; the faults a real
//! server does not produce on demand (410 Gone, cut watches, outages) stay with the list/watch
//! test server in `tests/k8s.rs`.
//!
//! One API server per test: it starts in a few seconds, and each test is a whole scenario.

mod common;

use std::{path::PathBuf, time::Duration};

use common::{
    kubeapi::{Credentials, KubeApiServer},
    wait_until,
    watchers::{DEADLINE, Watchers},
};
use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(common::unique(tag));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The server, with the chart installed as release `np` in `netprobe`, and a kubeconfig that
/// speaks as the chart's agent ServiceAccount.
fn server_with_chart(dir: &TempDir) -> (KubeApiServer, PathBuf) {
    let api = KubeApiServer::start();
    println!(
        "kube-apiserver + etcd ready in {:.1} s",
        api.start_time.as_secs_f64()
    );
    let release = api
        .helm_install("np", "netprobe", &json!({}))
        .expect("helm install");
    let kubeconfig = dir.0.join("agent.kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Credentials::Token(api.agent_token(&release)));
    (api, kubeconfig)
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one cluster's story: objects before and after the start, then their ends"
)]
fn the_agents_watchers_name_real_api_objects() {
    common::require_root();
    let dir = TempDir::new("k8sapi");
    let (api, kubeconfig) = server_with_chart(&dir);
    for ns in ["shop", "payments", "ops", "monitoring"] {
        api.namespace(ns);
    }
    // Objects that exist before the agent starts arrive with the first list.
    api.node("node-a", "192.0.2.10");
    let checkout = api.deployment("shop", "checkout", "7d9f");
    api.pod(
        "shop",
        "checkout-7d9f-abcde",
        Some(&checkout),
        "node-a",
        &["10.244.0.11", "fd00:244::11"],
    );
    // Deleted pods name their IP for an hour here (nothing a test waits for outlives it), and
    // for two seconds in `short`, which shows the grace period's end.
    let w = Watchers::start(&kubeconfig, Duration::from_secs(3600), Some(&api.netns));
    let short = Watchers::start(&kubeconfig, Duration::from_secs(2), Some(&api.netns));
    w.wait_synced();
    short.wait_synced();
    assert_eq!(w.all_restarts(), 0, "every list and watch was allowed");
    let checkout_pod = "pod checkout-7d9f-abcde Deployment/checkout";
    assert_eq!(w.name("10.244.0.11", None), checkout_pod);
    assert_eq!(w.name("fd00:244::11", None), checkout_pod);
    assert_eq!(w.name("192.0.2.10", None), "node node-a");
    assert_eq!(w.name("203.0.113.7", None), "external");

    // Objects that arrive while watching: a StatefulSet pod behind a Service, a CronJob's
    // Job's pod, a DaemonSet's hostNetwork pod (which shares its node's address), and a
    // Service whose ClusterIP the server allocates.
    let payments = api.statefulset("payments", "payments");
    api.pod(
        "payments",
        "payments-0",
        Some(&payments),
        "node-a",
        &["10.244.0.12"],
    );
    api.service("payments", "payments", Some("10.96.0.10"), 443, 8443);
    api.endpoint_slice(
        "payments",
        "payments-x1",
        "payments",
        &["10.244.0.12"],
        8443,
    );
    let backup = api.cronjob("ops", "backup", "2911");
    api.pod(
        "ops",
        "backup-2911-q7",
        Some(&backup),
        "node-a",
        &["10.244.0.13"],
    );
    let exporter = api.daemonset("monitoring", "node-exporter");
    api.host_pod(
        "monitoring",
        "node-exporter-x1",
        Some(&exporter),
        "node-a",
        "192.0.2.10",
        9100,
    );
    let web: Service = api.service("shop", "web", None, 80, 8080);
    let web_ip = web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("an allocated ClusterIP");
    assert!(web_ip.starts_with("10.96."), "{web_ip} is in 10.96.0.0/16");
    w.wait_name("10.96.0.10", Some(443), "svc payments");
    w.wait_name(&web_ip, Some(80), "svc web");
    w.wait_name(
        "10.244.0.12",
        Some(8443),
        "pod payments-0 StatefulSet/payments svc payments",
    );
    assert_eq!(
        w.name("10.244.0.12", Some(9090)),
        "pod payments-0 StatefulSet/payments"
    );
    w.wait_name("10.244.0.13", None, "pod backup-2911-q7 CronJob/backup");
    w.wait_name("192.0.2.10", None, "node node-a");
    assert!(
        wait_until(DEADLINE, || w.name_at("192.0.2.10", 9100)
            == "pod node-exporter-x1 DaemonSet/node-exporter"),
        "the hostNetwork pod on its port: {}",
        w.name_at("192.0.2.10", 9100)
    );
    assert_eq!(w.name_at("192.0.2.10", 22), "node node-a");
    // Per namespace, the whole cluster: the chart's two Services, the API's own `kubernetes`.
    let counts = || {
        let idx = w.index();
        idx.namespaces
            .iter()
            .map(|(ns, c)| format!("{ns}: {} pods, {} services", c.pods, c.services))
            .collect::<Vec<_>>()
    };
    let want = [
        "default: 0 pods, 1 services",
        "monitoring: 1 pods, 0 services",
        "netprobe: 0 pods, 2 services",
        "ops: 1 pods, 0 services",
        "payments: 1 pods, 1 services",
        "shop: 1 pods, 1 services",
    ];
    assert!(
        wait_until(DEADLINE, || counts() == want),
        "namespace counts: {:?}",
        counts()
    );

    // The Service loses its endpoint; then the Service goes.
    api.endpoint_slice("payments", "payments-x1", "payments", &[], 8443);
    w.wait_name(
        "10.244.0.12",
        Some(8443),
        "pod payments-0 StatefulSet/payments",
    );
    assert!(api.delete::<Service>(Some("payments"), "payments"));
    w.wait_name("10.96.0.10", Some(443), "external");

    // `kubectl delete pod`: the server only marks it (no kubelet confirms here), and a
    // terminating pod still serves its last requests: it keeps its name in both indexes.
    assert!(api.delete_gracefully::<Pod>(Some("payments"), "payments-0"));
    let marked = api.list::<Pod>(Some("payments"));
    assert!(
        marked[0].metadata.deletion_timestamp.is_some(),
        "graceful deletion marks the pod"
    );
    // Gone for real (the kubelet's confirmation, forced): named for the grace period, then
    // forgotten. The marker pod, applied after the deletion, shows the watchers got that far.
    assert!(api.delete::<Pod>(Some("payments"), "payments-0"));
    api.pod("payments", "marker", None, "node-a", &["10.244.0.14"]);
    w.wait_name("10.244.0.14", None, "pod marker Pod/marker");
    assert_eq!(
        w.name("10.244.0.12", None),
        "pod payments-0 StatefulSet/payments"
    );
    short.wait_name("10.244.0.12", None, "external");
    // A finished pod has released its IP: it counts as deleted (no longer in its namespace's
    // count) and still names its address for the grace period.
    api.finish_pod("ops", "backup-2911-q7");
    assert!(
        wait_until(DEADLINE, || w
            .index()
            .namespaces
            .get("ops")
            .map_or(0, |c| c.pods)
            == 0),
        "the finished pod left the count"
    );
    assert_eq!(
        w.name("10.244.0.13", None),
        "pod backup-2911-q7 CronJob/backup"
    );
    short.wait_name("10.244.0.13", None, "external");
    // The IP of a deleted pod is reused by a new pod of another Deployment: the new pod wins
    // at once, an hour before the old one's grace period ends.
    assert!(api.delete::<Pod>(Some("shop"), "checkout-7d9f-abcde"));
    let web_rs = api.deployment("shop", "web", "5c8d");
    api.pod(
        "shop",
        "web-5c8d-zzzzz",
        Some(&web_rs),
        "node-a",
        &["10.244.0.11"],
    );
    w.wait_name("10.244.0.11", None, "pod web-5c8d-zzzzz Deployment/web");
    // Its IPv6 address was not reused: still the deleted pod's.
    assert_eq!(w.name("fd00:244::11", None), checkout_pod);
    assert_eq!(w.all_restarts(), 0, "no watch failed");
}

#[test]
fn tokens_the_server_refuses_name_nothing() {
    common::require_root();
    let dir = TempDir::new("k8stok");
    let (api, kubeconfig) = server_with_chart(&dir);
    api.namespace("shop");
    api.pod("shop", "a", None, "node-a", &["10.244.0.61"]);
    // The chart's identity, over TLS: the index fills.
    let w = Watchers::start(&kubeconfig, Duration::from_secs(30), Some(&api.netns));
    w.wait_synced();
    assert_eq!(w.name("10.244.0.61", None), "pod a Pod/a");
    // A token the server never issued: 401 for every watcher, counted; nothing is named.
    let forged = dir.0.join("forged.kubeconfig");
    api.write_kubeconfig(&forged, &Credentials::Token("not-a-token".into()));
    let refused = Watchers::start(&forged, Duration::from_secs(30), Some(&api.netns));
    // A real token of a ServiceAccount without the chart's binding: 403 for every watcher.
    api.apply::<k8s_openapi::api::core::v1::ServiceAccount>(
        &serde_json::from_value(json!({"metadata": {"name": "nobody", "namespace": "shop"}}))
            .expect("a ServiceAccount"),
    );
    let unbound = dir.0.join("unbound.kubeconfig");
    api.write_kubeconfig(&unbound, &Credentials::Token(api.token("shop", "nobody")));
    let forbidden = Watchers::start(&unbound, Duration::from_secs(30), Some(&api.netns));
    for (what, w) in [
        ("a forged token", &refused),
        ("an unbound token", &forbidden),
    ] {
        assert!(
            wait_until(DEADLINE, || w.all_restarts() >= 6),
            "{what}: each watcher's refused list is counted"
        );
        assert!(!w.index().synced, "{what}");
        assert!(w.index().is_empty(), "{what}");
        assert_eq!(w.name("10.244.0.61", None), "unknown", "{what}");
    }
    // What the server said, from its audit log.
    let events = api.audit_events();
    let codes = |user: &str| -> Vec<u64> {
        let mut v: Vec<u64> = events
            .iter()
            .filter(|e| e["user"]["username"] == user && e["stage"] == "ResponseComplete")
            .filter_map(|e| e["responseStatus"]["code"].as_u64())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    assert_eq!(codes("system:serviceaccount:shop:nobody"), [403]);
    assert!(
        events.iter().any(|e| e["responseStatus"]["code"] == 401),
        "the forged token's requests are refused as unauthenticated"
    );
}
