//! `make bench` section `collector`: how one Collector carries a cluster's agents. Simulated
//! nodes (`collector/node.rs`: what one agent sends, encoded by the agent's own OTLP writer
//! and sent by its own gRPC client, gzip on, one connection per node as in a cluster) push
//! into the real Collector (`otelcol-netprobe`, the chart's rendered configuration, in its own
//! network namespace and memory cgroup) for 1, 100, 500 and 1,000 nodes:
//!
//! - `scrape` (`collector.mode=scrape`): the prometheus exporter's page — bytes, series (checked
//!   against what the nodes sent), and the time of a whole `GET /metrics` (timed GETs from
//!   the bench, uncompressed HTTP/1.0, best of two: not a Prometheus scrape, which also parses
//!   and stores);
//! - `remoteWrite`: the same pushes into the Collector's remote-write exporter and a real
//!   Prometheus (`--web.enable-remote-write-receiver`): points sent and failed, the exporter's
//!   queue, the time until everything arrived, Prometheus' head series and memory.
//!
//! Both: the Collector's resident memory and CPU time (`/proc`). The agents export every 15 s
//! (`otlp.interval`); to keep the section within a few minutes the pushes of a round are
//! spread over [`ROUND`] instead (3x the rate), and CPU is given per round: a round's CPU
//! seconds / 15 s is the cores the Collector needs at the agents' real rate. Absolute figures.

#[path = "collector/node.rs"]
mod node;

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use otel_netprobe::{
    config::OtlpConfig,
    export::otlp::{client::OtlpClient, encode::Encoder},
    frame::point_count,
};
use serde_json::json;

use super::{cpu_seconds, rss_bytes};
use crate::{
    collector::{Collector, Pod},
    common::{
        Netns,
        backends::{Prometheus, http_get},
        unique, within,
    },
};

/// Cluster sizes measured.
const NODES: [usize; 4] = [1, 100, 500, 1000];
/// Pushes of every node per measurement (the first creates the series, the next updates them).
const ROUNDS: u64 = 2;
/// The time a round's pushes are spread over (the agents' interval is 15 s).
const ROUND: Duration = Duration::from_secs(5);
/// The agents' export interval (`otlp.interval`'s default), for CPU at the real rate.
const INTERVAL_S: f64 = 15.0;
/// The Collector's memory limit here: large, to measure what it takes (the chart's 512 MiB
/// would make `memory_limiter` refuse data first; the table says where).
const LIMIT: u64 = 16 << 30;

/// What a round of pushes cost the Collector.
struct Round {
    /// From the first push to the exporter having sent the round's points.
    wall: Duration,
    /// The Collector's CPU time meanwhile.
    cpu: f64,
    /// Pushes the Collector refused.
    failed: usize,
    /// Whether the exporter sent every point of the round in time.
    sent: bool,
}

/// Runs the section.
pub fn collector_scale() {
    crate::common::require_root();
    let one = node::families(0, 0);
    let per_node = node::prometheus_series(&one);
    let points = point_count(one.iter());
    println!(
        "\n== Collector topology: simulated nodes pushing into the real Collector; absolute =="
    );
    println!(
        "a node sends {points} OTLP points = {per_node} Prometheus series (workload level, the \
         agent's encoder, gzip, gRPC, one connection a node); pushes spread over {} s a round \
         ({ROUNDS} rounds; the agents' interval is {INTERVAL_S} s: CPU is per round, cores = \
         CPU-s / {INTERVAL_S} s)",
        ROUND.as_secs()
    );
    println!(
        "\nscrape (collector.mode=scrape): the exporter's page, GET /metrics timed from the bench \
         (uncompressed, best of 2: the first byte, and the whole page)"
    );
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>8} {:>11} {:>12} {:>13} {:>9}",
        "nodes",
        "series",
        "page MiB",
        "1st byte s",
        "GET s",
        "RSS MiB",
        "CPU-s/round",
        "cores @15 s",
        "round s"
    );
    for n in NODES {
        scrape(n, per_node, points);
    }
    println!(
        "\nremoteWrite (collector.mode=remoteWrite) into a real Prometheus: until every point \
         arrived"
    );
    println!(
        "{:>6} {:>10} {:>11} {:>12} {:>13} {:>10} {:>8} {:>7} {:>10} {:>12}",
        "nodes",
        "points",
        "RSS MiB",
        "CPU-s/round",
        "cores @15 s",
        "sent",
        "failed",
        "queue",
        "drained s",
        "Prom. series"
    );
    for n in NODES.into_iter().skip(1) {
        remote_write(n, points);
    }
}

/// The chart's Collector (`values`) with [`LIMIT`] as its memory limit, as the chart would
/// run it with `collector.resources.limits.memory` at that: `GOMEMLIMIT` 80 % of it.
fn collector(ns: &Netns, name: &str, values: &serde_json::Value) -> Collector {
    let mut pod = Pod::from_chart(name, values);
    pod.memory_limit = LIMIT;
    for (k, v) in &mut pod.env {
        if k == "GOMEMLIMIT" {
            *v = format!("{}MiB", (LIMIT >> 20) * 80 / 100);
        }
    }
    Collector::start(ns, pod)
}

/// `n` nodes push [`ROUNDS`] times over OTLP/gRPC to the Collector's port 4317 in `ns`; a
/// round ends when its exporter has sent every point of it (or after a minute).
fn push(ns: &Netns, c: &Collector, n: usize, points: u64) -> Vec<Round> {
    let pid = c.pid().expect("running");
    let endpoint = format!(
        "http://127.0.0.1:{}",
        c.pod().port("/receivers/otlp/protocols/grpc/endpoint")
    );
    let own = own_url(c);
    within(Some(&ns.name), move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let cfg = OtlpConfig {
                endpoint,
                timeout: Duration::from_secs(60),
                ..OtlpConfig::default()
            };
            let started = SystemTime::now();
            let clients: Vec<_> = (0..n)
                .map(|i| {
                    let client = OtlpClient::new(&cfg).expect("client");
                    let encoder = Encoder::new(&node::resource(i), started);
                    Arc::new(tokio::sync::Mutex::new((client, encoder)))
                })
                .collect();
            let mut rounds = Vec::new();
            for round in 0..ROUNDS {
                let (t, cpu) = (Instant::now(), cpu_seconds(pid));
                let tasks: Vec<_> = clients
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let c = Arc::clone(c);
                        // Spread over the round, as agents started at different times are.
                        let at = tokio::time::Instant::from_std(t) + ROUND * i as u32 / n as u32;
                        tokio::spawn(async move {
                            tokio::time::sleep_until(at).await;
                            let families = node::families(i, round);
                            let refs: Vec<_> = families.iter().collect();
                            let mut c = c.lock().await;
                            let body = c.1.encode(&refs, SystemTime::now());
                            c.0.send(body).await.is_err()
                        })
                    })
                    .collect();
                let mut failed = 0;
                for task in tasks {
                    failed += usize::from(task.await.expect("push task"));
                }
                let want = (round + 1) * points * n as u64;
                let own = own.clone();
                let sent = tokio::task::spawn_blocking(move || exporter_sent(&own, want))
                    .await
                    .expect("exporter's count");
                rounds.push(Round {
                    wall: t.elapsed(),
                    cpu: cpu_seconds(pid) - cpu,
                    failed,
                    sent,
                });
            }
            rounds
        })
    })
}

/// The sum of the samples of `name` (any labels) in a Prometheus text.
fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The URL of the Collector's own metrics (`service.telemetry`, port 8888).
fn own_url(c: &Collector) -> String {
    let port = c
        .pod()
        .port("/service/telemetry/metrics/readers/0/pull/exporter/prometheus/port");
    format!("http://127.0.0.1:{port}/metrics")
}

/// The Collector's own metrics.
fn own(c: &Collector) -> String {
    let port = c
        .pod()
        .port("/service/telemetry/metrics/readers/0/pull/exporter/prometheus/port");
    c.get(port, "/metrics").map(|(_, t)| t).unwrap_or_default()
}

/// Waits (a minute at most; called inside the Collector's namespace) until its exporter has
/// sent or failed `want` points in all; whether it did.
fn exporter_sent(own_url: &str, want: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let text = http_get(own_url).map(|(_, t)| t).unwrap_or_default();
        let done = sum(&text, "otelcol_exporter_sent_metric_points")
            + sum(&text, "otelcol_exporter_send_failed_metric_points");
        if done >= want as f64 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A timed `GET` of the exporter's page.
struct Page {
    /// Seconds to the answer's first byte (the exporter gathers the whole page first).
    first_byte: f64,
    /// Seconds to its last byte.
    total: f64,
    /// Bytes of the body.
    bytes: u64,
    /// Its sample lines.
    series: usize,
}

/// `GET url` (HTTP/1.0, no compression) with a patience no scrape has (10 minutes), timed;
/// `Err` when the server closed without an answer.
fn timed_get(url: &str) -> Result<Page, String> {
    use std::io::{BufRead, BufReader, Write};
    let target = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = target.split_at(target.find('/').expect("a path"));
    let t = Instant::now();
    let mut s = std::net::TcpStream::connect(host).expect("connect to the exporter");
    s.set_read_timeout(Some(Duration::from_secs(600)))
        .expect("timeout");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").expect("request");
    let mut r = BufReader::with_capacity(1 << 20, s);
    let mut line = Vec::new();
    let got = r.read_until(b'\n', &mut line);
    let first_byte = t.elapsed().as_secs_f64();
    if !(line.starts_with(b"HTTP/1.1 200") || line.starts_with(b"HTTP/1.0 200")) {
        return Err(format!(
            "no answer after {first_byte:.1} s ({:?}: {:?})",
            got.map_err(|e| e.kind()),
            String::from_utf8_lossy(&line)
        ));
    }
    let (mut body, mut bytes, mut series) = (false, 0, 0);
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).expect("page") == 0 {
            break;
        }
        if body {
            bytes += line.len() as u64;
            series += usize::from(!line.starts_with(b"#") && line != b"\n");
        } else {
            body = line == b"\r\n";
        }
    }
    Ok(Page {
        first_byte,
        total: t.elapsed().as_secs_f64(),
        bytes,
        series,
    })
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

fn scrape(n: usize, per_node: usize, points: u64) {
    let ns = Netns::new(&unique("cscale"));
    let c = collector(&ns, "chart scrape", &json!({}));
    let rounds = push(&ns, &c, n, points);
    let failed: usize = rounds.iter().map(|r| r.failed).sum();
    let port = c.pod().port("/exporters/prometheus/endpoint");
    let url = format!("http://127.0.0.1:{port}/metrics");
    // Every node's series, and the exporter's target_info, one per node.
    let want = n * (per_node + 1);
    let arrived = rounds.iter().all(|r| r.sent);
    let mut best: Option<Page> = None;
    for _ in 0..2 {
        let url = url.clone();
        match within(Some(&ns.name), move || timed_get(&url)) {
            Ok(page) if best.as_ref().is_none_or(|b| page.total < b.total) => best = Some(page),
            Ok(_) => {}
            Err(e) => {
                // The exporter's HTTP server gives up writing after its WriteTimeout (30 s).
                println!(
                    "{n:>6} {:>10} page not served: {e}; Collector RSS {:.0} MiB, {:.2} CPU-s a round",
                    "-",
                    mib(rss_bytes(&c.pid().expect("running").to_string())),
                    rounds.last().expect("a round").cpu
                );
                return;
            }
        }
    }
    let page = best.expect("a page");
    let refused = sum(&own(&c), "otelcol_receiver_refused_metric_points");
    let last = rounds.last().expect("a round");
    println!(
        "{n:>6} {:>10} {:>10.1} {:>10.2} {:>8.2} {:>11.0} {:>12.2} {:>13.3} {:>9.1}{}",
        page.series,
        mib(page.bytes),
        page.first_byte,
        page.total,
        mib(rss_bytes(&c.pid().expect("running").to_string())),
        last.cpu,
        last.cpu / INTERVAL_S,
        last.wall.as_secs_f64(),
        if page.series == want && failed == 0 && refused == 0.0 && arrived {
            String::new()
        } else {
            format!(
                "  (of {want} series: the page cut off; {failed} pushes failed, {refused} points \
                 refused, every point reached the exporter: {arrived})"
            )
        }
    );
}

fn remote_write(n: usize, points_per_node: u64) {
    let ns = Netns::new(&unique("cscalerw"));
    let receiver = ["--web.enable-remote-write-receiver"];
    let prom = Prometheus::start_in_with(Some(&ns.name), "global: {}\n", &receiver);
    let values = json!({"collector": {"mode": "remoteWrite",
        "remoteWrite": {"url": format!("{}/api/v1/write", prom.url)}}});
    let c = collector(&ns, "chart remoteWrite", &values);
    let t = Instant::now();
    let rounds = push(&ns, &c, n, points_per_node);
    let want = points_per_node * n as u64 * ROUNDS;
    let drained = t.elapsed().as_secs_f64();
    let text = own(&c);
    let sent = sum(&text, "otelcol_exporter_sent_metric_points");
    let failed = sum(&text, "otelcol_exporter_send_failed_metric_points");
    let queue = sum(&text, "otelcol_exporter_queue_size");
    let prom_page = within(Some(&ns.name), {
        let url = format!("{}/metrics", prom.url);
        move || http_get(&url).map(|(_, t)| t).unwrap_or_default()
    });
    let head = sum(&prom_page, "prometheus_tsdb_head_series");
    let prom_rss = sum(&prom_page, "process_resident_memory_bytes");
    let last = rounds.last().expect("a round");
    let pushes_failed: usize = rounds.iter().map(|r| r.failed).sum();
    println!(
        "{n:>6} {want:>10} {:>11.0} {:>12.2} {:>13.3} {sent:>10.0} {failed:>8.0} {queue:>7.0} {drained:>10.1} {head:>12.0}   Prometheus RSS {:.0} MiB{}",
        mib(rss_bytes(&c.pid().expect("running").to_string())),
        last.cpu,
        last.cpu / INTERVAL_S,
        prom_rss / f64::from(1 << 20),
        if pushes_failed == 0 {
            String::new()
        } else {
            format!(" ({pushes_failed} pushes failed)")
        }
    );
}
