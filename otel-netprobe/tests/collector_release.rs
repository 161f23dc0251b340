//! One Collector release everywhere: the modules `collector-config/distribution/go.mod` builds
//! (every core `go.opentelemetry.io/collector/*` module at one v0.X and one v1.Y, every contrib
//! module at one version, core and contrib of the same v0.X), the release the built
//! `otelcol-netprobe --version` prints, the chart's Collector image tag, and the release
//! `collector-config/`'s comments and README name are all the same. Also: the distribution has
//! exactly the components the configurations use, and `debug`.

mod common;
#[path = "common/repo.rs"]
mod repo;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
};

use common::backends::tool;
use serde_norway::Value;

const CORE: &str = "go.opentelemetry.io/collector/";
const CONTRIB: &str = "github.com/open-telemetry/opentelemetry-collector-contrib/";

/// Every module `go.mod` requires (in blocks or single lines, direct or indirect) → version,
/// without the leading `v`.
fn requires(go_mod: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut in_block = false;
    for line in go_mod.lines().map(str::trim) {
        let line = line.split("//").next().unwrap_or_default().trim();
        let spec = if in_block {
            if line == ")" {
                in_block = false;
                continue;
            }
            line
        } else if line == "require (" {
            in_block = true;
            continue;
        } else if let Some(rest) = line.strip_prefix("require ") {
            rest
        } else {
            continue;
        };
        if let [module, version] = spec.split_whitespace().collect::<Vec<_>>()[..] {
            let version = version.strip_prefix('v').unwrap_or(version);
            out.insert(module.to_owned(), version.to_owned());
        }
    }
    out
}

/// The distinct versions of the modules under `prefix`, each with one module that has it.
fn versions(mods: &BTreeMap<String, String>, prefix: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (m, v) in mods.iter().filter(|(m, _)| m.starts_with(prefix)) {
        out.entry(v.clone()).or_insert_with(|| m.clone());
    }
    out
}

fn minor(version: &str) -> &str {
    version.split('.').nth(1).expect("a minor version")
}

/// The release the distribution is built from: the contrib modules' one version, after checking
/// that core and contrib are each at one release and that the two releases go together.
fn release() -> String {
    let mods = requires(&repo::read("collector-config/distribution/go.mod"));
    let core = versions(&mods, CORE);
    let (v0, v1): (Vec<_>, Vec<_>) = core.keys().partition(|v| v.starts_with("0."));
    assert!(
        v0.len() == 1 && v1.len() == 1,
        "core modules at more than one v0.X/v1.Y pair: {core:?}"
    );
    let contrib = versions(&mods, CONTRIB);
    assert_eq!(
        contrib.len(),
        1,
        "contrib modules at several versions: {contrib:?}"
    );
    let release = contrib.keys().next().expect("contrib").clone();
    assert_eq!(
        minor(v0[0]),
        minor(&release),
        "core v{} with contrib v{release}: not one release",
        v0[0]
    );
    // The components the distribution compiles in come from these modules, directly required.
    for m in [
        "go.opentelemetry.io/collector/receiver/otlpreceiver",
        "go.opentelemetry.io/collector/processor/batchprocessor",
        "go.opentelemetry.io/collector/processor/memorylimiterprocessor",
        "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter",
        "github.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusremotewriteexporter",
        "github.com/open-telemetry/opentelemetry-collector-contrib/extension/healthcheckextension",
    ] {
        assert!(mods.contains_key(m), "go.mod does not require {m}");
    }
    release
}

#[test]
fn one_release_in_go_mod_the_binary_the_chart_and_the_configs() {
    let release = release();
    println!("Collector release: contrib v{release}");

    // The binary `make setup` built from that go.mod.
    let out = Command::new(tool("otelcol-netprobe"))
        .arg("--version")
        .output()
        .expect("run otelcol-netprobe --version");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.trim(),
        format!("otelcol-netprobe version {release}"),
        "a stale build? `make setup` rebuilds it when go.mod changes"
    );

    // The chart deploys the official contrib image of the same release.
    let values: Value =
        serde_norway::from_str(&repo::read("charts/otel-netprobe/values.yaml")).expect("values");
    let image = &values["collector"]["image"];
    assert_eq!(image["repository"], "otel/opentelemetry-collector-contrib");
    assert_eq!(image["tag"].as_str(), Some(release.as_str()), "chart tag");

    // Each configuration names it as its target.
    let target = format!("# Target: otelcol-contrib v{release} ");
    for name in config_files() {
        let text = repo::read(&format!("collector-config/{name}"));
        assert!(
            text.lines().any(|l| l.starts_with(&target)),
            "{name}: no `{target}...` line"
        );
    }
    // The README's target section and every image it names.
    let readme = repo::read("collector-config/README.md");
    let section = readme
        .split("## Target version")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README: ## Target version");
    assert!(
        section.contains(&format!("**otelcol-contrib v{release}**")),
        "README's target section: {section}"
    );
    for doc in ["collector-config/README.md", "README.md"] {
        let text = repo::read(doc);
        let tags: BTreeSet<&str> = text
            .split("otel/opentelemetry-collector-contrib:")
            .skip(1)
            .map(|rest| rest.split(|c: char| c.is_whitespace() || c == '`').next())
            .map(Option::unwrap_or_default)
            .collect();
        assert!(
            tags.iter().all(|t| *t == release),
            "{doc} names contrib images {tags:?}, not {release}"
        );
    }
}

/// The `*.yaml` files of `collector-config/`.
fn config_files() -> Vec<String> {
    let dir = repo::root().join("collector-config");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("collector-config/")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            std::path::Path::new(n)
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml"))
        })
        .collect();
    names.sort();
    assert!(names.len() >= 2, "{names:?}");
    names
}

/// The component types a configuration defines, by kind: `receivers` → {`otlp`}, ...
fn used_components() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for name in config_files() {
        let doc: Value =
            serde_norway::from_str(&repo::read(&format!("collector-config/{name}"))).expect(&name);
        for kind in [
            "receivers",
            "processors",
            "exporters",
            "extensions",
            "connectors",
        ] {
            for id in doc[kind].as_mapping().into_iter().flatten().map(|(k, _)| k) {
                let id = id.as_str().expect("component id");
                let ty = id.split_once('/').map_or(id, |(ty, _)| ty);
                out.entry(kind.to_owned())
                    .or_default()
                    .insert(ty.to_owned());
            }
        }
    }
    out
}

#[test]
fn the_distribution_has_exactly_the_components_the_configs_use() {
    let out = Command::new(tool("otelcol-netprobe"))
        .arg("components")
        .output()
        .expect("run otelcol-netprobe components");
    assert!(out.status.success(), "{out:?}");
    let listed: Value =
        serde_norway::from_str(&String::from_utf8_lossy(&out.stdout)).expect("components YAML");
    let mut want = used_components();
    // debug: to look at what arrives when something does not (collector-config/README.md).
    want.entry("exporters".into())
        .or_default()
        .insert("debug".into());
    for kind in [
        "receivers",
        "processors",
        "exporters",
        "extensions",
        "connectors",
    ] {
        let have: BTreeSet<String> = listed[kind]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_owned))
            .collect();
        assert_eq!(have, want.remove(kind).unwrap_or_default(), "{kind}");
    }
}

#[test]
fn go_mod_parsing_sees_blocks_single_lines_and_mixed_releases() {
    let go_mod = "module x\n\ngo 1.26\n\nrequire go.opentelemetry.io/collector/otelcol v0.165.0\n\nrequire (\n\tgithub.com/open-telemetry/opentelemetry-collector-contrib/exporter/prometheusexporter v0.165.1\n\tgo.opentelemetry.io/collector/pdata v1.71.0 // indirect\n\tgo.opentelemetry.io/collector/service v0.164.0 // indirect\n)\n";
    let mods = requires(go_mod);
    assert_eq!(mods.len(), 4, "{mods:?}");
    assert_eq!(mods["go.opentelemetry.io/collector/pdata"], "1.71.0");
    let core = versions(&mods, CORE);
    let v0: Vec<&String> = core.keys().filter(|v| v.starts_with("0.")).collect();
    assert_eq!(v0, ["0.164.0", "0.165.0"], "a drifted module is seen");
}
