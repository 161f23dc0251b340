//! Coverage per attached interface: the bytes and packets our ingress program saw against the
//! interface's own receive counters, both since the first read after it was attached
//! ([`crate::ebpf::coverage`]); the ratio of the bytes, and what keeps an interface from being
//! measured.

use netprobe_ebpf::Counter;

use super::{
    Cycle, Family, Module, Value,
    catalogue::metric,
    interfaces::{HOOK, INTERFACE},
};

metric!(
    AGENT_INTERFACE_COVERAGE,
    "netprobe.agent.interface.coverage",
    "1",
    "netprobe_agent_interface_coverage_ratio",
    Gauge,
    own [INTERFACE, HOOK],
    "Bytes our ingress program saw on the interface over the bytes the interface itself received, since the agent attached (1: nothing missed; README, Coverage)."
);

metric!(
    AGENT_INTERFACE_SEEN_BYTES,
    "netprobe.agent.interface.seen.bytes",
    "By",
    "netprobe_agent_interface_seen_bytes_total",
    Counter,
    own [INTERFACE, HOOK],
    "Bytes our ingress program saw on the interface since the agent attached, counted as the interface counts them."
);

metric!(
    AGENT_INTERFACE_SEEN_PACKETS,
    "netprobe.agent.interface.seen.packets",
    "{packet}",
    "netprobe_agent_interface_seen_packets_total",
    Counter,
    own [INTERFACE, HOOK],
    "Frames (buffers at TC) our ingress program saw on the interface since the agent attached."
);

metric!(
    AGENT_INTERFACE_RECEIVED_BYTES,
    "netprobe.agent.interface.received.bytes",
    "By",
    "netprobe_agent_interface_received_bytes_total",
    Counter,
    own [INTERFACE, HOOK],
    "Bytes the interface's own counters received since the agent attached (rtnetlink rx_bytes)."
);

metric!(
    AGENT_INTERFACE_RECEIVED_PACKETS,
    "netprobe.agent.interface.received.packets",
    "{packet}",
    "netprobe_agent_interface_received_packets_total",
    Counter,
    own [INTERFACE, HOOK],
    "Packets the interface's own counters received since the agent attached (rtnetlink rx_packets)."
);

metric!(
    AGENT_COVERAGE_ERRORS,
    "netprobe.agent.coverage.errors",
    "{error}",
    "netprobe_agent_coverage_errors_total",
    Counter,
    own[REASON],
    "Gaps in the coverage measurement: failed reads of the interfaces' counters (stats_read), interfaces attached without a slot (no_slot), packets seen on an interface without one (unslotted_packet)."
);

/// Why coverage could not be measured.
pub const REASON: &str = "reason";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[
        &AGENT_INTERFACE_COVERAGE,
        &AGENT_INTERFACE_SEEN_BYTES,
        &AGENT_INTERFACE_SEEN_PACKETS,
        &AGENT_INTERFACE_RECEIVED_BYTES,
        &AGENT_INTERFACE_RECEIVED_PACKETS,
        &AGENT_COVERAGE_ERRORS,
    ],
    families: Some(families),
    counts: &[],
};

/// Adds the coverage families: one point per attached interface whose counters were read.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let mut ratio = Family::new(&AGENT_INTERFACE_COVERAGE);
    let mut seen_bytes = Family::new(&AGENT_INTERFACE_SEEN_BYTES);
    let mut seen_packets = Family::new(&AGENT_INTERFACE_SEEN_PACKETS);
    let mut received_bytes = Family::new(&AGENT_INTERFACE_RECEIVED_BYTES);
    let mut received_packets = Family::new(&AGENT_INTERFACE_RECEIVED_PACKETS);
    for cov in &c.health.coverage {
        let Some(i) = c.health.interfaces.iter().find(|i| i.index == cov.index) else {
            continue;
        };
        let labels = || vec![(INTERFACE, i.name.clone()), (HOOK, i.hook.to_owned())];
        ratio.push(labels(), Value::Double(cov.ratio()));
        seen_bytes.push(labels(), Value::Int(cov.seen.bytes));
        seen_packets.push(labels(), Value::Int(cov.seen.packets));
        received_bytes.push(labels(), Value::Int(cov.kernel.bytes));
        received_packets.push(labels(), Value::Int(cov.kernel.packets));
    }
    let e = c.health.coverage_errors;
    out.extend([
        ratio,
        seen_bytes,
        seen_packets,
        received_bytes,
        received_packets,
        Family::by(
            &AGENT_COVERAGE_ERRORS,
            REASON,
            [
                ("stats_read", Value::Int(e.stats_read)),
                ("no_slot", Value::Int(e.no_slot)),
                (
                    "unslotted_packet",
                    Value::Int(c.counters.get(Counter::IfaceNoSlot)),
                ),
            ],
        ),
    ]);
}
