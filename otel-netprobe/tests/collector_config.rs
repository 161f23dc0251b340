//! Static checks of the OpenTelemetry Collector configurations in `collector-config/`: every
//! component a pipeline or `service.extensions` names is defined, each pipeline has a receiver
//! and an exporter, `memory_limiter` comes first, the OTLP receiver listens on the agent's default
//! ports, and every `${env:...}` reference is well-formed.

use std::{fs, path::PathBuf};

use otel_netprobe::config::{OTLP_GRPC_PORT, OTLP_HTTP_PORT};
use serde_norway::Value;

fn config_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../collector-config")
}

fn read(name: &str) -> String {
    fs::read_to_string(config_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The component type of an id: `otlp/agent` -> `otlp`.
fn kind(id: &str) -> &str {
    id.split_once('/').map_or(id, |(kind, _)| kind)
}

fn defined(doc: &Value, section: &str, id: &str) -> bool {
    doc[section]
        .as_mapping()
        .is_some_and(|m| m.contains_key(id))
}

/// The ids in a component list; missing is empty, anything but a list of strings is an error.
fn ids(list: &Value, errors: &mut Vec<String>) -> Vec<String> {
    if !list.is_null() && !list.is_sequence() {
        errors.push(format!("not a list of component ids: {list:?}"));
    }
    let items = list.as_sequence().into_iter().flatten();
    items
        .map(|i| i.as_str().map_or_else(|| format!("{i:?}"), str::to_owned))
        .collect()
}

/// Each `${...}` must be `${env:NAME}` or `${env:NAME:-default}`, NAME a POSIX variable name.
fn check_env_refs(text: &str, errors: &mut Vec<String>) {
    let mut rest = text;
    while let Some(at) = rest.find("${") {
        rest = &rest[at + 2..];
        let body = rest.find('}').map(|end| &rest[..end]);
        let well_formed = body.and_then(|b| b.strip_prefix("env:")).is_some_and(|b| {
            let name = b.split_once(":-").map_or(b, |(name, _)| name);
            name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
        if !well_formed {
            let shown: String = rest.chars().take_while(|c| *c != '\n').collect();
            errors.push(format!("malformed reference `${{{shown}`"));
        }
    }
}

/// Every problem in one configuration file; empty when it is sound.
fn check(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    check_env_refs(text, &mut errors);
    let doc: Value = match serde_norway::from_str(text) {
        Ok(doc) => doc,
        Err(e) => return vec![format!("not YAML: {e}")],
    };
    let pipelines = doc["service"]["pipelines"].as_mapping();
    let Some(pipelines) = pipelines.filter(|p| !p.is_empty()) else {
        return vec!["no service.pipelines".to_owned()];
    };
    for (name, pipeline) in pipelines {
        let name = name.as_str().unwrap_or("?");
        for section in ["receivers", "processors", "exporters"] {
            let listed = ids(&pipeline[section], &mut errors);
            if listed.is_empty() && section != "processors" {
                errors.push(format!("pipeline {name} has no {section}"));
            }
            for id in listed.iter().filter(|id| !defined(&doc, section, id)) {
                errors.push(format!(
                    "pipeline {name}: `{id}` not defined under {section}"
                ));
            }
            let limited = listed.iter().any(|id| kind(id) == "memory_limiter");
            if section == "processors" && limited && kind(&listed[0]) != "memory_limiter" {
                errors.push(format!("pipeline {name}: memory_limiter is not first"));
            }
        }
    }
    let extensions = ids(&doc["service"]["extensions"], &mut errors);
    for id in extensions
        .iter()
        .filter(|id| !defined(&doc, "extensions", id))
    {
        errors.push(format!(
            "service.extensions: `{id}` not defined under extensions"
        ));
    }
    let receivers = doc["receivers"].as_mapping().into_iter().flatten();
    let is_otlp = |id: &Value| id.as_str().is_some_and(|id| kind(id) == "otlp");
    let otlp: Vec<_> = receivers.filter(|(id, _)| is_otlp(id)).collect();
    if otlp.is_empty() {
        errors.push("no otlp receiver".to_owned());
    }
    for (id, receiver) in otlp {
        for (protocol, port) in [("grpc", OTLP_GRPC_PORT), ("http", OTLP_HTTP_PORT)] {
            let endpoint = receiver["protocols"][protocol]["endpoint"].as_str();
            if !endpoint.is_some_and(|e| e.ends_with(&format!(":{port}"))) {
                errors.push(format!("{id:?}: {protocol} {endpoint:?} not on :{port}"));
            }
        }
    }
    errors
}

#[test]
fn every_collector_config_is_consistent() {
    let names: Vec<String> = fs::read_dir(config_dir())
        .expect("collector-config/ exists")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .filter_map(|path| Some(path.file_name()?.to_str()?.to_owned()))
        .collect();
    for expected in ["otelcol.yaml", "otelcol-remote-write.yaml"] {
        assert!(names.iter().any(|n| n == expected), "{expected}");
    }
    for name in &names {
        assert_eq!(check(&read(name)), Vec::<String>::new(), "{name}");
    }
    let remote_write: Value =
        serde_norway::from_str(&read("otelcol-remote-write.yaml")).expect("YAML");
    // Under `http:`, where v0.158 moved the client's settings.
    let endpoint = &remote_write["exporters"]["prometheus_remote_write"]["http"]["endpoint"];
    let want = "${env:PROMETHEUS_REMOTE_WRITE_URL}";
    assert_eq!(endpoint.as_str(), Some(want));
}

/// `replace this | with this | and an error containing this` in otelcol.yaml.
const BREAKAGES: &str = "
exporters: [prometheus] | exporters: [prometheus/x] | `prometheus/x` not defined under exporters
receivers: [otlp] | receivers: [] | pipeline metrics has no receivers
processors: [memory_limiter, batch] | processors: [batch, memory_limiter] | not first
extensions: [health_check] | extensions: [health_check, pprof] | `pprof` not defined
endpoint: 0.0.0.0:4317 | endpoint: 0.0.0.0:4319 | grpc Some(\"0.0.0.0:4319\") not on :4317
endpoint: 0.0.0.0:4318 | endpoint: 0.0.0.0:4318/v1 | http Some(\"0.0.0.0:4318/v1\") not on :4318
endpoint: 0.0.0.0:8889 | endpoint: ${env:BAD-NAME} | malformed reference `${env:BAD-NAME}`
endpoint: 0.0.0.0:8889 | endpoint: ${PORT} | malformed reference `${PORT}`
endpoint: 0.0.0.0:8889 | endpoint: ${env:PORT | malformed reference `${env:PORT`";

#[test]
fn broken_configs_are_caught() {
    let good = read("otelcol.yaml");
    for line in BREAKAGES.lines().filter(|l| !l.is_empty()) {
        let [from, to, expected] = line.splitn(3, " | ").collect::<Vec<_>>()[..] else {
            panic!("bad table line {line}");
        };
        assert!(good.contains(from), "otelcol.yaml lacks `{from}`");
        let errors = check(&good.replacen(from, to, 1));
        let found = errors.iter().any(|e| e.contains(expected));
        assert!(found, "`{to}`: want `{expected}`, got {errors:?}");
    }
}
