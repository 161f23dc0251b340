//! What the dashboards lab asks a Prometheus once the lab's traffic is in it: every panel and
//! variable query of every dashboard (variables substituted, as Grafana would send them) returns
//! series, the traffic dashboards' moving ones; and every alert rule evaluates, none firing.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    common::backends::{Prometheus, http_get, url_encode},
    grafana,
};

/// GET a Prometheus API path; returns `data`.
pub fn prom_api(prom: &Prometheus, path_and_query: &str) -> Value {
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
pub fn values(result: &Value) -> Vec<f64> {
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

/// Every dashboard's variables (with `chosen` values) and panel queries against `prom`;
/// prints what each returned and fails naming every query without data. `path` names the
/// path the series took, for the messages.
pub fn every_dashboard_query(prom: &Prometheus, path: &str, chosen: &[(&str, &str)]) {
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
                prom,
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
                let result = run_query(prom, q, &expr);
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
    println!("--- {path} ---\n{}", report.join("\n"));
    assert!(
        failures.is_empty(),
        "{path}: queries without data:\n{}",
        failures.join("\n")
    );
}

/// The alert rules loaded in `prom`: all `rules` of them evaluate, and none fires.
pub fn no_alert_fires(prom: &Prometheus, path: &str, rules_in_file: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let groups = prom_api(prom, "/api/v1/rules")["groups"].clone();
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
        if rules.len() == rules_in_file && evaluated {
            for r in &rules {
                assert_eq!(
                    r["state"], "inactive",
                    "{path}: {} fires for a healthy agent: {r}",
                    r["name"]
                );
            }
            println!("{path}: {rules_in_file} alert rules evaluated, none firing");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path}: rules not all evaluated: {groups}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
