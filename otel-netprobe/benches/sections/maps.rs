//! `maps`: the two map operations aya 0.14 lacks, against what aya offers for the same job —
//! reading a 100k-entry flow table (batched lookups vs aya's `iter()`), and moving entries out
//! (lookup-and-delete, which returns the final value, vs aya's plain `remove`).

use std::{os::fd::AsFd, time::Instant};

use aya::maps::{HashMap, IterableMap, MapData};
use netprobe_ebpf::{FlowKey4, FlowStats};
use otel_netprobe::ebpf::sys::{BatchReader, TypedMap};

use crate::median;

const N: u32 = 100_000;

fn key(i: u32) -> FlowKey4 {
    FlowKey4 {
        src_addr: i,
        dst_addr: 7,
        src_port: 1,
        dst_port: 2,
        protocol: 17,
        pad: [0; 3],
    }
}

fn filled() -> HashMap<MapData, FlowKey4, FlowStats> {
    let mut map = HashMap::<MapData, FlowKey4, FlowStats>::create(N, 0).unwrap();
    for i in 0..N {
        map.insert(key(i), FlowStats::default(), 0).unwrap();
    }
    map
}

fn us_per(t: Instant, n: u32) -> f64 {
    t.elapsed().as_secs_f64() * 1e6 / f64::from(n)
}

/// Batched read vs `iter()`, lookup-and-delete vs `remove`, µs per entry.
pub fn batch_vs_iter() {
    let mut map = filled();
    let mut reader = BatchReader::<FlowKey4, FlowStats>::new(1024);
    reader.read_all(map.map().fd().as_fd()).unwrap(); // warm-up allocates
    let (mut batched, mut iter) = (vec![], vec![]);
    for _ in 0..5 {
        let t = Instant::now();
        let n = reader.read_all(map.map().fd().as_fd()).unwrap().keys.len();
        batched.push(us_per(t, N));
        assert_eq!(n, N as usize);
        let t = Instant::now();
        assert_eq!(map.iter().filter_map(Result::ok).count(), N as usize);
        iter.push(us_per(t, N));
    }
    let (batched, iter) = (median(batched), median(iter));
    let t = Instant::now();
    let typed = TypedMap::<FlowKey4, FlowStats>::new(map.map().fd().as_fd()).unwrap();
    for i in 0..N / 2 {
        assert!(typed.lookup_and_delete(&key(i)).unwrap().is_some());
    }
    let moved = us_per(t, N / 2);
    let t = Instant::now();
    for i in N / 2..N {
        map.remove(&key(i)).unwrap();
    }
    let removed = us_per(t, N / 2);
    println!(
        "\n== Map operations aya 0.14 lacks, {N} entries; absolute µs/entry and × aya's own =="
    );
    println!(
        "read all: batched {batched:.3} µs/entry, aya iter() {iter:.3}: {:.2}x",
        batched / iter
    );
    println!(
        "move out: lookup-and-delete {moved:.3} µs/entry, aya remove() {removed:.3}: {:.2}x",
        moved / removed
    );
}
