//! The agent binary with the chart's own identity, against a real kube-apiserver: the chart is
//! installed (Helm SDK), the agent gets a token of the chart's ServiceAccount (TokenRequest)
//! in its kubeconfig, and runs in the lab's node namespace, where the API server listens on
//! loopback. The lab's pods are real API objects — Deployments → ReplicaSets → pods bound to
//! the node, a StatefulSet behind a Service and its EndpointSlice, a CronJob → Job → pod, a
//! DaemonSet's hostNetwork pod, the Node — with the lab's addresses written through the pod
//! status subresource. The agent's `/metrics` names the lab's traffic exactly, also across a
//! pod's deletion and the reuse of its IP; the server's audit log shows that the agent asked
//! for exactly list and watch of its six resources and was refused nothing; and the same token
//! is refused (403 Forbidden) what the chart's ClusterRole does not grant.

mod common;

use std::path::PathBuf;

use common::{
    NodeLab,
    addr::{NODE_UPLINK, OUTSIDE, PODS},
    binary::{Agent, command},
    kubeapi::{Credentials, KubeApiServer, requests::refusal},
    traffic,
};
use k8s_openapi::api::{
    apps::v1::Deployment,
    core::v1::{Pod, Secret},
};
use kube::{Api, api::ListParams};
use serde_json::json;

/// The matching series of `metric` in a Prometheus text: those carrying every label of
/// `labels`; (labels as written, value).
fn series(text: &str, metric: &str, labels: &[(&str, &str)]) -> Vec<(String, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(metric)?.strip_prefix('{')?;
            let (labels_text, value) = rest.rsplit_once("} ")?;
            Some((labels_text.to_owned(), value.parse().ok()?))
        })
        .filter(|(l, _)| {
            labels
                .iter()
                .all(|(k, v)| l.split(',').any(|p| p == format!("{k}=\"{v}\"")))
        })
        .collect()
}

/// Waits until exactly one series of `metric` with `labels` has the value `want`.
fn expect(agent: &Agent, metric: &str, labels: &[(&str, &str)], want: u64) {
    let what = format!("{metric} {labels:?} = {want}");
    let text = agent.wait_metrics(&what, |t| {
        let s = series(t, metric, labels);
        s.len() == 1 && (s[0].1 - want as f64).abs() < 0.5
    });
    let found = series(&text, metric, labels);
    assert_eq!(found.len(), 1, "{what}: {found:?}");
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one cluster's story: install, objects, traffic and names, deletion, reuse, RBAC"
)]
fn the_agent_with_the_charts_token_names_real_api_objects() {
    common::require_root();
    let lab = NodeLab::new("kagent");
    let api = KubeApiServer::start_in(&lab.node);
    println!(
        "kube-apiserver + etcd ready in {:.1} s",
        api.start_time.as_secs_f64()
    );
    let release = api
        .helm_install("np", "netprobe", &json!({}))
        .expect("helm install");
    let token = api.agent_token(&release);
    let dir = TempDir(std::env::temp_dir().join(common::unique("kagent")));
    std::fs::create_dir_all(&dir.0).expect("temp dir");
    let kubeconfig = dir.0.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Credentials::Token(token.clone()));

    // The cluster the lab plays: one node, pods on its bridge.
    for ns in ["shop", "payments", "ops", "monitoring"] {
        api.namespace(ns);
    }
    api.node("node-a", NODE_UPLINK);
    let checkout = api.deployment("shop", "checkout", "7d9f");
    api.pod(
        "shop",
        "checkout-7d9f-aaaaa",
        Some(&checkout),
        "node-a",
        &[PODS[0]],
    );
    let payments = api.statefulset("payments", "payments");
    api.pod(
        "payments",
        "payments-0",
        Some(&payments),
        "node-a",
        &[PODS[1]],
    );
    api.service("payments", "payments", Some("10.96.0.10"), 443, 8443);
    api.endpoint_slice("payments", "payments-q2x", "payments", &[PODS[1]], 8443);
    let report = api.cronjob("ops", "report", "2911");
    api.pod("ops", "report-2911-x7", Some(&report), "node-a", &[PODS[2]]);
    let exporter = api.daemonset("monitoring", "node-exporter");
    api.host_pod(
        "monitoring",
        "node-exporter-n1",
        Some(&exporter),
        "node-a",
        NODE_UPLINK,
        9100,
    );

    let config = dir.0.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "flows:\n  poll_interval: 200ms\nhttp:\n  listen: 127.0.0.1:9464\nk8s:\n  mode: cluster\n  \
             kubeconfig: {}\n  cluster_cidrs: [10.244.0.0/16]\n  delete_grace: 1h\n",
            kubeconfig.display()
        ),
    )
    .expect("config");
    let mut cmd = command(&["run", "--config", &config.display().to_string()]);
    cmd.env("K8S_NODE_NAME", "node-a");
    let agent = Agent::start(&lab.node, cmd, "127.0.0.1:9464".parse().expect("addr"));
    agent.wait_metrics("the index synced", |t| {
        t.lines().any(|l| l == "netprobe_agent_k8s_synced 1")
    });

    // checkout → the payments pod on the Service's target port; the report Job's pod →
    // checkout; the outside → payments; payments → the node's exporter (hostNetwork pod, on
    // its declared port) and the node itself (another port).
    let (checkout_ns, payments_ns, report_ns) = (&lab.pods[0], &lab.pods[1], &lab.pods[2]);
    let at = |ip: &str, port: u16| format!("{ip}:{port}");
    traffic::udp(
        checkout_ns,
        &at(PODS[0], 40100),
        payments_ns,
        &at(PODS[1], 8443),
        10,
        200,
    );
    traffic::udp(
        report_ns,
        &at(PODS[2], 40200),
        checkout_ns,
        &at(PODS[0], 7000),
        5,
        100,
    );
    traffic::udp(
        &lab.outside,
        &at(OUTSIDE, 40300),
        payments_ns,
        &at(PODS[1], 8443),
        4,
        100,
    );
    traffic::udp(
        payments_ns,
        &at(PODS[1], 40400),
        &lab.node,
        &at(NODE_UPLINK, 9100),
        3,
        100,
    );
    traffic::udp(
        payments_ns,
        &at(PODS[1], 40500),
        &lab.node,
        &at(NODE_UPLINK, 9101),
        2,
        100,
    );

    let packets = "netprobe_flow_packets_total";
    let checkout_src = [
        ("source_k8s_namespace_name", "shop"),
        ("source_k8s_workload_name", "checkout"),
        ("source_k8s_workload_kind", "Deployment"),
    ];
    let to_payments = [
        ("destination_k8s_namespace_name", "payments"),
        ("destination_k8s_workload_name", "payments"),
        ("destination_k8s_workload_kind", "StatefulSet"),
        ("destination_k8s_service_name", "payments"),
        ("destination_port", "8443"),
        ("network_transport", "udp"),
    ];
    let labels =
        |a: &[(&'static str, &'static str)], b: &[(&'static str, &'static str)]| [a, b].concat();
    expect(&agent, packets, &labels(&checkout_src, &to_payments), 10);
    expect(
        &agent,
        "netprobe_flow_bytes_total",
        &labels(&checkout_src, &to_payments),
        2280,
    );
    expect(
        &agent,
        packets,
        &[
            ("source_k8s_namespace_name", "ops"),
            ("source_k8s_workload_name", "report"),
            ("source_k8s_workload_kind", "CronJob"),
            ("destination_k8s_workload_name", "checkout"),
            ("destination_port", "7000"),
        ],
        5,
    );
    expect(
        &agent,
        packets,
        &labels(
            &[
                ("source_k8s_workload_name", "external"),
                ("source_k8s_workload_kind", "external"),
            ],
            &to_payments,
        ),
        4,
    );
    let from_payments = [
        ("source_k8s_workload_name", "payments"),
        ("source_k8s_workload_kind", "StatefulSet"),
    ];
    expect(
        &agent,
        packets,
        &labels(
            &from_payments,
            &[
                ("destination_k8s_namespace_name", "monitoring"),
                ("destination_k8s_workload_name", "node-exporter"),
                ("destination_k8s_workload_kind", "DaemonSet"),
                ("destination_port", "9100"),
            ],
        ),
        3,
    );
    expect(
        &agent,
        packets,
        &labels(
            &from_payments,
            &[
                ("destination_k8s_workload_name", "node-a"),
                ("destination_k8s_workload_kind", "Node"),
                ("destination_port", "9101"),
            ],
        ),
        2,
    );
    for (ns, pods) in [("shop", 1), ("payments", 1), ("ops", 1), ("monitoring", 1)] {
        expect(
            &agent,
            "netprobe_k8s_pods",
            &[("k8s_namespace_name", ns)],
            pods,
        );
    }
    expect(
        &agent,
        "netprobe_k8s_services",
        &[("k8s_namespace_name", "netprobe")],
        2,
    );

    // The checkout pod is deleted: its address keeps naming it for the grace period (an hour
    // here), so late packets of a dying pod are still its own.
    assert!(api.delete::<Pod>(Some("shop"), "checkout-7d9f-aaaaa"));
    // A namespace without live pods or services has no series.
    agent.wait_metrics("the deletion seen: no pods in shop", |t| {
        series(t, "netprobe_k8s_pods", &[("k8s_namespace_name", "shop")]).is_empty()
    });
    traffic::udp(
        checkout_ns,
        &at(PODS[0], 40110),
        report_ns,
        &at(PODS[2], 7100),
        6,
        100,
    );
    expect(
        &agent,
        packets,
        &labels(
            &checkout_src,
            &[
                ("destination_k8s_workload_name", "report"),
                ("destination_port", "7100"),
            ],
        ),
        6,
    );
    // A new pod of another Deployment gets the IP: it names the address at once.
    let web = api.deployment("shop", "web", "5c8d");
    api.pod("shop", "web-5c8d-bbbbb", Some(&web), "node-a", &[PODS[0]]);
    expect(
        &agent,
        "netprobe_k8s_pods",
        &[("k8s_namespace_name", "shop")],
        1,
    );
    traffic::udp(
        checkout_ns,
        &at(PODS[0], 40120),
        report_ns,
        &at(PODS[2], 7200),
        7,
        100,
    );
    expect(
        &agent,
        packets,
        &[
            ("source_k8s_namespace_name", "shop"),
            ("source_k8s_workload_name", "web"),
            ("source_k8s_workload_kind", "Deployment"),
            ("destination_port", "7200"),
        ],
        7,
    );
    let text = agent.metrics();
    assert!(
        series(
            &text,
            packets,
            &[
                ("source_k8s_workload_name", "checkout"),
                ("destination_port", "7200")
            ]
        )
        .is_empty(),
        "the reused address named the old pod"
    );
    let restarts = series(&text, "netprobe_agent_k8s_watch_restarts_total", &[]);
    assert!(
        restarts.len() == 6 && restarts.iter().all(|(_, v)| *v < 0.5),
        "no watch failed: {restarts:?}"
    );

    // What the agent asked the server, from its audit log: list and watch of exactly its six
    // resources (ReplicaSets and Jobs as metadata, which RBAC sees as the same verbs), all
    // allowed. A watch is logged when its response starts (it completes only when it ends).
    let user = format!(
        "system:serviceaccount:{}:{}",
        release.namespace,
        release.agent_name()
    );
    let mut asked: Vec<String> = api
        .audit_events()
        .iter()
        .filter(|e| {
            e["user"]["username"] == user.as_str()
                && (e["stage"] == "ResponseComplete" || e["stage"] == "ResponseStarted")
        })
        .map(|e| {
            let r = &e["objectRef"];
            format!(
                "{} {}/{} -> {}",
                e["verb"].as_str().unwrap_or("?"),
                r["apiGroup"].as_str().unwrap_or(""),
                r["resource"].as_str().unwrap_or("?"),
                e["responseStatus"]["code"]
            )
        })
        .collect();
    asked.sort();
    asked.dedup();
    let want: Vec<String> = [
        "/nodes",
        "/pods",
        "/services",
        "apps/replicasets",
        "batch/jobs",
        "discovery.k8s.io/endpointslices",
    ]
    .iter()
    .flat_map(|r| [format!("list {r} -> 200"), format!("watch {r} -> 200")])
    .collect::<std::collections::BTreeSet<_>>()
    .into_iter()
    .collect();
    assert_eq!(asked, want, "the agent's requests");

    // The same token, asking for what the ClusterRole does not grant: refused by RBAC.
    let client = api.client(&Credentials::Token(token));
    let c = client.clone();
    let secrets =
        api.block_on(async move { Api::<Secret>::all(c).list(&ListParams::default()).await });
    let e = secrets.expect_err("listing Secrets must be refused");
    let status = refusal(&e).expect("an API refusal");
    println!("Forbidden: {}", status.message);
    assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        status.message,
        format!(
            "secrets is forbidden: User \"{user}\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        )
    );
    let deployments = api.block_on(async move {
        use futures::StreamExt as _;
        let api = Api::<Deployment>::all(client);
        let mut stream = api
            .watch(&kube::api::WatchParams::default(), "0")
            .await?
            .boxed();
        stream.next().await.transpose()
    });
    let e = deployments.expect_err("watching Deployments must be refused");
    let status = refusal(&e).expect("an API refusal");
    println!("Forbidden: {}", status.message);
    assert_eq!(status.code, 403);
    assert_eq!(
        status.message,
        format!(
            "deployments.apps is forbidden: User \"{user}\" cannot watch resource \"deployments\" in API group \"apps\" at the cluster scope"
        )
    );
    drop(agent);
    api.helm_uninstall(&release);
}
