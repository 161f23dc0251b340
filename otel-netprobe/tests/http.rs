//! The embedded HTTP server over a real socket: `/metrics`, `/api/v1/summary`, `/healthz`.

mod common;

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};
use otel_netprobe::{
    export::{http, serve, summary},
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
    let tcp = "source_address=\"10.0.0.1\",destination_address=\"10.0.0.9\",destination_port=\"443\",network_transport=\"tcp\",network_type=\"ipv4\",netprobe_origin=\"outside\"";
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
    assert!(
        e.to_string().starts_with(&format!(
            "no agent answers at {closed} (tried http://{closed}/api/v1/summary)"
        )),
        "{e}"
    );

    assert_eq!(get(addr, "/healthz").0, 200);
    // A snapshot older than the staleness limit makes the agent unhealthy.
    let mut stale = (*http::latest(&shared)).clone();
    stale.taken_at = SystemTime::now() - Duration::from_secs(120);
    http::publish(&shared, stale);
    assert_eq!(get(addr, "/healthz").0, 503);
}

/// A snapshot of `n` flows from distinct sources (one series each, the budget `n`).
fn snapshot_of(n: u32) -> otel_netprobe::frame::Snapshot {
    let flows = (0..n)
        .map(|i| {
            let [_, a, b, c] = i.to_be_bytes();
            flow([10, a, b, c], 40000, 443, 6, 3, 100)
        })
        .collect();
    let budgets = Budgets {
        flows: otel_netprobe::flow::Budget::new(
            otel_netprobe::config::FlowAttr::parse_all(otel_netprobe::config::FlowAttr::STANDALONE),
            n as usize + 1,
        ),
        sizes: None,
    };
    Aggregator::standalone(budgets).publish(&Reading {
        flows,
        health: Health {
            read_cycles_total: 1,
            ..Health::default()
        },
        ..Reading::default()
    })
}

/// The agent's server (`export::serve`) on 127.0.0.1 with `limits`, on its own runtime.
fn serve(
    shared: &http::SharedSnapshot,
    limits: serve::Limits,
) -> (
    tokio::runtime::Runtime,
    serve::Server,
    Arc<Telemetry>,
    Arc<http::Renders>,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let telemetry = Arc::new(Telemetry::default());
    let renders = Arc::new(http::Renders::default());
    let app = http::router_with(
        Arc::clone(shared),
        Arc::clone(&telemetry),
        Duration::from_secs(60),
        Arc::clone(&renders),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let server = {
        let _guard = rt.enter();
        serve::Server::spawn(listener, app, limits, Arc::clone(&telemetry))
    };
    (rt, server, telemetry, renders)
}

#[test]
fn metrics_and_summary_are_rendered_once_per_snapshot() {
    let shared = http::shared_empty();
    http::publish(&shared, snapshot_of(500));
    let (_rt, server, _telemetry, renders) = serve(&shared, serve::Limits::default());
    let addr = server.addr();
    let scrape_all = || {
        let threads: Vec<_> = (0..8)
            .map(|_| {
                std::thread::spawn(move || {
                    for path in ["/metrics", "/api/v1/summary"].repeat(10) {
                        let (code, body) = get(addr, path);
                        assert_eq!(code, 200);
                        assert!(!body.is_empty());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    };
    // 160 requests, 80 to each endpoint, concurrently: one rendering each.
    scrape_all();
    assert_eq!(renders.count(), 2);
    // A new read cycle: one more of each, however often asked.
    http::publish(&shared, snapshot_of(400));
    scrape_all();
    assert_eq!(renders.count(), 4);
    let (_, metrics) = get(addr, "/metrics");
    assert!(metrics.contains("netprobe_flow_packets_total{source_address=\"10.0.1.143\""));
    assert_eq!(renders.count(), 4);
}

/// A client socket whose receive buffer is as small as the kernel allows, connected to `addr`.
fn small_window_client(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::os::fd::FromRawFd;
    // SAFETY: plain socket calls on a descriptor this function owns until it is wrapped.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0, "socket");
        let size: libc::c_int = 1;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        );
        let std::net::SocketAddr::V4(v4) = addr else {
            panic!("IPv4 expected")
        };
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&raw const sin).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(r, 0, "connect: {}", std::io::Error::last_os_error());
        std::net::TcpStream::from_raw_fd(fd)
    }
}

#[test]
fn a_client_that_stops_reading_its_response_is_closed_by_the_idle_timeout() {
    use otel_netprobe::telemetry::http::Closed;
    use std::io::{Read as _, Write as _};
    // A /metrics of tens of MiB, more than the socket buffers of both ends hold.
    let shared = http::shared_empty();
    http::publish(&shared, snapshot_of(60_000));
    let limits = serve::Limits {
        header_read_timeout: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(1),
        ..serve::Limits::default()
    };
    let (_rt, server, telemetry, _) = serve(&shared, limits);
    let mut c = small_window_client(server.addr());
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n")
        .unwrap();
    // Read the first bytes, then nothing: the server's writes stall.
    let mut first = [0u8; 12];
    c.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let closed = common::wait_until(Duration::from_secs(30), || {
        telemetry.http.closed_total(Closed::IdleTimeout) == 1
    });
    assert!(closed, "the stalled connection was not closed");
    assert_eq!(telemetry.http.closed_total(Closed::HeaderTimeout), 0);
    assert_eq!(telemetry.http.open(), 0);
}
