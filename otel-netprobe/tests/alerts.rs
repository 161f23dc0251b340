//! The alert rules (`alerts/`): promtool checks them and runs their unit tests; every alert has
//! a firing and a quiet case, and breaking the point of a rule (a threshold, the join that keeps
//! removed nodes quiet, the rollout's grace, a matcher, a routing label) makes them fail. Every
//! alert has a summary, a description, a severity and a runbook page in the repository; every
//! metric it names is in the catalogue, in the documented kube-state-metrics list, or served by
//! the real Collector (`alerts/collector.rs`, which also runs the Collector rules on it in a real
//! Prometheus). The chart's PrometheusRule takes `prometheusRule.runbookBaseURL` and the
//! release's names.

#[path = "common/cgroup.rs"]
mod cgroup;
#[path = "common/collector.rs"]
mod collector;
mod common;
#[path = "alerts/collector.rs"]
mod real_collector;
#[path = "common/repo.rs"]
mod repo;

use std::{collections::BTreeMap, process::Command};

use common::backends::tool;
use serde_json::{Value, json};

/// The kube-state-metrics series the rules read, as alerts/README.md lists them ("Series from
/// elsewhere"); their names have been stable since kube-state-metrics 2.0.
const KUBE_STATE_METRICS: [&str; 4] = [
    "kube_node_info",
    "kube_daemonset_status_desired_number_scheduled",
    "kube_daemonset_status_number_available",
    "kube_daemonset_status_updated_number_scheduled",
];

fn promtool(args: &[&str], dir: &str) -> (bool, String) {
    let (ok, out, err) = repo::run(
        Command::new(tool("promtool"))
            .args(args)
            .current_dir(repo::root().join(dir)),
    );
    (ok, format!("{out}{err}"))
}

#[test]
fn promtool_checks_the_rules_and_passes_their_tests() {
    let (ok, out) = promtool(&["check", "rules", "netprobe.rules.yaml"], "alerts");
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", repo::rules().len())),
        "{out}"
    );
    let (ok, out) = promtool(
        &["test", "rules", "tests/netprobe.rules.test.yaml"],
        "alerts",
    );
    println!("{out}");
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

/// Each change undoes the point of a rule; the tests must then fail, naming the alert.
const BREAKS: [(&str, &str, &str, &str); 7] = [
    (
        "a threshold moved",
        "netprobe_agent_flow_table_fill_ratio) > 0.9",
        "netprobe_agent_flow_table_fill_ratio) > 0.99",
        "NetprobeFlowTableNearFull",
    ),
    (
        "removed nodes missed as without kube-state-metrics",
        "group(kube_node_info)",
        "group(kube_node_info_never_scraped)",
        "NetprobeAgentMetricsMissing",
    ),
    (
        "no grace while a rollout moves",
        "[10m]) == 0",
        "[10m]) >= 0",
        "NetprobeAgentNotRunning",
    ),
    (
        "the Collector's DaemonSet taken for the agent's",
        r#", daemonset!~".*collector.*""#,
        "",
        "NetprobeAgentNotRunning",
    ),
    (
        "any team's Collector taken for ours",
        r#"{job=~".*otel-netprobe-collector.*"}"#,
        "",
        "NetprobeCollectorRefusingPoints",
    ),
    (
        "a workload alert without its namespace",
        "          namespace: \"{{ $labels.destination_k8s_namespace_name }}\"\n",
        "",
        "NetprobeTcpHandshakeSlow",
    ),
    (
        "a coverage threshold moved",
        "          ) < 0.9\n",
        "          ) < 0.4\n",
        "NetprobeInterfaceCoverageLow",
    ),
];

#[test]
fn the_rule_tests_fail_when_a_rule_changes() {
    let rules = repo::read("alerts/netprobe.rules.yaml");
    let tests = repo::read("alerts/tests/netprobe.rules.test.yaml");
    for (what, from, to, alert) in BREAKS {
        let broken = rules.replace(from, to);
        assert_ne!(broken, rules, "{what}: {from:?} is not in the rules");
        let dir = std::env::temp_dir().join(common::unique("alerts"));
        std::fs::create_dir_all(dir.join("tests")).expect("temp dir");
        std::fs::write(dir.join("netprobe.rules.yaml"), broken).expect("write");
        std::fs::write(dir.join("tests/t.yaml"), &tests).expect("write");
        let (ok, out, err) = repo::run(
            Command::new(tool("promtool"))
                .args(["test", "rules", "tests/t.yaml"])
                .current_dir(&dir),
        );
        let _ = std::fs::remove_dir_all(&dir);
        let report = format!("{out}{err}");
        assert!(
            !ok,
            "{what}: the broken rules passed their tests:\n{report}"
        );
        assert!(
            report.contains(&format!("alertname: {alert}")),
            "{what}: {alert} not among the failures:\n{report}"
        );
        println!("{what}: caught ({alert})");
    }
}

#[test]
fn every_alert_is_documented_tested_both_ways_and_uses_known_metrics() {
    let cargo: Value = toml_repository();
    let repository = cargo.as_str().expect("workspace.package.repository");
    let tests: Value = serde_norway::from_str(&repo::read("alerts/tests/netprobe.rules.test.yaml"))
        .expect("tests YAML");
    // alertname -> (cases that fire, cases that stay quiet)
    let mut cases: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for t in tests["tests"].as_array().expect("tests") {
        for a in t["alert_rule_test"].as_array().expect("alert_rule_test") {
            let name = a["alertname"].as_str().expect("alertname").to_owned();
            let fires = a["exp_alerts"].as_array().is_some_and(|e| !e.is_empty());
            let entry = cases.entry(name).or_default();
            if fires {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }
    let readme = repo::read("alerts/README.md");
    let rules = repo::rules();
    assert!(rules.len() >= 20, "{rules:?}");
    for r in &rules {
        let alert = r["alert"].as_str().expect("only alerting rules");
        let ann = &r["annotations"];
        for key in ["summary", "description"] {
            assert!(
                ann[key].as_str().is_some_and(|s| s.len() > 20),
                "{alert}: {key}"
            );
        }
        let severity = r["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning", "info"].contains(&severity),
            "{alert}: severity {severity:?}"
        );
        let page = format!("alerts/runbooks/{alert}.md");
        assert_eq!(
            ann["runbook_url"].as_str(),
            Some(format!("{repository}/blob/main/{page}").as_str()),
            "{alert}"
        );
        let runbook = repo::read(&page);
        assert!(runbook.starts_with(&format!("# {alert}\n")), "{page}");
        assert!(runbook.contains("**Meaning.**"), "{page}");
        assert!(
            readme.contains(&format!("| {alert} |")),
            "{alert}: not in alerts/README.md"
        );
        let (fire, quiet) = cases.get(alert).copied().unwrap_or_default();
        assert!(
            fire >= 1 && quiet >= 1,
            "{alert}: {fire} firing, {quiet} quiet cases"
        );
        let expr = r["expr"].as_str().expect("expr");
        let unknown = repo::unknown_names([expr]);
        assert!(
            unknown.is_empty(),
            "{alert} names {unknown:?}, not in the catalogue"
        );
        for name in repo::names_with_prefix(expr, "kube_") {
            assert!(
                KUBE_STATE_METRICS.contains(&name.as_str()) && readme.contains(&name),
                "{alert}: {name} is not in the documented kube-state-metrics list"
            );
        }
        let otelcol = repo::names_with_prefix(expr, "otelcol_");
        for name in &otelcol {
            assert!(
                readme.contains(name.as_str()),
                "{alert}: {name} not in alerts/README.md"
            );
        }
        assert!(
            !repo::metric_names(expr).is_empty()
                || !otelcol.is_empty()
                || !repo::names_with_prefix(expr, "kube_").is_empty(),
            "{alert}: no metric?"
        );
        // Alertmanager routes per namespace: a workload alert carries its workload's.
        let side = ["destination", "source"]
            .into_iter()
            .find(|s| expr.contains(&format!("{s}_k8s_namespace_name")));
        if let Some(side) = side {
            assert_eq!(
                r["labels"]["namespace"].as_str(),
                Some(format!("{{{{ $labels.{side}_k8s_namespace_name }}}}").as_str()),
                "{alert}: the namespace label"
            );
        }
    }
    assert_eq!(
        cases.len(),
        rules.len(),
        "tests for alerts that do not exist: {cases:?}"
    );
}

/// `prometheusRule.runbookBaseURL` reaches every rule, and the rules watch the release's own
/// DaemonSet and Collector, in the release's namespace.
#[test]
fn the_chart_points_runbooks_at_runbook_base_url_and_matches_its_release() {
    let values = json!({"prometheusRule": {"enabled": true,
        "runbookBaseURL": "https://wiki.example.com/sre/netprobe/"}});
    let r = repo::render_in(&values, "monitoring").expect("render");
    let rule = r.get("PrometheusRule", "np-otel-netprobe");
    let rendered = repo::rules_of(&serde_json::to_string(&rule["spec"]).expect("json"));
    let file = repo::rules();
    assert_eq!(rendered.len(), file.len());
    for (r, f) in rendered.iter().zip(&file) {
        let alert = r["alert"].as_str().expect("alert");
        assert_eq!(
            r["annotations"]["runbook_url"],
            format!("https://wiki.example.com/sre/netprobe/{alert}.md"),
            "{alert}"
        );
        let expr = r["expr"].as_str().expect("expr");
        let want = f["expr"]
            .as_str()
            .expect("expr")
            .replace(
                r#"daemonset=~".*otel-netprobe.*", daemonset!~".*collector.*""#,
                r#"namespace="monitoring", daemonset="np-otel-netprobe""#,
            )
            .replace(
                r#"job=~".*otel-netprobe-collector.*""#,
                r#"namespace="monitoring", job=~"np-otel-netprobe-collector.*""#,
            );
        assert_eq!(expr, want, "{alert}");
    }
    let ours = |e: &Value| {
        let e = e["expr"].as_str().unwrap_or_default();
        e.contains(r#"daemonset="np-otel-netprobe""#)
            || e.contains(r#"job=~"np-otel-netprobe-collector.*""#)
    };
    assert_eq!(rendered.iter().filter(|r| ours(r)).count(), 5);
    // A value that cannot be a link is refused, naming the key.
    let bad = json!({"prometheusRule": {"enabled": true, "runbookBaseURL": "wiki/netprobe"}});
    let err = repo::render(&bad)
        .err()
        .expect("a base that is no URL is refused");
    assert!(err.contains("runbookBaseURL"), "{err}");
}

#[test]
fn the_real_collector_serves_the_names_and_the_collector_rules_see_it() {
    real_collector::run();
}

/// `workspace.package.repository` of the workspace's Cargo.toml.
fn toml_repository() -> Value {
    let text = repo::read("Cargo.toml");
    let line = text
        .lines()
        .find(|l| l.starts_with("repository = "))
        .expect("repository in Cargo.toml");
    Value::String(line["repository = ".len()..].trim_matches('"').to_owned())
}
