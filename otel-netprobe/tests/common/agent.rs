//! Running the real agent inside a lab namespace and finding flows in its snapshots.

use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use otel_netprobe::{
    agent::Agent,
    config::{Config, HookOverride, K8sMode},
    flow::{FlowView, Transport},
    frame::Snapshot,
    metrics::{Histogram, Metric, Value},
};

use super::Netns;

/// Starts the agent in `ns` (it attaches to that namespace's interfaces) with a fast poll.
pub fn start_in(ns: &Netns, overrides: Vec<HookOverride>) -> Agent {
    start_with(ns, overrides, |_| {})
}

/// As [`start_in`], with the test's own changes to the configuration.
pub fn start_with(
    ns: &Netns,
    overrides: Vec<HookOverride>,
    tweak: impl FnOnce(&mut Config),
) -> Agent {
    let mut cfg = Config::default();
    cfg.flows.poll_interval = Duration::from_millis(200);
    cfg.flows.kernel_idle_timeout = Duration::from_secs(30);
    cfg.flows.idle_timeout = Duration::from_secs(120);
    cfg.flows.capacity = 65_536;
    cfg.flows.capacity_ipv6 = 16_384;
    cfg.interfaces.overrides = overrides;
    // The HTTP server listens in the lab namespace, on a port of its own.
    cfg.http.listen = ([127, 0, 0, 1], 0).into();
    // Never pick up a kubeconfig of the machine running the tests: a test that wants the
    // Kubernetes API points k8s.kubeconfig at its own server.
    cfg.k8s.mode = K8sMode::Standalone;
    // Nothing pinned unless a test asks (with a bpffs of its own): a machine's /sys/fs/bpf
    // is shared by every test and every other program.
    cfg.pinning.enabled = false;
    tweak(&mut cfg);
    ns.run(move || Agent::start(&cfg).expect("agent starts"))
}

/// Waits until the agent reports `n` attached interfaces.
pub fn wait_attached(agent: &Agent, n: usize) -> std::sync::Arc<Snapshot> {
    let (snap, ok) = agent.wait_for(super::patient(Duration::from_secs(20)), |s| {
        s.health.interfaces.len() == n
    });
    assert!(
        ok,
        "expected {n} attached interfaces, got {:?}",
        snap.health.interfaces
    );
    snap
}

/// `GET /metrics` of an agent listening at `addr` inside `ns`.
pub fn metrics_text(ns: &Netns, addr: std::net::SocketAddr) -> String {
    let (status, body) = ns
        .run(move || super::backends::http_get(&format!("http://{addr}/metrics")))
        .expect("GET /metrics");
    assert_eq!(status, 200, "{body}");
    body
}

/// A flow selector.
#[derive(Clone, Copy, Debug)]
pub struct Sel<'a> {
    /// Source address.
    pub src: &'a str,
    /// Destination address.
    pub dst: &'a str,
    /// Source port (None: any).
    pub sport: Option<u16>,
    /// Destination port (None: any).
    pub dport: Option<u16>,
    /// Transport.
    pub transport: Transport,
}

impl Sel<'_> {
    fn matches(&self, f: &FlowView) -> bool {
        f.src == self.src.parse::<IpAddr>().expect("src")
            && f.dst == self.dst.parse::<IpAddr>().expect("dst")
            && self.sport.is_none_or(|p| p == f.src_port)
            && self.dport.is_none_or(|p| p == f.dst_port)
            && f.transport == self.transport
    }
}

/// The flows of `all` matching `sel`.
pub fn flows(all: &[FlowView], sel: Sel<'_>) -> Vec<FlowView> {
    all.iter().filter(|f| sel.matches(f)).cloned().collect()
}

/// The agent's flows as its next read cycle finds them (the agent keeps none between cycles).
pub fn current_flows(agent: &Agent) -> Arc<[FlowView]> {
    agent
        .flows(super::patient(Duration::from_secs(20)))
        .expect("the reader finishes a cycle")
}

/// Asks for the agent's flows each cycle until `done` holds of them or `timeout` passes;
/// returns the last flows and whether it held.
pub fn wait_flows(
    agent: &Agent,
    timeout: Duration,
    mut done: impl FnMut(&[FlowView]) -> bool,
) -> (Arc<[FlowView]>, bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let all = current_flows(agent);
        if done(&all) {
            return (all, true);
        }
        if Instant::now() >= deadline {
            return (all, false);
        }
    }
}

/// Waits until exactly one flow matches `sel` with at least `packets` packets, then returns it
/// (the caller asserts exact values: a double count shows up as more).
pub fn wait_flow(agent: &Agent, sel: Sel<'_>, packets: u64) -> FlowView {
    let (all, ok) = wait_flows(agent, super::patient(Duration::from_secs(20)), |all| {
        flows(all, sel).iter().map(|f| f.packets).sum::<u64>() >= packets
    });
    let found = flows(&all, sel);
    assert!(
        ok,
        "flow {sel:?} did not reach {packets} packets: {found:?}"
    );
    assert_eq!(found.len(), 1, "one flow expected for {sel:?}: {found:?}");
    // Two more read cycles: a late double count would show now.
    current_flows(agent);
    flows(&current_flows(agent), sel).remove(0)
}

/// The sum of the points of `metric` in the snapshot's frame whose attributes include every
/// one of `labels` (OTLP names), or `None` when no point has them.
pub fn frame_sum(snap: &Snapshot, metric: &Metric, labels: &[(&str, &str)]) -> Option<u64> {
    let family = snap.frame.family(metric)?;
    let mut found = None;
    for p in &family.points {
        if labels
            .iter()
            .all(|(k, v)| p.attrs.iter().any(|(pk, pv)| pk == k && pv == v))
        {
            let v = match &p.value {
                Value::Int(n) => *n,
                Value::Histogram(h) => h.count,
                Value::Double(d) => *d as u64,
            };
            *found.get_or_insert(0) += v;
        }
    }
    found
}

/// The histogram point of `metric` whose attributes include every one of `labels`.
pub fn frame_histogram(
    snap: &Snapshot,
    metric: &Metric,
    labels: &[(&str, &str)],
) -> Option<Histogram> {
    snap.frame.family(metric)?.points.iter().find_map(|p| {
        let Value::Histogram(h) = &p.value else {
            return None;
        };
        labels
            .iter()
            .all(|(k, v)| p.attrs.iter().any(|(pk, pv)| pk == k && pv == v))
            .then(|| h.clone())
    })
}

/// Waits until `cond` holds of the agent's snapshots, or fails with `what` and the last
/// snapshot's frame values of `metric`.
pub fn wait_frame(
    agent: &Agent,
    what: &str,
    metric: &Metric,
    mut cond: impl FnMut(&Snapshot) -> bool,
) -> std::sync::Arc<Snapshot> {
    let (snap, ok) = agent.wait_for(super::patient(Duration::from_secs(20)), |s| cond(s));
    assert!(
        ok,
        "{what}: {:?}",
        snap.frame.family(metric).map(|f| &f.points)
    );
    snap
}
