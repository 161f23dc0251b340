//! The Dockerfile: hadolint finds nothing; the builder runs make setup's toolchain steps and a
//! locked build; the runtime runs as a non-root user with exactly the capabilities the chart
//! grants; the FROM defaults are the images `make image` makes locally. (`make image` builds it
//! for real with buildah: too slow for `make test`.)

#[path = "common/repo.rs"]
mod repo;

mod common;

use std::process::Command;

fn hadolint(dockerfile: &str) -> (bool, String) {
    let dir = std::env::temp_dir().join(common::unique("hadolint"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("Dockerfile"), dockerfile).expect("write");
    let (ok, out, err) = repo::run(
        Command::new(repo::venv("hadolint"))
            .arg("Dockerfile")
            .current_dir(&dir),
    );
    let _ = std::fs::remove_dir_all(&dir);
    (ok, format!("{out}{err}"))
}

#[test]
fn hadolint_finds_nothing_and_would_find_a_mistake() {
    let text = repo::read("Dockerfile");
    let (ok, out) = hadolint(&text);
    assert!(ok && out.is_empty(), "hadolint:\n{out}");
    let (ok, out) = hadolint(&text.replacen("--no-install-recommends ", "", 1));
    assert!(
        !ok && out.contains("DL3015"),
        "hadolint missed a mistake:\n{out}"
    );
}

#[test]
fn the_image_is_built_as_make_setup_builds_and_runs_unprivileged() {
    let text = repo::read("Dockerfile");
    let image_sh = repo::read("scripts/image.sh");
    for (arg, var) in [
        ("RUST_IMAGE", "RUST_IMAGE"),
        ("RUNTIME_IMAGE", "RUNTIME_IMAGE"),
    ] {
        let default = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {arg}=")))
            .unwrap_or_else(|| panic!("ARG {arg}"));
        assert!(
            image_sh.contains(&format!("{var}=\"{default}\"")),
            "scripts/image.sh makes a different {arg} than the Dockerfile's {default}"
        );
    }
    for needed in [
        "bash scripts/setup.sh toolchain",
        "cargo build --release --locked -p otel-netprobe",
        "USER 65532:65532",
        "ENTRYPOINT [\"/usr/local/bin/otel-netprobe\"]",
    ] {
        assert!(text.contains(needed), "Dockerfile lacks {needed:?}");
    }
    assert!(repo::read("scripts/setup.sh").contains("if [ \"${1:-}\" = toolchain ]"));
    for label in [
        "title",
        "description",
        "version",
        "revision",
        "created",
        "licenses",
        "source",
    ] {
        assert!(
            text.contains(&format!("org.opencontainers.image.{label}=")),
            "OCI label {label}"
        );
    }
    // The file capabilities are exactly the capabilities the chart adds for the non-root agent:
    // a file capability outside the pod's bounding set would make exec fail (EPERM).
    let setcap = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("&& setcap "))
        .expect("setcap");
    let mut caps: Vec<String> = setcap
        .split_whitespace()
        .next()
        .expect("caps")
        .trim_end_matches("=ep")
        .split(',')
        .map(|c| c.trim_start_matches("cap_").to_uppercase())
        .collect();
    caps.sort();
    let chart = repo::read("charts/otel-netprobe/templates/agent-daemonset.yaml");
    let mut added: Vec<String> = ["BPF", "NET_ADMIN", "PERFMON"].map(String::from).to_vec();
    added.retain(|c| chart.contains(&format!("- {c}\n")));
    assert_eq!(
        caps, added,
        "file capabilities vs the chart's capabilities.add"
    );
    // Only what the build needs goes into the context.
    let ignore = repo::read(".dockerignore");
    assert!(ignore.lines().next().is_some_and(|l| l == "*") || ignore.starts_with("# "));
    assert!(
        ignore.contains("\n*\n") && ignore.contains("!otel-netprobe/"),
        "{ignore}"
    );
}
