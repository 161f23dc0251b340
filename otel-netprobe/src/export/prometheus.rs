//! Prometheus text exposition (format 0.0.4) of metric families: `# HELP`, `# TYPE`, and the
//! samples of each point (a histogram as cumulative `_bucket` samples with `le` from its own
//! bounds, `_sum` and `_count`). Generic: the names, units and kinds come from each family's
//! catalogue entry.

use std::fmt::Write as _;

use crate::metrics::{Family, Value};

/// The Prometheus label for an OTLP attribute name.
pub fn label(attr: &str) -> String {
    attr.replace('.', "_")
}

fn escape_into(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// `k="v",...` of a point's attributes.
fn label_text(labels: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(labels.len() * 32);
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&label(k));
        out.push_str("=\"");
        escape_into(&mut out, v);
        out.push('"');
    }
    out
}

/// A number as Prometheus writes it (`+Inf`, `-Inf`, `NaN`).
fn float(v: f64) -> String {
    if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        v.to_string()
    }
}

/// A bucket bound as the `le` label, written as Go's `strconv.FormatFloat(b, 'g', -1, 64)`
/// writes it (`5e-05`, `0.0001`, `64`, `1e+06`): so do Prometheus' client libraries and the
/// Collector's exporters, and Prometheus 2 compares `le` as text, so a bucket is one series
/// whichever way it arrives.
fn bound(b: f64) -> String {
    if !b.is_finite() || b == 0.0 {
        return float(b);
    }
    let sci = format!("{b:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..6).contains(&exp) {
        return b.to_string();
    }
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exp.abs())
}

fn sample(out: &mut String, name: &str, suffix: &str, labels: &str, extra: &str, value: &str) {
    out.push_str(name);
    out.push_str(suffix);
    if !labels.is_empty() || !extra.is_empty() {
        out.push('{');
        out.push_str(labels);
        if !labels.is_empty() && !extra.is_empty() {
            out.push(',');
        }
        out.push_str(extra);
        out.push('}');
    }
    out.push(' ');
    out.push_str(value);
    out.push('\n');
}

/// Renders `families` (the frame's, then the agent's own health).
pub fn render<'a>(families: impl IntoIterator<Item = &'a Family>) -> String {
    let mut out = String::with_capacity(64 * 1024);
    for f in families {
        let m = f.metric;
        let name = m.prometheus;
        let _ = writeln!(out, "# HELP {name} {}", m.help);
        let _ = writeln!(out, "# TYPE {name} {}", m.kind);
        for p in &f.points {
            // Memo 2: the label text, kept while the set lives.
            let labels = p.attrs.memo(2, |l| label_text(l).into_bytes());
            let labels = std::str::from_utf8(labels).unwrap_or_default();
            match &p.value {
                Value::Int(v) => sample(&mut out, name, "", labels, "", &v.to_string()),
                Value::Double(v) => sample(&mut out, name, "", labels, "", &float(*v)),
                Value::Histogram(h) => {
                    let mut cumulative = 0;
                    for (i, n) in h.counts.iter().enumerate() {
                        cumulative += n;
                        let le = h
                            .bounds
                            .get(i)
                            .map_or_else(|| "+Inf".to_owned(), |b| bound(*b));
                        let extra = format!("le=\"{le}\"");
                        sample(
                            &mut out,
                            name,
                            "_bucket",
                            labels,
                            &extra,
                            &cumulative.to_string(),
                        );
                    }
                    sample(&mut out, name, "_sum", labels, "", &float(h.sum));
                    sample(&mut out, name, "_count", labels, "", &h.count.to_string());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use netprobe_ebpf::{FlowKey, SIZE_BUCKETS};

    use super::*;
    use crate::{
        flow::{Budgets, FlowView, Reading},
        frame::Aggregator,
        metrics,
        telemetry::Telemetry,
    };

    fn flow(sport: u16, packets: u64, bytes: u64) -> FlowView {
        let key = FlowKey {
            src_addr: [u32::from_ne_bytes([10, 0, 0, 1]), 0, 0, 0],
            dst_addr: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            src_port: sport.to_be(),
            dst_port: 7000u16.to_be(),
            protocol: 17,
            ip_version: 4,
            pad: [0; 2],
        };
        let mut b = [0; SIZE_BUCKETS];
        b[2] = packets;
        FlowView::new(&key, bytes, b, 0, (0, 0))
    }

    #[test]
    fn client_ports_aggregate_into_one_series() {
        let reading = Reading {
            flows: vec![flow(40001, 3, 600), flow(40002, 2, 400)],
            ..Reading::default()
        };
        let snap = Aggregator::standalone(Budgets::default()).publish(&reading);
        let health = metrics::agent::families(&Telemetry::default());
        let text = render(snap.frame.families.iter().chain(&health));
        let labels = "source_address=\"10.0.0.1\",destination_address=\"10.0.0.2\",destination_port=\"7000\",network_transport=\"udp\",network_type=\"ipv4\",netprobe_origin=\"outside\"";
        assert!(
            text.contains(&format!("netprobe_flow_packets_total{{{labels}}} 5\n")),
            "{text}"
        );
        assert!(text.contains(&format!("netprobe_flow_bytes_total{{{labels}}} 1000\n")));
        for (le, n) in [("128", 0), ("256", 5), ("9000", 5), ("+Inf", 5)] {
            let line = format!("netprobe_packet_size_bytes_bucket{{{labels},le=\"{le}\"}} {n}\n");
            assert!(text.contains(&line), "{line}");
        }
        assert!(text.contains(&format!(
            "netprobe_packet_size_bytes_sum{{{labels}}} 1000\n"
        )));
        assert!(text.contains(&format!("netprobe_packet_size_bytes_count{{{labels}}} 5\n")));
        assert!(!text.contains("40001"));
        assert!(text.contains("netprobe_agent_parse_errors_total{layer=\"ipv4\"} 0\n"));
        assert!(text.contains("netprobe_agent_flow_table_fill_ratio 0\n"));
        assert!(text.contains("netprobe_agent_export_requests_total{result=\"failed\"} 0\n"));
        assert!(text.contains("# TYPE netprobe_packet_size_bytes histogram\n"));
    }

    #[test]
    fn bucket_bounds_are_written_as_go_writes_them() {
        for (b, want) in [
            (5e-5, "5e-05"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (0.00025, "0.00025"),
            (0.5, "0.5"),
            (2.5, "2.5"),
            (64.0, "64"),
            (9000.0, "9000"),
            (123_456.0, "123456"),
            (1e6, "1e+06"),
            (2.5e21, "2.5e+21"),
            (0.0, "0"),
            (f64::INFINITY, "+Inf"),
        ] {
            assert_eq!(bound(b), want, "{b}");
        }
    }

    #[test]
    fn values_are_escaped_and_special_floats_spelled() {
        let mut f = Family::new(&crate::metrics::tables::AGENT_READ_DURATION);
        f.push(
            vec![("a.b", "x\"y\\z\nw".to_owned())],
            Value::Double(f64::INFINITY),
        );
        let text = render([&f]);
        assert!(
            text.contains("netprobe_agent_read_duration_seconds{a_b=\"x\\\"y\\\\z\\nw\"} +Inf\n"),
            "{text}"
        );
    }
}
