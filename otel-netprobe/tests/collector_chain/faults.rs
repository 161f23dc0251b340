//! Faults on the chain, with the real Collector and Prometheus: the Collector restarted (totals
//! exact after it), the Collector down for two minutes (the agent keeps trying every interval,
//! its memory stays flat, the totals are exact after, and the loss is in its own metrics,
//! exactly: failed requests × points), and the agent restarted (one counter reset of the same
//! series, which `increase()` reads exactly and `rate()` never reads as negative), through both
//! exporters.

use std::time::{Duration, Instant};

use crate::{
    chain::{Chain, Mode, PATHS, Protocol, value},
    common::binary::{Agent, points, rss_mib, sample},
};

/// The path the fault tests send on (pod → pod).
fn flow() -> (&'static crate::chain::UdpPath, String) {
    let p = &PATHS[0];
    (p, format!("netprobe_flow_packets_total{{{}}}", p.labels()))
}

/// Waits until the agent's `/metrics` shows `n` packets on the path; returns the text.
fn counted(agent: &Agent, series: &str, n: usize) -> String {
    agent.wait_metrics(&format!("{n} packets"), |m| {
        sample(m, series) == Some(n as f64)
    })
}

#[test]
fn a_collector_restart_loses_no_count() {
    crate::common::require_root();
    let mut chain = Chain::new("crst", Mode::RemoteWrite);
    let agent = chain.start_agent(chain.agent_command(Protocol::Http, &[]));
    let (path, series) = flow();
    path.send(&chain.lab, 6);
    chain.wait_value(&series, 6.0);
    let status = chain.collector.stop();
    assert!(status.success(), "{status:?}");
    // Counted while the Collector is away; the cumulative total carries it over.
    path.send(&chain.lab, 5);
    counted(&agent, &series, 11);
    // Away long enough for an export to find nobody.
    agent.wait_metrics("an export failed", |m| {
        sample(m, FAILED).is_some_and(|f| f >= 1.0)
    });
    chain.collector.start_again();
    path.send(&chain.lab, 4);
    counted(&agent, &series, 15);
    chain.wait_value(&series, 15.0);
    let bytes = chain
        .prom
        .query(&format!("netprobe_flow_bytes_total{{{}}}", path.labels()));
    assert_eq!(value(&bytes), Some(15.0 * (path.payload + 28) as f64));
    let m = agent.metrics();
    println!(
        "Collector restarted (healthy again in {:.2} s): 15 packets in Prometheus, exact; exports failed meanwhile: {:?}",
        chain.collector.started_in.as_secs_f64(),
        sample(&m, FAILED)
    );
}

const FAILED: &str = "netprobe_agent_export_requests_total{result=\"failed\"}";
const DROPPED: &str = "netprobe_agent_export_dropped_total";
/// Flow series besides the path's, so that each export is large (a queue would show).
const PORTS: u16 = 500;

#[test]
fn the_collector_down_for_two_minutes() {
    crate::common::require_root();
    let mut chain = Chain::new("cdown", Mode::Scrape);
    // The loss is checked as failed requests × points, so the series must stay the same: no
    // drop series (their tracepoint sees the whole machine: another test's drop would add
    // one), and no flow forgotten for being idle during the outage (by default after 60 s:
    // the counts such a flow gathered after the last export that got through are lost).
    let config = std::env::temp_dir().join(format!("{}.yaml", crate::common::unique("cdown")));
    let settings = "drops:\n  enabled: false\nflows:\n  idle_timeout: 10m\n";
    std::fs::write(&config, settings).expect("agent config");
    let mut cmd = chain.agent_command(Protocol::Grpc, &[("OTEL_EXPORTER_OTLP_TIMEOUT", "2000")]);
    cmd.args(["--config", config.to_str().expect("path")]);
    let agent = chain.start_agent(cmd);
    let (path, series) = flow();
    chain.lab.pods[0].run(|| {
        let s = std::net::UdpSocket::bind((path.src, 40_300)).expect("bind");
        for port in 1..=PORTS {
            s.send_to(&[0; 64], (path.dst, port)).expect("send");
        }
    });
    path.send(&chain.lab, 10);
    let before = agent.wait_metrics("10 packets and all ports", |m| {
        sample(m, &series) == Some(10.0)
            && sample(m, "netprobe_agent_series{metric=\"netprobe.flow.packets\"}")
                .is_some_and(|n| n > f64::from(PORTS))
    });
    chain.wait_value(&series, 10.0);
    assert_eq!(sample(&before, FAILED), Some(0.0));
    let rss_before = rss_mib(agent.pid());

    let down = Instant::now();
    let status = chain.collector.stop();
    assert!(status.success(), "{status:?}");
    path.send(&chain.lab, 20);
    let early = agent.wait_metrics("3 failed exports", |m| {
        sample(m, FAILED).is_some_and(|f| f >= 3.0)
    });
    assert_eq!(sample(&early, &series), Some(30.0), "counting goes on");
    let rss_early = rss_mib(agent.pid());
    let mut rss_max = rss_early;
    // Two minutes without a Collector; the agent's memory looked at every second.
    while down.elapsed() < Duration::from_secs(120) {
        rss_max = rss_max.max(rss_mib(agent.pid()));
        std::thread::sleep(Duration::from_secs(1));
    }
    let late = agent.metrics();
    let rss_late = rss_mib(agent.pid());
    let failed_late = sample(&late, FAILED).expect("failed");
    // Every interval tried again (each export retried with backoff within its 2 s timeout).
    assert!(
        failed_late >= 40.0,
        "{failed_late} failed exports in two minutes"
    );
    assert!(
        rss_max - rss_early < 4.0,
        "memory grew {rss_early:.1} → {rss_max:.1} MiB during the outage"
    );
    let downtime = down.elapsed();
    chain.collector.start_again();
    // The first exports after it carry the exact totals.
    chain.wait_value(&series, 30.0);
    let after = agent.wait_metrics("an export after the outage", |m| {
        sample(m, "netprobe_agent_export_requests_total{result=\"ok\"}")
            > sample(&late, "netprobe_agent_export_requests_total{result=\"ok\"}")
    });
    // Every failed request carried the same points (no series came or went).
    let per_request = points(&after);
    assert_eq!(per_request, points(&before), "the series stayed the same");
    let failed = sample(&after, FAILED).expect("failed");
    let dropped = sample(&after, DROPPED).expect("dropped");
    assert_eq!(
        dropped,
        failed * per_request as f64,
        "dropped = failed × points"
    );
    // And the loss reaches Prometheus, as the agent counts it.
    chain.wait_value(FAILED, failed);
    chain.wait_value(DROPPED, dropped);
    println!(
        "Collector down {:.0} s: {failed} exports failed, {dropped} points dropped ({per_request} a request), \
         totals exact after (30 packets); agent RSS {rss_before:.1} MiB before, {rss_early:.1} early in the outage, \
         {rss_max:.1} at most, {rss_late:.1} at its end",
        downtime.as_secs_f64()
    );
    let _ = std::fs::remove_file(&config);
}

/// The samples Prometheus stored for `selector` over the last ten minutes: (ms, value).
fn raw_samples(chain: &Chain, selector: &str) -> Vec<(i64, f64)> {
    let r = chain.prom.query(&format!("{selector}[10m]"));
    let series = r.as_array().expect("matrix");
    assert_eq!(series.len(), 1, "one series for {selector}: {r}");
    series[0]["values"]
        .as_array()
        .expect("values")
        .iter()
        .map(|p| {
            let t = p[0].as_f64().expect("time");
            let v: f64 = p[1].as_str().and_then(|v| v.parse().ok()).expect("value");
            ((t * 1000.0).round() as i64, v)
        })
        .collect()
}

/// An instant query at `at_ms`.
fn query_at(chain: &Chain, promql: &str, at_ms: i64) -> Option<f64> {
    let q = crate::common::backends::url_encode(promql);
    let data = chain.prom.api(&format!(
        "/api/v1/query?query={q}&time={}.{:03}",
        at_ms / 1000,
        at_ms % 1000
    ));
    value(&data["result"])
}

fn an_agent_restart_is_one_counter_reset(mode: Mode, protocol: Protocol) {
    crate::common::require_root();
    let chain = Chain::new("arst", mode);
    let (path, series) = flow();
    let mut first = chain.start_agent(chain.agent_command(protocol, &[]));
    path.send(&chain.lab, 5);
    chain.wait_value(&series, 5.0);
    // The window starts at a sample of 5: what follows is 7 packets, a restart, 4 packets.
    let start = *raw_samples(&chain, &series).last().expect("a sample");
    assert_eq!(start.1, 5.0);
    path.send(&chain.lab, 7);
    counted(&first, &series, 12);
    // SIGTERM: the last export carries the final 12.
    let status = first.terminate();
    assert!(status.success(), "{status:?}");
    chain.wait_value(&series, 12.0);
    drop(first);
    let second = chain.start_agent(chain.agent_command(protocol, &[]));
    path.send(&chain.lab, 4);
    counted(&second, &series, 4);
    chain.wait_value(&series, 4.0);
    let samples = raw_samples(&chain, &series);
    let end = *samples.last().expect("a sample");
    assert_eq!(end.1, 4.0);
    let window: Vec<f64> = samples
        .iter()
        .filter(|(t, _)| *t >= start.0)
        .map(|(_, v)| *v)
        .collect();
    // The same series throughout (one answer above): 5 … 12, then from the new run's start.
    let drops = window.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(drops, 1, "{mode:?}: one reset in {window:?}");
    assert!(
        window.contains(&12.0),
        "{mode:?}: the final export's 12 in {window:?}"
    );
    let range = format!("{}ms", end.0 - start.0);
    assert_eq!(
        query_at(&chain, &format!("resets({series}[{range}])"), end.0),
        Some(1.0)
    );
    // No double count, nothing lost: 7 before the restart and 4 after. The range covers the
    // samples from `start` to `end` exactly, so Prometheus has nothing to extrapolate.
    let increase = query_at(&chain, &format!("increase({series}[{range}])"), end.0);
    assert_eq!(
        increase,
        Some(11.0),
        "{mode:?}: increase() over the restart in {window:?}"
    );
    // rate() over every 5-s window of the span: never negative.
    let q = crate::common::backends::url_encode(&format!("rate({series}[5s])"));
    let data = chain.prom.api(&format!(
        "/api/v1/query_range?query={q}&start={:.3}&end={:.3}&step=0.5",
        start.0 as f64 / 1000.0,
        end.0 as f64 / 1000.0
    ));
    let rates: Vec<f64> = data["result"][0]["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p[1].as_str()?.parse().ok())
        .collect();
    assert!(!rates.is_empty(), "{mode:?}: no rate() points");
    assert!(
        rates.iter().all(|r| *r >= 0.0),
        "{mode:?}: a negative rate over the restart: {rates:?}"
    );
    println!(
        "{mode:?} via {protocol:?}: agent restarted; samples {window:?}: 1 reset, increase() = 11 (7 + 4), {} rate() points, none negative",
        rates.len()
    );
    drop(second);
}

#[test]
fn an_agent_restart_through_the_scrape_endpoint() {
    an_agent_restart_is_one_counter_reset(Mode::Scrape, Protocol::Grpc);
}

#[test]
fn an_agent_restart_through_remote_write() {
    an_agent_restart_is_one_counter_reset(Mode::RemoteWrite, Protocol::Http);
}
