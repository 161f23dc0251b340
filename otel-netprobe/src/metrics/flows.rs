//! The flow metrics: `netprobe.flow.packets`, `netprobe.flow.bytes` and the
//! `netprobe.packet.size` histogram, one point per series of their budgets.

use netprobe_ebpf::{SIZE_BUCKET_BOUNDS, SIZE_BUCKETS};

use super::Cycle;
use crate::{export::names, frame::Family};

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
    out.push(set.counter(&names::FLOW_PACKETS, flows, |f| f.packets));
    out.push(set.counter(&names::FLOW_BYTES, flows, |f| f.bytes));
    out.push(
        c.series
            .sizes()
            .histogram(&names::PACKET_SIZE, &SIZE_BOUNDS, flows, |f| {
                (&f.size_buckets[..], f.bytes as f64)
            }),
    );
}
