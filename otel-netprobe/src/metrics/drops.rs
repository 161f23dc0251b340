//! Dropped packets and bytes per flow and kernel reason. Points only for series whose flows
//! had any.

use super::{Cycle, Family, Module, SeriesFamilies as _, catalogue::metric};

metric!(
    PACKET_DROPS,
    "netprobe.packet.drops",
    "{packet}",
    "netprobe_packet_drops_total",
    Counter,
    flow[DROP_REASON],
    "Packets the kernel dropped, per flow and netprobe.drop.reason (the running kernel's name; unknown before 5.17)."
);

metric!(
    PACKET_DROP_BYTES,
    "netprobe.packet.drop.bytes",
    "By",
    "netprobe_packet_drop_bytes_total",
    Counter,
    flow[DROP_REASON],
    "IP bytes of the packets the kernel dropped, per flow and netprobe.drop.reason."
);

/// Why the kernel dropped a packet (`enum skb_drop_reason` without `SKB_DROP_REASON_`).
pub const DROP_REASON: &str = "netprobe.drop.reason";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[&PACKET_DROPS, &PACKET_DROP_BYTES],
    families: Some(families),
};

/// Adds the drop families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    for (metric, bytes) in [(&PACKET_DROPS, false), (&PACKET_DROP_BYTES, true)] {
        out.push(set.counter_by(metric, flows, &[DROP_REASON], |f, emit| {
            for d in f.extras.iter().flat_map(|e| &e.drops) {
                emit(&[&d.reason], if bytes { d.bytes } else { d.packets });
            }
        }));
    }
}
