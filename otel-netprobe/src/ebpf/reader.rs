//! The map reader: one cycle reads the whole flow table with batched lookups, moves idle
//! entries out of the kernel (each with its final value, so no packet is lost), expires
//! forgotten flows, sums the per-CPU counters and produces a [`Snapshot`].

use std::{
    os::fd::AsFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use netprobe_ebpf::{Counter, FlowKey, FlowKey4, FlowStats};

use super::sys::{self, BatchReader, Plain, SysError, TypedMap};
use crate::{
    export::otlp::ExportStats,
    flow::{Budgets, FlowTable, GlobalCounters, Snapshot},
    k8s::naming::{Naming, NamingRules},
    telemetry::{Health, InterfaceState},
};

// SAFETY: FlowKey is #[repr(C)], Copy, all integers with explicit padding: any bytes are valid.
unsafe impl Plain for FlowKey {}
// SAFETY: as above for FlowKey4.
unsafe impl Plain for FlowKey4 {}
// SAFETY: as above for FlowStats.
unsafe impl Plain for FlowStats {}

/// Reads `CLOCK_MONOTONIC_COARSE`, the clock the programs stamp flows with.
pub fn coarse_now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &raw mut ts) };
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

    /// Takes `key`'s final value out of the kernel table (`None`: already gone).
    fn take<K: Plain>(
        self,
        map: &TypedMap<'_, K, FlowStats>,
        key: &K,
    ) -> Result<Option<FlowStats>, SysError> {
        match self {
            Self::LookupAndDelete => map.lookup_and_delete(key),
            Self::LookupThenDelete => {
                let last = map.lookup(key)?.and_then(|v| v.first().copied());
                map.delete_batch(std::slice::from_ref(key))?;
                Ok(last)
            }
        }
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
    table: FlowTable,
    cpus: usize,
    timeouts: Timeouts,
    health: Health,
    interfaces: Arc<Mutex<Vec<InterfaceState>>>,
    attach_errors: Arc<AtomicU64>,
    export: Arc<ExportStats>,
    budgets: Arc<Budgets>,
    rules: Arc<NamingRules>,
    k8s: Option<Arc<crate::k8s::Shared>>,
}

impl Reader {
    /// A reader over the production maps (see [`super::take_maps`]); `capacity` is both flow
    /// tables' together.
    pub fn new(
        maps: super::Maps,
        capacity: u64,
        timeouts: Timeouts,
        interfaces: Arc<Mutex<Vec<InterfaceState>>>,
        attach_errors: Arc<AtomicU64>,
    ) -> Result<Self, SysError> {
        let cpus = sys::possible_cpus()?;
        let eviction = Eviction::probe(&TypedMap::new(maps.flows4.fd().as_fd())?);
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
            table: FlowTable::new(),
            cpus,
            timeouts,
            health: Health {
                flow_table_capacity: capacity,
                ..Health::default()
            },
            interfaces,
            attach_errors,
            export: Arc::default(),
            budgets: Arc::default(),
            rules: Arc::new(NamingRules::standalone()),
            k8s: None,
        })
    }

    /// How idle entries leave the kernel table on this kernel.
    pub fn eviction(&self) -> Eviction {
        self.eviction
    }

    /// Shares the OTLP exporter's figures, so snapshots report them.
    pub fn set_export_stats(&mut self, stats: Arc<ExportStats>) {
        self.export = stats;
    }

    /// Sets the cardinality budgets the snapshots' series are built under.
    pub fn set_budgets(&mut self, budgets: Arc<Budgets>) {
        self.budgets = budgets;
    }

    /// Sets how flow ends are named: the rules, and the Kubernetes watchers' shared state
    /// (`None`: standalone).
    pub fn set_naming(&mut self, rules: Arc<NamingRules>, k8s: Option<Arc<crate::k8s::Shared>>) {
        self.rules = rules;
        self.k8s = k8s;
    }

    /// Changes the expiry settings (they apply from the next cycle).
    pub fn set_timeouts(&mut self, timeouts: Timeouts) {
        self.timeouts = timeouts;
    }

    /// One read cycle; returns the new snapshot. On error the health counters say so and the
    /// previous state is kept.
    pub fn cycle(&mut self) -> Snapshot {
        let started = Instant::now();
        if let Err(e) = self.read() {
            self.health.read_errors_total += 1;
            tracing::warn!(error = %e, "reading the flow table failed");
        } else {
            self.health.read_cycles_total += 1;
        }
        self.health.last_read_seconds = started.elapsed().as_secs_f64();
        self.health.flows_tracked = self.table.len() as u64;
        self.health.attach_errors_total = self.attach_errors.load(Ordering::Relaxed);
        self.health.export_ok_total = self.export.ok.load(Ordering::Relaxed);
        self.health.export_failed_total = self.export.failed.load(Ordering::Relaxed);
        self.health.export_dropped_points_total =
            self.export.dropped_points.load(Ordering::Relaxed);
        if let Ok(i) = self.interfaces.lock() {
            self.health.interfaces.clone_from(&i);
        }
        // One index for the snapshot's names and its figures.
        let index = self.k8s.as_ref().map(|k| k.index()).unwrap_or_default();
        self.health.k8s = self.k8s.as_ref().map(|k| k.health_of(&index));
        let naming = Naming {
            index,
            rules: Arc::clone(&self.rules),
        };
        Snapshot::of(
            &self.table,
            self.read_counters(),
            self.health.clone(),
            Arc::clone(&self.budgets),
            naming,
        )
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
            let last = if key.ip_version == 4 {
                self.eviction.take(&map4, &FlowKey4::narrow(key))?
            } else {
                self.eviction.take(&map6, key)?
            };
            self.table.fold_evicted(key, last, now);
        }
        self.health.flow_table_entries -= evict.len() as u64;
        self.health.kernel_evictions_total += evict.len() as u64;
        let expired = self.table.expire(now, self.timeouts.idle.as_nanos() as u64);
        self.health.flows_expired_total += expired as u64;
        if let (Some(a), Some(b)) = (sys::map_memlock_bytes(fd4), sys::map_memlock_bytes(fd6)) {
            self.health.flow_table_memory_bytes = a + b;
        }
        Ok(())
    }

    fn read_counters(&self) -> GlobalCounters {
        let mut g = GlobalCounters::default();
        let fd = self.maps.counters.fd().as_fd();
        for c in Counter::ALL {
            if let Ok(v) = sys::lookup_percpu_array_u64(fd, c as u32, self.cpus) {
                g.0[c as usize] = v.iter().sum();
            }
        }
        g
    }
}
