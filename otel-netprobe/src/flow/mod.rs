//! User-space flow state: the cumulative per-flow table fed by the map reader, and the
//! immutable snapshot the exporters read.
//!
//! Sits between `ebpf` (which hands it kernel map contents) and `export` (which only ever sees
//! [`Snapshot`]s). Touches no kernel object itself, so it is unit-tested without root.

mod series;
mod snapshot;
mod table;

pub use series::{
    Budget, Budgets, FlowAttr, Labels, OVERFLOW, SeriesCounts, SeriesSet, SeriesSets, labels,
};
pub use snapshot::{FlowView, GlobalCounters, Snapshot, Transport};
pub use table::{CycleStats, FlowTable, KernelFlow};
