//! The cumulative flow table's unit tests: counts across kernel incarnations, expiry, and
//! what the carry store learns.

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

fn ingest(t: &mut FlowTable, v: &[KernelFlow], now: u64, idle: u64) -> (Vec<FlowKey>, Vec<u64>) {
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

/// A carry store in memory: what `write_carried` saved and forgot.
#[derive(Default)]
struct Store {
    saved: std::collections::BTreeMap<FlowKey, Totals>,
    writes: usize,
    capacity: usize,
}

impl Store {
    fn write(&mut self, t: &mut FlowTable) -> CarryWrite {
        let out = t.write_carried::<()>(|k, v| {
            let Some(v) = v else {
                self.saved.remove(k);
                return Ok(true);
            };
            self.writes += 1;
            if !self.saved.contains_key(k) && self.saved.len() >= self.capacity {
                return Ok(false);
            }
            self.saved.insert(*k, *v);
            Ok(true)
        });
        out.unwrap()
    }
}

#[test]
fn the_carry_store_learns_only_what_changed_and_restores_it() {
    let mut t = FlowTable::new();
    t.restore_carried(Vec::new(), 0);
    let mut store = Store {
        capacity: 10,
        ..Store::default()
    };
    let (a, b) = (key(1), key(2));
    // Two flows read twice: nothing left the kernel, nothing to write.
    ingest(&mut t, &[(a, stats(3, 300)), (b, stats(4, 400))], 10, 50);
    ingest(&mut t, &[(a, stats(3, 300)), (b, stats(5, 500))], 20, 50);
    assert_eq!(store.write(&mut t), CarryWrite::default());
    // a goes idle and leaves the kernel: its base (3 packets) is written, once.
    let (evict, _) = ingest(&mut t, &[(a, stats(3, 300)), (b, stats(6, 600))], 70, 50);
    assert_eq!(evict, vec![a]);
    t.fold_evicted(&a, Some(stats(3, 300)), 70);
    let w = store.write(&mut t);
    assert_eq!((w.saved, w.forgotten, w.full), (1, 0, 0));
    assert_eq!(store.saved[&a].buckets[5], 3);
    assert_eq!(store.write(&mut t), CarryWrite::default());
    // A new agent: the store read back, a's kernel entry made again counts on top.
    let mut t2 = FlowTable::new();
    t2.restore_carried(store.saved.clone().into_iter().collect(), 100);
    ingest(&mut t2, &[(a, stats(2, 200))], 110, 50);
    assert_eq!(packets(&t2, &a), 5);
    assert_eq!(t2.records[&a].totals().bytes, 500);
    // a is forgotten (idle, out of the kernel): it leaves the store.
    let (evict, _) = ingest(&mut t2, &[(a, stats(2, 200))], 200, 50);
    t2.fold_evicted(&evict[0], Some(stats(2, 200)), 200);
    assert_eq!(store.write(&mut t2).saved, 1);
    assert_eq!(store.saved[&a].buckets[5], 5);
    assert_eq!(t2.expire(400, 100), 1);
    let w = store.write(&mut t2);
    assert_eq!((w.saved, w.forgotten), (0, 1));
    assert!(store.saved.is_empty());
}

#[test]
fn a_flow_forgotten_in_the_cycle_it_left_costs_no_write_and_a_full_store_is_counted() {
    let mut t = FlowTable::new();
    t.restore_carried(Vec::new(), 0);
    let mut store = Store {
        capacity: 1,
        ..Store::default()
    };
    let (a, b) = (key(1), key(2));
    ingest(&mut t, &[(a, stats(1, 100)), (b, stats(1, 100))], 10, 5);
    let (evict, _) = ingest(&mut t, &[(a, stats(1, 100)), (b, stats(1, 100))], 20, 5);
    for k in &evict {
        t.fold_evicted(k, None, 20);
    }
    // Both left the kernel; the store has room for one.
    let w = store.write(&mut t);
    assert_eq!((w.saved, w.full), (1, 1));
    // Both forgotten: only the stored one is deleted.
    assert_eq!(t.expire(1000, 10), 2);
    let w = store.write(&mut t);
    assert_eq!(w.forgotten, 1);
    assert!(store.saved.is_empty());
    // Left and forgotten within one cycle: no write at all.
    let writes = store.writes;
    ingest(&mut t, &[(a, stats(1, 100))], 2000, 5);
    let (evict, _) = ingest(&mut t, &[(a, stats(1, 100))], 2010, 5);
    t.fold_evicted(&evict[0], None, 2010);
    assert_eq!(t.expire(5000, 10), 1);
    assert_eq!(store.write(&mut t), CarryWrite::default());
    assert_eq!(store.writes, writes);
}
