//! Prometheus text exposition (format 0.0.4) of a snapshot, with the catalogue's names.
//!
//! Flow series are the snapshot's ([`Snapshot::series`]): flows aggregated to the configured
//! attribute set under the cardinality budget. By default (standalone): source and destination
//! address, the server port (never an ephemeral client port), transport and IP version, so
//! several flows (one per client port) add up into one series.

use std::fmt::Write as _;

use netprobe_ebpf::SIZE_BUCKET_BOUNDS;

use super::{
    health,
    names::{self, Metric, prometheus_label},
};
use crate::flow::Snapshot;

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn label_text(labels: &[(&str, String)]) -> String {
    let parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{}=\"{}\"", prometheus_label(k), escape(v)))
        .collect();
    parts.join(",")
}

fn header(out: &mut String, m: &Metric) {
    let kind = m.kind;
    let _ = writeln!(out, "# HELP {} {}", m.prometheus, m.help);
    let _ = writeln!(out, "# TYPE {} {kind}", m.prometheus);
}

fn sample(out: &mut String, name: &str, labels: &[(&str, String)], value: impl std::fmt::Display) {
    if labels.is_empty() {
        let _ = writeln!(out, "{name} {value}");
    } else {
        let _ = writeln!(out, "{name}{{{}}} {value}", label_text(labels));
    }
}

/// Renders the whole snapshot.
pub fn render(snapshot: &Snapshot) -> String {
    let mut out = String::with_capacity(256 + snapshot.flows.len() * 600);
    let sets = snapshot.series();
    let series = &sets.flows.series;

    header(&mut out, &names::FLOW_PACKETS);
    for (l, s) in series {
        sample(&mut out, names::FLOW_PACKETS.prometheus, l, s.packets);
    }
    header(&mut out, &names::FLOW_BYTES);
    for (l, s) in series {
        sample(&mut out, names::FLOW_BYTES.prometheus, l, s.bytes);
    }
    header(&mut out, &names::PACKET_SIZE);
    let base = names::PACKET_SIZE.prometheus;
    for (l, s) in &sets.sizes.series {
        let mut cumulative = 0;
        for (i, b) in s.buckets.iter().enumerate() {
            cumulative += b;
            let le = SIZE_BUCKET_BOUNDS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), ToString::to_string);
            let mut with_le = l.clone();
            with_le.push(("le", le));
            sample(&mut out, &format!("{base}_bucket"), &with_le, cumulative);
        }
        sample(&mut out, &format!("{base}_sum"), l, s.bytes);
        sample(&mut out, &format!("{base}_count"), l, s.packets);
    }
    render_agent(&mut out, snapshot);
    out
}

fn render_agent(out: &mut String, snap: &Snapshot) {
    for (m, series) in health::agent_series(snap) {
        header(out, m);
        for (labels, value) in &series {
            sample(out, m.prometheus, labels, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use netprobe_ebpf::FlowKey;

    use super::*;
    use crate::flow::FlowView;
    use netprobe_ebpf::SIZE_BUCKETS;

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
        let snap = Snapshot {
            flows: vec![flow(40001, 3, 600), flow(40002, 2, 400)],
            ..Snapshot::empty()
        };
        let text = render(&snap);
        let labels = "source_address=\"10.0.0.1\",destination_address=\"10.0.0.2\",destination_port=\"7000\",network_transport=\"udp\",network_type=\"ipv4\"";
        assert!(
            text.contains(&format!("netprobe_flow_packets_total{{{labels}}} 5\n")),
            "{text}"
        );
        assert!(text.contains(&format!("netprobe_flow_bytes_total{{{labels}}} 1000\n")));
        assert!(text.contains(&format!(
            "netprobe_packet_size_bytes_bucket{{{labels},le=\"128\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "netprobe_packet_size_bytes_bucket{{{labels},le=\"256\"}} 5\n"
        )));
        assert!(text.contains(&format!(
            "netprobe_packet_size_bytes_bucket{{{labels},le=\"+Inf\"}} 5\n"
        )));
        assert!(text.contains(&format!("netprobe_packet_size_bytes_count{{{labels}}} 5\n")));
        assert!(!text.contains("40001"));
        assert!(text.contains("netprobe_agent_parse_errors_total{layer=\"ipv4\"} 0\n"));
    }
}
