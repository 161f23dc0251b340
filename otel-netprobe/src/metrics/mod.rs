//! The aggregator stage, on the reader's thread: each read cycle it names every flow's ends
//! once, groups the flows under the cardinality budgets, and builds the immutable
//! [`Snapshot`]: the metric [`Frame`] every exporter renders, and the traffic summary.
//!
//! Each module here adds the families of one metric (or a few that belong together) from the
//! cycle's [`Cycle`]; [`MODULES`] lists them in output order. Adding a metric is adding a
//! module and a line in that list (README: "Adding a metric").

mod budget;
mod conns;
mod drops;
mod flows;
mod interfaces;
mod k8s;
mod kernel;
mod tables;

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

pub use flows::SIZE_BOUNDS;

use crate::{
    export::summary::Summary,
    flow::{Budgets, GlobalCounters, Named, Reading, SeriesSets, Snapshot},
    frame::{Family, Frame},
    k8s::naming::{Naming, NamingRules},
    telemetry::{Health, InterfaceState},
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

/// A metric module: adds its families for one cycle.
pub type Module = fn(&Cycle<'_>, &mut Vec<Family>);

/// Every metric module, in output order (flow metrics first).
pub const MODULES: &[Module] = &[
    flows::families,
    conns::families,
    drops::families,
    tables::families,
    kernel::families,
    interfaces::families,
    budget::families,
    k8s::families,
];

/// The frame of one cycle.
pub fn families(c: &Cycle<'_>) -> Vec<Family> {
    let mut out = Vec::with_capacity(48);
    for module in MODULES {
        module(c, &mut out);
    }
    out
}

/// Names, budgets and aggregates each cycle's reading into a [`Snapshot`].
pub struct Aggregator {
    budgets: Budgets,
    rules: Arc<NamingRules>,
    k8s: Option<Arc<crate::k8s::Shared>>,
    interfaces: Arc<Mutex<Vec<InterfaceState>>>,
    top_talkers: usize,
}

impl Aggregator {
    /// An aggregator with these budgets and naming rules; `k8s`: the watchers' state (`None`:
    /// standalone); `interfaces`: the attacher's list; `top_talkers`: for the summary.
    pub fn new(
        budgets: Budgets,
        rules: Arc<NamingRules>,
        k8s: Option<Arc<crate::k8s::Shared>>,
        interfaces: Arc<Mutex<Vec<InterfaceState>>>,
        top_talkers: usize,
    ) -> Self {
        Self {
            budgets,
            rules,
            k8s,
            interfaces,
            top_talkers,
        }
    }

    /// Standalone, with the default budgets and no interfaces (tests and benchmarks).
    pub fn standalone(budgets: Budgets) -> Self {
        Self::new(
            budgets,
            Arc::new(NamingRules::standalone()),
            None,
            Arc::default(),
            10,
        )
    }

    /// The finished snapshot of one cycle's reading.
    pub fn publish(&mut self, reading: Reading) -> Snapshot {
        let Reading {
            flows,
            counters,
            mut health,
        } = reading;
        if let Ok(i) = self.interfaces.lock() {
            health.interfaces.clone_from(&i);
        }
        // One index for the snapshot's names and its figures.
        let index = self.k8s.as_ref().map(|k| k.index()).unwrap_or_default();
        health.k8s = self.k8s.as_ref().map(|k| k.health_of(&index));
        let naming = Naming {
            index,
            rules: Arc::clone(&self.rules),
        };
        let taken_at = SystemTime::now();
        let (families, summary) = {
            // The summary names the namespaces' traffic with Kubernetes.
            let needed = self.budgets.needs_peers() || naming.rules.cluster;
            let named = Named::new(&flows, &naming, needed);
            let series = self.budgets.build(&named);
            let cycle = Cycle {
                named: &named,
                series: &series,
                counters: &counters,
                health: &health,
            };
            let families = families(&cycle);
            let summary = Summary::of(&named, &counters, &families, self.top_talkers);
            (families, summary)
        };
        Snapshot {
            taken_at,
            flows,
            health,
            frame: Frame { taken_at, families },
            summary,
        }
    }
}
