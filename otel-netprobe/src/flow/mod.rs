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
pub mod reader;
mod series;
mod table;
mod view;

pub use attrs::{Ends, Lookups, ends, flow_labels, labels, server_port};
pub use extras::{FlowExtras, KernelCounts};
pub use labels::{Attrs, Labels, MEMOS};
pub use reader::{Health, Reader, Reading, Timeouts};
pub use series::{Budget, Budgets, Named, OVERFLOW, SeriesSet, SeriesSets};
pub use table::{CarryWrite, CycleStats, FlowTable, KernelFlow, Totals};
pub use view::{FlowView, Transport, flows_of};

#[cfg(test)]
pub(crate) use series::tests::flow as udp_flow;
