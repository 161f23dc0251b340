//! Trimming: Kubernetes objects as the API serves them → the few fields the index keeps.
//!
//! Everything else (managed fields, annotations, labels, most of the spec and status) is
//! dropped with the object as soon as the watcher has handed it over. ReplicaSets and Jobs
//! arrive as metadata only (`PartialObjectMeta`): their name and owner references are all the
//! index reads of them.

use std::{net::IpAddr, sync::Arc};

use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        batch::v1::Job,
        core::v1::{Node, Pod as KPod, Service as KService},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::core::PartialObjectMeta;

use super::index::{Controlled, OwnerRef, Pod, Record, Service, Slice};

/// The label that ties an EndpointSlice to its service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// An object the index is built from.
pub trait Trim {
    /// Its UID (empty if the server sent none).
    fn uid(&self) -> &str;
    /// The trimmed record; `None` for objects the index has no use for.
    fn trim(&self) -> Option<Record>;
}

fn uid(m: &ObjectMeta) -> &str {
    m.uid.as_deref().unwrap_or_default()
}

fn text(s: Option<&String>) -> Arc<str> {
    Arc::from(s.map_or("", String::as_str))
}

/// The controller among the owner references (or the first one, if none says it is).
fn controller(refs: Option<&Vec<OwnerReference>>) -> Option<OwnerRef> {
    let refs = refs?;
    let r = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())?;
    Some(OwnerRef {
        kind: Arc::from(r.kind.as_str()),
        name: Arc::from(r.name.as_str()),
    })
}

/// Parses addresses, leaving out what is not one (`None`, empty, garbage).
fn ips<'a>(list: impl IntoIterator<Item = &'a str>) -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = list.into_iter().filter_map(|s| s.parse().ok()).collect();
    v.dedup();
    v
}

/// The ports a hostNetwork pod's containers declare (container and host port are the same).
fn host_ports(spec: Option<&k8s_openapi::api::core::v1::PodSpec>) -> Vec<u16> {
    let mut v: Vec<u16> = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| port(p.host_port.unwrap_or(p.container_port)))
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

fn port(p: i32) -> Option<u16> {
    u16::try_from(p).ok().filter(|p| *p != 0)
}

impl Trim for KPod {
    fn uid(&self) -> &str {
        uid(&self.metadata)
    }

    fn trim(&self) -> Option<Record> {
        let (spec, status) = (self.spec.as_ref(), self.status.as_ref());
        let name = text(self.metadata.name.as_ref());
        let owner = controller(self.metadata.owner_references.as_ref());
        let mut addrs = ips(status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .map(|p| p.ip.as_str()));
        if addrs.is_empty() {
            addrs = ips(status.and_then(|s| s.pod_ip.as_deref()));
        }
        let phase = status.and_then(|s| s.phase.as_deref()).unwrap_or_default();
        let host_network = spec.and_then(|s| s.host_network).unwrap_or(false);
        Some(Record::Pod {
            pod: Pod {
                namespace: text(self.metadata.namespace.as_ref()),
                workload: owner.clone().unwrap_or_else(|| OwnerRef {
                    kind: Arc::from("Pod"),
                    name: Arc::clone(&name),
                }),
                name,
                node: text(spec.and_then(|s| s.node_name.as_ref())),
                owner,
                ips: addrs,
                host_ports: if host_network {
                    host_ports(spec)
                } else {
                    Vec::new()
                },
                host_network,
            },
            terminal: matches!(phase, "Succeeded" | "Failed"),
        })
    }
}

impl Trim for KService {
    fn uid(&self) -> &str {
        uid(&self.metadata)
    }

    fn trim(&self) -> Option<Record> {
        let spec = self.spec.as_ref();
        let mut cluster_ips = ips(spec
            .and_then(|s| s.cluster_ips.as_ref())
            .into_iter()
            .flatten()
            .map(String::as_str));
        if cluster_ips.is_empty() {
            // Older servers fill only clusterIP; "None" (headless) does not parse.
            cluster_ips = ips(spec.and_then(|s| s.cluster_ip.as_deref()));
        }
        let ports = spec
            .and_then(|s| s.ports.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|p| port(p.port))
            .collect();
        Some(Record::Service(Service {
            namespace: text(self.metadata.namespace.as_ref()),
            name: text(self.metadata.name.as_ref()),
            cluster_ips,
            ports,
        }))
    }
}

impl Trim for EndpointSlice {
    fn uid(&self) -> &str {
        uid(&self.metadata)
    }

    /// Every endpoint counts, ready or not: a terminating pod still serves its last requests.
    fn trim(&self) -> Option<Record> {
        let service = self.metadata.labels.as_ref()?.get(SERVICE_NAME_LABEL)?;
        Some(Record::Slice(Slice {
            namespace: text(self.metadata.namespace.as_ref()),
            service: Arc::from(service.as_str()),
            addresses: ips(self
                .endpoints
                .iter()
                .flat_map(|e| e.addresses.iter().map(String::as_str))),
            ports: self
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.port.and_then(port))
                .collect(),
        }))
    }
}

impl Trim for Node {
    fn uid(&self) -> &str {
        uid(&self.metadata)
    }

    fn trim(&self) -> Option<Record> {
        let addrs = ips(self
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .map(|a| a.address.as_str()));
        Some(Record::Node(text(self.metadata.name.as_ref()), addrs))
    }
}

fn controlled(m: &ObjectMeta) -> Controlled {
    Controlled {
        namespace: text(m.namespace.as_ref()),
        name: text(m.name.as_ref()),
        owner: controller(m.owner_references.as_ref()),
    }
}

impl Trim for PartialObjectMeta<ReplicaSet> {
    fn uid(&self) -> &str {
        uid(&self.metadata)
    }

    fn trim(&self) -> Option<Record> {
        Some(Record::ReplicaSet(controlled(&self.metadata)))
    }
}

impl Trim for PartialObjectMeta<Job> {
    fn uid(&self) -> &str {
        uid(&self.metadata)
    }

    fn trim(&self) -> Option<Record> {
        Some(Record::Job(controlled(&self.metadata)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pods_keep_ips_owner_node_and_phase() {
        let p: KPod = from_json(serde_json::json!({
            "metadata": {"name": "web-1", "namespace": "shop", "uid": "u1",
                "annotations": {"big": "x"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "x"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d", "uid": "r", "controller": true}
                ]},
            "spec": {"nodeName": "node-1", "containers": []},
            "status": {"phase": "Running", "podIP": "10.244.0.11",
                "podIPs": [{"ip": "10.244.0.11"}, {"ip": "fd00::11"}]}
        }));
        assert_eq!(p.uid(), "u1");
        let Some(Record::Pod { pod, terminal }) = p.trim() else {
            panic!("a pod")
        };
        assert!(!terminal);
        assert_eq!(&*pod.node, "node-1");
        assert_eq!(pod.owner.as_ref().map(|o| &*o.kind), Some("ReplicaSet"));
        assert_eq!(pod.ips, vec![ips(["10.244.0.11"])[0], ips(["fd00::11"])[0]]);
        assert!(!pod.host_network);
        let done: KPod = from_json(serde_json::json!({
            "metadata": {"name": "j", "namespace": "shop", "uid": "u2"},
            "spec": {"hostNetwork": true, "containers": [{"name": "a", "ports": [
                {"containerPort": 9100}, {"containerPort": 9101, "hostPort": 9101}]}]},
            "status": {"phase": "Succeeded"}
        }));
        let Some(Record::Pod { pod, terminal }) = done.trim() else {
            panic!("a pod")
        };
        assert!(terminal && pod.host_network && pod.ips.is_empty());
        assert_eq!(pod.host_ports, vec![9100, 9101]);
        assert_eq!(&*pod.workload.kind, "Pod");
    }

    #[test]
    fn services_slices_and_nodes() {
        let headless: KService = from_json(serde_json::json!({
            "metadata": {"name": "db", "namespace": "shop", "uid": "s"},
            "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}]}
        }));
        let Some(Record::Service(s)) = headless.trim() else {
            panic!()
        };
        assert!(s.cluster_ips.is_empty());
        assert_eq!(s.ports, vec![5432]);
        let slice: EndpointSlice = from_json(serde_json::json!({
            "metadata": {"name": "pay-abc", "namespace": "shop", "uid": "e",
                "labels": {"kubernetes.io/service-name": "payments"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.12"], "conditions": {"ready": false}},
                          {"addresses": ["10.244.0.13"]}],
            "ports": [{"port": 8443, "protocol": "TCP"}]
        }));
        let Some(Record::Slice(s)) = slice.trim() else {
            panic!()
        };
        assert_eq!(
            (&*s.service, s.addresses.len(), s.ports.clone()),
            ("payments", 2, vec![8443])
        );
        let node: Node = from_json(serde_json::json!({
            "metadata": {"name": "node-1", "uid": "n"},
            "status": {"addresses": [{"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "192.0.2.10"},
                {"type": "ExternalIP", "address": "198.51.100.7"}]}
        }));
        let Some(Record::Node(name, addrs)) = node.trim() else {
            panic!()
        };
        assert_eq!((&*name, addrs.len()), ("node-1", 2));
    }

    /// ReplicaSets and Jobs come as the API server's `PartialObjectMetadata` (what a metadata
    /// watch receives): the name and the controller are all they give the index.
    #[test]
    fn replicasets_and_jobs_from_metadata_only() {
        let rs: PartialObjectMeta<ReplicaSet> = from_json(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "web-7d9f", "namespace": "shop", "uid": "r1",
                "labels": {"pod-template-hash": "7d9f"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                    "name": "web", "uid": "d1", "controller": true}]}
        }));
        assert_eq!(rs.uid(), "r1");
        let Some(Record::ReplicaSet(c)) = rs.trim() else {
            panic!("a ReplicaSet")
        };
        assert_eq!((&*c.namespace, &*c.name), ("shop", "web-7d9f"));
        let owner = c.owner.expect("its Deployment");
        assert_eq!((&*owner.kind, &*owner.name), ("Deployment", "web"));
        let job: PartialObjectMeta<Job> = from_json(serde_json::json!({
            "apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
            "metadata": {"name": "backup-29", "namespace": "ops", "uid": "j1"}
        }));
        let Some(Record::Job(c)) = job.trim() else {
            panic!("a Job")
        };
        assert_eq!((&*c.name, c.owner), ("backup-29", None));
    }
}
