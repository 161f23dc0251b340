//! OTLP export against receivers built on the official OTLP protobuf definitions (the
//! `opentelemetry-proto` crate's tonic server for gRPC; the same messages over HTTP): the data
//! points that arrive are the snapshot's, exactly; a receiver that is absent at first is caught
//! up with once it starts, and the loss is counted.

mod common;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant, SystemTime},
};

use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    common::v1::any_value,
    metrics::v1::{metric::Data, number_data_point},
};
use otel_netprobe::{
    config::{OtlpConfig, OtlpProtocol},
    export::otlp::{self, ExportStats},
    flow::{FlowView, GlobalCounters, Snapshot},
    telemetry::Health,
};
use prost::Message;

type Received = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

struct Receiver(Received);

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn grpc_receiver(addr: SocketAddr, got: Received) {
    let svc = MetricsServiceServer::new(Receiver(got))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve(addr)
        .await
        .unwrap();
}

async fn http_receiver(addr: SocketAddr, got: Received) {
    use axum::{body::Bytes, http::HeaderMap, routing::post};
    let app = axum::Router::new().route(
        "/v1/metrics",
        post(move |headers: HeaderMap, body: Bytes| {
            let got = Arc::clone(&got);
            async move {
                assert_eq!(headers["content-type"], "application/x-protobuf");
                let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(
                        &mut flate2::read::GzDecoder::new(&body[..]),
                        &mut out,
                    )
                    .unwrap();
                    out
                } else {
                    body.to_vec()
                };
                got.lock()
                    .unwrap()
                    .push(ExportMetricsServiceRequest::decode(&raw[..]).unwrap());
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}

fn snapshot() -> Snapshot {
    let key = |sport: u16| FlowKey {
        src_addr: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
        dst_addr: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
        src_port: sport.to_be(),
        dst_port: 443u16.to_be(),
        protocol: 6,
        ip_version: 4,
        pad: [0; 2],
    };
    let mut b1 = [0; SIZE_BUCKETS];
    b1[5] = 10;
    let mut b2 = [0; SIZE_BUCKETS];
    b2[0] = 4;
    Snapshot {
        taken_at: SystemTime::now(),
        flows: vec![
            FlowView::new(&key(40000), 15_000, b1, 0x12, (1, 2)),
            FlowView::new(&key(40001), 4 * 52, b2, 0x12, (1, 2)),
        ],
        counters: GlobalCounters::default(),
        health: Health {
            read_cycles_total: 3,
            ..Health::default()
        },
        ..Snapshot::empty()
    }
}

/// Runs the exporter for `snap` against `endpoint` until `got` has a request.
fn export_until_received(
    protocol: OtlpProtocol,
    endpoint: String,
    got: &Received,
    stats: &Arc<ExportStats>,
) {
    let cfg = OtlpConfig {
        endpoint,
        protocol,
        interval: Duration::from_millis(200),
        timeout: Duration::from_millis(500),
        cluster_name: "lab".into(),
        ..OtlpConfig::default()
    };
    export_with(cfg, got, stats);
}

/// Runs the exporter with `cfg` until `got` has a request.
fn export_with(cfg: OtlpConfig, got: &Received, stats: &Arc<ExportStats>) {
    let shared = Arc::new(RwLock::new(Arc::new(snapshot())));
    let resource = otlp::resource(&cfg, |k| {
        (k == "K8S_NODE_NAME").then(|| "node-1".to_owned())
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = {
        let _guard = rt.enter();
        otlp::client::OtlpClient::new(&cfg).expect("client")
    };
    let task = rt.spawn(otlp::run(cfg, client, resource, shared, Arc::clone(stats)));
    let deadline = Instant::now() + Duration::from_secs(20);
    rt.block_on(async {
        while got.lock().unwrap().is_empty() {
            assert!(Instant::now() < deadline, "nothing received");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    task.abort();
}

fn check(req: &ExportMetricsServiceRequest) {
    let rm = &req.resource_metrics[0];
    let res: Vec<(String, String)> = rm
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .map(|kv| {
            let Some(any_value::Value::StringValue(v)) =
                kv.value.as_ref().and_then(|v| v.value.clone())
            else {
                panic!("string")
            };
            (kv.key.clone(), v)
        })
        .collect();
    let get = |k: &str| {
        res.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("service.name"), Some("otel-netprobe"));
    assert_eq!(get("k8s.node.name"), Some("node-1"));
    assert_eq!(get("k8s.cluster.name"), Some("lab"));
    assert!(get("service.instance.id").is_some_and(|id| id.len() >= 16));
    let metrics = &rm.scope_metrics[0].metrics;
    let find = |n: &str| {
        metrics
            .iter()
            .find(|m| m.name == n)
            .unwrap_or_else(|| panic!("{n} missing"))
    };
    // Two client ports to one server port: one series with both flows' counts.
    let Some(Data::Sum(packets)) = &find("netprobe.flow.packets").data else {
        panic!("sum")
    };
    assert!(packets.is_monotonic);
    assert_eq!(packets.aggregation_temporality, 2, "cumulative");
    assert_eq!(packets.data_points.len(), 1);
    let p = &packets.data_points[0];
    assert_eq!(p.value, Some(number_data_point::Value::AsInt(14)));
    let attrs: Vec<&str> = p.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        attrs,
        [
            "source.address",
            "destination.address",
            "destination.port",
            "network.transport",
            "network.type"
        ]
    );
    let Some(Data::Sum(bytes)) = &find("netprobe.flow.bytes").data else {
        panic!("sum")
    };
    assert_eq!(
        bytes.data_points[0].value,
        Some(number_data_point::Value::AsInt(15_208))
    );
    let size = find("netprobe.packet.size");
    assert_eq!(size.unit, "By");
    let Some(Data::Histogram(h)) = &size.data else {
        panic!("histogram")
    };
    let d = &h.data_points[0];
    assert_eq!(
        d.explicit_bounds,
        [64.0, 128.0, 256.0, 512.0, 1024.0, 1500.0, 9000.0]
    );
    assert_eq!(d.bucket_counts, [4, 0, 0, 0, 0, 10, 0, 0]);
    assert_eq!((d.count, d.sum), (14, Some(15_208.0)));
    assert!(
        metrics
            .iter()
            .any(|m| m.name == "netprobe.agent.read.cycles")
    );
}

#[test]
fn grpc_export_delivers_the_snapshot() {
    let addr = free_port();
    let got = Received::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(grpc_receiver(addr, Arc::clone(&got)));
    let stats = Arc::new(ExportStats::default());
    export_until_received(OtlpProtocol::Grpc, format!("http://{addr}"), &got, &stats);
    check(&got.lock().unwrap()[0]);
}

#[test]
fn http_export_delivers_the_snapshot() {
    let addr = free_port();
    let got = Received::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(http_receiver(addr, Arc::clone(&got)));
    let stats = Arc::new(ExportStats::default());
    export_until_received(
        OtlpProtocol::HttpProtobuf,
        format!("http://{addr}"),
        &got,
        &stats,
    );
    check(&got.lock().unwrap()[0]);
}

#[test]
fn a_late_collector_gets_the_totals_and_the_loss_is_counted() {
    let addr = free_port();
    let got = Received::default();
    let stats = Arc::new(ExportStats::default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    // Start the receiver only after the exporter has failed a few times.
    let (g, s) = (Arc::clone(&got), Arc::clone(&stats));
    rt.spawn(async move {
        while s.failed.load(std::sync::atomic::Ordering::Relaxed) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        grpc_receiver(addr, g).await;
    });
    export_until_received(OtlpProtocol::Grpc, format!("http://{addr}"), &got, &stats);
    check(&got.lock().unwrap()[0]);
    let failed = stats.failed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(failed >= 2);
    // Every failed request's points were counted as dropped: 3 flow metrics (1 series each)
    // plus the agent's own series.
    let dropped = stats
        .dropped_points
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        dropped % failed,
        0,
        "the same number of points per failed request"
    );
    assert!(dropped / failed > 3);
}

#[test]
fn grpc_over_mutual_tls() {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let dir = std::env::temp_dir().join(format!("netprobe-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    common::certs::make(&dir);
    let file = |n: &str| dir.join(n).display().to_string();
    let read = |n: &str| std::fs::read(dir.join(n)).unwrap();
    let addr = free_port();
    let got = Received::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(read("server.pem"), read("server.key")))
        .client_ca_root(Certificate::from_pem(read("ca.pem")));
    let svc = MetricsServiceServer::new(Receiver(Arc::clone(&got)))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    rt.spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(svc)
            .serve(addr),
    );
    let cfg = OtlpConfig {
        endpoint: format!("https://{addr}"),
        protocol: OtlpProtocol::Grpc,
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(2),
        cluster_name: "lab".into(),
        ca_file: file("ca.pem"),
        cert_file: file("client.pem"),
        key_file: file("client.key"),
        ..OtlpConfig::default()
    };
    let stats = Arc::new(ExportStats::default());
    export_with(cfg, &got, &stats);
    check(&got.lock().unwrap()[0]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unusable_tls_files_fail_at_setup() {
    let dir = std::env::temp_dir().join(format!("netprobe-badtls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "not a certificate").unwrap();
    let cfg = OtlpConfig {
        endpoint: "https://127.0.0.1:4318".into(),
        protocol: OtlpProtocol::HttpProtobuf,
        ca_file: ca.display().to_string(),
        ..OtlpConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let _guard = rt.enter();
    let err = otlp::client::OtlpClient::new(&cfg)
        .err()
        .expect("a bad CA file is refused");
    assert!(err.to_string().contains("otlp.ca_file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
