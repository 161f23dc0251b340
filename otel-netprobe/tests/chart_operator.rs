//! The chart's operator traps (issue 17): settings a real install needs, rendered with the Helm
//! v4 SDK and validated against the Kubernetes schemas — image pinning, pull secrets on every
//! pod, the architecture constraint merged with the user's affinity, SELinux, the ResourceQuota
//! for `system-node-critical`, the HTTP server's exposure (node address, TLS) and its probes,
//! the refusals of settings that cannot work, NOTES' warnings, TC on physical NICs — and the
//! README's TLS examples checked by the agent's own `check-config` inside the file layout the
//! kubelet would give the pod. Admission by the real API server is `tests/chart_install.rs`'s.

mod common;
#[path = "common/repo.rs"]
mod repo;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use repo::{Rendered, render, rendered};
use serde_json::{Value, json};

const AGENT: &str = "np-otel-netprobe";
const COLLECTOR: &str = "np-otel-netprobe-collector";
const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn refused(values: &Value) -> String {
    render(values)
        .err()
        .unwrap_or_else(|| panic!("{values} accepted"))
}

fn pod_spec<'a>(r: &'a Rendered, kind: &str, name: &str) -> &'a Value {
    &r.get(kind, name)["spec"]["template"]["spec"]
}

/// The `helm test` pod (a hook: rendered, but not in the release's manifest).
fn test_pod(r: &Rendered) -> &Value {
    &r.get("Pod", &format!("{AGENT}-test-health"))["spec"]
}

#[test]
fn images_are_pinned_by_digest_from_a_registry_with_pull_secrets_everywhere() {
    let defaults = rendered(&json!({}));
    assert_eq!(
        pod_spec(&defaults, "DaemonSet", AGENT)["containers"][0]["image"],
        "otel-netprobe:0.1.0"
    );
    assert_eq!(
        pod_spec(&defaults, "DaemonSet", COLLECTOR)["containers"][0]["image"],
        "otel/opentelemetry-collector-contrib:0.165.1"
    );
    let r = rendered(&json!({
        "image": {"registry": "registry.example.com/mirror", "tag": "9.9", "digest": DIGEST},
        "collector": {"image": {"registry": "registry.example.com/", "digest": DIGEST}},
        "tests": {"image": {"registry": "registry.example.com"}},
        "imagePullSecrets": [{"name": "regcred"}],
    }));
    let agent = pod_spec(&r, "DaemonSet", AGENT);
    let collector = pod_spec(&r, "DaemonSet", COLLECTOR);
    assert_eq!(
        agent["containers"][0]["image"],
        format!("registry.example.com/mirror/otel-netprobe@{DIGEST}"),
        "the digest wins over the tag"
    );
    assert_eq!(
        collector["containers"][0]["image"],
        format!("registry.example.com/otel/opentelemetry-collector-contrib@{DIGEST}")
    );
    assert_eq!(
        test_pod(&r)["containers"][0]["image"],
        "registry.example.com/busybox:1.37"
    );
    for (what, spec) in [
        ("agent", agent),
        ("collector", collector),
        ("helm test", test_pod(&r)),
    ] {
        assert_eq!(
            spec["imagePullSecrets"],
            json!([{"name": "regcred"}]),
            "{what}"
        );
    }
    for bad in [
        "sha256:abc",
        "0123456789abcdef",
        "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        let err = refused(&json!({"image": {"digest": bad}}));
        assert!(err.contains("digest"), "{bad}: {err}");
    }
}

fn required_terms(r: &Rendered) -> Value {
    pod_spec(r, "DaemonSet", AGENT)["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .clone()
}

#[test]
fn the_agent_runs_only_where_its_image_runs_and_keeps_the_users_affinity() {
    let arch = json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]});
    assert_eq!(
        required_terms(&rendered(&json!({}))),
        json!([{"matchExpressions": [arch]}])
    );
    // The user's terms are ORed: the architecture is ANDed into each; their preferred terms and
    // pod affinities stay.
    let preferred = json!([{"weight": 1, "preference": {"matchExpressions":
        [{"key": "pool", "operator": "In", "values": ["b"]}]}}]);
    let r = rendered(
        &json!({"agent": {"architectures": ["amd64", "arm64"], "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": preferred},
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}}}}),
    );
    let both = json!({"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64", "arm64"]});
    assert_eq!(
        required_terms(&r),
        json!([
            {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["a"]}, both]},
            {"matchExpressions": [both],
             "matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
        ])
    );
    let affinity = &pod_spec(&r, "DaemonSet", AGENT)["affinity"];
    assert_eq!(
        affinity["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"],
        preferred
    );
    assert!(affinity.get("podAntiAffinity").is_some());
    // Empty: no constraint at all (and no empty affinity object).
    let none = rendered(&json!({"agent": {"architectures": []}}));
    assert!(
        pod_spec(&none, "DaemonSet", AGENT)
            .get("affinity")
            .is_none()
    );
    assert!(refused(&json!({"agent": {"architectures": ["x86_64"]}})).contains("architectures"));
}

#[test]
fn selinux_options_reach_the_container() {
    let r = rendered(&json!({"agent": {"seLinuxOptions": {"type": "spc_t"}}}));
    let c = &pod_spec(&r, "DaemonSet", AGENT)["containers"][0];
    assert_eq!(
        c["securityContext"]["seLinuxOptions"],
        json!({"type": "spc_t"})
    );
    let default = rendered(&json!({}));
    assert!(
        pod_spec(&default, "DaemonSet", AGENT)["containers"][0]["securityContext"]
            .get("seLinuxOptions")
            .is_none()
    );
    assert!(refused(&json!({"agent": {"seLinuxOptions": {"typ": "spc_t"}}})).contains("typ"));
}

#[test]
fn system_node_critical_gets_its_resource_quota_outside_kube_system() {
    let quota = |r: &Rendered| {
        r.all("ResourceQuota")
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    let r = rendered(&json!({}));
    let q = quota(&r);
    assert_eq!(q.len(), 1, "{:?}", r.names());
    assert_eq!(
        q[0]["spec"],
        json!({"hard": {"pods": "10000"}, "scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["system-node-critical"]}]}})
    );
    assert_eq!(
        pod_spec(&r, "DaemonSet", AGENT)["priorityClassName"],
        "system-node-critical"
    );
    assert!(quota(&rendered(&json!({"agent": {"priorityClassName": ""}}))).is_empty());
    assert!(quota(&rendered(&json!({"agent": {"priorityClassName": "high"}}))).is_empty());
    assert!(
        quota(&rendered(
            &json!({"agent": {"priorityClassQuota": {"enabled": false}}})
        ))
        .is_empty()
    );
    let ks = repo::render_in(&json!({}), "kube-system").expect("renders in kube-system");
    assert!(
        ks.all("ResourceQuota").is_empty(),
        "not needed in kube-system"
    );
}

fn probes(r: &Rendered) -> (Value, Value) {
    let c = &pod_spec(r, "DaemonSet", AGENT)["containers"][0];
    (
        c["livenessProbe"]["httpGet"].clone(),
        c["readinessProbe"]["httpGet"].clone(),
    )
}

#[test]
fn the_server_can_listen_on_the_node_address_only_and_probes_follow_tls() {
    let (live, ready) = probes(&rendered(&json!({})));
    let plain = json!({"path": "/healthz", "port": "http", "scheme": "HTTP"});
    assert_eq!((&live, &ready), (&plain, &plain));

    let r = rendered(&json!({"agent": {"listenOn": "hostIP",
        "config": {"http": {"listen": "0.0.0.0:9500"}}}}));
    let c = &pod_spec(&r, "DaemonSet", AGENT)["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--listen=[$(HOST_IP)]:9500"), "{args:?}");
    assert!(
        c["env"].as_array().expect("env").contains(
            &json!({"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})
        ),
        "{}",
        c["env"]
    );
    assert_eq!(c["ports"][0]["containerPort"], 9500);
    // What the kubelet makes of `$(HOST_IP)`, for either family, is an address the agent takes.
    for (host_ip, want) in [("10.0.0.5", "10.0.0.5:9500"), ("fd00::5", "[fd00::5]:9500")] {
        let arg = "[$(HOST_IP)]:9500".replace("$(HOST_IP)", host_ip);
        assert_eq!(
            otel_netprobe::config::parse_listen(&arg).map(|a| a.to_string()),
            Ok(want.to_owned())
        );
    }

    let tls =
        json!({"cert_file": "/t/tls.crt", "key_file": "/t/tls.key", "client_ca_file": "/t/ca.crt"});
    let r = rendered(&json!({"agent": {"config": {"http": {"tls": tls}}}}));
    let https = json!({"path": "/healthz", "port": "http", "scheme": "HTTPS"});
    assert_eq!(probes(&r), (https.clone(), https));
    assert!(
        r.notes
            .contains("TLS; /metrics and the summary need a client certificate"),
        "{}",
        r.notes
    );
    let args = test_pod(&r)["containers"][0]["args"][0]
        .as_str()
        .expect("args")
        .to_owned();
    assert!(args.contains("https://${HOST_IP}:9464/healthz"), "{args}");

    // Scraped without a Collector: the ServiceMonitor must speak TLS, with the client cert.
    let sm_tls = json!({"ca": {"secret": {"name": "s", "key": "ca.crt"}},
        "cert": {"secret": {"name": "s", "key": "tls.crt"}}, "keySecret": {"name": "s", "key": "tls.key"},
        "insecureSkipVerify": true});
    let r = rendered(
        &json!({"collector": {"enabled": false}, "agent": {"config": {"http": {"tls": tls}}},
        "serviceMonitor": {"enabled": true, "scheme": "https", "tlsConfig": sm_tls}}),
    );
    let ep = &r.get("ServiceMonitor", &format!("{AGENT}-agent"))["spec"]["endpoints"][0];
    assert_eq!(
        (&ep["scheme"], &ep["tlsConfig"]),
        (&json!("https"), &sm_tls)
    );
    let err = refused(
        &json!({"collector": {"enabled": false}, "agent": {"config": {"http": {"tls": tls}}},
        "serviceMonitor": {"enabled": true}}),
    );
    assert!(err.contains("serviceMonitor.scheme: https"), "{err}");
}

#[test]
fn settings_that_cannot_work_are_refused_with_the_key_and_the_reason() {
    for (values, want) in [
        (
            json!({"agent": {"config": {"http": {"enabled": false}}}}),
            "agent.config.http.enabled: false leaves the liveness and readiness probes",
        ),
        (
            json!({"agent": {"config": {"http": {"listen": "127.0.0.1:9464"}}}}),
            "agent.config.http.listen: 127.0.0.1:9464 is loopback",
        ),
        (
            json!({"agent": {"config": {"http": {"listen": "[::1]:9464"}}}}),
            "agent.config.http.listen: [::1]:9464 is loopback",
        ),
        (
            json!({"agent": {"listenOn": "hostIP", "config": {"http": {"listen": "10.0.0.1:9464"}}}}),
            "agent.listenOn: hostIP sets the listen address itself",
        ),
        (json!({"agent": {"listenOn": "loopback"}}), "listenOn"),
        (
            json!({"collector": {"resources": {"limits": null}}}),
            "collector.resources.limits.memory is required",
        ),
        (
            json!({"collector": {"resources": {"limits": {"memory": null, "cpu": "1"}}}}),
            "collector.resources.limits.memory is required",
        ),
        (
            json!({"agent": {"extraVolumeMounts": [{"name": "x"}]}}),
            "mountPath",
        ),
    ] {
        let err = refused(&values);
        assert!(err.contains(want), "{values}:\n{err}");
        assert!(!err.contains("nil pointer"), "{values}: {err}");
    }
}

#[test]
fn notes_say_what_the_namespace_needs_and_warn_about_an_unnamed_cluster() {
    let unnamed = rendered(&json!({}));
    for want in [
        "pod-security.kubernetes.io/enforce=privileged",
        "WARNING: agent.clusterName is empty",
        "k8s_cluster_name",
    ] {
        assert!(
            unnamed.notes.contains(want),
            "{want} not in\n{}",
            unnamed.notes
        );
    }
    let named = rendered(&json!({"agent": {"clusterName": "prod"}}));
    assert!(!named.notes.contains("WARNING"), "{}", named.notes);
    assert!(
        named.notes.contains("plain HTTP without authentication"),
        "{}",
        named.notes
    );
}

#[test]
fn physical_nics_are_counted_at_tc_by_default() {
    let r = rendered(&json!({}));
    let cfg: Value = serde_norway::from_str(
        r.get("ConfigMap", AGENT)["data"]["config.yaml"]
            .as_str()
            .expect("config"),
    )
    .expect("yaml");
    assert_eq!(cfg["interfaces"]["physical_hook"], "tc");
    let xdp = rendered(&json!({"agent": {"config": {"interfaces": {"physical_hook": "xdp"}}}}));
    let cfg: Value = serde_norway::from_str(
        xdp.get("ConfigMap", AGENT)["data"]["config.yaml"]
            .as_str()
            .expect("config"),
    )
    .expect("yaml");
    assert_eq!(cfg["interfaces"]["physical_hook"], "xdp");
}

/// The README's ```yaml block that contains `marker`.
fn readme_values(marker: &str) -> Value {
    let readme = repo::read("README.md");
    let block = readme
        .split("```yaml\n")
        .skip(1)
        .map(|b| b.split("```").next().expect("block"))
        .find(|b| b.contains(marker))
        .unwrap_or_else(|| panic!("no ```yaml block with {marker} in the README"));
    serde_norway::from_str(block).unwrap_or_else(|e| panic!("README block: {e}\n{block}"))
}

/// A pod's root filesystem as the kubelet lays it out for the agent container, in a temp dir:
/// the host's /usr (read-only bind, for the binary's libraries), the agent binary, the
/// ConfigMap at its mount path and each Secret volume's keys at theirs. Removed on drop.
struct PodRoot {
    dir: PathBuf,
}

impl Drop for PodRoot {
    fn drop(&mut self) {
        // /usr is only bind-mounted inside the command's own mount namespace; an empty dir here
        // proves it, and only then is the tree removed.
        if std::fs::remove_dir(self.dir.join("usr")).is_ok() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl PodRoot {
    fn new(r: &Rendered, secrets: &[(&str, &Path)]) -> Self {
        let dir = std::env::temp_dir().join(common::unique("podroot"));
        let root = Self { dir };
        std::fs::create_dir_all(root.dir.join("usr")).expect("root");
        for l in ["lib", "lib64", "bin"] {
            std::os::unix::fs::symlink(format!("usr/{l}"), root.dir.join(l)).expect("symlink");
        }
        let spec = pod_spec(r, "DaemonSet", AGENT);
        let volumes = spec["volumes"].as_array().expect("volumes");
        for m in spec["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
        {
            let (name, path) = (
                m["name"].as_str().expect("name"),
                m["mountPath"].as_str().expect("path"),
            );
            let v = volumes
                .iter()
                .find(|v| v["name"] == name)
                .unwrap_or_else(|| panic!("no volume {name}"));
            let at = root.dir.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(&at).expect("mount dir");
            if let Some(cm) = v["configMap"]["name"].as_str() {
                for (k, text) in r.get("ConfigMap", cm)["data"].as_object().expect("data") {
                    std::fs::write(at.join(k), text.as_str().expect("text")).expect("write");
                }
            } else if let Some(secret) = v["secret"]["secretName"].as_str() {
                let (_, from) = secrets
                    .iter()
                    .find(|(n, _)| *n == secret)
                    .unwrap_or_else(|| panic!("the test has no Secret {secret}"));
                for key in ["ca.crt", "tls.crt", "tls.key"] {
                    std::fs::copy(from.join(key), at.join(key)).expect("secret key");
                }
            }
        }
        root
    }

    /// `otel-netprobe ARGS` chrooted into the pod's root, in a private mount namespace.
    fn agent(&self, args: &str) -> (bool, String, String) {
        let bin = env!("CARGO_BIN_EXE_otel-netprobe");
        std::fs::write(self.dir.join("otel-netprobe"), b"").expect("bind target");
        let d = self.dir.display();
        repo::run(Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(format!("mount --bind -o ro /usr {d}/usr && mount --bind {bin} {d}/otel-netprobe && exec chroot {d} /otel-netprobe {args}")))
    }
}

/// A Secret's keys (`ca.crt`, `tls.crt`, `tls.key`) in a temp dir, from the test CA.
struct SecretKeys(PathBuf);

impl Drop for SecretKeys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn secret_keys(cn: &str) -> SecretKeys {
    let dir = std::env::temp_dir().join(common::unique(cn));
    std::fs::create_dir_all(&dir).expect("dir");
    let keys = SecretKeys(dir);
    common::certs::make(&keys.0);
    for (from, to) in [
        ("ca.pem", "ca.crt"),
        ("server.pem", "tls.crt"),
        ("server.key", "tls.key"),
    ] {
        std::fs::copy(keys.0.join(from), keys.0.join(to)).expect("copy");
    }
    keys
}

#[test]
fn the_readme_tls_examples_give_the_agent_the_files_its_config_names() {
    common::require_root();
    let keys = secret_keys("tls");
    for (marker, secret, want) in [
        (
            "mountPath: /etc/netprobe/tls",
            "otlp-tls",
            vec![
                "ca_file: \"/etc/netprobe/tls/ca.crt\"",
                "cert_file: \"/etc/netprobe/tls/tls.crt\"",
                "key_file: \"/etc/netprobe/tls/tls.key\"",
            ],
        ),
        (
            "mountPath: /etc/netprobe/metrics-tls",
            "netprobe-metrics-tls",
            vec![
                "cert_file: \"/etc/netprobe/metrics-tls/tls.crt\"",
                "client_ca_file: \"/etc/netprobe/metrics-tls/ca.crt\"",
            ],
        ),
    ] {
        let values = readme_values(marker);
        let r = rendered(&values);
        let pod = PodRoot::new(&r, &[(secret, &keys.0)]);
        let (ok, out, err) = pod.agent("check-config --config /etc/otel-netprobe/config.yaml");
        assert!(
            ok,
            "{marker}: check-config in the pod's files: {err}\n{out}"
        );
        for w in &want {
            assert!(out.contains(w), "{w} not in\n{out}");
        }
        // Without the Secret's files the same config is refused, naming the key: the check
        // above really read them.
        drop(pod);
        let bare = PodRoot::new(
            &rendered(&json!({"agent": {"config": values["agent"]["config"]},
            "collector": values["collector"]})),
            &[],
        );
        let (ok, _, err) = bare.agent("check-config --config /etc/otel-netprobe/config.yaml");
        assert!(
            !ok && err.contains("cannot read /etc/netprobe/"),
            "{marker}: {err}"
        );
    }
}
