//! What the programs counted outside any flow: malformed packets per layer, non-IP packets,
//! fragments, IPv6 chains too long to walk, packets not tracked because a table was full,
//! dropped buffers that were not IP; and what the running kernel offers.

use netprobe_ebpf::Counter;

use super::{Cycle, Family, Module, Value, catalogue::metric};

metric!(
    AGENT_PARSE_ERRORS,
    "netprobe.agent.parse_errors",
    "{packet}",
    "netprobe_agent_parse_errors_total",
    Counter,
    own[LAYER],
    "Malformed or truncated packets, passed and counted per layer."
);

metric!(
    AGENT_NON_IP,
    "netprobe.agent.non_ip_packets",
    "{packet}",
    "netprobe_agent_non_ip_packets_total",
    Counter,
    own[CLASS],
    "Non-IP packets by EtherType class."
);

metric!(
    AGENT_FRAGMENTS,
    "netprobe.agent.fragments",
    "{packet}",
    "netprobe_agent_fragments_total",
    Counter,
    own [],
    "Non-first IP fragments (counted in their flow without ports)."
);

metric!(
    AGENT_IPV6_EXT_TOO_LONG,
    "netprobe.agent.ipv6_ext_too_long",
    "{packet}",
    "netprobe_agent_ipv6_ext_too_long_total",
    Counter,
    own [],
    "IPv6 packets whose extension-header chain was too long to reach the transport."
);

metric!(
    AGENT_UNTRACKED_PACKETS,
    "netprobe.agent.untracked.packets",
    "{packet}",
    "netprobe_agent_untracked_packets_total",
    Counter,
    own [],
    "Packets not tracked because the kernel flow table was full."
);

metric!(
    AGENT_UNTRACKED_BYTES,
    "netprobe.agent.untracked.bytes",
    "By",
    "netprobe_agent_untracked_bytes_total",
    Counter,
    own [],
    "IP bytes not tracked because the kernel flow table was full."
);

metric!(
    AGENT_DROPS_UNPARSED,
    "netprobe.agent.drops.unparsed",
    "{packet}",
    "netprobe_agent_drops_unparsed_total",
    Counter,
    own [],
    "Dropped buffers whose headers could not be read as IP (not IP, or not parsed yet when dropped)."
);

metric!(
    AGENT_KERNEL_FEATURE,
    "netprobe.agent.kernel.feature",
    "",
    "netprobe_agent_kernel_feature",
    Gauge,
    own [FEATURE, KERNEL],
    "1 where the running kernel (kernel attribute) offers a feature the agent uses, 0 where it lacks it (feature attribute)."
);

/// Parse-error layer.
pub const LAYER: &str = "layer";
/// Non-IP EtherType class.
pub const CLASS: &str = "class";
/// A kernel feature the agent uses.
pub const FEATURE: &str = "feature";
/// The running kernel's release.
pub const KERNEL: &str = "kernel";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[
        &AGENT_PARSE_ERRORS,
        &AGENT_NON_IP,
        &AGENT_FRAGMENTS,
        &AGENT_IPV6_EXT_TOO_LONG,
        &AGENT_UNTRACKED_PACKETS,
        &AGENT_UNTRACKED_BYTES,
        &AGENT_DROPS_UNPARSED,
        &AGENT_KERNEL_FEATURE,
    ],
    families: Some(families),
    counts: None,
};

/// Adds the kernel counter families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let n = |x: Counter| Value::Int(c.counters.get(x));
    out.extend([
        Family::by(
            &AGENT_PARSE_ERRORS,
            LAYER,
            [
                ("ethernet", n(Counter::MalformedEthernet)),
                ("vlan", n(Counter::MalformedVlan)),
                ("ipv4", n(Counter::MalformedIpv4)),
                ("ipv6", n(Counter::MalformedIpv6)),
                ("transport", n(Counter::MalformedTransport)),
            ],
        ),
        Family::by(
            &AGENT_NON_IP,
            CLASS,
            [
                ("arp", n(Counter::NonIpArp)),
                ("lldp", n(Counter::NonIpLldp)),
                ("other", n(Counter::NonIpOther)),
            ],
        ),
        Family::single(&AGENT_FRAGMENTS, n(Counter::Fragments)),
        Family::single(&AGENT_IPV6_EXT_TOO_LONG, n(Counter::Ipv6ExtTooLong)),
        Family::single(&AGENT_UNTRACKED_PACKETS, n(Counter::MapFullPackets)),
        Family::single(&AGENT_UNTRACKED_BYTES, n(Counter::MapFullBytes)),
        Family::single(&AGENT_DROPS_UNPARSED, n(Counter::DropsUnparsed)),
    ]);
    let mut features = Family::new(&AGENT_KERNEL_FEATURE);
    for (feature, present) in &c.health.features {
        features.push(
            vec![
                (FEATURE, (*feature).to_owned()),
                (KERNEL, c.health.kernel.clone()),
            ],
            Value::Int(u64::from(*present)),
        );
    }
    out.push(features);
}
