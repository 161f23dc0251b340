//! The chart's copies of the repository's Collector configuration, dashboards and alert rules
//! (`charts/otel-netprobe/files/`): real files, not symlinks (GitOps sources such as Argo CD
//! and Flux skip symlinks, and the dashboards would silently vanish), equal to their sources
//! (`make chart-files` refreshes them), and exactly what `helm package` puts in the archive.

mod common;
#[path = "common/repo.rs"]
mod repo;

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// What `scripts/chart-files.sh` copies: chart folder, source folder, the sources' extension.
const COPIES: [(&str, &str, &str); 3] = [
    ("collector", "collector-config", "yaml"),
    ("dashboards", "dashboards", "json"),
    ("alerts", "alerts", "yaml"),
];

const FIX: &str = "run `make chart-files` (scripts/chart-files.sh)";

/// The names of the regular files directly in `dir` ending in `.ext`.
fn files(dir: &Path, ext: &str) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}; {FIX}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == ext))
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_chart_copies_equal_their_sources() {
    let root = repo::root();
    let mut problems = Vec::new();
    let mut compared = 0;
    for (dest, src, ext) in COPIES {
        let (src_dir, dest_dir) = (
            root.join(src),
            root.join("charts/otel-netprobe/files").join(dest),
        );
        let sources = files(&src_dir, ext);
        assert!(!sources.is_empty(), "no {src}/*.{ext}");
        let copies = files(&dest_dir, ext);
        for name in sources.union(&copies) {
            let (s, d) = (
                format!("{src}/{name}"),
                format!("charts/otel-netprobe/files/{dest}/{name}"),
            );
            match (sources.contains(name), copies.contains(name)) {
                (true, false) => problems.push(format!("{s} has no copy {d}")),
                (false, true) => problems.push(format!("{d} has no source {s} (left over)")),
                _ => {
                    compared += 1;
                    if std::fs::read(root.join(&s)).ok() != std::fs::read(root.join(&d)).ok() {
                        problems.push(format!("{d} differs from {s}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}\n{FIX}", problems.join("\n"));
    println!("{compared} chart copies equal their sources");
    assert_eq!(
        compared, 9,
        "2 Collector configs, 6 dashboards, 1 rule file"
    );
}

/// Every symlink under `dir`.
fn symlinks(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        if meta.file_type().is_symlink() {
            out.push(path);
        } else if meta.is_dir() {
            symlinks(&path, out);
        }
    }
}

#[test]
fn the_chart_holds_no_symlink() {
    let mut found = Vec::new();
    symlinks(&repo::root().join("charts"), &mut found);
    assert!(
        found.is_empty(),
        "symlinks in the chart (GitOps sources skip them; copy the files, {FIX}): {found:?}"
    );
}

#[test]
fn the_packaged_chart_carries_the_copies_and_nothing_else() {
    let files = repo::package();
    let copied: Vec<&str> = files
        .iter()
        .filter_map(|f| f.strip_prefix("otel-netprobe/files/"))
        .collect();
    assert_eq!(
        copied,
        [
            "alerts/netprobe.rules.yaml",
            "collector/otelcol-remote-write.yaml",
            "collector/otelcol.yaml",
            "dashboards/netprobe-agent.json",
            "dashboards/netprobe-connections.json",
            "dashboards/netprobe-dns.json",
            "dashboards/netprobe-patterns.json",
            "dashboards/netprobe-topology.json",
            "dashboards/netprobe-traffic.json",
        ],
        "runbooks, rule tests and READMEs stay out of the chart: {files:?}"
    );
    for needed in [
        "Chart.yaml",
        "values.yaml",
        "values.schema.json",
        "templates/NOTES.txt",
        "templates/priorityclass-quota.yaml",
    ] {
        assert!(
            files.contains(&format!("otel-netprobe/{needed}")),
            "{needed}"
        );
    }
}
