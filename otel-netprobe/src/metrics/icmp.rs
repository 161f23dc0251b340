//! ICMP and ICMPv6 errors (unreachable, time exceeded, packet too big, parameter problem) on
//! the flow of the packet they quote, by type and code: the kernel's `ICMP_ERRORS` map
//! (filled at the packet hooks, `netprobe-ebpf/src/count.rs`), registered here as a per-flow
//! counter map, and its family. Points only for series whose flows had any.

use netprobe_ebpf::{FlowKey, ICMP_ERRORS_MAP, IcmpErrorKey};

use super::{Cycle, Family, Module, SeriesFamilies as _, catalogue::metric};
use crate::ebpf::counts::{self, FlowCounts};

metric!(
    ICMP_ERRORS,
    "netprobe.icmp.errors",
    "{message}",
    "netprobe_icmp_errors_total",
    Counter,
    flow [ICMP_TYPE, ICMP_CODE],
    "ICMP and ICMPv6 errors (unreachable, time exceeded, packet too big, parameter problem) on the flow of the packet they quote."
);

/// ICMP (or ICMPv6) type, by name (`destination_unreachable`, ...: [`names`]).
pub const ICMP_TYPE: &str = "netprobe.icmp.type";
/// ICMP code, by name (`port_unreachable`, ...), the same names for ICMPv6.
pub const ICMP_CODE: &str = "netprobe.icmp.code";

mod names;

/// This module: its entries, how they are filled, and its kernel map.
pub const MODULE: Module = Module {
    metrics: &[&ICMP_ERRORS],
    families: Some(families),
    counts: &[|ebpf, _| counts::open(ebpf, IcmpErrors)],
};

/// The `ICMP_ERRORS` map: per answered flow, type and code, the messages.
pub struct IcmpErrors;

impl FlowCounts for IcmpErrors {
    type Key = IcmpErrorKey;
    type Value = u64;
    type Raw = (u8, u8, u8);
    const MAP: &'static str = ICMP_ERRORS_MAP;

    fn flow(&self, key: &IcmpErrorKey) -> FlowKey {
        key.flow
    }

    fn raw(&self, key: &IcmpErrorKey) -> Option<(u8, u8, u8)> {
        Some((key.icmp_version, key.icmp_type, key.icmp_code))
    }

    fn values(&self, (version, icmp_type, code): (u8, u8, u8)) -> Vec<String> {
        let (t, c) = names::names(version, icmp_type, code);
        vec![t, c]
    }
}

/// Adds the ICMP-error family.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    out.push(
        set.counter_by(&ICMP_ERRORS, flows, &[ICMP_TYPE, ICMP_CODE], |f, emit| {
            for e in f.counts(ICMP_ERRORS_MAP) {
                emit(&[&e.attrs[0], &e.attrs[1]], e.values[0]);
            }
        }),
    );
}
