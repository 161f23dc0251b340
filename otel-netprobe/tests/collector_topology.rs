//! Why the chart's Collector topologies are what they are, with the real Collector (the
//! chart's rendered configuration, in its memory cgroup), the agent binary in the lab's node
//! namespace and a real Prometheus scraping two Collector pods (two processes on ports of
//! their own, as two pods have addresses of their own), `honor_labels` as the chart's
//! ServiceMonitor:
//!
//! - `collector.topology=node` (the default): the node's Collector replaced in a rollout (the
//!   old one stops before the new one starts: `maxSurge: 0`), the agent carrying on into the
//!   new one: one series, no reset, the cluster sum exact at every sample;
//! - what the chart refuses, two scrape-mode gateway replicas behind one ClusterIP: the agent
//!   restarted (a DaemonSet rollout) reconnects to the other replica while the first keeps
//!   serving its series; Prometheus gets the same labelled series from both pods and reads
//!   each alternation as a counter reset. Which replica a ClusterIP gives a new connection is
//!   kube-proxy's choice; here the restarted agent is pointed at the other one.
#![allow(
    clippy::float_cmp,
    reason = "the values compared are counts, integers an f64 holds exactly: exactness is the point"
)]

#[path = "common/cgroup.rs"]
mod cgroup;
#[allow(
    dead_code,
    reason = "the lab's paths and names; the chain itself is not used"
)]
#[path = "collector_chain/chain.rs"]
mod chain;
#[path = "common/collector.rs"]
mod collector;
mod common;
#[path = "common/repo.rs"]
mod repo;

use std::{net::SocketAddr, process::Command, time::Duration};

use chain::{CLUSTER, LISTEN, NODE, PATHS};
use collector::{Collector, Pod};
use common::{
    NodeLab,
    backends::{Prometheus, single_value},
    binary::{self, Agent, sample},
    patient,
};
use serde_json::json;

/// The second pod's ports: each of the first's plus this.
const SHIFT: u16 = 10;

/// The chart's Collector (default values) as the second pod: exporter, health check and own
/// metrics on ports of its own; OTLP too when `otlp` (two replicas alive at once).
fn second(first: &Pod, otlp: bool) -> Pod {
    let mut pod = first.clone();
    pod.name = "second Collector pod".into();
    let mut ports = vec![8889, 13133];
    if otlp {
        ports.extend([4317, 4318]);
    }
    for port in ports {
        pod.config = pod.config.replace(
            &format!("0.0.0.0:{port}"),
            &format!("0.0.0.0:{}", port + SHIFT),
        );
    }
    pod.config = pod
        .config
        .replace("port: 8888", &format!("port: {}", 8888 + SHIFT));
    pod
}

/// Prometheus scraping both pods' exporters every second, as the ServiceMonitor does.
fn prometheus(lab: &NodeLab) -> Prometheus {
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: otel-collector\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:8889', '127.0.0.1:{}']\n",
        8889 + SHIFT
    );
    Prometheus::start_in_with(Some(&lab.node.name), &config, &[])
}

/// The agent binary exporting every second over gRPC to `port`, named as on node [`NODE`].
fn agent(lab: &NodeLab, port: u16) -> Agent {
    let mut cmd: Command = binary::command(&["run"]);
    cmd.envs([
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc".to_owned()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000".to_owned()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            format!("k8s.cluster.name={CLUSTER}"),
        ),
        ("K8S_NODE_NAME", NODE.to_owned()),
    ]);
    let listen: SocketAddr = LISTEN.parse().expect("listen address");
    let agent = Agent::start(&lab.node, cmd, listen);
    agent.wait_metrics("4 interfaces at TC", |m| {
        sample(m, "netprobe_agent_interfaces{hook=\"tc\"}") == Some(4.0)
    });
    agent
}

/// The pod → pod path's packet series, and a query of it.
fn series() -> String {
    format!("netprobe_flow_packets_total{{{}}}", PATHS[0].labels())
}

/// Waits until `promql` is `want`.
fn wait_value(prom: &Prometheus, promql: &str, want: f64) {
    prom.wait_query(promql, patient(Duration::from_secs(90)), |v| {
        single_value(v) == Some(want)
    });
}

fn value(prom: &Prometheus, promql: &str) -> Option<f64> {
    single_value(&prom.query(promql))
}

#[test]
fn a_node_collector_replaced_in_a_rollout_keeps_the_cluster_sum_exact() {
    common::require_root();
    let lab = NodeLab::new("ctnode");
    let first = Pod::from_chart("first Collector pod", &json!({}));
    let second_pod = second(&first, false);
    let mut old = Collector::start(&lab.node, first);
    let prom = prometheus(&lab);
    let agent = agent(&lab, 4317);
    let (path, s) = (&PATHS[0], series());
    path.send(&lab, 10);
    wait_value(&prom, &format!("sum({s})"), 10.0);

    // The rollout: the old pod goes, then the new one comes; the agent's next exports reach it.
    let status = old.stop();
    assert!(status.success(), "{status:?}");
    let new = Collector::start(&lab.node, second_pod);
    path.send(&lab, 5);
    agent.wait_metrics("15 packets", |m| sample(m, &s) == Some(15.0));
    wait_value(&prom, &format!("sum({s})"), 15.0);
    // Prometheus marked the old pod's series stale when its scrape failed: one series, which
    // never went back or above the total.
    assert_eq!(value(&prom, &format!("count({s})")), Some(1.0));
    assert_eq!(
        value(&prom, &format!("sum(resets({s}[5m]))")),
        Some(0.0),
        "no counter reset"
    );
    // Above the total at any sample, the maximum would stay above it for the 5 minutes.
    wait_value(&prom, &format!("max_over_time(sum({s})[5m:1s])"), 15.0);
    let up = prom.query("up");
    println!(
        "node topology: the node's Collector replaced (new one healthy in {:.2} s), 10 + 5 packets: \
         one series, no reset, the cluster sum 15 at every sample; targets: {up}",
        new.started_in.as_secs_f64()
    );
}

#[test]
fn two_scrape_mode_gateway_replicas_serve_an_agents_series_twice() {
    common::require_root();
    let lab = NodeLab::new("ctgw");
    let first = Pod::from_chart("first gateway replica", &json!({}));
    let second_pod = second(&first, true);
    let _a = Collector::start(&lab.node, first);
    let _b = Collector::start(&lab.node, second_pod);
    let prom = prometheus(&lab);
    let (path, s) = (&PATHS[0], series());
    let mut old = agent(&lab, 4317);
    path.send(&lab, 10);
    wait_value(&prom, &format!("sum({s})"), 10.0);

    // The agent restarted (an agent rollout); its new connection lands on the other replica.
    let status = old.terminate();
    assert!(status.success(), "{status:?}");
    drop(old);
    let new = agent(&lab, 4317 + SHIFT);
    path.send(&lab, 4);
    new.wait_metrics("4 packets", |m| sample(m, &s) == Some(4.0));
    // The first replica still serves 10 for the same labels (until metric_expiration, 5 min),
    // the second 4: one series in Prometheus that alternates between them, every alternation a
    // counter reset, where the one restart made exactly one.
    let resets = format!("sum(resets({s}[1m]))");
    prom.wait_query(&resets, patient(Duration::from_secs(90)), |v| {
        single_value(v).is_some_and(|n| n >= 4.0)
    });
    assert_eq!(
        value(&prom, &format!("max_over_time({s}[20s])")),
        Some(10.0)
    );
    assert_eq!(value(&prom, &format!("min_over_time({s}[20s])")), Some(4.0));
    println!(
        "two scrape-mode gateway replicas: after one agent restart, {:?} counter resets in a \
         minute and the series alternating between 10 and 4 (the chart refuses this)",
        value(&prom, &resets)
    );
}
