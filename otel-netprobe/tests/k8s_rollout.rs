//! A rollout or an uninstall? The agent binary in cluster mode, pinned in a private bpffs, with
//! the chart's own identity against the real kube-apiserver: the chart is installed (Helm SDK),
//! the agent's Pod is a real API object owned by the release's DaemonSet, and the agent gets
//! `POD_NAME` / `POD_NAMESPACE` as the chart's downward API gives them. At SIGTERM it reads its
//! pod and that DaemonSet (`pinning.on_sigterm: auto`):
//! - the DaemonSet stays (a rollout): everything stays attached and pinned, the kernel counts
//!   while no agent runs, the next agent adopts it and the flow's total continues exactly;
//! - `helm uninstall` (background propagation: the DaemonSet is gone before the pods are
//!   stopped), a DaemonSet held by a finalizer while being deleted, or one deleted and made
//!   again (another uid): nothing attached, nothing pinned;
//! - the API server does not answer (stopped with SIGSTOP: connections hang): after the 2 s
//!   deadline the agent keeps the state, says so, and `otel-netprobe cleanup` removes it.
//!
//! No controller runs: the pod is posted by the test, as the DaemonSet controller would. The
//! API server listens on the lab node's loopback, where the agent runs; one server per test.

mod common;

use std::{
    path::PathBuf,
    process::ExitStatus,
    time::{Duration, Instant},
};

use common::{
    NodeLab,
    addr::{NODE_UPLINK, PODS},
    binary::{self, Agent},
    kubeapi::{Credentials, KubeApiServer, helm::Release, objects::Owner},
    pinned::{Bpffs, VIRTUAL, attached_tc, has_xdp},
    traffic, unique, wait_until,
};
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::{
    Api,
    api::{Patch, PatchParams},
};
use serde_json::json;

/// The release's namespace, and the agent pod's node.
const NS: &str = "netprobe";
const NODE: &str = "node-a";
/// UDP payload of the test traffic: 228 IP bytes a datagram.
const PAYLOAD: usize = 200;
const KEEP: &str =
    "SIGTERM: keeping the programs attached and the state pinned for the next agent: ";
const REMOVE: &str = "SIGTERM: detaching and unpinning everything: ";

/// The lab node with the API server on its loopback, the chart installed, a bpffs and a config.
struct Cluster {
    api: KubeApiServer,
    release: Release,
    bpffs: Bpffs,
    dir: PathBuf,
    config: PathBuf,
    /// Dropped last: the API server and the agents run in its node namespace.
    lab: NodeLab,
}

impl Cluster {
    fn new(tag: &str) -> Self {
        common::require_root();
        let lab = NodeLab::new(tag);
        let api = KubeApiServer::start_in(&lab.node);
        let release = api
            .helm_install("np", NS, &json!({}))
            .expect("helm install");
        // The namespace's `default` ServiceAccount (the controller-manager's part).
        api.namespace(NS);
        api.node(NODE, NODE_UPLINK);
        let bpffs = Bpffs::mount();
        let dir = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let kubeconfig = dir.join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, &Credentials::Token(api.agent_token(&release)));
        let config = dir.join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "flows:\n  poll_interval: 200ms\nhttp:\n  listen: 127.0.0.1:9464\nk8s:\n  mode: cluster\n  \
                 kubeconfig: {}\npinning:\n  path: {}\n",
                kubeconfig.display(),
                bpffs.0.display()
            ),
        )
        .expect("config");
        Self {
            api,
            release,
            bpffs,
            dir,
            config,
            lab,
        }
    }

    /// The release's DaemonSet as the server stores it.
    fn daemonset(&self) -> Owner {
        let name = self.release.agent_name();
        let ds = self
            .api
            .list::<DaemonSet>(Some(NS))
            .into_iter()
            .find(|d| d.metadata.name.as_deref() == Some(name.as_str()))
            .expect("the release's DaemonSet");
        Owner::of(&ds)
    }

    /// The agent's pod `name`, owned by `owner`, as the DaemonSet controller would post it.
    fn agent_pod(&self, name: &str, owner: &Owner) {
        self.api.pod(NS, name, Some(owner), NODE, &[NODE_UPLINK]);
    }

    /// Starts the agent binary as the pod `pod` (XDP on the uplink, TC on the veths) and waits
    /// until it is attached and its index synced.
    fn start(&self, pod: &str) -> Agent {
        let mut cmd = binary::command(&[
            "run",
            "--hook",
            "eth0=xdp",
            "--config",
            &self.config.display().to_string(),
        ]);
        cmd.env_remove("NETPROBE_NO_PINNING")
            .env("K8S_NODE_NAME", NODE)
            .env("POD_NAME", pod)
            .env("POD_NAMESPACE", NS);
        let agent = Agent::start(&self.lab.node, cmd, "127.0.0.1:9464".parse().expect("addr"));
        agent.wait_metrics("attached and synced", |t| {
            t.lines().any(|l| l == "netprobe_agent_k8s_synced 1")
                && t.lines()
                    .any(|l| l == "netprobe_agent_interfaces{hook=\"tc\"} 3")
        });
        agent
    }

    /// `count` datagrams from pod 0 to pod 1's `port`.
    fn send(&self, port: u16, count: usize) {
        traffic::udp(
            &self.lab.pods[0],
            &format!("{}:40160", PODS[0]),
            &self.lab.pods[1],
            &format!("{}:{port}", PODS[1]),
            count,
            PAYLOAD,
        );
    }

    /// Waits until the one series of the flow to `port` shows `packets` and their bytes.
    fn wait_counted(agent: &Agent, port: u16, packets: usize) {
        let value = |t: &str, metric: &str| -> Vec<f64> {
            t.lines()
                .filter(|l| l.starts_with(&format!("{metric}{{")))
                .filter(|l| l.contains(&format!("destination_port=\"{port}\"")))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse().ok())
                .collect()
        };
        agent.wait_metrics(&format!("{packets} packets to {port}"), |t| {
            value(t, "netprobe_flow_packets_total") == [packets as f64]
                && value(t, "netprobe_flow_bytes_total") == [(packets * (PAYLOAD + 28)) as f64]
        });
    }

    /// SIGTERM; the exit status, how long it took, and the line that says what it decided.
    fn terminate(agent: &mut Agent) -> (ExitStatus, Duration, String) {
        let t = Instant::now();
        let status = agent.terminate();
        let took = t.elapsed();
        let log = agent.log();
        let line = log
            .lines()
            .find(|l| l.contains("SIGTERM: "))
            .unwrap_or_else(|| panic!("no decision logged:\n{log}"));
        let decision = line[line.find("SIGTERM: ").expect("found")..].to_owned();
        (status, took, decision)
    }

    /// Everything of ours is still attached (XDP and the pinned links) and pinned.
    fn assert_kept(&self, links: &[(String, u32)], after: &str) {
        assert!(has_xdp(&self.lab.node, "eth0"), "XDP detached by {after}");
        assert_eq!(
            self.bpffs.link_ids(),
            links,
            "the pinned links after {after}"
        );
        assert!(!self.bpffs.netns_dirs().is_empty(), "unpinned by {after}");
    }

    /// Nothing of ours is attached in the node namespace, and nothing is pinned.
    fn assert_gone(&self, after: &str) {
        assert!(!has_xdp(&self.lab.node, "eth0"), "XDP left after {after}");
        for ifname in VIRTUAL {
            let mut left = (Vec::new(), Vec::new());
            let gone = wait_until(Duration::from_secs(10), || {
                left = attached_tc(&self.lab.node, ifname);
                left.0.is_empty() && left.1.is_empty()
            });
            assert!(gone, "{ifname} after {after}: {left:?}");
        }
        let dirs = self.bpffs.netns_dirs();
        assert!(dirs.is_empty(), "left pinned after {after}: {dirs:?}");
    }

    /// `otel-netprobe cleanup` in the node namespace; what it printed.
    fn cleanup(&self) -> String {
        let mut cmd = binary::command(&["cleanup", "--config"]);
        cmd.arg(&self.config);
        let out = binary::run_to_end(&self.lab.node, cmd);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn assert_decision(what: &str, got: &(ExitStatus, Duration, String), want: &str) {
    let (status, took, line) = got;
    println!("{what}: exit {status} after {took:.2?}: {line}");
    assert!(status.success(), "{what}: {status}");
    assert!(line.starts_with(want), "{what}: {line}");
}

#[test]
fn a_rollout_keeps_counting_and_helm_uninstall_leaves_nothing() {
    let c = Cluster::new("rollout");
    let port = 7060;
    let owner = c.daemonset();
    c.agent_pod("np-otel-netprobe-a1b2c", &owner);
    let mut agent = c.start("np-otel-netprobe-a1b2c");
    let links = c.bpffs.link_ids();
    assert!(
        links.iter().any(|(n, _)| n.starts_with("xdp-")),
        "no pinned XDP link: {links:?}"
    );
    c.send(port, 40);
    Cluster::wait_counted(&agent, port, 40);
    // The rollout: the DaemonSet stays, its old pod is stopped.
    let got = Cluster::terminate(&mut agent);
    assert_decision("rollout", &got, KEEP);
    assert!(got.2.ends_with(&format!(
        "DaemonSet {NS}/{} stays (a rollout or a pod restart)",
        owner.name
    )));
    c.assert_kept(&links, "a rollout's SIGTERM");
    // No agent runs: the kernel counts.
    c.send(port, 30);
    // The DaemonSet's next pod adopts the state.
    c.agent_pod("np-otel-netprobe-d3e4f", &owner);
    let mut agent = c.start("np-otel-netprobe-d3e4f");
    Cluster::wait_counted(&agent, port, 70);
    c.send(port, 20);
    Cluster::wait_counted(&agent, port, 90);
    assert!(
        agent.log().contains("adopting the pinned maps"),
        "{}",
        agent.log()
    );
    assert_eq!(
        c.bpffs.link_ids(),
        links,
        "the same links: swapped in, not re-attached"
    );
    println!(
        "rollout: 40 + 30 (no agent) + 20 = 90 packets, {} bytes, links {links:?} kept",
        90 * (PAYLOAD + 28)
    );
    // `helm uninstall`, background propagation: the DaemonSet (and the ServiceAccount, the
    // bindings) are deleted before the garbage collector stops the pods.
    c.api.helm_uninstall(&c.release);
    let got = Cluster::terminate(&mut agent);
    assert_decision("helm uninstall", &got, REMOVE);
    c.assert_gone("helm uninstall's SIGTERM");
}

#[test]
fn a_daemonset_being_deleted_or_made_again_means_go_away() {
    let c = Cluster::new("dsdel");
    let old = c.daemonset();
    c.agent_pod("np-otel-netprobe-old01", &old);
    // Deleted and made again under the same name (a new uid): the pod's owner is gone.
    assert!(c.api.delete::<DaemonSet>(Some(NS), &old.name));
    let again = c.api.daemonset(NS, &old.name);
    assert_ne!(old.uid, again.uid);
    let mut agent = c.start("np-otel-netprobe-old01");
    let got = Cluster::terminate(&mut agent);
    assert_decision("DaemonSet made again", &got, REMOVE);
    assert!(got.2.contains("not the pod's owner any more"), "{}", got.2);
    c.assert_gone("a replaced DaemonSet");
    // Being deleted: a finalizer holds it, with its deletionTimestamp set.
    c.agent_pod("np-otel-netprobe-new01", &again);
    let mut agent = c.start("np-otel-netprobe-new01");
    let name = again.name.clone();
    c.api
        .admin(|client| async move {
            Api::<DaemonSet>::namespaced(client, NS)
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"finalizers": ["netprobe.test/hold"]}})),
                )
                .await
        })
        .expect("a finalizer");
    assert!(c.api.delete_gracefully::<DaemonSet>(Some(NS), &again.name));
    let got = Cluster::terminate(&mut agent);
    assert_decision("DaemonSet being deleted", &got, REMOVE);
    assert!(got.2.contains("is being deleted"), "{}", got.2);
    c.assert_gone("a DaemonSet being deleted");
}

/// Stops the API server's process (SIGSTOP: connections are accepted and then hang) until
/// dropped.
struct Frozen(u32);

impl Frozen {
    fn new(pid: u32) -> Self {
        // SAFETY: kill(2) on the API server the test started.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSTOP) }, 0);
        Self(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::kill(self.0 as i32, libc::SIGCONT) };
    }
}

#[test]
fn an_api_server_that_does_not_answer_keeps_the_state_for_cleanup() {
    let c = Cluster::new("apidown");
    let owner = c.daemonset();
    c.agent_pod("np-otel-netprobe-z9y8x", &owner);
    let mut agent = c.start("np-otel-netprobe-z9y8x");
    let links = c.bpffs.link_ids();
    let frozen = Frozen::new(c.api.pids().0);
    let got = Cluster::terminate(&mut agent);
    drop(frozen);
    assert_decision("API server frozen", &got, KEEP);
    assert!(
        got.2
            .contains("the API server gave no answer within 2s (timed out)"),
        "{}",
        got.2
    );
    assert!(
        got.1 >= Duration::from_secs(2),
        "waited the deadline: {:?}",
        got.1
    );
    c.assert_kept(&links, "a SIGTERM without an API answer");
    let removed = c.cleanup();
    println!("cleanup printed:\n{removed}");
    assert!(removed.contains("unpinned link xdp"), "{removed}");
    c.assert_gone("cleanup");
}
