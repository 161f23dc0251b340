//! The `metrics` section: which attributes the flow metrics carry and how many series each
//! may have. The attributes a user may choose ([`FlowAttr`], named in [`flow_attr`]) are the
//! option's values, so they are declared here with it; `flow` turns them into series.

use serde::Deserialize;

use super::ConfigError;

/// The names of the attributes a flow series may carry (OTLP; Prometheus labels replace the
/// dots with underscores).
pub mod flow_attr {
    /// Source address (standalone default; opt-in once Kubernetes names exist).
    pub const SOURCE_ADDRESS: &str = "source.address";
    /// Destination address.
    pub const DESTINATION_ADDRESS: &str = "destination.address";
    /// The server port, when the destination is the server.
    pub const DESTINATION_PORT: &str = "destination.port";
    /// The server port, when the source is the server (reply traffic).
    pub const SOURCE_PORT: &str = "source.port";
    /// `tcp`, `udp`, `icmp`, `icmpv6`, `ipproto_<n>`.
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    /// `ipv4` or `ipv6`.
    pub const NETWORK_TYPE: &str = "network.type";
    /// Namespace of the source end.
    pub const SOURCE_NAMESPACE: &str = "source.k8s.namespace.name";
    /// Workload of the source end (or CIDR group, `external`, `unknown`).
    pub const SOURCE_WORKLOAD: &str = "source.k8s.workload.name";
    /// Workload kind of the source end.
    pub const SOURCE_WORKLOAD_KIND: &str = "source.k8s.workload.kind";
    /// Pod of the source end (opt-in).
    pub const SOURCE_POD: &str = "source.k8s.pod.name";
    /// Node of the source end.
    pub const SOURCE_NODE: &str = "source.k8s.node.name";
    /// The service of the source end, when it is the server (reply traffic).
    pub const SOURCE_SERVICE: &str = "source.k8s.service.name";
    /// Namespace of the destination end.
    pub const DESTINATION_NAMESPACE: &str = "destination.k8s.namespace.name";
    /// Workload of the destination end.
    pub const DESTINATION_WORKLOAD: &str = "destination.k8s.workload.name";
    /// Workload kind of the destination end.
    pub const DESTINATION_WORKLOAD_KIND: &str = "destination.k8s.workload.kind";
    /// Pod of the destination end (opt-in).
    pub const DESTINATION_POD: &str = "destination.k8s.pod.name";
    /// Node of the destination end.
    pub const DESTINATION_NODE: &str = "destination.k8s.node.name";
    /// The service of the destination end (its ClusterIP, or a backing pod's endpoint).
    pub const DESTINATION_SERVICE: &str = "destination.k8s.service.name";
    /// Where the flow's packets came from, relative to the node that saw them: `this_node`,
    /// `other_node` or `outside`. Not a choice: every flow series carries it, so a
    /// cluster-wide sum can count each packet once (`!= other_node`).
    pub const ORIGIN: &str = "netprobe.origin";
}

/// The cardinality budget: which attributes the flow metrics carry, and how many series each
/// may have before the rest is added up in one series marked `otel.metric.overflow=true`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Attributes of `netprobe.flow.packets` and `netprobe.flow.bytes`. Default (unset): with
    /// Kubernetes, both ends' namespace, workload name and kind, the destination's service,
    /// the server port, transport and IP version; standalone, the addresses, server port,
    /// transport and IP version. See the README for every attribute.
    pub flow_attributes: Option<Vec<String>>,
    /// Attributes of the `netprobe.packet.size` histogram (ten series per set). Default
    /// (unset): the same as `flow_attributes`.
    pub size_attributes: Option<Vec<String>>,
    /// Series per metric before overflow. Default: 2000. Range: 1..=1000000.
    pub max_series: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            flow_attributes: None,
            size_attributes: None,
            max_series: 2000,
        }
    }
}

impl MetricsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, list) in [
            ("metrics.flow_attributes", &self.flow_attributes),
            ("metrics.size_attributes", &self.size_attributes),
        ] {
            let Some(list) = list else { continue };
            for (n, name) in list.iter().enumerate() {
                if FlowAttr::parse(name).is_none() {
                    let known: Vec<&str> = FlowAttr::ALL.iter().map(|(n, _)| *n).collect();
                    return Err(ConfigError::invalid(
                        &format!("{key}[{n}]"),
                        format!("unknown attribute {name:?}; known: {}", known.join(", ")),
                    ));
                }
            }
        }
        if !(1..=1_000_000).contains(&self.max_series) {
            return Err(ConfigError::invalid(
                "metrics.max_series",
                "must be in 1..=1000000",
            ));
        }
        Ok(())
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
        (flow_attr::SOURCE_ADDRESS, FlowAttr::SourceAddress),
        (flow_attr::DESTINATION_ADDRESS, FlowAttr::DestinationAddress),
        (flow_attr::DESTINATION_PORT, FlowAttr::ServerPort),
        (flow_attr::NETWORK_TRANSPORT, FlowAttr::Transport),
        (flow_attr::NETWORK_TYPE, FlowAttr::NetworkType),
        (
            flow_attr::SOURCE_NAMESPACE,
            FlowAttr::End(Side::Source, EndPart::Namespace),
        ),
        (
            flow_attr::SOURCE_WORKLOAD,
            FlowAttr::End(Side::Source, EndPart::WorkloadName),
        ),
        (
            flow_attr::SOURCE_WORKLOAD_KIND,
            FlowAttr::End(Side::Source, EndPart::WorkloadKind),
        ),
        (
            flow_attr::SOURCE_POD,
            FlowAttr::End(Side::Source, EndPart::Pod),
        ),
        (
            flow_attr::SOURCE_NODE,
            FlowAttr::End(Side::Source, EndPart::Node),
        ),
        (
            flow_attr::DESTINATION_NAMESPACE,
            FlowAttr::End(Side::Destination, EndPart::Namespace),
        ),
        (
            flow_attr::DESTINATION_WORKLOAD,
            FlowAttr::End(Side::Destination, EndPart::WorkloadName),
        ),
        (
            flow_attr::DESTINATION_WORKLOAD_KIND,
            FlowAttr::End(Side::Destination, EndPart::WorkloadKind),
        ),
        (
            flow_attr::DESTINATION_POD,
            FlowAttr::End(Side::Destination, EndPart::Pod),
        ),
        (
            flow_attr::DESTINATION_NODE,
            FlowAttr::End(Side::Destination, EndPart::Node),
        ),
        (flow_attr::DESTINATION_SERVICE, FlowAttr::ServerService),
    ];

    /// The default set without Kubernetes: addresses, server port, transport, IP version.
    pub const STANDALONE: [&'static str; 5] = [
        flow_attr::SOURCE_ADDRESS,
        flow_attr::DESTINATION_ADDRESS,
        flow_attr::DESTINATION_PORT,
        flow_attr::NETWORK_TRANSPORT,
        flow_attr::NETWORK_TYPE,
    ];

    /// The default set with Kubernetes: workload level, no addresses, no pods.
    pub const CLUSTER: [&'static str; 10] = [
        flow_attr::SOURCE_NAMESPACE,
        flow_attr::SOURCE_WORKLOAD,
        flow_attr::SOURCE_WORKLOAD_KIND,
        flow_attr::DESTINATION_NAMESPACE,
        flow_attr::DESTINATION_WORKLOAD,
        flow_attr::DESTINATION_WORKLOAD_KIND,
        flow_attr::DESTINATION_SERVICE,
        flow_attr::DESTINATION_PORT,
        flow_attr::NETWORK_TRANSPORT,
        flow_attr::NETWORK_TYPE,
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
