//! Dropped packets and bytes per flow and kernel reason: the kernel's `DROPS` map (filled by
//! the `kfree_skb` program, `netprobe-ebpf/src/drop.rs`), registered here as a per-flow
//! counter map, and its two families. Points only for series whose flows had any.

use netprobe_ebpf::{DROPS_MAP, DropKey, DropStats, FlowKey};

use super::{Cycle, Family, Module, SeriesFamilies as _, catalogue::metric};
use crate::ebpf::{
    btf::DropReasons,
    counts::{self, FlowCounts},
};

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

/// This module: its entries, how they are filled, and its kernel map.
pub const MODULE: Module = Module {
    metrics: &[&PACKET_DROPS, &PACKET_DROP_BYTES],
    families: Some(families),
    counts: Some(|ebpf, kernel| {
        let reasons = kernel.drop_reasons.clone();
        counts::open(ebpf, Drops { reasons })
    }),
};

/// The `DROPS` map: per flow and reason, packets then bytes.
pub struct Drops {
    /// The running kernel's reasons (`None`: before 5.17, every drop is `unknown`).
    pub reasons: Option<DropReasons>,
}

impl FlowCounts for Drops {
    type Key = DropKey;
    type Value = DropStats;
    type Raw = u32;
    const MAP: &'static str = DROPS_MAP;

    fn flow(&self, key: &DropKey) -> FlowKey {
        key.flow
    }

    /// The reason's number, unless it is no drop (`SKB_CONSUMED`, `SKB_NOT_DROPPED_YET`).
    fn raw(&self, key: &DropKey) -> Option<u32> {
        let no_drop = self
            .reasons
            .as_ref()
            .is_some_and(|r| !r.is_drop(key.reason));
        (!no_drop).then_some(key.reason)
    }

    fn values(&self, reason: u32) -> Vec<String> {
        let name = self.reasons.as_ref().map_or("unknown", |r| r.name(reason));
        vec![name.to_owned()]
    }
}

/// Adds the drop families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    // The map's value: packets, then bytes.
    for (metric, slot) in [(&PACKET_DROPS, 0), (&PACKET_DROP_BYTES, 1)] {
        out.push(set.counter_by(metric, flows, &[DROP_REASON], |f, emit| {
            for d in f.counts(DROPS_MAP) {
                emit(&[&d.attrs[0]], d.values[slot]);
            }
        }));
    }
}
