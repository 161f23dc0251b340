//! The chain users install, with the real OpenTelemetry Collector (`otelcol-netprobe`, the
//! official modules at the release the chart deploys), the real kernel and a real Prometheus:
//!
//! - every file of `collector-config/` and the chart's rendered Collector (scrape and remote
//!   write) passes the Collector's own `validate` (also with the gates that turn deprecated
//!   settings into errors), and runs: healthy, `memory_limiter` sized from the chart's memory
//!   limit (the Collector runs in a memory cgroup with it, as in its pod), data through the
//!   pipeline to its exporter, a clean stop;
//! - lab traffic on every path → the agent binary (configured by `OTEL_*` variables alone) →
//!   the Collector over OTLP/gRPC → its Prometheus exporter, scraped; and over OTLP/HTTP →
//!   remote write into Prometheus: exact packets and bytes per path, and every series of the
//!   agent's own `/metrics` in Prometheus under the same name and labels, plus exactly the
//!   resource and scope labels the Collector adds (`chain::added_labels`);
//! - faults (`collector_chain/faults.rs`): the Collector restarted, the Collector down for two
//!   minutes, the agent restarted.
#![allow(
    clippy::float_cmp,
    reason = "the values compared are counts, integers an f64 holds exactly: exactness is the point"
)]

#[path = "common/cgroup.rs"]
mod cgroup;
#[path = "collector_chain/chain.rs"]
mod chain;
#[path = "common/collector.rs"]
mod collector;
mod common;
#[path = "collector_chain/faults.rs"]
mod faults;
#[path = "common/repo.rs"]
mod repo;

use std::time::Duration;

use chain::{Chain, Mode, PATHS, Protocol, value};
use collector::{Collector, NO_DEPRECATED, Pod};
use common::{
    Netns,
    addr::PODS,
    backends::{Prometheus, single_value},
    binary::sample,
    patient, traffic, unique, wait_until,
};
use serde_json::json;

/// An OTLP/JSON request with one counter point, `netprobe.chain.probe{variant} = value`.
fn probe(variant: &str, value: u64) -> String {
    collector::probe_request(
        "chain-probe",
        "netprobe.chain.probe",
        &[("variant", variant)],
        value,
    )
}

/// The line of a Prometheus text that starts with `name{` and holds `label`.
fn line_with<'a>(text: &'a str, name: &str, label: &str) -> Option<&'a str> {
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
}

#[test]
fn every_collector_config_validates_and_runs_under_the_charts_memory_limit() {
    common::require_root();
    let ns = Netns::new(&unique("colcfg"));
    let receiver = ["--web.enable-remote-write-receiver"];
    let prom = Prometheus::start_in_with(Some(&ns.name), "global: {}\n", &receiver);
    let write_url = format!("{}/api/v1/write", prom.url);
    let rw_env = [("PROMETHEUS_REMOTE_WRITE_URL", write_url.as_str())];
    let chart_rw = json!({"collector": {"mode": "remoteWrite", "remoteWrite": {"url": write_url}}});
    let pods = [
        Pod::from_file("otelcol.yaml", &[]),
        Pod::from_file("otelcol-remote-write.yaml", &rw_env),
        Pod::from_chart("chart scrape (default)", &json!({})),
        Pod::from_chart("chart remoteWrite", &chart_rw),
    ];
    // Every file of collector-config/ is among them.
    let dir = repo::root().join("collector-config");
    for entry in std::fs::read_dir(dir).expect("collector-config/") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf-8");
        let yaml = std::path::Path::new(&name)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("yaml"));
        if yaml {
            assert!(pods.iter().any(|p| p.name == name), "{name} is not run");
        }
    }
    for (i, pod) in pods.into_iter().enumerate() {
        let name = pod.name.clone();
        pod.validate(&[])
            .unwrap_or_else(|e| panic!("{name}: validate: {e}"));
        pod.validate(&[NO_DEPRECATED])
            .unwrap_or_else(|e| panic!("{name}: deprecated settings: {e}"));
        let remote = pod.config.contains("prometheus_remote_write:");
        let want_limiter = pod.limiter_mib();
        let mut c = Collector::start(&ns, pod);
        // memory_limiter found the pod's limit (not the machine's memory).
        assert_eq!(
            c.limiter_mib(),
            Some(want_limiter),
            "{name}: (total, limit, spike) MiB in the log:\n{}",
            c.log()
        );
        let log = c.log();
        let warnings: Vec<&str> = log.lines().filter(|l| l.contains("\twarn\t")).collect();
        assert!(
            warnings.is_empty(),
            "{name}: warnings at start:\n{}",
            warnings.join("\n")
        );

        // A point through the pipeline, OTLP/HTTP in, to the exporter's destination.
        let variant = format!("v{i}");
        let n = 1000 + i as u64;
        let http = c.pod().port("/receivers/otlp/protocols/http/endpoint");
        let r = c.post(http, "/v1/metrics", "application/json", probe(&variant, n));
        assert!(matches!(r, Ok((200, _))), "{name}: OTLP/HTTP: {r:?}");
        let label = format!("variant=\"{variant}\"");
        if remote {
            let q = format!("netprobe_chain_probe_total{{{label},k8s_node_name=\"probe-node\"}}");
            prom.wait_query(&q, patient(Duration::from_secs(30)), |v| {
                single_value(v) == Some(n as f64)
            });
        } else {
            let port = c.pod().port("/exporters/prometheus/endpoint");
            let mut text = String::new();
            let arrived = wait_until(Duration::from_secs(30), || {
                text = c.get(port, "/metrics").map(|(_, t)| t).unwrap_or_default();
                line_with(&text, "netprobe_chain_probe_total", &label).is_some_and(|l| {
                    l.ends_with(&format!(" {n}")) && l.contains("k8s_node_name=\"probe-node\"")
                })
            });
            assert!(arrived, "{name}: not on the exporter:\n{text}");
        }
        // The Collector's own metrics (service.telemetry) count what the receiver accepted.
        let own = c
            .pod()
            .port("/service/telemetry/metrics/readers/0/pull/exporter/prometheus/port");
        let (_, text) = c.get(own, "/metrics").expect("the Collector's own metrics");
        let accepted = line_with(
            &text,
            "otelcol_receiver_accepted_metric_points",
            "receiver=\"otlp\"",
        )
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        assert_eq!(accepted, Some(1.0), "{name}: own metrics:\n{text}");

        let status = c.stop();
        assert!(status.success(), "{name}: exit {status:?}\n{}", c.log());
        assert!(c.log().contains("Shutdown complete."), "{name}");
        println!(
            "{name}: valid, healthy {:.2} s after start, memory_limiter {want_limiter:?} MiB of a {} MiB cgroup ({}), point through to {}",
            c.started_in.as_secs_f64(),
            c.cgroup().limit() >> 20,
            if c.cgroup().is_v2() { "v2" } else { "v1" },
            if remote {
                "remote write"
            } else {
                "the scrape endpoint"
            },
        );
    }
}

/// The sum of the samples of `name` whose labels contain `labels`.
fn total(text: &str, name: &str, labels: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Lab traffic on every path through the agent and the Collector into Prometheus: exact per
/// path, and every series of `/metrics` there.
fn every_path_through(mode: Mode, protocol: Protocol) {
    common::require_root();
    let chain = Chain::new(&format!("ch{}", mode as u8), mode);
    let agent = chain.start_agent(chain.agent_command(protocol, &[]));
    for path in &PATHS {
        path.send(&chain.lab, path.count);
    }
    // Every other kind of flow series too: connections opened and closed, a handshake
    // histogram (fractional bucket bounds), refusals, drops and ICMP errors.
    // Ports of this test's own: the drop tracepoint sees every namespace of the machine, so
    // another lab's drops on the same addresses and ports would add to these.
    let base = 7100 + 10 * mode as u16;
    let (client, server) = (&chain.lab.pods[0], &chain.lab.pods[1]);
    traffic::tcp_exchanges(client, server, &format!("{}:{base}", PODS[1]), 3);
    traffic::tcp_refused(client, &format!("{}:{}", PODS[1], base + 1), 2);
    let closed_port = format!("{}:{}", PODS[1], base + 2);
    traffic::udp_send(client, &format!("{}:40107", PODS[0]), &closed_port, 3, 100);
    // The agent counted everything; then its /metrics stands still for the flows.
    let to = |port: u16| {
        format!(
            "destination_address=\"{}\",destination_port=\"{port}\"",
            PODS[1]
        )
    };
    let text = agent.wait_metrics("every path and connection counted", |m| {
        PATHS.iter().all(|p| {
            sample(m, &format!("netprobe_flow_packets_total{{{}}}", p.labels()))
                == Some(p.count as f64)
        }) && total(m, "netprobe_tcp_connections_closed_total", &to(base)) == 3.0
            && total(m, "netprobe_tcp_connections_failed_total", &to(base + 1)) == 2.0
            && total(m, "netprobe_packet_drops_total", &to(base + 2)) == 3.0
            && total(m, "netprobe_icmp_errors_total", &to(base + 2)) == 3.0
    });
    // Every export reached the Collector and was taken as such (no error mistaken for one).
    let exports = |result: &str| {
        sample(
            &text,
            &format!("netprobe_agent_export_requests_total{{result=\"{result}\"}}"),
        )
    };
    assert_eq!(exports("failed"), Some(0.0), "{mode:?} via {protocol:?}");
    assert!(exports("ok").is_some_and(|n| n >= 1.0));
    for p in &PATHS {
        let l = p.labels();
        chain.wait_value(
            &format!("netprobe_flow_packets_total{{{l}}}"),
            p.count as f64,
        );
        let bytes = chain
            .prom
            .query(&format!("netprobe_flow_bytes_total{{{l}}}"));
        assert_eq!(value(&bytes), Some(p.bytes() as f64), "{}: bytes", p.name);
        let count = chain
            .prom
            .query(&format!("netprobe_packet_size_bytes_count{{{l}}}"));
        assert_eq!(
            value(&count),
            Some(p.count as f64),
            "{}: size count",
            p.name
        );
        let sum = chain
            .prom
            .query(&format!("netprobe_packet_size_bytes_sum{{{l}}}"));
        assert_eq!(value(&sum), Some(p.bytes() as f64), "{}: size sum", p.name);
        println!(
            "{mode:?} via {protocol:?}: {} {} packets, {} bytes: exact",
            p.name,
            p.count,
            p.bytes()
        );
    }
    let compared = chain::wait_for_every_series(&chain, &text);
    println!(
        "{mode:?} via {protocol:?}: all {compared} series of /metrics in Prometheus, same names and labels, plus {:?}",
        chain::added_labels().keys().collect::<Vec<_>>()
    );
}

#[test]
fn every_path_over_grpc_through_the_collectors_scrape_endpoint() {
    every_path_through(Mode::Scrape, Protocol::Grpc);
}

#[test]
fn every_path_over_http_through_remote_write() {
    every_path_through(Mode::RemoteWrite, Protocol::Http);
}
