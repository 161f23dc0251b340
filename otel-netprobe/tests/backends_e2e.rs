//! End to end through real backends: lab traffic → the agent → OTLP/HTTP → VictoriaMetrics, and
//! the agent's `/metrics` → a real Prometheus (both in the lab's node namespace, where the agent
//! runs). The numbers that arrive are the packets sent, and `promtool check metrics` accepts
//! what `/metrics` serves.

mod common;

use std::time::Duration;

use common::{
    NodeLab,
    addr::PODS,
    agent::{Sel, metrics_text, start_in, start_with, wait_attached, wait_flow},
    backends::{Prometheus, VictoriaMetrics, single_series, tool},
    traffic,
};
use otel_netprobe::{
    config::{OtlpConfig, OtlpProtocol},
    flow::Transport,
    telemetry::Count,
};
use serde_json::Value;

fn expect(v: &Value, want: f64) -> bool {
    single_series(v).is_some_and(|(_, got)| (got - want).abs() < 0.5)
}

const FLOW: &str = "source_address=\"10.244.0.11\",destination_address=\"10.244.0.12\",destination_port=\"7040\",network_transport=\"udp\"";

/// Sends 10 datagrams of 200 bytes pod0 → pod1:7040 and waits until the agent counted them.
fn traffic_counted(lab: &NodeLab, agent: &otel_netprobe::agent::Agent) {
    let (src, dst) = (format!("{}:40140", PODS[0]), format!("{}:7040", PODS[1]));
    traffic::udp(&lab.pods[0], &src, &lab.pods[1], &dst, 10, 200);
    let sel = Sel {
        src: PODS[0],
        dst: PODS[1],
        sport: Some(40140),
        dport: Some(7040),
        transport: Transport::Udp,
    };
    let f = wait_flow(agent, sel, 10);
    assert_eq!((f.packets, f.bytes), (10, 2280));
}

/// The same assertions against either backend.
fn check(query: impl Fn(&str, &dyn Fn(&Value) -> bool) -> Value) {
    query(&format!("netprobe_flow_packets_total{{{FLOW}}}"), &|v| {
        expect(v, 10.0)
    });
    query(&format!("netprobe_flow_bytes_total{{{FLOW}}}"), &|v| {
        expect(v, 2280.0)
    });
    query(
        &format!("netprobe_packet_size_bytes_count{{{FLOW}}}"),
        &|v| expect(v, 10.0),
    );
    query(&format!("netprobe_packet_size_bytes_sum{{{FLOW}}}"), &|v| {
        expect(v, 2280.0)
    });
    query(
        &format!("netprobe_packet_size_bytes_bucket{{{FLOW},le=\"128\"}}"),
        &|v| expect(v, 0.0),
    );
    query(
        &format!("netprobe_packet_size_bytes_bucket{{{FLOW},le=\"256\"}}"),
        &|v| expect(v, 10.0),
    );
    query(
        &format!("netprobe_packet_size_bytes_bucket{{{FLOW},le=\"+Inf\"}}"),
        &|v| expect(v, 10.0),
    );
}

#[test]
fn otlp_http_into_victoria_metrics() {
    let lab = NodeLab::new("vm");
    let vm = VictoriaMetrics::start_in(Some(&lab.node.name));
    let agent = start_with(&lab.node, Vec::new(), |cfg| {
        cfg.otlp = OtlpConfig {
            endpoint: vm.otlp_http_endpoint(),
            protocol: OtlpProtocol::HttpProtobuf,
            interval: Duration::from_millis(500),
            cluster_name: "lab".into(),
            resource_attributes: [("k8s.node.name".to_owned(), "node-a".to_owned())].into(),
            ..OtlpConfig::default()
        };
    });
    wait_attached(&agent, 4);
    traffic_counted(&lab, &agent);
    check(|q, pred| vm.wait_query(q, Duration::from_secs(30), pred));
    // Resource attributes arrive as labels.
    let v = vm.query(&format!("netprobe_flow_packets_total{{{FLOW}}}"));
    let (labels, _) = single_series(&v).expect("one series");
    assert_eq!(labels["service_name"], "otel-netprobe");
    assert_eq!(labels["k8s_node_name"], "node-a");
    assert_eq!(labels["k8s_cluster_name"], "lab");
    assert_eq!(labels["network_type"], "ipv4");
    assert!(
        labels.get("source_port").is_none(),
        "no client port: {labels}"
    );
    let ok = agent.telemetry().get(Count::ExportOk);
    assert!(ok >= 1, "exports counted: {ok}");
    agent.stop();
}

#[test]
fn prometheus_scrapes_the_agent_and_promtool_accepts_it() {
    let lab = NodeLab::new("prom");
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    let addr = agent.http_addr().expect("the agent serves /metrics");
    traffic_counted(&lab, &agent);
    // promtool's linter on what /metrics serves after the traffic.
    let text = metrics_text(&lab.node, addr);
    assert!(
        text.contains("netprobe_packet_size_bytes_bucket{"),
        "{text}"
    );
    let mut lint = std::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut lint.stdin.take().expect("stdin"), text.as_bytes())
        .expect("write to promtool");
    let out = lint.wait_with_output().expect("promtool");
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let prom = Prometheus::start_in(Some(&lab.node.name), &addr.to_string(), "1s");
    check(|q, pred| prom.wait_query(q, Duration::from_secs(30), pred));
    agent.stop();
}
