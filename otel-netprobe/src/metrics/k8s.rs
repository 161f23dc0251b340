//! Kubernetes: pods and services per namespace (under the namespace filter), the watchers'
//! health, and how the flows' ends were named. Nothing standalone.

use super::{
    Cycle, Family, Module, Value,
    catalogue::{attr::RESULT, metric},
};
use crate::k8s::index::NamespaceCounts;

metric!(
    K8S_PODS,
    "netprobe.k8s.pods",
    "{pod}",
    "netprobe_k8s_pods",
    Gauge,
    own[K8S_NAMESPACE],
    "Pods per namespace (running or pending; the whole cluster, as the API lists it)."
);

metric!(
    K8S_SERVICES,
    "netprobe.k8s.services",
    "{service}",
    "netprobe_k8s_services",
    Gauge,
    own[K8S_NAMESPACE],
    "Services per namespace."
);

metric!(
    AGENT_K8S_SYNCED,
    "netprobe.agent.k8s.synced",
    "",
    "netprobe_agent_k8s_synced",
    Gauge,
    own [],
    "1 once every Kubernetes resource has been listed (flow ends can be named), else 0."
);

metric!(
    AGENT_K8S_OBJECTS,
    "netprobe.agent.k8s.objects",
    "{object}",
    "netprobe_agent_k8s_objects",
    Gauge,
    own[RESOURCE],
    "Kubernetes objects held in the agent's index, per resource."
);

metric!(
    AGENT_K8S_ADDRESSES,
    "netprobe.agent.k8s.addresses",
    "{address}",
    "netprobe_agent_k8s_addresses",
    Gauge,
    own[KIND],
    "Addresses (and, as kind=endpoint, IP:port endpoints) the agent's Kubernetes index resolves."
);

metric!(
    AGENT_K8S_WATCH_RESTARTS,
    "netprobe.agent.k8s.watch.restarts",
    "{restart}",
    "netprobe_agent_k8s_watch_restarts_total",
    Counter,
    own[RESOURCE],
    "Kubernetes watch failures, per resource: each is a reconnect with backoff, or a re-list after 410 Gone."
);

metric!(
    AGENT_K8S_EVENTS,
    "netprobe.agent.k8s.events",
    "{event}",
    "netprobe_agent_k8s_events_total",
    Counter,
    own [],
    "Kubernetes watch events applied to the index."
);

metric!(
    AGENT_K8S_LOOKUPS,
    "netprobe.agent.k8s.lookups",
    "{end}",
    "netprobe_agent_k8s_lookups",
    Gauge,
    own[RESULT],
    "Flow ends in the current series by how they were named: found in the index, external, or unknown (a miss)."
);

metric!(
    AGENT_FLOWS_FILTERED,
    "netprobe.agent.flows.filtered",
    "{flow}",
    "netprobe_agent_flows_filtered",
    Gauge,
    own [],
    "Flows left out of the flow metrics by the namespace filter (k8s.namespaces)."
);

/// Namespace of the per-namespace gauges.
pub const K8S_NAMESPACE: &str = "k8s.namespace.name";
/// A Kubernetes resource (`pods`, `services`, ...).
pub const RESOURCE: &str = "resource";
/// What an index entry is (`address`, `endpoint`).
pub const KIND: &str = "kind";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[
        &K8S_PODS,
        &K8S_SERVICES,
        &AGENT_K8S_SYNCED,
        &AGENT_K8S_OBJECTS,
        &AGENT_K8S_ADDRESSES,
        &AGENT_K8S_WATCH_RESTARTS,
        &AGENT_K8S_EVENTS,
        &AGENT_K8S_LOOKUPS,
        &AGENT_FLOWS_FILTERED,
    ],
    families: Some(families),
    counts: None,
};

/// Adds the Kubernetes families (none without Kubernetes).
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let Some(k) = c.health.k8s else {
        return;
    };
    let naming = c.named.naming;
    let per_ns = |metric, f: fn(&NamespaceCounts) -> u64| {
        let rows = naming
            .index
            .namespaces
            .iter()
            .filter(|(ns, _)| naming.rules.namespace_allowed(ns))
            .map(|(ns, n)| (ns.to_string(), Value::Int(f(n))));
        Family::by(metric, K8S_NAMESPACE, rows)
    };
    let per_resource = |metric, v: [u64; 6]| {
        let rows = crate::k8s::resources().into_iter().zip(v.map(Value::Int));
        Family::by(metric, RESOURCE, rows)
    };
    let l = c.named.lookups;
    out.extend([
        per_ns(&K8S_PODS, |n| n.pods),
        per_ns(&K8S_SERVICES, |n| n.services),
        Family::single(&AGENT_K8S_SYNCED, Value::Int(u64::from(k.synced))),
        per_resource(&AGENT_K8S_OBJECTS, k.sizes.objects),
        Family::by(
            &AGENT_K8S_ADDRESSES,
            KIND,
            [
                ("address", Value::Int(k.sizes.addresses)),
                ("endpoint", Value::Int(k.sizes.endpoints)),
            ],
        ),
        per_resource(&AGENT_K8S_WATCH_RESTARTS, k.watch_restarts),
        Family::single(&AGENT_K8S_EVENTS, Value::Int(k.events_total)),
        Family::by(
            &AGENT_K8S_LOOKUPS,
            RESULT,
            [
                ("found", Value::Int(l.found)),
                ("external", Value::Int(l.external)),
                ("unknown", Value::Int(l.unknown)),
            ],
        ),
        Family::single(&AGENT_FLOWS_FILTERED, Value::Int(c.named.filtered_flows)),
    ]);
}
