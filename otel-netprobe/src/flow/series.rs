//! Aggregation of flows into series of a reduced attribute set, under a cardinality budget.
//!
//! Both exporters render the same [`SeriesSets`] of a snapshot, computed once, on first use.
//! The budget is sticky, as OpenTelemetry's cardinality limit is: an attribute set admitted
//! once keeps its series while its flows live; new sets are admitted (busiest first) while
//! fewer than `max_series` exist, and the rest are added up in one series marked
//! `otel.metric.overflow=true`. A set whose flows are all gone stops being reported.

use std::sync::Mutex;

use netprobe_ebpf::SIZE_BUCKETS;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{
    FlowView, Lookups,
    attrs::{FlowAttr, Plan, SeriesKey},
};
use crate::k8s::naming::{Naming, Peer};

/// Attribute set of one series, in label order.
pub type Labels = Vec<(&'static str, String)>;

/// The attribute marking the overflow series.
pub const OVERFLOW: &str = "otel.metric.overflow";

/// Aggregated counts of one series.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeriesCounts {
    /// Packets.
    pub packets: u64,
    /// IP bytes.
    pub bytes: u64,
    /// Packets per size bucket.
    pub buckets: [u64; SIZE_BUCKETS],
}

impl SeriesCounts {
    fn add(&mut self, f: &FlowView) {
        self.packets += f.packets;
        self.bytes += f.bytes;
        for (t, b) in self.buckets.iter_mut().zip(f.size_buckets) {
            *t += b;
        }
    }

    fn merge(&mut self, o: &SeriesCounts) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        for (t, b) in self.buckets.iter_mut().zip(o.buckets) {
            *t += b;
        }
    }
}

/// The series of one metric family.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesSet {
    /// Series in a stable order, the overflow series (if any) last.
    pub series: Vec<(Labels, SeriesCounts)>,
    /// Flows counted in the overflow series.
    pub overflow_flows: u64,
    /// Flows left out by the namespace filter.
    pub filtered_flows: u64,
    /// How the flows' ends were named (zero when the attributes name no end).
    pub lookups: Lookups,
}

/// One budget: an attribute set and a series cap, with the admitted sets.
#[derive(Debug)]
pub struct Budget {
    plan: Plan,
    max_series: usize,
    admitted: FxHashSet<SeriesKey>,
}

impl Budget {
    /// A budget of at most `max_series` series (plus the overflow series) over `attrs`.
    pub fn new(attrs: Vec<FlowAttr>, max_series: usize) -> Self {
        Self {
            plan: Plan::new(attrs),
            max_series,
            admitted: FxHashSet::default(),
        }
    }

    /// Aggregates `flows`, with ends named by `naming`, admitting new attribute sets while the
    /// budget allows.
    pub fn build(&mut self, flows: &[FlowView], naming: &Naming) -> SeriesSet {
        let filter = naming.rules.filters();
        let lookup = filter || self.plan.needs_peers();
        let mut lookups = Lookups::default();
        let mut filtered_flows = 0;
        // Per attribute set: its counts and how many flows it adds up.
        let mut agg: FxHashMap<SeriesKey, (SeriesCounts, u64)> = FxHashMap::default();
        for f in flows {
            let ends = lookup.then(|| super::attrs::ends(f, naming));
            if let Some(super::Ends { src, dst, .. }) = ends {
                for p in [src, dst] {
                    match p {
                        Peer::External(_) => lookups.external += 1,
                        Peer::Unknown => lookups.unknown += 1,
                        _ => lookups.found += 1,
                    }
                }
                if filter && !naming.keep(src, dst) {
                    filtered_flows += 1;
                    continue;
                }
            }
            let e = agg.entry(self.plan.key(f, naming, ends)).or_default();
            e.0.add(f);
            e.1 += 1;
        }
        self.admitted.retain(|k| agg.contains_key(k));
        let mut candidates: Vec<(&SeriesKey, &SeriesCounts)> = agg
            .iter()
            .filter(|(k, _)| !self.admitted.contains(*k))
            .map(|(k, (c, _))| (k, c))
            .collect();
        let room = self.max_series.saturating_sub(self.admitted.len());
        if candidates.len() > room {
            // Busiest first; ties broken by identity, so the choice is deterministic.
            candidates
                .sort_unstable_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then_with(|| a.0.cmp(b.0)));
        }
        let newcomers: Vec<SeriesKey> = candidates
            .iter()
            .take(room)
            .map(|(k, _)| (*k).clone())
            .collect();
        self.admitted.extend(newcomers);
        let mut kept: Vec<(SeriesKey, SeriesCounts)> = Vec::with_capacity(agg.len());
        let mut overflow = SeriesCounts::default();
        let mut overflow_flows = 0;
        for (k, (c, n)) in agg {
            if self.admitted.contains(&k) {
                kept.push((k, c));
            } else {
                overflow.merge(&c);
                overflow_flows += n;
            }
        }
        kept.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let mut out = SeriesSet {
            series: kept
                .into_iter()
                .map(|(k, c)| (self.plan.labels(&k), c))
                .collect(),
            overflow_flows,
            filtered_flows,
            lookups,
        };
        if overflow_flows > 0 {
            out.series
                .push((vec![(OVERFLOW, "true".to_owned())], overflow));
        }
        out
    }
}

/// The budgets of the flow metrics: packets and bytes share one; the size histogram (ten
/// series per set) has its own.
#[derive(Debug)]
pub struct Budgets {
    /// `netprobe.flow.packets` and `netprobe.flow.bytes`.
    pub flows: Mutex<Budget>,
    /// `netprobe.packet.size`; `None`: the same attributes and cap as the flows (the default),
    /// so one aggregation serves all three metrics.
    pub sizes: Option<Mutex<Budget>>,
}

impl Default for Budgets {
    /// The standalone attributes, 2000 series.
    fn default() -> Self {
        Self {
            flows: Mutex::new(Budget::new(FlowAttr::parse_all(FlowAttr::STANDALONE), 2000)),
            sizes: None,
        }
    }
}

/// The series sets of one snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SeriesSets {
    /// For `netprobe.flow.packets` and `netprobe.flow.bytes`.
    pub flows: SeriesSet,
    /// For `netprobe.packet.size`.
    pub sizes: SeriesSet,
}

impl Budgets {
    /// Builds both sets for `flows`, with ends named by `naming`.
    pub fn build(&self, flows: &[FlowView], naming: &Naming) -> SeriesSets {
        let lock = |m: &Mutex<Budget>| {
            m.lock()
                .map(|mut b| b.build(flows, naming))
                .unwrap_or_default()
        };
        let flow_set = lock(&self.flows);
        let sizes = self.sizes.as_ref().map_or_else(|| flow_set.clone(), lock);
        SeriesSets {
            flows: flow_set,
            sizes,
        }
    }
}

#[cfg(test)]
mod tests {
    use netprobe_ebpf::FlowKey;

    use super::*;
    use crate::export::names::attr;

    fn flow(src: u8, dport: u16, bytes: u64) -> FlowView {
        let key = FlowKey {
            src_addr: [u32::from_ne_bytes([10, 0, 0, src]), 0, 0, 0],
            dst_addr: [u32::from_ne_bytes([10, 0, 0, 100]), 0, 0, 0],
            src_port: 40000u16.to_be(),
            dst_port: dport.to_be(),
            protocol: 17,
            ip_version: 4,
            pad: [0; 2],
        };
        let mut b = [0; SIZE_BUCKETS];
        b[5] = 1;
        FlowView::new(&key, bytes, b, 0, (0, 0))
    }

    #[test]
    fn over_budget_goes_to_one_overflow_series_and_admission_is_sticky() {
        let mut b = Budget::new(FlowAttr::parse_all(FlowAttr::STANDALONE), 2);
        let flows = vec![
            flow(1, 53, 100),
            flow(2, 53, 300),
            flow(3, 53, 200),
            flow(4, 53, 50),
        ];
        let s = b.build(&flows, &Naming::standalone());
        assert_eq!(s.series.len(), 3, "{s:?}");
        // The two busiest sets got series; the other two add up in the overflow series.
        let overflow = s.series.iter().find(|(l, _)| l[0].0 == OVERFLOW).unwrap();
        assert_eq!((overflow.1.packets, overflow.1.bytes), (2, 150));
        assert_eq!(s.overflow_flows, 2);
        // A newcomer busier than all keeps to overflow: admitted sets stay.
        let mut more = flows.clone();
        more.push(flow(5, 53, 10_000));
        let s = b.build(&more, &Naming::standalone());
        let overflow = s.series.iter().find(|(l, _)| l[0].0 == OVERFLOW).unwrap();
        assert_eq!(overflow.1.bytes, 10_150);
        // When an admitted set's flows are gone, its place goes to the busiest newcomer.
        let fewer: Vec<FlowView> = more.into_iter().filter(|f| f.bytes != 300).collect();
        let s = b.build(&fewer, &Naming::standalone());
        assert!(
            s.series
                .iter()
                .any(|(l, c)| l[0].1 == "10.0.0.5" && c.bytes == 10_000)
        );
    }

    #[test]
    fn fewer_attributes_fewer_series() {
        let mut b = Budget::new(
            vec![FlowAttr::DestinationAddress, FlowAttr::ServerPort],
            100,
        );
        let s = b.build(
            &[flow(1, 53, 100), flow(2, 53, 300), flow(3, 80, 200)],
            &Naming::standalone(),
        );
        assert_eq!(s.series.len(), 2);
        assert_eq!(
            s.series[0].0,
            vec![
                (attr::DESTINATION_ADDRESS, "10.0.0.100".into()),
                (attr::DESTINATION_PORT, "53".into())
            ]
        );
        assert_eq!(s.series[0].1.bytes, 400);
        assert_eq!(s.overflow_flows, 0);
    }
}
