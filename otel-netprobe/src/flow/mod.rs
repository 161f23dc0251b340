//! User-space flow state: the cumulative per-flow table fed by the map reader, naming flow
//! ends and grouping flows into series under the cardinality budget, and the immutable
//! snapshot the exporters read.
//!
//! Sits between `ebpf` (which hands it kernel map contents) and `metrics` (which builds the
//! frame from its series); exporters only ever see [`Snapshot`]s. Touches no kernel object
//! itself, so it is unit-tested without root.

mod attrs;
pub mod conns;
mod extras;
mod series;
mod snapshot;
mod table;

pub use attrs::{Ends, Lookups, ends, labels, server_port};
pub use extras::{Drops, FlowExtras, IcmpErrors};
pub use series::{Budget, Budgets, Labels, Named, OVERFLOW, SeriesSet, SeriesSets};
pub use snapshot::{FlowView, GlobalCounters, Reading, Snapshot, Transport, flows_of};
pub use table::{CycleStats, FlowTable, KernelFlow};
