//! The per-flow kernel counter source (`ebpf::counts`) against a real kernel hash map (root):
//! what a registration promises — each entry's counts reach its flow once, as deltas, under
//! the attribute values its key names; entries the registration does not count and loopback
//! flows are left out; an idle entry leaves the kernel, and a new one of the same key counts
//! from zero. The map is created and written with aya, as the kernel programs would fill it;
//! the lab's drop and ICMP tests cover the registered maps end to end.

mod common;

use std::{collections::BTreeMap, os::fd::AsFd};

use aya::maps::{HashMap, IterableMap, MapData};
use netprobe_ebpf::{DropKey, DropStats, FlowKey};
use otel_netprobe::ebpf::{
    counts::{AttrValues, CounterSource, CountsTable, FlowCounts},
    reader::Eviction,
    table::KernelTable,
};

/// A registration like the drops': reason 99 is "no drop" and not counted.
struct Reasons;

impl FlowCounts for Reasons {
    type Key = DropKey;
    type Value = DropStats;
    type Raw = u32;
    const MAP: &'static str = "TEST_DROPS";

    fn flow(&self, key: &DropKey) -> FlowKey {
        key.flow
    }

    fn raw(&self, key: &DropKey) -> Option<u32> {
        (key.reason != 99).then_some(key.reason)
    }

    fn values(&self, reason: u32) -> Vec<String> {
        vec![format!("reason{reason}")]
    }
}

fn key(src: [u8; 4], reason: u32) -> DropKey {
    DropKey {
        flow: FlowKey {
            src_addr: [u32::from_ne_bytes(src), 0, 0, 0],
            dst_addr: [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0],
            src_port: 40_000u16.to_be(),
            dst_port: 7_000u16.to_be(),
            protocol: 17,
            ip_version: 4,
            pad: [0; 2],
        },
        reason,
    }
}

fn stats(packets: u64, bytes: u64) -> DropStats {
    DropStats { packets, bytes }
}

/// One read at `now_ns` (idle after 100 ns): what was folded, as (source octet, attribute,
/// deltas).
fn read(source: &mut dyn CounterSource, now_ns: u64) -> BTreeMap<(u8, String), Vec<u64>> {
    let mut got = BTreeMap::new();
    source
        .read(
            now_ns,
            100,
            Eviction::LookupThenDelete,
            &mut |flow: &FlowKey, attrs: &AttrValues, delta: &[u64]| {
                let src = flow.src_addr[0].to_ne_bytes()[3];
                let old = got.insert((src, attrs[0].to_string()), delta.to_vec());
                assert!(old.is_none(), "one fold per entry and read");
            },
        )
        .expect("read");
    got
}

#[test]
fn counts_reach_their_flow_once_as_deltas() {
    common::require_root();
    let mut map = HashMap::<MapData, DropKey, DropStats>::create(64, 0).expect("create map");
    let data = MapData::from_fd(map.map().fd().as_fd().try_clone_to_owned().unwrap()).unwrap();
    let mut source = CountsTable::new(Reasons, KernelTable::new(data, 4).expect("table"));
    let (a, b, lo) = ([10, 0, 0, 1], [10, 0, 0, 3], [127, 0, 0, 1]);
    map.insert(key(a, 2), stats(3, 300), 0).unwrap();
    map.insert(key(b, 2), stats(1, 84), 0).unwrap();
    map.insert(key(a, 99), stats(5, 500), 0).unwrap();
    map.insert(key(lo, 2), stats(7, 700), 0).unwrap();
    let want = |rows: &[(u8, &str, &[u64])]| {
        rows.iter()
            .map(|(s, r, d)| ((*s, (*r).to_owned()), d.to_vec()))
            .collect::<BTreeMap<_, _>>()
    };
    assert_eq!(
        read(&mut source, 0),
        want(&[(1, "reason2", &[3, 300]), (3, "reason2", &[1, 84])]),
        "not counted: reason 99, loopback"
    );
    assert_eq!(source.entries(), 4);
    // a's drops go on: only what it added since the last read.
    map.insert(key(a, 2), stats(5, 520), 0).unwrap();
    assert_eq!(read(&mut source, 50), want(&[(1, "reason2", &[2, 220])]));
    // Nothing new: nothing folded. b, unchanged for 100 ns, leaves the kernel (its final value
    // equals the last read: nothing to add).
    assert_eq!(read(&mut source, 120), want(&[]));
    assert!(map.get(&key(b, 2), 0).is_err(), "b moved out");
    assert!(
        map.get(&key(a, 2), 0).is_ok(),
        "a changed at 50: not idle yet"
    );
    // b drops again: a new entry of the same key counts from zero.
    map.insert(key(b, 2), stats(2, 168), 0).unwrap();
    assert_eq!(read(&mut source, 130), want(&[(3, "reason2", &[2, 168])]));
}
