//! The agent's Kubernetes watchers (the real kube-rs client and watcher, unmodified) against
//! `tests/common/apiserver/`, the list/watch test server, for the faults a real API server
//! does not produce on demand: a watch cut mid-stream (resumed without a re-list), 410 Gone
//! after a compaction while the agent was away (a re-list, and what it no longer lists is
//! deleted), an outage during which the store changes (the last names keep naming), and
//! connections refused at start. Everything a real server can show — names, owners, services,
//! hostNetwork pods, deletion, IP reuse, TLS and tokens — is tested against the real
//! kube-apiserver in `tests/k8s_apiserver.rs`.

mod common;

use std::time::Duration;

use common::{
    apiserver::FakeApiServer,
    cluster, wait_until,
    watchers::{DEADLINE, Watchers},
};
use k8s_openapi::api::core::v1::Pod;
use otel_netprobe::{
    config::{K8sConfig, K8sMode},
    k8s::K8s,
};

/// The list/watch server, its kubeconfig, and the agent's watchers on it.
struct Cluster {
    api: FakeApiServer,
    w: Watchers,
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
    Cluster {
        api,
        w: Watchers::start(&path, grace, None),
        _dir: TempDir(dir),
    }
}

#[test]
fn gone_and_dropped_watches_are_resumed() {
    let api = FakeApiServer::start_local();
    api.apply(&cluster::pod("shop", "a", &["10.244.0.31"], "node-a", None));
    let c = start(api, Duration::from_secs(0));
    c.w.wait_synced();
    let lists = c.api.lists("pods");
    let watches = c.api.watches("pods");
    // A dropped connection: the watcher resumes from its resourceVersion, without a re-list.
    c.api.drop_watches();
    c.api
        .apply(&cluster::pod("shop", "b", &["10.244.0.32"], "node-a", None));
    c.w.wait_name("10.244.0.32", None, "pod b Pod/b");
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
    c.w.wait_name("10.244.0.33", None, "pod c Pod/c");
    c.w.wait_name("10.244.0.31", None, "external");
    assert!(c.api.lists("pods") > lists, "a re-list after 410 Gone");
    assert!(c.w.restarts("pods") >= 1, "the failures are counted");
}

#[test]
fn an_api_outage_keeps_the_last_names_and_recovers() {
    let api = FakeApiServer::start_local();
    api.apply(&cluster::pod("shop", "a", &["10.244.0.41"], "node-a", None));
    api.apply(&cluster::pod("shop", "b", &["10.244.0.42"], "node-a", None));
    let c = start(api, Duration::from_secs(0));
    c.w.wait_synced();
    c.api.outage();
    // The store changes while the agent cannot see it.
    c.api.delete::<Pod>(Some("shop"), "a");
    c.api
        .apply(&cluster::pod("shop", "d", &["10.244.0.44"], "node-a", None));
    assert!(
        wait_until(DEADLINE, || c.w.restarts("pods") >= 1),
        "the failed watch is counted"
    );
    // Meanwhile the last known names keep naming.
    assert_eq!(c.w.name("10.244.0.41", None), "pod a Pod/a");
    assert!(c.w.index().synced);
    c.api.recover();
    c.w.wait_name("10.244.0.44", None, "pod d Pod/d");
    c.w.wait_name("10.244.0.41", None, "external");
    assert_eq!(c.w.name("10.244.0.42", None), "pod b Pod/b");
}

#[test]
fn unreachable_at_start_means_unknown_until_the_first_list() {
    let api = FakeApiServer::start_local();
    api.apply(&cluster::pod("shop", "a", &["10.244.0.51"], "node-a", None));
    api.outage();
    let c = start(api, Duration::from_secs(30));
    assert!(
        wait_until(DEADLINE, || c.w.restarts("pods") >= 1),
        "the failed list is counted"
    );
    assert!(!c.w.index().synced);
    assert_eq!(c.w.name("10.244.0.51", None), "unknown");
    assert_eq!(c.w.name("203.0.113.7", None), "unknown");
    c.api.recover();
    c.w.wait_synced();
    assert_eq!(c.w.name("10.244.0.51", None), "pod a Pod/a");
    assert_eq!(c.w.name("203.0.113.7", None), "external");
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
