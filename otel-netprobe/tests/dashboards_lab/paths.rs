//! The two paths the dashboards lab checks: how each Prometheus is configured (the Collector's
//! exporter scraped with `honor_labels`, or the agent's /metrics labelled as the chart's
//! ServiceMonitor labels it), and the name the chart's agent config gives its Collector,
//! resolved in the node namespace.

use crate::{CLUSTER, NODE, common::Netns, repo};

/// Which way the series reach Prometheus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Agent → Collector (scrape mode) → Prometheus: the default install.
    Collector,
    /// Prometheus scrapes the agent's /metrics (`collector.enabled=false`).
    Direct,
}

pub fn prometheus_config(path: Path, target: u16) -> String {
    let rules = repo::root().join("alerts/netprobe.rules.yaml");
    let job = match path {
        // The chart's ServiceMonitor on the Collector: the agents' job, instance and resource
        // labels as its exporter sets them.
        Path::Collector => format!(
            "otel-collector\n    honor_labels: true\n    static_configs:\n      - targets: ['127.0.0.1:{target}']"
        ),
        // Without a Collector, the labels the ServiceMonitor gives (as the Collector's resource
        // labels would).
        Path::Direct => format!(
            "otel-netprobe\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n        labels: {{k8s_cluster_name: {CLUSTER}, k8s_node_name: {NODE}}}"
        ),
    };
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files: ['{}']\nscrape_configs:\n  - job_name: {job}\n",
        rules.display()
    )
}

/// `/etc/netns/<node>/hosts`, which `ip netns exec` mounts over the agent's `/etc/hosts`: the
/// Collector Service's name (the endpoint the chart renders) resolves to the node's loopback,
/// where the Collector listens, as the cluster's DNS resolves it to the Service. Removed on drop.
pub struct ServiceName {
    dir: std::path::PathBuf,
    /// Whether /etc/netns was made here (then removed again, if empty).
    made_parent: bool,
}

impl ServiceName {
    pub fn new(node: &Netns, endpoint: &str) -> Self {
        let host = endpoint
            .split("://")
            .nth(1)
            .and_then(|h| h.split(':').next())
            .expect("a host in the endpoint");
        let parent = std::path::Path::new("/etc/netns");
        let made_parent = !parent.exists();
        let dir = parent.join(&node.name);
        std::fs::create_dir_all(&dir).expect("/etc/netns/<node>");
        let hosts = format!("127.0.0.1 localhost\n127.0.0.1 {host}\n");
        std::fs::write(dir.join("hosts"), hosts).expect("hosts");
        Self { dir, made_parent }
    }
}

impl Drop for ServiceName {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.made_parent {
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}
