//! The attributes a flow series may carry, and how a flow maps to them: its identity under
//! an attribute set (cheap to hash, turned into labels once per series), with both ends named
//! by the Kubernetes index when the set asks for it.

use std::{net::IpAddr, sync::Arc};

use super::{FlowView, Labels, Transport};
use crate::{
    export::names::attr,
    k8s::naming::{Naming, Peer},
};

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

    pub(super) fn key(
        &self,
        f: &FlowView,
        naming: &Naming,
        peers: Option<(Peer<'_>, Peer<'_>)>,
    ) -> SeriesKey {
        let mut k = SeriesKey::default();
        let port = || server_port(f, naming);
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
        l
    }
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

/// Both ends of `f`, named: the server end by its address and port (a hostNetwork pod is
/// named on the ports it declares), the client end by its address.
pub fn peers<'a>(f: &FlowView, naming: &'a Naming) -> (Peer<'a>, Peer<'a>) {
    let port = server_port(f, naming);
    let at = |dst: bool| match port {
        Some((p, d)) if d == dst => Some(p),
        _ => None,
    };
    (
        naming.peer_at(f.src, at(false)),
        naming.peer_at(f.dst, at(true)),
    )
}

/// The labels of `f` for the attributes `attrs`, named by `naming`.
pub fn labels(f: &FlowView, attrs: &[FlowAttr], naming: &Naming) -> Labels {
    let plan = Plan::new(attrs.to_vec());
    let peers = plan.needs_peers().then(|| peers(f, naming));
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use netprobe_ebpf::{FlowKey, SIZE_BUCKETS, tcp_flags};

    use super::*;
    use crate::flow::Budget;
    use crate::{
        config::{K8sConfig, NamespaceFilter},
        k8s::{
            index::{IndexStore, Kind, OwnerRef, Pod, Record, Service, Slice},
            naming::NamingRules,
        },
    };

    fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u64) -> FlowView {
        let key = FlowKey {
            src_addr: [u32::from_ne_bytes(src), 0, 0, 0],
            dst_addr: [u32::from_ne_bytes(dst), 0, 0, 0],
            src_port: sport.to_be(),
            dst_port: dport.to_be(),
            protocol: 6,
            ip_version: 4,
            pad: [0; 2],
        };
        let mut b = [0; SIZE_BUCKETS];
        b[3] = 4;
        FlowView::new(&key, 400, b, flags, (0, 0))
    }

    fn pod(ns: &str, name: &str, ip: &str, kind: &str, wl: &str) -> Record {
        Record::Pod {
            pod: Pod {
                namespace: ns.into(),
                name: name.into(),
                node: "node-a".into(),
                owner: Some(OwnerRef {
                    kind: kind.into(),
                    name: wl.into(),
                }),
                workload: OwnerRef {
                    kind: kind.into(),
                    name: wl.into(),
                },
                ips: vec![ip.parse().unwrap()],
                host_network: false,
                host_ports: Vec::new(),
            },
            terminal: false,
        }
    }

    fn naming(exclude: &[&str]) -> Naming {
        let now = Instant::now();
        let mut s = IndexStore::new(Duration::from_secs(30));
        for k in Kind::ALL {
            s.begin_relist(k);
        }
        s.upsert(
            "c",
            pod(
                "shop",
                "checkout-1",
                "10.244.0.11",
                "Deployment",
                "checkout",
            ),
            now,
        );
        s.upsert(
            "p",
            pod(
                "payments",
                "payments-0",
                "10.244.1.3",
                "StatefulSet",
                "payments",
            ),
            now,
        );
        s.upsert(
            "n",
            Record::Node("node-a".into(), vec!["192.0.2.10".parse().unwrap()]),
            now,
        );
        let Record::Pod {
            pod: mut exporter, ..
        } = pod(
            "monitoring",
            "node-exporter-x",
            "192.0.2.10",
            "DaemonSet",
            "node-exporter",
        )
        else {
            unreachable!()
        };
        exporter.host_network = true;
        exporter.host_ports = vec![9100];
        s.upsert(
            "x",
            Record::Pod {
                pod: exporter,
                terminal: false,
            },
            now,
        );
        s.upsert(
            "s",
            Record::Service(Service {
                namespace: "payments".into(),
                name: "payments".into(),
                cluster_ips: vec!["10.96.0.10".parse().unwrap()],
                ports: vec![443],
            }),
            now,
        );
        s.upsert(
            "e",
            Record::Slice(Slice {
                namespace: "payments".into(),
                service: "payments".into(),
                addresses: vec!["10.244.1.3".parse().unwrap()],
                ports: vec![8443],
            }),
            now,
        );
        for k in Kind::ALL {
            s.finish_relist(k, now);
        }
        let cfg = K8sConfig {
            namespaces: NamespaceFilter {
                include: Vec::new(),
                exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
            },
            ..K8sConfig::default()
        };
        Naming {
            index: Arc::new(s.build()),
            rules: Arc::new(NamingRules::new(&cfg, true)),
        }
    }

    fn text(l: &Labels) -> String {
        l.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn workload_attributes_name_both_ends_and_the_service() {
        let n = naming(&[]);
        let attrs = FlowAttr::parse_all(FlowAttr::CLUSTER);
        let to_cluster_ip = tcp(
            [10, 244, 0, 11],
            41000,
            [10, 96, 0, 10],
            443,
            tcp_flags::SYN,
        );
        assert_eq!(
            text(&labels(&to_cluster_ip, &attrs, &n)),
            "source.k8s.namespace.name=shop source.k8s.workload.name=checkout \
             source.k8s.workload.kind=Deployment destination.k8s.namespace.name=payments \
             destination.k8s.workload.name=payments destination.k8s.workload.kind=Service \
             destination.k8s.service.name=payments destination.port=443 \
             network.transport=tcp network.type=ipv4"
        );
        let reply = tcp(
            [10, 244, 1, 3],
            8443,
            [10, 244, 0, 11],
            41000,
            tcp_flags::SYN_ACK | tcp_flags::SYN | tcp_flags::ACK,
        );
        assert_eq!(
            text(&labels(&reply, &attrs, &n)),
            "source.k8s.namespace.name=payments source.k8s.workload.name=payments \
             source.k8s.workload.kind=StatefulSet destination.k8s.namespace.name=shop \
             destination.k8s.workload.name=checkout destination.k8s.workload.kind=Deployment \
             source.k8s.service.name=payments source.port=8443 network.transport=tcp \
             network.type=ipv4"
        );
        // No handshake seen, and the client port is the lower one: the endpoint port still
        // says which end is the server.
        let mid = tcp(
            [10, 244, 1, 3],
            8443,
            [10, 244, 0, 11],
            1024,
            tcp_flags::ACK,
        );
        assert!(text(&labels(&mid, &attrs, &n)).contains("source.port=8443"));
        // A hostNetwork pod is named on its declared port; the node's other ports name the node.
        let scrape = tcp(
            [10, 244, 0, 11],
            41001,
            [192, 0, 2, 10],
            9100,
            tcp_flags::SYN,
        );
        let l = text(&labels(&scrape, &attrs, &n));
        assert!(
            l.contains("destination.k8s.namespace.name=monitoring destination.k8s.workload.name=node-exporter destination.k8s.workload.kind=DaemonSet"),
            "{l}"
        );
        let ssh = tcp([10, 244, 0, 11], 41002, [192, 0, 2, 10], 22, tcp_flags::SYN);
        let l = text(&labels(&ssh, &attrs, &n));
        assert!(
            l.contains("destination.k8s.workload.name=node-a destination.k8s.workload.kind=Node"),
            "{l}"
        );
        // Outside the cluster, and pods on demand.
        let ext = tcp(
            [203, 0, 113, 9],
            50000,
            [10, 244, 0, 11],
            80,
            tcp_flags::SYN,
        );
        let mut with_pods = attrs.clone();
        with_pods.push(FlowAttr::End(Side::Destination, EndPart::Pod));
        let l = text(&labels(&ext, &with_pods, &n));
        assert!(
            l.contains("source.k8s.workload.name=external source.k8s.workload.kind=external")
                && l.contains("destination.k8s.pod.name=checkout-1")
                && !l.contains("source.k8s.namespace.name"),
            "{l}"
        );
    }

    #[test]
    fn excluded_namespaces_are_left_out_and_lookups_are_counted() {
        let n = naming(&["pay*"]);
        let mut b = Budget::new(FlowAttr::parse_all(FlowAttr::CLUSTER), 100);
        let flows = [
            tcp(
                [10, 244, 0, 11],
                41000,
                [10, 96, 0, 10],
                443,
                tcp_flags::SYN,
            ),
            tcp(
                [203, 0, 113, 9],
                50000,
                [10, 244, 0, 11],
                80,
                tcp_flags::SYN,
            ),
        ];
        let set = b.build(&flows, &n);
        assert_eq!(set.filtered_flows, 1);
        assert_eq!(set.series.len(), 1);
        assert_eq!(
            set.lookups,
            Lookups {
                found: 3,
                external: 1,
                unknown: 0
            }
        );
    }
}
