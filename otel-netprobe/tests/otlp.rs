//! OTLP export against receivers built on the official OTLP protobuf definitions (the
//! `opentelemetry-proto` crate's tonic server for gRPC; the same messages over HTTP): the data
//! points that arrive are the frame's, exactly; the errors the OTLP spec calls retryable (HTTP
//! 429/502/503/504, gRPC UNAVAILABLE, ...) are retried with backoff and the others are not; the
//! wait a receiver asks for (HTTP `Retry-After`, gRPC `RetryInfo`) is honoured, also by the
//! next exports when it outlasts one; points a receiver rejects in an accepted request
//! (`partial_success`) are counted; a receiver that is absent at first is caught up with once
//! it starts, and the loss is counted.

mod common;

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
        metrics_service_server::{MetricsService, MetricsServiceServer},
    },
    common::v1::any_value,
    metrics::v1::{metric::Data, number_data_point},
};
use otel_netprobe::{
    config::{OtlpConfig, OtlpProtocol},
    export::{
        http::{self, SharedSnapshot},
        otlp::{self, Exporter},
    },
    flow::{Budgets, FlowView, Health, Reading},
    frame::{Aggregator, Snapshot, point_count},
    metrics,
    telemetry::{Count, Telemetry},
};
use prost::Message;

type Received = Arc<Mutex<Vec<ExportMetricsServiceRequest>>>;

/// One answer of a scripted receiver.
#[derive(Clone, Copy, Debug)]
enum Answer {
    /// An HTTP status or a gRPC code (200: accepted).
    Status(u16),
    /// That refusal, asking for a retry after so many seconds (`Retry-After`, `RetryInfo`).
    RetryAfter(u16, u64),
    /// Accepted, but so many points rejected (`partial_success`).
    Partial(i64),
}

/// What a receiver answers, one answer per request (then success), and when requests came.
#[derive(Default)]
struct Script {
    answers: Mutex<VecDeque<Answer>>,
    attempts: Mutex<Vec<Instant>>,
}

impl Script {
    fn new(statuses: &[u16]) -> Arc<Self> {
        let answers: Vec<Answer> = statuses.iter().map(|s| Answer::Status(*s)).collect();
        Self::answering(&answers)
    }

    fn answering(answers: &[Answer]) -> Arc<Self> {
        let s = Self::default();
        s.answers.lock().unwrap().extend(answers);
        Arc::new(s)
    }

    /// Records an attempt and returns the answer.
    fn next(&self) -> Answer {
        self.attempts.lock().unwrap().push(Instant::now());
        let next = self.answers.lock().unwrap().pop_front();
        next.unwrap_or(Answer::Status(200))
    }

    fn attempts(&self) -> Vec<Instant> {
        self.attempts.lock().unwrap().clone()
    }
}

const REJECTED: &str = "points older than the retention";

fn partial(rejected: i64) -> ExportMetricsServiceResponse {
    ExportMetricsServiceResponse {
        partial_success: Some(ExportMetricsPartialSuccess {
            rejected_data_points: rejected,
            error_message: REJECTED.into(),
        }),
    }
}

/// The gRPC answer (200: OK; codes by number).
fn grpc_answer(answer: Answer) -> Result<ExportMetricsServiceResponse, tonic::Status> {
    use tonic_types::{ErrorDetails, StatusExt as _};
    let code = |c: u16| tonic::Code::from(i32::from(c));
    match answer {
        Answer::Status(200) => Ok(ExportMetricsServiceResponse::default()),
        Answer::Status(c) => Err(tonic::Status::new(code(c), "collector refuses")),
        Answer::RetryAfter(c, secs) => Err(tonic::Status::with_error_details(
            code(c),
            "collector overloaded",
            ErrorDetails::with_retry_info(Some(Duration::from_secs(secs))),
        )),
        Answer::Partial(n) => Ok(partial(n)),
    }
}

struct Receiver(Received, Arc<Script>);

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        req: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let response = grpc_answer(self.1.next())?;
        self.0.lock().unwrap().push(req.into_inner());
        Ok(tonic::Response::new(response))
    }
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

async fn grpc_receiver(addr: SocketAddr, got: Received, script: Arc<Script>) {
    let svc = MetricsServiceServer::new(Receiver(got, script))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    tonic::transport::Server::builder()
        .add_service(svc)
        .serve(addr)
        .await
        .unwrap();
}

async fn http_receiver(addr: SocketAddr, got: Received, script: Arc<Script>) {
    use axum::{
        body::Bytes,
        http::{HeaderMap, StatusCode},
        response::IntoResponse,
        routing::post,
    };
    let app = axum::Router::new().route(
        "/v1/metrics",
        post(move |headers: HeaderMap, body: Bytes| {
            let (got, script) = (Arc::clone(&got), Arc::clone(&script));
            async move {
                let status = |s: u16| StatusCode::from_u16(s).unwrap();
                let response = match script.next() {
                    Answer::Status(200) => ExportMetricsServiceResponse::default(),
                    Answer::Status(s) => return status(s).into_response(),
                    Answer::RetryAfter(s, secs) => {
                        return (status(s), [("retry-after", secs.to_string())]).into_response();
                    }
                    Answer::Partial(n) => partial(n),
                };
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
                (
                    [("content-type", "application/x-protobuf")],
                    response.encode_to_vec(),
                )
                    .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    axum::serve(listener, app).await.unwrap();
}

/// Two flows, 10.0.0.1:40000 and :40001 → 10.0.0.2:443, through the aggregator.
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
    Aggregator::standalone(Budgets::default()).publish(&Reading {
        flows: vec![
            FlowView::new(&key(40000), 15_000, b1, 0x12, (1, 2)),
            FlowView::new(&key(40001), 4 * 52, b2, 0x12, (1, 2)),
        ],
        health: Health {
            read_cycles_total: 3,
            ..Health::default()
        },
        ..Reading::default()
    })
}

/// The exporter for `cfg` on its own runtime, exporting the [`snapshot`] every interval.
struct Running {
    rt: tokio::runtime::Runtime,
    telemetry: Arc<Telemetry>,
    _stop: tokio::sync::watch::Sender<bool>,
}

fn run_exporter(cfg: &OtlpConfig) -> Running {
    let shared: SharedSnapshot = http::shared_empty();
    http::publish(&shared, snapshot());
    let resource = otlp::resource(cfg, |k| (k == "K8S_NODE_NAME").then(|| "node-1".to_owned()));
    let telemetry = Arc::new(Telemetry::default());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let exporter = {
        let _guard = rt.enter();
        Exporter::new(cfg, &resource, Arc::clone(&telemetry)).expect("exporter")
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    rt.spawn(exporter.run(shared, rx));
    Running {
        rt,
        telemetry,
        _stop: stop,
    }
}

impl Running {
    /// Drives the exporter until `done` holds (20 s deadline).
    fn until(&self, what: &str, done: impl Fn(&Telemetry) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        self.rt.block_on(async {
            while !done(&self.telemetry) {
                assert!(Instant::now() < deadline, "{what}: not within 20 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
    }
}

fn config(protocol: OtlpProtocol, endpoint: String) -> OtlpConfig {
    OtlpConfig {
        endpoint,
        protocol,
        interval: Duration::from_millis(200),
        timeout: Duration::from_secs(5),
        cluster_name: "lab".into(),
        ..OtlpConfig::default()
    }
}

/// The points one export of [`snapshot`] carries: its frame and the agent's health.
fn points_per_export() -> u64 {
    let health = metrics::agent::families(&Telemetry::default());
    point_count(snapshot().frame.families.iter().chain(&health))
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
    // One per node, stable across restarts: the node's name.
    assert_eq!(get("service.instance.id"), Some("node-1"));
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
            "network.type",
            "netprobe.origin"
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
    let Some(Data::Sum(failed)) = &find("netprobe.agent.export.requests").data else {
        panic!("sum")
    };
    assert_eq!(failed.data_points.len(), 2, "ok and failed, from the start");
    let all: u64 = metrics.iter().map(|m| points(m.data.as_ref())).sum();
    assert_eq!(all, points_per_export());
}

fn points(d: Option<&Data>) -> u64 {
    match d {
        Some(Data::Sum(s)) => s.data_points.len() as u64,
        Some(Data::Gauge(g)) => g.data_points.len() as u64,
        Some(Data::Histogram(h)) => h.data_points.len() as u64,
        other => panic!("{other:?}"),
    }
}

fn received(got: &Received) -> usize {
    got.lock().unwrap().len()
}

#[test]
fn grpc_export_delivers_the_frame() {
    let addr = free_port();
    let got = Received::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(grpc_receiver(addr, Arc::clone(&got), Script::new(&[])));
    let run = run_exporter(&config(OtlpProtocol::Grpc, format!("http://{addr}")));
    run.until("an export", |_| received(&got) > 0);
    check(&got.lock().unwrap()[0]);
}

#[test]
fn http_export_delivers_the_frame() {
    let addr = free_port();
    let got = Received::default();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(http_receiver(addr, Arc::clone(&got), Script::new(&[])));
    let run = run_exporter(&config(
        OtlpProtocol::HttpProtobuf,
        format!("http://{addr}"),
    ));
    run.until("an export", |_| received(&got) > 0);
    check(&got.lock().unwrap()[0]);
}

/// A receiver of `protocol` at `addr` answering as `script` says, on its own runtime, and an
/// exporter to it exporting once an hour unless `tweak` says otherwise.
fn scripted(
    protocol: OtlpProtocol,
    addr: SocketAddr,
    got: &Received,
    script: &Arc<Script>,
    tweak: impl FnOnce(&mut OtlpConfig),
) -> (tokio::runtime::Runtime, Running) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (got, script) = (Arc::clone(got), Arc::clone(script));
    match protocol {
        OtlpProtocol::Grpc => rt.spawn(grpc_receiver(addr, got, script)),
        OtlpProtocol::HttpProtobuf => rt.spawn(http_receiver(addr, got, script)),
    };
    let mut cfg = config(protocol, format!("http://{addr}"));
    cfg.interval = Duration::from_secs(3600);
    tweak(&mut cfg);
    (rt, run_exporter(&cfg))
}

/// Attempts `n` and `n + 1` were at least `min` apart (the backoff only ever adds time).
fn assert_backoff(attempts: &[Instant], n: usize, min: Duration) {
    let gap = attempts[n + 1] - attempts[n];
    assert!(
        gap >= min,
        "retry {n} after {gap:?}, before the {min:?} backoff"
    );
}

#[test]
fn retryable_answers_are_retried_with_backoff() {
    for (protocol, answers) in [
        (OtlpProtocol::HttpProtobuf, [429, 503]),
        (OtlpProtocol::Grpc, [14, 14]),
    ] {
        let addr = free_port();
        let (got, script) = (Received::default(), Script::new(&answers));
        let (_rt, run) = scripted(protocol, addr, &got, &script, |_| {});
        run.until("the export", |t| t.get(Count::ExportOk) == 1);
        // One export, three attempts: the two refusals were retried, 100 ms then 200 ms later.
        let attempts = script.attempts();
        assert_eq!(attempts.len(), 3, "{protocol:?}");
        assert_backoff(&attempts, 0, Duration::from_millis(100));
        assert_backoff(&attempts, 1, Duration::from_millis(200));
        assert_eq!(run.telemetry.get(Count::ExportFailed), 0);
        check(&got.lock().unwrap()[0]);
    }
}

#[test]
fn other_refusals_are_not_retried_and_their_points_are_counted() {
    for (protocol, answer) in [(OtlpProtocol::HttpProtobuf, 400), (OtlpProtocol::Grpc, 3)] {
        let addr = free_port();
        let (got, script) = (Received::default(), Script::new(&[answer]));
        let (_rt, run) = scripted(protocol, addr, &got, &script, |_| {});
        run.until("the failure", |t| t.get(Count::ExportFailed) == 1);
        assert_eq!(script.attempts().len(), 1, "{protocol:?}: not retried");
        assert_eq!(run.telemetry.get(Count::ExportDropped), points_per_export());
        assert_eq!(received(&got), 0);
    }
}

#[test]
fn rejected_points_of_an_accepted_export_are_counted() {
    for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
        let addr = free_port();
        let (got, script) = (
            Received::default(),
            Script::answering(&[Answer::Partial(3)]),
        );
        let (_rt, run) = scripted(protocol, addr, &got, &script, |_| {});
        run.until("the export", |t| t.get(Count::ExportOk) == 1);
        let t = &run.telemetry;
        assert_eq!(t.get(Count::ExportRejected), 3, "{protocol:?}");
        assert_eq!(
            (t.get(Count::ExportFailed), t.get(Count::ExportDropped)),
            (0, 0)
        );
        assert_eq!(
            script.attempts().len(),
            1,
            "{protocol:?}: accepted, not retried"
        );
        check(&got.lock().unwrap()[0]);
    }
}

#[test]
fn the_receiver_sets_the_wait_before_a_retry() {
    // Each refusal asks for one second, where the backoff would wait 100 ms. gRPC's
    // RESOURCE_EXHAUSTED (8) is retried only with a RetryInfo.
    for (protocol, answer) in [
        (OtlpProtocol::HttpProtobuf, Answer::RetryAfter(429, 1)),
        (OtlpProtocol::HttpProtobuf, Answer::RetryAfter(503, 1)),
        (OtlpProtocol::Grpc, Answer::RetryAfter(14, 1)),
        (OtlpProtocol::Grpc, Answer::RetryAfter(8, 1)),
    ] {
        let addr = free_port();
        let (got, script) = (Received::default(), Script::answering(&[answer]));
        let (_rt, run) = scripted(protocol, addr, &got, &script, |_| {});
        run.until("the export", |t| t.get(Count::ExportOk) == 1);
        let attempts = script.attempts();
        assert_eq!(attempts.len(), 2, "{answer:?}");
        assert_backoff(&attempts, 0, Duration::from_secs(1));
        check(&got.lock().unwrap()[0]);
    }
    let addr = free_port();
    let (got, script) = (Received::default(), Script::new(&[8]));
    let (_rt, run) = scripted(OtlpProtocol::Grpc, addr, &got, &script, |_| {});
    run.until("the failure", |t| t.get(Count::ExportFailed) == 1);
    assert_eq!(
        script.attempts().len(),
        1,
        "RESOURCE_EXHAUSTED without RetryInfo"
    );
}

#[test]
fn a_wait_longer_than_an_export_holds_the_next_exports() {
    // The receiver asks for 2 s; an export may take 500 ms and one is due every 200 ms: the
    // first fails, those due in the next 2 s fail unsent, and the receiver hears nothing more
    // until then.
    let addr = free_port();
    let (got, script) = (
        Received::default(),
        Script::answering(&[Answer::RetryAfter(503, 2)]),
    );
    let (_rt, run) = scripted(OtlpProtocol::HttpProtobuf, addr, &got, &script, |c| {
        c.interval = Duration::from_millis(200);
        c.timeout = Duration::from_millis(500);
    });
    run.until("an export after the wait", |t| t.get(Count::ExportOk) >= 1);
    let attempts = script.attempts();
    assert_backoff(&attempts, 0, Duration::from_secs(2));
    let t = &run.telemetry;
    let failed = t.get(Count::ExportFailed);
    assert!(
        failed >= 2,
        "the refused export and at least one held back: {failed}"
    );
    assert_eq!(t.get(Count::ExportDropped), failed * points_per_export());
    check(&got.lock().unwrap()[0]);
}

#[test]
fn a_late_collector_gets_the_totals_and_the_loss_is_counted() {
    let addr = free_port();
    let got = Received::default();
    let mut cfg = config(OtlpProtocol::Grpc, format!("http://{addr}"));
    cfg.timeout = Duration::from_millis(300);
    let run = run_exporter(&cfg);
    // Nothing listens yet: a few exports fail (refused connections, retried until the timeout).
    run.until("two failures", |t| t.get(Count::ExportFailed) >= 2);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(grpc_receiver(addr, Arc::clone(&got), Script::new(&[])));
    run.until("an export", |_| received(&got) > 0);
    check(&got.lock().unwrap()[0]);
    let failed = run.telemetry.get(Count::ExportFailed);
    // Every failed request's points were counted as dropped, exactly.
    assert_eq!(
        run.telemetry.get(Count::ExportDropped),
        failed * points_per_export()
    );
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
    let svc = MetricsServiceServer::new(Receiver(Arc::clone(&got), Script::new(&[])))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
    rt.spawn(
        tonic::transport::Server::builder()
            .tls_config(tls)
            .unwrap()
            .add_service(svc)
            .serve(addr),
    );
    let cfg = OtlpConfig {
        ca_file: file("ca.pem"),
        cert_file: file("client.pem"),
        key_file: file("client.key"),
        ..config(OtlpProtocol::Grpc, format!("https://{addr}"))
    };
    let run = run_exporter(&cfg);
    run.until("an export", |_| received(&got) > 0);
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
    let err = Exporter::new(&cfg, &[], Arc::default())
        .err()
        .expect("a bad CA file is refused");
    assert!(err.to_string().contains("otlp.ca_file"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
