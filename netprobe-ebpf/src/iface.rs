//! Per-interface coverage (BPF target only): every ingress program adds each frame it sees to
//! its interface's slot in [`crate::IFACES_MAP`], so user space can compare what the programs
//! saw with the interface's own receive counters.
//!
//! A slot is found by probing [`IFACE_PROBES`] positions from the interface's index, each
//! tagged by user space with the index it belongs to: an array lookup and a compare, no hash.
//! An interface with no slot is counted once per packet in [`Counter::IfaceNoSlot`].

use aya_ebpf::maps::PerCpuArray;

use crate::{Counter, IFACE_PROBES, IfaceSlot, count::bump, iface_slot};

/// Adds one frame of `len` bytes, seen by the ingress program of interface `ifindex`.
#[inline(always)]
pub fn on_frame(
    ifaces: &PerCpuArray<IfaceSlot>,
    counters: &PerCpuArray<u64>,
    ifindex: u32,
    len: u32,
) {
    let mut i = 0;
    while i < IFACE_PROBES {
        if let Some(slot) = ifaces.get_ptr_mut(iface_slot(ifindex, i)) {
            // SAFETY: a per-CPU value of this CPU (preemption is off while a program runs);
            // user space writes the tag only before the program is attached and after it is
            // detached.
            unsafe {
                if (*slot).ifindex == ifindex {
                    (*slot).packets += 1;
                    (*slot).bytes += u64::from(len);
                    return;
                }
            }
        }
        i += 1;
    }
    bump(counters, Counter::IfaceNoSlot, 1);
}
