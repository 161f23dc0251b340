//! `k8s_api`: what the agents' watchers cost a real Kubernetes API server. The kube-apiserver
//! and etcd of the tests (`tests/common/kubeapi/`, etcd with fsync on, as in production) hold
//! 10k pods (1,000 Deployments of ten, each with its ReplicaSet, a Service and an
//! EndpointSlice), 50 nodes; then [`SETS`] agents' watch sets — each the agent's six watchers
//! (`src/k8s/watch.rs`: the same kube-rs watcher, lists from the watch cache, ReplicaSets and
//! Jobs as metadata only), with its own client and the chart's ServiceAccount token, every
//! object trimmed as the agent trims it — list and then follow a churn of pods created, given
//! their status and deleted. Absolute figures from `/proc` of the apiserver and etcd
//! processes, each phase against the same phase with no watchers (the baseline of this run).

use std::{
    fmt::Debug,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt as _, watcher},
};
use otel_netprobe::k8s::trim::Trim;
use serde_json::{Value, json};

mod cluster;

use cluster::{churn, fill};

use crate::common::{
    kubeapi::{Credentials, KubeApiServer, Options},
    unique, within,
};

const PODS: u32 = 10_000;
const PER_DEPLOYMENT: u32 = 10;
const NAMESPACES: u32 = 20;
const NODES: u32 = 50;
/// Agents' watch sets.
pub const SETS: usize = 50;
/// Pods created (and as many deleted) per second in the churn phase.
const CHURN_PER_SECOND: u32 = 20;
const CHURN: Duration = Duration::from_secs(20);
const IDLE: Duration = Duration::from_secs(10);

/// A multi-threaded runtime whose threads live in the server's network namespace.
fn runtime_in(netns: &str) -> tokio::runtime::Runtime {
    within(Some(netns), || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Runs `fut` on the runtime's own threads (so every socket is in its namespace).
fn run<T: Send + 'static>(
    rt: &tokio::runtime::Runtime,
    fut: impl Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(rt.spawn(fut)).expect("task")
}

async fn client_from(path: &Path) -> Client {
    let kc = kube::config::Kubeconfig::read_from(path).expect("kubeconfig");
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .expect("config");
    Client::try_from(config).expect("client")
}

/// One agent's watch set: its six watchers, as `src/k8s/watch.rs` runs them.
async fn watch_set(c: Client, events: Arc<AtomicU64>, listed: Arc<AtomicUsize>) {
    let cfg = || watcher::Config::default().any_semantic();
    let ev = || (Arc::clone(&events), Arc::clone(&listed));
    futures::join!(
        follow(watcher(Api::<Pod>::all(c.clone()), cfg()), ev()),
        follow(watcher(Api::<Service>::all(c.clone()), cfg()), ev()),
        follow(watcher(Api::<EndpointSlice>::all(c.clone()), cfg()), ev()),
        follow(watcher(Api::<Node>::all(c.clone()), cfg()), ev()),
        follow(
            watcher(Api::<PartialObjectMeta<ReplicaSet>>::all(c.clone()), cfg()),
            ev()
        ),
        follow(watcher(Api::<PartialObjectMeta<Job>>::all(c), cfg()), ev()),
    );
}

/// Counts the objects a watcher delivers (each trimmed as the agent trims it) and its first
/// complete list.
async fn follow<K: Trim + Clone + Debug + Send + 'static>(
    stream: impl futures::Stream<Item = watcher::Result<watcher::Event<K>>> + Send,
    (events, listed): (Arc<AtomicU64>, Arc<AtomicUsize>),
) {
    let mut stream = stream.default_backoff().boxed();
    let mut first = true;
    while let Some(e) = stream.next().await {
        match e {
            Ok(
                watcher::Event::InitApply(o) | watcher::Event::Apply(o) | watcher::Event::Delete(o),
            ) => {
                std::hint::black_box(o.trim());
                events.fetch_add(1, Ordering::Relaxed);
            }
            Ok(watcher::Event::InitDone) if first => {
                first = false;
                listed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => eprintln!("watch error: {e}"),
        }
    }
}

/// CPU seconds of the apiserver, etcd and this process (the watch sets and the churn
/// driver), resident memory of the first two, and the events delivered, now.
#[derive(Clone, Copy)]
struct Sample {
    at: Instant,
    cpu: [f64; 3],
    rss_mib: [f64; 2],
    events: u64,
}

fn sample(pids: (u32, u32), events: &AtomicU64) -> Sample {
    let mib = |pid: u32| super::rss_bytes(&pid.to_string()) as f64 / f64::from(1 << 20);
    Sample {
        at: Instant::now(),
        cpu: [
            super::cpu_seconds(pids.0),
            super::cpu_seconds(pids.1),
            super::cpu_seconds(std::process::id()),
        ],
        rss_mib: [mib(pids.0), mib(pids.1)],
        events: events.load(Ordering::Relaxed),
    }
}

/// A phase's figures: CPU in cores ([apiserver, etcd, this process]) and events per second.
fn phase(name: &str, a: Sample, b: Sample) -> ([f64; 3], f64) {
    let secs = b.at.duration_since(a.at).as_secs_f64();
    let cores = [0, 1, 2].map(|i| (b.cpu[i] - a.cpu[i]) / secs);
    let events = (b.events - a.events) as f64 / secs;
    println!(
        "  {name:<24} {secs:>5.1} s  apiserver {:>5.1} % CPU, {:>5.0} MiB RSS  etcd {:>5.1} % CPU, \
         {:>4.0} MiB  watch sets + churn driver {:>5.1} % CPU  events delivered {events:>6.0}/s",
        cores[0] * 100.0,
        b.rss_mib[0],
        cores[1] * 100.0,
        b.rss_mib[1],
        cores[2] * 100.0,
    );
    (cores, events)
}

/// The apiserver's own view (its `/metrics`): Go heap in use (MiB), watches open, and watch
/// events sent so far.
async fn server_view(c: Client) -> (f64, f64, f64) {
    let req = hyper::Request::get("/metrics")
        .body(Vec::new())
        .expect("request");
    let text = c.request_text(req).await.expect("/metrics");
    let sum = |name: &str| -> f64 {
        text.lines()
            .filter(|l| {
                l.strip_prefix(name)
                    .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
            })
            .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
            .sum()
    };
    (
        sum("go_memstats_heap_inuse_bytes") / f64::from(1 << 20),
        sum("apiserver_longrunning_requests"),
        sum("apiserver_watch_events_total"),
    )
}

/// Bytes of the list of every ReplicaSet, whole and as metadata only.
async fn replicaset_list_bytes(c: Client) -> (usize, usize) {
    let get = |accept: &'static str| {
        let c = c.clone();
        async move {
            let req = hyper::Request::get("/apis/apps/v1/replicasets")
                .header("Accept", accept)
                .body(Vec::new())
                .expect("request");
            c.request_text(req).await.expect("list").len()
        }
    };
    (
        get("application/json").await,
        get("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1").await,
    )
}

#[allow(
    clippy::too_many_lines,
    reason = "one scenario: fill, baselines, the watch sets' list, idle and churn"
)]
pub fn api_load() {
    println!(
        "\n== Kubernetes API load: {SETS} agents' watch sets against a real kube-apiserver + etcd, \
         {PODS} pods; absolute, each phase against the same phase without watchers =="
    );
    let server = KubeApiServer::start_own(Options {
        fsync: true,
        audit: false,
    });
    println!(
        "  kube-apiserver + etcd ready in {:.1} s",
        server.start_time.as_secs_f64()
    );
    let release = server
        .helm_install("np", "netprobe", &json!({}))
        .expect("helm install");
    let dir = std::env::temp_dir().join(unique("apiload"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (admin_cfg, agent_cfg) = (dir.join("admin"), dir.join("agent"));
    server.write_kubeconfig(&admin_cfg, &Credentials::Admin);
    server.write_kubeconfig(
        &agent_cfg,
        &Credentials::Token(server.agent_token(&release)),
    );
    for ns in 0..NAMESPACES {
        server.namespace(&format!("ns-{ns}"));
    }
    for n in 0..NODES {
        server.node(
            &format!("node-{n}"),
            &format!("192.168.{}.{}", n / 250, n % 250 + 1),
        );
    }
    let rt = runtime_in(&server.netns);
    let admin = run(&rt, async move { client_from(&admin_cfg).await });
    let t = Instant::now();
    run(&rt, fill(admin.clone()));
    let fill_secs = t.elapsed().as_secs_f64();
    let c = admin.clone();
    let pod_bytes = run(&rt, async move {
        let req = hyper::Request::get("/api/v1/pods?limit=500")
            .body(Vec::new())
            .expect("request");
        let text = c.request_text(req).await.expect("pods");
        let v: Value = serde_json::from_str(&text).expect("JSON");
        text.len() / v["items"].as_array().map_or(1, Vec::len)
    });
    println!(
        "  filled: {PODS} pods (≈{pod_bytes} bytes of JSON each, managedFields included), {} \
         Deployments + ReplicaSets, Services, EndpointSlices, {NODES} nodes, {NAMESPACES} \
         namespaces, in {fill_secs:.0} s ({:.0} writes/s)",
        PODS / PER_DEPLOYMENT,
        f64::from(PODS * 2 + PODS / PER_DEPLOYMENT * 4) / fill_secs
    );
    let (full, meta) = run(&rt, replicaset_list_bytes(admin.clone()));
    println!(
        "  ReplicaSets listed whole: {full} bytes; as metadata (what the agent asks for): {meta} \
         bytes ({:.2}x)",
        meta as f64 / full as f64
    );
    let pids = server.pids();
    let events = Arc::new(AtomicU64::new(0));
    let listed = Arc::new(AtomicUsize::new(0));

    // Baselines: the same phases with no watcher.
    let a = sample(pids, &events);
    std::thread::sleep(IDLE);
    let (idle0, _) = phase("idle, no watchers", a, sample(pids, &events));
    let (heap0, _, _) = run(&rt, server_view(admin.clone()));
    let a = sample(pids, &events);
    let churned0 = run(&rt, churn(admin.clone(), 0));
    std::thread::sleep(Duration::from_secs(2));
    let (churn0, _) = phase("churn, no watchers", a, sample(pids, &events));

    // The watch sets: each its own client (an agent on its node), the chart's token.
    let before = sample(pids, &events);
    let cfg = agent_cfg.clone();
    let clients: Vec<Client> = run(&rt, async move {
        let mut v = Vec::new();
        for _ in 0..SETS {
            v.push(client_from(&cfg).await);
        }
        v
    });
    let sets: Vec<_> = clients
        .into_iter()
        .map(|c| rt.spawn(watch_set(c, Arc::clone(&events), Arc::clone(&listed))))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    while listed.load(Ordering::Relaxed) < SETS * 6 {
        assert!(Instant::now() < deadline, "the watch sets never listed");
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = sample(pids, &events);
    let list_secs = after.at.duration_since(before.at).as_secs_f64();
    let list_cpu = after.cpu[0] - before.cpu[0];
    let objects = after.events - before.events;
    println!(
        "  initial lists: {SETS} sets × 6 = {} lists, {objects} objects delivered ({} per set) \
         in {list_secs:.1} s; apiserver {list_cpu:.1} CPU-s = {:.0} ms per set, {:.1} µs per \
         object; etcd {:.1} CPU-s (lists come from the watch cache); the watch sets decoding \
         and trimming them {:.1} CPU-s",
        SETS * 6,
        objects / SETS as u64,
        list_cpu * 1e3 / SETS as f64,
        list_cpu * 1e6 / objects as f64,
        after.cpu[1] - before.cpu[1],
        after.cpu[2] - before.cpu[2],
    );
    let a = sample(pids, &events);
    std::thread::sleep(IDLE);
    let (idle1, _) = phase(
        &format!("idle, {SETS} watch sets"),
        a,
        sample(pids, &events),
    );
    let (heap1, watches, sent0) = run(&rt, server_view(admin.clone()));
    let a = sample(pids, &events);
    let churned1 = run(&rt, churn(admin.clone(), 1));
    // The last events reach the watchers after the last delete.
    std::thread::sleep(Duration::from_secs(2));
    let b = sample(pids, &events);
    let (churn1, rate) = phase(&format!("churn, {SETS} watch sets"), a, b);
    let (_, _, sent1) = run(&rt, server_view(admin.clone()));
    let delivered = b.events - a.events;
    let churn_secs = b.at.duration_since(a.at).as_secs_f64();
    let per_event = |i: usize| (churn1[i] - churn0[i]) * churn_secs * 1e6 / delivered as f64;
    println!(
        "  churn: {churned0} / {churned1} pods created, given their status and deleted \
         ({CHURN_PER_SECOND}/s), {:.2} events per pod per set ({delivered} delivered, the \
         apiserver counts {:.0} sent); with the watchers: apiserver \
         {:+.1} % CPU = {:.1} µs per delivered event, etcd {:+.1} %, the watch sets {:.1} µs \
         per event",
        delivered as f64 / f64::from(churned1) / SETS as f64,
        sent1 - sent0,
        (churn1[0] - churn0[0]) * 100.0,
        per_event(0),
        (churn1[1] - churn0[1]) * 100.0,
        per_event(2),
    );
    println!(
        "  idle: apiserver {:.1} % → {:.1} % CPU (bookmarks), Go heap in use {heap0:.0} → \
         {heap1:.0} MiB with {watches:.0} watches open: {:.2} MiB per watch set; \
         {:.1} events/s per set in this churn",
        idle0[0] * 100.0,
        idle1[0] * 100.0,
        (heap1 - heap0) / SETS as f64,
        rate / SETS as f64
    );
    for s in sets {
        s.abort();
    }
    drop(rt);
    let _ = std::fs::remove_dir_all(&dir);
}
