//! The consolidated traffic summary (from the seed project): totals, unique endpoints, the
//! protocol breakdown, TCP connection states from the flags seen, the top talkers, with
//! Kubernetes each namespace's traffic, and every flow metric of the frame totalled. Built
//! once per read cycle by the aggregator from the flows it named and the frame's families;
//! `crate::export` serves it as JSON at `/api/v1/summary` and prints it as a table.

use std::{collections::BTreeMap, net::IpAddr};

use netprobe_ebpf::{Counter, tcp_flags};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use super::{Family, Value};
use crate::{
    ebpf::reader::GlobalCounters,
    flow::{Named, Transport},
    k8s::naming::{Peer, UNKNOWN},
};

/// Packets and bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    /// Wire packets.
    pub packets: u64,
    /// IP bytes.
    pub bytes: u64,
}

impl Volume {
    fn add(&mut self, packets: u64, bytes: u64) {
        self.packets += packets;
        self.bytes += bytes;
    }
}

/// One top talker: a source address and what it sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Talker {
    /// Source address.
    pub address: String,
    /// Packets sent.
    pub packets: u64,
    /// IP bytes sent.
    pub bytes: u64,
    /// Flows it sent on.
    pub flows: u64,
    /// Who it is, with Kubernetes: `namespace/workload (Kind)`, `node NAME`, `external` (or a
    /// CIDR group), `unknown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One namespace, with Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceSummary {
    /// Pods (running or pending).
    pub pods: u64,
    /// Services.
    pub services: u64,
    /// Traffic its pods and services sent.
    pub sent: Volume,
    /// Traffic sent to its pods and services.
    pub received: Volume,
}

/// The summary document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Everything counted.
    pub total: Volume,
    /// Flows tracked.
    pub flows: u64,
    /// Distinct source addresses.
    pub unique_sources: u64,
    /// Distinct destination addresses.
    pub unique_destinations: u64,
    /// Volume per transport (`tcp`, `udp`, `icmp`, `icmpv6`, `ipproto_<n>`).
    pub protocols: BTreeMap<String, Volume>,
    /// TCP flows per state derived from the flags seen: `syn_sent`, `established`, `closed`
    /// (FIN seen), `reset` (RST seen), `unknown` (no SYN seen, started before the agent).
    pub tcp_states: BTreeMap<String, u64>,
    /// Busiest sources by bytes.
    pub top_talkers: Vec<Talker>,
    /// Packets passed but not counted in a flow: non-IP, malformed, untracked (table full).
    pub not_in_flows: BTreeMap<String, u64>,
    /// With Kubernetes: per namespace (under the namespace filter), its objects and traffic.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespaces: BTreeMap<String, NamespaceSummary>,
    /// Every flow metric of the frame, totalled over its series (split by the attributes of
    /// its own, such as a drop reason).
    #[serde(default)]
    pub metrics: Vec<MetricTotal>,
}

/// A metric's total over its series, as the frame has it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricTotal {
    /// OTLP name.
    pub name: String,
    /// UCUM unit.
    pub unit: String,
    /// One row per value of the attributes it is split by (one row when it is not split).
    pub rows: Vec<TotalRow>,
}

/// One row of a [`MetricTotal`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TotalRow {
    /// The attributes the metric is split by, with their values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// The total; for a histogram, its number of observations.
    pub value: f64,
    /// A histogram's sum of observations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<f64>,
    /// A histogram's observations per bucket, by upper bound (`+Inf` last).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub buckets: Vec<(String, u64)>,
}

fn add(row: &mut TotalRow, value: &Value) {
    match value {
        Value::Int(v) => row.value += *v as f64,
        Value::Double(v) => row.value += v,
        Value::Histogram(h) => {
            row.value += h.count as f64;
            *row.sum.get_or_insert(0.0) += h.sum;
            if row.buckets.is_empty() {
                row.buckets = (0..h.counts.len())
                    .map(|i| (h.bounds.get(i).map_or("+Inf".into(), f64::to_string), 0))
                    .collect();
            }
            for (b, c) in row.buckets.iter_mut().zip(&h.counts) {
                b.1 += c;
            }
        }
    }
}

/// The totals of the families that ask for them ([`Family::totals_by`]), generically.
fn totals(families: &[Family]) -> Vec<MetricTotal> {
    let mut out = Vec::new();
    for f in families {
        let Some(by) = f.totals_by else { continue };
        let mut rows: BTreeMap<BTreeMap<String, String>, TotalRow> = BTreeMap::new();
        let mut all = TotalRow::default();
        for p in &f.points {
            let row = if by.is_empty() {
                &mut all
            } else {
                let key = p
                    .attrs
                    .iter()
                    .filter(|(k, _)| by.contains(k))
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect();
                rows.entry(key).or_default()
            };
            add(row, &p.value);
        }
        if by.is_empty() {
            rows.insert(BTreeMap::new(), all);
        }
        out.push(MetricTotal {
            name: f.metric.otlp.to_owned(),
            unit: f.metric.unit.to_owned(),
            rows: rows
                .into_iter()
                .map(|(attributes, row)| TotalRow { attributes, ..row })
                .collect(),
        });
    }
    out
}

/// A flow end for people.
fn peer_name(p: Peer<'_>) -> String {
    match p {
        Peer::Pod(pod) => format!(
            "{}/{} ({})",
            pod.namespace, pod.workload.name, pod.workload.kind
        ),
        Peer::Service(svc) => format!("{}/{} (Service)", svc.namespace, svc.name),
        Peer::Node(n) => format!("node {n}"),
        Peer::External(g) => g.to_string(),
        Peer::Unknown => UNKNOWN.to_owned(),
    }
}

fn tcp_state(flags: u64) -> &'static str {
    if flags & tcp_flags::RST != 0 {
        "reset"
    } else if flags & tcp_flags::FIN != 0 {
        "closed"
    } else if flags & (tcp_flags::SYN | tcp_flags::SYN_ACK) == tcp_flags::SYN
        && flags & tcp_flags::ACK == 0
    {
        "syn_sent"
    } else if flags & (tcp_flags::SYN | tcp_flags::SYN_ACK) != 0 {
        "established"
    } else {
        "unknown"
    }
}

impl Summary {
    /// Summarises one cycle's flows (their ends named when Kubernetes names them) and the
    /// totals of its frame's flow metrics, listing `top` talkers.
    pub fn of(
        named: &Named<'_>,
        counters: &GlobalCounters,
        families: &[Family],
        top: usize,
    ) -> Self {
        let mut s = Summary {
            metrics: totals(families),
            ..Summary::default()
        };
        let naming = named.naming;
        let cluster = naming.rules.cluster;
        if cluster {
            for (ns, c) in &naming.index.namespaces {
                if naming.rules.namespace_allowed(ns) {
                    let n = s.namespaces.entry(ns.to_string()).or_default();
                    (n.pods, n.services) = (c.pods, c.services);
                }
            }
        }
        let mut dests = FxHashSet::default();
        let mut talkers: FxHashMap<IpAddr, (Volume, u64)> = FxHashMap::default();
        let mut protocols: FxHashMap<Transport, Volume> = FxHashMap::default();
        let mut states: FxHashMap<&'static str, u64> = FxHashMap::default();
        for (i, f) in named.flows.iter().enumerate() {
            if let Some(ends) = named.ends.as_ref().filter(|_| cluster) {
                for (peer, sent) in [(ends[i].src, true), (ends[i].dst, false)] {
                    let Some(ns) = peer.namespace() else { continue };
                    if let Some(n) = s.namespaces.get_mut(&**ns) {
                        let v = if sent { &mut n.sent } else { &mut n.received };
                        v.add(f.packets, f.bytes);
                    }
                }
            }
            s.total.add(f.packets, f.bytes);
            s.flows += 1;
            dests.insert(f.dst);
            protocols
                .entry(f.transport)
                .or_default()
                .add(f.packets, f.bytes);
            if f.transport == Transport::Tcp {
                *states.entry(tcp_state(f.tcp_flags)).or_default() += 1;
            }
            let t = talkers.entry(f.src).or_default();
            t.0.add(f.packets, f.bytes);
            t.1 += 1;
        }
        s.unique_sources = talkers.len() as u64;
        s.unique_destinations = dests.len() as u64;
        s.protocols = protocols.into_iter().map(|(t, v)| (t.name(), v)).collect();
        s.tcp_states = states.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
        let mut talkers: Vec<(IpAddr, (Volume, u64))> = talkers.into_iter().collect();
        let busiest = |a: &(IpAddr, (Volume, u64)), b: &(IpAddr, (Volume, u64))| {
            b.1.0.bytes.cmp(&a.1.0.bytes).then_with(|| a.0.cmp(&b.0))
        };
        if talkers.len() > top && top > 0 {
            talkers.select_nth_unstable_by(top - 1, busiest);
        }
        talkers.truncate(top);
        talkers.sort_unstable_by(busiest);
        s.top_talkers = talkers
            .into_iter()
            .map(|(ip, (v, flows))| Talker {
                address: ip.to_string(),
                packets: v.packets,
                bytes: v.bytes,
                flows,
                name: cluster.then(|| peer_name(naming.peer(ip))),
            })
            .collect();
        let c = counters;
        let malformed = [
            Counter::MalformedEthernet,
            Counter::MalformedVlan,
            Counter::MalformedIpv4,
            Counter::MalformedIpv6,
            Counter::MalformedTransport,
        ]
        .iter()
        .map(|x| c.get(*x))
        .sum();
        let non_ip =
            c.get(Counter::NonIpArp) + c.get(Counter::NonIpLldp) + c.get(Counter::NonIpOther);
        s.not_in_flows.insert("non_ip".into(), non_ip);
        s.not_in_flows.insert("malformed".into(), malformed);
        s.not_in_flows.insert(
            "untracked_table_full".into(),
            c.get(Counter::MapFullPackets),
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_from_flags() {
        assert_eq!(tcp_state(tcp_flags::SYN), "syn_sent");
        assert_eq!(tcp_state(tcp_flags::SYN | tcp_flags::ACK), "established");
        assert_eq!(
            tcp_state(tcp_flags::SYN | tcp_flags::ACK | tcp_flags::SYN_ACK),
            "established"
        );
        assert_eq!(
            tcp_state(tcp_flags::SYN | tcp_flags::ACK | tcp_flags::FIN),
            "closed"
        );
        assert_eq!(tcp_state(tcp_flags::ACK | tcp_flags::RST), "reset");
        assert_eq!(tcp_state(tcp_flags::ACK), "unknown");
    }
}
