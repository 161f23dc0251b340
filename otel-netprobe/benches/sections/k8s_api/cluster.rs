//! The cluster the API-load bench fills and churns: 1,000 Deployments of ten pods, each with
//! its ReplicaSet, a Service and an EndpointSlice; then bare pods created, given their status
//! and deleted at a steady rate. Written as the controllers and kubelets would (the admin
//! client, through the API).

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{CHURN, CHURN_PER_SECOND, NAMESPACES, NODES, PER_DEPLOYMENT, PODS};

/// Requests in flight while the cluster is filled.
const FILL_CONCURRENCY: usize = 16;

fn parse<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("object")
}

/// A pod as a Deployment's template makes it (`rs`: its ReplicaSet's name and uid; `None`, a
/// bare pod): one container with ports, resources, a probe and a few variables (the server
/// adds managedFields), bound to a node.
fn pod_object(ns: &str, name: &str, rs: Option<&(String, String)>, node: u32) -> Pod {
    let app = rs.map_or(name, |rs| {
        rs.0.rsplit_once('-').map_or(rs.0.as_str(), |(a, _)| a)
    });
    let mut meta = json!({"name": name, "namespace": ns,
        "labels": {"app": app, "pod-template-hash": "7d9f8c6b5"}});
    if let Some(rs) = rs {
        meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "name": rs.0, "uid": rs.1, "controller": true, "blockOwnerDeletion": true}]);
    }
    parse(json!({
        "metadata": meta,
        "spec": {"nodeName": format!("node-{node}"), "containers": [{
            "name": "app", "image": format!("registry.example/{app}:1.4.2"),
            "ports": [{"name": "http", "containerPort": 8080}],
            "env": [{"name": "MODE", "value": "production"}, {"name": "LOG", "value": "info"},
                {"name": "POOL", "value": "16"}],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]}
    }))
}

fn pod_status(ip: u32) -> Value {
    let ip = std::net::Ipv4Addr::from(0x0af4_0000 + ip).to_string();
    json!({"status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// Creates a pod and writes its status (what the scheduler's binding and the kubelet do).
async fn make_pod(c: Client, ns: String, name: String, rs: Option<(String, String)>, n: u32) {
    let api: Api<Pod> = Api::namespaced(c, &ns);
    api.create(
        &PostParams::default(),
        &pod_object(&ns, &name, rs.as_ref(), n % NODES),
    )
    .await
    .expect("pod");
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(pod_status(n)))
        .await
        .expect("pod status");
}

/// 1,000 Deployments with their ReplicaSet, ten pods each, a Service and an EndpointSlice.
pub async fn fill(c: Client) {
    let deployments = PODS / PER_DEPLOYMENT;
    futures::stream::iter(0..deployments)
        .for_each_concurrent(FILL_CONCURRENCY, |d| {
            let c = c.clone();
            async move {
                let ns = format!("ns-{}", d % NAMESPACES);
                let app = format!("app-{d}");
                let template = json!({"metadata": {"labels": {"app": app}}, "spec": {"containers":
                    [{"name": "app", "image": format!("registry.example/{app}:1.4.2")}]}});
                let dep: Deployment = Api::namespaced(c.clone(), &ns)
                    .create(
                        &PostParams::default(),
                        &parse(json!({
                        "metadata": {"name": app, "namespace": ns},
                        "spec": {"replicas": PER_DEPLOYMENT,
                            "selector": {"matchLabels": {"app": app}}, "template": template}})),
                    )
                    .await
                    .expect("deployment");
                let rs_name = format!("{app}-7d9f8c6b5");
                let mut rs_template = template.clone();
                rs_template["metadata"]["labels"]["pod-template-hash"] = json!("7d9f8c6b5");
                let rs: ReplicaSet = Api::namespaced(c.clone(), &ns)
                    .create(
                        &PostParams::default(),
                        &parse(json!({
                        "metadata": {"name": rs_name, "namespace": ns,
                            "labels": {"app": app, "pod-template-hash": "7d9f8c6b5"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                "name": app, "uid": dep.metadata.uid, "controller": true}]},
                        "spec": {"replicas": PER_DEPLOYMENT, "selector": {"matchLabels":
                            {"app": app, "pod-template-hash": "7d9f8c6b5"}},
                            "template": rs_template}})),
                    )
                    .await
                    .expect("replicaset");
                let owner = (rs_name.clone(), rs.metadata.uid.unwrap_or_default());
                for p in 0..PER_DEPLOYMENT {
                    let n = d * PER_DEPLOYMENT + p;
                    let name = format!("{rs_name}-{n:05x}");
                    make_pod(c.clone(), ns.clone(), name, Some(owner.clone()), n).await;
                }
                Api::<Service>::namespaced(c.clone(), &ns)
                    .create(
                        &PostParams::default(),
                        &parse(json!({
                        "metadata": {"name": app, "namespace": ns},
                        "spec": {"selector": {"app": app}, "ports": [{"name": "http",
                            "port": 80, "targetPort": 8080, "protocol": "TCP"}]}})),
                    )
                    .await
                    .expect("service");
                let endpoints: Vec<Value> = (0..PER_DEPLOYMENT)
                    .map(|p| {
                        let ip = std::net::Ipv4Addr::from(0x0af4_0000 + d * PER_DEPLOYMENT + p);
                        json!({"addresses": [ip.to_string()], "conditions": {"ready": true}})
                    })
                    .collect();
                Api::<EndpointSlice>::namespaced(c, &ns)
                    .create(
                        &PostParams::default(),
                        &parse(json!({
                        "metadata": {"name": format!("{app}-x1"), "namespace": ns, "labels": {
                            "kubernetes.io/service-name": app}},
                        "addressType": "IPv4", "endpoints": endpoints,
                        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})),
                    )
                    .await
                    .expect("endpointslice");
            }
        })
        .await;
}

/// Bare pods created at [`CHURN_PER_SECOND`] for [`CHURN`], each given its status and deleted
/// two seconds later; returns the pods churned.
pub async fn churn(c: Client, round: u32) -> u32 {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / CHURN_PER_SECOND);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut n = 0;
    while start.elapsed() < CHURN {
        tick.tick().await;
        let c = c.clone();
        let (ns, name) = (
            format!("ns-{}", n % NAMESPACES),
            format!("churn-{round}-{n}"),
        );
        tasks.spawn(async move {
            make_pod(c.clone(), ns.clone(), name.clone(), None, PODS + n).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            Api::<Pod>::namespaced(c, &ns)
                .delete(&name, &DeleteParams::default().grace_period(0))
                .await
                .expect("delete");
        });
        n += 1;
    }
    while tasks.join_next().await.is_some() {}
    n
}
