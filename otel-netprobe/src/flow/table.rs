//! The cumulative flow table: kernel values plus what was already moved out of the kernel,
//! and each flow's extras (connections, counts from the per-flow counter maps).

use std::sync::Arc;

use rustc_hash::FxHashMap;

use netprobe_ebpf::{FlowKey, FlowStats, SIZE_BUCKETS, tcp_control};

use super::extras::FlowExtras;
use crate::ebpf::reader::FlowSink;

/// One flow as read from the kernel table.
pub type KernelFlow = (FlowKey, FlowStats);

/// Counts that survive the kernel entry: what earlier kernel incarnations of the flow counted.
/// Also the carry store's value ([`crate::ebpf::pin::carry`]): `u64`s only, in this order
/// (a change of meaning bumps [`netprobe_ebpf::LAYOUT_VERSION`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// IP bytes.
    pub bytes: u64,
    /// Packets per size bucket ([`netprobe_ebpf::size_bucket`]).
    pub buckets: [u64; SIZE_BUCKETS],
    /// TCP control packets per kind ([`netprobe_ebpf::tcp_control`] lanes).
    pub tcp_control: [u64; 4],
}

// SAFETY: `#[repr(C)]` of `u64`s and arrays of `u64`: no padding, any bits are valid.
unsafe impl aya::Pod for Totals {}

impl Totals {
    fn add(&mut self, s: &FlowStats) {
        self.bytes += s.bytes;
        for (t, b) in self.buckets.iter_mut().zip(s.size_buckets) {
            *t += b;
        }
        for (lane, t) in self.tcp_control.iter_mut().enumerate() {
            *t += tcp_control::count(s.tcp_control, lane as u32);
        }
    }

    /// The union of TCP flags the control counts show ([`netprobe_ebpf::tcp_flags`]), with ACK
    /// for a flow that sent packets other than bare SYNs (every TCP segment after the first SYN
    /// carries ACK; the kernel does not count ACKs, only SYN, FIN and RST).
    pub fn tcp_flags(&self) -> u64 {
        let mut lanes = 0;
        for (lane, n) in self.tcp_control.iter().enumerate() {
            lanes |= u64::from(*n > 0) << (16 * lane);
        }
        let mut flags = tcp_control::flags(lanes);
        if self.buckets.iter().sum::<u64>() > self.tcp_control[tcp_control::SYN as usize] {
            flags |= netprobe_ebpf::tcp_flags::ACK;
        }
        flags
    }
}

/// One tracked flow. The table holds one per flow (100k live flows: 100k records, and the
/// hash table's spare slots), so it is kept small: what earlier kernel incarnations counted
/// is boxed, as most flows never leave the kernel before they are forgotten.
#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// The current kernel entry's value (zero when the flow is not in the kernel).
    pub current: FlowStats,
    /// Folded from kernel entries that were moved out (`None`: none was).
    pub base: Option<Box<Totals>>,
    /// Coarse-clock time the flow's first kernel entry was created.
    pub first_seen_ns: u64,
    /// Coarse-clock time of the read that last saw the counts change (the kernel stamps no
    /// time per packet: a read cycle is the resolution).
    pub last_seen_ns: u64,
    /// Connections and kernel counts (shared with the cycle's views until changed).
    pub extras: Option<Arc<FlowExtras>>,
    /// Read cycle in which the kernel entry was last seen (modulo 2^32), to notice entries
    /// that vanished.
    seen_cycle: u32,
    pub in_kernel: bool,
    /// Whether the carry store holds this flow's base.
    stored: bool,
}

impl Record {
    /// A record for a flow no kernel entry counts (yet): what the other tables said of it.
    fn outside_kernel(now_ns: u64) -> Self {
        Self {
            current: FlowStats::default(),
            base: None,
            first_seen_ns: now_ns,
            last_seen_ns: now_ns,
            extras: None,
            seen_cycle: 0,
            in_kernel: false,
            stored: false,
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = self.base.as_deref().copied().unwrap_or_default();
        t.add(&self.current);
        t
    }

    /// Folds the current kernel entry's counts into the base (the entry is gone or replaced);
    /// returns whether the base changed.
    fn fold(&mut self, last: &FlowStats) -> bool {
        let changed = *last != FlowStats::default();
        if changed {
            self.base.get_or_insert_with(Box::default).add(last);
        }
        changed
    }
}

/// What one read cycle did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CycleStats {
    /// Entries read from the kernel table.
    pub kernel_entries: usize,
    /// Keys to move out of the kernel (idle for `kernel_idle_timeout`).
    pub to_evict: usize,
    /// Flows forgotten (idle for `idle_timeout`).
    pub expired: usize,
}

/// Cumulative per-flow counters in user space.
///
/// Each cycle: [`FlowSink::ingest`] the kernel table's contents, move the idle keys it returns
/// out of the kernel and hand their final values to [`FlowSink::fold_evicted`], then
/// [`FlowTable::expire`].
#[derive(Debug, Default)]
pub struct FlowTable {
    pub(crate) records: FxHashMap<FlowKey, Record>,
    /// Records whose kernel entry exists (to skip the vanished-entry sweep when none vanished).
    in_kernel: usize,
    cycle: u32,
    evict: Vec<FlowKey>,
    /// What the carry store must learn (`None`: no store).
    carry: Option<CarryChanges>,
}

/// The flows whose carried base changed since the store was last written, and the stored
/// flows forgotten since.
#[derive(Debug, Default)]
struct CarryChanges {
    changed: Vec<FlowKey>,
    forgotten: Vec<FlowKey>,
}

/// What writing the carry store did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CarryWrite {
    /// Flows whose carried counts were written.
    pub saved: u64,
    /// Flows forgotten from the store.
    pub forgotten: u64,
    /// Flows whose carried counts the full store could not keep.
    pub full: u64,
}

impl FlowTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps track of what the carry store must learn, from now on, and takes in what it
    /// held: each flow's carried counts, as a flow outside the kernel seen at `now_ns` (a
    /// kernel entry of it that survived the restart counts on top, as after a move out).
    pub fn restore_carried(&mut self, carried: Vec<(FlowKey, Totals)>, now_ns: u64) {
        self.carry.get_or_insert_with(CarryChanges::default);
        for (key, totals) in carried {
            let rec = self
                .records
                .entry(key)
                .or_insert_with(|| Record::outside_kernel(now_ns));
            rec.base = Some(Box::new(totals));
            rec.stored = true;
        }
    }

    /// Writes what changed since the last call into the carry store (only the flows whose
    /// base changed, and the forgotten ones) through `write`: `Some(totals)` to save (it
    /// returns `false` when the store is full), `None` to forget.
    pub fn write_carried<E>(
        &mut self,
        mut write: impl FnMut(&FlowKey, Option<&Totals>) -> Result<bool, E>,
    ) -> Result<CarryWrite, E> {
        let mut out = CarryWrite::default();
        let Some(carry) = &mut self.carry else {
            return Ok(out);
        };
        for key in carry.forgotten.drain(..) {
            write(&key, None)?;
            out.forgotten += 1;
        }
        for key in carry.changed.drain(..) {
            // Absent: forgotten in the same cycle, before it was ever stored.
            let Some(rec) = self.records.get_mut(&key) else {
                continue;
            };
            let Some(base) = rec.base.as_deref() else {
                continue;
            };
            if write(&key, Some(base))? {
                rec.stored = true;
                out.saved += 1;
            } else {
                out.full += 1;
            }
        }
        Ok(out)
    }

    fn carry_changed(&mut self, key: FlowKey) {
        if let Some(c) = &mut self.carry {
            c.changed.push(key);
        }
    }

    /// Number of flows tracked.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes in one kernel entry; returns when its counts last changed.
    fn update(&mut self, key: FlowKey, stats: &FlowStats, now_ns: u64) -> u64 {
        let rec = self.records.entry(key).or_insert_with(|| Record {
            first_seen_ns: stats.first_seen_ns,
            ..Record::outside_kernel(now_ns)
        });
        if rec.current != *stats {
            // A kernel entry whose counts went down, or that was created anew, is a new
            // incarnation (the old one was deleted by someone else): keep what the old one
            // had counted.
            if rec.in_kernel
                && (stats.packets() < rec.current.packets()
                    || stats.first_seen_ns != rec.current.first_seen_ns)
            {
                let old = rec.current;
                if rec.fold(&old)
                    && let Some(c) = &mut self.carry
                {
                    c.changed.push(key);
                }
            }
            rec.current = *stats;
            rec.last_seen_ns = now_ns;
        }
        if !rec.in_kernel {
            self.in_kernel += 1;
        }
        rec.in_kernel = true;
        rec.seen_cycle = self.cycle;
        rec.last_seen_ns
    }

    /// The extras of `key`'s flow, to change. A flow not tracked yet (a packet dropped before
    /// any hook counted it) gets a record of its own. `news`: this keeps the flow from expiring
    /// (a drop, a connection's outcome; not a gauge's refresh).
    pub fn extras_mut(&mut self, key: &FlowKey, now_ns: u64, news: bool) -> &mut FlowExtras {
        let rec = self
            .records
            .entry(*key)
            .or_insert_with(|| Record::outside_kernel(now_ns));
        if news {
            rec.last_seen_ns = rec.last_seen_ns.max(now_ns);
        }
        Arc::make_mut(rec.extras.get_or_insert_with(Arc::default))
    }

    /// When the counts of `key`'s flow last changed (`None`: not tracked).
    pub fn changed_at(&self, key: &FlowKey) -> Option<u64> {
        self.records.get(key).map(|r| r.last_seen_ns)
    }

    /// Forgets flows that are out of the kernel and idle for at least `idle_ns`, unless they
    /// carry an open connection (its idle close is decided from the flow's activity, and it
    /// counts as active until it ends); returns how many were forgotten.
    pub fn expire(&mut self, now_ns: u64, idle_ns: u64) -> usize {
        let before = self.records.len();
        let mut forgotten = self.carry.as_mut().map(|c| &mut c.forgotten);
        self.records.retain(|key, r| {
            let keep = r.in_kernel
                || now_ns.saturating_sub(r.last_seen_ns) < idle_ns
                || r.extras.as_ref().is_some_and(|e| e.conn.active > 0);
            if !keep
                && r.stored
                && let Some(f) = &mut forgotten
            {
                f.push(*key);
            }
            keep
        });
        before - self.records.len()
    }
}

/// The flow tables' reader hands its entries to the cumulative table.
impl FlowSink for FlowTable {
    /// Entries the reader knows unchanged cost no lookup here. The iterator is walked a second
    /// time only in the rare case that entries vanished from the kernel without the reader
    /// moving them out.
    fn ingest<'a, I>(
        &mut self,
        kernel: I,
        now_ns: u64,
        kernel_idle_ns: u64,
        changed_at: &mut Vec<u64>,
    ) -> &[FlowKey]
    where
        I: Iterator<Item = (FlowKey, &'a FlowStats, Option<u64>)> + Clone,
    {
        self.cycle = self.cycle.wrapping_add(1);
        self.evict.clear();
        let mut seen = 0;
        for (key, stats, known) in kernel.clone() {
            seen += 1;
            let at = match known {
                Some(at) => at,
                None => self.update(key, stats, now_ns),
            };
            changed_at.push(at);
            if now_ns.saturating_sub(at) >= kernel_idle_ns {
                self.evict.push(key);
            }
        }
        // Entries that vanished from the kernel without us moving them out (only possible if
        // someone else deleted them): keep their last known counts.
        if seen < self.in_kernel {
            let cycle = self.cycle;
            for (key, _, _) in kernel {
                if let Some(rec) = self.records.get_mut(&key) {
                    rec.seen_cycle = cycle;
                }
            }
            for (key, rec) in &mut self.records {
                if rec.in_kernel && rec.seen_cycle != cycle {
                    let old = rec.current;
                    if rec.fold(&old)
                        && let Some(c) = &mut self.carry
                    {
                        c.changed.push(*key);
                    }
                    rec.current = FlowStats::default();
                    rec.in_kernel = false;
                    self.in_kernel -= 1;
                }
            }
        }
        &self.evict
    }

    /// The last value read stands when the entry was already gone.
    fn fold_evicted(&mut self, key: &FlowKey, last: Option<FlowStats>, now_ns: u64) {
        if let Some(rec) = self.records.get_mut(key) {
            let fin = last.unwrap_or(rec.current);
            if fin != rec.current {
                // Packets arrived between the read and the move.
                rec.last_seen_ns = now_ns;
            }
            let changed = rec.fold(&fin);
            rec.current = FlowStats::default();
            if rec.in_kernel {
                rec.in_kernel = false;
                self.in_kernel -= 1;
            }
            if changed {
                self.carry_changed(*key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
