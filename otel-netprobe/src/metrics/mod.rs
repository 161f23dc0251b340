//! The metric modules, one per metric (or a few that belong together): each declares its
//! catalogue entries ([`catalogue::metric!`]: name, kind, unit, attributes, help) next to the
//! code that fills them, and adds its families to each cycle's frame from the [`Cycle`].
//! [`MODULES`] lists them in output order; the catalogue ([`catalogue::all`]), the docs and the
//! dashboards' check are built from that list. Adding a metric is adding a module and its line
//! there (README: "Adding a metric").
//!
//! Sits above `flow` (whose named flows and series it reads) and below the frame, which the
//! aggregator (`crate::frame`) assembles from these modules' families.

pub mod agent;
pub mod budget;
pub mod catalogue;
pub mod conns;
pub mod coverage;
pub mod dns;
pub mod drops;
mod family;
pub mod flows;
pub mod http;
pub mod icmp;
pub mod interfaces;
pub mod k8s;
pub mod kernel;
mod series;
pub mod summary;
pub mod tables;

pub use catalogue::{Kind, Metric};
pub use family::{Family, Histogram, Point, Value};
pub use series::SeriesFamilies;

use aya::Ebpf;

use crate::{
    ebpf::{
        EbpfError,
        counts::{CounterSource, KernelFacts},
        reader::GlobalCounters,
    },
    flow::{Health, Named, SeriesSets},
};

/// What one read cycle hands the metric modules.
pub struct Cycle<'a> {
    /// The flows, their ends named (when anything needs the names).
    pub named: &'a Named<'a>,
    /// The flows grouped into series under each budget.
    pub series: &'a SeriesSets,
    /// The kernel's global counters.
    pub counters: &'a GlobalCounters,
    /// The reader's figures, with the interfaces and the Kubernetes index.
    pub health: &'a Health,
}

/// A metric module.
pub struct Module {
    /// Its catalogue entries.
    pub metrics: &'static [&'static Metric],
    /// Adds its families for one cycle (`None`: the agent's event counters, which renderers
    /// append with their live values).
    pub families: Option<fn(&Cycle<'_>, &mut Vec<Family>)>,
    /// Opens its kernel maps of per-flow counts, if it has any ([`crate::ebpf::counts`]): the
    /// reader reads each every cycle and files its counts under their flows, where the module's
    /// families find them by the map's name ([`crate::flow::FlowView::counts`]).
    pub counts: &'static [OpenCounts],
}

/// Opens a module's per-flow counter map in the loaded object.
pub type OpenCounts = fn(&mut Ebpf, &KernelFacts) -> Result<Box<dyn CounterSource>, EbpfError>;

/// Every metric module, in output order (flow metrics first).
pub const MODULES: &[Module] = &[
    flows::MODULE,
    conns::MODULE,
    drops::MODULE,
    icmp::MODULE,
    dns::MODULE,
    tables::MODULE,
    kernel::MODULE,
    interfaces::MODULE,
    coverage::MODULE,
    budget::MODULE,
    k8s::MODULE,
    agent::MODULE,
    http::MODULE,
];

/// Every module's per-flow counter map, opened for the reader.
pub fn kernel_counts(
    ebpf: &mut Ebpf,
    kernel: &KernelFacts,
) -> Result<Vec<Box<dyn CounterSource>>, EbpfError> {
    MODULES
        .iter()
        .flat_map(|m| m.counts)
        .map(|open| open(ebpf, kernel))
        .collect()
}

/// The families of one cycle, module by module.
pub fn families(c: &Cycle<'_>) -> Vec<Family> {
    let mut out = Vec::with_capacity(48);
    for fill in MODULES.iter().filter_map(|m| m.families) {
        fill(c, &mut out);
    }
    out
}
