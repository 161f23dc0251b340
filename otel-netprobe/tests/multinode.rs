//! One cluster, two nodes: every packet once in the cluster view, each node's own view kept,
//! and series that survive an agent's restart.
//!
//! The lab (`multinode/lab.rs`): node-a and node-b joined by an underlay, pods on each, an
//! outside host, and a control plane running the real kube-apiserver (with etcd), the chart
//! installed into it (Helm v4 SDK) and one real Prometheus. On each node, as the install's
//! default topology runs them: the agent binary with the install's configuration, a token of
//! its ServiceAccount and `K8S_NODE_NAME` (the DaemonSet's downward API), and the install's
//! Collector (the real one, from its stored ConfigMap and DaemonSet) that the agent exports to;
//! Prometheus scrapes each node's Collector with `honor_labels`, as the chart's ServiceMonitor
//! does.
//!
//! For every kind of traffic — pod→pod across nodes and on one node, pod→ClusterIP (DNAT on
//! the client's node) → pod on the other node, outside→pod, pod→outside, hostNetwork pod ↔ pod,
//! IPv4 and IPv6, TCP connections across nodes — exact packets and bytes are sent, and
//! Prometheus must show: with the README's rule (`netprobe_origin!="other_node"`) exactly what
//! was sent; without it, what each node saw (twice for what crossed nodes); per node, each
//! node's own count. Then node-b's agent restarts, and the "Agents reporting" and memory panels
//! keep counting two agents while the cluster sums stay exact.

#[path = "common/cgroup.rs"]
mod cgroup;
#[path = "common/collector.rs"]
mod collector;
mod common;
#[path = "common/forward.rs"]
mod forward;
#[path = "multinode/lab.rs"]
mod lab;
#[path = "common/repo.rs"]
mod repo;
#[path = "multinode/traffic.rs"]
mod traffic;

use std::{net::SocketAddr, time::Duration};

use collector::{Collector, Pod};
use common::{
    backends::Prometheus,
    binary::{self, Agent},
    kubeapi::{Credentials, KubeApiServer},
    patient,
};
use forward::forward;
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use lab::ClusterLab;
use serde_json::{Value, json};
use traffic::{CLUSTER_IP, KINDS, send};

const CLUSTER: &str = "lab";
const RELEASE: &str = "np";
const RELEASE_NAMESPACE: &str = "netprobe";
const ONCE: &str = "netprobe_origin!=\"other_node\"";

fn register(api: &KubeApiServer, lab: &ClusterLab) {
    api.namespace("shop");
    for node in &lab.nodes {
        api.node(node.name, node.ip);
    }
    let (a, b) = (&lab.nodes[0], &lab.nodes[1]);
    let client = api.deployment("shop", "client", "6b7c");
    api.pod(
        "shop",
        "client-6b7c-a",
        Some(&client),
        a.name,
        &[a.pod_ips[0].0, a.pod_ips[0].1],
    );
    let peer = api.deployment("shop", "peer", "5d4e");
    api.pod(
        "shop",
        "peer-5d4e-a",
        Some(&peer),
        a.name,
        &[a.pod_ips[1].0, a.pod_ips[1].1],
    );
    let web = api.deployment("shop", "web", "4f3a");
    api.pod(
        "shop",
        "web-4f3a-b",
        Some(&web),
        b.name,
        &[b.pod_ips[0].0, b.pod_ips[0].1],
    );
    api.service("shop", "web", Some(CLUSTER_IP), 8080, 8080);
    api.endpoint_slice("shop", "web-x1", "web", &[b.pod_ips[0].0], 8080);
    // A hostNetwork pod of a DaemonSet on node-a, serving on 7107.
    let ds = api.daemonset("shop", "hostd");
    api.host_pod("shop", "hostd-a", Some(&ds), a.name, a.ip, 7107);
}

/// The agent of `node`: the install's configuration, exporting to the Collector through the
/// node's loopback, named by `K8S_NODE_NAME`; killed by a watchdog should the test hang.
fn start_agent(node: &lab::Node, config: &std::path::Path) -> Agent {
    let mut cmd = binary::command(&[
        "run",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:9464",
    ]);
    cmd.env("K8S_NODE_NAME", node.name);
    let listen: SocketAddr = "127.0.0.1:9464".parse().expect("addr");
    let agent = Agent::start(&node.ns, cmd, listen);
    let pid = libc::pid_t::try_from(agent.pid()).expect("pid");
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(900));
        // SAFETY: kill(2) on our own child's pid; harmless if it is gone.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    });
    // Named from the API, attached to the node's interfaces (uplink and pod veths).
    agent.wait_metrics("synced and attached", |m| {
        m.lines().any(|l| l == "netprobe_agent_k8s_synced 1")
            && m.lines()
                .filter(|l| l.starts_with("netprobe_agent_interface_info{"))
                .count()
                >= 2
    });
    agent
}

fn value(prom: &Prometheus, q: &str) -> Option<f64> {
    let v = prom.query(q);
    let rows = v.as_array()?;
    match rows.as_slice() {
        [] => Some(0.0),
        [row] => row["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// Waits until `q` is `want` (one series, or none for 0).
fn expect(prom: &Prometheus, what: &str, q: &str, want: f64) {
    let mut last = None;
    let ok = common::wait_until(patient(Duration::from_secs(60)), || {
        last = value(prom, q);
        last == Some(want)
    });
    assert!(ok, "{what}: {q} = {last:?}, want {want}");
}

/// Every kind's sums when the agents of node-a and node-b have counted `counted` rounds each
/// (a restarted agent counts from zero: Prometheus' `rate()` reads that as a reset): with the
/// rule, without it, and per node.
fn check_sums(prom: &Prometheus, counted: [u64; 2]) {
    for k in &KINDS {
        let sel = format!("destination_port=\"{}\"", k.port);
        let packets = |extra: &str| format!("sum(netprobe_flow_packets_total{{{sel}{extra}}})");
        let once = (k.count * counted[k.once_at]) as f64;
        expect(prom, k.name, &packets(&format!(",{ONCE}")), once);
        let bytes = format!("sum(netprobe_flow_bytes_total{{{sel},{ONCE}}})");
        expect(prom, k.name, &bytes, once * k.packet_bytes as f64);
        // Each node's own view; the naive sum adds both.
        for (i, node) in ["node-a", "node-b"].iter().enumerate() {
            let q = packets(&format!(",k8s_node_name=\"{node}\""));
            let want = (k.seen[i] * counted[i]) as f64;
            expect(prom, &format!("{} seen on {node}", k.name), &q, want);
        }
        println!(
            "{:<40} counted {:>3} · rule {:>3} · naive {:>3} · node-a {:>3} · node-b {:>3}",
            k.name,
            once,
            value(prom, &packets(&format!(",{ONCE}"))).unwrap_or(-1.0),
            value(prom, &packets("")).unwrap_or(-1.0),
            value(prom, &packets(",k8s_node_name=\"node-a\"")).unwrap_or(-1.0),
            value(prom, &packets(",k8s_node_name=\"node-b\"")).unwrap_or(-1.0),
        );
    }
    // TCP connections across nodes: counted where the client is.
    let opened =
        format!("sum(netprobe_tcp_connections_opened_total{{destination_port=\"7110\",{ONCE}}})");
    expect(
        prom,
        "connections across nodes",
        &opened,
        (3 * counted[0]) as f64,
    );
    let handshakes = format!(
        "sum(netprobe_tcp_handshake_duration_seconds_count{{destination_port=\"7110\",{ONCE}}})"
    );
    expect(
        prom,
        "handshakes across nodes",
        &handshakes,
        (3 * counted[0]) as f64,
    );
}

/// The Prometheus of the lab: each node's Collector exporter (forwarded to `ports` of the
/// control plane's loopback), with `honor_labels` (the agents' job, instance and resource
/// labels), as the chart's ServiceMonitor scrapes the Collector pods.
fn prometheus_config(ports: &[u16]) -> String {
    let targets: Vec<String> = ports.iter().map(|p| format!("'127.0.0.1:{p}'")).collect();
    format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: otel-collector\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    )
}

/// The two panels of the agent dashboard that count agents.
const AGENTS: &str = "count(netprobe_agent_read_cycles_total{k8s_cluster_name=\"lab\"})";
const MEMORY_SERIES: &str =
    "count(netprobe_agent_flow_table_memory_bytes{k8s_cluster_name=\"lab\"})";

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: a cluster, its agents, every kind of traffic, a restart"
)]
fn each_packet_once_across_nodes_and_series_survive_a_restart() {
    common::require_root();
    let lab = ClusterLab::new("mn");
    let api = KubeApiServer::start_in(&lab.control);
    println!(
        "kube-apiserver + etcd ready in {:.1} s",
        api.start_time.as_secs_f64()
    );
    let dir = std::env::temp_dir().join(common::unique("multinode"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    let values = json!({"agent": {"clusterName": CLUSTER, "config": {
        "k8s": {"kubeconfig": kubeconfig.display().to_string(),
                "cluster_cidrs": ["10.244.0.0/16", "fd00:244::/48"]},
        "otlp": {"interval": "1s"},
    }}});
    let release = api
        .helm_install(RELEASE, RELEASE_NAMESPACE, &values)
        .expect("helm install");
    api.write_kubeconfig(&kubeconfig, &Credentials::Token(api.agent_token(&release)));
    register(&api, &lab);
    // The install's agent configuration, with its Collector reached on the node's loopback.
    let agent_name = release.agent_name();
    let rendered = api.stored::<ConfigMap>(RELEASE_NAMESPACE, &agent_name)["data"]["config.yaml"]
        .as_str()
        .expect("the agent's config.yaml")
        .to_owned();
    let mut config: Value = serde_norway::from_str(&rendered).expect("config");
    config["otlp"]["endpoint"] = json!("http://127.0.0.1:4317");
    let config_path = dir.join("config.yaml");
    std::fs::write(
        &config_path,
        serde_norway::to_string(&config).expect("YAML"),
    )
    .expect("write");
    let collector_name = format!("{agent_name}-collector");
    let (cm, ds) = (
        api.stored::<ConfigMap>(RELEASE_NAMESPACE, &collector_name),
        api.stored::<DaemonSet>(RELEASE_NAMESPACE, &collector_name),
    );
    let collectors: Vec<Collector> = lab
        .nodes
        .iter()
        .map(|node| {
            let name = format!("the install's Collector on {}", node.name);
            Collector::start(&node.ns, Pod::from_objects(&name, &cm, &ds))
        })
        .collect();
    let exporter = collectors[0].pod().port("/exporters/prometheus/endpoint");
    let mut scraped = Vec::new();
    for node in &lab.nodes {
        let api_port = common::kubeapi::PORT;
        forward(Some(&node.ns), api_port, &lab.control, api_port);
        scraped.push(forward(Some(&lab.control), 0, &node.ns, exporter));
    }
    // kube-proxy's DNAT for the ClusterIP, on the client's node.
    lab.nodes[0].ns.exec(&format!(
        "nft -f - <<'EOF'\ntable ip netprobe_lab {{\n  chain pre {{\n    type nat hook prerouting priority dstnat; policy accept;\n    ip daddr {CLUSTER_IP} udp dport 8080 dnat to {}:8080\n  }}\n}}\nEOF",
        lab.nodes[1].pod_ips[0].0
    ));
    let prom =
        Prometheus::start_in_with(Some(&lab.control.name), &prometheus_config(&scraped), &[]);
    let agent_a = start_agent(&lab.nodes[0], &config_path);
    let mut agent_b = start_agent(&lab.nodes[1], &config_path);

    send(&lab, 0);
    check_sums(&prom, [1, 1]);
    expect(&prom, "agents reporting", AGENTS, 2.0);
    expect(&prom, "agents' memory series", MEMORY_SERIES, 2.0);

    // A rollout restarts node-b's agent: the same series continue (one identity per node), so
    // the panels keep counting two agents, before, during and after.
    let cycles = "netprobe_agent_read_cycles_total{k8s_node_name=\"node-b\"}";
    let before = value(&prom, &format!("sum({cycles})")).expect("node-b's cycles");
    drop(agent_b);
    agent_b = start_agent(&lab.nodes[1], &config_path);
    let mut polls = 0;
    let restarted = common::wait_until(patient(Duration::from_secs(60)), || {
        polls += 1;
        for q in [AGENTS, MEMORY_SERIES] {
            assert_eq!(value(&prom, q), Some(2.0), "{q} during the restart");
        }
        value(&prom, &format!("sum({cycles})")).is_some_and(|n| n < before)
    });
    assert!(restarted, "node-b's new agent never reached Prometheus");
    println!("restart: the panels read 2 agents in each of {polls} polls");
    send(&lab, 1);
    check_sums(&prom, [2, 1]);
    expect(&prom, "agents reporting", AGENTS, 2.0);
    expect(&prom, "agents' memory series", MEMORY_SERIES, 2.0);

    drop(agent_a);
    drop(agent_b);
    drop(prom);
    drop(collectors);
    drop(api);
    let _ = std::fs::remove_dir_all(&dir);
}
