//! The attributes a flow series may carry, and how a flow maps to them: its identity under
//! an attribute set (cheap to hash, turned into labels once per series), with both ends named
//! by the Kubernetes index when the set asks for it.

use std::{net::IpAddr, sync::Arc};

use super::{FlowView, Labels, Transport};
use crate::{
    config::{EndPart, FlowAttr, Side, flow_attr as attr},
    k8s::naming::{Naming, Origin, Peer},
};

/// A flow's identity under an attribute set: cheap to hash and compare; formatted into
/// [`Labels`] once per series, not once per flow.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) struct SeriesKey {
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
    /// Where its packets came from (every series has it).
    origin: Option<Origin>,
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
pub(super) struct Plan {
    attrs: Vec<FlowAttr>,
    src_parts: Vec<EndPart>,
    dst_parts: Vec<EndPart>,
    service: bool,
}

impl Plan {
    pub(super) fn new(attrs: Vec<FlowAttr>) -> Self {
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
    pub(super) fn needs_peers(&self) -> bool {
        self.service || !self.src_parts.is_empty() || !self.dst_parts.is_empty()
    }

    /// The key of `f`; `ends`: its named ends, when [`Self::needs_peers`] (or a filter) had
    /// them looked up.
    pub(super) fn key(&self, f: &FlowView, naming: &Naming, ends: Option<Ends<'_>>) -> SeriesKey {
        let mut k = SeriesKey::default();
        let port = || ends.map_or_else(|| server_port(f, naming), |e| e.port);
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
        let src_peer = ends.map_or_else(|| naming.peer(f.src), |e| e.src);
        k.origin = Some(naming.origin(f.src, src_peer));
        if let Some(Ends { src, dst, .. }) = ends {
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

    pub(super) fn labels(&self, k: &SeriesKey) -> Labels {
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
        l.extend(k.origin.map(|o| (attr::ORIGIN, o.name().to_owned())));
        l
    }
}

/// Every attribute a flow series may carry: the choices of `metrics.flow_attributes`, the
/// reply-traffic forms of the server's port and service (`source.port`, `source.k8s.service.name`)
/// and `netprobe.origin`, which every series carries.
pub fn flow_labels() -> impl Iterator<Item = &'static str> {
    FlowAttr::ALL.iter().map(|(name, _)| *name).chain([
        attr::SOURCE_PORT,
        attr::SOURCE_SERVICE,
        attr::ORIGIN,
    ])
}

/// The server port of `f`, and whether the destination is the server: from the handshake,
/// then (with Kubernetes) a service, endpoint or hostNetwork port, then the lower port.
pub fn server_port(f: &FlowView, naming: &Naming) -> Option<(u16, bool)> {
    if naming.rules.cluster {
        f.server_port_by(|ip, port| naming.serves(ip, port))
    } else {
        f.server_port()
    }
}

/// A flow's ends, named, with the server port that named them.
#[derive(Clone, Copy, Debug)]
pub struct Ends<'a> {
    /// The server port, and whether the destination is the server.
    pub port: Option<(u16, bool)>,
    /// The source.
    pub src: Peer<'a>,
    /// The destination.
    pub dst: Peer<'a>,
}

/// Both ends of `f`, named: the server end by its address and port (a hostNetwork pod is
/// named on the ports it declares), the client end by its address.
pub fn ends<'a>(f: &FlowView, naming: &'a Naming) -> Ends<'a> {
    let port = server_port(f, naming);
    let at = |dst: bool| match port {
        Some((p, d)) if d == dst => Some(p),
        _ => None,
    };
    Ends {
        port,
        src: naming.peer_at(f.src, at(false)),
        dst: naming.peer_at(f.dst, at(true)),
    }
}

/// The labels of `f` for the attributes `attrs`, named by `naming`.
pub fn labels(f: &FlowView, attrs: &[FlowAttr], naming: &Naming) -> Labels {
    let plan = Plan::new(attrs.to_vec());
    let ends = plan.needs_peers().then(|| ends(f, naming));
    plan.labels(&plan.key(f, naming, ends))
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

#[cfg(test)]
mod tests;
