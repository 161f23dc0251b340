//! Dropped packets and bytes per flow and kernel reason, and ICMP errors on the flow of the
//! packet they quote. Points only for series whose flows had any.

use super::Cycle;
use crate::{
    export::names::{self, attr},
    frame::Family,
};

/// Adds the drop and ICMP-error families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    for (metric, bytes) in [
        (&names::PACKET_DROPS, false),
        (&names::PACKET_DROP_BYTES, true),
    ] {
        out.push(
            set.counter_by(metric, flows, &[attr::DROP_REASON], |f, emit| {
                for d in f.extras.iter().flat_map(|e| &e.drops) {
                    emit(&[&d.reason], if bytes { d.bytes } else { d.packets });
                }
            }),
        );
    }
    out.push(set.counter_by(
        &names::ICMP_ERRORS,
        flows,
        &[attr::ICMP_TYPE, attr::ICMP_CODE],
        |f, emit| {
            for e in f.extras.iter().flat_map(|e| &e.icmp) {
                emit(&[&e.icmp_type.to_string(), &e.code.to_string()], e.count);
            }
        },
    ));
}
