//! The kernel side of a read cycle over the flow tables: both tables read with batched
//! lookups, each entry handed to a [`FlowSink`] (the flow stage's cumulative table) with what
//! the reader already knows of it, and the idle entries the sink names moved out of the kernel
//! with their final values, so no packet is lost. Also the per-CPU global counters, the
//! clocks the programs stamp entries with, and how this kernel lets entries go ([`Eviction`]).

use std::os::fd::AsFd;

use aya::{
    Pod,
    maps::{HashMap, MapData, MapError},
};
use netprobe_ebpf::{Counter, FlowKey, FlowKey4, FlowStats};

use super::{
    sys::{self, BatchReader, SysError, TypedMap},
    table::aya_handle,
};

/// Reads `CLOCK_MONOTONIC_COARSE`: the monotonic clock the programs stamp entries with
/// (`bpf_ktime_get_ns`), at a tick's resolution, which is all expiry needs.
pub fn coarse_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC_COARSE)
}

/// Reads `CLOCK_MONOTONIC`, as precise as the programs' SYN times.
pub fn monotonic_now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// How idle entries leave the kernel table, by what the kernel offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// `BPF_MAP_LOOKUP_AND_DELETE_ELEM` (hash maps: kernel 5.14 on): the final value comes
    /// with the deletion, atomically for the entry.
    LookupAndDelete,
    /// A lookup, then a delete (before 5.14): a packet that lands in the microsecond between
    /// the two is not counted; the flow was idle for `kernel_idle_timeout` before.
    LookupThenDelete,
}

impl Eviction {
    /// Asks the kernel: a lookup-and-delete of a key that is not there answers "no such
    /// entry" where the command works on hash maps, and "not supported" where it does not.
    pub fn probe(map: &TypedMap<'_, FlowKey4, FlowStats>) -> Self {
        let absent = FlowKey4 {
            src_addr: u32::MAX,
            dst_addr: u32::MAX,
            src_port: 0,
            dst_port: 0,
            protocol: 255,
            pad: [0; 3],
        };
        match map.lookup_and_delete(&absent) {
            Ok(_) => Self::LookupAndDelete,
            Err(_) => Self::LookupThenDelete,
        }
    }

    /// Takes `key`'s final value out of the kernel table (`None`: already gone); `aya`: the
    /// same table through aya, for the lookup and the delete before 5.14.
    pub(crate) fn take<K: Pod, V: Pod>(
        self,
        map: &TypedMap<'_, K, V>,
        aya: Option<&mut HashMap<MapData, K, V>>,
        key: &K,
    ) -> Result<Option<V>, SysError> {
        let (Self::LookupThenDelete, Some(aya)) = (self, aya) else {
            return map.lookup_and_delete(key);
        };
        let last = match aya.get(key, 0) {
            Ok(v) => Some(v),
            Err(MapError::KeyNotFound) => None,
            Err(e) => return Err(SysError::Aya(Box::new(e))),
        };
        match aya.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(last),
            Err(e) => Err(SysError::Aya(Box::new(e))),
        }
    }
}

/// The flow tables through aya's own map types (a second handle on each), for the lookup and
/// the delete that replace lookup-and-delete before 5.14.
struct AyaTables {
    v4: HashMap<MapData, FlowKey4, FlowStats>,
    v6: HashMap<MapData, FlowKey, FlowStats>,
}

impl AyaTables {
    fn of(maps: &super::Maps) -> Result<Self, SysError> {
        Ok(Self {
            v4: aya_handle(&maps.flows4)?,
            v6: aya_handle(&maps.flows6)?,
        })
    }
}

/// Where the flow tables' entries go: the flow stage's cumulative table.
pub trait FlowSink {
    /// Takes in the tables' entries at coarse time `now_ns`, and returns the keys whose counts
    /// have not changed for `kernel_idle_ns`, to be moved out of the kernel. Each item carries,
    /// when the reader knows the entry is unchanged since its previous read, the time it last
    /// changed; for every item, in order, the time its counts last changed is appended to
    /// `changed_at`, for the reader's next comparison.
    fn ingest<'a, I>(
        &mut self,
        kernel: I,
        now_ns: u64,
        kernel_idle_ns: u64,
        changed_at: &mut Vec<u64>,
    ) -> &[FlowKey]
    where
        I: Iterator<Item = (FlowKey, &'a FlowStats, Option<u64>)> + Clone;

    /// Takes in the final value of an entry moved out at `now_ns` (`None`: it was gone).
    fn fold_evicted(&mut self, key: &FlowKey, last: Option<FlowStats>, now_ns: u64);
}

/// What one read of the flow tables did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowRead {
    /// Entries left in the kernel tables.
    pub entries: u64,
    /// Entries moved out (idle).
    pub moved_out: u64,
}

/// The flow tables and the counter array, with what the previous read saw.
pub struct FlowMaps {
    maps: super::Maps,
    batch4: BatchReader<FlowKey4, FlowStats>,
    batch6: BatchReader<FlowKey, FlowStats>,
    /// The previous read of each table, in the kernel's order: (key, bytes, first seen), and
    /// when each entry's counts last changed.
    prev4: Vec<(FlowKey4, u64, u64)>,
    prev6: Vec<(FlowKey, u64, u64)>,
    changed_at: Vec<u64>,
    eviction: Eviction,
    /// Before 5.14 only: the tables through aya.
    aya: Option<AyaTables>,
}

impl FlowMaps {
    /// The production maps (see [`super::take_maps`]); asks the kernel how entries can go.
    pub fn new(maps: super::Maps) -> Result<Self, SysError> {
        let eviction = Eviction::probe(&TypedMap::new(maps.flows4.fd().as_fd())?);
        let aya = match eviction {
            Eviction::LookupAndDelete => None,
            Eviction::LookupThenDelete => Some(AyaTables::of(&maps)?),
        };
        if eviction == Eviction::LookupThenDelete {
            tracing::info!(
                kernel = %super::kernel::release(),
                "no lookup-and-delete for hash maps (kernel 5.14): idle flows leave the kernel \
                 table by a lookup then a delete; a packet in the microsecond between is not counted"
            );
        }
        Ok(Self {
            maps,
            batch4: BatchReader::new(1024),
            batch6: BatchReader::new(1024),
            prev4: Vec::new(),
            prev6: Vec::new(),
            changed_at: Vec::new(),
            eviction,
            aya,
        })
    }

    /// How idle entries leave the kernel tables on this kernel.
    pub fn eviction(&self) -> Eviction {
        self.eviction
    }

    /// Reads both tables into `sink` at coarse time `now_ns`, and moves out the entries it
    /// found idle for `kernel_idle_ns`.
    pub fn read(
        &mut self,
        now_ns: u64,
        kernel_idle_ns: u64,
        sink: &mut impl FlowSink,
    ) -> Result<FlowRead, SysError> {
        let (fd4, fd6) = (self.maps.flows4.fd().as_fd(), self.maps.flows6.fd().as_fd());
        let v4 = self.batch4.read_all(fd4)?;
        let v6 = self.batch6.read_all(fd6)?;
        let entries = v4.keys.len() + v6.keys.len();
        // The kernel walks a hash table in bucket order, which only inserts and deletes change:
        // an entry equal to the previous read's at the same position is unchanged (same key,
        // same bytes, same incarnation) and needs no lookup in the flow table; it last changed
        // when the previous read said.
        let (prev4, prev6, prev_at) = (&self.prev4, &self.prev6, &self.changed_at);
        let n4 = prev4.len();
        let known = |i: usize, same: bool| same.then(|| prev_at[i]);
        let kernel = v4
            .keys
            .iter()
            .zip(v4.values.iter())
            .enumerate()
            .map(|(i, (k, s))| {
                let same = prev4.get(i) == Some(&(*k, s.bytes, s.first_seen_ns));
                (k.widen(), s, known(i, same))
            })
            .chain(
                v6.keys
                    .iter()
                    .zip(v6.values.iter())
                    .enumerate()
                    .map(|(i, (k, s))| {
                        let same = prev6.get(i) == Some(&(*k, s.bytes, s.first_seen_ns));
                        (*k, s, known(n4 + i, same))
                    }),
            );
        let mut changed_at = Vec::with_capacity(entries);
        let evict = sink
            .ingest(kernel, now_ns, kernel_idle_ns, &mut changed_at)
            .to_vec();
        self.changed_at = changed_at;
        self.prev4.clear();
        self.prev4.extend(
            v4.keys
                .iter()
                .zip(v4.values.iter())
                .map(|(k, s)| (*k, s.bytes, s.first_seen_ns)),
        );
        self.prev6.clear();
        self.prev6.extend(
            v6.keys
                .iter()
                .zip(v6.values.iter())
                .map(|(k, s)| (*k, s.bytes, s.first_seen_ns)),
        );
        // Each idle entry leaves the kernel with its final value, so a packet that arrives
        // after our read is not lost.
        let (map4, map6) = (
            TypedMap::<FlowKey4, FlowStats>::new(fd4)?,
            TypedMap::<FlowKey, FlowStats>::new(fd6)?,
        );
        for key in &evict {
            let aya = self.aya.as_mut();
            let last = if key.ip_version == 4 {
                let aya = aya.map(|a| &mut a.v4);
                self.eviction.take(&map4, aya, &FlowKey4::narrow(key))?
            } else {
                self.eviction.take(&map6, aya.map(|a| &mut a.v6), key)?
            };
            sink.fold_evicted(key, last, now_ns);
        }
        Ok(FlowRead {
            entries: (entries - evict.len()) as u64,
            moved_out: evict.len() as u64,
        })
    }

    /// The kernel's global counters, summed over CPUs.
    pub fn counters(&self) -> GlobalCounters {
        let mut g = GlobalCounters::default();
        for c in Counter::ALL {
            if let Ok(v) = self.maps.counters.get(&(c as u32), 0) {
                g.0[c as usize] = v.iter().sum();
            }
        }
        g
    }

    /// Kernel memory of both flow tables (the kernel's own accounting), bytes.
    pub fn memory_bytes(&self) -> Option<u64> {
        let (fd4, fd6) = (self.maps.flows4.fd().as_fd(), self.maps.flows6.fd().as_fd());
        Some(sys::map_memlock_bytes(fd4)? + sys::map_memlock_bytes(fd6)?)
    }
}

/// The kernel's global counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GlobalCounters(pub [u64; Counter::ALL.len()]);

impl GlobalCounters {
    /// The value of one counter.
    pub fn get(&self, c: Counter) -> u64 {
        self.0[c as usize]
    }
}
