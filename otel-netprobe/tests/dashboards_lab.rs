//! Every query of every dashboard panel and variable, variables substituted, against a real
//! Prometheus fed by a real agent: the agent binary in a node lab whose cluster is the real
//! kube-apiserver (with etcd, on the node's loopback; `common/kubeapi/`). The chart is installed
//! into it (`helm install`, the Helm v4 SDK); the agent runs with the configuration that install
//! stored in its ConfigMap and a token of the install's own ServiceAccount (TokenRequest), as its
//! DaemonSet's pods would, and the lab's pods are real API objects (Deployments → ReplicaSets →
//! pods with their status, a StatefulSet, a Service with its ClusterIP and EndpointSlice).
//! Along both paths an install can take: the default install's (the agent → the install's
//! Collector, the real one run from its stored ConfigMap and DaemonSet, in scrape mode →
//! Prometheus scraping the Collector's exporter with `honor_labels`, as the chart's
//! ServiceMonitor does) and the direct one (Prometheus scraping the agent's /metrics, labelled
//! as the ServiceMonitor labels it without a Collector). Each query must return series; the
//! traffic dashboards' must show traffic (connections, their failures and resets, slow
//! handshakes, drops, ICMP errors and DNS answers of each kind included). The alert rules are loaded too: each evaluates
//! without error and none fires for this healthy agent and the lab's handful of faults, on
//! both paths.

#[path = "common/cgroup.rs"]
mod cgroup;
#[path = "dashboards_lab/checks.rs"]
mod checks;
#[path = "common/collector.rs"]
mod collector;
mod common;
#[path = "dashboards_lab/dns.rs"]
mod dns;
#[path = "common/forward.rs"]
mod forward;
#[path = "common/grafana.rs"]
mod grafana;
#[path = "dashboards_lab/paths.rs"]
mod paths;
#[path = "common/repo.rs"]
mod repo;

use std::{
    io::Write,
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use checks::values;
use collector::{Collector, Pod};
use common::{
    Netns, NodeLab,
    addr::{NODE_UPLINK, OUTSIDE, PODS},
    backends::{Prometheus, http_get},
    kubeapi::{Credentials, KubeApiServer},
    traffic,
};
use forward::forward_into;
use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::ConfigMap};
use paths::{Path, ServiceName, prometheus_config};
use serde_json::{Value, json};

const CLUSTER: &str = "lab";
const NODE: &str = "node-a";
/// The chart's release and namespace in the lab's API server.
const RELEASE: &str = "np";
const RELEASE_NAMESPACE: &str = "netprobe";

/// shop/checkout and shop/web (Deployments, web behind Service `web` on 8080), data/cache (a
/// StatefulSet), on the node.
fn register(api: &KubeApiServer) {
    for ns in ["shop", "data"] {
        api.namespace(ns);
    }
    api.node(NODE, NODE_UPLINK);
    let checkout = api.deployment("shop", "checkout", "7d9f");
    api.pod("shop", "checkout-7d9f-a", Some(&checkout), NODE, &[PODS[0]]);
    let web = api.deployment("shop", "web", "5c8d");
    api.pod("shop", "web-5c8d-b", Some(&web), NODE, &[PODS[1]]);
    let cache = api.statefulset("data", "cache");
    api.pod("data", "cache-0", Some(&cache), NODE, &[PODS[2]]);
    api.service("shop", "web", Some("10.96.0.20"), 8080, 8080);
    api.endpoint_slice("shop", "web-x1", "web", &[PODS[1]], 8080);
}

/// The web pod drops the first SYN of each connection to this port (its retransmission
/// passes): a handshake of about a second, a SYN retransmission and a `NETFILTER_DROP` each.
const SLOW_PORT: u16 = 7060;
/// Nothing listens on these ports of the web pod: TCP connects are refused, UDP is dropped
/// (`NO_SOCKET`) and answered by ICMP port unreachable.
const CLOSED_TCP_PORT: u16 = 7051;
const CLOSED_UDP_PORT: u16 = 7070;
/// The web pod resets connections to this port; one more is held open to `HELD_PORT`.
const RESET_PORT: u16 = 7052;
const HELD_PORT: u16 = 7080;

/// The nftables rules in `web` that drop the first SYN of each client port to [`SLOW_PORT`]
/// (as `tests/lab/drops.rs`).
fn drop_first_syns(web: &Netns) {
    for rule in [
        "add table inet np".to_owned(),
        "add set inet np seen { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 10m; }".to_owned(),
        "add chain inet np in { type filter hook input priority 0; }".to_owned(),
        format!("add rule inet np in tcp dport {SLOW_PORT} tcp flags syn ip saddr . tcp sport @seen accept"),
        format!("add rule inet np in tcp dport {SLOW_PORT} tcp flags syn add @seen {{ ip saddr . tcp sport }} counter drop"),
    ] {
        web.exec(&format!("nft '{rule}'"));
    }
}

/// A connection from checkout to web, open until dropped: the active-connections gauge.
struct HeldConnection {
    client: TcpStream,
    _server: TcpStream,
}

impl HeldConnection {
    fn open(from: &Netns, to: &Netns) -> Self {
        let addr: std::net::SocketAddr = format!("{}:{HELD_PORT}", PODS[1]).parse().expect("addr");
        let listener = to.run(move || TcpListener::bind(addr).expect("listen"));
        let client = from.run(move || TcpStream::connect(addr).expect("connect"));
        let (server, _) = listener.accept().expect("accept");
        Self {
            client,
            _server: server,
        }
    }

    /// A byte now and then, so the connection never reaches the agent's idle timeout.
    fn touch(&mut self) {
        self.client
            .write_all(b".")
            .expect("write on the held connection");
    }
}

/// One round of traffic of every kind the dashboards show: pod → service (TCP), pod → pod
/// (UDP), outside → pod, pod → outside; and, all from checkout to web, connections refused,
/// reset by the server, slow to open (a dropped first SYN), UDP to a closed port (a drop and
/// an ICMP error). A handful of each: far below what any alert calls a problem.
fn traffic_round(lab: &NodeLab, round: u16, held: &mut HeldConnection) {
    let (checkout, web, cache) = (&lab.pods[0], &lab.pods[1], &lab.pods[2]);
    traffic::tcp_bulk(checkout, web, &format!("{}:8080", PODS[1]), 256 << 10);
    let sport = |base: u16| base + round;
    let web_port = |port: u16| format!("{}:{port}", PODS[1]);
    traffic::tcp_refused(checkout, &web_port(CLOSED_TCP_PORT), 2);
    traffic::tcp_reset_by_server(checkout, web, &web_port(RESET_PORT), 2);
    traffic::tcp_exchanges(checkout, web, &web_port(SLOW_PORT), 2);
    traffic::udp_send(
        checkout,
        &format!("{}:{}", PODS[0], sport(40400)),
        &web_port(CLOSED_UDP_PORT),
        5,
        100,
    );
    held.touch();
    traffic::udp(
        checkout,
        &format!("{}:{}", PODS[0], sport(40100)),
        cache,
        &format!("{}:6379", PODS[2]),
        10,
        200,
    );
    traffic::udp(
        &lab.outside,
        &format!("{OUTSIDE}:{}", sport(40200)),
        web,
        &format!("{}:7041", PODS[1]),
        5,
        100,
    );
    traffic::udp(
        checkout,
        &format!("{}:{}", PODS[0], sport(40300)),
        &lab.outside,
        &format!("{OUTSIDE}:5353"),
        3,
        100,
    );
    dns::round(checkout, round);
}

/// The agent binary in the node's namespace (`ip netns exec` execs it: the child is the agent),
/// with the chart's rendered configuration; stopped with SIGTERM on drop, SIGKILL if it lingers,
/// and killed by a watchdog should the test hang.
struct AgentProcess {
    child: Child,
    log: std::path::PathBuf,
}

impl AgentProcess {
    fn start(node: &Netns, config: &std::path::Path, log: std::path::PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("agent log");
        let child = Command::new("ip")
            .args(["netns", "exec", &node.name])
            .arg(env!("CARGO_BIN_EXE_otel-netprobe"))
            .args(["run", "--log", "warn", "--config"])
            .arg(config)
            // The chart's downward API: k8s.node.name, and the agent's instance.
            .env("K8S_NODE_NAME", NODE)
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .expect("spawn the agent");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(600));
            // SAFETY: kill(2) on our own child's pid; harmless if it is gone.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        });
        Self { child, log }
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let stopped = common::wait_until(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten().is_some()
        });
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!("--- agent log (last lines) ---");
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// The values of the lab's install: the chart's defaults (with its Collector), what a user
/// would set, and a one-second export interval to keep the test short. The agent reads its
/// kubeconfig from a file (its token of the install's ServiceAccount): there is no pod here
/// for the in-cluster one to be mounted into.
fn install_values(kubeconfig: &std::path::Path) -> Value {
    json!({
        "agent": {"clusterName": CLUSTER, "config": {
            "k8s": {"kubeconfig": kubeconfig.display().to_string(), "cluster_cidrs": ["10.244.0.0/16"]},
            "otlp": {"interval": "1s"},
        }},
    })
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: lab, agent, Collector, two Prometheus, every query"
)]
fn every_dashboard_query_returns_data_from_a_real_agent_on_both_paths() {
    common::require_root();
    let started = Instant::now();
    let lab = NodeLab::new("dash");
    let api = KubeApiServer::start_in(&lab.node);
    println!(
        "kube-apiserver + etcd ready in {:.1} s",
        api.start_time.as_secs_f64()
    );
    let dir = std::env::temp_dir().join(common::unique("dashlab"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    let release = api
        .helm_install(RELEASE, RELEASE_NAMESPACE, &install_values(&kubeconfig))
        .expect("helm install");
    api.write_kubeconfig(&kubeconfig, &Credentials::Token(api.agent_token(&release)));
    register(&api);
    // What the install's pods would mount: the agent's ConfigMap, the Collector's ConfigMap
    // and DaemonSet (the default topology: one per node), as the server stores them.
    let agent_name = release.agent_name();
    let rendered = api.stored::<ConfigMap>(RELEASE_NAMESPACE, &agent_name)["data"]["config.yaml"]
        .as_str()
        .expect("the agent's config.yaml")
        .to_owned();
    assert!(rendered.contains("mode: cluster"), "{rendered}");
    let endpoint = serde_norway::from_str::<Value>(&rendered).expect("config")["otlp"]["endpoint"]
        .as_str()
        .expect("the chart points the agent at its Collector")
        .to_owned();
    let config = dir.join("config.yaml");
    std::fs::write(&config, rendered).expect("write config");
    let _service = ServiceName::new(&lab.node, &endpoint);
    let collector_name = format!("{agent_name}-collector");
    let collector = Collector::start(
        &lab.node,
        Pod::from_objects(
            "the install's Collector",
            &api.stored::<ConfigMap>(RELEASE_NAMESPACE, &collector_name),
            &api.stored::<DaemonSet>(RELEASE_NAMESPACE, &collector_name),
        ),
    );
    let _dns = dns::server(&lab);
    let agent = AgentProcess::start(&lab.node, &config, dir.join("agent.log"));
    let port = forward_into(&lab.node, otel_netprobe::config::HTTP_PORT);
    let exporter = collector.pod().port("/exporters/prometheus/endpoint");
    let proms = [
        (
            Path::Collector,
            Prometheus::start_with_config(&prometheus_config(
                Path::Collector,
                forward_into(&lab.node, exporter),
            )),
        ),
        (
            Path::Direct,
            Prometheus::start_with_config(&prometheus_config(Path::Direct, port)),
        ),
    ];

    // The agent has attached to the node's four interfaces and named the lab from the API.
    let metrics = format!("http://127.0.0.1:{port}/metrics");
    let ready = common::wait_until(Duration::from_secs(60), || {
        http_get(&metrics).is_ok_and(|(status, body)| {
            status == 200
                && body.lines().any(|l| l == "netprobe_agent_k8s_synced 1")
                && body
                    .lines()
                    .filter(|l| l.starts_with("netprobe_agent_interface_info{"))
                    .count()
                    == 4
        })
    });
    assert!(ready, "the agent never got ready: {:?}", http_get(&metrics));

    // Round one makes the series; later rounds, once Prometheus has them, make their rates.
    drop_first_syns(&lab.pods[1]);
    let mut held = HeldConnection::open(&lab.pods[0], &lab.pods[1]);
    traffic_round(&lab, 0, &mut held);
    let named = r#"netprobe_flow_bytes_total{source_k8s_workload_name="checkout",destination_k8s_service_name="web",destination_port="8080"}"#;
    // Each kind of connection outcome, drop and ICMP error of checkout → web, as its own series.
    let faults = [
        ("netprobe_tcp_connections_opened_total", ""),
        (
            "netprobe_tcp_connections_failed_total",
            r#",netprobe_tcp_failure_reason="refused""#,
        ),
        (
            "netprobe_tcp_connections_closed_total",
            r#",netprobe_tcp_close_reason="rst""#,
        ),
        (
            "netprobe_tcp_connections_closed_total",
            r#",netprobe_tcp_close_reason="fin""#,
        ),
        ("netprobe_tcp_syn_retransmits_total", ""),
        ("netprobe_tcp_handshake_duration_seconds_count", ""),
        ("netprobe_packet_drops_total", ""),
        ("netprobe_icmp_errors_total", ""),
    ];
    let checkout_to_web =
        r#"source_k8s_workload_name="checkout",destination_k8s_workload_name="web""#;
    for (path, prom) in &proms {
        prom.wait_query(named, Duration::from_secs(60), |v| !values(v).is_empty());
        for (metric, extra) in faults {
            let q = format!("sum({metric}{{{checkout_to_web}{extra}}})");
            prom.wait_query(&q, Duration::from_secs(60), |v| {
                values(v).iter().any(|x| *x > 0.0)
            });
        }
        for (metric, extra) in dns::SERIES {
            let q = format!("sum({metric}{{{}{extra}}})", dns::CHECKOUT_TO_CACHE);
            prom.wait_query(&q, Duration::from_secs(60), |v| {
                values(v).iter().any(|x| *x > 0.0)
            });
        }
        let active = format!("sum(netprobe_tcp_connections_active{{{checkout_to_web}}})");
        prom.wait_query(&active, Duration::from_secs(30), |v| values(v) == [1.0]);
        let synced = prom.wait_query("netprobe_agent_k8s_synced", Duration::from_secs(30), |v| {
            values(v) == [1.0]
        });
        assert_eq!(synced[0]["metric"]["k8s_node_name"], NODE, "{path:?}");
        assert_eq!(synced[0]["metric"]["k8s_cluster_name"], CLUSTER, "{path:?}");
    }

    let chosen = [
        ("cluster", CLUSTER),
        ("namespace", "shop"),
        ("workload", "checkout"),
        ("node", NODE),
    ];
    for (round, (path, prom)) in (1..).zip(&proms) {
        // Fresh traffic before each path's checks: its rates are moving while they run.
        traffic_round(&lab, round, &mut held);
        let rate = format!("sum(rate({named}[1m]))");
        prom.wait_query(&rate, Duration::from_secs(30), |v| {
            values(v).iter().any(|x| *x > 0.0)
        });
        for (metric, extra) in faults {
            let q = format!("sum(rate({metric}{{{checkout_to_web}{extra}}}[1m]))");
            prom.wait_query(&q, Duration::from_secs(30), |v| {
                values(v).iter().any(|x| *x > 0.0)
            });
        }
        // The round's dropped query turns unanswered after dns.timeout (5 s).
        for (metric, extra) in dns::SERIES {
            let q = format!(
                "sum(rate({metric}{{{}{extra}}}[1m]))",
                dns::CHECKOUT_TO_CACHE
            );
            prom.wait_query(&q, Duration::from_secs(30), |v| {
                values(v).iter().any(|x| *x > 0.0)
            });
        }
        let sizes = "sum(rate(netprobe_packet_size_bytes_count{source_k8s_workload_name=\"checkout\",destination_k8s_workload_name=\"external\"}[1m]))";
        prom.wait_query(sizes, Duration::from_secs(30), |v| {
            values(v).iter().any(|x| *x > 0.0)
        });
        let name = format!("{path:?} path");
        checks::every_dashboard_query(prom, &name, &chosen);
        // The alert rules run on the same series: all evaluate, none fires for a healthy agent.
        checks::no_alert_fires(prom, &name, repo::rules().len());
    }
    println!(
        "both paths: every query returned data, no alert fired; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(held);
    drop(agent);
    drop(collector);
    drop(api);
    let _ = std::fs::remove_dir_all(&dir);
}
