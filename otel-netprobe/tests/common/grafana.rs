//! The Grafana dashboards of `dashboards/`: their queries (panel targets and variable queries)
//! and Grafana's variable substitution, for the static checks and the lab test.
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::path::PathBuf;

use serde_json::Value;

/// The dashboard files of `dashboards/` (`*.json`), sorted.
pub fn files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir())
        .expect("dashboards/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("json"))
        })
        .collect();
    files.sort();
    files
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../dashboards")
}

/// Every dashboard: (file name, JSON), sorted by name.
pub fn dashboards() -> Vec<(String, Value)> {
    files()
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(dir().join(&n)).expect("read dashboard");
            let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, v)
        })
        .collect()
}

/// A panel's query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The panel's title.
    pub panel: String,
    /// The target's refId.
    pub ref_id: String,
    /// PromQL with Grafana variables.
    pub expr: String,
    /// An instant query (tables, stats, pies, the node graph) rather than a range.
    pub instant: bool,
}

/// The panels of a dashboard (rows' children included), rows left out.
pub fn panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        if p["type"] == "row" {
            out.extend(p["panels"].as_array().into_iter().flatten());
        } else {
            out.push(p);
        }
    }
    out
}

/// Every target of every panel.
pub fn queries(d: &Value) -> Vec<Query> {
    panels(d)
        .into_iter()
        .flat_map(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| Query {
                    panel: p["title"].as_str().unwrap_or_default().to_owned(),
                    ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                    expr: t["expr"].as_str().expect("expr").to_owned(),
                    instant: t["instant"] == true,
                })
        })
        .collect()
}

/// A `label_values(SELECTOR, LABEL)` query variable: (name, selector, label).
pub fn label_variables(d: &Value) -> Vec<(String, String, String)> {
    d["templating"]["list"]
        .as_array()
        .expect("templating")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"].as_str().expect("variable query");
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .unwrap_or_else(|| panic!("not label_values: {q}"));
            let (selector, label) = inner.rsplit_once(',').expect("label_values(sel, label)");
            (
                v["name"].as_str().expect("name").to_owned(),
                selector.trim().to_owned(),
                label.trim().to_owned(),
            )
        })
        .collect()
}

/// Grafana's substitution: `$name` and `${name}` become the variable's value (regex-escaped,
/// or the variable's All value `.*`); `$__rate_interval` becomes `rate_interval`.
pub fn substitute(expr: &str, vars: &[(&str, Option<&str>)], rate_interval: &str) -> String {
    let mut out = expr.replace("$__rate_interval", rate_interval);
    // Longest names first, so `$node` never eats the start of a longer name.
    let mut sorted: Vec<&(&str, Option<&str>)> = vars.iter().collect();
    sorted.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (name, value) in sorted {
        let value = value.map_or_else(|| ".*".to_owned(), regex_escape);
        out = out
            .replace(&format!("${{{name}}}"), &value)
            .replace(&format!("${name}"), &value);
    }
    assert!(!out.contains('$'), "unsubstituted variable in {out}");
    out
}

fn regex_escape(v: &str) -> String {
    v.chars().fold(String::new(), |mut s, c| {
        if "\\.+*?()|[]{}^$".contains(c) {
            s.push('\\');
        }
        s.push(c);
        s
    })
}
