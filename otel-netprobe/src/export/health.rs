//! The agent's own metrics (`netprobe_agent_*`) as one list of series, so that every exporter
//! (Prometheus text, OTLP) shows exactly the same numbers.

use netprobe_ebpf::Counter;

use super::names::{self, Metric, attr};
use crate::flow::{Labels, Snapshot};

/// One metric's series: (attributes, value).
pub type Series = Vec<(Labels, f64)>;

fn one(v: f64) -> Series {
    vec![(Vec::new(), v)]
}

fn by(key: &'static str, rows: &[(&str, f64)]) -> Series {
    rows.iter()
        .map(|(k, v)| (vec![(key, (*k).to_owned())], *v))
        .collect()
}

/// A figure of each flow metric's series set.
fn series_by_metric(snap: &Snapshot, f: impl Fn(&crate::flow::SeriesSet) -> f64) -> Series {
    let sets = snap.series();
    [
        (names::FLOW_PACKETS.otlp, &sets.flows),
        (names::FLOW_BYTES.otlp, &sets.flows),
        (names::PACKET_SIZE.otlp, &sets.sizes),
    ]
    .iter()
    .map(|(m, set)| (vec![(attr::METRIC, (*m).to_owned())], f(set)))
    .collect()
}

/// Interfaces per hook, and one info series per interface.
fn interface_series(snap: &Snapshot) -> (Series, Series) {
    let ifs = &snap.health.interfaces;
    let hooks = ["xdp", "xdp_generic", "tc", "none"]
        .iter()
        .map(|hook| {
            let n = ifs.iter().filter(|i| i.hook == *hook).count();
            (vec![(attr::HOOK, (*hook).to_owned())], n as f64)
        })
        .collect();
    let info = ifs
        .iter()
        .map(|i| {
            let l = vec![
                (attr::INTERFACE, i.name.clone()),
                (attr::HOOK, i.hook.to_owned()),
                (attr::EGRESS, i.egress.to_string()),
                (attr::TC_ATTACH, i.tc_attach.to_owned()),
            ];
            (l, 1.0)
        })
        .collect();
    (hooks, info)
}

/// The Kubernetes series: per-namespace counts and the watchers' health (none standalone).
fn k8s_series(snap: &Snapshot) -> Vec<(&'static Metric, Series)> {
    let Some(k) = snap.health.k8s else {
        return Vec::new();
    };
    let rules = &snap.naming.rules;
    let per_ns = |f: fn(&crate::k8s::index::NamespaceCounts) -> u64| -> Series {
        snap.naming
            .index
            .namespaces
            .iter()
            .filter(|(ns, _)| rules.namespace_allowed(ns))
            .map(|(ns, c)| (vec![(attr::K8S_NAMESPACE, ns.to_string())], f(c) as f64))
            .collect()
    };
    let resources = crate::k8s::resources();
    let per_resource = |v: [u64; 6]| -> Series {
        resources
            .iter()
            .zip(v)
            .map(|(r, n)| (vec![(attr::RESOURCE, (*r).to_owned())], n as f64))
            .collect()
    };
    let l = snap.series().flows.lookups;
    vec![
        (&names::K8S_PODS, per_ns(|c| c.pods)),
        (&names::K8S_SERVICES, per_ns(|c| c.services)),
        (
            &names::AGENT_K8S_SYNCED,
            one(if k.synced { 1.0 } else { 0.0 }),
        ),
        (&names::AGENT_K8S_OBJECTS, per_resource(k.sizes.objects)),
        (
            &names::AGENT_K8S_ADDRESSES,
            by(
                attr::KIND,
                &[
                    ("address", k.sizes.addresses as f64),
                    ("endpoint", k.sizes.endpoints as f64),
                ],
            ),
        ),
        (
            &names::AGENT_K8S_WATCH_RESTARTS,
            per_resource(k.watch_restarts),
        ),
        (&names::AGENT_K8S_EVENTS, one(k.events_total as f64)),
        (
            &names::AGENT_K8S_LOOKUPS,
            by(
                attr::RESULT,
                &[
                    ("found", l.found as f64),
                    ("external", l.external as f64),
                    ("unknown", l.unknown as f64),
                ],
            ),
        ),
        (
            &names::AGENT_FLOWS_FILTERED,
            one(snap.series().flows.filtered_flows as f64),
        ),
    ]
}

/// Every agent metric with its series, in catalogue order.
#[allow(clippy::too_many_lines, reason = "one flat list, in catalogue order")]
pub fn agent_series(snap: &Snapshot) -> Vec<(&'static Metric, Series)> {
    let h = &snap.health;
    let c = |x: Counter| snap.counters.get(x) as f64;
    let fill = if h.flow_table_capacity == 0 {
        0.0
    } else {
        h.flow_table_entries as f64 / h.flow_table_capacity as f64
    };
    let (hooks, info) = interface_series(snap);
    let mut all = vec![
        (&names::AGENT_FLOWS_TRACKED, one(h.flows_tracked as f64)),
        (
            &names::AGENT_FLOW_TABLE_ENTRIES,
            one(h.flow_table_entries as f64),
        ),
        (
            &names::AGENT_FLOW_TABLE_CAPACITY,
            one(h.flow_table_capacity as f64),
        ),
        (&names::AGENT_FLOW_TABLE_FILL, one(fill)),
        (
            &names::AGENT_FLOW_TABLE_MEMORY,
            one(h.flow_table_memory_bytes as f64),
        ),
        (&names::AGENT_READ_CYCLES, one(h.read_cycles_total as f64)),
        (&names::AGENT_READ_ERRORS, one(h.read_errors_total as f64)),
        (&names::AGENT_READ_DURATION, one(h.last_read_seconds)),
        (
            &names::AGENT_EVICTIONS,
            by(
                attr::REASON,
                &[
                    ("kernel_idle", h.kernel_evictions_total as f64),
                    ("expired", h.flows_expired_total as f64),
                ],
            ),
        ),
        (
            &names::AGENT_PARSE_ERRORS,
            by(
                attr::LAYER,
                &[
                    ("ethernet", c(Counter::MalformedEthernet)),
                    ("vlan", c(Counter::MalformedVlan)),
                    ("ipv4", c(Counter::MalformedIpv4)),
                    ("ipv6", c(Counter::MalformedIpv6)),
                    ("transport", c(Counter::MalformedTransport)),
                ],
            ),
        ),
        (
            &names::AGENT_NON_IP,
            by(
                attr::CLASS,
                &[
                    ("arp", c(Counter::NonIpArp)),
                    ("lldp", c(Counter::NonIpLldp)),
                    ("other", c(Counter::NonIpOther)),
                ],
            ),
        ),
        (&names::AGENT_FRAGMENTS, one(c(Counter::Fragments))),
        (
            &names::AGENT_IPV6_EXT_TOO_LONG,
            one(c(Counter::Ipv6ExtTooLong)),
        ),
        (
            &names::AGENT_UNTRACKED_PACKETS,
            one(c(Counter::MapFullPackets)),
        ),
        (&names::AGENT_UNTRACKED_BYTES, one(c(Counter::MapFullBytes))),
        (
            &names::AGENT_ATTACH_ERRORS,
            one(h.attach_errors_total as f64),
        ),
        (&names::AGENT_INTERFACES, hooks),
        (&names::AGENT_INTERFACE_INFO, info),
        (
            &names::AGENT_EXPORT_REQUESTS,
            by(
                attr::RESULT,
                &[
                    ("ok", h.export_ok_total as f64),
                    ("failed", h.export_failed_total as f64),
                ],
            ),
        ),
        (
            &names::AGENT_EXPORT_DROPPED,
            one(h.export_dropped_points_total as f64),
        ),
        (
            &names::AGENT_SERIES,
            series_by_metric(snap, |s| s.series.len() as f64),
        ),
        (
            &names::AGENT_SERIES_OVERFLOW,
            series_by_metric(snap, |s| s.overflow_flows as f64),
        ),
    ];
    all.extend(k8s_series(snap));
    all
}
