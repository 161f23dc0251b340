//! The Grafana dashboards, statically: the JSON model Grafana imports (`__inputs`, a datasource
//! variable every panel uses, stable unique uids, `$__rate_interval`, the cluster / namespace /
//! workload variables), and the catalogue in step with them: every metric name they (and the
//! alert rules) use exists in the catalogue (`metrics`), every label they group, match or print by is one the
//! series carry, and every catalogue metric appears in a panel. The queries run against a real
//! Prometheus in `dashboards_lab.rs`.

mod common;
#[path = "common/grafana.rs"]
mod grafana;
#[path = "common/repo.rs"]
mod repo;

use std::collections::BTreeSet;

use otel_netprobe::metrics::catalogue;
use serde_json::{Value, json};

#[test]
fn dashboards_import_by_hand_and_provision() {
    let all = grafana::dashboards();
    let files: Vec<&str> = all.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        files,
        [
            "netprobe-agent.json",
            "netprobe-connections.json",
            "netprobe-dns.json",
            "netprobe-patterns.json",
            "netprobe-topology.json",
            "netprobe-traffic.json"
        ]
    );
    let mut uids = BTreeSet::new();
    for (file, d) in &all {
        check_dashboard(file, d, &mut uids);
    }
    let (_, traffic) = &all[4];
    let kinds: BTreeSet<&str> = all
        .iter()
        .flat_map(|(_, d)| grafana::panels(d))
        .map(|p| p["type"].as_str().expect("type"))
        .collect();
    for kind in [
        "nodeGraph",
        "heatmap",
        "timeseries",
        "table",
        "piechart",
        "stat",
        "bargauge",
    ] {
        assert!(kinds.contains(kind), "no {kind} panel");
    }
    assert!(
        traffic["description"]
            .as_str()
            .is_some_and(|d| d.contains("counted by both"))
    );
}

/// One dashboard's import model, variables, panels and queries.
fn check_dashboard(file: &str, d: &Value, uids: &mut BTreeSet<String>) {
    let stem = file.trim_end_matches(".json");
    // A stable uid, the file's name: links and provisioning keep working across imports.
    assert_eq!(d["uid"], stem, "{file}");
    assert!(uids.insert(d["uid"].to_string()), "{file}: uid taken");
    assert!(
        d["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("otel-netprobe / "))
    );
    assert_eq!(
        d["__inputs"],
        json!([{"name": "DS_PROMETHEUS", "label": "Prometheus",
            "description": "The Prometheus (or compatible) datasource with the otel-netprobe metrics",
            "type": "datasource", "pluginId": "prometheus", "pluginName": "Prometheus"}]),
        "{file}"
    );
    let vars = d["templating"]["list"].as_array().expect("variables");
    let ds = &vars[0];
    assert_eq!(
        (&ds["name"], &ds["type"], &ds["query"]),
        (
            &json!("datasource"),
            &json!("datasource"),
            &json!("prometheus")
        ),
        "{file}"
    );
    assert_eq!(ds["current"]["value"], "${DS_PROMETHEUS}");
    let names: Vec<&str> = vars
        .iter()
        .map(|v| v["name"].as_str().expect("name"))
        .collect();
    let want: &[&str] = if stem == "netprobe-agent" {
        &["datasource", "cluster", "node"]
    } else {
        &["datasource", "cluster", "namespace", "workload"]
    };
    assert_eq!(names, want, "{file}");
    for v in &vars[1..] {
        assert_eq!(
            v["datasource"],
            json!({"type": "prometheus", "uid": "${datasource}"})
        );
        // "All" must also match series without the label (a cluster without a name).
        assert_eq!(
            (&v["includeAll"], &v["allValue"]),
            (&json!(true), &json!(".*"))
        );
    }
    let panels = grafana::panels(d);
    let mut ids = BTreeSet::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "{file}: id of {title}"
        );
        assert!(!title.is_empty() && p["description"].as_str().is_some_and(|s| !s.is_empty()));
        let g = &p["gridPos"];
        let (x, w) = (g["x"].as_u64().expect("x"), g["w"].as_u64().expect("w"));
        assert!(x + w <= 24, "{file}: {title} is wider than the grid");
        let ds = json!({"type": "prometheus", "uid": "${datasource}"});
        assert_eq!(p["datasource"], ds, "{file}: {title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{file}: {title} has no query");
        for t in targets {
            assert_eq!(t["datasource"], ds, "{file}: {title}");
        }
    }
    for q in grafana::queries(d) {
        for f in ["rate(", "increase("] {
            let uses = q.expr.matches(f).count();
            let windows = q.expr.matches("[$__rate_interval])").count();
            assert!(
                uses == 0 || windows >= uses,
                "{file}: {}: {f} without $__rate_interval",
                q.panel
            );
        }
        assert!(
            !q.expr.contains("[5m]") && !q.expr.contains("[1m]"),
            "{}",
            q.expr
        );
    }
}

/// Every expression of the dashboards (panels and variables) and the alert rules.
fn expressions() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (file, d) in grafana::dashboards() {
        for q in grafana::queries(&d) {
            out.push((format!("{file}: {}", q.panel), q.expr));
        }
        for (name, selector, _) in grafana::label_variables(&d) {
            out.push((format!("{file}: ${name}"), selector));
        }
    }
    out
}

#[test]
fn the_readme_lists_the_catalogue() {
    let readme = repo::read("README.md");
    let table = readme
        .split("<!-- catalogue: made from the metric modules; tests/dashboards.rs checks it -->\n")
        .nth(1)
        .and_then(|t| t.split("<!-- end of catalogue -->").next())
        .expect("the README's metric reference");
    let want = repo::catalogue_table();
    assert!(
        table.trim_end() == want.trim_end(),
        "the README's metric reference differs from the catalogue; it should read:\n{want}"
    );
}

#[test]
fn dashboards_and_the_catalogue_stay_in_step() {
    let exprs = expressions();
    for (at, expr) in &exprs {
        let unknown = repo::unknown_names([expr.as_str()]);
        assert!(
            unknown.is_empty(),
            "{at}: {unknown:?} are not in the catalogue"
        );
    }
    let rules = repo::read("alerts/netprobe.rules.yaml");
    assert!(repo::unknown_names([rules.as_str()]).is_empty());
    // Every catalogue metric is on a panel (users should see all of them; when issue 10's
    // metrics join the catalogue, their panels join the dashboards).
    let used: BTreeSet<String> = exprs
        .iter()
        .filter(|(at, _)| !at.contains(": $"))
        .flat_map(|(_, e)| repo::metric_names(e))
        .collect();
    let missing: Vec<&str> = catalogue::all()
        .filter(|m| !repo::series_names(m).iter().any(|n| used.contains(n)))
        .map(|m| m.prometheus)
        .collect();
    assert!(
        missing.is_empty(),
        "catalogue metrics on no panel: {missing:?}"
    );
    // The checks themselves: an unknown name is caught.
    assert_eq!(
        repo::unknown_names([
            "sum(rate(netprobe_flow_byte_total[1m])) / netprobe_packet_size_bytes_count"
        ]),
        ["netprobe_flow_byte_total"]
    );
    println!(
        "{} expressions, {} catalogue metrics, all on panels",
        exprs.len(),
        catalogue::all().count()
    );
}

#[test]
fn variables_and_rates_substitute_as_grafana_does() {
    let expr = r#"sum(rate(netprobe_flow_bytes_total{k8s_cluster_name=~"$cluster", source_k8s_workload_name=~"${workload}"}[$__rate_interval]))"#;
    let vars = [("cluster", Some("lab.1")), ("workload", None)];
    assert_eq!(
        grafana::substitute(expr, &vars, "1m"),
        r#"sum(rate(netprobe_flow_bytes_total{k8s_cluster_name=~"lab\.1", source_k8s_workload_name=~".*"}[1m]))"#
    );
    let d: Value = grafana::dashboards().remove(4).1;
    let v = grafana::label_variables(&d);
    assert_eq!(
        v[0],
        (
            "cluster".into(),
            "netprobe_agent_read_cycles_total".into(),
            "k8s_cluster_name".into()
        )
    );
}

/// The label names a PromQL expression uses: grouping lists (`by`, `without`, `on`,
/// `ignoring`, `group_left`, `group_right`) and matchers (`name="..."`, `=~`, `!=`, `!~`).
/// Strings are skipped (a `label_join` names its labels in strings).
fn labels_in(expr: &str) -> BTreeSet<String> {
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = expr.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ident(b[i]) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let rest = expr[i..].trim_start();
            if GROUPING.contains(&word) && rest.starts_with('(') {
                let list = &rest[1..rest.find(')').expect("closing parenthesis")];
                out.extend(
                    list.split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            } else if ["=~", "!~", "!=", "="]
                .iter()
                .any(|op| rest.starts_with(op))
                && !rest.starts_with("==")
            {
                out.insert(word.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// The labels series can carry: every attribute of the catalogue, the overflow marker, the
/// histograms' `le`, the resource's cluster and node (the Collector's resource conversion, or
/// the ServiceMonitor's relabelling), and the node graph's fields that the topology dashboard
/// makes with `label_join`.
fn known_labels() -> BTreeSet<String> {
    let mut known = repo::attribute_labels();
    known.extend(
        [
            "otel_metric_overflow",
            "le",
            "k8s_cluster_name",
            "k8s_node_name",
            "id",
            "source",
            "target",
        ]
        .map(str::to_owned),
    );
    known
}

#[test]
fn dashboards_and_rules_use_only_labels_the_series_carry() {
    let known = known_labels();
    let mut uses: Vec<(String, String)> = Vec::new();
    for (file, d) in grafana::dashboards() {
        for p in grafana::panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            for t in p["targets"].as_array().into_iter().flatten() {
                let at = format!("{file}: {title}");
                let expr = t["expr"].as_str().expect("expr");
                uses.extend(labels_in(expr).into_iter().map(|l| (at.clone(), l)));
                // Legends name labels as {{label}}.
                let legend = t["legendFormat"].as_str().unwrap_or_default();
                for part in legend.split("{{").skip(1) {
                    let label = part.split("}}").next().unwrap_or_default().trim();
                    uses.push((format!("{at} (legend)"), label.to_owned()));
                }
            }
        }
        for (name, selector, label) in grafana::label_variables(&d) {
            let at = format!("{file}: ${name}");
            uses.extend(labels_in(&selector).into_iter().map(|l| (at.clone(), l)));
            uses.push((at, label));
        }
    }
    let dashboard_uses = uses.len();
    for r in &repo::rules() {
        let at = r["alert"].as_str().expect("alert").to_owned();
        let expr = r["expr"].as_str().expect("expr");
        uses.extend(labels_in(expr).into_iter().map(|l| (at.clone(), l)));
        let texts = r["annotations"].as_object().expect("annotations").values();
        let texts = texts.chain(r["labels"].as_object().expect("labels").values());
        for text in texts {
            for part in text.as_str().unwrap_or_default().split("$labels.").skip(1) {
                let label: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                uses.push((format!("{at} (annotation or label)"), label));
            }
        }
    }
    // The rules also read kube-state-metrics' and the Collector's own series, with their labels.
    let mut known_to_rules = known.clone();
    known_to_rules.extend(
        repo::FOREIGN_SERIES
            .iter()
            .flat_map(|(_, labels)| labels.iter().map(|l| (*l).to_owned())),
    );
    let unknown: Vec<&(String, String)> = uses
        .iter()
        .enumerate()
        .filter(|(i, (_, l))| {
            let known = if *i < dashboard_uses {
                &known
            } else {
                &known_to_rules
            };
            !known.contains(l)
        })
        .map(|(_, u)| u)
        .collect();
    assert!(unknown.is_empty(), "labels no series carries: {unknown:?}");
    let distinct: BTreeSet<&String> = uses.iter().map(|(_, l)| l).collect();
    println!(
        "{} label uses, {} labels, all carried",
        uses.len(),
        distinct.len()
    );
    // The check itself: a misspelt label is caught, strings and comparisons are not labels.
    let found = labels_in(
        r#"sum by (netprobe_drop_reasons) (rate(m{k8s_cluster_name=~"$c", le!="1"}[1m])) == 0 and on (id) label_join(x, "a", "b=c")"#,
    );
    let want = ["id", "k8s_cluster_name", "le", "netprobe_drop_reasons"];
    assert_eq!(found, want.iter().map(|s| (*s).to_owned()).collect());
    assert!(!known.contains("netprobe_drop_reasons"));
}

/// The selector each cluster-wide query of a per-flow metric must carry: a packet that crosses
/// nodes is counted on both, once as `other_node` (README, "Counting across nodes").
const ONCE: &str = "netprobe_origin!=\"other_node\"";

/// The selectors (`{...}`, or none) that follow each use of a per-flow metric in `expr`, but
/// drops (packets and bytes): a drop happens on one node, so every origin is summed.
fn per_flow_selectors(expr: &str) -> Vec<(String, String)> {
    let names: Vec<String> = repo::catalogue()
        .into_iter()
        .filter(|(n, m)| m.per_flow && !n.starts_with("netprobe_packet_drop"))
        .map(|(n, _)| n)
        .collect();
    let mut out = Vec::new();
    for n in &names {
        for (at, _) in expr.match_indices(n.as_str()) {
            let rest = &expr[at + n.len()..];
            // A longer name (`_bucket` after a histogram's base) is its own match.
            if rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let selector = rest
                .strip_prefix('{')
                .and_then(|r| r.split_once('}'))
                .map(|(s, _)| s.to_owned())
                .unwrap_or_default();
            out.push((n.clone(), selector));
        }
    }
    out
}

#[test]
fn cluster_wide_sums_count_each_packet_once() {
    let mut checked = 0;
    let mut per_node = Vec::new();
    let mut exprs: Vec<(String, String)> = Vec::new();
    for (file, d) in grafana::dashboards() {
        for q in grafana::queries(&d) {
            exprs.push((format!("{file}: {}", q.panel), q.expr));
        }
    }
    for r in &repo::rules() {
        let at = r["alert"].as_str().or(r["record"].as_str()).expect("name");
        exprs.push((at.to_owned(), r["expr"].as_str().expect("expr").to_owned()));
    }
    for (at, expr) in &exprs {
        let selectors = per_flow_selectors(expr);
        // A per-node panel shows what each node saw: every origin.
        if expr.contains("by (k8s_node_name)") {
            if !selectors.is_empty() {
                per_node.push(at.clone());
            }
            continue;
        }
        for (metric, selector) in selectors {
            assert!(
                selector.contains(ONCE),
                "{at}: {metric} is summed across nodes without {ONCE}: {expr}"
            );
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} selectors checked");
    assert_eq!(per_node, ["netprobe-traffic.json: Traffic by node"]);
    // The check itself: a bare selector, a histogram's series and a drop.
    let mut found = per_flow_selectors(
        "rate(netprobe_flow_bytes_total[1m]) + netprobe_dns_duration_seconds_bucket{le=\"1\"} + netprobe_packet_drops_total",
    );
    found.sort();
    assert_eq!(
        found,
        [
            (
                "netprobe_dns_duration_seconds_bucket".to_owned(),
                "le=\"1\"".to_owned()
            ),
            ("netprobe_flow_bytes_total".to_owned(), String::new()),
        ]
    );
    println!("{checked} per-flow selectors summed across nodes, each once");
}
