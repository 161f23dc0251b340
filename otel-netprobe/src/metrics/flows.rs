//! The flow metrics: `netprobe.flow.packets`, `netprobe.flow.bytes` and the
//! `netprobe.packet.size` histogram, one point per series of their budgets.

use netprobe_ebpf::{SIZE_BUCKET_BOUNDS, SIZE_BUCKETS};

use super::Cycle;
use crate::{
    export::names,
    frame::{Family, Value},
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
    out.push(counted(
        set.counter(&names::FLOW_PACKETS, flows, |f| f.packets),
    ));
    out.push(counted(set.counter(&names::FLOW_BYTES, flows, |f| f.bytes)));
    out.push(counted(c.series.sizes().histogram(
        &names::PACKET_SIZE,
        &SIZE_BOUNDS,
        flows,
        |f| (&f.size_buckets[..], f.bytes as f64),
    )));
}
