//! The alert rules (`alerts/`): promtool checks them and runs their unit tests; every alert has
//! a firing and a quiet case, a summary, a description, a severity and a runbook page in the
//! repository; every metric they name is in the catalogue.

mod common;
#[path = "common/repo.rs"]
mod repo;

use std::{collections::BTreeMap, process::Command};

use common::backends::tool;
use serde_json::Value;

fn rules() -> Vec<Value> {
    let file: Value =
        serde_norway::from_str(&repo::read("alerts/netprobe.rules.yaml")).expect("rules YAML");
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}

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
        out.contains(&format!("SUCCESS: {} rules found", rules().len())),
        "{out}"
    );
    let (ok, out) = promtool(
        &["test", "rules", "tests/netprobe.rules.test.yaml"],
        "alerts",
    );
    println!("{out}");
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

/// The tests catch a rule that changes: a threshold moved makes them fail.
#[test]
fn the_rule_tests_fail_when_a_rule_changes() {
    let dir = std::env::temp_dir().join(common::unique("alerts"));
    std::fs::create_dir_all(dir.join("tests")).expect("temp dir");
    let rules = repo::read("alerts/netprobe.rules.yaml");
    let broken = rules.replacen(
        "netprobe_agent_flow_table_fill_ratio) > 0.9",
        "netprobe_agent_flow_table_fill_ratio) > 0.99",
        1,
    );
    assert_ne!(broken, rules, "the threshold to break");
    std::fs::write(dir.join("netprobe.rules.yaml"), broken).expect("write");
    std::fs::write(
        dir.join("tests/t.yaml"),
        repo::read("alerts/tests/netprobe.rules.test.yaml"),
    )
    .expect("write");
    let (ok, out, err) = repo::run(
        Command::new(tool("promtool"))
            .args(["test", "rules", "tests/t.yaml"])
            .current_dir(&dir),
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!ok, "a broken rule passed its tests:\n{out}{err}");
    let report = format!("{out}{err}");
    assert!(
        report.contains("alertname: NetprobeFlowTableNearFull"),
        "{report}"
    );
}

#[test]
fn every_alert_is_documented_tested_both_ways_and_uses_catalogue_metrics() {
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
    let rules = rules();
    assert!(rules.len() >= 8, "{rules:?}");
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
        assert!(!repo::metric_names(expr).is_empty(), "{alert}: no metric?");
    }
    assert_eq!(
        cases.len(),
        rules.len(),
        "tests for alerts that do not exist: {cases:?}"
    );
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
