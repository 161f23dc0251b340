//! The demo's lab as `demo-cluster` reads it (YAML, every key checked before anything starts)
//! and makes it real API objects through the harness's builders.
//!
//! ```yaml
//! nodes:
//!   - {name: demo-node, addresses: [10.99.0.1, 10.244.0.1]}
//! deployments:
//!   - namespace: shop
//!     name: web
//!     hash: 5d8b                 # its ReplicaSet is web-5d8b
//!     pods: [{name: web-5d8b-q8w4r, node: demo-node, ips: [10.244.0.12, "fd00:244::12"]}]
//! statefulsets:
//!   - {namespace: data, name: db, pods: [{name: db-0, node: demo-node, ips: [10.244.0.13]}]}
//! services:
//!   - {namespace: shop, name: web, cluster_ip: 10.96.0.10, port: 80, target_port: 8080,
//!      endpoints: [10.244.0.12]}
//! ```

use std::{collections::BTreeSet, net::IpAddr, path::Path};

use anyhow::{Context as _, bail};
use serde::Deserialize;

use crate::common::kubeapi::{KubeApiServer, objects::Owner};

/// The lab: what `demo-cluster` makes in the API server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lab {
    /// The cluster's nodes.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Deployments, each with its ReplicaSet and that ReplicaSet's pods.
    #[serde(default)]
    pub deployments: Vec<DeploymentSpec>,
    /// StatefulSets and their pods.
    #[serde(default)]
    pub statefulsets: Vec<StatefulSetSpec>,
    /// ClusterIP Services and their endpoints.
    #[serde(default)]
    pub services: Vec<ServiceSpec>,
}

/// A node and the InternalIPs its kubelet reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node's name.
    pub name: String,
    /// Its InternalIPs.
    pub addresses: Vec<IpAddr>,
}

/// A Deployment: its ReplicaSet is `{name}-{hash}`, the owner of `pods`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Its namespace (made if new).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The pod-template hash that names its ReplicaSet.
    pub hash: String,
    /// The ReplicaSet's pods.
    pub pods: Vec<PodSpec>,
}

/// A StatefulSet, the owner of `pods`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatefulSetSpec {
    /// Its namespace (made if new).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its pods (`{name}-0`, ...).
    pub pods: Vec<PodSpec>,
}

/// A running pod.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodSpec {
    /// Its name.
    pub name: String,
    /// The node it is bound to (one of `nodes`).
    pub node: String,
    /// Its addresses, at most one per family (`status.podIPs`).
    pub ips: Vec<IpAddr>,
}

/// A ClusterIP Service selecting `app: {name}`, and one EndpointSlice.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Its namespace (made if new).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its ClusterIP, inside the API server's service range (10.96.0.0/16).
    pub cluster_ip: IpAddr,
    /// The Service's port.
    pub port: u16,
    /// The port of its endpoints.
    pub target_port: u16,
    /// The addresses of its ready endpoints (its EndpointSlice `{name}-lab`).
    pub endpoints: Vec<IpAddr>,
}

impl Lab {
    /// Reads and checks `path`; errors name the file, the key and the reason.
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let de = serde_norway::Deserializer::from_str(&text);
        let lab: Self = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let full = e.into_inner().to_string();
            // serde_norway starts with the parent's path, which the key already says (as the
            // agent's own config errors do).
            let reason = match full.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') && key.starts_with(prefix) => {
                    rest.to_owned()
                }
                _ => full,
            };
            anyhow::anyhow!("{}: key `{key}`: {reason}", path.display())
        })?;
        lab.check()
            .with_context(|| format!("{}: not a lab the demo can make", path.display()))?;
        Ok(lab)
    }

    fn check(&self) -> anyhow::Result<()> {
        let nodes: BTreeSet<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let pods = self
            .deployments
            .iter()
            .map(|d| ("deployments", &d.name, &d.pods))
            .chain(
                self.statefulsets
                    .iter()
                    .map(|s| ("statefulsets", &s.name, &s.pods)),
            );
        for (key, owner, pods) in pods {
            for p in pods {
                if !nodes.contains(p.node.as_str()) {
                    bail!(
                        "{key} {owner}: pod {} is on node `{}`, which `nodes` does not list",
                        p.name,
                        p.node
                    );
                }
                let v4 = p.ips.iter().filter(|ip| ip.is_ipv4()).count();
                if p.ips.is_empty() || v4 > 1 || p.ips.len() - v4 > 1 {
                    bail!(
                        "{key} {owner}: pod {}: `ips` takes one or two addresses, at most one per family",
                        p.name
                    );
                }
            }
        }
        for s in &self.services {
            let families: BTreeSet<bool> = s.endpoints.iter().map(IpAddr::is_ipv4).collect();
            if families.len() != 1 {
                bail!(
                    "services {}: `endpoints` takes one or more addresses of one family (one EndpointSlice)",
                    s.name
                );
            }
        }
        Ok(())
    }

    /// The namespaces the lab's objects live in, in the order they first appear.
    fn namespaces(&self) -> Vec<&str> {
        let mut seen = Vec::new();
        let all = self
            .deployments
            .iter()
            .map(|d| d.namespace.as_str())
            .chain(self.statefulsets.iter().map(|s| s.namespace.as_str()))
            .chain(self.services.iter().map(|s| s.namespace.as_str()));
        for ns in all {
            if !seen.contains(&ns) {
                seen.push(ns);
            }
        }
        seen
    }

    /// Makes every object in `api` (panics, naming the object and the server's refusal, if
    /// one is refused); returns how many objects were made.
    pub fn apply(&self, api: &KubeApiServer) -> usize {
        let mut made = 0;
        for ns in self.namespaces() {
            api.namespace(ns);
            made += 2; // the Namespace and its default ServiceAccount
        }
        for n in &self.nodes {
            let addresses: Vec<String> = n.addresses.iter().map(IpAddr::to_string).collect();
            let addresses: Vec<&str> = addresses.iter().map(String::as_str).collect();
            api.node_with_addresses(&n.name, &addresses);
            made += 1;
        }
        let pods = |ns: &str, owner: &Owner, pods: &[PodSpec]| {
            for p in pods {
                let ips: Vec<String> = p.ips.iter().map(IpAddr::to_string).collect();
                let ips: Vec<&str> = ips.iter().map(String::as_str).collect();
                api.pod(ns, &p.name, Some(owner), &p.node, &ips);
            }
            pods.len()
        };
        for d in &self.deployments {
            let rs = api.deployment(&d.namespace, &d.name, &d.hash);
            made += 2 + pods(&d.namespace, &rs, &d.pods);
        }
        for s in &self.statefulsets {
            let owner = api.statefulset(&s.namespace, &s.name);
            made += 1 + pods(&s.namespace, &owner, &s.pods);
        }
        for s in &self.services {
            let ip = s.cluster_ip.to_string();
            api.service(&s.namespace, &s.name, Some(&ip), s.port, s.target_port);
            let endpoints: Vec<String> = s.endpoints.iter().map(IpAddr::to_string).collect();
            let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
            let slice = format!("{}-lab", s.name);
            api.endpoint_slice(&s.namespace, &slice, &s.name, &endpoints, s.target_port);
            made += 2;
        }
        made
    }
}
