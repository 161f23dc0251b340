//! The Helm chart installed into a real kube-apiserver (with etcd, RBAC on) by the Helm v4
//! SDK's install action, as `helm install --create-namespace` runs it: for the default values
//! and the main variants (remote write, no Collector, privileged, root with SYS_RESOURCE, the
//! prometheus-operator objects), every object of the release is admitted — listed back from
//! the server by the release's label, exactly the manifest's objects — and `helm uninstall`
//! removes every one of them (listed again: none left).
//!
//! There is no kubelet or controller here: the DaemonSet's pods never run. What is proven is
//! admission (schemas, defaults, the PodSecurity and ServiceAccount plugins, RBAC objects the
//! server accepts), not scheduling. Pod Security is enforced on pods, not on the DaemonSet: the
//! PodSecurity test posts the pod the DaemonSet controller would post, from the stored
//! template, into a `baseline` and a `privileged` namespace. Rendering, linting and schema checks of the same values are
//! `tests/chart.rs`'s.

mod common;

use common::kubeapi::{KubeApiServer, helm::Release};
use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        core::v1::{Namespace, Pod, ResourceQuota, ServiceAccount},
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{Api, api::PostParams};
use serde_json::{Value, json};

/// The release's objects as listed from the server by `app.kubernetes.io/instance`, per kind of
/// its manifest: `Kind/name`, sorted.
fn listed(api: &KubeApiServer, release: &Release) -> Vec<String> {
    let mut kinds: Vec<(String, String)> = release
        .objects
        .iter()
        .map(|o| {
            (
                o["apiVersion"].as_str().expect("apiVersion").to_owned(),
                o["kind"].as_str().expect("kind").to_owned(),
            )
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let selector = format!("app.kubernetes.io/instance={}", release.name);
    let mut found: Vec<String> = kinds
        .iter()
        .flat_map(|(v, k)| {
            api.names_of(v, k, &release.namespace, &selector)
                .into_iter()
                .map(move |n| format!("{k}/{n}"))
        })
        .collect();
    found.sort();
    found
}

/// The prometheus-operator's two kinds, served by CRDs of the same group, kinds and scope.
/// Stand-ins: the operator's own CRDs cannot be fetched on these machines, so these accept any
/// `spec` (the chart's objects are checked against the operator's schemas, for the fields the
/// chart uses, in `tests/chart.rs`); what this proves is that Helm installs and removes them
/// on a cluster that serves the kinds.
fn operator_crds(api: &KubeApiServer) {
    for (kind, plural) in [
        ("ServiceMonitor", "servicemonitors"),
        ("PrometheusRule", "prometheusrules"),
    ] {
        let crd: CustomResourceDefinition = serde_json::from_value(json!({
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {
                "group": "monitoring.coreos.com",
                "names": {"kind": kind, "plural": plural, "listKind": format!("{kind}List"),
                    "singular": kind.to_lowercase()},
                "scope": "Namespaced",
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {
                    "openAPIV3Schema": {"type": "object", "properties": {"spec": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": true}}}}}]
            }
        }))
        .expect("a CRD");
        api.apply(&crd);
        let established = common::wait_until(std::time::Duration::from_secs(60), || {
            api.list::<CustomResourceDefinition>(None).iter().any(|c| {
                c.spec.names.kind == kind
                    && c.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter()
                                .any(|c| c.type_ == "Established" && c.status == "True")
                        })
            })
        });
        assert!(established, "the {kind} CRD was never established");
    }
}

#[test]
fn the_chart_installs_into_a_real_api_server_and_uninstalls_cleanly() {
    common::require_root();
    let api = KubeApiServer::start();
    println!(
        "kube-apiserver + etcd ready in {:.1} s",
        api.start_time.as_secs_f64()
    );
    operator_crds(&api);
    let variants: [(&str, Value); 6] = [
        ("np", json!({})),
        (
            "rw",
            json!({"collector": {"mode": "remoteWrite", "protocol": "http/protobuf",
                "remoteWrite": {"url": "http://prometheus.monitoring:9090/api/v1/write"}}}),
        ),
        (
            "direct",
            json!({"collector": {"enabled": false}, "agent": {"config": {"otlp":
                {"endpoint": "http://otel-collector.observability:4317"}}}}),
        ),
        ("priv", json!({"agent": {"privileged": true}})),
        (
            "root",
            json!({"agent": {"runAsRoot": true, "extraCapabilities": ["SYS_RESOURCE"],
                "mountBtf": true, "seccompProfile": {"type": "RuntimeDefault"}}}),
        ),
        (
            "op",
            json!({"serviceMonitor": {"enabled": true, "labels": {"release": "kps"}},
                "prometheusRule": {"enabled": true}, "agent": {"clusterName": "prod"}}),
        ),
    ];
    for (name, values) in &variants {
        let namespace = format!("netprobe-{name}");
        let release = api
            .helm_install(name, &namespace, values)
            .unwrap_or_else(|e| panic!("helm install {name} ({values}): {e}"));
        let manifest = release.names();
        println!("{name} ({values}): {} objects admitted", manifest.len());
        assert!(
            manifest.contains(&format!("DaemonSet/{}", release.agent_name()))
                && manifest.contains(&format!("ClusterRole/{}", release.agent_name())),
            "{name}: {manifest:?}"
        );
        if *name == "op" {
            for kind in ["ServiceMonitor", "PrometheusRule"] {
                assert!(
                    manifest.iter().any(|m| m.starts_with(&format!("{kind}/"))),
                    "{name}: a {kind}: {manifest:?}"
                );
            }
        }
        // Admitted: the server lists exactly the manifest's objects under the release's label.
        assert_eq!(listed(&api, &release), manifest, "{name}: on the server");
        assert_eq!(api.helm_releases(&namespace), [name.to_string()]);
        api.helm_uninstall(&release);
        assert_eq!(
            listed(&api, &release),
            Vec::<String>::new(),
            "{name}: left after helm uninstall"
        );
        assert_eq!(api.helm_releases(&namespace), Vec::<String>::new());
    }
}

/// A pod from the installed DaemonSet's template, bound to a node: what the DaemonSet
/// controller would create (there is no controller here), posted as it would post it.
fn agent_pod(api: &KubeApiServer, release: &Release) -> Result<Pod, kube::Error> {
    let ds = api
        .list::<DaemonSet>(Some(&release.namespace))
        .into_iter()
        .find(|d| d.metadata.name.as_deref() == Some(release.agent_name().as_str()))
        .expect("the agent DaemonSet on the server");
    let template = ds.spec.expect("spec").template;
    let mut spec = template.spec.expect("pod spec");
    spec.node_name = Some("node-a".into());
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(format!("{}-node-a", release.agent_name())),
            namespace: Some(release.namespace.clone()),
            labels: template.metadata.and_then(|m| m.labels),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    };
    let ns = release.namespace.clone();
    api.admin(|client| async move {
        Api::<Pod>::namespaced(client, &ns)
            .create(&PostParams::default(), &pod)
            .await
    })
}

#[test]
fn pod_security_admission_admits_the_agents_pods_only_in_a_privileged_namespace() {
    common::require_root();
    let api = KubeApiServer::start();
    // Every operator setting that lands in the pod spec, so the server admits them too.
    let values = json!({
        "image": {"registry": "registry.example.com", "digest":
            "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
        "imagePullSecrets": [{"name": "regcred"}],
        "agent": {"clusterName": "prod", "listenOn": "hostIP",
            "seLinuxOptions": {"type": "spc_t"},
            "extraVolumes": [{"name": "otlp-tls", "secret": {"secretName": "otlp-tls"}}],
            "extraVolumeMounts": [{"name": "otlp-tls", "mountPath": "/etc/netprobe/tls",
                "readOnly": true}]},
    });
    for (level, admitted) in [("baseline", false), ("privileged", true)] {
        let namespace = format!("netprobe-{level}");
        api.apply::<Namespace>(
            &serde_json::from_value(json!({"metadata": {"name": namespace, "labels":
                {"pod-security.kubernetes.io/enforce": level}}}))
            .expect("namespace"),
        );
        // The controller-manager's part: the namespace's default ServiceAccount.
        api.apply::<ServiceAccount>(
            &serde_json::from_value(json!({"metadata": {"name": "default",
                "namespace": namespace}}))
            .expect("service account"),
        );
        let release = api
            .helm_install(level, &namespace, &values)
            .unwrap_or_else(|e| panic!("helm install into a {level} namespace: {e}"));
        // A DaemonSet is only warned about (PodSecurity enforces on pods): it is admitted
        // either way, which is why an operator sees "0 pods", not an error, at install.
        assert!(
            listed(&api, &release).contains(&format!("DaemonSet/{}", release.agent_name())),
            "{level}"
        );
        // The quota controller's part: the chart's ResourceQuota gets its status computed
        // (until then the quota admission refuses every pod of its scope).
        let quota = format!("{}-system-node-critical", release.agent_name());
        api.merge_status::<ResourceQuota>(
            Some(&namespace),
            &quota,
            &json!({"hard": {"pods": "10000"}, "used": {"pods": "0"}}),
        );
        match agent_pod(&api, &release) {
            Ok(pod) => {
                assert!(admitted, "{level}: the agent's pod was admitted");
                println!("{level}: the agent's pod admitted");
                let spec = pod.spec.expect("spec");
                let c = &spec.containers[0];
                assert_eq!(
                    c.image.as_deref(),
                    Some(
                        "registry.example.com/otel-netprobe@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                    )
                );
                let selinux = c
                    .security_context
                    .as_ref()
                    .and_then(|s| s.se_linux_options.as_ref());
                assert_eq!(selinux.and_then(|s| s.type_.as_deref()), Some("spc_t"));
                assert_eq!(
                    spec.image_pull_secrets.map(|s| s.len()),
                    Some(1),
                    "imagePullSecrets"
                );
                assert_eq!(
                    spec.priority_class_name.as_deref(),
                    Some("system-node-critical")
                );
                assert!(
                    spec.priority.is_some_and(|p| p >= 2_000_000_000),
                    "resolved priority"
                );
                let arch = serde_json::to_value(&spec.affinity).expect("json");
                assert_eq!(
                    arch["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
                        [0]["matchExpressions"][0]["key"],
                    "kubernetes.io/arch"
                );
            }
            Err(e) => {
                let status = common::kubeapi::requests::refusal(&e)
                    .unwrap_or_else(|| panic!("{level}: not a refusal: {e}"));
                assert!(!admitted, "{level}: refused: {}", status.message);
                println!("{level}: refused: {}", status.message);
                assert_eq!(status.code, 403, "{status:?}");
                for want in [
                    "violates PodSecurity \"baseline:latest\"",
                    "hostNetwork=true",
                    "non-default capabilities",
                ] {
                    assert!(
                        status.message.contains(want),
                        "{want} not in {}",
                        status.message
                    );
                }
            }
        }
        api.helm_uninstall(&release);
    }
}
