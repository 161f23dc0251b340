//! The flow metrics: `netprobe.flow.packets`, `netprobe.flow.bytes` and the
//! `netprobe.packet.size` histogram, one point per series of their budgets.

use netprobe_ebpf::{SIZE_BUCKET_BOUNDS, SIZE_BUCKETS};

use super::{
    Cycle, Family, Module, SeriesFamilies as _, Value,
    catalogue::{Metric, metric},
};

metric!(
    FLOW_PACKETS,
    "netprobe.flow.packets",
    "{packet}",
    "netprobe_flow_packets_total",
    Counter,
    flow [],
    "Wire packets per flow."
);

metric!(
    FLOW_BYTES,
    "netprobe.flow.bytes",
    "By",
    "netprobe_flow_bytes_total",
    Counter,
    flow [],
    "IP bytes (header + payload) per flow."
);

metric!(
    PACKET_SIZE,
    "netprobe.packet.size",
    "By",
    "netprobe_packet_size_bytes",
    Histogram,
    flow [],
    "Distribution of IP packet sizes."
);

/// The families whose totals continue when an agent adopts the pinned state of the one
/// before it (the kernel's flow tables and the carry store): their cumulative series keep the
/// adopted start time. Every other cumulative series (connections, drops, DNS, the agent's own)
/// restarts from zero with the new process, and so starts with it.
pub const CONTINUED: [&Metric; 3] = [&FLOW_PACKETS, &FLOW_BYTES, &PACKET_SIZE];

/// Whether `m` is one of [`CONTINUED`].
pub fn continues(m: &Metric) -> bool {
    CONTINUED.iter().any(|c| c.otlp == m.otlp)
}

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[&FLOW_PACKETS, &FLOW_BYTES, &PACKET_SIZE],
    families: Some(families),
    counts: &[],
};

/// The packet-size buckets' upper bounds (IP bytes), as the kernel counts them.
pub static SIZE_BOUNDS: [f64; SIZE_BUCKETS - 1] = {
    let mut b = [0.0; SIZE_BUCKETS - 1];
    let mut i = 0;
    while i < b.len() {
        b[i] = SIZE_BUCKET_BOUNDS[i] as f64;
        i += 1;
    }
    b
};

/// Adds the flow families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    // A series whose flows counted no packet (known only by a drop or an ICMP error that came
    // before any packet reached a hook) has no packet, byte or size point: a zero would be
    // a series for nothing.
    let counted = |mut f: Family| {
        f.points.retain(|p| match &p.value {
            Value::Int(n) => *n > 0,
            Value::Histogram(h) => h.count > 0,
            Value::Double(_) => true,
        });
        f
    };
    out.push(counted(set.counter(&FLOW_PACKETS, flows, |f| f.packets)));
    out.push(counted(set.counter(&FLOW_BYTES, flows, |f| f.bytes)));
    out.push(counted(c.series.sizes().histogram(
        &PACKET_SIZE,
        &SIZE_BOUNDS,
        flows,
        |f| (&f.size_buckets[..], f.bytes as f64),
    )));
}
