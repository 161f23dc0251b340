//! Real-kernel tests for `sys`, the two map operations aya 0.14 lacks (need root / CAP_BPF):
//! batched reads of hash, per-CPU hash and per-CPU array maps, and lookup-and-delete. The maps
//! are created and filled with aya itself. Their speed is measured by `make bench` (`maps`).

use std::os::fd::{AsFd, BorrowedFd};

use aya::{
    maps::{HashMap, IterableMap, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    util::nr_cpus,
};
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

fn fd<M: IterableMap<A, B>, A: aya::Pod, B>(m: &M) -> BorrowedFd<'_> {
    m.map().fd().as_fd()
}

fn filled(n: u32) -> HashMap<MapData, K, V> {
    let mut map = HashMap::<MapData, K, V>::create(n, 0).expect("create hash map");
    for i in 0..n {
        map.insert(key(i), val(i, 0), 0).unwrap();
    }
    map
}

#[test]
fn hash_batch_read_all() {
    let mut map = filled(N);
    assert!(sys::map_memlock_bytes(fd(&map)).unwrap() > 0);
    let mut reader = BatchReader::<K, V>::new(1024);
    for _ in 0..3 {
        let entries = reader.read_all(fd(&map)).unwrap();
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
    for chunk in [64, 256, 4096] {
        let mut r = BatchReader::<K, V>::new(chunk);
        assert_eq!(r.read_all(fd(&map)).unwrap().keys.len(), N as usize);
    }
    for i in (0..N).step_by(2) {
        map.remove(&key(i)).unwrap();
    }
    let entries = reader.read_all(fd(&map)).unwrap();
    assert_eq!(entries.keys.len(), (N / 2) as usize);
    assert!(entries.keys.iter().all(|k| k[0] % 2 == 1));
}

#[test]
fn percpu_hash_batch_read_all() {
    let ncpu = nr_cpus().unwrap();
    let mut map = PerCpuHashMap::<MapData, K, V>::create(N, 0).expect("create per-CPU map");
    for i in 0..N {
        let vals: Vec<V> = (0..ncpu as u64).map(|c| val(i, c)).collect();
        map.insert(key(i), PerCpuValues::try_from(vals).unwrap(), 0)
            .unwrap();
    }
    let mut reader = BatchReader::<K, V>::new(1024);
    let entries = reader.read_all(fd(&map)).unwrap();
    assert_eq!(entries.keys.len(), N as usize);
    assert_eq!(entries.per_key, ncpu);
    let mut seen = vec![false; N as usize];
    for (k, vs) in entries.iter() {
        let i = k[0];
        assert_eq!(*k, key(i));
        let want: Vec<V> = (0..ncpu as u64).map(|c| val(i, c)).collect();
        assert_eq!(vs, &want[..]);
        assert!(!std::mem::replace(&mut seen[i as usize], true));
    }
    assert!(matches!(
        TypedMap::<K, V>::new(fd(&map))
            .unwrap()
            .lookup_and_delete(&key(7)),
        Err(sys::SysError::UnsupportedMapType { .. })
    ));
}

#[test]
fn enospc_chunk_doubling() {
    // Tiny chunk on a dense map: buckets with >1 entries force ENOSPC → doubling.
    let mut map = HashMap::<MapData, u32, u64>::create(1024, 0).unwrap();
    for i in 0u32..1024 {
        map.insert(i, u64::from(i), 0).unwrap();
    }
    let mut reader = BatchReader::<u32, u64>::new(1);
    let entries = reader.read_all(fd(&map)).unwrap();
    let mut got: Vec<(u32, u64)> = entries.iter().map(|(k, v)| (*k, v[0])).collect();
    got.sort_unstable();
    assert_eq!(
        got,
        (0..1024).map(|i| (i, u64::from(i))).collect::<Vec<_>>()
    );
    assert!(reader.chunk() > 1);
}

#[test]
fn lookup_and_delete_returns_the_final_value() {
    let map = filled(1000);
    let typed = TypedMap::<K, V>::new(fd(&map)).unwrap();
    assert_eq!(typed.lookup_and_delete(&key(5)).unwrap(), Some(val(5, 0)));
    assert_eq!(typed.lookup_and_delete(&key(5)).unwrap(), None);
    assert!(map.get(&key(5), 0).is_err(), "deleted");
    assert_eq!(map.get(&key(6), 0).unwrap(), val(6, 0));
    for i in (0..1000).filter(|i| *i != 5) {
        assert_eq!(typed.lookup_and_delete(&key(i)).unwrap(), Some(val(i, 0)));
    }
    let mut reader = BatchReader::<K, V>::new(256);
    assert!(reader.read_all(fd(&map)).unwrap().keys.is_empty());
}

#[test]
fn size_mismatch_rejected() {
    let map = filled(16);
    assert!(matches!(
        TypedMap::<K, [u64; 11]>::new(fd(&map)),
        Err(sys::SysError::SizeMismatch {
            what: "value size",
            ..
        })
    ));
    assert!(matches!(
        BatchReader::<[u32; 9], V>::new(8).read_all(fd(&map)),
        Err(sys::SysError::SizeMismatch {
            what: "key size",
            ..
        })
    ));
}

#[test]
fn percpu_array_batch_read() {
    let ncpu = nr_cpus().unwrap();
    let mut array = PerCpuArray::<MapData, u64>::create(4, 0).unwrap();
    let vals: Vec<u64> = (0..ncpu as u64).map(|c| 10 + c).collect();
    array
        .set(2, PerCpuValues::try_from(vals.clone()).unwrap(), 0)
        .unwrap();
    // Batch reads work on arrays too (key-sized cursor).
    let mut r = BatchReader::<u32, u64>::new(3);
    let e = r.read_all(array.map().fd().as_fd()).unwrap();
    assert_eq!(e.keys.len(), 4);
    assert_eq!(e.iter().nth(2).unwrap().1, &vals[..]);
    assert_eq!(e.iter().next().unwrap().1, vec![0; ncpu]);
}
