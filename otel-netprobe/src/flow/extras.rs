//! What a flow carries besides its packet counts: the TCP connections it is the client-to-server
//! flow of, its packets the kernel dropped (per reason), and the ICMP errors that answered it.
//! Cumulative like the packet counts, and kept (and forgotten) with the flow's record.

use std::sync::Arc;

use super::conns::ConnCounts;

/// Dropped packets of a flow for one reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drops {
    /// The kernel's reason, as its BTF names it (`unknown` before 5.17).
    pub reason: Arc<str>,
    /// Packets.
    pub packets: u64,
    /// IP bytes.
    pub bytes: u64,
}

/// ICMP errors of one type and code that answered a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpErrors {
    /// ICMP or ICMPv6 type.
    pub icmp_type: u8,
    /// Code.
    pub code: u8,
    /// Messages.
    pub count: u64,
}

/// A flow's extras.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowExtras {
    /// Its TCP connections (when it is their client-to-server flow).
    pub conn: ConnCounts,
    /// Its drops, per reason.
    pub drops: Vec<Drops>,
    /// The ICMP errors that answered it, per type and code.
    pub icmp: Vec<IcmpErrors>,
}

impl FlowExtras {
    /// Adds dropped packets for `reason`.
    pub fn add_drops(&mut self, reason: &Arc<str>, packets: u64, bytes: u64) {
        if let Some(d) = self.drops.iter_mut().find(|d| d.reason == *reason) {
            d.packets += packets;
            d.bytes += bytes;
        } else {
            self.drops.push(Drops {
                reason: Arc::clone(reason),
                packets,
                bytes,
            });
        }
    }

    /// Adds ICMP errors of a type and code.
    pub fn add_icmp(&mut self, icmp_type: u8, code: u8, count: u64) {
        if let Some(e) = self
            .icmp
            .iter_mut()
            .find(|e| (e.icmp_type, e.code) == (icmp_type, code))
        {
            e.count += count;
        } else {
            self.icmp.push(IcmpErrors {
                icmp_type,
                code,
                count,
            });
        }
    }
}
