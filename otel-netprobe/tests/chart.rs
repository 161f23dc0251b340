//! The Helm chart, rendered and linted with the Helm v4 SDK (helm-python-sdk) for its defaults
//! and variants, every object validated against the Kubernetes schemas (kubernetes-validate,
//! strict), and the facts users rely on asserted: no privileged container by default, the
//! README's exact RBAC, ports that agree with `collector-config/` and the agent's defaults, an
//! agent config the real binary accepts, values the schema rejects.

mod common;
#[path = "common/grafana.rs"]
mod grafana;
#[path = "common/repo.rs"]
mod repo;

use std::{collections::BTreeSet, process::Command};

use otel_netprobe::config::{HTTP_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT};
use repo::{Rendered, render, rendered};
use serde_json::{Value, json};

const AGENT: &str = "np-otel-netprobe";
const COLLECTOR: &str = "np-otel-netprobe-collector";

fn agent_container(r: &Rendered) -> &Value {
    &r.get("DaemonSet", AGENT)["spec"]["template"]["spec"]["containers"][0]
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("a string"))
        .collect()
}

/// The port of a `host:port` endpoint.
fn port_of(endpoint: &str) -> u16 {
    let port = endpoint.rsplit(':').next().expect("port");
    port.parse().unwrap_or_else(|e| panic!("{endpoint}: {e}"))
}

#[test]
fn default_install_renders_lints_and_validates() {
    let r = rendered(&json!({}));
    let names = r.names();
    println!("rendered objects (defaults):\n  {}", names.join("\n  "));
    let want = [
        "ConfigMap/np-otel-netprobe",
        "DaemonSet/np-otel-netprobe",
        "Service/np-otel-netprobe-agent",
        "ConfigMap/np-otel-netprobe-collector",
        "DaemonSet/np-otel-netprobe-collector",
        "Service/np-otel-netprobe-collector",
        "ConfigMap/np-otel-netprobe-dashboard-netprobe-agent",
        "ConfigMap/np-otel-netprobe-dashboard-netprobe-connections",
        "ConfigMap/np-otel-netprobe-dashboard-netprobe-dns",
        "ConfigMap/np-otel-netprobe-dashboard-netprobe-patterns",
        "ConfigMap/np-otel-netprobe-dashboard-netprobe-topology",
        "ConfigMap/np-otel-netprobe-dashboard-netprobe-traffic",
        // Lets system-node-critical pods run outside kube-system (GKE): tests/chart_operator.rs.
        "ResourceQuota/np-otel-netprobe-system-node-critical",
        "ClusterRole/np-otel-netprobe",
        "ClusterRoleBinding/np-otel-netprobe",
        "Role/np-otel-netprobe",
        "RoleBinding/np-otel-netprobe",
        "ServiceAccount/np-otel-netprobe",
        "Pod/np-otel-netprobe-test-health",
    ];
    let got: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(got, want.into_iter().collect(), "{names:?}");
    assert_eq!(names.len(), want.len(), "duplicates: {names:?}");
    for (_, o) in &r.objects {
        let labels = &o["metadata"]["labels"];
        for key in [
            "helm.sh/chart",
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
            "app.kubernetes.io/component",
        ] {
            assert!(labels[key].is_string(), "{key} on {}", o["metadata"]);
        }
        assert_eq!(labels["app.kubernetes.io/instance"], "np");
        let ns = &o["metadata"]["namespace"];
        assert!(
            ns == "netprobe" || o["kind"].as_str().is_some_and(|k| k.starts_with("Cluster")),
            "{} in {ns}",
            o["metadata"]["name"]
        );
    }
    assert_eq!(
        r.get("Pod", "np-otel-netprobe-test-health")["metadata"]["annotations"]["helm.sh/hook"],
        "test"
    );
    for what in [
        "rollout status daemonset/np-otel-netprobe",
        "helm test np",
        ":9464/",
    ] {
        assert!(
            r.notes.contains(what),
            "NOTES.txt lacks {what:?}:\n{}",
            r.notes
        );
    }
}

/// The rules of the README's `kind` (ClusterRole, Role), parsed from its `yaml` block.
fn readme_rules(kind: &str) -> Value {
    let readme = repo::read("README.md");
    let block = format!("```yaml\napiVersion: rbac.authorization.k8s.io/v1\nkind: {kind}\n");
    let start = readme
        .find(&block)
        .unwrap_or_else(|| panic!("the README's {kind} block"))
        + "```yaml\n".len();
    let end = start + readme[start..].find("```").expect("end of block");
    let role: Value = serde_norway::from_str(&readme[start..end]).expect("README RBAC YAML");
    role["rules"].clone()
}

/// The ClusterRole and the Role are exactly the README's (the Role: `get` of the agent's own
/// DaemonSet by name), each bound to the agent's service account.
fn assert_rbac_is_the_readmes(r: &Rendered) {
    for kind in ["ClusterRole", "Role"] {
        let mut rules = readme_rules(kind);
        if kind == "Role" {
            rules[0]["resourceNames"] = json!([AGENT]);
        }
        assert_eq!(r.get(kind, AGENT)["rules"], rules, "{kind}");
        let binding = r.get(&format!("{kind}Binding"), AGENT);
        assert_eq!(
            binding["roleRef"],
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": AGENT})
        );
        assert_eq!(
            binding["subjects"],
            json!([{"kind": "ServiceAccount", "name": AGENT, "namespace": "netprobe"}])
        );
    }
}

#[test]
fn agent_runs_unprivileged_with_the_readme_capabilities_and_rbac() {
    let r = rendered(&json!({}));
    let ds = r.get("DaemonSet", AGENT);
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["hostNetwork"], true);
    assert_eq!(pod["dnsPolicy"], "ClusterFirstWithHostNet");
    assert!(pod["hostPID"].is_null() && pod["hostIPC"].is_null());
    assert_eq!(pod["tolerations"], json!([{"operator": "Exists"}]));
    assert_eq!(pod["serviceAccountName"], AGENT);
    let c = agent_container(&r);
    let sc = &c["securityContext"];
    assert_eq!(sc["privileged"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    // File capabilities need no_new_privs off (see the Dockerfile).
    assert_eq!(sc["allowPrivilegeEscalation"], true);
    assert_eq!(strings(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(
        strings(&sc["capabilities"]["add"]),
        ["BPF", "NET_ADMIN", "PERFMON"]
    );
    // The measured footprint (README): 85 MiB RSS + 46.5 MiB of kernel tables.
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "100m", "memory": "140Mi"})
    );
    assert!(c["resources"]["limits"]["cpu"].is_null(), "no CPU limit");
    // One thing mounted from the host by default: its bpffs, for the pinned maps and links
    // (README, "Restarts"); BTF comes through the container's /sys.
    let host: Vec<&Value> = pod["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter(|v| !v["hostPath"].is_null())
        .collect();
    assert_eq!(
        host,
        [&json!({"name": "bpffs", "hostPath": {"path": "/sys/fs/bpf", "type": "Directory"}})],
        "{}",
        pod["volumes"]
    );
    let mounts = c["volumeMounts"].as_array().expect("volumeMounts");
    assert!(
        mounts.contains(&json!({"name": "bpffs", "mountPath": "/sys/fs/bpf", "mountPropagation": "HostToContainer"})),
        "{mounts:?}"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            c[probe]["httpGet"],
            json!({"path": "/healthz", "port": "http", "scheme": "HTTP"})
        );
    }
    assert_eq!(
        c["ports"],
        json!([{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}])
    );
    let env = c["env"].as_array().expect("env");
    let var = |name: &str| env.iter().find(|e| e["name"] == name).cloned();
    assert_eq!(
        var("K8S_NODE_NAME").expect("K8S_NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    // service.instance.id is the node (the agent's default from K8S_NODE_NAME): one per node,
    // the same across restarts and rollouts, so a new pod continues its node's series.
    assert!(var("POD_UID").is_none() && var("OTEL_RESOURCE_ATTRIBUTES").is_none());
    // The agent's own pod, for the DaemonSet check at SIGTERM (rollout or uninstall).
    for (name, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        assert_eq!(
            var(name).expect(name)["valueFrom"]["fieldRef"]["fieldPath"],
            field
        );
    }
    assert_eq!(
        env.iter()
            .map(|e| e["name"].as_str().expect("name"))
            .collect::<Vec<_>>(),
        ["K8S_NODE_NAME", "POD_NAME", "POD_NAMESPACE"]
    );
    assert_rbac_is_the_readmes(&r);
    // No object anywhere asks for privileges, and only the agent for capabilities.
    for (_, o) in &r.objects {
        let spec = if o["kind"] == "Pod" {
            &o["spec"]
        } else {
            &o["spec"]["template"]["spec"]
        };
        for c in spec["containers"].as_array().into_iter().flatten() {
            let sc = &c["securityContext"];
            assert_ne!(sc["privileged"], true, "{}", o["metadata"]["name"]);
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
            if c["name"] != "agent" {
                assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
                assert!(sc["capabilities"]["add"].is_null(), "{}", c["name"]);
            }
        }
    }
}

/// The ports of a Collector config: OTLP gRPC and HTTP, the prometheus exporter (scrape mode),
/// its own metrics, health check.
fn collector_ports(config: &Value) -> BTreeSet<u16> {
    let mut ports = BTreeSet::new();
    for protocol in ["grpc", "http"] {
        let e = config["receivers"]["otlp"]["protocols"][protocol]["endpoint"]
            .as_str()
            .expect("otlp endpoint");
        ports.insert(port_of(e));
    }
    if let Some(e) = config["exporters"]["prometheus"]["endpoint"].as_str() {
        ports.insert(port_of(e));
    }
    ports.insert(port_of(
        config["extensions"]["health_check"]["endpoint"]
            .as_str()
            .expect("health_check"),
    ));
    let reader = &config["service"]["telemetry"]["metrics"]["readers"][0]["pull"]["exporter"];
    let own = reader["prometheus"]["port"]
        .as_u64()
        .expect("telemetry port");
    ports.insert(u16::try_from(own).expect("port"));
    ports
}

fn container_ports(c: &Value) -> Vec<(String, u16)> {
    c["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().expect("name").to_owned(),
                u16::try_from(p["containerPort"].as_u64().expect("port")).expect("u16"),
            )
        })
        .collect()
}

fn agent_config(r: &Rendered) -> Value {
    let text = r.get("ConfigMap", AGENT)["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_owned();
    serde_norway::from_str(&text).expect("agent config YAML")
}

#[test]
fn ports_agree_with_collector_config_and_agent_defaults() {
    for (mode, file, protocol, otlp_port) in [
        ("scrape", "otelcol.yaml", "grpc", OTLP_GRPC_PORT),
        (
            "remoteWrite",
            "otelcol-remote-write.yaml",
            "http/protobuf",
            OTLP_HTTP_PORT,
        ),
    ] {
        let values = json!({"collector": {"mode": mode, "protocol": protocol,
            "remoteWrite": {"url": "http://prometheus.monitoring:9090/api/v1/write"}}});
        let r = rendered(&values);
        // The Collector runs collector-config/ verbatim.
        let source = repo::read(&format!("collector-config/{file}"));
        let shipped = r.get("ConfigMap", COLLECTOR)["data"]["config.yaml"]
            .as_str()
            .expect("config");
        assert_eq!(shipped.trim_end(), source.trim_end(), "{mode}: not {file}");
        let config: Value = serde_norway::from_str(&source).expect("collector YAML");
        let want = collector_ports(&config);
        let deploy = r.get("DaemonSet", COLLECTOR);
        let c = &deploy["spec"]["template"]["spec"]["containers"][0];
        let ports = container_ports(c);
        let got: BTreeSet<u16> = ports.iter().map(|(_, p)| *p).collect();
        assert_eq!(got, want, "{mode}: container ports vs {file}");
        assert!(want.contains(&OTLP_GRPC_PORT) && want.contains(&OTLP_HTTP_PORT));
        let named = |n: &str| ports.iter().find(|(name, _)| name == n).map(|(_, p)| *p);
        let health = port_of(
            config["extensions"]["health_check"]["endpoint"]
                .as_str()
                .expect("hc"),
        );
        assert_eq!(named("health"), Some(health));
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "health");
        assert_eq!(
            c["args"],
            json!(["--config=/etc/otelcol-contrib/config.yaml"])
        );
        assert_eq!(
            c["volumeMounts"][0]["mountPath"], "/etc/otelcol-contrib",
            "the config's mount"
        );
        // GOMEMLIMIT is 80 % of the memory limit (256Mi).
        let env = c["env"].as_array().expect("env");
        assert!(
            env.contains(&json!({"name": "GOMEMLIMIT", "value": "204MiB"})),
            "{env:?}"
        );
        if mode == "remoteWrite" {
            assert!(env.contains(&json!({"name": "PROMETHEUS_REMOTE_WRITE_URL",
                "value": "http://prometheus.monitoring:9090/api/v1/write"})));
        }
        // The Service forwards each of its ports to a container port of the same name.
        let svc = r.get("Service", COLLECTOR);
        for p in svc["spec"]["ports"].as_array().expect("ports") {
            let name = p["name"].as_str().expect("name");
            assert_eq!(p["targetPort"], name);
            assert_eq!(named(name).map(u64::from), p["port"].as_u64(), "{name}");
        }
        // The agents export to that Service, on the port of their protocol.
        let cfg = agent_config(&r);
        let endpoint = format!("http://{COLLECTOR}.netprobe.svc:{otlp_port}");
        assert_eq!(cfg["otlp"]["endpoint"], endpoint.as_str());
        assert_eq!(cfg["otlp"]["protocol"], protocol);
        assert!(
            svc["spec"]["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .any(|p| p["port"] == otlp_port)
        );
    }
}

/// Runs the real binary's `check-config` on a rendered agent config; returns what it printed.
fn check_config(r: &Rendered) -> String {
    let text = r.get("ConfigMap", AGENT)["data"]["config.yaml"]
        .as_str()
        .expect("config.yaml")
        .to_owned();
    let file = std::env::temp_dir().join(format!("np-chart-cfg-{}.yaml", common::unique("cc")));
    std::fs::write(&file, &text).expect("write config");
    let (ok, stdout, stderr) = repo::run(
        Command::new(env!("CARGO_BIN_EXE_otel-netprobe"))
            .args(["check-config", "--config"])
            .arg(&file),
    );
    let _ = std::fs::remove_file(&file);
    assert!(
        ok,
        "check-config rejects the rendered config:\n{text}\n{stderr}"
    );
    stdout
}

/// netprobe.example.yaml: every key of the agent's configuration, with its default.
fn example_config() -> Value {
    serde_norway::from_str(&repo::read("otel-netprobe/netprobe.example.yaml")).expect("example")
}

#[test]
fn the_rendered_agent_config_is_one_the_agent_accepts() {
    let out = check_config(&rendered(&json!({"agent": {"clusterName": "prod"}})));
    for want in [
        "endpoint: \"http://np-otel-netprobe-collector.netprobe.svc:4317\"",
        "protocol: Grpc",
        "cluster_name: \"prod\"",
        "mode: Cluster",
    ] {
        assert!(out.contains(want), "{want} not in\n{out}");
    }
    // Every key the agent knows, through the values and the schema, reaches the agent intact.
    let mut full = example_config();
    full["flows"]["capacity"] = json!(16_777_216);
    full["metrics"]["flow_attributes"] = json!(["source.k8s.workload.name", "destination.port"]);
    full["metrics"]["size_attributes"] = json!(["network.transport"]);
    full["otlp"]["endpoint"] = json!("https://otlp.example.invalid:4318");
    full["otlp"]["protocol"] = json!("http/protobuf");
    full["connections"]["capacity"] = json!(4_194_304);
    full["connections"]["handshake_timeout"] = json!("20s");
    full["connections"]["idle_timeout"] = json!("30m");
    full["drops"]["enabled"] = json!(false);
    full["dns"]["ports"] = json!([53, 5353]);
    full["dns"]["timeout"] = json!("10s");
    full["dns"]["capacity"] = json!(1_048_576);
    let r = rendered(&json!({"collector": {"enabled": false}, "agent": {"config": full}}));
    let cfg = agent_config(&r);
    assert_eq!(cfg["flows"]["capacity"], 16_777_216, "no float notation");
    assert_eq!(
        cfg["connections"]["capacity"], 4_194_304,
        "no float notation"
    );
    assert_eq!(cfg["otlp"]["endpoint"], "https://otlp.example.invalid:4318");
    let out = check_config(&r);
    for want in [
        "capacity: 16777216",
        "HttpProtobuf",
        "capacity: 4194304",
        "handshake_timeout: 20s",
        "idle_timeout: 1800s",
        "DropsConfig {\n        enabled: false",
        "ports: [\n            53,\n            5353,\n        ]",
        "timeout: 10s",
        "capacity: 1048576",
    ] {
        assert!(out.contains(want), "{want} not in\n{out}");
    }
}

/// Every key path of a YAML/JSON object tree (`flows.capacity`, ...), stopping at `stop` keys.
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>, stop: &[&str]) {
    if let Some(map) = v.as_object() {
        for (k, child) in map {
            let path = format!("{prefix}{k}");
            out.insert(path.clone());
            if !stop.contains(&path.as_str()) {
                key_paths(child, &format!("{path}."), out, stop);
            }
        }
    }
}

/// Asserts every object of a schema that lists properties is closed, as serde's
/// deny_unknown_fields structs are.
fn closed(s: &Value, at: &str) {
    if s["type"] == "object" && s.get("properties").is_some() {
        assert_eq!(s["additionalProperties"], false, "{at} is open");
        for (k, p) in s["properties"].as_object().expect("properties") {
            closed(p, &format!("{at}.{k}"));
            closed(&p["items"], &format!("{at}.{k}[]"));
        }
    }
}

/// The key paths of a schema's closed objects.
fn schema_paths(s: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    for (k, p) in s["properties"].as_object().into_iter().flatten() {
        out.insert(format!("{prefix}{k}"));
        if p.get("additionalProperties") == Some(&Value::Bool(false)) {
            schema_paths(p, &format!("{prefix}{k}."), out);
        }
    }
}

#[test]
fn the_values_schema_mirrors_the_agent_config_and_rejects_typos() {
    let schema: Value =
        serde_json::from_str(&repo::read("charts/otel-netprobe/values.schema.json"))
            .expect("schema JSON");
    let agent = &schema["properties"]["agent"]["properties"]["config"];
    // Every object in the agent's part is closed, as the agent's serde structs are.
    closed(agent, "agent.config");
    // The schema knows exactly the keys the documented example has (+ the two commented out).
    let mut schema_keys = BTreeSet::new();
    schema_paths(agent, "", &mut schema_keys);
    let mut example_keys = BTreeSet::new();
    let maps = ["otlp.headers", "otlp.resource_attributes"];
    key_paths(&example_config(), "", &mut example_keys, &maps);
    example_keys.insert("metrics.flow_attributes".into());
    example_keys.insert("metrics.size_attributes".into());
    assert_eq!(schema_keys, example_keys);
    // The attribute lists take exactly the attributes the agent knows.
    let known: Vec<&str> = otel_netprobe::config::FlowAttr::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for key in ["flow_attributes", "size_attributes"] {
        let items = &agent["properties"]["metrics"]["properties"][key]["items"];
        assert_eq!(strings(&items["enum"]), known, "metrics.{key}");
    }

    // Bad values stop `helm install` and name the key.
    let bad = [
        (
            json!({"agent": {"config": {"flows": {"capacty": 1000}}}}),
            "capacty",
        ),
        (
            json!({"agent": {"config": {"interfaces": {"virtual_hook": "ebpf"}}}}),
            "virtual_hook",
        ),
        (
            json!({"agent": {"config": {"flows": {"poll_interval": "soon"}}}}),
            "poll_interval",
        ),
        (
            json!({"agent": {"config": {"flows": {"capacity": 10}}}}),
            "capacity",
        ),
        (
            json!({"agent": {"config": {"k8s": {"mode": "kubernetes"}}}}),
            "mode",
        ),
        (
            json!({"agent": {"config": {"connections": {"capacity": 100}}}}),
            "capacity",
        ),
        (
            json!({"agent": {"config": {"connections": {"idle_timeout": "forever"}}}}),
            "idle_timeout",
        ),
        (
            json!({"agent": {"config": {"drops": {"enable": true}}}}),
            "enable",
        ),
        (
            json!({"agent": {"config": {"metrics": {"flow_attributes": ["source.pod"]}}}}),
            "flow_attributes",
        ),
        (json!({"agentt": {}}), "agentt"),
        (json!({"image": {"pullPolicy": "Sometimes"}}), "pullPolicy"),
        (json!({"collector": {"mode": "push"}}), "mode"),
        (
            json!({"agent": {"extraCapabilities": ["BPF"]}}),
            "extraCapabilities",
        ),
        (
            json!({"agent": {"extraCapabilities": ["SYS_RESOURCE"]}}),
            "agent.runAsRoot=true",
        ),
        (
            json!({"collector": {"mode": "remoteWrite"}}),
            "collector.remoteWrite.url",
        ),
        (
            json!({"collector": {"resources": {"limits": {"memory": "1G"}}}}),
            "Mi or Gi",
        ),
    ];
    for (values, key) in bad {
        let err = render(&values)
            .err()
            .unwrap_or_else(|| panic!("{values} accepted"));
        assert!(err.contains(key), "{values}: {err}");
    }
}

#[test]
fn variants_render_and_validate() {
    // Collector off: the agents push to the user's endpoint; no Collector objects.
    let r = rendered(&json!({"collector": {"enabled": false},
        "agent": {"config": {"otlp": {"endpoint": "http://otel-collector.observability:4317"}}}}));
    assert!(
        !r.names().iter().any(|n| n.contains("collector")),
        "{:?}",
        r.names()
    );
    assert_eq!(
        agent_config(&r)["otlp"]["endpoint"],
        "http://otel-collector.observability:4317"
    );
    check_config(&r);

    // Privileged: the documented switch for kernels that need it.
    let r = rendered(&json!({"agent": {"privileged": true}}));
    let sc = &agent_container(&r)["securityContext"];
    assert_eq!(sc["privileged"], true);
    assert_eq!(sc["runAsUser"], 0);

    // Root with capabilities (runtimes without file capabilities; SYS_RESOURCE before 5.11).
    let r = rendered(
        &json!({"agent": {"runAsRoot": true, "extraCapabilities": ["SYS_RESOURCE"],
        "mountBtf": true, "seccompProfile": {"type": "RuntimeDefault"}}}),
    );
    let c = agent_container(&r);
    let sc = &c["securityContext"];
    assert_eq!(
        (&sc["privileged"], &sc["runAsUser"]),
        (&json!(false), &json!(0))
    );
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(
        strings(&sc["capabilities"]["add"]),
        ["BPF", "NET_ADMIN", "PERFMON", "SYS_RESOURCE"]
    );
    assert_eq!(c["volumeMounts"][1]["mountPath"], "/sys/kernel/btf");
    assert_eq!(c["volumeMounts"][1]["readOnly"], true);

    // ServiceMonitor and PrometheusRule.
    service_monitors_select_real_ports();
    prometheus_rule_is_the_rule_file();
}

fn service_monitors_select_real_ports() {
    for (collector, sm_name, svc_name, ports) in [
        (true, COLLECTOR, COLLECTOR, vec!["prom-exporter", "metrics"]),
        (
            false,
            "np-otel-netprobe-agent",
            "np-otel-netprobe-agent",
            vec!["http"],
        ),
    ] {
        let r = rendered(
            &json!({"serviceMonitor": {"enabled": true, "labels": {"release": "kps"}},
            "collector": {"enabled": collector}, "agent": {"clusterName": "prod"}}),
        );
        let sm = r.get("ServiceMonitor", sm_name);
        let svc = r.get("Service", svc_name);
        assert_eq!(sm["metadata"]["labels"]["release"], "kps");
        let selector = sm["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("selector");
        for (k, v) in selector {
            assert_eq!(
                &svc["metadata"]["labels"][k], v,
                "{sm_name} selects {svc_name} by {k}"
            );
        }
        let names: Vec<&str> = sm["spec"]["endpoints"]
            .as_array()
            .expect("endpoints")
            .iter()
            .map(|e| e["port"].as_str().expect("port"))
            .collect();
        assert_eq!(names, ports);
        let svc_ports: Vec<&Value> = svc["spec"]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .collect();
        for p in &names {
            assert!(
                svc_ports.iter().any(|sp| sp["name"] == *p),
                "{p} not on {svc_name}"
            );
        }
        let first = &sm["spec"]["endpoints"][0];
        if collector {
            // The exporter's job/instance come from the agents' resources.
            assert_eq!(first["honorLabels"], true);
        } else {
            // Labelled as the Collector would label them, for the dashboards and rules.
            assert_eq!(
                first["relabelings"],
                json!([{"sourceLabels": ["__meta_kubernetes_pod_node_name"],
                        "targetLabel": "k8s_node_name", "action": "replace"},
                       {"targetLabel": "k8s_cluster_name", "replacement": "prod", "action": "replace"}])
            );
        }
    }
}

fn prometheus_rule_is_the_rule_file() {
    let r = rendered(&json!({"prometheusRule": {"enabled": true}}));
    let rule = r.get("PrometheusRule", AGENT);
    // The rule file, matched to this release's DaemonSet and Collector (the default runbook
    // base is the file's own; tests/alerts.rs renders other bases).
    let text = repo::read("alerts/netprobe.rules.yaml")
        .replace(
            r#"daemonset=~".*otel-netprobe.*", daemonset!~".*collector.*""#,
            r#"namespace="netprobe", daemonset="np-otel-netprobe""#,
        )
        .replace(
            r#"job=~".*otel-netprobe-collector.*""#,
            r#"namespace="netprobe", job=~"np-otel-netprobe-collector.*""#,
        );
    let file: Value = serde_norway::from_str(&text).expect("rules YAML");
    assert_eq!(
        rule["spec"], file,
        "the PrometheusRule's spec is alerts/netprobe.rules.yaml, matched to the release"
    );
    let count = file["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| g["rules"].as_array().expect("rules").len())
        .sum::<usize>();
    // And promtool accepts what the operator would load.
    let tmp = std::env::temp_dir().join(format!("{}.rules.yaml", common::unique("pr")));
    std::fs::write(&tmp, serde_json::to_string(&rule["spec"]).expect("json")).expect("write");
    let (ok, out, err) = repo::run(
        Command::new(common::backends::tool("promtool"))
            .args(["check", "rules"])
            .arg(&tmp),
    );
    let _ = std::fs::remove_file(&tmp);
    assert!(
        ok && out.contains(&format!("SUCCESS: {count} rules found")),
        "{out}{err}"
    );
}

#[test]
fn dashboards_are_provisioned_for_the_grafana_sidecar() {
    let r =
        rendered(&json!({"dashboards": {"namespace": "monitoring", "datasourceUid": "prom-a"}}));
    let maps: Vec<&Value> = r
        .all("ConfigMap")
        .into_iter()
        .filter(|c| c["metadata"]["labels"]["grafana_dashboard"] == "1")
        .collect();
    let files = grafana::files();
    assert_eq!(maps.len(), files.len());
    assert_eq!(files.len(), 6, "{files:?}");
    for file in &files {
        let cm = maps
            .iter()
            .find(|c| c["data"].get(file.as_str()).is_some())
            .unwrap_or_else(|| panic!("no ConfigMap ships {file}"));
        assert_eq!(cm["metadata"]["namespace"], "monitoring");
        assert_eq!(
            cm["metadata"]["annotations"]["grafana_folder"],
            "otel-netprobe"
        );
        let shipped = cm["data"][file.as_str()].as_str().expect("json");
        assert!(!shipped.contains("${DS_PROMETHEUS}"), "{file}");
        let source = repo::read(&format!("dashboards/{file}"));
        assert_eq!(
            shipped.trim_end(),
            source.replace("${DS_PROMETHEUS}", "prom-a").trim_end()
        );
        let d: Value = serde_json::from_str(shipped).expect("dashboard JSON");
        let ds = &d["templating"]["list"][0];
        assert_eq!(
            (&ds["name"], &ds["current"]["value"]),
            (&json!("datasource"), &json!("prom-a"))
        );
    }
    let off = rendered(&json!({"dashboards": {"enabled": false}}));
    assert!(!off.names().iter().any(|n| n.contains("dashboard")));
}
