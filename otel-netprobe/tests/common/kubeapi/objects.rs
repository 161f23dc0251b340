//! The lab's cluster objects, made through the real API server as a cluster makes them: what
//! `kubectl apply` would create (Namespaces, Deployments, a StatefulSet, a CronJob, Services,
//! Nodes) and what the controllers and kubelets that this cluster lacks would write (a
//! namespace's `default` ServiceAccount, a Deployment's ReplicaSet and a CronJob's Job with
//! their ownerReferences, EndpointSlices, pods bound to a node and their status with the
//! lab's addresses through the status subresource).

use k8s_openapi::api::{
    apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet},
    batch::v1::{CronJob, Job},
    core::v1::{Namespace, Node, Pod, Service, ServiceAccount},
    discovery::v1::EndpointSlice,
};
use kube::Resource;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::KubeApiServer;

/// A controller, as a pod's (or a ReplicaSet's, a Job's) ownerReference names it.
#[derive(Clone, Debug)]
pub struct Owner {
    /// `apps/v1`, `batch/v1`.
    pub api_version: String,
    /// `ReplicaSet`, `StatefulSet`, `Job`, ...
    pub kind: String,
    /// Its name (same namespace as what it owns).
    pub name: String,
    /// Its uid, as the server assigned it.
    pub uid: String,
}

impl Owner {
    /// The owner reference to `obj` as stored by the server.
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Self {
        Self {
            api_version: K::api_version(&()).into_owned(),
            kind: K::kind(&()).into_owned(),
            name: obj.meta().name.clone().expect("a stored object has a name"),
            uid: obj.meta().uid.clone().expect("a stored object has a uid"),
        }
    }

    fn reference(&self) -> Value {
        json!([{"apiVersion": self.api_version, "kind": self.kind, "name": self.name,
            "uid": self.uid, "controller": true, "blockOwnerDeletion": true}])
    }
}

fn parse<T: DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("a valid object")
}

/// A pod template of one container, labelled `app: {app}`.
fn template(app: &str, restart: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"restartPolicy": restart,
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}]}
    })
}

impl KubeApiServer {
    /// A namespace, and its `default` ServiceAccount (the controller-manager's part; pods are
    /// refused by the ServiceAccount admission plugin without it).
    pub fn namespace(&self, name: &str) -> Namespace {
        let ns = self.apply::<Namespace>(&parse(json!({"metadata": {"name": name}})));
        self.apply::<ServiceAccount>(&parse(
            json!({"metadata": {"name": "default", "namespace": name}}),
        ));
        ns
    }

    /// A node with an InternalIP (a kubelet registers it and reports its addresses).
    pub fn node(&self, name: &str, internal_ip: &str) -> Node {
        self.node_with_addresses(name, &[internal_ip])
    }

    /// A node with several InternalIPs (as a cloud provider reports a node with more than one
    /// private address: `make demo`'s node is reached at its uplink's and at its pod bridge's).
    /// Its status is written with a merge patch, as the kubelet and cloud controllers write it:
    /// server-side apply refuses two entries of one `type` in `status.addresses`, its list key.
    pub fn node_with_addresses(&self, name: &str, internal_ips: &[&str]) -> Node {
        let mut addresses: Vec<Value> = internal_ips
            .iter()
            .map(|ip| json!({"type": "InternalIP", "address": ip}))
            .collect();
        addresses.push(json!({"type": "Hostname", "address": name}));
        self.apply::<Node>(&parse(json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}
        })));
        self.merge_status::<Node>(None, name, &json!({"addresses": addresses}))
    }

    /// A Deployment and the ReplicaSet `{name}-{hash}` it would make: returns the ReplicaSet,
    /// the owner of its pods.
    pub fn deployment(&self, ns: &str, name: &str, hash: &str) -> Owner {
        let d: Deployment = self.apply(&parse(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                "template": template(name, "Always")}
        })));
        let mut t = template(name, "Always");
        t["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let rs: ReplicaSet = self.apply(&parse(json!({
            "metadata": {"name": format!("{name}-{hash}"), "namespace": ns,
                "labels": {"app": name, "pod-template-hash": hash},
                "ownerReferences": Owner::of(&d).reference()},
            "spec": {"replicas": 1,
                "selector": {"matchLabels": {"app": name, "pod-template-hash": hash}},
                "template": t}
        })));
        Owner::of(&rs)
    }

    /// A StatefulSet (the owner of its pods `{name}-0`, ...).
    pub fn statefulset(&self, ns: &str, name: &str) -> Owner {
        let s: StatefulSet = self.apply(&parse(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"serviceName": name, "replicas": 1,
                "selector": {"matchLabels": {"app": name}}, "template": template(name, "Always")}
        })));
        Owner::of(&s)
    }

    /// A DaemonSet (the owner of its pods, one per node).
    pub fn daemonset(&self, ns: &str, name: &str) -> Owner {
        let d: DaemonSet = self.apply(&parse(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"matchLabels": {"app": name}}, "template": template(name, "Always")}
        })));
        Owner::of(&d)
    }

    /// A CronJob and one Job `{name}-{run}` it started: returns the Job, its pod's owner.
    pub fn cronjob(&self, ns: &str, name: &str, run: &str) -> Owner {
        let c: CronJob = self.apply(&parse(json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"schedule": "0 3 * * *",
                "jobTemplate": {"spec": {"template": template(name, "Never")}}}
        })));
        let job: Job = self.apply(&parse(json!({
            "metadata": {"name": format!("{name}-{run}"), "namespace": ns,
                "ownerReferences": Owner::of(&c).reference()},
            "spec": {"template": template(name, "Never")}
        })));
        Owner::of(&job)
    }

    /// A running pod bound to `node`, owned by `owner`, with the lab's `ips` (one per family)
    /// written through the status subresource, as its kubelet would.
    pub fn pod(
        &self,
        ns: &str,
        name: &str,
        owner: Option<&Owner>,
        node: &str,
        ips: &[&str],
    ) -> Pod {
        self.pod_with(ns, name, owner, node, ips, None)
    }

    /// A hostNetwork pod (of a DaemonSet, say) on `node`, whose address is the node's, serving
    /// on `port`.
    pub fn host_pod(
        &self,
        ns: &str,
        name: &str,
        owner: Option<&Owner>,
        node: &str,
        node_ip: &str,
        port: u16,
    ) -> Pod {
        self.pod_with(ns, name, owner, node, &[node_ip], Some((node_ip, port)))
    }

    fn pod_with(
        &self,
        ns: &str,
        name: &str,
        owner: Option<&Owner>,
        node: &str,
        ips: &[&str],
        host: Option<(&str, u16)>,
    ) -> Pod {
        let app = owner.map_or(name, |o| o.name.as_str());
        let restart = if owner.is_some_and(|o| o.kind == "Job") {
            "Never"
        } else {
            "Always"
        };
        let mut meta = json!({"name": name, "namespace": ns, "labels": {"app": app}});
        if let Some(o) = owner {
            meta["ownerReferences"] = o.reference();
        }
        let mut spec = json!({"nodeName": node, "restartPolicy": restart,
            "containers": [{"name": "app", "image": "registry.invalid/app:1"}]});
        if let Some((_, port)) = host {
            spec["hostNetwork"] = json!(true);
            spec["containers"][0]["ports"] = json!([{"containerPort": port, "hostPort": port}]);
        }
        let mut pod: Pod = self.apply(&parse(json!({"metadata": meta, "spec": spec})));
        let mut status = json!({
            "phase": "Running",
            "podIP": ips.first(),
            "podIPs": ips.iter().map(|ip| json!({"ip": ip})).collect::<Vec<_>>(),
            "conditions": [{"type": "Ready", "status": "True"}]
        });
        if let Some((node_ip, _)) = host {
            status["hostIP"] = json!(node_ip);
            status["hostIPs"] = json!([{"ip": node_ip}]);
        }
        pod.status = Some(parse(status));
        self.apply_status(&pod)
    }

    /// Marks a pod finished (`Succeeded`), as its kubelet would when its containers exit: the
    /// rest of its status (its IPs) stays.
    pub fn finish_pod(&self, ns: &str, name: &str) -> Pod {
        self.merge_status::<Pod>(Some(ns), name, &json!({"phase": "Succeeded"}))
    }

    /// A Service selecting `app: {name}` on `port` → `target`, with `cluster_ip` (one of
    /// [`super::SERVICE_CIDR`]) or, with `None`, the one the server allocates.
    pub fn service(
        &self,
        ns: &str,
        name: &str,
        cluster_ip: Option<&str>,
        port: u16,
        target: u16,
    ) -> Service {
        let mut spec = json!({"selector": {"app": name},
            "ports": [{"name": "main", "port": port, "targetPort": target, "protocol": "TCP"}]});
        if let Some(ip) = cluster_ip {
            spec["clusterIP"] = json!(ip);
        }
        self.apply(&parse(
            json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
        ))
    }

    /// The EndpointSlice `name` of `service` with `addresses` (ready) on `port` (what the
    /// EndpointSlice controller writes).
    pub fn endpoint_slice(
        &self,
        ns: &str,
        name: &str,
        service: &str,
        addresses: &[&str],
        port: u16,
    ) -> EndpointSlice {
        let family = if addresses.iter().any(|a| a.contains(':')) {
            "IPv6"
        } else {
            "IPv4"
        };
        let endpoints: Vec<Value> = addresses
            .iter()
            .map(|a| json!({"addresses": [a], "conditions": {"ready": true}}))
            .collect();
        self.apply(&parse(json!({
            "metadata": {"name": name, "namespace": ns, "labels": {
                "kubernetes.io/service-name": service,
                "endpointslice.kubernetes.io/managed-by": "netprobe-test"}},
            "addressType": family,
            "endpoints": endpoints,
            "ports": [{"name": "main", "port": port, "protocol": "TCP"}]
        })))
    }
}
