//! Kubernetes: pods and services per namespace (under the namespace filter), the watchers'
//! health, and how the flows' ends were named. Nothing standalone.

use super::Cycle;
use crate::{
    export::names::{self, attr},
    frame::{Family, Value},
    k8s::index::NamespaceCounts,
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
        Family::by(metric, attr::K8S_NAMESPACE, rows)
    };
    let per_resource = |metric, v: [u64; 6]| {
        let rows = crate::k8s::resources().into_iter().zip(v.map(Value::Int));
        Family::by(metric, attr::RESOURCE, rows)
    };
    let l = c.named.lookups;
    out.extend([
        per_ns(&names::K8S_PODS, |n| n.pods),
        per_ns(&names::K8S_SERVICES, |n| n.services),
        Family::single(&names::AGENT_K8S_SYNCED, Value::Int(u64::from(k.synced))),
        per_resource(&names::AGENT_K8S_OBJECTS, k.sizes.objects),
        Family::by(
            &names::AGENT_K8S_ADDRESSES,
            attr::KIND,
            [
                ("address", Value::Int(k.sizes.addresses)),
                ("endpoint", Value::Int(k.sizes.endpoints)),
            ],
        ),
        per_resource(&names::AGENT_K8S_WATCH_RESTARTS, k.watch_restarts),
        Family::single(&names::AGENT_K8S_EVENTS, Value::Int(k.events_total)),
        Family::by(
            &names::AGENT_K8S_LOOKUPS,
            attr::RESULT,
            [
                ("found", Value::Int(l.found)),
                ("external", Value::Int(l.external)),
                ("unknown", Value::Int(l.unknown)),
            ],
        ),
        Family::single(
            &names::AGENT_FLOWS_FILTERED,
            Value::Int(c.named.filtered_flows),
        ),
    ]);
}
