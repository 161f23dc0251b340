//! Real-kernel tests for `sys` (need root / `CAP_BPF`).
#![allow(clippy::cast_precision_loss)]

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::time::Instant;

use otel_netprobe::ebpf::sys::{self, BatchReader, TypedMap};

type K = [u32; 10];
type V = [u64; 12];
const N: u32 = 100_000;

fn key(i: u32) -> K {
    let mut k = [0u32; 10];
    k[0] = i;
    k[9] = i.wrapping_mul(2_654_435_761);
    k
}

fn val(i: u32, cpu: u64) -> V {
    let mut v = [0u64; 12];
    v[0] = u64::from(i);
    v[11] = u64::from(i) * 1000 + cpu;
    v
}

#[test]
fn parse_cpu_lists() {
    assert_eq!(sys::parse_cpu_list("0-63\n"), Some(64));
    assert_eq!(sys::parse_cpu_list("0"), Some(1));
    assert_eq!(sys::parse_cpu_list("0,2-5"), Some(5));
    assert_eq!(sys::parse_cpu_list("0-1,4,6-7"), Some(5));
    assert_eq!(sys::parse_cpu_list(""), None);
    assert_eq!(sys::parse_cpu_list("3-1"), None);
    assert_eq!(sys::parse_cpu_list("a-b"), None);
    assert_eq!(sys::parse_cpu_list("0,,1"), None);
    assert!(sys::possible_cpus().unwrap() >= 1);
}

#[test]
fn hash_batch_read_all_and_delete() {
    let fd = sys::create_map(sys::MAP_TYPE_HASH, 40, 96, N, 0).unwrap();
    let map = TypedMap::<K, V>::new(fd.as_fd()).unwrap();
    for i in 0..N {
        map.update(&key(i), &[val(i, 0)], sys::BPF_NOEXIST).unwrap();
    }
    println!("memlock: {:?} bytes", sys::map_memlock_bytes(fd.as_fd()));
    assert!(sys::map_memlock_bytes(fd.as_fd()).unwrap() > 0);

    let mut reader = BatchReader::<K, V>::new(1024);
    for round in 0..3 {
        let reader_chunk = reader.chunk();
        let t = Instant::now();
        let entries = reader.read_all(fd.as_fd()).unwrap();
        let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        println!("TIMING read_all hash round {round}: {us:.3} us/entry (chunk {reader_chunk})");
        assert_eq!(entries.keys.len(), N as usize);
        assert_eq!(entries.per_key, 1);
        let mut seen = vec![false; N as usize];
        for (k, v) in entries.iter() {
            let i = k[0];
            assert_eq!(*k, key(i));
            assert_eq!(v, &[val(i, 0)]);
            assert!(!seen[i as usize], "duplicate key {i}");
            seen[i as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
    println!("final chunk {}", reader.chunk());
    for chunk in [64, 256, 1024, 4096] {
        let mut r = BatchReader::<K, V>::new(chunk);
        r.read_all(fd.as_fd()).unwrap(); // warm-up allocates
        let t = Instant::now();
        assert_eq!(r.read_all(fd.as_fd()).unwrap().keys.len(), N as usize);
        let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        println!("TIMING read_all hash warm, chunk {chunk}: {us:.3} us/entry");
    }

    // delete_batch of the even keys plus some missing keys interleaved.
    let mut dels: Vec<K> = (0..N).step_by(2).map(key).collect();
    for j in 0..10 {
        dels.insert(j * 1000, key(N + j as u32));
    }
    let t = Instant::now();
    let deleted = sys::delete_batch(fd.as_fd(), &dels).unwrap();
    println!(
        "TIMING delete_batch: {:.3} us/key ({} keys)",
        t.elapsed().as_secs_f64() * 1e6 / dels.len() as f64,
        dels.len()
    );
    assert_eq!(deleted, (N / 2) as usize);
    let entries = reader.read_all(fd.as_fd()).unwrap();
    assert_eq!(entries.keys.len(), (N / 2) as usize);
    assert!(entries.keys.iter().all(|k| k[0] % 2 == 1));

    // delete the other half: timing for a 100k-size op is measured separately below.
    let odds: Vec<K> = (1..N).step_by(2).map(key).collect();
    assert_eq!(sys::delete_batch(fd.as_fd(), &odds).unwrap(), odds.len());
    assert!(reader.read_all(fd.as_fd()).unwrap().keys.is_empty());
}

#[test]
fn delete_batch_100k_timing() {
    let fd = sys::create_map(sys::MAP_TYPE_HASH, 40, 96, N, 0).unwrap();
    let keys: Vec<K> = (0..N).map(key).collect();
    for (i, k) in keys.iter().enumerate() {
        sys::update_elem(fd.as_fd(), k, &val(i as u32, 0), 0).unwrap();
    }
    let t = Instant::now();
    assert_eq!(sys::delete_batch(fd.as_fd(), &keys).unwrap(), N as usize);
    println!(
        "TIMING delete_batch 100k: {:.3} us/key",
        t.elapsed().as_secs_f64() * 1e6 / f64::from(N)
    );
    assert!(
        BatchReader::<K, V>::new(256)
            .read_all(fd.as_fd())
            .unwrap()
            .keys
            .is_empty()
    );
}

#[test]
fn percpu_hash_batch_read_all() {
    let ncpu = sys::possible_cpus().unwrap();
    let fd = sys::create_map(sys::MAP_TYPE_PERCPU_HASH, 40, 96, N, 0).unwrap();
    let map = TypedMap::<K, V>::new(fd.as_fd()).unwrap();
    assert_eq!(map.values_per_key(), ncpu);
    for i in 0..N {
        let vals: Vec<V> = (0..ncpu as u64).map(|c| val(i, c)).collect();
        map.update(&key(i), &vals, 0).unwrap();
    }
    let mut reader = BatchReader::<K, V>::new(1024);
    for round in 0..2 {
        let t = Instant::now();
        let entries = reader.read_all(fd.as_fd()).unwrap();
        let us = t.elapsed().as_secs_f64() * 1e6 / f64::from(N);
        println!("TIMING read_all percpu ({ncpu} cpus) round {round}: {us:.3} us/entry");
        assert_eq!(entries.keys.len(), N as usize);
        assert_eq!(entries.per_key, ncpu);
        let mut seen = HashSet::new();
        for (k, vs) in entries.iter() {
            let i = k[0];
            assert_eq!(*k, key(i));
            assert_eq!(vs.len(), ncpu);
            for (c, v) in vs.iter().enumerate() {
                assert_eq!(*v, val(i, c as u64));
            }
            assert!(seen.insert(i));
        }
        assert_eq!(seen.len(), N as usize);
    }
    // Single-element lookup gives the same per-CPU values.
    assert_eq!(
        map.lookup(&key(7)).unwrap().unwrap()[ncpu - 1],
        val(7, ncpu as u64 - 1)
    );
    assert!(matches!(
        map.lookup_and_delete(&key(7)),
        Err(sys::SysError::UnsupportedMapType { .. })
    ));
}

#[test]
fn enospc_chunk_doubling() {
    // Tiny chunk on a dense map: buckets with >1 entries force ENOSPC → doubling.
    let fd = sys::create_map(sys::MAP_TYPE_HASH, 4, 8, 1024, 0).unwrap();
    for i in 0u32..1024 {
        sys::update_elem(fd.as_fd(), &i, &u64::from(i), 0).unwrap();
    }
    let mut reader = BatchReader::<u32, u64>::new(1);
    let entries = reader.read_all(fd.as_fd()).unwrap();
    let mut got: Vec<(u32, u64)> = entries.iter().map(|(k, v)| (*k, v[0])).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..1024).map(|i| (i, u64::from(i))).collect::<Vec<_>>()
    );
    println!("chunk after ENOSPC doubling: {}", reader.chunk());
    assert!(reader.chunk() > 1);
}

#[test]
fn lookup_and_delete_works() {
    let fd = sys::create_map(sys::MAP_TYPE_HASH, 40, 96, N, 0).unwrap();
    let map = TypedMap::<K, V>::new(fd.as_fd()).unwrap();
    for i in 0..N {
        map.update(&key(i), &[val(i, 0)], 0).unwrap();
    }
    assert_eq!(
        sys::lookup_and_delete::<K, V>(fd.as_fd(), &key(5)).unwrap(),
        Some(val(5, 0))
    );
    assert_eq!(
        sys::lookup_and_delete::<K, V>(fd.as_fd(), &key(5)).unwrap(),
        None
    );
    assert_eq!(map.lookup(&key(5)).unwrap(), None);
    assert_eq!(map.lookup(&key(6)).unwrap(), Some(vec![val(6, 0)]));

    let t = Instant::now();
    for i in 6..N {
        assert!(map.lookup_and_delete(&key(i)).unwrap().is_some());
    }
    let n = f64::from(N - 6);
    println!(
        "TIMING lookup_and_delete (TypedMap, checked once): {:.3} us/key",
        t.elapsed().as_secs_f64() * 1e6 / n
    );
    for i in 0..5 {
        map.update(&key(i), &[val(i, 0)], 0).unwrap();
    }
    let t = Instant::now();
    for i in 0..5 {
        assert!(
            sys::lookup_and_delete::<K, V>(fd.as_fd(), &key(i))
                .unwrap()
                .is_some()
        );
    }
    println!(
        "TIMING lookup_and_delete (free fn, 5 keys): {:.3} us/key",
        t.elapsed().as_secs_f64() * 1e6 / 5.0
    );
    assert!(
        BatchReader::<K, V>::new(256)
            .read_all(fd.as_fd())
            .unwrap()
            .keys
            .is_empty()
    );
}

#[test]
fn size_mismatch_rejected() {
    let fd = sys::create_map(sys::MAP_TYPE_HASH, 40, 96, 16, 0).unwrap();
    assert!(matches!(
        sys::lookup_and_delete::<K, [u64; 11]>(fd.as_fd(), &key(1)),
        Err(sys::SysError::SizeMismatch {
            what: "value size",
            ..
        })
    ));
    assert!(matches!(
        sys::delete_batch::<[u32; 9]>(fd.as_fd(), &[[0; 9]]),
        Err(sys::SysError::SizeMismatch {
            what: "key size",
            ..
        })
    ));
}

#[test]
fn percpu_array_u64() {
    let ncpu = sys::possible_cpus().unwrap();
    let fd = sys::create_map(sys::MAP_TYPE_PERCPU_ARRAY, 4, 8, 4, 0).unwrap();
    let vals: Vec<u64> = (0..ncpu as u64).map(|c| 10 + c).collect();
    TypedMap::<u32, u64>::new(fd.as_fd())
        .unwrap()
        .update(&2u32, &vals, 0)
        .unwrap();
    assert_eq!(
        sys::lookup_percpu_array_u64(fd.as_fd(), 2, ncpu).unwrap(),
        vals
    );
    assert_eq!(
        sys::lookup_percpu_array_u64(fd.as_fd(), 0, ncpu).unwrap(),
        vec![0; ncpu]
    );
    assert!(sys::lookup_percpu_array_u64(fd.as_fd(), 9, ncpu).is_err());
    assert!(sys::lookup_percpu_array_u64(fd.as_fd(), 0, ncpu + 1).is_err());
    // Batch reads work on arrays too (key-sized cursor).
    let mut r = BatchReader::<u32, u64>::new(3);
    let e = r.read_all(fd.as_fd()).unwrap();
    assert_eq!(e.keys.len(), 4);
    assert_eq!(e.iter().nth(2).unwrap().1, &vals[..]);
}
