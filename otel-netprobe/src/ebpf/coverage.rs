//! Coverage of the ingress programs: what they saw on each attached interface (the kernel's
//! [`IFACES_MAP`] slots) against the interface's own receive counters ([`super::linkstats`]),
//! both counted from the first read after the interface was attached.
//!
//! The attacher gives each interface a slot before attaching ([`Slots::assign`]) and frees it
//! when the interface goes; the reader reads the slots and the counters once a cycle
//! ([`Coverage::read`]). What each side counts, and where they cannot agree, is in the README
//! ("Coverage").

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use aya::{
    Ebpf,
    maps::{MapData, PerCpuArray, PerCpuValues},
};
use netprobe_ebpf::{IFACE_PROBES, IFACES_MAP, IfaceSlot, iface_slot};
use tracing::warn;

use super::{
    EbpfError,
    linkstats::{self, RxCounters},
};

/// The kernel's interface slots and which interface holds which.
pub struct Slots {
    map: PerCpuArray<MapData, IfaceSlot>,
    cpus: usize,
    held: HashMap<u32, u32>,
    /// Interfaces attached without a slot (all probed slots taken, or the write failed).
    no_slot: u64,
}

/// The slots, shared by the attacher (which assigns them) and the reader.
pub type SharedSlots = Arc<Mutex<Slots>>;

impl Slots {
    /// Takes the slot array out of the loaded object.
    pub fn take(ebpf: &mut Ebpf) -> Result<SharedSlots, EbpfError> {
        let map = ebpf
            .take_map(IFACES_MAP)
            .and_then(|m| PerCpuArray::try_from(m).ok())
            .ok_or(EbpfError::Missing(IFACES_MAP))?;
        let cpus = aya::util::nr_cpus().map_err(|_| EbpfError::Missing("the possible CPUs"))?;
        Ok(Arc::new(Mutex::new(Self {
            map,
            cpus,
            held: HashMap::new(),
            no_slot: 0,
        })))
    }

    /// Gives interface `ifindex` a zeroed slot tagged with its index (before its program is
    /// attached); false, and counted, when none of its probed slots is free.
    pub fn assign(&mut self, ifindex: u32) -> bool {
        if self.held.contains_key(&ifindex) {
            return true;
        }
        let taken: Vec<u32> = self.held.values().copied().collect();
        let free = (0..IFACE_PROBES)
            .map(|i| iface_slot(ifindex, i))
            .find(|s| !taken.contains(s));
        let written = free.filter(|&slot| self.write(slot, ifindex));
        if let Some(slot) = written {
            self.held.insert(ifindex, slot);
            return true;
        }
        self.no_slot += 1;
        warn!(
            index = ifindex,
            "no coverage slot for the interface: its coverage is not measured"
        );
        false
    }

    /// Frees the slot of a removed interface.
    pub fn release(&mut self, ifindex: u32) {
        if let Some(slot) = self.held.remove(&ifindex) {
            self.write(slot, 0);
        }
    }

    fn write(&mut self, slot: u32, ifindex: u32) -> bool {
        let value = IfaceSlot {
            ifindex,
            ..IfaceSlot::default()
        };
        let Ok(values) = PerCpuValues::try_from(vec![value; self.cpus]) else {
            return false;
        };
        self.map.set(slot, values, 0).is_ok()
    }

    /// What the programs saw so far on each interface that holds a slot, by index.
    fn seen(&self) -> HashMap<u32, RxCounters> {
        let mut out = HashMap::with_capacity(self.held.len());
        for (&ifindex, slot) in &self.held {
            let Ok(values) = self.map.get(slot, 0) else {
                continue;
            };
            let mut sum = RxCounters::default();
            for v in values.iter().filter(|v| v.ifindex == ifindex) {
                sum.packets += v.packets;
                sum.bytes += v.bytes;
            }
            out.insert(ifindex, sum);
        }
        out
    }
}

/// One interface's coverage since the first read after it was attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceCoverage {
    /// Interface index.
    pub index: u32,
    /// What our ingress program saw.
    pub seen: Pair,
    /// What the interface's own receive counters counted.
    pub kernel: Pair,
}

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pair {
    /// Packets (frames, or buffers: see the README).
    pub packets: u64,
    /// Bytes as the hook and the driver count them.
    pub bytes: u64,
}

impl InterfaceCoverage {
    /// Bytes seen over bytes the interface received (1 when it received none).
    pub fn ratio(&self) -> f64 {
        if self.kernel.bytes == 0 {
            1.0
        } else {
            self.seen.bytes as f64 / self.kernel.bytes as f64
        }
    }
}

/// Errors of the coverage measurement, cumulative.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CoverageErrors {
    /// Failed reads of the interfaces' counters.
    pub stats_read: u64,
    /// Interfaces attached without a slot.
    pub no_slot: u64,
}

/// The reader's side: baselines at the first read, and the deltas since.
pub struct Coverage {
    slots: SharedSlots,
    baselines: HashMap<u32, (RxCounters, RxCounters)>,
    stats_read_errors: u64,
}

impl Coverage {
    /// Reads `slots` from the next cycle on.
    pub fn new(slots: SharedSlots) -> Self {
        Self {
            slots,
            baselines: HashMap::new(),
            stats_read_errors: 0,
        }
    }

    /// One read: every interface holding a slot, with its coverage since its baseline (the
    /// interfaces the kernel's counters could not be read for are left out).
    pub fn read(&mut self) -> (Vec<InterfaceCoverage>, CoverageErrors) {
        let (seen, no_slot) = {
            let slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
            (slots.seen(), slots.no_slot)
        };
        let kernel = match linkstats::read() {
            Ok(k) => k,
            Err(e) => {
                self.stats_read_errors += 1;
                warn!(error = %e, "reading the interfaces' counters failed");
                HashMap::new()
            }
        };
        self.baselines.retain(|i, _| seen.contains_key(i));
        let mut out = Vec::with_capacity(seen.len());
        for (&index, &ours) in &seen {
            let Some(&theirs) = kernel.get(&index) else {
                continue;
            };
            let (ours0, theirs0) = *self.baselines.entry(index).or_insert((ours, theirs));
            out.push(InterfaceCoverage {
                index,
                seen: delta(ours, ours0),
                kernel: delta(theirs, theirs0),
            });
        }
        out.sort_by_key(|c| c.index);
        let errors = CoverageErrors {
            stats_read: self.stats_read_errors,
            no_slot,
        };
        (out, errors)
    }
}

fn delta(now: RxCounters, then: RxCounters) -> Pair {
    Pair {
        packets: now.packets.saturating_sub(then.packets),
        bytes: now.bytes.saturating_sub(then.bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_of_bytes_and_one_when_idle() {
        let c = |seen, kernel| InterfaceCoverage {
            index: 1,
            seen: Pair {
                packets: 0,
                bytes: seen,
            },
            kernel: Pair {
                packets: 0,
                bytes: kernel,
            },
        };
        assert!((c(0, 0).ratio() - 1.0).abs() < f64::EPSILON);
        assert!((c(300, 400).ratio() - 0.75).abs() < f64::EPSILON);
    }
}
