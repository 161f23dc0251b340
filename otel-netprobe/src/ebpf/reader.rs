//! The map reader: one cycle reads the whole flow table with batched lookups, moves idle
//! entries out of the kernel (each with its final value, so no packet is lost), expires
//! forgotten flows, sums the per-CPU counters and hands the aggregator a [`Reading`].

use std::{
    os::fd::AsFd,
    sync::Arc,
    time::{Duration, Instant},
};

use netprobe_ebpf::{Counter, FlowKey, FlowKey4, FlowStats};

use super::sys::{self, BatchReader, SysError, TypedMap};
use crate::{
    flow::{FlowTable, GlobalCounters, Reading, flows_of},
    telemetry::{
        Count, Health, Telemetry,
        events::{Event, FlowsExpired, FlowsMovedOut, ReadCompleted, ReadFailed},
    },
};

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

/// Owns the maps and the cumulative flow table.
pub struct Reader {
    maps: super::Maps,
    batch4: BatchReader<FlowKey4, FlowStats>,
    batch6: BatchReader<FlowKey, FlowStats>,
    /// The previous read of each table, in the kernel's order: (key, bytes, first seen).
    prev4: Vec<(FlowKey4, u64, u64)>,
    prev6: Vec<(FlowKey, u64, u64)>,
    table: FlowTable,
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
    ) -> Self {
        Self {
            maps,
            batch4: BatchReader::new(1024),
            batch6: BatchReader::new(1024),
            prev4: Vec::new(),
            prev6: Vec::new(),
            table: FlowTable::new(),
            timeouts,
            health: Health {
                flow_table_capacity: capacity,
                ..Health::default()
            },
            telemetry,
        }
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
        // same bytes, same incarnation) and needs no lookup in the flow table.
        let (prev4, prev6) = (&self.prev4, &self.prev6);
        let kernel = v4
            .keys
            .iter()
            .zip(v4.values.iter())
            .enumerate()
            .map(|(i, (k, s))| {
                (
                    k.widen(),
                    s,
                    prev4.get(i) != Some(&(*k, s.bytes, s.first_seen_ns)),
                )
            })
            .chain(
                v6.keys
                    .iter()
                    .zip(v6.values.iter())
                    .enumerate()
                    .map(|(i, (k, s))| {
                        (*k, s, prev6.get(i) != Some(&(*k, s.bytes, s.first_seen_ns)))
                    }),
            );
        let evict = self.table.ingest(kernel, now, kernel_idle).to_vec();
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
        // Each idle entry leaves the kernel with its final value (lookup-and-delete is atomic
        // for the entry), so a packet that arrives after our read is not lost.
        let (map4, map6) = (
            TypedMap::<FlowKey4, FlowStats>::new(fd4)?,
            TypedMap::<FlowKey, FlowStats>::new(fd6)?,
        );
        for key in &evict {
            let last = if key.ip_version == 4 {
                map4.lookup_and_delete(&FlowKey4::narrow(key))?
            } else {
                map6.lookup_and_delete(key)?
            };
            self.table.fold_evicted(key, last);
        }
        self.health.flow_table_entries -= evict.len() as u64;
        FlowsMovedOut {
            count: evict.len() as u64,
        }
        .emit(&self.telemetry);
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
