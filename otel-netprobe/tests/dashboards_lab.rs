//! Every query of every dashboard panel and variable, variables substituted, against a real
//! Prometheus that scraped a real agent: the agent binary, run with the configuration the chart
//! renders, in a node lab whose pods a list/watch API server names (namespaces, Deployments, a
//! StatefulSet, a Service). Each query must return series; the traffic dashboards' must show
//! traffic (connections, their failures and resets, slow handshakes, drops and ICMP errors
//! included). The alert rules are loaded too: each evaluates without error and none fires for
//! this healthy agent and the lab's handful of faults.

mod common;
#[path = "common/grafana.rs"]
mod grafana;
#[path = "common/repo.rs"]
mod repo;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{
    Netns, NodeLab,
    addr::{NODE_UPLINK, OUTSIDE, PODS},
    apiserver::FakeApiServer,
    backends::{Prometheus, http_get, url_encode},
    cluster, traffic,
};
use serde_json::{Value, json};

const CLUSTER: &str = "lab";
const NODE: &str = "node-a";

/// shop/checkout and shop/web (Deployments, web behind Service `web` on 8080), data/cache (a
/// StatefulSet).
fn register(api: &FakeApiServer) {
    api.apply(&cluster::node(NODE, NODE_UPLINK));
    for (rs, deployment) in [("checkout-7d9f", "checkout"), ("web-5c8d", "web")] {
        api.apply(&cluster::replicaset("shop", rs, deployment));
    }
    let owner = |kind, name| Some((kind, name));
    api.apply(&cluster::pod(
        "shop",
        "checkout-7d9f-a",
        &[PODS[0]],
        NODE,
        owner("ReplicaSet", "checkout-7d9f"),
    ));
    api.apply(&cluster::pod(
        "shop",
        "web-5c8d-b",
        &[PODS[1]],
        NODE,
        owner("ReplicaSet", "web-5c8d"),
    ));
    api.apply(&cluster::pod(
        "data",
        "cache-0",
        &[PODS[2]],
        NODE,
        owner("StatefulSet", "cache"),
    ));
    api.apply(&cluster::service(
        "shop",
        "web",
        &["10.96.0.20"],
        8080,
        8080,
    ));
    api.apply(&cluster::slice("shop", "web-x1", "web", &[PODS[1]], 8080));
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

/// Forwards connections to a loopback port of this (root) namespace to `port` on the node
/// namespace's loopback, where the agent serves /metrics: Prometheus scrapes through it.
fn forward_into(node: &Netns, port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
    let local = listener.local_addr().expect("addr").port();
    let path = format!("/run/netns/{}", node.name);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let path = path.clone();
            std::thread::spawn(move || {
                let upstream = std::thread::spawn(move || {
                    common::enter(&path);
                    TcpStream::connect(("127.0.0.1", port))
                })
                .join()
                .expect("connect thread");
                let Ok(upstream) = upstream else { return };
                pipe(client, upstream);
            });
        }
    });
    local
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        let mut buf = [0u8; 16 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    };
    let t = std::thread::spawn(move || copy(a, b));
    let mut buf = [0u8; 16 << 10];
    while let Ok(n) = b2.read(&mut buf) {
        if n == 0 || a2.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = a2.shutdown(Shutdown::Write);
    let _ = t.join();
}

/// GET a Prometheus API path; returns `data`.
fn prom_api(prom: &Prometheus, path_and_query: &str) -> Value {
    let url = format!("{}{path_and_query}", prom.url);
    let (status, body) = http_get(&url).unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert!(
        status == 200 && v["status"] == "success",
        "{path_and_query}: {status} {body}"
    );
    v["data"].clone()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}

/// The values of a query answer (instant: `value`; range: every point of `values`).
fn values(result: &Value) -> Vec<f64> {
    let mut out = Vec::new();
    for s in result.as_array().into_iter().flatten() {
        let points: Vec<&Value> = match s.get("values") {
            Some(v) => v.as_array().expect("values").iter().collect(),
            None => vec![&s["value"]],
        };
        out.extend(
            points
                .iter()
                .filter_map(|p| p[1].as_str()?.parse::<f64>().ok()),
        );
    }
    out
}

/// Runs one panel query as Grafana would (instant, or a range over the last 30 s).
fn run_query(prom: &Prometheus, q: &grafana::Query, expr: &str) -> Value {
    if q.instant {
        prom_api(prom, &format!("/api/v1/query?query={}", url_encode(expr)))["result"].clone()
    } else {
        let end = now();
        prom_api(
            prom,
            &format!(
                "/api/v1/query_range?query={}&start={:.3}&end={end:.3}&step=2",
                url_encode(expr),
                end - 30.0
            ),
        )["result"]
            .clone()
    }
}

fn prometheus_config(target: u16) -> String {
    let rules = repo::root().join("alerts/netprobe.rules.yaml");
    // The labels the chart's ServiceMonitor (or the Collector's resource conversion) gives.
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: otel-netprobe\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n        labels: {{k8s_cluster_name: {CLUSTER}, k8s_node_name: {NODE}}}\n",
        rules.display()
    )
}

/// The chart's agent configuration for this lab: its values as a user would set them.
fn rendered_config(kubeconfig: &std::path::Path) -> String {
    let values = json!({
        "collector": {"enabled": false},
        "agent": {"clusterName": CLUSTER, "config": {
            "k8s": {"kubeconfig": kubeconfig.display().to_string(), "cluster_cidrs": ["10.244.0.0/16"]},
        }},
    });
    let r = repo::render(&values).expect("render");
    let cm = r.get("ConfigMap", "np-otel-netprobe");
    cm["data"]["config.yaml"]
        .as_str()
        .expect("config")
        .to_owned()
}

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "one scenario: lab, agent, Prometheus, every query"
)]
fn every_dashboard_query_returns_data_from_a_real_agent() {
    common::require_root();
    let started = Instant::now();
    let lab = NodeLab::new("dash");
    let api = cluster::api_server_in(&lab.node);
    register(&api);
    let dir = std::env::temp_dir().join(common::unique("dashlab"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let kubeconfig = dir.join("kubeconfig");
    api.write_kubeconfig(&kubeconfig);
    let config = dir.join("config.yaml");
    let rendered = rendered_config(&kubeconfig);
    assert!(rendered.contains("mode: cluster"), "{rendered}");
    std::fs::write(&config, rendered).expect("write config");
    let agent = AgentProcess::start(&lab.node, &config, dir.join("agent.log"));
    let port = forward_into(&lab.node, otel_netprobe::config::HTTP_PORT);
    let prom = Prometheus::start_with_config(&prometheus_config(port));

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

    // Round one makes the series; round two, once Prometheus has them, makes their rates.
    drop_first_syns(&lab.pods[1]);
    let mut held = HeldConnection::open(&lab.pods[0], &lab.pods[1]);
    traffic_round(&lab, 0, &mut held);
    let named = r#"netprobe_flow_bytes_total{source_k8s_workload_name="checkout",destination_k8s_service_name="web",destination_port="8080"}"#;
    prom.wait_query(named, Duration::from_secs(60), |v| !values(v).is_empty());
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
    for (metric, extra) in faults {
        let q = format!("sum({metric}{{{checkout_to_web}{extra}}})");
        prom.wait_query(&q, Duration::from_secs(60), |v| {
            values(v).iter().any(|x| *x > 0.0)
        });
    }
    let active = format!("sum(netprobe_tcp_connections_active{{{checkout_to_web}}})");
    prom.wait_query(&active, Duration::from_secs(30), |v| values(v) == [1.0]);
    let synced = prom.wait_query("netprobe_agent_k8s_synced", Duration::from_secs(30), |v| {
        values(v) == [1.0]
    });
    assert_eq!(synced[0]["metric"]["k8s_node_name"], NODE);
    traffic_round(&lab, 1, &mut held);
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
    let sizes = "sum(rate(netprobe_packet_size_bytes_count{source_k8s_workload_name=\"checkout\",destination_k8s_workload_name=\"external\"}[1m]))";
    prom.wait_query(sizes, Duration::from_secs(30), |v| {
        values(v).iter().any(|x| *x > 0.0)
    });

    let chosen = [
        ("cluster", CLUSTER),
        ("namespace", "shop"),
        ("workload", "checkout"),
        ("node", NODE),
    ];
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (file, d) in grafana::dashboards() {
        // Variables, in order, each from the values chosen before it: Grafana's label-values API.
        let variables = grafana::label_variables(&d);
        let mut vars: Vec<(&str, Option<&str>)> = Vec::new();
        for (name, selector, label) in &variables {
            let selector = grafana::substitute(selector, &vars, "1m");
            let end = now();
            let data = prom_api(
                &prom,
                &format!(
                    "/api/v1/label/{label}/values?match[]={}&start={:.0}&end={end:.0}",
                    url_encode(&selector),
                    end - 600.0
                ),
            );
            let options: Vec<&str> = data
                .as_array()
                .expect("values")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let pick = chosen
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| *v)
                .expect("a value to choose");
            if !options.contains(&pick) {
                failures.push(format!("{file}: ${name} = label_values({selector}, {label}) gave {options:?}, not {pick}"));
            }
            report.push(format!("{file}: ${name} -> {options:?}"));
            vars.push((name.as_str(), Some(pick)));
        }
        let traffic_dashboard = file != "netprobe-agent.json";
        let all: Vec<(&str, Option<&str>)> = vars.iter().map(|(n, _)| (*n, None)).collect();
        let queries = grafana::queries(&d);
        let mut panels = std::collections::BTreeSet::new();
        for q in &queries {
            panels.insert(q.panel.clone());
            for (how, set) in [("chosen", &vars), ("All", &all)] {
                let expr = grafana::substitute(&q.expr, set, "1m");
                let result = run_query(&prom, q, &expr);
                let series = result.as_array().map_or(0, Vec::len);
                let numbers = values(&result);
                let finite = numbers.iter().filter(|v| v.is_finite()).count();
                let moving = numbers.iter().any(|v| v.is_finite() && *v > 0.0);
                let ok = series > 0 && finite > 0 && (!traffic_dashboard || moving);
                if how == "chosen" {
                    report.push(format!(
                        "{file}: {} [{}] {}: {series} series",
                        q.panel,
                        q.ref_id,
                        if q.instant { "instant" } else { "range" }
                    ));
                }
                if !ok {
                    failures.push(format!(
                        "{file}: {} [{}] ({how}): {series} series, {finite} finite values, moving {moving}: {expr}",
                        q.panel, q.ref_id
                    ));
                }
            }
        }
        report.push(format!(
            "{file}: {} panels, {} queries, every one returning series",
            panels.len(),
            queries.len()
        ));
    }
    println!("{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "queries without data:\n{}",
        failures.join("\n")
    );

    // The alert rules run on the same series: all evaluate, none fires for a healthy agent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let groups = prom_api(&prom, "/api/v1/rules")["groups"].clone();
        let rules: Vec<&Value> = groups
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = rules.iter().all(|r| {
            r["health"] == "ok"
                && r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
        });
        if rules.len() == 11 && evaluated {
            for r in &rules {
                assert_eq!(
                    r["state"], "inactive",
                    "{} fires for a healthy agent: {r}",
                    r["name"]
                );
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not all evaluated: {groups}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "11 alert rules evaluated, none firing; {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(held);
    drop(agent);
    drop(api);
    let _ = std::fs::remove_dir_all(&dir);
}
