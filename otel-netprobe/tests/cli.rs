//! The binary's command line: configuration errors name the key and the reason, and a missing
//! privilege is one clear line.

use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_otel-netprobe"))
}

fn with_config(args: &[&str], yaml: &str) -> Output {
    let dir = std::env::temp_dir().join(format!(
        "netprobe-cli-{}-{}",
        std::process::id(),
        yaml.len()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = bin()
        .args(args)
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
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
    let o = bin()
        .args(["run", "--config", "/nonexistent/netprobe.yaml"])
        .output()
        .unwrap();
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
    let o = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_otel-netprobe"))
        .args(["run", "--listen", "127.0.0.1:0"])
        .output()
        .expect("setpriv");
    assert!(!o.status.success());
    let e = stderr(&o);
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines.len(), 1, "{e}");
    assert!(
        lines[0].contains("needs root or CAP_BPF and CAP_NET_ADMIN"),
        "{e}"
    );
}

#[test]
fn help_documents_the_commands() {
    let o = bin().args(["run", "--help"]).output().unwrap();
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
        let o = bin()
            .arg("run")
            .args(args)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!o.status.success(), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(want), "{args:?} {env:?}: {e}");
    }
}

#[test]
fn cluster_mode_without_a_usable_api_stops_the_start_with_the_key() {
    let dir = std::env::temp_dir().join(format!("netprobe-cli-k8s-{}", std::process::id()));
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
        let o = bin()
            .args(["run", "--listen", "127.0.0.1:0", "--config"])
            .arg(&path)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBECONFIG")
            .env("HOME", "/nonexistent")
            .output()
            .unwrap();
        assert!(!o.status.success(), "{yaml}");
        let e = stderr(&o);
        assert!(e.contains(want), "{yaml}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
