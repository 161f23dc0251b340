//! What the programs counted outside any flow: malformed packets per layer, non-IP packets,
//! fragments, IPv6 chains too long to walk, packets not tracked because a table was full,
//! dropped buffers that were not IP; and what the running kernel offers.

use netprobe_ebpf::Counter;

use super::Cycle;
use crate::{
    export::names::{self, attr},
    frame::{Family, Value},
};

/// Adds the kernel counter families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let n = |x: Counter| Value::Int(c.counters.get(x));
    out.extend([
        Family::by(
            &names::AGENT_PARSE_ERRORS,
            attr::LAYER,
            [
                ("ethernet", n(Counter::MalformedEthernet)),
                ("vlan", n(Counter::MalformedVlan)),
                ("ipv4", n(Counter::MalformedIpv4)),
                ("ipv6", n(Counter::MalformedIpv6)),
                ("transport", n(Counter::MalformedTransport)),
            ],
        ),
        Family::by(
            &names::AGENT_NON_IP,
            attr::CLASS,
            [
                ("arp", n(Counter::NonIpArp)),
                ("lldp", n(Counter::NonIpLldp)),
                ("other", n(Counter::NonIpOther)),
            ],
        ),
        Family::single(&names::AGENT_FRAGMENTS, n(Counter::Fragments)),
        Family::single(&names::AGENT_IPV6_EXT_TOO_LONG, n(Counter::Ipv6ExtTooLong)),
        Family::single(&names::AGENT_UNTRACKED_PACKETS, n(Counter::MapFullPackets)),
        Family::single(&names::AGENT_UNTRACKED_BYTES, n(Counter::MapFullBytes)),
        Family::single(&names::AGENT_DROPS_UNPARSED, n(Counter::DropsUnparsed)),
    ]);
    let mut features = Family::new(&names::AGENT_KERNEL_FEATURE);
    for (feature, present) in &c.health.features {
        features.push(
            vec![
                (attr::FEATURE, (*feature).to_owned()),
                (attr::KERNEL, c.health.kernel.clone()),
            ],
            Value::Int(u64::from(*present)),
        );
    }
    out.push(features);
}
