//! The cumulative flow table: kernel values plus what was already moved out of the kernel.

use rustc_hash::FxHashMap;

use netprobe_ebpf::{FlowKey, FlowStats, SIZE_BUCKETS};

/// One flow as read from the kernel table.
pub type KernelFlow = (FlowKey, FlowStats);

/// Counts that survive the kernel entry: what earlier kernel incarnations of the flow counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub bytes: u64,
    pub buckets: [u64; SIZE_BUCKETS],
    pub tcp_flags: u64,
}

impl Totals {
    fn add(&mut self, s: &FlowStats) {
        self.bytes += s.bytes;
        for (t, b) in self.buckets.iter_mut().zip(s.size_buckets) {
            *t += b;
        }
        self.tcp_flags |= s.tcp_flags;
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Record {
    /// Folded from kernel entries that were moved out.
    pub base: Totals,
    /// The current kernel entry's value (zero when the flow is not in the kernel).
    pub current: FlowStats,
    pub in_kernel: bool,
    /// Kernel coarse-clock time of the first packet ever seen.
    pub first_seen_ns: u64,
    /// Kernel coarse-clock time of the latest packet.
    pub last_seen_ns: u64,
    /// Read cycle in which the kernel entry was last seen, to notice entries that vanished.
    seen_cycle: u64,
}

impl Record {
    pub(crate) fn totals(&self) -> Totals {
        let mut t = self.base;
        t.add(&self.current);
        t
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
/// Each cycle: [`FlowTable::ingest`] the kernel table's contents, move the idle keys it returns
/// out of the kernel and hand their final values to [`FlowTable::fold_evicted`], then
/// [`FlowTable::expire`].
#[derive(Debug, Default)]
pub struct FlowTable {
    pub(crate) records: FxHashMap<FlowKey, Record>,
    /// Records whose kernel entry exists (to skip the vanished-entry sweep when none vanished).
    in_kernel: usize,
    cycle: u64,
    evict: Vec<FlowKey>,
}

impl FlowTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of flows tracked.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no flow is tracked.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Takes in the kernel table's current contents (cumulative per kernel entry) at coarse time
    /// `now_ns`, and returns the keys idle for at least `kernel_idle_ns` that should be moved out
    /// of the kernel.
    ///
    /// Each item says whether the entry `changed` since the previous cycle; unchanged entries
    /// (the reader compares with its previous read, in the kernel's stable order) cost no
    /// lookup here. The iterator is walked a second time only in the rare case that entries
    /// vanished from the kernel without the reader moving them out.
    pub fn ingest<'a, I>(&mut self, kernel: I, now_ns: u64, kernel_idle_ns: u64) -> &[FlowKey]
    where
        I: Iterator<Item = (FlowKey, &'a FlowStats, bool)> + Clone,
    {
        self.cycle += 1;
        self.evict.clear();
        let mut seen = 0;
        for (key, stats, changed) in kernel.clone() {
            seen += 1;
            if changed {
                self.update(key, stats);
            }
            if now_ns.saturating_sub(stats.last_seen_ns) >= kernel_idle_ns {
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
            for rec in self.records.values_mut() {
                if rec.in_kernel && rec.seen_cycle != cycle {
                    let old = rec.current;
                    rec.base.add(&old);
                    rec.current = FlowStats::default();
                    rec.in_kernel = false;
                    self.in_kernel -= 1;
                }
            }
        }
        &self.evict
    }

    fn update(&mut self, key: FlowKey, stats: &FlowStats) {
        let rec = self.records.entry(key).or_insert_with(|| Record {
            base: Totals::default(),
            current: FlowStats::default(),
            in_kernel: false,
            first_seen_ns: stats.first_seen_ns,
            last_seen_ns: stats.last_seen_ns,
            seen_cycle: 0,
        });
        // A kernel entry whose counts went down is a new incarnation (the old one was deleted by
        // someone else): keep what the old one had counted.
        if rec.in_kernel && stats.packets() < rec.current.packets() {
            let old = rec.current;
            rec.base.add(&old);
        }
        if !rec.in_kernel {
            self.in_kernel += 1;
        }
        rec.current = *stats;
        rec.in_kernel = true;
        rec.seen_cycle = self.cycle;
        rec.last_seen_ns = rec.last_seen_ns.max(stats.last_seen_ns);
    }

    /// Folds the final value of a kernel entry that was moved out (`None` if it was already
    /// gone, in which case the last value read stands).
    pub fn fold_evicted(&mut self, key: &FlowKey, last: Option<FlowStats>) {
        if let Some(rec) = self.records.get_mut(key) {
            let fin = last.unwrap_or(rec.current);
            rec.base.add(&fin);
            rec.last_seen_ns = rec.last_seen_ns.max(fin.last_seen_ns);
            rec.current = FlowStats::default();
            if rec.in_kernel {
                rec.in_kernel = false;
                self.in_kernel -= 1;
            }
        }
    }

    /// Forgets flows that are out of the kernel and idle for at least `idle_ns`; returns how
    /// many were forgotten.
    pub fn expire(&mut self, now_ns: u64, idle_ns: u64) -> usize {
        let before = self.records.len();
        self.records
            .retain(|_, r| r.in_kernel || now_ns.saturating_sub(r.last_seen_ns) < idle_ns);
        before - self.records.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u32) -> FlowKey {
        FlowKey {
            src_addr: [n, 0, 0, 0],
            dst_addr: [1, 0, 0, 0],
            src_port: 1000,
            dst_port: 80,
            protocol: 6,
            ip_version: 4,
            pad: [0; 2],
        }
    }

    fn stats(packets: u64, bytes: u64, last: u64) -> FlowStats {
        let mut s = FlowStats {
            bytes,
            first_seen_ns: 1,
            last_seen_ns: last,
            ..FlowStats::default()
        };
        s.size_buckets[5] = packets;
        s
    }

    fn kv(v: &[KernelFlow]) -> impl Iterator<Item = (FlowKey, &FlowStats, bool)> + Clone {
        v.iter().map(|(k, s)| (*k, s, true))
    }

    fn packets(t: &FlowTable, k: &FlowKey) -> u64 {
        t.records[k].totals().buckets.iter().sum()
    }

    #[test]
    fn counts_survive_kernel_eviction() {
        let mut t = FlowTable::new();
        let k = key(7);
        let evict = t
            .ingest(kv(&[(k, stats(10, 15000, 100))]), 100, 50)
            .to_vec();
        assert!(evict.is_empty());
        // 60 ns later the flow is idle past 50: the reader moves it out with its final value.
        let evict = t
            .ingest(kv(&[(k, stats(12, 18000, 100))]), 160, 50)
            .to_vec();
        assert_eq!(evict, vec![k]);
        t.fold_evicted(&k, Some(stats(13, 19500, 100)));
        assert_eq!(packets(&t, &k), 13);
        // The flow comes back: a new kernel entry counts on top.
        t.ingest(kv(&[(k, stats(2, 3000, 200))]), 200, 50);
        assert_eq!(packets(&t, &k), 15);
        assert_eq!(t.records[&k].totals().bytes, 22500);
    }

    #[test]
    fn vanished_entries_keep_their_counts_and_expire_later() {
        let mut t = FlowTable::new();
        let k = key(1);
        t.ingest(kv(&[(k, stats(5, 500, 10))]), 10, 1000);
        t.ingest(kv(&[]), 20, 1000);
        assert_eq!(packets(&t, &k), 5);
        assert_eq!(t.expire(50, 100), 0);
        assert_eq!(t.expire(110, 100), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn unchanged_entries_are_skipped_but_still_present() {
        let mut t = FlowTable::new();
        let (a, b) = (key(1), key(2));
        let (sa, sb) = (stats(5, 500, 10), stats(7, 700, 10));
        t.ingest(kv(&[(a, sa), (b, sb)]), 10, 1000);
        // Next cycle: a unchanged (no lookup), b changed.
        let sb2 = stats(9, 900, 20);
        let items = [(a, sa, false), (b, sb2, true)];
        t.ingest(items.iter().map(|(k, s, c)| (*k, s, *c)), 20, 1000);
        assert_eq!((packets(&t, &a), packets(&t, &b)), (5, 9));
        // Someone else deleted b: a, unchanged, must not be taken for vanished too.
        let items = [(a, sa, false)];
        t.ingest(items.iter().map(|(k, s, c)| (*k, s, *c)), 30, 1000);
        assert!(t.records[&a].in_kernel);
        assert!(!t.records[&b].in_kernel);
        assert_eq!(packets(&t, &b), 9);
    }

    #[test]
    fn flows_in_the_kernel_never_expire() {
        let mut t = FlowTable::new();
        t.ingest(kv(&[(key(1), stats(5, 500, 10))]), 10_000, 1_000_000);
        assert_eq!(t.expire(10_000, 100), 0);
    }
}
