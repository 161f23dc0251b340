//! One simulated node for the `collector` section: the metric families one agent sends in
//! each export, built from the agent's own catalogue entries, bucket bounds and health
//! families, with the attributes a cluster install uses (workload level, `metrics
//! .flow_attributes`' Kubernetes default) and the resource attributes the agent sets.
//!
//! What a node is (30 pods, as the README's 1,000-node estimate of the API server's load):
//! - 16 TCP conversations (a local client workload → a server workload's port): each a
//!   request series with the connection metrics (opened, closed by fin, active, SYN
//!   retransmits, the handshake histogram; refusals on every fourth) and a reply series;
//! - 6 UDP conversations both ways, 4 of them DNS to CoreDNS (responses by code and the DNS
//!   latency histogram on the request series);
//! - every other metric of the catalogue that is not per flow: the agent's health counters
//!   (`metrics::agent::families`, as the exporter appends them), pods and services of 12
//!   namespaces, 31 attached interfaces, the rest with two or three values per attribute.
//!
//! That is ~1,130 Prometheus series a node (the section prints the exact figure), between
//! the ~225 of the one-node lab (six UDP paths and a few TCP exchanges) and a busy node's
//! several thousand; the budget (`metrics.max_series`, 2,000 per flow metric) allows far
//! more, so every figure of the section is also given per series.

use otel_netprobe::{
    config::flow_attr as fa,
    flow::{Labels, conns::HANDSHAKE_BOUNDS},
    metrics::{self, Family, Histogram, Kind, Metric, Value, catalogue, flows::SIZE_BOUNDS},
    telemetry::Telemetry,
};

/// TCP conversations a node's pods take part in.
const TCP: usize = 16;
/// UDP conversations (both directions), the first [`DNS`] of them DNS.
const UDP: usize = 6;
/// DNS client workloads.
const DNS: usize = 4;
/// Namespaces of the cluster (the k8s gauges are per namespace).
const NAMESPACES: usize = 12;
/// Interfaces attached on the node (30 pod veths and the uplink).
const INTERFACES: usize = 31;
/// Server ports the conversations use.
const PORTS: [&str; 6] = ["443", "8080", "5432", "6379", "9092", "3306"];

/// The catalogue entry with this OTLP name.
fn entry(otlp: &str) -> &'static Metric {
    catalogue::all()
        .find(|m| m.otlp == otlp)
        .unwrap_or_else(|| panic!("{otlp} is not in the catalogue"))
}

/// A workload's (namespace, name) in a cluster of ~3,000 workloads.
fn workload(k: usize) -> (String, String) {
    let k = k % 3000;
    (
        format!("team-{:02}", k % NAMESPACES),
        format!("service-{k:04}-api"),
    )
}

/// The labels of a flow series: both ends at workload level, the server port on the side it
/// is on (`destination.port` on requests, `source.port` on replies).
fn flow_labels(client: usize, server: usize, port: &str, tcp: bool, request: bool) -> Labels {
    let ((cns, cwl), (sns, swl)) = (workload(client), workload(server));
    let ((src_ns, src), (dst_ns, dst)) = if request {
        ((cns, cwl.clone()), (sns, swl.clone()))
    } else {
        ((sns, swl.clone()), (cns, cwl.clone()))
    };
    let mut l: Labels = vec![
        (fa::SOURCE_NAMESPACE, src_ns),
        (fa::SOURCE_WORKLOAD, src),
        (fa::SOURCE_WORKLOAD_KIND, "Deployment".into()),
        (fa::DESTINATION_NAMESPACE, dst_ns),
        (fa::DESTINATION_WORKLOAD, dst),
        (fa::DESTINATION_WORKLOAD_KIND, "Deployment".into()),
    ];
    if request {
        l.push((fa::DESTINATION_SERVICE, swl));
        l.push((fa::DESTINATION_PORT, port.into()));
    } else {
        l.push((fa::SOURCE_SERVICE, swl));
        l.push((fa::SOURCE_PORT, port.into()));
    }
    l.push((
        fa::NETWORK_TRANSPORT,
        if tcp { "tcp" } else { "udp" }.into(),
    ));
    l.push((fa::NETWORK_TYPE, "ipv4".into()));
    l
}

/// A histogram over `bounds` with `n` observations spread over its first buckets.
fn histogram(bounds: &'static [f64], n: u64, mean: f64) -> Value {
    let mut counts = vec![0; bounds.len() + 1];
    for (i, c) in counts.iter_mut().take(4).enumerate() {
        *c = n / (2 << i);
    }
    counts[4] += n - counts.iter().sum::<u64>();
    Value::Histogram(Histogram {
        bounds,
        counts: counts.into_boxed_slice(),
        sum: n as f64 * mean,
        count: n,
    })
}

/// The families one node sends at its `round`-th export (counters grow with the rounds).
pub fn families(node: usize, round: u64) -> Vec<Family> {
    let by_name = |otlp| Family::new(entry(otlp));
    let mut fam: Vec<Family> = [
        "netprobe.flow.packets",
        "netprobe.flow.bytes",
        "netprobe.packet.size",
        "netprobe.tcp.connections.opened",
        "netprobe.tcp.connections.failed",
        "netprobe.tcp.connections.closed",
        "netprobe.tcp.connections.active",
        "netprobe.tcp.syn.retransmits",
        "netprobe.tcp.handshake.duration",
        "netprobe.dns.responses",
        "netprobe.dns.duration",
    ]
    .into_iter()
    .map(by_name)
    .collect();
    let r = round + 1;
    let traffic = |labels: Labels, packets: u64, fam: &mut Vec<Family>| {
        fam[0].push(labels.clone(), Value::Int(packets));
        fam[1].push(labels.clone(), Value::Int(packets * 700));
        fam[2].push(labels, histogram(&SIZE_BOUNDS, packets, 700.0));
    };
    for c in 0..TCP {
        let (client, server) = (node * 8 + c / 2, node * 13 + c * 7);
        let port = PORTS[c % PORTS.len()];
        let req = flow_labels(client, server, port, true, true);
        traffic(req.clone(), 1000 * r + c as u64, &mut fam);
        traffic(
            flow_labels(client, server, port, true, false),
            900 * r,
            &mut fam,
        );
        let opened = 10 * r;
        fam[3].push(req.clone(), Value::Int(opened));
        if c % 4 == 0 {
            let mut l = req.clone();
            l.push((metrics::conns::TCP_FAILURE_REASON, "refused".into()));
            fam[4].push(l, Value::Int(r));
        }
        let mut l = req.clone();
        l.push((metrics::conns::TCP_CLOSE_REASON, "fin".into()));
        fam[5].push(l, Value::Int(opened - 2));
        fam[6].push(req.clone(), Value::Int(2));
        fam[7].push(req.clone(), Value::Int(r / 2));
        fam[8].push(req, histogram(&HANDSHAKE_BOUNDS, opened, 0.000_3));
    }
    for u in 0..UDP {
        let client = node * 8 + u;
        let (server, port) = if u < DNS {
            (2999, "53")
        } else {
            (node * 17 + u, "8125")
        };
        let req = flow_labels(client, server, port, false, true);
        traffic(req.clone(), 50 * r, &mut fam);
        traffic(
            flow_labels(client, server, port, false, false),
            50 * r,
            &mut fam,
        );
        if u < DNS {
            for (code, n) in [("NoError", 45 * r), ("NXDomain", 5 * r)] {
                let mut l = req.clone();
                l.push((metrics::dns::RESPONSE_CODE, code.into()));
                fam[9].push(l, Value::Int(n));
            }
            fam[10].push(req, histogram(&metrics::dns::BOUNDS, 50 * r, 0.000_8));
        }
    }
    let health = metrics::agent::families(&Telemetry::default());
    let sent: Vec<&str> = fam.iter().chain(&health).map(|f| f.metric.otlp).collect();
    let rest: Vec<Family> = catalogue::all()
        .filter(|m| !m.per_flow && !sent.contains(&m.otlp))
        .map(|m| node_metric(m, r))
        .collect();
    fam.extend(health);
    fam.extend(rest);
    fam.retain(|f| !f.points.is_empty());
    fam
}

/// A non-flow metric's points: one per value of its first attribute (namespaces,
/// interfaces, the flow metrics for the series gauges, a few of anything else).
fn node_metric(m: &'static Metric, r: u64) -> Family {
    let mut f = Family::new(m);
    let value = |i: usize| match m.kind {
        Kind::Counter => Value::Int(r * 10 + i as u64),
        Kind::Gauge | Kind::Histogram => Value::Int(i as u64 + 1),
    };
    let Some((&first, others)) = m.attributes.split_first() else {
        f.push(Vec::new(), value(0));
        return f;
    };
    let values: Vec<String> = match first {
        metrics::k8s::K8S_NAMESPACE => (0..NAMESPACES).map(|k| format!("team-{k:02}")).collect(),
        "interface" => (0..INTERFACES)
            .map(|i| {
                if i == 0 {
                    "eth0".to_owned()
                } else {
                    format!("veth{:08x}", i * 2_654_435_761 % (1 << 32))
                }
            })
            .collect(),
        "metric" => [
            "netprobe.flow.packets",
            "netprobe.flow.bytes",
            "netprobe.packet.size",
            "netprobe.tcp.connections.opened",
            "netprobe.dns.responses",
        ]
        .map(String::from)
        .into(),
        _ => ["a", "b", "c"].map(String::from).into(),
    };
    for (i, v) in values.into_iter().enumerate() {
        let mut labels: Labels = vec![(first, v)];
        labels.extend(others.iter().map(|&k| (k, "tc".to_owned())));
        f.push(labels, value(i));
    }
    f
}

/// The resource attributes the agent sets on a node of the cluster (`otlp::resource` with
/// `K8S_NODE_NAME` and `otlp.cluster_name`): `service.instance.id` is the node.
pub fn resource(node: usize) -> Vec<(String, String)> {
    let name = node_name(node);
    [
        ("service.name", "otel-netprobe".to_owned()),
        ("service.version", env!("CARGO_PKG_VERSION").to_owned()),
        ("service.instance.id", name.clone()),
        ("host.name", name.clone()),
        ("k8s.node.name", name),
        ("k8s.cluster.name", "prod-eu-1".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into()
}

/// The node's name, as cloud providers name them.
pub fn node_name(node: usize) -> String {
    format!(
        "ip-10-{}-{}-{}.eu-west-1.compute.internal",
        node / 250,
        node % 250,
        17
    )
}

/// Prometheus series the families make on a scrape page: one per point, a histogram's
/// buckets (+Inf included), `_sum` and `_count`.
pub fn prometheus_series(families: &[Family]) -> usize {
    families
        .iter()
        .flat_map(|f| &f.points)
        .map(|p| match &p.value {
            Value::Histogram(h) => h.counts.len() + 2,
            _ => 1,
        })
        .sum()
}
