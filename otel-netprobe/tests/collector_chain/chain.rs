//! The chain users install, in one node lab: the agent binary (configured by `OTEL_*` variables
//! alone) → the real Collector, run from the chart's rendered configuration in its memory cgroup
//! → a real Prometheus that scrapes the Collector's exporter (as the chart's ServiceMonitor
//! does, `honor_labels`) or receives its remote writes. All of it inside the lab's node
//! namespace, on its loopback, which the agent does not count.

use std::{collections::BTreeMap, net::SocketAddr, process::Command, time::Duration};

use serde_json::{Value, json};

use crate::{
    collector::{Collector, Pod},
    common::{
        NodeLab,
        addr::{NODE_BR, NODE_UPLINK, OUTSIDE, PODS},
        backends::Prometheus,
        binary::{self, Agent, sample, samples},
        patient, traffic,
    },
};

/// The node's name (the downward API's `K8S_NODE_NAME`), hence the agent's instance.
pub const NODE: &str = "node-a";
/// `k8s.cluster.name`, given through `OTEL_RESOURCE_ATTRIBUTES`.
pub const CLUSTER: &str = "lab";
/// Where the agent serves `/metrics` in the node namespace.
pub const LISTEN: &str = "127.0.0.1:9464";

/// How the Collector hands the metrics to Prometheus: the chart's `collector.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The prometheus exporter on :8889, scraped every second.
    Scrape,
    /// `prometheus_remote_write` into Prometheus' `/api/v1/write`.
    RemoteWrite,
}

/// How the agent talks OTLP to the Collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP/gRPC on :4317.
    Grpc,
    /// OTLP/HTTP (protobuf) on :4318.
    Http,
}

/// A lab with a Collector and a Prometheus in its node namespace.
pub struct Chain {
    /// Prometheus, scraping or receiving.
    pub prom: Prometheus,
    /// The Collector.
    pub collector: Collector,
    /// The lab (dropped last).
    pub lab: NodeLab,
    /// How Prometheus gets the data.
    pub mode: Mode,
}

/// Prometheus scraping the Collector's exporter as the chart's ServiceMonitor does.
fn scrape_config(port: u16) -> String {
    format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: otel-collector\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
}

impl Chain {
    /// The lab, the chart's Collector in `mode`, and Prometheus.
    pub fn new(tag: &str, mode: Mode) -> Self {
        let lab = NodeLab::new(tag);
        let ns = Some(lab.node.name.as_str());
        let (prom, collector) = match mode {
            Mode::Scrape => {
                let pod = Pod::from_chart("chart scrape", &json!({}));
                let collector = Collector::start(&lab.node, pod);
                let port = collector.pod().port("/exporters/prometheus/endpoint");
                (
                    Prometheus::start_in_with(ns, &scrape_config(port), &[]),
                    collector,
                )
            }
            Mode::RemoteWrite => {
                let receiver = ["--web.enable-remote-write-receiver"];
                let prom = Prometheus::start_in_with(ns, "global: {}\n", &receiver);
                let url = format!("{}/api/v1/write", prom.url);
                let values =
                    json!({"collector": {"mode": "remoteWrite", "remoteWrite": {"url": url}}});
                let pod = Pod::from_chart("chart remoteWrite", &values);
                (prom, Collector::start(&lab.node, pod))
            }
        };
        println!(
            "{mode:?}: Collector healthy {:.2} s after its start",
            collector.started_in.as_secs_f64()
        );
        Self {
            prom,
            collector,
            lab,
            mode,
        }
    }

    /// `otel-netprobe run` sending to the Collector, configured by `OTEL_*` variables alone
    /// (and `K8S_NODE_NAME`, the downward API's variable the chart sets), exporting every
    /// second; `extra` adds or replaces variables.
    pub fn agent_command(&self, protocol: Protocol, extra: &[(&str, &str)]) -> Command {
        let (endpoint, name) = match protocol {
            Protocol::Grpc => ("/receivers/otlp/protocols/grpc/endpoint", "grpc"),
            Protocol::Http => ("/receivers/otlp/protocols/http/endpoint", "http/protobuf"),
        };
        let port = self.collector.pod().port(endpoint);
        let mut cmd = binary::command(&["run"]);
        cmd.envs([
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            ),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", name.to_owned()),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000".to_owned()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("k8s.cluster.name={CLUSTER}"),
            ),
            ("K8S_NODE_NAME", NODE.to_owned()),
        ]);
        cmd.envs(extra.iter().copied());
        cmd
    }

    /// Starts `cmd` in the node namespace and waits until it has attached the node's four
    /// interfaces.
    pub fn start_agent(&self, cmd: Command) -> Agent {
        let listen: SocketAddr = LISTEN.parse().expect("listen address");
        let agent = Agent::start(&self.lab.node, cmd, listen);
        agent.wait_metrics("4 interfaces at TC", |m| {
            sample(m, "netprobe_agent_interfaces{hook=\"tc\"}") == Some(4.0)
        });
        agent
    }

    /// Polls `promql` (a single series) until its value is `want`; 60 s at most.
    pub fn wait_value(&self, promql: &str, want: f64) {
        self.prom
            .wait_query(promql, patient(Duration::from_secs(60)), |v| {
                crate::common::backends::single_value(v) == Some(want)
            });
    }
}

/// One UDP path of the lab: name, (from, source address, to, destination address), source and
/// destination ports, datagrams and payload bytes.
pub struct UdpPath {
    /// `pod-pod`, ...
    pub name: &'static str,
    /// Source address.
    pub src: &'static str,
    /// Destination address.
    pub dst: &'static str,
    /// Source port.
    pub sport: u16,
    /// Destination (server) port.
    pub dport: u16,
    /// Datagrams sent.
    pub count: usize,
    /// Payload bytes each.
    pub payload: usize,
}

/// Every path of the node, with counts and sizes of their own (sizes on bucket edges too).
pub const PATHS: [UdpPath; 6] = [
    UdpPath {
        name: "pod-pod",
        src: PODS[0],
        dst: PODS[1],
        sport: 40101,
        dport: 7001,
        count: 10,
        payload: 200,
    },
    UdpPath {
        name: "pod-node",
        src: PODS[0],
        dst: NODE_BR,
        sport: 40102,
        dport: 7002,
        count: 7,
        payload: 36,
    },
    UdpPath {
        name: "pod-outside",
        src: PODS[1],
        dst: OUTSIDE,
        sport: 40103,
        dport: 7003,
        count: 5,
        payload: 1472,
    },
    UdpPath {
        name: "outside-pod",
        src: OUTSIDE,
        dst: PODS[2],
        sport: 40104,
        dport: 7004,
        count: 9,
        payload: 1000,
    },
    UdpPath {
        name: "node-outside",
        src: NODE_UPLINK,
        dst: OUTSIDE,
        sport: 40105,
        dport: 7005,
        count: 4,
        payload: 37,
    },
    UdpPath {
        name: "node-pod",
        src: NODE_BR,
        dst: PODS[2],
        sport: 40106,
        dport: 7006,
        count: 3,
        payload: 500,
    },
];

impl UdpPath {
    /// The labels of its series (standalone: addresses, server port, transport, IP version,
    /// and the origin: this node's own addresses are `this_node`, others unknown, `outside`).
    pub fn labels(&self) -> String {
        let origin = if [NODE_BR, NODE_UPLINK].contains(&self.src) {
            "this_node"
        } else {
            "outside"
        };
        format!(
            "source_address=\"{}\",destination_address=\"{}\",destination_port=\"{}\",network_transport=\"udp\",network_type=\"ipv4\",netprobe_origin=\"{origin}\"",
            self.src, self.dst, self.dport
        )
    }

    /// IP bytes of all its datagrams (UDP and IPv4 headers: 28 bytes each).
    pub fn bytes(&self) -> usize {
        self.count * (self.payload + 28)
    }

    /// Sends `n` of its datagrams (from its source port) and waits until they arrived.
    pub fn send(&self, lab: &NodeLab, n: usize) {
        let ns = |addr: &str| {
            if addr == OUTSIDE {
                &lab.outside
            } else if addr == NODE_BR || addr == NODE_UPLINK {
                &lab.node
            } else {
                let i = PODS.iter().position(|p| *p == addr).expect("a lab address");
                &lab.pods[i]
            }
        };
        traffic::udp(
            ns(self.src),
            &format!("{}:{}", self.src, self.sport),
            ns(self.dst),
            &format!("{}:{}", self.dst, self.dport),
            n,
            self.payload,
        );
    }
}

/// The labels the Collector adds to every series the agent's `/metrics` serves, and their
/// values: the resource (`resource_constant_labels: included: ["*"]`) with `service.name` and
/// `service.instance.id` also as `job` and `instance`, and the instrumentation scope.
pub fn added_labels() -> BTreeMap<&'static str, String> {
    let version = env!("CARGO_PKG_VERSION").to_owned();
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("host name");
    let host = host.trim().to_owned();
    BTreeMap::from([
        ("job", "otel-netprobe".to_owned()),
        ("instance", NODE.to_owned()),
        ("service_name", "otel-netprobe".to_owned()),
        ("service_instance_id", NODE.to_owned()),
        ("service_version", version.clone()),
        ("host_name", host),
        ("k8s_node_name", NODE.to_owned()),
        ("k8s_cluster_name", CLUSTER.to_owned()),
        ("otel_scope_name", "otel-netprobe".to_owned()),
        ("otel_scope_version", version),
    ])
}

/// Prometheus' series of the agent (`instance` = the node), keyed as [`samples`] keys
/// `/metrics`, after checking that the labels beyond those are exactly [`added_labels`].
pub fn prometheus_series(
    prom: &Prometheus,
    numeric_le: bool,
) -> Result<BTreeMap<String, f64>, String> {
    let added = added_labels();
    let r = prom.query(&format!(
        "{{instance=\"{NODE}\",__name__!=\"target_info\"}}"
    ));
    let mut out = BTreeMap::new();
    for s in r.as_array().into_iter().flatten() {
        let labels = s["metric"].as_object().expect("labels");
        let name = labels["__name__"].as_str().unwrap_or_default();
        let mut own = Vec::new();
        for (k, v) in labels {
            let v = v.as_str().unwrap_or_default();
            match added.get(k.as_str()) {
                Some(want) if want == v => {}
                Some(want) => return Err(format!("{name}: {k}={v:?}, not {want:?}")),
                None if k == "__name__" => {}
                None => own.push(label(k, v, numeric_le)),
            }
        }
        if let Some(k) = added.keys().find(|k| !labels.contains_key(**k)) {
            return Err(format!("{name}: no {k} label: {labels:?}"));
        }
        own.sort_unstable();
        let value = s["value"][1].as_str().and_then(|v| v.parse().ok());
        out.insert(
            format!("{name}{{{}}}", own.join(",")),
            value.unwrap_or(f64::NAN),
        );
    }
    Ok(out)
}

/// Every sample of the agent's `/metrics` text, keyed `name{labels sorted}`; labels with an
/// empty value left out, as Prometheus stores none.
pub fn agent_series(text: &str, numeric_le: bool) -> BTreeMap<String, f64> {
    samples(text, &[""])
        .into_iter()
        .map(|(key, v)| {
            let (name, labels) = key.split_once('{').expect("key");
            let labels: Vec<String> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty() && !l.ends_with("=\"\""))
                .map(|l| {
                    let (k, v) = l.split_once('=').expect("label=value");
                    label(k, v.trim_matches('"'), numeric_le)
                })
                .collect();
            (format!("{name}{{{}}}", labels.join(",")), v)
        })
        .collect()
}

/// `k="v"`; with `numeric_le`, a bucket bound as its number, however it was written.
/// The remote-write exporter writes bounds in fixed notation (`0.00005`), where the agent's
/// `/metrics`, Prometheus' client libraries and the Collector's scrape exporter write `5e-05`.
fn label(k: &str, v: &str, numeric_le: bool) -> String {
    match v.parse::<f64>() {
        Ok(n) if numeric_le && k == "le" && n.is_finite() => format!("{k}=\"{n:e}\""),
        _ => format!("{k}=\"{v}\""),
    }
}

/// Whether a key names a flow metric counted at the lab's hooks, whose values stop moving once
/// the lab's traffic has (drops are not: the drop tracepoint sees the whole machine).
pub fn is_flow(key: &str) -> bool {
    [
        "netprobe_flow_",
        "netprobe_packet_size_",
        "netprobe_tcp_",
        "netprobe_icmp_",
    ]
    .iter()
    .any(|p| key.starts_with(p))
}

/// Waits until Prometheus holds every series of `text` (the agent's `/metrics` once its
/// counts stood still) under the same name and labels, the flow metrics with the same value;
/// returns how many series were compared.
pub fn wait_for_every_series(chain: &Chain, text: &str) -> usize {
    // Remote write's bucket bounds are compared as numbers (see `label`), the scrape
    // exporter's as the text they are.
    let numeric_le = chain.mode == Mode::RemoteWrite;
    let want = agent_series(text, numeric_le);
    assert!(want.len() > 50, "a full /metrics: {text}");
    let mut missing = Vec::new();
    let ok = crate::common::wait_until(Duration::from_secs(60), || {
        let have = match prometheus_series(&chain.prom, numeric_le) {
            Ok(have) => have,
            Err(e) => panic!("{:?}: {e}", chain.mode),
        };
        missing = want
            .iter()
            .filter(|(k, v)| match have.get(*k) {
                None => true,
                Some(got) => is_flow(k) && got != *v,
            })
            .map(|(k, v)| format!("{k} {v} (Prometheus: {:?})", have.get(k)))
            .collect();
        missing.is_empty()
    });
    assert!(
        ok,
        "{:?}: {} of {} series of /metrics not in Prometheus as they are:\n{}",
        chain.mode,
        missing.len(),
        want.len(),
        missing.join("\n")
    );
    want.len()
}

/// The query answer's single value, if it has exactly one series.
pub fn value(v: &Value) -> Option<f64> {
    crate::common::backends::single_value(v)
}
