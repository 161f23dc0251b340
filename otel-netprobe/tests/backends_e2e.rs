//! End to end through real backends: lab traffic → the agent → OTLP/HTTP → VictoriaMetrics, and
//! the agent's `/metrics` → a real Prometheus. The numbers that arrive are the packets sent.

mod common;

use std::time::Duration;

use common::{
    NodeLab,
    addr::PODS,
    agent::{Sel, start_in, wait_attached, wait_flow},
    backends::{Prometheus, VictoriaMetrics, single_series},
    traffic,
};
use otel_netprobe::{
    config::{OtlpConfig, OtlpProtocol},
    export::{http, otlp},
    flow::Transport,
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
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    let vm = VictoriaMetrics::start();
    let cfg = OtlpConfig {
        endpoint: vm.otlp_http_endpoint(),
        protocol: OtlpProtocol::HttpProtobuf,
        interval: Duration::from_millis(500),
        cluster_name: "lab".into(),
        ..OtlpConfig::default()
    };
    let resource = otlp::resource(&cfg, |k| {
        (k == "K8S_NODE_NAME").then(|| "node-a".to_owned())
    });
    // The exporter runs in this (root) namespace, where VictoriaMetrics listens on loopback.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = {
        let _guard = rt.enter();
        otlp::client::OtlpClient::new(&cfg).expect("client")
    };
    rt.spawn(otlp::run(
        cfg,
        client,
        resource,
        agent.shared_snapshot(),
        agent.export_stats(),
    ));
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
    let ok = agent.snapshot().health.export_ok_total;
    assert!(ok >= 1, "exports counted: {ok}");
    agent.stop();
}

#[test]
fn prometheus_scrapes_the_agent() {
    let lab = NodeLab::new("prom");
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    // Serve /metrics in this namespace, where Prometheus can reach it on loopback.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http::router(agent.shared_snapshot(), 10, Duration::from_secs(60));
    rt.spawn(async move { axum::serve(listener, app).await });
    traffic_counted(&lab, &agent);
    let prom = Prometheus::start(&addr.to_string(), "1s");
    check(|q, pred| prom.wait_query(q, Duration::from_secs(30), pred));
    agent.stop();
}
