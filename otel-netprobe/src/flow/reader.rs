//! The read cycle, on the reader's thread: the flow tables read into the cumulative
//! [`FlowTable`] (idle entries moved out of the kernel with their final values), the
//! connection table through its tracker, every registered per-flow counter map
//! ([`crate::ebpf::counts`]) into its flows' extras, idle flows forgotten, and the aggregator
//! handed a [`Reading`]: the flows decoded, the kernel's global counters and the reader's
//! figures. The kernel side of each step is `ebpf`'s; what the counts mean is kept here.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{
    FlowTable, FlowView,
    conns::{ConnRead, ConnTable},
    flows_of,
};
use crate::{
    ebpf::{
        self,
        attach::InterfaceState,
        counts::CounterSource,
        coverage::{Coverage, CoverageErrors, InterfaceCoverage},
        pin::carry::{CarryStore, Saved},
        reader::{Eviction, FlowMaps, GlobalCounters, coarse_now_ns, monotonic_now_ns},
        sys::SysError,
    },
    k8s::K8sHealth,
    telemetry::{
        Count, Telemetry,
        events::{
            CarryFull, ConnsEvicted, Event, FlowsExpired, FlowsMovedOut, ReadCompleted, ReadFailed,
        },
    },
};

/// Expiry settings of the reader.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// Idle time after which a flow leaves the kernel table.
    pub kernel_idle: Duration,
    /// Idle time after which a flow is forgotten.
    pub idle: Duration,
}

/// What the reader saw in its latest cycle, copied into every snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// Kernel flow table capacity.
    pub flow_table_capacity: u64,
    /// Entries in the kernel flow table at the last read.
    pub flow_table_entries: u64,
    /// Kernel memory of the flow table (the kernel's own accounting), bytes.
    pub flow_table_memory_bytes: u64,
    /// Flows tracked in user space.
    pub flows_tracked: u64,
    /// Read cycles completed, this snapshot's included (the [`Count::ReadCycles`] counter as
    /// of this cycle; likewise the next two).
    pub read_cycles_total: u64,
    /// Kernel entries moved out because idle (counts kept).
    pub kernel_evictions_total: u64,
    /// Flows forgotten because idle.
    pub flows_expired_total: u64,
    /// Duration of the last read cycle, seconds.
    pub last_read_seconds: f64,
    /// Entries in the kernel connection table at the last read.
    pub conn_table_entries: u64,
    /// Its capacity.
    pub conn_table_capacity: u64,
    /// Interfaces currently attached (the aggregator adds them).
    pub interfaces: Vec<InterfaceState>,
    /// The Kubernetes watchers' figures (`None`: standalone; the aggregator adds them).
    pub k8s: Option<K8sHealth>,
    /// What the running kernel offers the agent, as (feature, present).
    pub features: Vec<(&'static str, bool)>,
    /// The running kernel's release.
    pub kernel: String,
    /// Each attached interface's coverage (what our program saw against its own counters).
    pub coverage: Vec<InterfaceCoverage>,
    /// Errors of the coverage measurement.
    pub coverage_errors: CoverageErrors,
}

/// What one read cycle found, before naming and aggregation.
#[derive(Clone, Debug, Default)]
pub struct Reading {
    /// Every tracked flow with its cumulative counts.
    pub flows: Vec<FlowView>,
    /// The kernel's global counters.
    pub counters: GlobalCounters,
    /// The reader's figures (the aggregator adds the interfaces and Kubernetes).
    pub health: Health,
}

/// Owns the kernel's tables (through `ebpf`) and the cumulative flow table.
pub struct Reader {
    flows: FlowMaps,
    table: FlowTable,
    /// Connections (`None`: tests of the flow tables alone).
    conns: Option<ConnTable>,
    /// The metric modules' per-flow counter maps.
    counts: Vec<Box<dyn CounterSource>>,
    /// Per-interface coverage (`None`: not measured).
    coverage: Option<Coverage>,
    /// The pinned store of what the flow table carries (`None`: unpinned).
    carry: Option<CarryStore<super::Totals>>,
    timeouts: Timeouts,
    health: Health,
    telemetry: Arc<Telemetry>,
}

impl Reader {
    /// A reader over the production maps (see [`ebpf::take_maps`]); `capacity` is both flow
    /// tables' together; what it does is counted in `telemetry`.
    pub fn new(
        maps: ebpf::Maps,
        capacity: u64,
        timeouts: Timeouts,
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, SysError> {
        Ok(Self {
            flows: FlowMaps::new(maps)?,
            table: FlowTable::new(),
            conns: None,
            counts: Vec::new(),
            coverage: None,
            carry: None,
            timeouts,
            health: Health {
                flow_table_capacity: capacity,
                ..Health::default()
            },
            telemetry,
        })
    }

    /// Reads the connection table too, from the next cycle.
    #[must_use]
    pub fn with_conns(mut self, conns: ConnTable) -> Self {
        self.health.conn_table_capacity = u64::from(conns.capacity());
        self.conns = Some(conns);
        self
    }

    /// Reads these per-flow counter maps too, from the next cycle.
    #[must_use]
    pub fn with_counts(mut self, counts: Vec<Box<dyn CounterSource>>) -> Self {
        self.counts = counts;
        self
    }

    /// Keeps the flow table's carried counts in `store` from the next cycle, after taking in
    /// what it holds (a restart continues the flows it carried; see [`CarryStore`]).
    pub fn with_carry(mut self, store: CarryStore<super::Totals>) -> Result<Self, SysError> {
        let carried = store.load()?;
        if !carried.is_empty() {
            tracing::info!(
                flows = carried.len(),
                "continuing the flows the previous agent carried"
            );
        }
        self.table.restore_carried(carried, coarse_now_ns());
        self.carry = Some(store);
        Ok(self)
    }

    /// Measures each interface's coverage too, from the next cycle.
    #[must_use]
    pub fn with_coverage(mut self, coverage: Coverage) -> Self {
        self.coverage = Some(coverage);
        self
    }

    /// Records what the running kernel offers (`(feature, present)`), for the agent's
    /// metrics; the reader adds its own (`lookup_and_delete`).
    pub fn set_kernel_features(&mut self, features: &[(&'static str, bool)]) {
        self.health.kernel = ebpf::kernel::release();
        self.health.features = features.to_vec();
        self.health.features.push((
            "lookup_and_delete",
            self.eviction() == Eviction::LookupAndDelete,
        ));
        self.health.features.sort_unstable();
    }

    /// How idle entries leave the kernel tables on this kernel.
    pub fn eviction(&self) -> Eviction {
        self.flows.eviction()
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
        if let Some(c) = &mut self.coverage {
            (self.health.coverage, self.health.coverage_errors) = c.read();
        }
        Reading {
            flows: flows_of(&self.table),
            counters: self.flows.counters(),
            health: self.health.clone(),
        }
    }

    fn read(&mut self) -> Result<(), SysError> {
        let now = coarse_now_ns();
        let kernel_idle = self.timeouts.kernel_idle.as_nanos() as u64;
        let read = self.flows.read(now, kernel_idle, &mut self.table)?;
        self.health.flow_table_entries = read.entries;
        FlowsMovedOut {
            count: read.moved_out,
        }
        .emit(&self.telemetry);
        if let Some(conns) = &mut self.conns {
            let ConnRead { entries, evicted } =
                conns.read(&mut self.table, now, monotonic_now_ns())?;
            ConnsEvicted { count: evicted }.emit(&self.telemetry);
            self.health.conn_table_entries = entries;
        }
        let eviction = self.flows.eviction();
        for source in &mut self.counts {
            let (table, map) = (&mut self.table, source.map());
            source.read(now, kernel_idle, eviction, &mut |flow, attrs, delta| {
                table
                    .extras_mut(flow, now, true)
                    .add_counts(map, attrs, delta);
            })?;
        }
        let expired = self.table.expire(now, self.timeouts.idle.as_nanos() as u64);
        FlowsExpired {
            count: expired as u64,
        }
        .emit(&self.telemetry);
        if let Some(store) = &mut self.carry {
            let written = self.table.write_carried(|key, totals| match totals {
                Some(t) => Ok(store.save(key, t)? == Saved::Yes),
                None => store.forget(key).map(|()| true),
            })?;
            CarryFull {
                count: written.full,
            }
            .emit(&self.telemetry);
        }
        if let Some(bytes) = self.flows.memory_bytes() {
            self.health.flow_table_memory_bytes = bytes;
        }
        Ok(())
    }
}
