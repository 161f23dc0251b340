//! The chart's Collector topologies, rendered with the Helm v4 SDK, validated against the
//! Kubernetes schemas and linted (README, "Sizing the Collector", for why `node` is the
//! default):
//!
//! - `collector.topology=node` (default): a DaemonSet on exactly the agents' nodes (their
//!   nodeSelector, tolerations, affinity and priority class), never two on a node during a
//!   rollout (`maxSurge: 0`), behind a Service with `internalTrafficPolicy: Local` that the
//!   agents export to; the ServiceMonitor scrapes every node's Collector;
//! - `gateway`: one Deployment behind a ClusterIP, `replicas` as given;
//! - `replicas > 1` in a scrape-mode gateway is refused with the reason (the same series served
//!   twice), and allowed with remote write, where each point is written once.

mod common;
#[path = "common/repo.rs"]
mod repo;

use repo::{Rendered, render, rendered};
use serde_json::{Value, json};

const AGENT: &str = "np-otel-netprobe";
const COLLECTOR: &str = "np-otel-netprobe-collector";
const REMOTE: &str = "http://prometheus.monitoring:9090/api/v1/write";

/// The agents' OTLP endpoint, from their rendered configuration file.
fn agent_endpoint(r: &Rendered) -> String {
    let text = r.get("ConfigMap", AGENT)["data"]["config.yaml"]
        .as_str()
        .expect("the agent's config.yaml");
    let config: Value = serde_norway::from_str(text).expect("agent config YAML");
    config["otlp"]["endpoint"]
        .as_str()
        .expect("otlp.endpoint")
        .to_owned()
}

#[test]
fn node_topology_is_the_default_one_collector_on_every_agents_node() {
    let values = json!({
        "serviceMonitor": {"enabled": true},
        "agent": {"nodeSelector": {"pool": "general"},
                  "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
                  "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                      {"nodeSelectorTerms": [{"matchExpressions":
                          [{"key": "arch", "operator": "In", "values": ["amd64"]}]}]}}}},
        // The gateway's own placement is not used by the node topology.
        "collector": {"nodeSelector": {"pool": "infra"}, "tolerations": []}
    });
    let r = rendered(&values);
    assert!(
        r.all("Deployment").is_empty(),
        "no Deployment: {:?}",
        r.names()
    );
    let ds = r.get("DaemonSet", COLLECTOR);
    let agent = r.get("DaemonSet", AGENT);
    let (pod, agent_pod) = (
        &ds["spec"]["template"]["spec"],
        &agent["spec"]["template"]["spec"],
    );
    for key in [
        "nodeSelector",
        "tolerations",
        "affinity",
        "priorityClassName",
    ] {
        assert_eq!(pod[key], agent_pod[key], "{key}: the agents' nodes exactly");
    }
    // Helm merges the given map into the default one.
    assert_eq!(
        pod["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "pool": "general"})
    );
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    // Never two Collectors of a node scraped at once during a rollout.
    assert_eq!(
        ds["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
    );
    assert!(ds["spec"].get("replicas").is_none());
    // The agents send to the Service, which keeps a node's traffic on that node.
    let svc = r.get("Service", COLLECTOR);
    assert_eq!(svc["spec"]["internalTrafficPolicy"], "Local");
    assert_eq!(
        agent_endpoint(&r),
        format!("http://{COLLECTOR}.netprobe.svc:4317")
    );
    // The ServiceMonitor selects the Collector pods (every node's) through that Service's
    // endpoints: the exporter with honorLabels, and the Collector's own metrics.
    let sm = r.get("ServiceMonitor", COLLECTOR);
    let selector = &sm["spec"]["selector"]["matchLabels"];
    let pod_labels = &ds["spec"]["template"]["metadata"]["labels"];
    for (k, v) in selector.as_object().expect("matchLabels") {
        assert_eq!(&pod_labels[k], v, "{k}");
        assert_eq!(&svc["spec"]["selector"][k], v, "{k}");
        assert_eq!(&svc["metadata"]["labels"][k], v, "{k}");
    }
    let endpoints = sm["spec"]["endpoints"].as_array().expect("endpoints");
    assert_eq!(endpoints[0]["port"], "prom-exporter");
    assert_eq!(endpoints[0]["honorLabels"], true);
    assert_eq!(endpoints[1]["port"], "metrics");
    println!(
        "node topology: DaemonSet on the agents' nodes, Service internalTrafficPolicy Local, agents -> {}",
        agent_endpoint(&r)
    );
}

#[test]
fn gateway_topology_is_one_deployment_behind_a_cluster_ip() {
    let r = rendered(&json!({"collector": {"topology": "gateway",
        "tolerations": [{"key": "infra", "operator": "Exists"}]}}));
    assert!(
        r.all("DaemonSet")
            .iter()
            .all(|d| d["metadata"]["name"] == AGENT),
        "{:?}",
        r.names()
    );
    let d = r.get("Deployment", COLLECTOR);
    assert_eq!(d["spec"]["replicas"], 1);
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(
        pod["tolerations"],
        json!([{"key": "infra", "operator": "Exists"}])
    );
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/os": "linux"}));
    assert!(pod.get("priorityClassName").is_none());
    let svc = r.get("Service", COLLECTOR);
    assert!(svc["spec"].get("internalTrafficPolicy").is_none());
    assert_eq!(
        agent_endpoint(&r),
        format!("http://{COLLECTOR}.netprobe.svc:4317")
    );
}

#[test]
fn replicas_over_one_never_serve_a_series_twice() {
    // Scrape mode behind one ClusterIP: refused, saying why and what to do instead.
    for replicas in [2, 3] {
        let values = json!({"collector": {"topology": "gateway", "replicas": replicas}});
        let err = render(&values)
            .err()
            .unwrap_or_else(|| panic!("{values} accepted"));
        for part in [
            &format!("collector.replicas={replicas}"),
            "collector.topology=gateway",
            "collector.mode=scrape",
            "serve series twice",
            "metric_expiration",
            "collector.topology=node",
            "collector.mode=remoteWrite",
        ] {
            assert!(err.contains(part), "{values}: {part:?} not in {err}");
        }
    }
    // Remote write: each replica writes the points it received, once.
    let r = rendered(&json!({"collector": {"topology": "gateway", "replicas": 3,
        "mode": "remoteWrite", "remoteWrite": {"url": REMOTE}}}));
    assert_eq!(r.get("Deployment", COLLECTOR)["spec"]["replicas"], 3);
    // One replica in scrape mode is the gateway's default and fine.
    let r = rendered(&json!({"collector": {"topology": "gateway", "replicas": 1}}));
    assert_eq!(r.get("Deployment", COLLECTOR)["spec"]["replicas"], 1);
    // The node topology has one Collector per node: replicas is not used.
    let r = rendered(&json!({"collector": {"replicas": 2}}));
    assert!(
        r.get("DaemonSet", COLLECTOR)["spec"]
            .get("replicas")
            .is_none()
    );
}

#[test]
fn an_unknown_topology_is_refused_naming_the_key() {
    let err = render(&json!({"collector": {"topology": "sharded"}}))
        .err()
        .expect("topology=sharded accepted");
    assert!(
        err.contains("topology") && err.contains("node") && err.contains("gateway"),
        "{err}"
    );
}
