//! ICMP and ICMPv6 errors (unreachable, time exceeded, packet too big, parameter problem) on
//! the flow of the packet they quote, by type and code. Points only for series whose flows
//! had any.

use super::{Cycle, Family, Module, SeriesFamilies as _, catalogue::metric};

metric!(
    ICMP_ERRORS,
    "netprobe.icmp.errors",
    "{message}",
    "netprobe_icmp_errors_total",
    Counter,
    flow [ICMP_TYPE, ICMP_CODE],
    "ICMP and ICMPv6 errors (unreachable, time exceeded, packet too big, parameter problem) on the flow of the packet they quote."
);

/// ICMP (or ICMPv6) type.
pub const ICMP_TYPE: &str = "netprobe.icmp.type";
/// ICMP code.
pub const ICMP_CODE: &str = "netprobe.icmp.code";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[&ICMP_ERRORS],
    families: Some(families),
};

/// Adds the ICMP-error family.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    out.push(
        set.counter_by(&ICMP_ERRORS, flows, &[ICMP_TYPE, ICMP_CODE], |f, emit| {
            for e in f.extras.iter().flat_map(|e| &e.icmp) {
                emit(&[&e.icmp_type.to_string(), &e.code.to_string()], e.count);
            }
        }),
    );
}
