//! Aggregation of flows into series of a reduced attribute set, under a cardinality budget.
//!
//! One read cycle names every flow's ends once ([`Named`]); each budget then groups the flows
//! into series ([`SeriesSet`]: the series' attributes and, per flow, its series), and the metric
//! modules sum their values over that grouping ([`SeriesSet::counter`],
//! [`SeriesSet::histogram`]), so every flow metric of a budget has the same series.
//!
//! The budget is sticky, as OpenTelemetry's cardinality limit is: an attribute set admitted
//! once keeps its series while its flows live; new sets are admitted (busiest first) while
//! fewer than `max_series` exist, and the rest are added up in one series marked
//! `otel.metric.overflow=true`. A set whose flows are all gone stops being reported.

use rustc_hash::{FxBuildHasher, FxHashMap};

use super::{
    Attrs, Ends, FlowView, Lookups,
    attrs::{Plan, SeriesKey},
};
use crate::{
    config::{FlowAttr, MetricsConfig},
    k8s::naming::{Naming, Peer},
};

/// The attribute marking the overflow series.
pub const OVERFLOW: &str = "otel.metric.overflow";

/// The flows of one cycle with both ends named, once, when anything needs the names (an
/// attribute set or the namespace filter).
pub struct Named<'a> {
    /// The flows.
    pub flows: &'a [FlowView],
    /// How they are named.
    pub naming: &'a Naming,
    /// Per flow: its named ends (`None`: nothing needs them).
    pub ends: Option<Vec<Ends<'a>>>,
    /// Per flow: whether the namespace filter keeps it (`None`: no filter).
    pub kept: Option<Vec<bool>>,
    /// How the ends were named.
    pub lookups: Lookups,
    /// Flows the namespace filter leaves out.
    pub filtered_flows: u64,
}

impl<'a> Named<'a> {
    /// Names the ends of `flows` if `needed` (or the namespace filter asks for it).
    pub fn new(flows: &'a [FlowView], naming: &'a Naming, needed: bool) -> Self {
        let filter = naming.rules.filters();
        let mut named = Self {
            flows,
            naming,
            ends: None,
            kept: None,
            lookups: Lookups::default(),
            filtered_flows: 0,
        };
        if !(needed || filter) {
            return named;
        }
        let ends: Vec<Ends<'a>> = flows.iter().map(|f| super::ends(f, naming)).collect();
        for e in &ends {
            for p in [e.src, e.dst] {
                match p {
                    Peer::External(_) => named.lookups.external += 1,
                    Peer::Unknown => named.lookups.unknown += 1,
                    _ => named.lookups.found += 1,
                }
            }
        }
        if filter {
            let kept: Vec<bool> = ends.iter().map(|e| naming.keep(e.src, e.dst)).collect();
            named.filtered_flows = kept.iter().filter(|k| !**k).count() as u64;
            named.kept = Some(kept);
        }
        named.ends = Some(ends);
        named
    }

    fn kept(&self, i: usize) -> bool {
        self.kept.as_ref().is_none_or(|k| k[i])
    }
}

/// The series of one budget: their attributes, and which series each flow adds to.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesSet {
    /// Attributes of each series in a stable order, the overflow series (if any) last.
    pub series: Vec<Attrs>,
    /// Per flow (in the order of [`Named::flows`]): its series, or [`SeriesSet::LEFT_OUT`].
    pub of_flow: Vec<u32>,
    /// Flows counted in the overflow series.
    pub overflow_flows: u64,
}

impl SeriesSet {
    /// The series of a flow the namespace filter leaves out.
    pub const LEFT_OUT: u32 = u32::MAX;

    /// Per series, the sum of `value` over its flows.
    pub fn sums(&self, flows: &[FlowView], value: impl Fn(&FlowView) -> u64) -> Vec<u64> {
        let mut out = vec![0u64; self.series.len()];
        for (f, &s) in flows.iter().zip(&self.of_flow) {
            if let Some(t) = out.get_mut(s as usize) {
                *t += value(f);
            }
        }
        out
    }
}

/// One budget: an attribute set and a series cap, with the admitted sets.
#[derive(Debug)]
pub struct Budget {
    plan: Plan,
    max_series: usize,
    /// Admitted sets and their attributes, formatted once on admission and kept (with their
    /// renderings) while admitted.
    admitted: FxHashMap<SeriesKey, Attrs>,
    overflow: Attrs,
    /// Attribute sets the previous build grouped: the next build's table is made that large
    /// at once rather than grown from nothing. Only the size is kept, not the table (about
    /// 250 bytes a slot: 16 MiB of resident memory at 40k sets between cycles).
    groups_hint: usize,
}

impl Budget {
    /// A budget of at most `max_series` series (plus the overflow series) over `attrs`.
    pub fn new(attrs: Vec<FlowAttr>, max_series: usize) -> Self {
        Self {
            plan: Plan::new(attrs),
            max_series,
            admitted: FxHashMap::default(),
            overflow: Attrs::new(vec![(OVERFLOW, "true".to_owned())]),
            groups_hint: 0,
        }
    }

    /// Whether the attributes name flow ends (so [`Named`] must look them up).
    pub fn needs_peers(&self) -> bool {
        self.plan.needs_peers()
    }

    /// Groups the flows into series, admitting new attribute sets while the budget allows.
    pub fn build(&mut self, named: &Named<'_>) -> SeriesSet {
        let flows = named.flows;
        // Per attribute set: its group; per group: bytes (to rank newcomers) and flows.
        let mut groups: FxHashMap<SeriesKey, u32> =
            FxHashMap::with_capacity_and_hasher(self.groups_hint, FxBuildHasher);
        let mut totals: Vec<(u64, u64)> = Vec::with_capacity(self.groups_hint);
        let mut group_of = Vec::with_capacity(flows.len());
        for (i, f) in flows.iter().enumerate() {
            if !named.kept(i) {
                group_of.push(SeriesSet::LEFT_OUT);
                continue;
            }
            let ends = named.ends.as_ref().map(|e| e[i]);
            let key = self.plan.key(f, named.naming, ends);
            let next = totals.len() as u32;
            let g = *groups.entry(key).or_insert(next);
            if g == next {
                totals.push((0, 0));
            }
            totals[g as usize].0 += f.bytes;
            totals[g as usize].1 += 1;
            group_of.push(g);
        }
        let attrs_of_group = self.admit(&groups, &totals);
        let mut kept: Vec<(&SeriesKey, u32)> = groups
            .iter()
            .filter(|(_, g)| attrs_of_group[**g as usize].is_some())
            .map(|(k, g)| (k, *g))
            .collect();
        kept.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let overflow = kept.len() as u32;
        let mut series_of_group = vec![overflow; totals.len()];
        let mut series: Vec<Attrs> = Vec::with_capacity(kept.len() + 1);
        for (s, (_, g)) in kept.iter().enumerate() {
            series_of_group[*g as usize] = s as u32;
            series.extend(attrs_of_group[*g as usize].clone());
        }
        let overflow_flows: u64 = series_of_group
            .iter()
            .zip(&totals)
            .filter(|(s, _)| **s == overflow)
            .map(|(_, t)| t.1)
            .sum();
        if overflow_flows > 0 {
            series.push(self.overflow.clone());
        }
        let of_flow = group_of
            .into_iter()
            .map(|g| {
                series_of_group
                    .get(g as usize)
                    .copied()
                    .unwrap_or(SeriesSet::LEFT_OUT)
            })
            .collect();
        drop(kept);
        self.groups_hint = groups.len();
        SeriesSet {
            series,
            of_flow,
            overflow_flows,
        }
    }

    /// Forgets sets whose flows are gone, then admits newcomers, busiest first, while there
    /// is room. Returns each group's attributes (`None`: over the budget).
    fn admit(
        &mut self,
        groups: &FxHashMap<SeriesKey, u32>,
        totals: &[(u64, u64)],
    ) -> Vec<Option<Attrs>> {
        self.admitted.retain(|k, _| groups.contains_key(k));
        let mut attrs: Vec<Option<Attrs>> = vec![None; totals.len()];
        let mut candidates: Vec<(&SeriesKey, u32)> = Vec::new();
        for (k, g) in groups {
            match self.admitted.get(k) {
                Some(a) => attrs[*g as usize] = Some(a.clone()),
                None => candidates.push((k, *g)),
            }
        }
        let room = self.max_series.saturating_sub(self.admitted.len());
        if candidates.len() > room {
            // Busiest first; ties broken by identity, so the choice is deterministic. Only the
            // `room` busiest are needed: no sorting of the rest (often all of them).
            let busiest = |a: &(&SeriesKey, u32), b: &(&SeriesKey, u32)| {
                let bytes = |g: u32| totals[g as usize].0;
                bytes(b.1).cmp(&bytes(a.1)).then_with(|| a.0.cmp(b.0))
            };
            if room > 0 {
                candidates.select_nth_unstable_by(room - 1, busiest);
            }
            candidates.truncate(room);
        }
        for (k, g) in candidates {
            let a = Attrs::new(self.plan.labels(k));
            self.admitted.insert(k.clone(), a.clone());
            attrs[g as usize] = Some(a);
        }
        attrs
    }
}

/// The budgets of the flow metrics: packets and bytes share one; the size histogram has its
/// own when its attributes differ.
#[derive(Debug)]
pub struct Budgets {
    /// `netprobe.flow.packets` and `netprobe.flow.bytes`.
    pub flows: Budget,
    /// `netprobe.packet.size`; `None`: the same attributes and cap as the flows (the default),
    /// so one grouping serves all three metrics.
    pub sizes: Option<Budget>,
}

impl Default for Budgets {
    /// The standalone attributes, 2000 series.
    fn default() -> Self {
        Self {
            flows: Budget::new(FlowAttr::parse_all(FlowAttr::STANDALONE), 2000),
            sizes: None,
        }
    }
}

/// The series sets of one cycle.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeriesSets {
    /// For `netprobe.flow.packets` and `netprobe.flow.bytes`.
    pub flows: SeriesSet,
    /// For `netprobe.packet.size`, when its budget is its own.
    pub own_sizes: Option<SeriesSet>,
}

impl SeriesSets {
    /// The set of `netprobe.packet.size`.
    pub fn sizes(&self) -> &SeriesSet {
        self.own_sizes.as_ref().unwrap_or(&self.flows)
    }
}

impl Budgets {
    /// The budgets of the `metrics` section (validated); `cluster`: whether Kubernetes names
    /// the flow ends, which chooses the default attributes.
    pub fn from_config(cfg: &MetricsConfig, cluster: bool) -> Self {
        let default: &[&str] = if cluster {
            &FlowAttr::CLUSTER
        } else {
            &FlowAttr::STANDALONE
        };
        let parse = |list: Option<&Vec<String>>| match list {
            Some(l) => FlowAttr::parse_all(l.iter().map(String::as_str)),
            None => FlowAttr::parse_all(default.iter().copied()),
        };
        let flows = parse(cfg.flow_attributes.as_ref());
        let sizes = match &cfg.size_attributes {
            None => flows.clone(),
            some => parse(some.as_ref()),
        };
        Self {
            sizes: (sizes != flows).then(|| Budget::new(sizes, cfg.max_series)),
            flows: Budget::new(flows, cfg.max_series),
        }
    }

    /// Whether any budget's attributes name flow ends.
    pub fn needs_peers(&self) -> bool {
        self.flows.needs_peers() || self.sizes.as_ref().is_some_and(Budget::needs_peers)
    }

    /// Groups the flows for every budget.
    pub fn build(&mut self, named: &Named<'_>) -> SeriesSets {
        SeriesSets {
            flows: self.flows.build(named),
            own_sizes: self.sizes.as_mut().map(|b| b.build(named)),
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
