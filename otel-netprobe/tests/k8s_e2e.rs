//! End to end with Kubernetes names: the lab's pods are real API objects in a real
//! kube-apiserver (namespaces, Deployments → ReplicaSets → pods, a StatefulSet, a Service with
//! its ClusterIP and EndpointSlice), read by the agent with a token of the chart's own
//! ServiceAccount; the node translates the Service's ClusterIP with nftables as kube-proxy
//! would. Traffic between them arrives in VictoriaMetrics with workload-level attributes (no
//! addresses) and exact counts.

mod common;

use std::time::Duration;

use common::{
    Netns, NodeLab,
    addr::{NODE_UPLINK, OUTSIDE, PODS},
    agent::{start_with, wait_attached},
    backends::{VictoriaMetrics, single_value},
    kubeapi::{Credentials, KubeApiServer},
    sh, traffic,
};
use otel_netprobe::config::{K8sMode, OtlpConfig, OtlpProtocol};
use serde_json::Value;

/// The routed pod (its own /24 on the node, like a CNI without a bridge) that serves the
/// `payments` Service: replies to a translated ClusterIP must cross the node's IP layer.
const PAYMENTS: &str = "10.244.1.3";
/// In the API server's `--service-cluster-ip-range` (10.96.0.0/16).
const CLUSTER_IP: &str = "10.96.0.10";

fn routed_pod(lab: &NodeLab) -> Netns {
    let pod = Netns::new(&format!("{}-pay", lab.node.name));
    lab.node.ip(&format!(
        "link add vethpay type veth peer name eth0 netns {}",
        pod.name
    ));
    lab.node.ip("addr add 10.244.1.1/24 dev vethpay");
    lab.node.ip("link set vethpay up");
    pod.ip(&format!("addr add {PAYMENTS}/24 dev eth0"));
    pod.ip("link set eth0 up");
    pod.ip("route add default via 10.244.1.1");
    pod
}

/// kube-proxy's part: ClusterIP:443 → the payments pod's 8443, in the node's namespace.
fn service_nat(node: &Netns) {
    sh(&format!(
        "ip netns exec {} nft -f - <<'EOF'\ntable ip netprobe_lab {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    ip daddr {CLUSTER_IP} tcp dport 443 dnat to {PAYMENTS}:8443\n  }}\n}}\nEOF",
        node.name
    ));
}

fn register(api: &KubeApiServer) {
    for ns in ["shop", "payments"] {
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
    let web = api.deployment("shop", "web", "5c8d");
    api.pod("shop", "web-5c8d-bbbbb", Some(&web), "node-a", &[PODS[1]]);
    let payments = api.statefulset("payments", "payments");
    api.pod(
        "payments",
        "payments-0",
        Some(&payments),
        "node-a",
        &[PAYMENTS],
    );
    api.service("payments", "payments", Some(CLUSTER_IP), 443, 8443);
    api.endpoint_slice("payments", "payments-q2x", "payments", &[PAYMENTS], 8443);
}

fn sel(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: the lab, its traffic, then every series it must produce"
)]
fn kubernetes_names_arrive_in_victoria_metrics_with_exact_counts() {
    common::require_root();
    let lab = NodeLab::new("k8s");
    let payments = routed_pod(&lab);
    service_nat(&lab.node);
    let api = KubeApiServer::start_in(&lab.node);
    register(&api);
    // The agent's identity: the chart's ServiceAccount, bound to its ClusterRole.
    let release = api
        .helm_install("np", "netprobe", &serde_json::json!({}))
        .expect("helm install");
    let dir = std::env::temp_dir().join(common::unique("k8se2e"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, &Credentials::Token(api.agent_token(&release)));
    let vm = VictoriaMetrics::start_in(Some(&lab.node.name));
    let agent = start_with(&lab.node, Vec::new(), |cfg| {
        cfg.k8s.mode = K8sMode::Cluster;
        cfg.k8s.kubeconfig = kubeconfig.display().to_string();
        cfg.k8s.cluster_cidrs = vec!["10.244.0.0/16".into()];
        cfg.otlp = OtlpConfig {
            endpoint: vm.otlp_http_endpoint(),
            protocol: OtlpProtocol::HttpProtobuf,
            interval: Duration::from_millis(500),
            ..OtlpConfig::default()
        };
    });
    wait_attached(&agent, 5);
    let (snap, ok) = agent.wait_for(Duration::from_secs(60), |s| {
        s.health.k8s.is_some_and(|k| k.synced)
    });
    assert!(ok, "the agent's index never synced: {:?}", snap.health.k8s);

    // checkout → web, pod to pod: 10 datagrams of 200 bytes.
    let (c, w) = (&lab.pods[0], &lab.pods[1]);
    traffic::udp(
        c,
        &format!("{}:40140", PODS[0]),
        w,
        &format!("{}:7040", PODS[1]),
        10,
        200,
    );
    // checkout → the payments Service's ClusterIP (translated to the payments pod).
    let bulk = traffic::tcp_bulk_via(
        c,
        &payments,
        &format!("{PAYMENTS}:8443"),
        &format!("{CLUSTER_IP}:443"),
        1 << 20,
    );
    // The outside world → web: 5 datagrams; and checkout → a pod the API does not list.
    traffic::udp(
        &lab.outside,
        &format!("{OUTSIDE}:40150"),
        w,
        &format!("{}:7041", PODS[1]),
        5,
        100,
    );
    traffic::udp(
        c,
        &format!("{}:40160", PODS[0]),
        &lab.pods[2],
        &format!("{}:7042", PODS[2]),
        3,
        100,
    );

    let checkout = [
        ("source_k8s_namespace_name", "shop"),
        ("source_k8s_workload_name", "checkout"),
        ("source_k8s_workload_kind", "Deployment"),
    ];
    let expect = |labels: &[(&str, &str)], metric: &str, want: u64| {
        let q = format!("{metric}{{{}}}", sel(labels));
        let v = vm.wait_query(&q, Duration::from_secs(60), |v: &Value| {
            single_value(v).is_some_and(|got| (got - want as f64).abs() < 0.5)
        });
        assert_eq!(single_value(&v), Some(want as f64), "{q}: {v}");
    };
    let udp_web = [
        checkout[0],
        checkout[1],
        checkout[2],
        ("destination_k8s_namespace_name", "shop"),
        ("destination_k8s_workload_name", "web"),
        ("destination_k8s_workload_kind", "Deployment"),
        ("destination_port", "7040"),
        ("network_transport", "udp"),
        ("network_type", "ipv4"),
    ];
    expect(&udp_web, "netprobe_flow_packets_total", 10);
    expect(&udp_web, "netprobe_flow_bytes_total", 2280);
    expect(&udp_web, "netprobe_packet_size_bytes_count", 10);
    let to_service = [
        checkout[0],
        checkout[1],
        checkout[2],
        ("destination_k8s_namespace_name", "payments"),
        ("destination_k8s_workload_name", "payments"),
        ("destination_k8s_workload_kind", "Service"),
        ("destination_k8s_service_name", "payments"),
        ("destination_port", "443"),
        ("network_transport", "tcp"),
    ];
    expect(&to_service, "netprobe_flow_packets_total", bulk.client_segs);
    let from_service = [
        ("source_k8s_namespace_name", "payments"),
        ("source_k8s_workload_name", "payments"),
        ("source_k8s_workload_kind", "StatefulSet"),
        ("source_k8s_service_name", "payments"),
        ("source_port", "8443"),
        ("destination_k8s_workload_name", "checkout"),
        ("network_transport", "tcp"),
    ];
    expect(
        &from_service,
        "netprobe_flow_packets_total",
        bulk.server_segs,
    );
    expect(
        &from_service,
        "netprobe_flow_bytes_total",
        bulk.server_octets,
    );
    let external = [
        ("source_k8s_workload_name", "external"),
        ("source_k8s_workload_kind", "external"),
        ("destination_k8s_workload_name", "web"),
        ("destination_port", "7041"),
    ];
    expect(&external, "netprobe_flow_packets_total", 5);
    let unlisted = [
        checkout[1],
        ("destination_k8s_workload_name", "unknown"),
        ("destination_port", "7042"),
    ];
    expect(&unlisted, "netprobe_flow_packets_total", 3);
    // Namespace counts, and the agent's own view of its index.
    expect(&[("k8s_namespace_name", "shop")], "netprobe_k8s_pods", 2);
    expect(
        &[("k8s_namespace_name", "payments")],
        "netprobe_k8s_pods",
        1,
    );
    expect(
        &[("k8s_namespace_name", "payments")],
        "netprobe_k8s_services",
        1,
    );
    expect(&[], "netprobe_agent_k8s_synced", 1);
    // No addresses and no client ports in the default attributes.
    let v = vm.query("count(netprobe_flow_packets_total{source_address!=\"\"}) or vector(0)");
    assert_eq!(single_value(&v), Some(0.0), "addresses leaked: {v}");
    let v = vm.query("count(netprobe_flow_packets_total{network_transport=\"tcp\"})");
    assert_eq!(single_value(&v), Some(2.0), "one TCP series each way: {v}");
    agent.stop();
    drop(payments);
    let _ = std::fs::remove_dir_all(&dir);
}
