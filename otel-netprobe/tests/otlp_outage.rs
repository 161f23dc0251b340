//! A collector that is down for a while and comes back, with the binary users run: counting
//! goes on during the outage, the first export after it carries the exact new totals, the points
//! of every failed export are counted as dropped, exactly, and the agent's memory stays bounded
//! (nothing is queued: each failed request is dropped). A test binary of its own, so the memory
//! it reads is the agent's alone.

mod common;

use std::time::Duration;

use common::{
    NodeLab,
    addr::PODS,
    backends::{VictoriaMetrics, single_value},
    binary::{self, Agent, points, rss_mib, sample},
    proxy::Proxy,
    traffic,
};

const PORTS: u16 = 1500;

#[test]
fn an_outage_loses_only_the_dropped_points_and_memory_stays_bounded() {
    common::require_root();
    let lab = NodeLab::new("outage");
    let vm = VictoriaMetrics::start_in(Some(&lab.node.name));
    let proxy = Proxy::start(&lab.node, &vm.url);
    // Drops come from a tracepoint that sees the whole machine: another namespace's drop
    // during the outage would add a series, and this test counts points per request.
    let config = std::env::temp_dir().join(format!("{}.yaml", common::unique("outage")));
    std::fs::write(&config, "drops:\n  enabled: false\n").expect("config");
    let mut cmd = binary::command(&["run", "--config", config.to_str().expect("path")]);
    cmd.envs([
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://{}", proxy.addr),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".into()),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "500".into()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "1000".into()),
    ]);
    let agent = Agent::start(&lab.node, cmd, "127.0.0.1:9464".parse().expect("addr"));
    agent.wait_metrics("4 interfaces at TC", |m| {
        sample(m, "netprobe_agent_interfaces{hook=\"tc\"}") == Some(4.0)
    });
    // Many series, so that each request is large (about a megabyte before gzip): a queue of
    // failed requests would show in the memory.
    lab.pods[0].run(|| {
        let s = std::net::UdpSocket::bind((PODS[0], 40_200)).expect("bind");
        for port in 1..=PORTS {
            s.send_to(&[0; 64], (PODS[1], port)).expect("send");
        }
    });
    let (src, dst) = (format!("{}:40201", PODS[0]), format!("{}:7200", PODS[1]));
    traffic::udp(&lab.pods[0], &src, &lab.pods[1], &dst, 10, 100);
    let series = format!(
        "{{source_address=\"{}\",destination_address=\"{}\",destination_port=\"7200\",network_transport=\"udp\",network_type=\"ipv4\",netprobe_origin=\"outside\"}}",
        PODS[0], PODS[1]
    );
    let packets = format!("netprobe_flow_packets_total{series}");
    let before = agent.wait_metrics("10 packets and all ports", |m| {
        sample(m, &packets) == Some(10.0)
            && sample(m, "netprobe_agent_series{metric=\"netprobe.flow.packets\"}")
                .is_some_and(|n| n > f64::from(PORTS))
    });
    vm.wait_query(&packets, Duration::from_secs(30), |v| {
        single_value(v) == Some(10.0)
    });
    let failed = "netprobe_agent_export_requests_total{result=\"failed\"}";
    assert_eq!(sample(&before, failed), Some(0.0));

    let delivered = proxy.seen().len();
    proxy.down();
    traffic::udp(&lab.pods[0], &src, &lab.pods[1], &dst, 20, 100);
    let at = |n: f64| {
        agent.wait_metrics(&format!("{n} failed exports"), |m| {
            sample(m, failed).is_some_and(|f| f >= n)
        })
    };
    // Counting goes on while the collector is away.
    let early = at(3.0);
    assert_eq!(sample(&early, &packets), Some(30.0));
    let rss_early = rss_mib(agent.pid());
    let late = at(15.0);
    let rss_late = rss_mib(agent.pid());
    // Twelve more failed requests of about a megabyte each: nothing of them is kept.
    assert!(
        rss_late - rss_early < 4.0,
        "memory grew {rss_early:.1} → {rss_late:.1} MiB during the outage"
    );
    proxy.up();
    // The first export after the outage carries the exact new totals.
    vm.wait_query(&packets, Duration::from_secs(30), |v| {
        single_value(v) == Some(30.0)
    });
    let after = agent.wait_metrics("an export after the outage", |m| {
        sample(m, "netprobe_agent_export_requests_total{result=\"ok\"}")
            > sample(&late, "netprobe_agent_export_requests_total{result=\"ok\"}")
    });
    // Every failed request carried the same points (no series came or went): the dropped
    // points are exactly failed × points per request, as the proxy counts them too.
    let per_request = points(&after);
    assert_eq!(per_request, points(&before), "the series stayed the same");
    let since = &proxy.seen()[delivered..];
    assert!(
        !since.is_empty() && since.iter().all(|s| s.points == per_request),
        "{per_request} points per request"
    );
    let failed_n = sample(&after, failed).expect("failed");
    assert_eq!(
        sample(&after, "netprobe_agent_export_dropped_total"),
        Some(failed_n * per_request as f64)
    );
    let _ = std::fs::remove_file(&config);
}
