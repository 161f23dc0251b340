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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub bytes: u64,
    pub buckets: [u64; SIZE_BUCKETS],
    /// TCP control packets per kind ([`netprobe_ebpf::tcp_control`] lanes).
    pub tcp_control: [u64; 4],
}

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
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        let mut t = self.base.as_deref().copied().unwrap_or_default();
        t.add(&self.current);
        t
    }

    /// Folds the current kernel entry's counts into the base (the entry is gone or replaced).
    fn fold(&mut self, last: &FlowStats) {
        if *last != FlowStats::default() {
            self.base.get_or_insert_with(Box::default).add(last);
        }
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
                rec.fold(&old);
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
        self.records.retain(|_, r| {
            r.in_kernel
                || now_ns.saturating_sub(r.last_seen_ns) < idle_ns
                || r.extras.as_ref().is_some_and(|e| e.conn.active > 0)
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
            for rec in self.records.values_mut() {
                if rec.in_kernel && rec.seen_cycle != cycle {
                    let old = rec.current;
                    rec.fold(&old);
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
            rec.fold(&fin);
            rec.current = FlowStats::default();
            if rec.in_kernel {
                rec.in_kernel = false;
                self.in_kernel -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use netprobe_ebpf::tcp_flags::{ACK, FIN, SYN};

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

    fn stats(packets: u64, bytes: u64) -> FlowStats {
        let mut s = FlowStats {
            bytes,
            first_seen_ns: 1,
            ..FlowStats::default()
        };
        s.size_buckets[5] = packets;
        s
    }

    fn kv(v: &[KernelFlow]) -> impl Iterator<Item = (FlowKey, &FlowStats, Option<u64>)> + Clone {
        v.iter().map(|(k, s)| (*k, s, None))
    }

    fn ingest(
        t: &mut FlowTable,
        v: &[KernelFlow],
        now: u64,
        idle: u64,
    ) -> (Vec<FlowKey>, Vec<u64>) {
        let mut at = Vec::new();
        let evict = t.ingest(kv(v), now, idle, &mut at).to_vec();
        (evict, at)
    }

    fn packets(t: &FlowTable, k: &FlowKey) -> u64 {
        t.records[k].totals().buckets.iter().sum()
    }

    #[test]
    fn counts_survive_kernel_eviction() {
        let mut t = FlowTable::new();
        let k = key(7);
        let (evict, at) = ingest(&mut t, &[(k, stats(10, 15000))], 100, 50);
        assert!(evict.is_empty());
        assert_eq!(at, vec![100]);
        // Still changing at 140: not idle.
        let (evict, at) = ingest(&mut t, &[(k, stats(12, 18000))], 140, 50);
        assert!(evict.is_empty());
        assert_eq!(at, vec![140]);
        // Unchanged since 140, idle past 50 at 190: the reader moves it out with its final
        // value (one more packet arrived after the read).
        let (evict, at) = ingest(&mut t, &[(k, stats(12, 18000))], 190, 50);
        assert_eq!((evict, at), (vec![k], vec![140]));
        t.fold_evicted(&k, Some(stats(13, 19500)), 190);
        assert_eq!(packets(&t, &k), 13);
        assert_eq!(t.records[&k].last_seen_ns, 190);
        // The flow comes back: a new kernel entry counts on top.
        ingest(&mut t, &[(k, stats(2, 3000))], 200, 50);
        assert_eq!(packets(&t, &k), 15);
        assert_eq!(t.records[&k].totals().bytes, 22500);
    }

    #[test]
    fn a_new_incarnation_with_the_same_counts_is_not_taken_for_the_old() {
        let mut t = FlowTable::new();
        let k = key(3);
        ingest(&mut t, &[(k, stats(4, 400))], 10, 1000);
        // Someone else deleted the entry and the flow made a new one with equal counts.
        let mut again = stats(4, 400);
        again.first_seen_ns = 20;
        ingest(&mut t, &[(k, again)], 30, 1000);
        assert_eq!(packets(&t, &k), 8);
    }

    #[test]
    fn control_lanes_add_up_across_incarnations() {
        let mut t = FlowTable::new();
        let k = key(4);
        let mut s = stats(3, 300);
        s.tcp_control = netprobe_ebpf::tcp_control::increment(0x02) * 2
            + netprobe_ebpf::tcp_control::increment(0x11);
        ingest(&mut t, &[(k, s)], 10, 5);
        let (evict, _) = ingest(&mut t, &[(k, s)], 20, 5);
        assert_eq!(evict, vec![k]);
        t.fold_evicted(&k, Some(s), 20);
        ingest(&mut t, &[(k, s)], 30, 5);
        let totals = t.records[&k].totals();
        assert_eq!(totals.tcp_control, [4, 0, 2, 0]);
        // 6 packets of which 4 bare SYNs: the others carried ACK.
        let f = totals.tcp_flags();
        assert_eq!(f, SYN | FIN | ACK, "{f:#x}");
        let syns_only = Totals {
            buckets: [0, 0, 0, 0, 0, 3, 0, 0],
            tcp_control: [3, 0, 0, 0],
            ..Totals::default()
        };
        assert_eq!(syns_only.tcp_flags(), SYN);
    }

    #[test]
    fn vanished_entries_keep_their_counts_and_expire_later() {
        let mut t = FlowTable::new();
        let k = key(1);
        ingest(&mut t, &[(k, stats(5, 500))], 10, 1000);
        ingest(&mut t, &[], 20, 1000);
        assert_eq!(packets(&t, &k), 5);
        assert_eq!(t.expire(50, 100), 0);
        assert_eq!(t.expire(110, 100), 1);
        assert!(t.is_empty());
    }

    #[test]
    fn unchanged_entries_are_skipped_but_still_present() {
        let mut t = FlowTable::new();
        let (a, b) = (key(1), key(2));
        let (sa, sb) = (stats(5, 500), stats(7, 700));
        ingest(&mut t, &[(a, sa), (b, sb)], 10, 1000);
        // Next cycle: a unchanged since 10 (no lookup), b changed.
        let sb2 = stats(9, 900);
        let items = [(a, sa, Some(10)), (b, sb2, None)];
        let mut at = Vec::new();
        t.ingest(items.iter().map(|(k, s, c)| (*k, s, *c)), 20, 1000, &mut at);
        assert_eq!(at, vec![10, 20]);
        assert_eq!((packets(&t, &a), packets(&t, &b)), (5, 9));
        // Someone else deleted b: a, unchanged, must not be taken for vanished too.
        let items = [(a, sa, Some(10))];
        t.ingest(
            items.iter().map(|(k, s, c)| (*k, s, *c)),
            30,
            1000,
            &mut Vec::new(),
        );
        assert!(t.records[&a].in_kernel);
        assert!(!t.records[&b].in_kernel);
        assert_eq!(packets(&t, &b), 9);
    }

    #[test]
    fn an_entry_that_only_moved_keeps_its_change_time() {
        let mut t = FlowTable::new();
        let k = key(9);
        ingest(&mut t, &[(k, stats(1, 100))], 10, 1000);
        // The reader could not tell (the entry moved in the kernel's order): looked up, equal.
        let (_, at) = ingest(&mut t, &[(k, stats(1, 100))], 500, 1000);
        assert_eq!(at, vec![10]);
    }

    #[test]
    fn a_flow_with_an_open_connection_is_kept_until_it_ends() {
        let mut t = FlowTable::new();
        let k = key(2);
        ingest(&mut t, &[(k, stats(3, 300))], 10, 1000);
        ingest(&mut t, &[], 20, 1000);
        t.extras_mut(&k, 20, false).conn.active = 1;
        assert_eq!(t.expire(1_000, 100), 0, "open: kept past the idle timeout");
        assert_eq!(t.changed_at(&k), Some(10), "its activity still known");
        t.extras_mut(&k, 1_000, false).conn.active = 0;
        assert_eq!(t.expire(1_000, 100), 1, "closed: forgotten");
    }

    #[test]
    fn flows_in_the_kernel_never_expire() {
        let mut t = FlowTable::new();
        ingest(&mut t, &[(key(1), stats(5, 500))], 10_000, 1_000_000);
        assert_eq!(t.expire(10_000, 100), 0);
    }
}
