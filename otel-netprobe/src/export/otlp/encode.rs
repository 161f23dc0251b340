//! Metric families → `ExportMetricsServiceRequest`, generically: each family's catalogue entry
//! gives its name, unit and kind (counter → cumulative monotonic `Sum`, gauge → `Gauge`,
//! histogram → cumulative `Histogram` with each point's own bounds).
//!
//! Built by hand: the OpenTelemetry SDK has no observable histogram and its data-point types
//! cannot be constructed outside it, and replaying one `record()` per packet would cost
//! O(packets). The Prometheus text renders the same families, so the two views of one frame
//! agree exactly.

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
        ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};

use crate::metrics::{self, Family, Kind, Point, Value};

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

/// Encodes frames for one agent: its resource and its start times (the start of every
/// cumulative series: this process's, or for the flow families the adopted one).
pub struct Encoder {
    resource: Resource,
    pairs: Vec<(String, String)>,
    /// (this process's start, the start of the [`metrics::flows::CONTINUED`] families).
    start_ns: (u64, u64),
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
            start_ns: (unix_ns(started), unix_ns(started)),
        }
    }

    /// The flow families continue totals counted since `started` (an adopted pinned state);
    /// the other series still start with this process.
    pub fn continue_from(&mut self, started: SystemTime) {
        self.start_ns.1 = unix_ns(started);
    }

    /// The start of `f`'s cumulative series.
    fn start_of(&self, f: &Family) -> u64 {
        if metrics::flows::continues(f.metric) {
            self.start_ns.1
        } else {
            self.start_ns.0
        }
    }

    /// The protobuf bytes of [`Encoder::request`], written directly (what is sent).
    pub fn encode(&self, families: &[&Family], at: SystemTime) -> Vec<u8> {
        super::wire::request(families, &self.pairs, |f| self.start_of(f), unix_ns(at))
    }

    /// `families` as a message tree, points stamped `at` (the reference the direct writer is
    /// tested against).
    pub fn request(&self, families: &[&Family], at: SystemTime) -> ExportMetricsServiceRequest {
        let now = unix_ns(at);
        let metrics = families.iter().map(|f| self.metric(f, now)).collect();
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

    fn metric(&self, f: &Family, now: u64) -> Metric {
        let start = self.start_of(f);
        let number = |p: &Point| {
            let value = match p.value {
                Value::Int(v) => number_data_point::Value::AsInt(v as i64),
                Value::Double(v) => number_data_point::Value::AsDouble(v),
                Value::Histogram(_) => unreachable!("a number point"),
            };
            NumberDataPoint {
                attributes: attrs(&p.attrs),
                start_time_unix_nano: start,
                time_unix_nano: now,
                value: Some(value),
                ..NumberDataPoint::default()
            }
        };
        let histogram = |p: &Point| {
            let Value::Histogram(h) = &p.value else {
                unreachable!("a histogram point")
            };
            HistogramDataPoint {
                attributes: attrs(&p.attrs),
                start_time_unix_nano: start,
                time_unix_nano: now,
                count: h.count,
                sum: Some(h.sum),
                bucket_counts: h.counts.to_vec(),
                explicit_bounds: h.bounds.to_vec(),
                ..HistogramDataPoint::default()
            }
        };
        let data = match f.metric.kind {
            Kind::Counter => Data::Sum(Sum {
                data_points: f.points.iter().map(number).collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
            Kind::Gauge => Data::Gauge(Gauge {
                data_points: f.points.iter().map(number).collect(),
            }),
            Kind::Histogram => Data::Histogram(Histogram {
                data_points: f.points.iter().map(histogram).collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        };
        Metric {
            name: f.metric.otlp.to_owned(),
            description: f.metric.help.to_owned(),
            unit: f.metric.unit.to_owned(),
            data: Some(data),
            ..Metric::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};
    use opentelemetry_proto::tonic::metrics::v1::number_data_point::Value as Number;

    use super::*;
    use crate::{
        config::MetricsConfig,
        flow::{Budgets, FlowView, Reading},
        frame::{Aggregator, Snapshot},
        metrics,
        telemetry::Telemetry,
    };

    /// `n` flows from 7 sources to 4 ports, UDP and TCP, under a budget of `max_series`.
    fn snapshot(n: u16, max_series: usize) -> Snapshot {
        let flows = (0..n)
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
        let budgets = Budgets::from_config(
            &MetricsConfig {
                max_series,
                ..MetricsConfig::default()
            },
            false,
        );
        Aggregator::standalone(budgets).publish(&Reading {
            flows,
            ..Reading::default()
        })
    }

    fn labels(attributes: &[KeyValue]) -> Vec<String> {
        attributes
            .iter()
            .map(|kv| {
                let Some(any_value::Value::StringValue(v)) =
                    kv.value.as_ref().and_then(|v| v.value.clone())
                else {
                    panic!("string attribute")
                };
                format!("{}=\"{v}\"", kv.key.replace('.', "_"))
            })
            .collect()
    }

    /// Every data point of the OTLP request, in Prometheus text lines.
    fn as_text(req: &ExportMetricsServiceRequest) -> Vec<String> {
        let mut lines = Vec::new();
        let braces = |l: &[String]| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{{{}}}", l.join(","))
            }
        };
        for m in &req.resource_metrics[0].scope_metrics[0].metrics {
            let entry = crate::metrics::catalogue::all()
                .find(|c| c.otlp == m.name)
                .expect("a catalogue metric");
            let name = entry.prometheus;
            let number = |p: &NumberDataPoint| match p.value {
                Some(Number::AsInt(v)) => v.to_string(),
                Some(Number::AsDouble(v)) => v.to_string(),
                None => panic!("a value"),
            };
            match &m.data {
                Some(Data::Sum(s)) => lines.extend(
                    s.data_points
                        .iter()
                        .map(|p| format!("{name}{} {}", braces(&labels(&p.attributes)), number(p))),
                ),
                Some(Data::Gauge(g)) => lines.extend(
                    g.data_points
                        .iter()
                        .map(|p| format!("{name}{} {}", braces(&labels(&p.attributes)), number(p))),
                ),
                Some(Data::Histogram(h)) => {
                    for p in &h.data_points {
                        let l = labels(&p.attributes);
                        let mut total = 0;
                        for (i, c) in p.bucket_counts.iter().enumerate() {
                            total += c;
                            let le = p
                                .explicit_bounds
                                .get(i)
                                .map_or("+Inf".into(), f64::to_string);
                            let mut with = l.clone();
                            with.push(format!("le=\"{le}\""));
                            lines.push(format!("{name}_bucket{} {total}", braces(&with)));
                        }
                        let sum = p.sum.expect("sum");
                        lines.push(format!("{name}_sum{} {sum}", braces(&l)));
                        lines.push(format!("{name}_count{} {}", braces(&l), p.count));
                    }
                }
                other => panic!("{}: {other:?}", m.name),
            }
        }
        lines
    }

    /// Every point of the OTLP request has the value the Prometheus text shows, and the other
    /// way round: the two views of one frame agree exactly.
    #[test]
    fn otlp_and_prometheus_views_agree() {
        for max_series in [1, 2000] {
            let snap = snapshot(50, max_series);
            let health = metrics::agent::families(&Telemetry::default());
            let families: Vec<&Family> = snap.frame.families.iter().chain(&health).collect();
            let text = crate::export::prometheus::render(families.iter().copied());
            let mut samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            let req = Encoder::new(&[], SystemTime::now()).request(&families, snap.taken_at);
            let mut lines = as_text(&req);
            samples.sort_unstable();
            lines.sort_unstable();
            assert_eq!(samples, lines, "max_series {max_series}");
        }
    }

    /// Over the budget, both views show the same overflow series.
    #[test]
    fn overflow_series_in_both_views() {
        let snap = snapshot(3, 1);
        let families: Vec<&Family> = snap.frame.families.iter().collect();
        let text = crate::export::prometheus::render(families.iter().copied());
        assert!(
            text.contains("netprobe_flow_bytes_total{otel_metric_overflow=\"true\"} 100000\n"),
            "{text}"
        );
        assert!(text.contains(
            "netprobe_agent_series_overflow_flows{metric=\"netprobe.flow.packets\"} 2\n"
        ));
        let req = Encoder::new(&[], SystemTime::now()).request(&families, snap.taken_at);
        let Some(Data::Sum(bytes)) = &req.resource_metrics[0].scope_metrics[0].metrics[1].data
        else {
            panic!("sum")
        };
        assert_eq!(bytes.data_points.len(), 2);
        assert_eq!(bytes.data_points[1].value, Some(Number::AsInt(100_000)));
        assert_eq!(
            labels(&bytes.data_points[1].attributes),
            ["otel_metric_overflow=\"true\""]
        );
    }

    /// After adopting a pinned state, the flow families start when it started counting, every
    /// other cumulative series (they restart from zero) with this process.
    #[test]
    fn only_the_continued_families_keep_the_adopted_start() {
        let snap = snapshot(5, 2000);
        let health = metrics::agent::families(&Telemetry::default());
        let families: Vec<&Family> = snap.frame.families.iter().chain(&health).collect();
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        let adopted = now - std::time::Duration::from_secs(3600);
        let mut enc = Encoder::new(&[], now);
        enc.continue_from(adopted);
        let req = enc.request(&families, snap.taken_at);
        let (mut continued, mut restarted) = (0, 0);
        for m in &req.resource_metrics[0].scope_metrics[0].metrics {
            let starts: Vec<u64> = match &m.data {
                Some(Data::Sum(s)) => s
                    .data_points
                    .iter()
                    .map(|p| p.start_time_unix_nano)
                    .collect(),
                Some(Data::Histogram(h)) => h
                    .data_points
                    .iter()
                    .map(|p| p.start_time_unix_nano)
                    .collect(),
                _ => continue,
            };
            let flow_family = metrics::flows::CONTINUED.iter().any(|c| c.otlp == m.name);
            let want = unix_ns(if flow_family { adopted } else { now });
            for s in starts {
                assert_eq!(s, want, "{}", m.name);
                if flow_family {
                    continued += 1;
                } else {
                    restarted += 1;
                }
            }
        }
        assert!(continued > 0 && restarted > 0, "{continued} / {restarted}");
    }

    /// The direct writer's bytes decode to exactly the reference message.
    #[test]
    fn direct_bytes_equal_the_reference_message() {
        use prost::Message;
        for max_series in [1, 2000] {
            let snap = snapshot(50, max_series);
            let health = metrics::agent::families(&Telemetry::default());
            let families: Vec<&Family> = snap.frame.families.iter().chain(&health).collect();
            let mut enc = Encoder::new(
                &[("service.name".into(), "otel-netprobe".into())],
                SystemTime::now(),
            );
            // Two start times in one request (an adopted state): both writers agree.
            enc.continue_from(SystemTime::now() - std::time::Duration::from_secs(60));
            let direct =
                ExportMetricsServiceRequest::decode(&enc.encode(&families, snap.taken_at)[..])
                    .unwrap();
            assert_eq!(
                direct,
                enc.request(&families, snap.taken_at),
                "max_series {max_series}"
            );
        }
    }
}
