//! Kubernetes objects for the fake API server, as the API serves them (k8s-openapi types).

use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use serde_json::{Value, json};

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

/// A running pod with `ips`, on `node`, owned by `owner` (kind, name).
pub fn pod(ns: &str, name: &str, ips: &[&str], node: &str, owner: Option<(&str, &str)>) -> Pod {
    let mut meta = json!({"name": name, "namespace": ns, "labels": {"app": name},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}});
    if let Some((kind, oname)) = owner {
        let api = match kind {
            "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Deployment" => "apps/v1",
            "Job" | "CronJob" => "batch/v1",
            _ => "v1",
        };
        meta["ownerReferences"] = json!([{"apiVersion": api, "kind": kind, "name": oname,
            "uid": format!("uid-{oname}"), "controller": true}]);
    }
    let pod_ips: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
    parse(json!({
        "metadata": meta,
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "app:1"}]},
        "status": {"phase": "Running", "podIP": ips.first(), "podIPs": pod_ips}
    }))
}

/// A hostNetwork pod of a DaemonSet: it has its node's IP, and serves on `port`.
pub fn host_pod(ns: &str, name: &str, node_ip: &str, node: &str, port: u16) -> Pod {
    let mut p = pod(ns, name, &[node_ip], node, Some(("DaemonSet", name)));
    let spec = p.spec.as_mut().expect("spec");
    spec.host_network = Some(true);
    spec.containers[0].ports = Some(vec![parse(json!({"containerPort": port}))]);
    p
}

/// A ReplicaSet owned by a Deployment.
pub fn replicaset(ns: &str, name: &str, deployment: &str) -> ReplicaSet {
    parse(json!({
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "Deployment", "name": deployment, "uid": format!("uid-{deployment}"),
            "controller": true}]},
        "spec": {"selector": {"matchLabels": {"app": deployment}}}
    }))
}

/// A Job owned by a CronJob.
pub fn job(ns: &str, name: &str, cronjob: &str) -> Job {
    parse(json!({
        "metadata": {"name": name, "namespace": ns, "ownerReferences": [{"apiVersion": "batch/v1",
            "kind": "CronJob", "name": cronjob, "uid": format!("uid-{cronjob}"),
            "controller": true}]},
        "spec": {"template": {"spec": {"containers": []}}}
    }))
}

/// A ClusterIP service (`cluster_ips` empty: headless) on `port`.
pub fn service(ns: &str, name: &str, cluster_ips: &[&str], port: u16, target: u16) -> Service {
    let ips: Vec<&str> = if cluster_ips.is_empty() {
        vec!["None"]
    } else {
        cluster_ips.to_vec()
    };
    parse(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ips[0], "clusterIPs": ips,
            "ports": [{"port": port, "targetPort": target, "protocol": "TCP"}]}
    }))
}

/// An EndpointSlice of `service` with `addresses` on `port`.
pub fn slice(ns: &str, name: &str, service: &str, addresses: &[&str], port: u16) -> EndpointSlice {
    let endpoints: Vec<Value> = addresses
        .iter()
        .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    parse(json!({
        "metadata": {"name": name, "namespace": ns,
            "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"port": port, "protocol": "TCP"}]
    }))
}

/// A node with an InternalIP.
pub fn node(name: &str, internal_ip: &str) -> Node {
    parse(json!({
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": internal_ip},
            {"type": "Hostname", "address": name}]}
    }))
}
