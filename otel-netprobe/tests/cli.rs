//! The binary's command line: configuration errors name the key and the reason, and a missing
//! privilege is one clear line. Every `otel-netprobe run` here runs inside a network namespace
//! the test made, under a timeout (`common::binary`): should a bad setting ever be accepted, the
//! agent attaches only to that empty namespace and is killed, failing the test.

mod common;

use std::process::{Command, Output};

use common::{Netns, binary, unique};

fn bin() -> Command {
    binary::command(&[])
}

/// Runs `cmd` to its end: `run` inside a fresh namespace under the timeout, other commands
/// (which attach nothing) as they are.
fn output(cmd: Command, run: bool) -> Output {
    if run {
        common::require_root();
        let ns = Netns::new(&unique("cli"));
        binary::run_to_end(&ns, cmd)
    } else {
        let mut cmd = cmd;
        cmd.output().expect("otel-netprobe")
    }
}

fn with_config(args: &[&str], yaml: &str) -> Output {
    let dir = std::env::temp_dir().join(unique("cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let mut cmd = bin();
    cmd.args(args).arg("--config").arg(&path);
    let out = output(cmd, args.contains(&"run"));
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unknown_key_is_rejected_with_its_path() {
    for cmd in [&["check-config"][..], &["run"][..]] {
        let o = with_config(cmd, "flows:\n  capacty: 4096\n");
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains("config key `flows.capacty`: unknown field `capacty`"),
            "{e}"
        );
    }
}

/// The config fuzz target's findings (crash-4e58459b… and crash-1fe41dab…, kept as the seeds
/// `fuzz/seeds/config/regression_unknown_top_level_key*.yaml`): an unknown top-level key is
/// refused naming that key itself — dots included — not a section. The agent was right; the
/// target's check of the key was too narrow.
#[test]
fn regression_unknown_top_level_keys_are_named_as_themselves() {
    for (input, key) in [
        ("flowflows:\n  y: acty: 0\ns:\n  y: acty: 0\n", "flowflows"),
        ("de(lete_gra.ce:isten:\n", "de(lete_gra.ce:isten"),
    ] {
        let o = with_config(&["check-config"], input);
        assert!(!o.status.success());
        let e = stderr(&o);
        assert!(
            e.contains(&format!(
                "config key `{key}`: unknown field `{key}`, expected one of `interfaces`, `flows`"
            )),
            "{e}"
        );
    }
}

#[test]
fn invalid_values_name_key_and_reason() {
    let cases = [
        (
            "flows:\n  poll_interval: fast\n",
            "config key `flows.poll_interval`",
            "invalid duration",
        ),
        (
            "flows:\n  capacity: 12\n",
            "config key `flows.capacity`",
            "out of range",
        ),
        (
            "interfaces:\n  virtual_hook: ebpf\n",
            "config key `interfaces.virtual_hook`",
            "unknown variant",
        ),
        (
            "http:\n  listen: 9464\n",
            "config key `http.listen`",
            "invalid",
        ),
    ];
    for (yaml, key, reason) in cases {
        let o = with_config(&["check-config"], yaml);
        assert!(!o.status.success(), "{yaml}");
        let e = stderr(&o);
        assert!(e.contains(key) && e.contains(reason), "{yaml}: {e}");
    }
}

#[test]
fn a_valid_config_is_printed() {
    let o = with_config(&["check-config"], "flows:\n  capacity: 4096\n");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("capacity: 4096"));
}

#[test]
fn unreadable_config_names_the_file() {
    let mut cmd = bin();
    cmd.args(["run", "--config", "/nonexistent/netprobe.yaml"]);
    let o = output(cmd, true);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("cannot read config file /nonexistent/netprobe.yaml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn without_privileges_it_says_so_in_one_line() {
    // Drop to nobody with no capabilities (setpriv from util-linux).
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ])
    .arg(binary::path())
    .args(["run", "--listen", "127.0.0.1:0"]);
    let o = output(cmd, true);
    assert!(!o.status.success());
    let e = stderr(&o);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(
        lines[0]
            .starts_with("otel-netprobe: missing capability CAP_BPF, needed to load eBPF programs"),
        "{e}"
    );
}

#[test]
fn help_documents_the_commands() {
    let mut cmd = bin();
    cmd.args(["run", "--help"]);
    let o = output(cmd, false);
    let out = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--config",
        "--listen",
        "--interface",
        "--exclude",
        "--hook",
        "--poll-interval",
    ] {
        assert!(out.contains(flag), "{flag} missing from --help");
    }
}

#[test]
fn bad_otlp_settings_stop_the_start_with_the_key() {
    /// Arguments, environment, and what stderr must say.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 4] = [
        (
            &["--otlp-endpoint", "collector:4317"],
            &[],
            "config key `otlp.endpoint`",
        ),
        (&["--otlp-protocol", "udp"], &[], "unknown protocol \"udp\""),
        (
            &[],
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
            "config key `OTEL_EXPORTER_OTLP_PROTOCOL`",
        ),
        (
            &["--otlp-endpoint", "https://collector:4317"],
            &[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")],
            "config key `otlp.ca_file`: cannot read /nonexistent/ca.pem",
        ),
    ];
    for (args, env, want) in cases {
        let mut cmd = bin();
        cmd.arg("run").args(args).envs(env.iter().copied());
        let o = output(cmd, true);
        assert!(!o.status.success(), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(want), "{args:?} {env:?}: {e}");
    }
}

#[test]
fn cluster_mode_without_a_usable_api_stops_the_start_with_the_key() {
    let dir = std::env::temp_dir().join(unique("clik8s"));
    std::fs::create_dir_all(&dir).unwrap();
    let cases = [
        (
            "k8s:\n  mode: cluster\n  kubeconfig: /nonexistent/kubeconfig\n",
            "config key `k8s.kubeconfig`: cannot use /nonexistent/kubeconfig",
        ),
        (
            "k8s:\n  mode: cluster\n",
            "config key `k8s.mode`: cluster, but no Kubernetes API is configured",
        ),
    ];
    for (n, (yaml, want)) in cases.iter().enumerate() {
        let path = dir.join(format!("config{n}.yaml"));
        std::fs::write(&path, yaml).unwrap();
        // No API anywhere: no in-cluster variables, no $KUBECONFIG, no ~/.kube/config.
        let mut cmd = bin();
        cmd.args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path);
        let o = output(cmd, true);
        assert!(!o.status.success(), "{yaml}");
        let e = stderr(&o);
        assert!(e.contains(want), "{yaml}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn summary_without_an_agent_says_where_it_looked_and_how_to_point_elsewhere() {
    // A port nothing listens on: bound, read and released.
    let port = common::backends::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut cmd = bin();
    cmd.args(["summary", "--url", &url])
        .env_remove("NETPROBE_URL");
    let o = output(cmd, false);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.starts_with(&format!(
            "otel-netprobe: no agent answers at 127.0.0.1:{port} (tried {url}/api/v1/summary)"
        )),
        "{e}"
    );
    assert!(e.contains("--url http://HOST:PORT or NETPROBE_URL"), "{e}");
    assert!(e.contains("Connection refused"), "{e}");
}
