//! Aggregation of flows into series of a reduced attribute set, under a cardinality budget.
//!
//! Both exporters render the same [`SeriesSets`] of a snapshot, computed once, on first use.
//! The budget is sticky, as OpenTelemetry's cardinality limit is: an attribute set admitted
//! once keeps its series while its flows live; new sets are admitted (busiest first) while
//! fewer than `max_series` exist, and the rest are added up in one series marked
//! `otel.metric.overflow=true`. A set whose flows are all gone stops being reported.

use std::{
    net::IpAddr,
    sync::{Arc, Mutex},
};

use netprobe_ebpf::SIZE_BUCKETS;
use rustc_hash::{FxHashMap, FxHashSet};

use super::{FlowView, Transport};
use crate::{
    export::names::attr,
    k8s::naming::{Naming, Peer},
};

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

/// An attribute a flow series may carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowAttr {
    /// `source.address`.
    SourceAddress,
    /// `destination.address`.
    DestinationAddress,
    /// The server port: `destination.port`, or `source.port` on reply traffic; never a client
    /// port.
    ServerPort,
    /// `network.transport`.
    Transport,
    /// `network.type`.
    NetworkType,
    /// One part of a Kubernetes name of one end.
    End(Side, EndPart),
    /// The service of the server end: `destination.k8s.service.name`, or
    /// `source.k8s.service.name` on reply traffic.
    ServerService,
}

/// Which end of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The source.
    Source,
    /// The destination.
    Destination,
}

/// A part of an end's Kubernetes name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndPart {
    /// `k8s.namespace.name`.
    Namespace,
    /// `k8s.workload.name` (or the CIDR group, `external`, `unknown`).
    WorkloadName,
    /// `k8s.workload.kind` (`Deployment`, ..., `Service`, `Node`, `external`, `unknown`).
    WorkloadKind,
    /// `k8s.pod.name` (opt-in: one series per pod).
    Pod,
    /// `k8s.node.name`.
    Node,
}

impl FlowAttr {
    /// Every attribute, by its configuration name.
    pub const ALL: [(&'static str, FlowAttr); 16] = [
        (attr::SOURCE_ADDRESS, FlowAttr::SourceAddress),
        (attr::DESTINATION_ADDRESS, FlowAttr::DestinationAddress),
        (attr::DESTINATION_PORT, FlowAttr::ServerPort),
        (attr::NETWORK_TRANSPORT, FlowAttr::Transport),
        (attr::NETWORK_TYPE, FlowAttr::NetworkType),
        (
            attr::SOURCE_NAMESPACE,
            FlowAttr::End(Side::Source, EndPart::Namespace),
        ),
        (
            attr::SOURCE_WORKLOAD,
            FlowAttr::End(Side::Source, EndPart::WorkloadName),
        ),
        (
            attr::SOURCE_WORKLOAD_KIND,
            FlowAttr::End(Side::Source, EndPart::WorkloadKind),
        ),
        (attr::SOURCE_POD, FlowAttr::End(Side::Source, EndPart::Pod)),
        (
            attr::SOURCE_NODE,
            FlowAttr::End(Side::Source, EndPart::Node),
        ),
        (
            attr::DESTINATION_NAMESPACE,
            FlowAttr::End(Side::Destination, EndPart::Namespace),
        ),
        (
            attr::DESTINATION_WORKLOAD,
            FlowAttr::End(Side::Destination, EndPart::WorkloadName),
        ),
        (
            attr::DESTINATION_WORKLOAD_KIND,
            FlowAttr::End(Side::Destination, EndPart::WorkloadKind),
        ),
        (
            attr::DESTINATION_POD,
            FlowAttr::End(Side::Destination, EndPart::Pod),
        ),
        (
            attr::DESTINATION_NODE,
            FlowAttr::End(Side::Destination, EndPart::Node),
        ),
        (attr::DESTINATION_SERVICE, FlowAttr::ServerService),
    ];

    /// The default set without Kubernetes: addresses, server port, transport, IP version.
    pub const STANDALONE: [&'static str; 5] = [
        attr::SOURCE_ADDRESS,
        attr::DESTINATION_ADDRESS,
        attr::DESTINATION_PORT,
        attr::NETWORK_TRANSPORT,
        attr::NETWORK_TYPE,
    ];

    /// The default set with Kubernetes: workload level, no addresses, no pods.
    pub const CLUSTER: [&'static str; 10] = [
        attr::SOURCE_NAMESPACE,
        attr::SOURCE_WORKLOAD,
        attr::SOURCE_WORKLOAD_KIND,
        attr::DESTINATION_NAMESPACE,
        attr::DESTINATION_WORKLOAD,
        attr::DESTINATION_WORKLOAD_KIND,
        attr::DESTINATION_SERVICE,
        attr::DESTINATION_PORT,
        attr::NETWORK_TRANSPORT,
        attr::NETWORK_TYPE,
    ];

    /// By configuration name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// Parses a list of known names (unknown ones are skipped: validate first).
    pub fn parse_all<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Self> {
        names.into_iter().filter_map(Self::parse).collect()
    }
}

/// A flow's identity under an attribute set: cheap to hash and compare; formatted into
/// [`Labels`] once per series, not once per flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct SeriesKey {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    /// Server port, and whether it is the destination's.
    port: Option<(u16, bool)>,
    transport: Option<Transport>,
    v6: Option<bool>,
    src_end: EndKey,
    dst_end: EndKey,
    /// The server end's service, and whether the server is the destination.
    service: Option<(Arc<str>, bool)>,
}

/// The parts of one end's name an attribute set keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct EndKey {
    namespace: Option<Arc<str>>,
    workload: Option<Arc<str>>,
    kind: Option<Arc<str>>,
    pod: Option<Arc<str>>,
    node: Option<Arc<str>>,
}

fn end_key(peer: Peer<'_>, parts: &[EndPart], naming: &Naming) -> EndKey {
    let fixed = naming.rules.fixed();
    let (namespace, workload, kind, pod, node) = match peer {
        Peer::Pod(p) => (
            Some(&p.namespace),
            &p.workload.name,
            &p.workload.kind,
            Some(&p.name),
            Some(&p.node).filter(|n| !n.is_empty()),
        ),
        Peer::Service(s) => (Some(&s.namespace), &s.name, &fixed.service, None, None),
        Peer::Node(n) => (None, n, &fixed.node, None, Some(n)),
        Peer::External(g) => (None, g, &fixed.external, None, None),
        Peer::Unknown => (None, &fixed.unknown, &fixed.unknown, None, None),
    };
    let mut k = EndKey::default();
    for p in parts {
        match p {
            EndPart::Namespace => k.namespace = namespace.cloned(),
            EndPart::WorkloadName => k.workload = Some(Arc::clone(workload)),
            EndPart::WorkloadKind => k.kind = Some(Arc::clone(kind)),
            EndPart::Pod => k.pod = pod.cloned(),
            EndPart::Node => k.node = node.cloned(),
        }
    }
    k
}

fn end_labels(l: &mut Labels, k: &EndKey, side: Side, part: EndPart) {
    let src = side == Side::Source;
    let (name, v) = match part {
        EndPart::Namespace => (
            if src {
                attr::SOURCE_NAMESPACE
            } else {
                attr::DESTINATION_NAMESPACE
            },
            &k.namespace,
        ),
        EndPart::WorkloadName => (
            if src {
                attr::SOURCE_WORKLOAD
            } else {
                attr::DESTINATION_WORKLOAD
            },
            &k.workload,
        ),
        EndPart::WorkloadKind => (
            if src {
                attr::SOURCE_WORKLOAD_KIND
            } else {
                attr::DESTINATION_WORKLOAD_KIND
            },
            &k.kind,
        ),
        EndPart::Pod => (
            if src {
                attr::SOURCE_POD
            } else {
                attr::DESTINATION_POD
            },
            &k.pod,
        ),
        EndPart::Node => (
            if src {
                attr::SOURCE_NODE
            } else {
                attr::DESTINATION_NODE
            },
            &k.node,
        ),
    };
    l.extend(v.as_ref().map(|v| (name, v.to_string())));
}

/// How an attribute set looks at flows, worked out once per budget.
#[derive(Debug, Clone, Default)]
struct Plan {
    attrs: Vec<FlowAttr>,
    src_parts: Vec<EndPart>,
    dst_parts: Vec<EndPart>,
    service: bool,
}

impl Plan {
    fn new(attrs: Vec<FlowAttr>) -> Self {
        let parts = |side: Side| {
            attrs
                .iter()
                .filter_map(|a| match a {
                    FlowAttr::End(s, p) if *s == side => Some(*p),
                    _ => None,
                })
                .collect()
        };
        Self {
            src_parts: parts(Side::Source),
            dst_parts: parts(Side::Destination),
            service: attrs.contains(&FlowAttr::ServerService),
            attrs,
        }
    }

    /// Whether the flow's ends must be looked up.
    fn needs_peers(&self) -> bool {
        self.service || !self.src_parts.is_empty() || !self.dst_parts.is_empty()
    }

    fn key(&self, f: &FlowView, naming: &Naming, peers: Option<(Peer<'_>, Peer<'_>)>) -> SeriesKey {
        let mut k = SeriesKey::default();
        let port = || {
            if naming.rules.cluster {
                f.server_port_by(|ip, port| naming.serves(ip, port))
            } else {
                f.server_port()
            }
        };
        for a in &self.attrs {
            match a {
                FlowAttr::SourceAddress => k.src = Some(f.src),
                FlowAttr::DestinationAddress => k.dst = Some(f.dst),
                FlowAttr::ServerPort => k.port = port(),
                FlowAttr::Transport => k.transport = Some(f.transport),
                FlowAttr::NetworkType => k.v6 = Some(f.src.is_ipv6()),
                FlowAttr::End(..) | FlowAttr::ServerService => {}
            }
        }
        if let Some((src, dst)) = peers {
            k.src_end = end_key(src, &self.src_parts, naming);
            k.dst_end = end_key(dst, &self.dst_parts, naming);
            if self.service {
                let server = if matches!(dst, Peer::Service(_)) {
                    Some((f.dst_port, true))
                } else {
                    k.port.or_else(port)
                };
                k.service = match server {
                    Some((p, true)) => naming
                        .service(dst, f.dst, Some(p))
                        .map(|s| (Arc::clone(&s.name), true)),
                    Some((p, false)) => naming
                        .service(src, f.src, Some(p))
                        .map(|s| (Arc::clone(&s.name), false)),
                    None => naming
                        .service(dst, f.dst, None)
                        .map(|s| (Arc::clone(&s.name), true)),
                };
            }
        }
        k
    }

    fn labels(&self, k: &SeriesKey) -> Labels {
        let mut l = Labels::with_capacity(self.attrs.len());
        for a in &self.attrs {
            match a {
                FlowAttr::SourceAddress => {
                    l.extend(k.src.map(|v| (attr::SOURCE_ADDRESS, v.to_string())));
                }
                FlowAttr::DestinationAddress => {
                    l.extend(k.dst.map(|v| (attr::DESTINATION_ADDRESS, v.to_string())));
                }
                FlowAttr::ServerPort => match k.port {
                    Some((port, true)) => l.push((attr::DESTINATION_PORT, port.to_string())),
                    Some((port, false)) => l.push((attr::SOURCE_PORT, port.to_string())),
                    None => {}
                },
                FlowAttr::Transport => {
                    l.extend(k.transport.map(|t| (attr::NETWORK_TRANSPORT, t.name())));
                }
                FlowAttr::NetworkType => l.extend(k.v6.map(|v6| {
                    (
                        attr::NETWORK_TYPE,
                        if v6 { "ipv6" } else { "ipv4" }.to_owned(),
                    )
                })),
                FlowAttr::End(side, part) => {
                    let end = if *side == Side::Source {
                        &k.src_end
                    } else {
                        &k.dst_end
                    };
                    end_labels(&mut l, end, *side, *part);
                }
                FlowAttr::ServerService => match &k.service {
                    Some((s, true)) => l.push((attr::DESTINATION_SERVICE, s.to_string())),
                    Some((s, false)) => l.push((attr::SOURCE_SERVICE, s.to_string())),
                    None => {}
                },
            }
        }
        l
    }
}

/// The labels of `f` for the attributes `attrs`, named by `naming`.
pub fn labels(f: &FlowView, attrs: &[FlowAttr], naming: &Naming) -> Labels {
    let plan = Plan::new(attrs.to_vec());
    let peers = plan
        .needs_peers()
        .then(|| (naming.peer(f.src), naming.peer(f.dst)));
    plan.labels(&plan.key(f, naming, peers))
}

/// How the ends of the flows in a series set were named.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lookups {
    /// Ends the index knew (pod, service, node).
    pub found: u64,
    /// Ends outside the cluster (CIDR groups included).
    pub external: u64,
    /// Ends that could not be named.
    pub unknown: u64,
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
            let peers = lookup.then(|| (naming.peer(f.src), naming.peer(f.dst)));
            if let Some((src, dst)) = peers {
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
            let e = agg.entry(self.plan.key(f, naming, peers)).or_default();
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
