//! The OTLP writer (`export::otlp::wire`, what the agent sends) against prost encoding the
//! reference message (`Encoder::request`) for the same frame: prost decodes the writer's
//! bytes into exactly the reference message (compared re-encoded, so NaN values compare by
//! their bits). The writer also spells default values prost leaves out (empty strings, zero
//! times), so the bytes themselves may differ; what a collector decodes may not.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arbitrary::Arbitrary;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use otel_netprobe::{
    config::flow_attr,
    export::otlp::encode::Encoder,
    flow::Attrs,
    metrics::{Family, Histogram, Kind, Metric, Value, agent, catalogue, k8s},
};
use prost::Message as _;

const KEYS: [&str; 6] = [
    flow_attr::SOURCE_ADDRESS,
    flow_attr::DESTINATION_PORT,
    flow_attr::NETWORK_TRANSPORT,
    agent::REASON,
    flow_attr::DESTINATION_WORKLOAD,
    k8s::KIND,
];

static BOUNDS: [&[f64]; 4] = [
    &[],
    &[0.5],
    &[64.0, 128.0, 256.0, 512.0, 1024.0, 1500.0, 9000.0],
    &[-1.0, 0.0, f64::MAX],
];

#[derive(Arbitrary, Debug)]
struct Point {
    labels: Vec<(u8, String)>,
    /// Reuse the previous point's attribute set (as the flow families share theirs).
    shared: bool,
    int: u64,
    double: Option<f64>,
    bounds: u8,
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Arbitrary, Debug)]
struct Input {
    resource: Vec<(String, String)>,
    families: Vec<(u8, Vec<Point>)>,
    start_ns: u64,
    at_ns: u64,
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

/// The catalogue, every metric module's entries.
fn catalogue() -> &'static [&'static Metric] {
    static ALL: std::sync::OnceLock<Vec<&'static Metric>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| catalogue::all().collect())
}

libfuzzer_sys::fuzz_target!(|input: Input| {
    let all = catalogue();
    let mut families = Vec::new();
    let mut last: Option<Attrs> = None;
    for (m, points) in &input.families {
        let metric = all[usize::from(*m) % all.len()];
        let mut f = Family::new(metric);
        for p in points {
            let attrs = match (&last, p.shared) {
                (Some(a), true) => a.clone(),
                _ => Attrs::new(
                    p.labels
                        .iter()
                        .map(|(k, v)| (KEYS[usize::from(*k) % KEYS.len()], v.clone()))
                        .collect(),
                ),
            };
            let value = if metric.kind == Kind::Histogram {
                let bounds = BOUNDS[usize::from(p.bounds) % BOUNDS.len()];
                // The frame's contract: one count per bucket, the last one unbounded.
                let mut counts = p.counts.clone();
                counts.resize(bounds.len() + 1, 0);
                Value::Histogram(Histogram {
                    bounds,
                    counts: counts.into_boxed_slice(),
                    sum: p.sum,
                    count: p.count,
                })
            } else {
                p.double.map_or(Value::Int(p.int), Value::Double)
            };
            f.push_shared(attrs.clone(), value);
            last = Some(attrs);
        }
        families.push(f);
    }
    let refs: Vec<&Family> = families.iter().collect();
    let encoder = Encoder::new(&input.resource, time(input.start_ns));
    let at = time(input.at_ns);
    // Twice: the second time the attribute sets' memos are warm, as in every later export.
    for _ in 0..2 {
        let wire = encoder.encode(&refs, at);
        let reference = encoder.request(&refs, at).encode_to_vec();
        if wire == reference {
            continue;
        }
        let decoded = ExportMetricsServiceRequest::decode(wire.as_slice())
            .unwrap_or_else(|e| panic!("prost cannot decode the writer's request: {e}"));
        assert!(
            decoded.encode_to_vec() == reference,
            "the writer's request decodes to another message:\n{decoded:?}\nreference:\n{:?}",
            encoder.request(&refs, at)
        );
    }
});
