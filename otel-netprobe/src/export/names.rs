//! The metric catalogue: every metric and attribute name the agent emits, in one place.
//!
//! OTLP names are dotted; the Prometheus names are what the Collector's prometheus exporter
//! makes of them (dots to underscores, unit suffix, `_total` on counters), and what the agent's
//! own `/metrics` serves, so dashboards work either way. Tests check that the dashboards and
//! alert rules in the repository only use names listed here.

/// What a metric's points are: cumulative counters, gauges, or histograms with their bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A monotonic cumulative sum (OTLP `Sum`, Prometheus `counter`).
    Counter,
    /// A value at the time of the frame (OTLP `Gauge`, Prometheus `gauge`).
    Gauge,
    /// Bucket counts, sum and count (OTLP `Histogram`, Prometheus `histogram`).
    Histogram,
}

impl Kind {
    /// `counter`, `gauge` or `histogram`: the Prometheus `# TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Compares with the spelling (`m.kind == "counter"`), as when `kind` was a string.
impl PartialEq<&str> for Kind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A metric: its OTLP name, unit, and Prometheus name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// OTLP name.
    pub otlp: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    /// Prometheus name (without `_bucket`/`_sum`/`_count` for histograms).
    pub prometheus: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// One-line help text.
    pub help: &'static str,
}

macro_rules! metric {
    ($id:ident, $otlp:literal, $unit:literal, $prom:literal, $kind:ident, $help:literal) => {
        #[doc = $help]
        pub const $id: Metric = Metric {
            otlp: $otlp,
            unit: $unit,
            prometheus: $prom,
            kind: Kind::$kind,
            help: $help,
        };
    };
}

metric!(
    FLOW_PACKETS,
    "netprobe.flow.packets",
    "{packet}",
    "netprobe_flow_packets_total",
    Counter,
    "Wire packets per flow."
);
metric!(
    FLOW_BYTES,
    "netprobe.flow.bytes",
    "By",
    "netprobe_flow_bytes_total",
    Counter,
    "IP bytes (header + payload) per flow."
);
metric!(
    PACKET_SIZE,
    "netprobe.packet.size",
    "By",
    "netprobe_packet_size_bytes",
    Histogram,
    "Distribution of IP packet sizes."
);
metric!(
    AGENT_FLOWS_TRACKED,
    "netprobe.agent.flows.tracked",
    "{flow}",
    "netprobe_agent_flows_tracked",
    Gauge,
    "Flows tracked in user space."
);
metric!(
    AGENT_FLOW_TABLE_ENTRIES,
    "netprobe.agent.flow_table.entries",
    "{flow}",
    "netprobe_agent_flow_table_entries",
    Gauge,
    "Entries in the kernel flow table."
);
metric!(
    AGENT_FLOW_TABLE_CAPACITY,
    "netprobe.agent.flow_table.capacity",
    "{flow}",
    "netprobe_agent_flow_table_capacity",
    Gauge,
    "Capacity of the kernel flow table."
);
metric!(
    AGENT_FLOW_TABLE_FILL,
    "netprobe.agent.flow_table.fill",
    "1",
    "netprobe_agent_flow_table_fill_ratio",
    Gauge,
    "Fraction of the kernel flow table in use."
);
metric!(
    AGENT_FLOW_TABLE_MEMORY,
    "netprobe.agent.flow_table.memory",
    "By",
    "netprobe_agent_flow_table_memory_bytes",
    Gauge,
    "Kernel memory of the flow table."
);
metric!(
    AGENT_EVICTIONS,
    "netprobe.agent.evictions",
    "{flow}",
    "netprobe_agent_evictions_total",
    Counter,
    "Flows moved out of the kernel table (reason=kernel_idle) or forgotten (reason=expired)."
);
metric!(
    AGENT_PARSE_ERRORS,
    "netprobe.agent.parse_errors",
    "{packet}",
    "netprobe_agent_parse_errors_total",
    Counter,
    "Malformed or truncated packets, passed and counted per layer."
);
metric!(
    AGENT_NON_IP,
    "netprobe.agent.non_ip_packets",
    "{packet}",
    "netprobe_agent_non_ip_packets_total",
    Counter,
    "Non-IP packets by EtherType class."
);
metric!(
    AGENT_FRAGMENTS,
    "netprobe.agent.fragments",
    "{packet}",
    "netprobe_agent_fragments_total",
    Counter,
    "Non-first IP fragments (counted in their flow without ports)."
);
metric!(
    AGENT_IPV6_EXT_TOO_LONG,
    "netprobe.agent.ipv6_ext_too_long",
    "{packet}",
    "netprobe_agent_ipv6_ext_too_long_total",
    Counter,
    "IPv6 packets whose extension-header chain was too long to reach the transport."
);
metric!(
    AGENT_UNTRACKED_PACKETS,
    "netprobe.agent.untracked.packets",
    "{packet}",
    "netprobe_agent_untracked_packets_total",
    Counter,
    "Packets not tracked because the kernel flow table was full."
);
metric!(
    AGENT_UNTRACKED_BYTES,
    "netprobe.agent.untracked.bytes",
    "By",
    "netprobe_agent_untracked_bytes_total",
    Counter,
    "IP bytes not tracked because the kernel flow table was full."
);
metric!(
    AGENT_READ_CYCLES,
    "netprobe.agent.read.cycles",
    "{cycle}",
    "netprobe_agent_read_cycles_total",
    Counter,
    "Kernel map read cycles completed."
);
metric!(
    AGENT_READ_ERRORS,
    "netprobe.agent.read.errors",
    "{cycle}",
    "netprobe_agent_read_errors_total",
    Counter,
    "Kernel map read cycles that failed."
);
metric!(
    AGENT_READ_DURATION,
    "netprobe.agent.read.duration",
    "s",
    "netprobe_agent_read_duration_seconds",
    Gauge,
    "Duration of the last kernel map read cycle."
);
metric!(
    AGENT_INTERFACES,
    "netprobe.agent.interfaces",
    "{interface}",
    "netprobe_agent_interfaces",
    Gauge,
    "Interfaces attached, by ingress hook."
);
metric!(
    AGENT_INTERFACE_INFO,
    "netprobe.agent.interface.info",
    "{interface}",
    "netprobe_agent_interface_info",
    Gauge,
    "One series per attached interface naming its hooks."
);
metric!(
    AGENT_ATTACH_ERRORS,
    "netprobe.agent.attach.errors",
    "{error}",
    "netprobe_agent_attach_errors_total",
    Counter,
    "Attach attempts that failed."
);
metric!(
    AGENT_EXPORT_REQUESTS,
    "netprobe.agent.export.requests",
    "{request}",
    "netprobe_agent_export_requests_total",
    Counter,
    "OTLP export requests, by result (ok, failed)."
);
metric!(
    AGENT_EXPORT_DROPPED,
    "netprobe.agent.export.dropped",
    "{datapoint}",
    "netprobe_agent_export_dropped_total",
    Counter,
    "Data points of failed OTLP exports (the next export carries the totals)."
);
metric!(
    AGENT_SERIES,
    "netprobe.agent.series",
    "{series}",
    "netprobe_agent_series",
    Gauge,
    "Series each flow metric reports, the overflow series included."
);
metric!(
    AGENT_SERIES_OVERFLOW,
    "netprobe.agent.series.overflow_flows",
    "{flow}",
    "netprobe_agent_series_overflow_flows",
    Gauge,
    "Flows counted in a metric's overflow series (otel.metric.overflow=true): over the series budget."
);

metric!(
    K8S_PODS,
    "netprobe.k8s.pods",
    "{pod}",
    "netprobe_k8s_pods",
    Gauge,
    "Pods per namespace (running or pending; the whole cluster, as the API lists it)."
);
metric!(
    K8S_SERVICES,
    "netprobe.k8s.services",
    "{service}",
    "netprobe_k8s_services",
    Gauge,
    "Services per namespace."
);
metric!(
    AGENT_K8S_SYNCED,
    "netprobe.agent.k8s.synced",
    "",
    "netprobe_agent_k8s_synced",
    Gauge,
    "1 once every Kubernetes resource has been listed (flow ends can be named), else 0."
);
metric!(
    AGENT_K8S_OBJECTS,
    "netprobe.agent.k8s.objects",
    "{object}",
    "netprobe_agent_k8s_objects",
    Gauge,
    "Kubernetes objects held in the agent's index, per resource."
);
metric!(
    AGENT_K8S_ADDRESSES,
    "netprobe.agent.k8s.addresses",
    "{address}",
    "netprobe_agent_k8s_addresses",
    Gauge,
    "Addresses (and, as kind=endpoint, IP:port endpoints) the agent's Kubernetes index resolves."
);
metric!(
    AGENT_K8S_WATCH_RESTARTS,
    "netprobe.agent.k8s.watch.restarts",
    "{restart}",
    "netprobe_agent_k8s_watch_restarts_total",
    Counter,
    "Kubernetes watch failures, per resource: each is a reconnect with backoff, or a re-list after 410 Gone."
);
metric!(
    AGENT_K8S_EVENTS,
    "netprobe.agent.k8s.events",
    "{event}",
    "netprobe_agent_k8s_events_total",
    Counter,
    "Kubernetes watch events applied to the index."
);
metric!(
    AGENT_K8S_LOOKUPS,
    "netprobe.agent.k8s.lookups",
    "{end}",
    "netprobe_agent_k8s_lookups",
    Gauge,
    "Flow ends in the current series by how they were named: found in the index, external, or unknown (a miss)."
);
metric!(
    AGENT_FLOWS_FILTERED,
    "netprobe.agent.flows.filtered",
    "{flow}",
    "netprobe_agent_flows_filtered",
    Gauge,
    "Flows left out of the flow metrics by the namespace filter (k8s.namespaces)."
);

metric!(
    TCP_OPENED,
    "netprobe.tcp.connections.opened",
    "{connection}",
    "netprobe_tcp_connections_opened_total",
    Counter,
    "TCP connections whose handshake completed as seen on the node (a SYN answered by its SYN-ACK), client to server."
);
metric!(
    TCP_FAILED,
    "netprobe.tcp.connections.failed",
    "{connection}",
    "netprobe_tcp_connections_failed_total",
    Counter,
    "TCP connections that failed: netprobe.tcp.failure.reason=refused (a RST answered the SYN) or unanswered (no SYN-ACK within the handshake timeout)."
);
metric!(
    TCP_CLOSED,
    "netprobe.tcp.connections.closed",
    "{connection}",
    "netprobe_tcp_connections_closed_total",
    Counter,
    "TCP connections that closed: netprobe.tcp.close.reason=fin (both sides), rst (after the handshake) or idle (past the idle timeout)."
);
metric!(
    TCP_ACTIVE,
    "netprobe.tcp.connections.active",
    "{connection}",
    "netprobe_tcp_connections_active",
    Gauge,
    "TCP connections open now (opened since the agent started, not closed)."
);
metric!(
    TCP_HANDSHAKE,
    "netprobe.tcp.handshake.duration",
    "s",
    "netprobe_tcp_handshake_duration_seconds",
    Histogram,
    "First SYN to the matching SYN-ACK, as seen on the node (retransmissions included in the wait)."
);
metric!(
    TCP_SYN_RETRANSMITS,
    "netprobe.tcp.syn.retransmits",
    "{packet}",
    "netprobe_tcp_syn_retransmits_total",
    Counter,
    "SYNs a client sent again (same ISN) while waiting for an answer."
);
metric!(
    PACKET_DROPS,
    "netprobe.packet.drops",
    "{packet}",
    "netprobe_packet_drops_total",
    Counter,
    "Packets the kernel dropped, per flow and netprobe.drop.reason (the running kernel's name; unknown before 5.17)."
);
metric!(
    PACKET_DROP_BYTES,
    "netprobe.packet.drop.bytes",
    "By",
    "netprobe_packet_drop_bytes_total",
    Counter,
    "IP bytes of the packets the kernel dropped, per flow and netprobe.drop.reason."
);
metric!(
    ICMP_ERRORS,
    "netprobe.icmp.errors",
    "{message}",
    "netprobe_icmp_errors_total",
    Counter,
    "ICMP and ICMPv6 errors (unreachable, time exceeded, packet too big, parameter problem) on the flow of the packet they quote."
);
metric!(
    AGENT_CONN_TABLE_ENTRIES,
    "netprobe.agent.connection_table.entries",
    "{connection}",
    "netprobe_agent_connection_table_entries",
    Gauge,
    "Entries in the kernel connection table (handshakes in flight and open connections)."
);
metric!(
    AGENT_CONN_TABLE_CAPACITY,
    "netprobe.agent.connection_table.capacity",
    "{connection}",
    "netprobe_agent_connection_table_capacity",
    Gauge,
    "Capacity of the kernel connection table."
);
metric!(
    AGENT_CONNS_EVICTED,
    "netprobe.agent.connections.evicted",
    "{connection}",
    "netprobe_agent_connections_evicted_total",
    Counter,
    "Connections the full kernel table pushed out before their end (their outcome is not counted)."
);
metric!(
    AGENT_DROPS_UNPARSED,
    "netprobe.agent.drops.unparsed",
    "{packet}",
    "netprobe_agent_drops_unparsed_total",
    Counter,
    "Dropped buffers whose headers could not be read as IP (not IP, or not parsed yet when dropped)."
);
metric!(
    AGENT_KERNEL_FEATURE,
    "netprobe.agent.kernel.feature",
    "",
    "netprobe_agent_kernel_feature",
    Gauge,
    "1 where the running kernel (kernel attribute) offers a feature the agent uses, 0 where it lacks it (feature attribute)."
);
metric!(
    AGENT_HTTP_CONNECTIONS,
    "netprobe.agent.http.connections",
    "{connection}",
    "netprobe_agent_http_connections_total",
    Counter,
    "Connections to the agent's HTTP server: accepted, or refused (every slot busy answering a request, or accept failed)."
);
metric!(
    AGENT_HTTP_CONNECTIONS_CLOSED,
    "netprobe.agent.http.connections.closed",
    "{connection}",
    "netprobe_agent_http_connections_closed_total",
    Counter,
    "HTTP connections closed, by reason: done (the client or the protocol ended it), header_timeout, idle_timeout, evicted (its slot given to a newcomer), shutdown."
);
metric!(
    AGENT_HTTP_CONNECTIONS_OPEN,
    "netprobe.agent.http.connections.open",
    "{connection}",
    "netprobe_agent_http_connections_open",
    Gauge,
    "HTTP connections open now (at most http.max_connections)."
);

/// Every metric in the catalogue.
pub const ALL: &[Metric] = &[
    FLOW_PACKETS,
    FLOW_BYTES,
    PACKET_SIZE,
    TCP_OPENED,
    TCP_FAILED,
    TCP_CLOSED,
    TCP_ACTIVE,
    TCP_HANDSHAKE,
    TCP_SYN_RETRANSMITS,
    PACKET_DROPS,
    PACKET_DROP_BYTES,
    ICMP_ERRORS,
    AGENT_FLOWS_TRACKED,
    AGENT_FLOW_TABLE_ENTRIES,
    AGENT_FLOW_TABLE_CAPACITY,
    AGENT_FLOW_TABLE_FILL,
    AGENT_FLOW_TABLE_MEMORY,
    AGENT_EVICTIONS,
    AGENT_PARSE_ERRORS,
    AGENT_NON_IP,
    AGENT_FRAGMENTS,
    AGENT_IPV6_EXT_TOO_LONG,
    AGENT_UNTRACKED_PACKETS,
    AGENT_UNTRACKED_BYTES,
    AGENT_READ_CYCLES,
    AGENT_READ_ERRORS,
    AGENT_READ_DURATION,
    AGENT_INTERFACES,
    AGENT_INTERFACE_INFO,
    AGENT_ATTACH_ERRORS,
    AGENT_EXPORT_REQUESTS,
    AGENT_EXPORT_DROPPED,
    AGENT_SERIES,
    AGENT_SERIES_OVERFLOW,
    K8S_PODS,
    K8S_SERVICES,
    AGENT_K8S_SYNCED,
    AGENT_K8S_OBJECTS,
    AGENT_K8S_ADDRESSES,
    AGENT_K8S_WATCH_RESTARTS,
    AGENT_K8S_EVENTS,
    AGENT_K8S_LOOKUPS,
    AGENT_FLOWS_FILTERED,
    AGENT_CONN_TABLE_ENTRIES,
    AGENT_CONN_TABLE_CAPACITY,
    AGENT_CONNS_EVICTED,
    AGENT_DROPS_UNPARSED,
    AGENT_KERNEL_FEATURE,
    AGENT_HTTP_CONNECTIONS,
    AGENT_HTTP_CONNECTIONS_CLOSED,
    AGENT_HTTP_CONNECTIONS_OPEN,
];

/// Attribute names (OTLP); Prometheus labels replace the dots with underscores.
pub mod attr {
    /// Why a TCP connection failed: `refused`, `unanswered`.
    pub const TCP_FAILURE_REASON: &str = "netprobe.tcp.failure.reason";
    /// How a TCP connection closed: `fin`, `rst`, `idle`.
    pub const TCP_CLOSE_REASON: &str = "netprobe.tcp.close.reason";
    /// Why the kernel dropped a packet (`enum skb_drop_reason` without `SKB_DROP_REASON_`).
    pub const DROP_REASON: &str = "netprobe.drop.reason";
    /// ICMP (or ICMPv6) type.
    pub const ICMP_TYPE: &str = "netprobe.icmp.type";
    /// ICMP code.
    pub const ICMP_CODE: &str = "netprobe.icmp.code";
    /// A kernel feature the agent uses.
    pub const FEATURE: &str = "feature";
    /// The running kernel's release.
    pub const KERNEL: &str = "kernel";
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
    /// Parse-error layer.
    pub const LAYER: &str = "layer";
    /// Non-IP EtherType class.
    pub const CLASS: &str = "class";
    /// Eviction reason.
    pub const REASON: &str = "reason";
    /// Ingress hook.
    pub const HOOK: &str = "hook";
    /// Interface name.
    pub const INTERFACE: &str = "interface";
    /// Whether TC egress is attached.
    pub const EGRESS: &str = "egress";
    /// How TC programs are attached (`tcx`, `clsact`, `none`).
    pub const TC_ATTACH: &str = "tc_attach";
    /// Outcome of an export.
    pub const RESULT: &str = "result";
    /// A metric's OTLP name.
    pub const METRIC: &str = "metric";
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
    /// Namespace of the per-namespace gauges.
    pub const K8S_NAMESPACE: &str = "k8s.namespace.name";
    /// A Kubernetes resource (`pods`, `services`, ...).
    pub const RESOURCE: &str = "resource";
    /// What an index entry is (`address`, `endpoint`).
    pub const KIND: &str = "kind";
}

/// The Prometheus label for an OTLP attribute name.
pub fn prometheus_label(attr: &str) -> String {
    attr.replace('.', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_follow_the_collector_rules() {
        for m in ALL {
            let base = m.otlp.replace('.', "_");
            let unit = match m.unit {
                "By" => "_bytes",
                "s" => "_seconds",
                "1" if m.prometheus.ends_with("_ratio") => "_ratio",
                _ => "",
            };
            let mut expected = base.clone();
            if !expected.ends_with(unit) {
                expected.push_str(unit);
            }
            if m.kind == Kind::Counter {
                expected.push_str("_total");
            }
            assert_eq!(m.prometheus, expected, "{}", m.otlp);
        }
    }
}
