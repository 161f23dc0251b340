//! Prometheus text exposition (format 0.0.4) of a snapshot, with the catalogue's names.
//!
//! Flows are aggregated to the standalone attribute set: source and destination address, the
//! server port (never an ephemeral client port), transport and IP version. Several flows (one
//! per client port) therefore add up into one series.

use std::{collections::BTreeMap, fmt::Write as _};

use netprobe_ebpf::{Counter, SIZE_BUCKET_BOUNDS, SIZE_BUCKETS};

use super::names::{self, Metric, attr, prometheus_label};
use crate::flow::{FlowView, Snapshot};

/// Attribute set of one flow series, in label order.
pub type Labels = Vec<(&'static str, String)>;

/// Aggregated counts of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeriesCounts {
    /// Packets.
    pub packets: u64,
    /// IP bytes.
    pub bytes: u64,
    /// Packets per size bucket.
    pub buckets: [u64; SIZE_BUCKETS],
}

/// The standalone attribute set of a flow.
pub fn flow_labels(f: &FlowView) -> Labels {
    let mut l: Labels = vec![
        (attr::SOURCE_ADDRESS, f.src.to_string()),
        (attr::DESTINATION_ADDRESS, f.dst.to_string()),
    ];
    match f.server_port() {
        Some((port, true)) => l.push((attr::DESTINATION_PORT, port.to_string())),
        Some((port, false)) => l.push((attr::SOURCE_PORT, port.to_string())),
        None => {}
    }
    l.push((attr::NETWORK_TRANSPORT, f.transport.name()));
    l.push((attr::NETWORK_TYPE, f.network_type().to_owned()));
    l
}

/// Flows aggregated per attribute set.
pub fn aggregate(snapshot: &Snapshot) -> BTreeMap<Labels, SeriesCounts> {
    let mut series: BTreeMap<Labels, SeriesCounts> = BTreeMap::new();
    for f in &snapshot.flows {
        let s = series.entry(flow_labels(f)).or_default();
        s.packets += f.packets;
        s.bytes += f.bytes;
        for (t, b) in s.buckets.iter_mut().zip(f.size_buckets) {
            *t += b;
        }
    }
    series
}

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
    let series = aggregate(snapshot);

    header(&mut out, &names::FLOW_PACKETS);
    for (l, s) in &series {
        sample(&mut out, names::FLOW_PACKETS.prometheus, l, s.packets);
    }
    header(&mut out, &names::FLOW_BYTES);
    for (l, s) in &series {
        sample(&mut out, names::FLOW_BYTES.prometheus, l, s.bytes);
    }
    header(&mut out, &names::PACKET_SIZE);
    let base = names::PACKET_SIZE.prometheus;
    for (l, s) in &series {
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

/// A counter family exported with one label: metric, label name, (counter, label value) rows.
type ByLabel<'a> = (&'a Metric, &'a str, &'a [(Counter, &'a str)]);

fn render_agent(out: &mut String, snap: &Snapshot) {
    let h = &snap.health;
    let plain: [(&Metric, f64); 7] = [
        (&names::AGENT_FLOWS_TRACKED, h.flows_tracked as f64),
        (
            &names::AGENT_FLOW_TABLE_ENTRIES,
            h.flow_table_entries as f64,
        ),
        (
            &names::AGENT_FLOW_TABLE_CAPACITY,
            h.flow_table_capacity as f64,
        ),
        (
            &names::AGENT_FLOW_TABLE_FILL,
            if h.flow_table_capacity == 0 {
                0.0
            } else {
                h.flow_table_entries as f64 / h.flow_table_capacity as f64
            },
        ),
        (
            &names::AGENT_FLOW_TABLE_MEMORY,
            h.flow_table_memory_bytes as f64,
        ),
        (&names::AGENT_READ_CYCLES, h.read_cycles_total as f64),
        (&names::AGENT_READ_ERRORS, h.read_errors_total as f64),
    ];
    for (m, v) in plain {
        header(out, m);
        sample(out, m.prometheus, &[], v);
    }
    header(out, &names::AGENT_READ_DURATION);
    sample(
        out,
        names::AGENT_READ_DURATION.prometheus,
        &[],
        h.last_read_seconds,
    );
    render_agent_counters(out, snap);
}

fn render_agent_counters(out: &mut String, snap: &Snapshot) {
    let h = &snap.health;
    let c = &snap.counters;
    header(out, &names::AGENT_EVICTIONS);
    sample(
        out,
        names::AGENT_EVICTIONS.prometheus,
        &[(attr::REASON, "kernel_idle".into())],
        h.kernel_evictions_total,
    );
    sample(
        out,
        names::AGENT_EVICTIONS.prometheus,
        &[(attr::REASON, "expired".into())],
        h.flows_expired_total,
    );

    let layered: [ByLabel; 2] = [
        (
            &names::AGENT_PARSE_ERRORS,
            attr::LAYER,
            &[
                (Counter::MalformedEthernet, "ethernet"),
                (Counter::MalformedVlan, "vlan"),
                (Counter::MalformedIpv4, "ipv4"),
                (Counter::MalformedIpv6, "ipv6"),
                (Counter::MalformedTransport, "transport"),
            ],
        ),
        (
            &names::AGENT_NON_IP,
            attr::CLASS,
            &[
                (Counter::NonIpArp, "arp"),
                (Counter::NonIpLldp, "lldp"),
                (Counter::NonIpOther, "other"),
            ],
        ),
    ];
    for (m, key, rows) in layered {
        header(out, m);
        for (counter, value) in rows {
            sample(
                out,
                m.prometheus,
                &[(key, (*value).to_owned())],
                c.get(*counter),
            );
        }
    }
    for (m, counter) in [
        (&names::AGENT_FRAGMENTS, Counter::Fragments),
        (&names::AGENT_IPV6_EXT_TOO_LONG, Counter::Ipv6ExtTooLong),
        (&names::AGENT_UNTRACKED_PACKETS, Counter::MapFullPackets),
        (&names::AGENT_UNTRACKED_BYTES, Counter::MapFullBytes),
    ] {
        header(out, m);
        sample(out, m.prometheus, &[], c.get(counter));
    }
    header(out, &names::AGENT_ATTACH_ERRORS);
    sample(
        out,
        names::AGENT_ATTACH_ERRORS.prometheus,
        &[],
        h.attach_errors_total,
    );
    header(out, &names::AGENT_INTERFACES);
    for hook in ["xdp", "xdp_generic", "tc", "none"] {
        let n = h.interfaces.iter().filter(|i| i.hook == hook).count();
        sample(
            out,
            names::AGENT_INTERFACES.prometheus,
            &[(attr::HOOK, hook.to_owned())],
            n,
        );
    }
    header(out, &names::AGENT_INTERFACE_INFO);
    for i in &h.interfaces {
        let labels = [
            (attr::INTERFACE, i.name.clone()),
            (attr::HOOK, i.hook.to_owned()),
            (attr::EGRESS, i.egress.to_string()),
        ];
        sample(out, names::AGENT_INTERFACE_INFO.prometheus, &labels, 1);
    }
}

#[cfg(test)]
mod tests {
    use netprobe_ebpf::FlowKey;

    use super::*;
    use crate::telemetry::Health;

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
            health: Health::default(),
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
