//! The binary users run, end to end, in a lab namespace: configured by the standard `OTEL_*`
//! variables alone it pushes to a real VictoriaMetrics exactly what its `/metrics` shows, with
//! the headers, gzip and timeout the variables ask for visible on the wire (a recording proxy
//! stands where a collector would); the file, then the environment, then the flags decide;
//! SIGTERM detaches every program and flushes a last export.

mod common;

use std::{collections::BTreeMap, time::Duration};

use aya::programs::{SchedClassifier, tc::TcAttachType};
use common::{
    Netns, NodeLab,
    addr::{OUTSIDE, PODS},
    backends::{VictoriaMetrics, single_value},
    binary::{self, Agent, sample, samples},
    proxy::Proxy,
    traffic, unique,
};

/// What the agent's flow metrics look like in both places.
const FLOW_METRICS: [&str; 2] = ["netprobe_flow_", "netprobe_packet_size_"];
/// Resource attributes, which VictoriaMetrics adds as labels and `/metrics` does not carry.
const RESOURCE: [&str; 8] = [
    "service_name",
    "service_version",
    "service_instance_id",
    "host_name",
    "k8s_cluster_name",
    "deployment_environment",
    "origin",
    "layer",
];

/// The flow samples in VictoriaMetrics, keyed as [`samples`] keys `/metrics`.
fn vm_samples(vm: &VictoriaMetrics) -> BTreeMap<String, f64> {
    vm.flush();
    let r = vm.query("{__name__=~\"netprobe_flow_.*|netprobe_packet_size_.*\"}");
    let mut out = BTreeMap::new();
    for s in r.as_array().into_iter().flatten() {
        let Some(labels) = s["metric"].as_object() else {
            continue;
        };
        let mut l: Vec<String> = labels
            .iter()
            .filter(|(k, _)| *k != "__name__" && !RESOURCE.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default()))
            .collect();
        l.sort_unstable();
        let name = labels["__name__"].as_str().unwrap_or_default();
        let value = s["value"][1].as_str().and_then(|v| v.parse().ok());
        out.insert(
            format!("{name}{{{}}}", l.join(",")),
            value.unwrap_or(f64::NAN),
        );
    }
    out
}

/// Programs attached at TCX ingress of `iface` in `ns`.
fn tcx_programs(ns: &Netns, iface: &'static str) -> Vec<String> {
    ns.run(move || {
        let (_, progs) =
            SchedClassifier::query_tcx(iface, TcAttachType::Ingress).expect("query TCX");
        progs
            .iter()
            .map(|p| p.name_as_str().unwrap_or_default().to_owned())
            .collect()
    })
}

/// Every request the proxy saw carried the headers and the gzip the variables asked for.
fn check_wire(proxy: &Proxy) {
    let seen = proxy.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        let h = |k: &str| s.headers.get(k).map(String::as_str);
        assert_eq!(s.path, "/v1/metrics");
        assert_eq!(h("authorization"), Some("Bearer e2e-token"));
        assert_eq!(h("x-scope-orgid"), Some("lab"));
        assert_eq!(h("content-type"), Some("application/x-protobuf"));
        assert_eq!(h("content-encoding"), Some("gzip"));
        assert!(s.gzip, "the body is gzip");
    }
}

fn series(src: &str, dst: &str, port: u16) -> String {
    format!(
        "{{source_address=\"{src}\",destination_address=\"{dst}\",destination_port=\"{port}\",network_transport=\"udp\",network_type=\"ipv4\",netprobe_origin=\"outside\"}}"
    )
}

#[test]
fn otel_variables_alone_reach_victoria_metrics_exactly_and_sigterm_flushes_and_detaches() {
    common::require_root();
    let lab = NodeLab::new("bin");
    let vm = VictoriaMetrics::start_in(Some(&lab.node.name));
    let proxy = Proxy::start(&lab.node, &vm.url);
    // Longer than OTEL_EXPORTER_OTLP_TIMEOUT: this export must fail (the default 10 s would not).
    proxy.stall_next(Duration::from_secs(4));
    let mut cmd = binary::command(&["run"]);
    cmd.envs([
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", proxy.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        (
            "OTEL_EXPORTER_OTLP_HEADERS",
            "authorization=Bearer%20e2e-token,x-scope-orgid=lab".into(),
        ),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1500".into()),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000".into()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "k8s.cluster.name=lab,deployment.environment=e2e".into(),
        ),
        ("OTEL_SERVICE_NAME", "netprobe-e2e".into()),
    ]);
    // No flags: the default listen address, in the lab's namespace.
    let mut agent = Agent::start(&lab.node, cmd, "127.0.0.1:9464".parse().expect("addr"));
    agent.wait_metrics("4 interfaces at TC", |m| {
        sample(m, "netprobe_agent_interfaces{hook=\"tc\"}") == Some(4.0)
    });
    assert_eq!(tcx_programs(&lab.node, "vethpod0"), ["netprobe_tc_ing"]);
    let (pod_pod, out_pod) = (
        series(PODS[0], PODS[1], 7080),
        series(OUTSIDE, PODS[2], 7081),
    );
    traffic::udp(
        &lab.pods[0],
        &format!("{}:40180", PODS[0]),
        &lab.pods[1],
        &format!("{}:7080", PODS[1]),
        10,
        200,
    );
    traffic::udp(
        &lab.outside,
        &format!("{OUTSIDE}:40181"),
        &lab.pods[2],
        &format!("{}:7081", PODS[2]),
        5,
        100,
    );
    let packets = |s: &str| format!("netprobe_flow_packets_total{s}");
    agent.wait_metrics("the traffic counted", |m| {
        sample(m, &packets(&pod_pod)) == Some(10.0) && sample(m, &packets(&out_pod)) == Some(5.0)
    });
    agent.wait_metrics("the stalled export timed out", |m| {
        sample(m, "netprobe_agent_export_requests_total{result=\"failed\"}")
            .is_some_and(|n| n >= 1.0)
    });
    // VictoriaMetrics holds exactly the flow samples /metrics shows.
    let (mut shown, mut stored) = (BTreeMap::new(), BTreeMap::new());
    let equal = common::wait_until(Duration::from_secs(60), || {
        shown = samples(&agent.metrics(), &FLOW_METRICS);
        stored = vm_samples(&vm);
        shown == stored
    });
    assert!(equal, "/metrics {shown:#?}\nVictoriaMetrics {stored:#?}");
    // Two series of packets, bytes, 8 buckets, sum and count each (at least).
    assert!(shown.len() >= 24, "{shown:#?}");
    let v = vm.query(&packets(&pod_pod));
    let labels = &v[0]["metric"];
    assert_eq!(labels["service_name"], "netprobe-e2e", "{v}");
    assert_eq!(labels["k8s_cluster_name"], "lab", "{v}");
    assert_eq!(labels["deployment_environment"], "e2e", "{v}");
    check_wire(&proxy);
    assert!(agent.log().contains("interval=1s"), "{}", agent.log());
    // SIGTERM right after more traffic is counted: detached, and the last totals exported.
    traffic::udp(
        &lab.pods[0],
        &format!("{}:40180", PODS[0]),
        &lab.pods[1],
        &format!("{}:7080", PODS[1]),
        3,
        200,
    );
    agent.wait_metrics("13 packets", |m| {
        sample(m, &packets(&pod_pod)) == Some(13.0)
    });
    let status = agent.terminate();
    let log = agent.log();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("programs detached") && log.contains("final OTLP export sent"),
        "{log}"
    );
    assert!(tcx_programs(&lab.node, "vethpod0").is_empty(), "detached");
    let v = vm.wait_query(&packets(&pod_pod), Duration::from_secs(30), |v| {
        single_value(v) == Some(13.0)
    });
    assert_eq!(single_value(&v), Some(13.0));
}

#[test]
fn file_then_environment_then_flags_and_the_flush_carries_the_totals() {
    common::require_root();
    let lab = NodeLab::new("prec");
    let vm = VictoriaMetrics::start_in(Some(&lab.node.name));
    let proxy = Proxy::start(&lab.node, &vm.url);
    let dir = std::env::temp_dir().join(unique("prec"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("netprobe.yaml");
    // The file: a dead endpoint, gRPC, an hour between exports, two resource attributes.
    std::fs::write(
        &config,
        "otlp:\n  endpoint: http://127.0.0.1:1\n  protocol: grpc\n  interval: 1h\n  resource_attributes:\n    origin: file\n    layer: file\n",
    )
    .expect("config");
    let mut cmd = binary::command(&["run", "--listen", "127.0.0.1:9464", "--config"]);
    cmd.arg(&config)
        // The environment: another dead endpoint, HTTP, one attribute of its own.
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:2")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_RESOURCE_ATTRIBUTES", "layer=env")
        // The flag: the proxy.
        .args(["--otlp-endpoint", &format!("http://{}", proxy.addr)]);
    let mut agent = Agent::start(&lab.node, cmd, "127.0.0.1:9464".parse().expect("addr"));
    agent.wait_metrics("4 interfaces at TC", |m| {
        sample(m, "netprobe_agent_interfaces{hook=\"tc\"}") == Some(4.0)
    });
    traffic::udp(
        &lab.pods[0],
        &format!("{}:40190", PODS[0]),
        &lab.pods[1],
        &format!("{}:7090", PODS[1]),
        7,
        200,
    );
    let packets = format!(
        "netprobe_flow_packets_total{}",
        series(PODS[0], PODS[1], 7090)
    );
    agent.wait_metrics("7 packets", |m| sample(m, &packets) == Some(7.0));
    // With an hour between exports, only the flush at SIGTERM can carry these 7 packets.
    assert!(agent.terminate().success(), "{}", agent.log());
    let want = format!(
        "netprobe_flow_packets_total{{source_address=\"{}\",destination_port=\"7090\",origin=\"file\",layer=\"env\"}}",
        PODS[0]
    );
    let v = vm.wait_query(&want, Duration::from_secs(30), |v| {
        single_value(v) == Some(7.0)
    });
    assert_eq!(single_value(&v), Some(7.0), "{v}");
    // HTTP (the environment over the file) to the flag's endpoint (over both).
    let seen = proxy.seen();
    assert!(!seen.is_empty() && seen.iter().all(|s| s.path == "/v1/metrics"));
    let _ = std::fs::remove_dir_all(&dir);
}
