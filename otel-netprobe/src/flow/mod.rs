//! User-space flow state: the cumulative per-flow table fed by the map reader, and the
//! immutable snapshot the exporters read.
//!
//! Sits between `ebpf` (which hands it kernel map contents) and `export` (which only ever sees
//! [`Snapshot`]s). Touches no kernel object itself, so it is unit-tested without root.

mod attrs;
pub mod conns;
mod series;
mod snapshot;
mod table;

pub use attrs::{EndPart, Ends, FlowAttr, Lookups, Side, ends, labels, server_port};
pub use series::{Budget, Budgets, Labels, OVERFLOW, SeriesCounts, SeriesSet, SeriesSets};
pub use snapshot::{FlowView, GlobalCounters, Snapshot, Transport};
pub use table::{CycleStats, FlowTable, KernelFlow};
