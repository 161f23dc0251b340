//! The embedded HTTP server over a real socket: `/metrics`, `/api/v1/summary`, `/healthz`.

mod common;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};
use otel_netprobe::{
    export::{http, summary},
    flow::{Budgets, FlowView, Health, Reading},
    frame::Aggregator,
    metrics::summary::Summary,
    telemetry::Telemetry,
};

fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    common::backends::http_get(&format!("http://{addr}{path}")).expect("GET")
}

fn flow(src: [u8; 4], sport: u16, dport: u16, protocol: u8, packets: u64, size: u64) -> FlowView {
    let key = FlowKey {
        src_addr: [u32::from_ne_bytes(src), 0, 0, 0],
        dst_addr: [u32::from_ne_bytes([10, 0, 0, 9]), 0, 0, 0],
        src_port: sport.to_be(),
        dst_port: dport.to_be(),
        protocol,
        ip_version: 4,
        pad: [0; 2],
    };
    let mut b = [0; SIZE_BUCKETS];
    b[netprobe_ebpf::size_bucket(size as u32)] = packets;
    FlowView::new(&key, packets * size, b, 0x12, (1, 2))
}

#[test]
fn serves_metrics_summary_and_health() {
    let snap = Aggregator::standalone(Budgets::default()).publish(&Reading {
        flows: vec![
            flow([10, 0, 0, 1], 40000, 443, 6, 10, 1500),
            flow([10, 0, 0, 1], 40001, 443, 6, 5, 100),
            flow([10, 0, 0, 2], 50000, 53, 17, 3, 80),
        ],
        health: Health {
            read_cycles_total: 1,
            ..Health::default()
        },
        ..Reading::default()
    });
    let shared = http::shared_empty();
    http::publish(&shared, snap);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http::router(
        Arc::clone(&shared),
        Arc::new(Telemetry::default()),
        Duration::from_secs(60),
    );
    std::thread::spawn(move || rt.block_on(async { axum::serve(listener, app).await }));

    let (code, metrics) = get(addr, "/metrics");
    assert_eq!(code, 200);
    // Two client ports to one server port add up into one series.
    let tcp = "source_address=\"10.0.0.1\",destination_address=\"10.0.0.9\",destination_port=\"443\",network_transport=\"tcp\",network_type=\"ipv4\"";
    assert!(
        metrics.contains(&format!("netprobe_flow_packets_total{{{tcp}}} 15\n")),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("netprobe_flow_bytes_total{{{tcp}}} 15500\n")));
    assert!(metrics.contains(&format!(
        "netprobe_packet_size_bytes_bucket{{{tcp},le=\"128\"}} 5\n"
    )));
    assert!(metrics.contains(&format!(
        "netprobe_packet_size_bytes_bucket{{{tcp},le=\"1500\"}} 15\n"
    )));
    // The agent's own health is appended, error counters present at 0.
    assert!(metrics.contains("netprobe_agent_export_requests_total{result=\"failed\"} 0\n"));
    assert!(metrics.contains("netprobe_agent_read_errors_total 0\n"));

    let (code, body) = get(addr, "/api/v1/summary");
    assert_eq!(code, 200);
    let s: Summary = serde_json::from_str(&body).unwrap();
    assert_eq!((s.total.packets, s.total.bytes, s.flows), (18, 15740, 3));
    assert_eq!((s.unique_sources, s.unique_destinations), (2, 1));
    assert_eq!(s.protocols["tcp"].packets, 15);
    assert_eq!(s.protocols["udp"].bytes, 240);
    assert_eq!(s.top_talkers[0].address, "10.0.0.1");
    assert_eq!(s.tcp_states["established"], 2);
    // The frame's flow metrics, totalled generically.
    let total = |name: &str| {
        let m = s.metrics.iter().find(|m| m.name == name).expect(name);
        assert_eq!(m.rows.len(), 1, "{m:?}");
        m.rows[0].clone()
    };
    assert_eq!(Some(total("netprobe.flow.packets").value), Some(18.0));
    assert_eq!(Some(total("netprobe.flow.bytes").value), Some(15_740.0));
    let sizes = total("netprobe.packet.size");
    assert_eq!((sizes.value, sizes.sum), (18.0, Some(15_740.0)));
    let le = |b: &str| {
        sizes
            .buckets
            .iter()
            .find(|(le, _)| le == b)
            .map(|(_, n)| *n)
    };
    assert_eq!(
        (le("64"), le("128"), le("1500"), le("+Inf")),
        (Some(0), Some(8), Some(10), Some(0))
    );
    assert!(summary::table(&s).contains("netprobe.packet.size"));
    // What `otel-netprobe summary` fetches (hyper's client) is the same document.
    assert_eq!(summary::fetch(&format!("http://{addr}/")).unwrap(), body);
    let e = summary::fetch("https://127.0.0.1:9").unwrap_err();
    assert_eq!(
        e.to_string(),
        "https://127.0.0.1:9: only http:// URLs are supported"
    );
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let e = summary::fetch(&format!("http://{closed}")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("talking to http://{closed}/api/v1/summary failed")
    );

    assert_eq!(get(addr, "/healthz").0, 200);
    // A snapshot older than the staleness limit makes the agent unhealthy.
    let mut stale = (*http::latest(&shared)).clone();
    stale.taken_at = SystemTime::now() - Duration::from_secs(120);
    http::publish(&shared, stale);
    assert_eq!(get(addr, "/healthz").0, 503);
}
