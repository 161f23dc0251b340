//! User-space flow state: the cumulative per-flow table fed by the map reader, naming flow
//! ends, and grouping flows into series under the cardinality budget.
//!
//! Sits between `ebpf` (which hands it kernel map contents) and `metrics` (which fills the
//! frame's families over its series). Touches no kernel object itself, so it is unit-tested
//! without root.

mod attrs;
pub mod conns;
mod extras;
mod labels;
mod series;
mod snapshot;
mod table;

pub use attrs::{Ends, Lookups, ends, flow_labels, labels, server_port};
pub use extras::{Drops, FlowExtras, IcmpErrors};
pub use labels::{Attrs, Labels, MEMOS};
pub use series::{Budget, Budgets, Named, OVERFLOW, SeriesSet, SeriesSets};
pub use snapshot::{FlowView, GlobalCounters, Reading, Transport, flows_of};
pub use table::{CycleStats, FlowTable, KernelFlow};
