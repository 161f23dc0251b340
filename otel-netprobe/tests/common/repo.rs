//! The repository's deliverables outside the crate (chart, dashboards, alert rules, Dockerfile)
//! and the tools that check them: the Python venv `make setup` installs (Helm v4 SDK,
//! kubernetes-validate, hadolint), promtool, and the metric catalogue's Prometheus names.
//!
//! Included with `#[path]` by the test files that need it (no change to `common/mod.rs`).
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use otel_netprobe::{
    export::prometheus,
    flow,
    metrics::{Kind, Metric, catalogue},
};
use serde_json::Value;

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// A file of the repository, read whole.
pub fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The venv's program `name` (`python`, `hadolint`); a missing venv fails the test.
pub fn venv(name: &str) -> PathBuf {
    let tools = std::env::var_os("NETPROBE_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/otel-netprobe"),
        PathBuf::from,
    );
    let path = tools.join("venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make setup`",
        path.display()
    );
    path
}

/// Runs a command; returns (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `tests/tools/chart.py ARGS` and decodes its JSON answer (exit 0 or 3, see the script).
fn chart_py(args: &[&str]) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/chart.py");
    let (_, stdout, stderr) = run(Command::new(venv("python")).arg(script).args(args));
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("chart.py {args:?}: {e}\nstdout: {stdout}\nstderr: {stderr}"))
}

/// The chart's directory.
pub fn chart_dir() -> String {
    root().join("charts/otel-netprobe").display().to_string()
}

/// A rendered install: its objects (template path, object) and NOTES.txt.
pub struct Rendered {
    /// Every object, in template order.
    pub objects: Vec<(String, Value)>,
    /// The rendered NOTES.txt.
    pub notes: String,
}

impl Rendered {
    /// The one object of `kind` named `name`.
    pub fn get(&self, kind: &str, name: &str) -> &Value {
        let found: Vec<&Value> = self
            .objects
            .iter()
            .map(|(_, o)| o)
            .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .collect();
        assert_eq!(found.len(), 1, "{kind}/{name} in {:?}", self.names());
        found[0]
    }

    /// Every object of `kind`.
    pub fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects
            .iter()
            .map(|(_, o)| o)
            .filter(|o| o["kind"] == kind)
            .collect()
    }

    /// `Kind/name` of every object.
    pub fn names(&self) -> Vec<String> {
        self.objects
            .iter()
            .map(|(_, o)| format!("{}/{}", str_of(&o["kind"]), str_of(&o["metadata"]["name"])))
            .collect()
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// Renders the chart as release `np` in namespace `netprobe` with `values` (schema checked
/// first, as `helm install` does); `Err` carries the SDK's message.
pub fn render(values: &Value) -> Result<Rendered, String> {
    render_in(values, "netprobe")
}

/// The Kubernetes versions whose schemas every rendered object must satisfy: the chart's
/// kubeVersion floor and the newest kubernetes-validate knows.
pub const KUBE_VERSIONS: [&str; 2] = ["1.25.0", "1.37.0"];

/// [`render`]ed, every object valid on [`KUBE_VERSIONS`], and `helm lint --strict` clean.
pub fn rendered(values: &Value) -> Rendered {
    let r = render(values).unwrap_or_else(|e| panic!("{values}: {e}"));
    let objects: Vec<&Value> = r.objects.iter().map(|(_, o)| o).collect();
    for version in KUBE_VERSIONS {
        let errors = validate(&objects, version);
        assert!(errors.is_empty(), "{values} on {version}: {errors:#?}");
    }
    let lint = lint(values);
    assert!(lint.is_empty(), "helm lint --strict {values}: {lint:#?}");
    r
}

/// As [`render`], into `namespace`.
pub fn render_in(values: &Value, namespace: &str) -> Result<Rendered, String> {
    let v = chart_py(&["render", &chart_dir(), &values.to_string(), "np", namespace]);
    if let Some(e) = v["error"].as_str() {
        return Err(e.to_owned());
    }
    let objects = v["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .map(|o| {
            (
                o["template"].as_str().expect("template").to_owned(),
                o["object"].clone(),
            )
        })
        .collect();
    Ok(Rendered {
        objects,
        notes: v["notes"].as_str().unwrap_or_default().to_owned(),
    })
}

/// `helm package`: the files of the archive.
pub fn package() -> Vec<String> {
    let dir = std::env::temp_dir().join(super::common::unique("package"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let v = chart_py(&["package", &chart_dir(), &dir.display().to_string()]);
    let _ = std::fs::remove_dir_all(&dir);
    v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| f.as_str().expect("name").to_owned())
        .collect()
}

/// `helm lint --strict` findings of warning or error severity.
pub fn lint(values: &Value) -> Vec<String> {
    let v = chart_py(&["lint", &chart_dir(), &values.to_string()]);
    let mut found: Vec<String> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(ToString::to_string)
        .collect();
    for m in v["messages"].as_array().into_iter().flatten() {
        if m["severity"].as_u64().unwrap_or(3) >= 2 {
            found.push(m.to_string());
        }
    }
    found
}

/// Validates objects against the Kubernetes schemas of `version` (strict), CRDs against their
/// used subset; returns the errors.
pub fn validate(objects: &[&Value], version: &str) -> Vec<String> {
    let file = std::env::temp_dir().join(format!("{}.json", super::common::unique("objects")));
    std::fs::write(&file, serde_json::to_vec(objects).expect("json")).expect("write objects");
    let v = chart_py(&["validate", version, &file.display().to_string()]);
    let _ = std::fs::remove_file(&file);
    let validated = v["validated"].as_array().map_or(0, Vec::len);
    let errors: Vec<String> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e.as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(validated + errors.len(), objects.len(), "{v}");
    errors
}

/// The Prometheus series names a catalogue metric appears under. The one place that looks at
/// the metric's kind.
pub fn series_names(m: &Metric) -> Vec<String> {
    match m.kind {
        Kind::Histogram => ["_bucket", "_sum", "_count"]
            .iter()
            .map(|s| format!("{}{s}", m.prometheus))
            .collect(),
        _ => vec![m.prometheus.to_owned()],
    }
}

/// Every Prometheus series name of the catalogue, with the metric it belongs to.
pub fn catalogue() -> Vec<(String, &'static Metric)> {
    catalogue::all()
        .flat_map(|m| series_names(m).into_iter().map(move |n| (n, m)))
        .collect()
}

/// The README's metric reference, made from the catalogue: one row per metric, module by
/// module, with its Prometheus name, OTLP name, kind and unit, attributes and help.
pub fn catalogue_table() -> String {
    let mut rows = vec![
        "| Prometheus name | OTLP name | kind, unit | attributes | what it is |".to_owned(),
        "|---|---|---|---|---|".to_owned(),
    ];
    for m in catalogue::all() {
        let mut attrs: Vec<String> = m.attributes.iter().map(|a| format!("`{a}`")).collect();
        if m.per_flow {
            attrs.insert(0, "flow attributes".to_owned());
        }
        let attrs = if attrs.is_empty() {
            "—".to_owned()
        } else {
            attrs.join(", ")
        };
        let kind = if m.unit.is_empty() {
            m.kind.to_string()
        } else {
            format!("{}, `{}`", m.kind, m.unit)
        };
        rows.push(format!(
            "| `{}` | `{}` | {kind} | {attrs} | {} |",
            m.prometheus,
            m.otlp,
            m.help.replace('|', "\\|"),
        ));
    }
    rows.join("\n") + "\n"
}

/// The Prometheus label of every attribute in the catalogue: each entry's own attributes, and
/// the flow attributes for the metrics counted per flow (dots made underscores).
pub fn attribute_labels() -> BTreeSet<String> {
    let own = catalogue::all().flat_map(|m| m.attributes.iter().copied());
    let per_flow = catalogue::all()
        .any(|m| m.per_flow)
        .then(flow::flow_labels)
        .into_iter()
        .flatten();
    let labels: BTreeSet<String> = own.chain(per_flow).map(prometheus::label).collect();
    assert!(labels.contains("netprobe_drop_reason"), "{labels:?}");
    labels
}

/// The attribute labels that start with `netprobe_` (`netprobe_drop_reason`, ...): identifiers
/// that are not metric names.
pub fn netprobe_labels() -> BTreeSet<String> {
    attribute_labels()
        .into_iter()
        .filter(|l| l.starts_with("netprobe_"))
        .collect()
}

/// The `netprobe_*` identifiers a PromQL expression names that are not the labels of
/// [`netprobe_labels`]: metric names (or misspelt labels, which then show as unknown names).
pub fn metric_names(promql: &str) -> BTreeSet<String> {
    let labels = netprobe_labels();
    let mut found = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while let Some(at) = promql[i..].find("netprobe_") {
        let start = i + at;
        let boundary = start == 0 || !is_ident(bytes[start - 1]);
        let mut end = start;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        if boundary && !labels.contains(&promql[start..end]) {
            found.insert(promql[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    found
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

/// Names used in `exprs` that are not in the catalogue.
pub fn unknown_names<'a>(exprs: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let known: BTreeSet<String> = catalogue().into_iter().map(|(n, _)| n).collect();
    exprs
        .into_iter()
        .flat_map(metric_names)
        .filter(|n| !known.contains(n))
        .collect()
}

/// Series the alert rules read that the agent does not make, by name prefix, with the labels
/// the rules use of them: kube-state-metrics' (`kube_*`: the node's and the DaemonSet's names)
/// and the Collector's own metrics (`otelcol_*` from its :8888: the scrape's target labels and
/// the exporter's name). `tests/alerts.rs` checks the names: `kube_*` against the documented
/// list, `otelcol_*` against what the real Collector serves.
pub const FOREIGN_SERIES: [(&str, &[&str]); 2] = [
    ("kube_", &["node", "namespace", "daemonset", "job"]),
    ("otelcol_", &["namespace", "job", "instance", "exporter"]),
];

/// The identifiers of `promql` that start with `prefix` (`kube_`, `otelcol_`): metric names.
pub fn names_with_prefix(promql: &str, prefix: &str) -> BTreeSet<String> {
    let bytes = promql.as_bytes();
    let mut found = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = promql[i..].find(prefix) {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && is_ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !is_ident(bytes[start - 1]) {
            found.insert(promql[start..end].to_owned());
        }
        i = end.max(start + 1);
    }
    found
}

/// Every rule of `alerts/netprobe.rules.yaml`, in file order.
pub fn rules() -> Vec<Value> {
    rules_of(&read("alerts/netprobe.rules.yaml"))
}

/// Every rule of a rule file's `text`, in file order.
pub fn rules_of(text: &str) -> Vec<Value> {
    let file: Value = serde_norway::from_str(text).expect("rules YAML");
    file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules").clone())
        .collect()
}
