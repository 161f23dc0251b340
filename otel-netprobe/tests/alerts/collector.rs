//! The Collector rules against the real Collector (`otelcol-netprobe`, the release the chart
//! deploys) and a real Prometheus, both inside a network namespace this test made.
//!
//! The Collector runs `collector-config/otelcol-remote-write.yaml` with its remote-write
//! endpoint a socket that accepts connections and never answers (a backend that hangs; only
//! that stand-in makes the failures on demand), a queue of one batch, one consumer, a 2 s
//! timeout and no retries: every export fails, and pushes beyond the queue are dropped. The
//! Prometheus scrapes its own metrics (:8888) as job `otel-netprobe-collector`, the job the
//! plain rule file's matcher expects, and evaluates `alerts/netprobe.rules.yaml` every second.
//!
//! Checked: every `otelcol_*` name the rules use is a series Prometheus scraped from it (the
//! counters of this release have no `_total` suffix); the export and drop
//! rules become active (pending, as their `for` has not passed) with the exporter's name and
//! the exact share failed (all of it), the queue rule sees the full queue, and the refusal rule,
//! whose memory_limiter the test cannot push to its limit, stays inactive.

use std::{collections::BTreeSet, net::TcpListener, time::Duration};

use serde_json::{Value, json};

use crate::{
    collector::{Collector, Pod},
    common::{self, Netns, backends::Prometheus, patient, unique, wait_until},
    repo,
};

/// One OTLP/JSON request with one counter point.
fn push(value: u64) -> String {
    crate::collector::probe_request("alerts-probe", "netprobe.alerts.probe", &[], value)
}

/// The remote-write configuration, made to fail fast and fill its queue.
fn failing_pod(endpoint: &str) -> Pod {
    let mut pod = Pod::from_file(
        "otelcol-remote-write.yaml",
        &[("PROMETHEUS_REMOTE_WRITE_URL", endpoint)],
    );
    let mut config: Value = serde_norway::from_str(&pod.config).expect("config YAML");
    let rw = &mut config["exporters"]["prometheus_remote_write"];
    rw["timeout"] = json!("2s");
    rw["retry_on_failure"] = json!({"enabled": false});
    rw["remote_write_queue"] = json!({"enabled": true, "queue_size": 1, "num_consumers": 1});
    config["processors"]["batch"]["timeout"] = json!("10ms");
    pod.config = serde_norway::to_string(&config).expect("config YAML");
    pod.name = "remote write to a backend that hangs".into();
    pod
}

/// The rules' alerts that Prometheus holds active (pending or firing), as (name, labels, value).
fn active(prom: &Prometheus) -> Vec<(String, Value, f64)> {
    prom.api("/api/v1/alerts")["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            let labels = a["labels"].clone();
            let value = a["value"]
                .as_str()
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN);
            (
                labels["alertname"].as_str().unwrap_or_default().to_owned(),
                labels,
                value,
            )
        })
        .collect()
}

pub fn run() {
    common::require_root();
    let ns = Netns::new(&unique("alcol"));
    // Accepted by the kernel's backlog, never read: each export waits for its timeout.
    let hang = ns.run(|| TcpListener::bind("127.0.0.1:0").expect("bind"));
    let endpoint = format!("http://{}/api/v1/write", hang.local_addr().expect("addr"));
    let collector = Collector::start(&ns, failing_pod(&endpoint));
    let otlp = collector
        .pod()
        .port("/receivers/otlp/protocols/http/endpoint");
    let telemetry = collector
        .pod()
        .port("/service/telemetry/metrics/readers/0/pull/exporter/prometheus/port");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: otel-netprobe-collector\n    static_configs:\n      - targets: ['127.0.0.1:{telemetry}']\n",
        repo::root().join("alerts/netprobe.rules.yaml").display()
    );
    let prom = Prometheus::start_in_with(Some(&ns.name), &config, &[]);

    let rules: Value =
        serde_norway::from_str(&repo::read("alerts/netprobe.rules.yaml")).expect("rules YAML");
    let used: BTreeSet<String> = rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .flat_map(|r| repo::names_with_prefix(r["expr"].as_str().expect("expr"), "otelcol_"))
        .collect();
    assert!(used.len() >= 6, "{used:?}");

    // Push until every name is scraped and the export, drop and queue rules are all active.
    let want = [
        "NetprobeCollectorExportFailing",
        "NetprobeCollectorDroppingPoints",
        "NetprobeCollectorQueueNearlyFull",
    ];
    let mut pushed = 0u64;
    let mut served = BTreeSet::new();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut last = Vec::new();
    let done = wait_until(patient(Duration::from_secs(180)), || {
        pushed += 1;
        let answer = collector.post(otlp, "/v1/metrics", "application/json", push(pushed));
        assert!(matches!(answer, Ok((200, _))), "push: {answer:?}");
        served = prom
            .query(
                r#"group by (__name__) ({__name__=~"otelcol_.+", job="otel-netprobe-collector"})"#,
            )
            .as_array()
            .expect("result")
            .iter()
            .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_owned))
            .collect();
        last = active(&prom);
        for (name, labels, value) in &last {
            let Some(w) = want.iter().find(|w| *w == name) else {
                continue;
            };
            assert_eq!(
                labels["exporter"], "prometheus_remote_write",
                "{name}: {labels}"
            );
            assert_eq!(labels["job"], "otel-netprobe-collector", "{name}: {labels}");
            if *w == "NetprobeCollectorDroppingPoints" {
                assert!(*value > 0.0, "{name}: {value}");
            } else {
                // Every point failed, or the queue of one batch is full: exactly 1.
                assert!((value - 1.0).abs() < 1e-9, "{name}: {value}");
            }
            seen.insert(w);
        }
        used.is_subset(&served) && seen.len() == want.len()
    });
    let missing: Vec<&String> = used.difference(&served).collect();
    assert!(
        done,
        "after {pushed} pushes: names the rules use that the Collector does not serve: {missing:?}; served: {served:?}; active: {seen:?} of {want:?}; alerts: {last:?}\n{}",
        collector.log()
    );
    // Refusals need the Collector at its memory limit, which this test does not reach: the
    // rule sees the (zero) counter and stays quiet.
    assert!(
        last.iter()
            .all(|(n, _, _)| n != "NetprobeCollectorRefusingPoints"),
        "{last:?}"
    );
    assert!(
        served.contains("otelcol_receiver_refused_metric_points"),
        "{served:?}"
    );
    println!(
        "{} otelcol_* names in the rules, all served by the real Collector; {:?} active after {pushed} pushes",
        used.len(),
        seen
    );
    drop(prom);
    drop(collector);
    drop(hang);
}
