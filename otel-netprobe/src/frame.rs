//! The metric frame and the snapshot: what every exporter renders, assembled once per read
//! cycle on the reader's thread by the [`Aggregator`] and never changed afterwards.
//!
//! Each cycle the aggregator names every flow's ends once, groups the flows under the
//! cardinality budgets (`flow`), and has the metric modules (`metrics`) fill the frame: the
//! list of their families, in module order. The frame, the traffic summary and the reader's
//! figures are published together as one immutable [`Snapshot`]; renderers (Prometheus text,
//! OTLP, the summary) walk its families and points and never name a catalogue metric.

use std::{
    sync::{Arc, Mutex},
    time::SystemTime,
};

use crate::{
    ebpf::attach::InterfaceState,
    flow::{Budgets, Health, Named, Reading},
    k8s::naming::{Naming, NamingRules, local_addresses},
    metrics::{self, Cycle, Family, Metric, summary::Summary},
};

/// Everything the exporters render, taken at one instant.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Wall-clock time the frame was taken (the time of its points).
    pub taken_at: SystemTime,
    /// The metric families, flow metrics first.
    pub families: Vec<Family>,
}

impl Frame {
    /// A frame without families.
    pub fn empty() -> Self {
        Self {
            taken_at: SystemTime::now(),
            families: Vec::new(),
        }
    }

    /// The family of `metric`, if the frame has it.
    pub fn family(&self, metric: &Metric) -> Option<&Family> {
        self.families.iter().find(|f| f.metric.otlp == metric.otlp)
    }
}

/// Points in `families` (what one export carries; a histogram is one point).
pub fn point_count<'a>(families: impl IntoIterator<Item = &'a Family>) -> u64 {
    families.into_iter().map(|f| f.points.len() as u64).sum()
}

/// Everything the exporters need, taken at one instant, finished before it is published and
/// never changed afterwards. It holds what the cycle made of the flows (the frame, the
/// summary), not the flows: the cycle's flow list is gone once the snapshot is built.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Wall-clock time the snapshot was taken.
    pub taken_at: SystemTime,
    /// What the reader saw.
    pub health: Health,
    /// The metric families every exporter renders.
    pub frame: Frame,
    /// The traffic summary (`/api/v1/summary`, `otel-netprobe summary`).
    pub summary: Summary,
}

impl Snapshot {
    /// An empty snapshot (before the first read).
    pub fn empty() -> Self {
        let frame = Frame::empty();
        Self {
            taken_at: frame.taken_at,
            health: Health::default(),
            frame,
            summary: Summary::default(),
        }
    }
}

/// Names, budgets and aggregates each cycle's reading into a [`Snapshot`].
pub struct Aggregator {
    budgets: Budgets,
    rules: Arc<NamingRules>,
    k8s: Option<Arc<crate::k8s::Shared>>,
    interfaces: Arc<Mutex<Vec<InterfaceState>>>,
    top_talkers: usize,
    /// Reads this node's own addresses each cycle (`netprobe.origin`); off in
    /// [`Aggregator::standalone`], so tests do not depend on the machine's addresses.
    local_addresses: bool,
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
            local_addresses: true,
        }
    }

    /// Standalone, with the default budgets, no interfaces and no local addresses (tests and
    /// benchmarks).
    pub fn standalone(budgets: Budgets) -> Self {
        Self {
            local_addresses: false,
            ..Self::new(
                budgets,
                Arc::new(NamingRules::standalone()),
                None,
                Arc::default(),
                10,
            )
        }
    }

    /// The finished snapshot of one cycle's reading (which the caller may then drop, or hand
    /// to whoever asked for the flows).
    pub fn publish(&mut self, reading: &Reading) -> Snapshot {
        let Reading {
            flows,
            counters,
            health,
        } = reading;
        let mut health = health.clone();
        if let Ok(i) = self.interfaces.lock() {
            health.interfaces.clone_from(&i);
        }
        // One index for the snapshot's names and its figures.
        let index = self.k8s.as_ref().map(|k| k.index()).unwrap_or_default();
        health.k8s = self.k8s.as_ref().map(|k| k.health_of(&index));
        let naming = Naming {
            index,
            rules: Arc::clone(&self.rules),
            local: Arc::from(if self.local_addresses {
                local_addresses()
            } else {
                Vec::new()
            }),
        };
        let taken_at = SystemTime::now();
        let (families, summary) = {
            // The summary names the namespaces' traffic with Kubernetes.
            let needed = self.budgets.needs_peers() || naming.rules.cluster;
            let named = Named::new(flows, &naming, needed);
            let series = self.budgets.build(&named);
            let cycle = Cycle {
                named: &named,
                series: &series,
                counters,
                health: &health,
            };
            let families = metrics::families(&cycle);
            let summary = Summary::of(&named, counters, &families, self.top_talkers);
            (families, summary)
        };
        Snapshot {
            taken_at,
            health,
            frame: Frame { taken_at, families },
            summary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{metrics::MODULES, telemetry::Telemetry};

    #[test]
    fn the_frame_has_a_family_for_every_entry_and_no_other() {
        let snap = Aggregator::standalone(Budgets::default()).publish(&Reading::default());
        let agent = metrics::agent::families(&Telemetry::default());
        let shown: Vec<&str> = snap
            .frame
            .families
            .iter()
            .chain(&agent)
            .map(|f| f.metric.otlp)
            .collect();
        // Module by module, in order; standalone, the Kubernetes module adds nothing.
        let declared: Vec<&str> = MODULES
            .iter()
            .filter(|m| !std::ptr::eq(m.metrics, metrics::k8s::MODULE.metrics))
            .flat_map(|m| m.metrics.iter().map(|e| e.otlp))
            .collect();
        assert_eq!(shown, declared);
    }
}
