//! `make bench` section `soak` (not in `make test`): [`MINUTES`] (`SOAK_MINUTES` overrides) of
//! changing traffic under the agent binary in the node lab, as a cluster runs it — the real
//! kube-apiserver naming the pods (the chart's ServiceAccount), the real Collector (the chart's
//! configuration) remote-writing into a real Prometheus — while:
//!
//! - new flows keep coming ([`NEW_FLOWS`] a second, each a new destination port) and a marker
//!   flow sends [`MARKER_PER_SECOND`] datagrams a second, every one of them delivered;
//! - [`VETHS`] veths are created under the agent and deleted [`VETH_LIFE`] later, each
//!   carrying two datagrams;
//! - the Collector is stopped for [`COLLECTOR_DOWN`] at a third of the run, and the
//!   kube-apiserver for [`APISERVER_DOWN`] at two thirds.
//!
//! Every [`SAMPLE`] the agent's resident memory, CPU (percent of one core over the interval),
//! open file descriptors, flow-table fill and attached interfaces are sampled; the samples go
//! to `target/soak/soak.csv`, drawn by `scripts/soak-plot.py` (matplotlib, from the test venv)
//! into `target/soak/soak.png`, and summarised as start/end/max. At the end the marker's total
//! must be exact on the agent's `/metrics` and in Prometheus (after the Collector), and
//! nothing leaked: the agent is attached to the lab's four interfaces only, and its file
//! descriptors are back to what they were once it ran.
#![allow(clippy::float_cmp, reason = "the counts compared are integers: exact")]

use std::{
    fmt::Write as _,
    net::{SocketAddr, UdpSocket},
    path::PathBuf,
    process::Command,
    time::{Duration, Instant},
};

use super::{cpu_seconds, rss_bytes};
use crate::{
    chain::{Chain, Mode, Protocol},
    common::{
        Netns,
        addr::{NODE_UPLINK, OUTSIDE, PODS},
        binary::{Agent, samples},
        kubeapi::{Credentials, KubeApiServer},
        traffic, unique,
    },
    repo,
};

/// The run's length unless `SOAK_MINUTES` says otherwise.
const MINUTES: u64 = 30;
/// Sampling interval.
const SAMPLE: Duration = Duration::from_secs(10);
/// New flows a second (each a new destination port, one datagram).
const NEW_FLOWS: u16 = 40;
/// Marker datagrams a second (pod 0 → pod 1, UDP port [`MARKER_PORT`]).
const MARKER_PER_SECOND: usize = 5;
const MARKER_PORT: u16 = 7999;
/// Veths created (and deleted) over the run, unless `SOAK_VETHS` says otherwise.
const VETHS: usize = 1000;
/// How long a churned veth lives.
const VETH_LIFE: Duration = Duration::from_secs(20);
const COLLECTOR_DOWN: Duration = Duration::from_secs(60);
const APISERVER_DOWN: Duration = Duration::from_secs(30);

/// One sample of the agent.
struct Sample {
    t: f64,
    rss_mib: f64,
    cpu_pct: f64,
    fds: u64,
    fill: f64,
    interfaces: f64,
    marker: f64,
    /// OTLP export requests so far, accepted and failed (`netprobe_agent_export_requests_total`).
    exports: (f64, f64),
    /// Flows the agent tracks (`netprobe_agent_flows_tracked`) and the series it exports
    /// (`netprobe_agent_series`, all families): what an export's size follows.
    flows: f64,
    series: f64,
}

/// The columns of [`Sample::csv_row`] (what `scripts/soak-plot.py` reads).
const CSV_HEADER: &str = "t_s,rss_mib,cpu_pct,fds,fill_ratio,interfaces,marker_packets,exports_ok,exports_failed,flows,series";

impl Sample {
    /// One line of `soak.csv` (also the progress line printed as the soak runs).
    fn csv_row(&self) -> String {
        format!(
            "{:.1},{:.2},{:.2},{},{:.4},{},{},{},{},{},{}",
            self.t,
            self.rss_mib,
            self.cpu_pct,
            self.fds,
            self.fill,
            self.interfaces,
            self.marker,
            self.exports.0,
            self.exports.1,
            self.flows,
            self.series
        )
    }
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

/// The sum of every sample of `metric` on the agent's `/metrics`.
fn total(text: &str, metric: &str) -> f64 {
    samples(text, &[metric]).values().sum()
}

/// The marker flow's packets on the agent's `/metrics` (every series of its port).
fn marker_packets(text: &str) -> f64 {
    let port = format!("destination_port=\"{MARKER_PORT}\"");
    samples(text, &["netprobe_flow_packets_total{"])
        .iter()
        .filter(|(k, _)| k.contains(&port))
        .map(|(_, v)| v)
        .sum()
}

/// The pods' names in the API server: the marker is checkout → web.
fn register(api: &KubeApiServer) {
    api.namespace("shop");
    api.node(crate::chain::NODE, NODE_UPLINK);
    for (i, name) in ["checkout", "web", "cart"].iter().enumerate() {
        let owner = api.deployment("shop", name, "5c8d");
        let pod = format!("{name}-5c8d-{i}aaaa");
        api.pod("shop", &pod, Some(&owner), crate::chain::NODE, &[PODS[i]]);
    }
}

/// One datagram from `src_port` in `from` to each of `ports` on `dst` (no receiver: new flows).
fn spray(from: &Netns, src: &str, dst: &'static str, ports: Vec<u16>) {
    let src: SocketAddr = src.parse().expect("src");
    from.run(move || {
        let tx = UdpSocket::bind(src).expect("bind sender");
        for p in ports {
            let _ = tx.send_to(&[0x5a; 64], (dst, p));
        }
    });
}

/// The churned veths: `sk{i}` in the node, `sp{i}` in their own namespace, 10.201.x.y/30.
struct Churn {
    pods: Netns,
    created: usize,
    live: std::collections::VecDeque<(usize, Instant)>,
}

impl Churn {
    fn addr(i: usize, end: usize) -> String {
        format!("10.201.{}.{}", i / 64, (i % 64) * 4 + end)
    }

    fn create(&mut self, node: &Netns) {
        let i = self.created;
        self.created += 1;
        node.ip(&format!(
            "link add sk{i} type veth peer name sp{i} netns {}",
            self.pods.name
        ));
        node.ip(&format!("addr add {}/30 dev sk{i}", Self::addr(i, 1)));
        node.ip(&format!("link set sk{i} up"));
        self.pods
            .ip(&format!("addr add {}/30 dev sp{i}", Self::addr(i, 2)));
        self.pods.ip(&format!("link set sp{i} up"));
        self.live.push_back((i, Instant::now()));
    }

    fn expire(&mut self, node: &Netns, all: bool) {
        while let Some(&(i, born)) = self.live.front() {
            if !all && born.elapsed() < VETH_LIFE {
                break;
            }
            // The veth's traffic just before it goes: two datagrams to the node's end.
            let (src, dst) = (Self::addr(i, 2), Self::addr(i, 1));
            traffic::udp_send(
                &self.pods,
                &format!("{src}:41000"),
                &format!("{dst}:7100"),
                2,
                80,
            );
            node.ip(&format!("link del sk{i}"));
            self.live.pop_front();
        }
    }
}

/// The lab, the API server with the pods and the chart's RBAC, and the agent binary in cluster
/// mode sending to the Collector.
struct Soak {
    agent: Agent,
    api: KubeApiServer,
    dir: PathBuf,
    chain: Chain,
}

impl Soak {
    fn start() -> Self {
        let chain = Chain::new("soak", Mode::RemoteWrite);
        let api = KubeApiServer::start_in(&chain.lab.node);
        register(&api);
        let release = api
            .helm_install("np", "netprobe", &serde_json::json!({}))
            .expect("helm install");
        let dir = std::env::temp_dir().join(unique("soak"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, &Credentials::Token(api.agent_token(&release)));
        let config = dir.join("agent.yaml");
        std::fs::write(
            &config,
            format!(
                "k8s:\n  mode: cluster\n  kubeconfig: {}\n  cluster_cidrs: [\"10.244.0.0/16\"]\n",
                kubeconfig.display()
            ),
        )
        .expect("agent config");
        let cmd: Command = chain.agent_command(
            Protocol::Grpc,
            &[("NETPROBE_CONFIG", config.to_str().expect("utf-8 path"))],
        );
        let agent = chain.start_agent(cmd);
        Self {
            agent,
            api,
            dir,
            chain,
        }
    }

    /// The Collector down at a third of the run, the API server at two thirds.
    fn events(&mut self, elapsed: Duration, run: Duration, done: &mut [bool; 3]) {
        if !done[0] && elapsed >= run / 3 {
            self.chain.collector.stop();
            done[0] = true;
            println!("{:>6.0} s: Collector stopped", elapsed.as_secs_f64());
        }
        if done[0] && !done[1] && elapsed >= run / 3 + COLLECTOR_DOWN {
            self.chain.collector.start_again();
            done[1] = true;
            println!("{:>6.0} s: Collector back", elapsed.as_secs_f64());
        }
        if !done[2] && elapsed >= run * 2 / 3 {
            self.api.restart_apiserver(APISERVER_DOWN);
            done[2] = true;
            println!(
                "{:>6.0} s: kube-apiserver stopped, back after {APISERVER_DOWN:?}",
                elapsed.as_secs_f64()
            );
        }
    }

    /// One second's traffic: the marker (every datagram delivered) and `NEW_FLOWS` new flows.
    fn traffic(&self, port: &mut u16) {
        let lab = &self.chain.lab;
        traffic::udp(
            &lab.pods[0],
            &format!("{}:40999", PODS[0]),
            &lab.pods[1],
            &format!("{}:{MARKER_PORT}", PODS[1]),
            MARKER_PER_SECOND,
            120,
        );
        let ports: Vec<u16> = (0..NEW_FLOWS)
            .map(|i| 10_000 + (port.wrapping_add(i) % 50_000))
            .collect();
        *port = port.wrapping_add(NEW_FLOWS);
        spray(&lab.pods[2], &format!("{}:40998", PODS[2]), OUTSIDE, ports);
    }

    fn sample(&self, t: f64, last_cpu: &mut (f64, Instant)) -> Sample {
        let pid = self.agent.pid();
        let (cpu, at) = (cpu_seconds(pid), Instant::now());
        let pct = 100.0 * (cpu - last_cpu.0) / at.duration_since(last_cpu.1).as_secs_f64();
        *last_cpu = (cpu, at);
        let m = self.agent.get("/metrics").unwrap_or_default();
        Sample {
            t,
            rss_mib: rss_bytes(&pid.to_string()) as f64 / f64::from(1 << 20),
            cpu_pct: pct,
            fds: fds(pid),
            fill: samples(&m, &["netprobe_agent_flow_table_fill_ratio"])
                .values()
                .fold(0.0, |a: f64, b| a.max(*b)),
            interfaces: total(&m, "netprobe_agent_interfaces"),
            marker: marker_packets(&m),
            exports: (
                total(&m, "netprobe_agent_export_requests_total{result=\"ok\"}"),
                total(
                    &m,
                    "netprobe_agent_export_requests_total{result=\"failed\"}",
                ),
            ),
            flows: total(&m, "netprobe_agent_flows_tracked"),
            // The family's own name, not its neighbours' (`netprobe_agent_series_overflow_…`).
            series: samples(&m, &["netprobe_agent_series{", "netprobe_agent_series "])
                .values()
                .sum(),
        }
    }
}

/// Runs the soak and prints its summary; panics if the marker is not exact or something leaked.
pub fn soak() {
    let minutes = std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(MINUTES);
    let veths = std::env::var("SOAK_VETHS")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(VETHS);
    let run = Duration::from_secs(minutes * 60);
    println!(
        "\n== Soak: {minutes} min under changing traffic, {veths} veths churned, the Collector and the API server restarted =="
    );
    let mut soak = Soak::start();
    let mut churn = Churn {
        pods: Netns::new(&unique("soakp")),
        created: 0,
        live: std::collections::VecDeque::new(),
    };
    let mut out = Vec::<Sample>::new();
    let (mut marker, mut port, mut done) = (0_usize, 10_000_u16, [false; 3]);
    let started = Instant::now();
    let mut last_cpu = (cpu_seconds(soak.agent.pid()), Instant::now());
    let mut next_sample = Instant::now();
    println!("     t: {CSV_HEADER} (marker sent so far: {MARKER_PER_SECOND} a second)");
    while started.elapsed() < run {
        let second = Instant::now();
        let elapsed = started.elapsed();
        soak.events(elapsed, run, &mut done);
        soak.traffic(&mut port);
        marker += MARKER_PER_SECOND;
        let due = (veths as f64 * elapsed.as_secs_f64() / run.as_secs_f64()) as usize;
        while churn.created < due.min(veths) {
            churn.create(&soak.chain.lab.node);
        }
        churn.expire(&soak.chain.lab.node, false);
        if Instant::now() >= next_sample {
            let s = soak.sample(started.elapsed().as_secs_f64(), &mut last_cpu);
            println!("{:>6.0} s: {}", s.t, s.csv_row());
            out.push(s);
            next_sample += SAMPLE;
        }
        if let Some(left) = Duration::from_secs(1).checked_sub(second.elapsed()) {
            std::thread::sleep(left);
        }
    }
    if done[0] && !done[1] {
        // A short run can end inside the outage: the Collector comes back before the checks.
        soak.chain.collector.start_again();
    }
    while churn.created < veths {
        churn.create(&soak.chain.lab.node);
    }
    churn.expire(&soak.chain.lab.node, true);
    finish(&soak.chain, &soak.agent, &out, marker);
    let _ = std::fs::remove_dir_all(&soak.dir);
}

/// The end: the marker exact on `/metrics` and in Prometheus, nothing leaked, the plot.
fn finish(chain: &Chain, agent: &Agent, out: &[Sample], marker: usize) {
    let m = agent.wait_metrics(&format!("marker: {marker} packets"), |m| {
        marker_packets(m) == marker as f64
    });
    let attached = agent.wait_metrics("back to the lab's 4 interfaces", |m| {
        total(m, "netprobe_agent_interfaces") == 4.0
    });
    let q = format!("sum(netprobe_flow_packets_total{{destination_port=\"{MARKER_PORT}\"}})");
    chain.wait_value(&q, marker as f64);
    let fds_end = fds(agent.pid());
    let csv = write_csv(out);
    let png = csv.with_extension("png");
    let python = repo::venv("python");
    let (ok, _, err) = repo::run(Command::new(&python).args([
        repo::root().join("scripts/soak-plot.py").as_os_str(),
        csv.as_os_str(),
        png.as_os_str(),
    ]));
    assert!(ok, "soak-plot.py failed: {err}");
    let col = |f: fn(&Sample) -> f64| {
        let v: Vec<f64> = out.iter().map(f).collect();
        let max = v.iter().copied().fold(f64::MIN, f64::max);
        (v[0], v[v.len() - 1], max)
    };
    let line = |name: &str, (s, e, m): (f64, f64, f64), unit: &str| {
        println!("{name:<24} start {s:>8.1} {unit:<4} end {e:>8.1} {unit:<4} max {m:>8.1} {unit}");
    };
    println!(
        "samples: {} every {SAMPLE:?}; csv {}; plot {}",
        out.len(),
        csv.display(),
        png.display()
    );
    line("resident memory", col(|s| s.rss_mib), "MiB");
    line("CPU (one core)", col(|s| s.cpu_pct), "%");
    line("file descriptors", col(|s| s.fds as f64), "");
    line("flow table fill", col(|s| 100.0 * s.fill), "%");
    line("attached interfaces", col(|s| s.interfaces), "");
    println!(
        "marker flow: {marker} datagrams sent, {marker} on the agent's /metrics and in Prometheus (after the Collector's outage)"
    );
    let fds_start = out.first().map_or(0, |s| s.fds);
    println!("file descriptors: {fds_start} at the first sample, {fds_end} at the end");
    assert!(
        fds_end <= fds_start + 4,
        "file descriptors grew from {fds_start} to {fds_end}"
    );
    assert!(total(&attached, "netprobe_agent_interfaces") == 4.0 && !m.is_empty());
}

fn write_csv(out: &[Sample]) -> PathBuf {
    let dir = repo::root().join("target/soak");
    std::fs::create_dir_all(&dir).expect("target/soak");
    let mut text = format!("{CSV_HEADER}\n");
    for s in out {
        let _ = writeln!(text, "{}", s.csv_row());
    }
    let path = dir.join("soak.csv");
    std::fs::write(&path, text).expect("soak.csv");
    path
}
