//! Snapshot → `ExportMetricsServiceRequest`: the catalogue as OTLP data points.
//!
//! Built by hand from the kernel's own buckets: the OpenTelemetry SDK has no observable
//! histogram and its data-point types cannot be constructed outside it, and replaying one
//! `record()` per packet would cost O(packets). Flow series are the snapshot's (the same the
//! Prometheus text renders), agent series the same list (`health`), so the two views of one
//! snapshot agree exactly.

use std::time::{SystemTime, UNIX_EPOCH};

use netprobe_ebpf::SIZE_BUCKET_BOUNDS;
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};

use crate::{
    export::{
        health,
        names::{self, Metric as Catalogue},
    },
    flow::{SeriesCounts, Snapshot},
};

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An OTLP string attribute.
pub fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
        ..KeyValue::default()
    }
}

fn attrs(labels: &[(&str, String)]) -> Vec<KeyValue> {
    labels.iter().map(|(k, v)| kv(k, v)).collect()
}

fn metric(m: &Catalogue, data: Data) -> Metric {
    Metric {
        name: m.otlp.to_owned(),
        description: m.help.to_owned(),
        unit: m.unit.to_owned(),
        data: Some(data),
        ..Metric::default()
    }
}

fn cumulative_sum(points: Vec<NumberDataPoint>) -> Data {
    Data::Sum(Sum {
        data_points: points,
        aggregation_temporality: AggregationTemporality::Cumulative as i32,
        is_monotonic: true,
    })
}

/// Encodes snapshots for one agent: its resource and its start time (the start of every
/// cumulative series).
pub struct Encoder {
    resource: Resource,
    pairs: Vec<(String, String)>,
    start_ns: u64,
}

impl Encoder {
    /// An encoder with these resource attributes.
    pub fn new(resource: &[(String, String)], started: SystemTime) -> Self {
        Self {
            resource: Resource {
                attributes: resource.iter().map(|(k, v)| kv(k, v)).collect(),
                ..Resource::default()
            },
            pairs: resource.to_vec(),
            start_ns: unix_ns(started),
        }
    }

    /// The protobuf bytes of [`Encoder::request`], written directly (what is sent).
    pub fn encode(&self, snap: &Snapshot) -> Vec<u8> {
        super::wire::request(snap, &self.pairs, self.start_ns, unix_ns(snap.taken_at))
    }

    /// The whole catalogue for `snap`, as a message tree (the reference the direct writer is
    /// tested against).
    pub fn request(&self, snap: &Snapshot) -> ExportMetricsServiceRequest {
        let now = unix_ns(snap.taken_at);
        let point = |attributes: Vec<KeyValue>, v: number_data_point::Value| NumberDataPoint {
            attributes,
            start_time_unix_nano: self.start_ns,
            time_unix_nano: now,
            value: Some(v),
            ..NumberDataPoint::default()
        };
        let bounds: Vec<f64> = SIZE_BUCKET_BOUNDS.iter().map(|b| f64::from(*b)).collect();
        let histogram = |attributes: Vec<KeyValue>, s: &SeriesCounts| HistogramDataPoint {
            attributes,
            start_time_unix_nano: self.start_ns,
            time_unix_nano: now,
            count: s.packets,
            sum: Some(s.bytes as f64),
            bucket_counts: s.buckets.to_vec(),
            explicit_bounds: bounds.clone(),
            ..HistogramDataPoint::default()
        };
        let sets = snap.series();
        let series = &sets.flows.series;
        // One attribute list per series, shared by the three metrics when they share the set.
        let shared = snap.budgets.sizes.is_none();
        let mut packets = Vec::with_capacity(series.len());
        let mut bytes = Vec::with_capacity(series.len());
        let mut sizes = Vec::with_capacity(sets.sizes.series.len());
        for (labels, s) in series {
            let a = attrs(labels);
            packets.push(point(
                a.clone(),
                number_data_point::Value::AsInt(s.packets as i64),
            ));
            if shared {
                bytes.push(point(
                    a.clone(),
                    number_data_point::Value::AsInt(s.bytes as i64),
                ));
                sizes.push(histogram(a, s));
            } else {
                bytes.push(point(a, number_data_point::Value::AsInt(s.bytes as i64)));
            }
        }
        if !shared {
            sizes.extend(
                sets.sizes
                    .series
                    .iter()
                    .map(|(l, s)| histogram(attrs(l), s)),
            );
        }
        let mut metrics = vec![
            metric(&names::FLOW_PACKETS, cumulative_sum(packets)),
            metric(&names::FLOW_BYTES, cumulative_sum(bytes)),
            metric(
                &names::PACKET_SIZE,
                Data::Histogram(Histogram {
                    data_points: sizes,
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                }),
            ),
        ];
        for (m, rows) in health::agent_series(snap) {
            let points = rows
                .iter()
                .map(|(l, v)| point(attrs(l), number_data_point::Value::AsDouble(*v)))
                .collect();
            let data = if m.kind == "counter" {
                cumulative_sum(points)
            } else {
                Data::Gauge(Gauge {
                    data_points: points,
                })
            };
            metrics.push(metric(m, data));
        }
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(self.resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: "otel-netprobe".into(),
                        version: env!("CARGO_PKG_VERSION").into(),
                        ..InstrumentationScope::default()
                    }),
                    metrics,
                    ..ScopeMetrics::default()
                }],
                ..ResourceMetrics::default()
            }],
        }
    }
}

#[cfg(test)]
mod tests {
    use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value;

    use super::*;
    use crate::flow::FlowView;

    /// Every flow series in the OTLP request has the value the Prometheus text shows.
    #[test]
    fn otlp_and_prometheus_views_agree() {
        let flows = (0..20u16)
            .map(|i| {
                let key = FlowKey {
                    src_addr: [u32::from(i % 4), 0, 0, 0],
                    dst_addr: [9, 0, 0, 0],
                    src_port: (40000 + i).to_be(),
                    dst_port: (80 + i % 3).to_be(),
                    protocol: if i % 5 == 0 { 17 } else { 6 },
                    ip_version: 4,
                    pad: [0; 2],
                };
                let mut b = [0; SIZE_BUCKETS];
                b[usize::from(i) % SIZE_BUCKETS] = u64::from(i) + 1;
                FlowView::new(&key, u64::from(i) * 1000, b, 0, (0, 0))
            })
            .collect();
        let snap = Snapshot {
            flows,
            ..Snapshot::empty()
        };
        let text = crate::export::prometheus::render(&snap);
        let req = Encoder::new(&[], SystemTime::now()).request(&snap);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let Some(Data::Sum(packets)) = &metrics[0].data else {
            panic!("sum")
        };
        assert_eq!(packets.data_points.len(), snap.series().flows.series.len());
        for p in &packets.data_points {
            let labels: Vec<String> = p
                .attributes
                .iter()
                .map(|kv| {
                    let Some(any_value::Value::StringValue(v)) =
                        kv.value.as_ref().and_then(|v| v.value.clone())
                    else {
                        panic!("string attribute")
                    };
                    format!("{}=\"{v}\"", kv.key.replace('.', "_"))
                })
                .collect();
            let Some(Value::AsInt(n)) = p.value else {
                panic!("int")
            };
            let line = format!("netprobe_flow_packets_total{{{}}} {n}\n", labels.join(","));
            assert!(text.contains(&line), "{line} not in the text");
        }
    }

    /// Over the budget, both views show the same overflow series.
    #[test]
    fn overflow_series_in_both_views() {
        let cfg = crate::config::MetricsConfig {
            max_series: 1,
            ..crate::config::MetricsConfig::default()
        };
        let flows = (0..3u16)
            .map(|i| {
                let key = FlowKey {
                    src_addr: [u32::from(i), 0, 0, 0],
                    dst_addr: [9, 0, 0, 0],
                    src_port: 40000u16.to_be(),
                    dst_port: 80u16.to_be(),
                    protocol: 6,
                    ip_version: 4,
                    pad: [0; 2],
                };
                let mut b = [0; SIZE_BUCKETS];
                b[1] = 1;
                FlowView::new(&key, 100 * u64::from(i + 1), b, 0, (0, 0))
            })
            .collect();
        let snap = Snapshot {
            flows,
            budgets: std::sync::Arc::new(cfg.budgets(false)),
            ..Snapshot::empty()
        };
        let text = crate::export::prometheus::render(&snap);
        assert!(
            text.contains("netprobe_flow_bytes_total{otel_metric_overflow=\"true\"} 300\n"),
            "{text}"
        );
        assert!(text.contains(
            "netprobe_agent_series_overflow_flows{metric=\"netprobe.flow.packets\"} 2\n"
        ));
        let req = Encoder::new(&[], SystemTime::now()).request(&snap);
        let Some(Data::Sum(bytes)) = &req.resource_metrics[0].scope_metrics[0].metrics[1].data
        else {
            panic!("sum")
        };
        let overflow = bytes
            .data_points
            .iter()
            .find(|p| {
                p.attributes
                    .first()
                    .is_some_and(|kv| kv.key == "otel.metric.overflow")
            })
            .expect("overflow point");
        assert_eq!(overflow.value, Some(Value::AsInt(300)));
        assert_eq!(bytes.data_points.len(), 2);
    }

    /// The direct writer's bytes decode to exactly the reference message.
    #[test]
    fn direct_bytes_equal_the_reference_message() {
        use prost::Message;
        for max_series in [1, 2000] {
            let cfg = crate::config::MetricsConfig {
                max_series,
                ..crate::config::MetricsConfig::default()
            };
            let flows = (0..50u16)
                .map(|i| {
                    let key = FlowKey {
                        src_addr: [u32::from(i % 7), 0, 0, 0],
                        dst_addr: [9, 0, 0, 0],
                        src_port: (40000 + i).to_be(),
                        dst_port: (80 + i % 4).to_be(),
                        protocol: if i % 3 == 0 { 17 } else { 6 },
                        ip_version: 4,
                        pad: [0; 2],
                    };
                    let mut b = [0; SIZE_BUCKETS];
                    b[usize::from(i) % SIZE_BUCKETS] = u64::from(i) * 1000 + 1;
                    FlowView::new(&key, u64::from(i) * 100_000, b, 0, (0, 0))
                })
                .collect();
            let snap = Snapshot {
                flows,
                budgets: std::sync::Arc::new(cfg.budgets(false)),
                ..Snapshot::empty()
            };
            let enc = Encoder::new(
                &[("service.name".into(), "otel-netprobe".into())],
                SystemTime::now(),
            );
            let direct = ExportMetricsServiceRequest::decode(&enc.encode(&snap)[..]).unwrap();
            assert_eq!(direct, enc.request(&snap), "max_series {max_series}");
        }
    }
}
