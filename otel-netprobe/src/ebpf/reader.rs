//! The map reader: one cycle reads the whole flow table with batched lookups, moves idle
//! entries out of the kernel (each with its final value, so no packet is lost), expires
//! forgotten flows, sums the per-CPU counters and hands the aggregator a [`Reading`].

use std::{
    os::fd::AsFd,
    sync::Arc,
    time::{Duration, Instant},
};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError},
};
use netprobe_ebpf::{Counter, FlowKey, FlowKey4, FlowStats};

use super::{
    sys::{self, BatchReader, SysError, TypedMap},
    tables::OtherTables,
};
use crate::{
    flow::{FlowTable, GlobalCounters, Reading, flows_of},
    telemetry::{
        Count, Health, Telemetry,
        events::{ConnsEvicted, Event, FlowsExpired, FlowsMovedOut, ReadCompleted, ReadFailed},
    },
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

/// Expiry settings of the reader.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Idle time after which a flow leaves the kernel table.
    pub kernel_idle: Duration,
    /// Idle time after which a flow is forgotten.
    pub idle: Duration,
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
        fn handle<K: Pod>(data: &MapData) -> Result<HashMap<MapData, K, FlowStats>, SysError> {
            let aya = |e: MapError| SysError::Aya(Box::new(e));
            let fd = data.fd().as_fd().try_clone_to_owned();
            let fd = fd.map_err(|e| aya(MapError::IoError(e)))?;
            let map = Map::from_map_data(MapData::from_fd(fd).map_err(aya)?).map_err(aya)?;
            HashMap::try_from(map).map_err(aya)
        }
        Ok(Self {
            v4: handle(&maps.flows4)?,
            v6: handle(&maps.flows6)?,
        })
    }
}

/// Owns the maps and the cumulative flow table.
pub struct Reader {
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
    table: FlowTable,
    /// Connections, drops and ICMP errors (`None`: tests of the flow tables alone).
    other: Option<OtherTables>,
    timeouts: Timeouts,
    health: Health,
    telemetry: Arc<Telemetry>,
}

impl Reader {
    /// A reader over the production maps (see [`super::take_maps`]); `capacity` is both flow
    /// tables' together; what it does is counted in `telemetry`.
    pub fn new(
        maps: super::Maps,
        capacity: u64,
        timeouts: Timeouts,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, SysError> {
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
            table: FlowTable::new(),
            other: None,
            timeouts,
            health: Health {
                flow_table_capacity: capacity,
                ..Health::default()
            },
            telemetry,
        })
    }

    /// Reads the connection, drop and ICMP-error tables too, from the next cycle.
    #[must_use]
    pub fn with_other_tables(mut self, other: OtherTables) -> Self {
        self.other = Some(other);
        self
    }

    /// Records what the running kernel offers (`(feature, present)`), for the agent's
    /// metrics; the reader adds its own (`lookup_and_delete`).
    pub fn set_kernel_features(&mut self, features: &[(&'static str, bool)]) {
        self.health.kernel = super::kernel::release();
        self.health.features = features.to_vec();
        self.health.features.push((
            "lookup_and_delete",
            self.eviction == Eviction::LookupAndDelete,
        ));
        self.health.features.sort_unstable();
    }

    /// How idle entries leave the kernel table on this kernel.
    pub fn eviction(&self) -> Eviction {
        self.eviction
    }

    /// Changes the expiry settings (they apply from the next cycle).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// One read cycle; returns what it found. On error the failure is counted and the
    /// previous state is kept.
    pub fn cycle(&mut self) -> Reading {
        let started = Instant::now();
        match self.read() {
            Ok(()) => ReadCompleted.emit(&self.telemetry),
            Err(e) => ReadFailed { error: &e }.emit(&self.telemetry),
        }
        let t = &self.telemetry;
        self.health.read_cycles_total = t.get(Count::ReadCycles);
        self.health.kernel_evictions_total = t.get(Count::MovedOut);
        self.health.flows_expired_total = t.get(Count::Expired);
        self.health.last_read_seconds = started.elapsed().as_secs_f64();
        self.health.flows_tracked = self.table.len() as u64;
        Reading {
            flows: flows_of(&self.table),
            counters: self.read_counters(),
            health: self.health.clone(),
        }
    }

    fn read(&mut self) -> Result<(), SysError> {
        let (fd4, fd6) = (self.maps.flows4.fd().as_fd(), self.maps.flows6.fd().as_fd());
        let now = coarse_now_ns();
        let kernel_idle = self.timeouts.kernel_idle.as_nanos() as u64;
        let v4 = self.batch4.read_all(fd4)?;
        let v6 = self.batch6.read_all(fd6)?;
        self.health.flow_table_entries = (v4.keys.len() + v6.keys.len()) as u64;
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
        let mut changed_at = Vec::with_capacity(v4.keys.len() + v6.keys.len());
        let evict = self
            .table
            .ingest(kernel, now, kernel_idle, &mut changed_at)
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
            self.table.fold_evicted(key, last, now);
        }
        self.health.flow_table_entries -= evict.len() as u64;
        FlowsMovedOut {
            count: evict.len() as u64,
        }
        .emit(&self.telemetry);
        if let Some(other) = &mut self.other {
            let mono = monotonic_now_ns();
            let figures = other.read(
                &mut self.table,
                now,
                mono,
                self.timeouts.kernel_idle,
                self.eviction,
            )?;
            ConnsEvicted {
                count: figures.conns_evicted,
            }
            .emit(&self.telemetry);
            self.health.tables = figures;
        }
        let expired = self.table.expire(now, self.timeouts.idle.as_nanos() as u64);
        FlowsExpired {
            count: expired as u64,
        }
        .emit(&self.telemetry);
        if let (Some(a), Some(b)) = (sys::map_memlock_bytes(fd4), sys::map_memlock_bytes(fd6)) {
            self.health.flow_table_memory_bytes = a + b;
        }
        Ok(())
    }

    fn read_counters(&self) -> GlobalCounters {
        let mut g = GlobalCounters::default();
        for c in Counter::ALL {
            if let Ok(v) = self.maps.counters.get(&(c as u32), 0) {
                g.0[c as usize] = v.iter().sum();
            }
        }
        g
    }
}
