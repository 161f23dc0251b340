//! The one wiring of everything `otel-netprobe run` does, used by the binary and the tests:
//! load and attach (attacher thread, driven by netlink), read and aggregate (reader thread,
//! which publishes a finished snapshot per cycle), Kubernetes watchers (their own thread),
//! and the HTTP server and OTLP exporter (a small tokio runtime). [`Agent::stop`] stops them
//! in order: HTTP, then detach (no more counting), a final read, a final OTLP export (the
//! flush), then the maps and the watchers.
//!
//! Every thread inherits the network namespace of the thread that calls [`Agent::start`],
//! which is how the tests run the agent inside a lab namespace.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{
    config::{Config, OnSigterm},
    ebpf::{
        self, EbpfError,
        attach::Attacher,
        counts::{CounterSource, KernelFacts},
        drops::DropSetup,
        netlink::{self, LinkEvent, LinkMonitor, NetlinkError},
        pin::PinDir,
    },
    export::{
        http::{self, SharedSnapshot},
        otlp::{self, Exporter, client::SendError},
        serve::{Limits, Server, tls},
    },
    flow::{
        Budgets, FlowView, Reader, Timeouts, Totals,
        conns::{ConnSettings, ConnTable, ConnTimeouts},
    },
    frame::{Aggregator, Snapshot},
    k8s::{
        K8s, K8sError,
        naming::NamingRules,
        owner::{self, PodRef},
    },
    metrics,
    privileges::{self, PrivilegeError},
    telemetry::Telemetry,
};

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A capability is missing.
    #[error(transparent)]
    Privileges(#[from] PrivilegeError),
    /// Loading the programs failed.
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
    /// Reading what the kernel offers (the flow tables' eviction) failed.
    #[error("probing the flow tables failed")]
    Sys(#[source] crate::ebpf::sys::SysError),
    /// Listing interfaces or opening the link monitor failed.
    #[error("netlink failed")]
    Netlink(#[source] NetlinkError),
    /// The Kubernetes API is configured but unusable.
    #[error(transparent)]
    K8s(#[from] K8sError),
    /// The OTLP exporter's settings are unusable (TLS files).
    #[error("setting up the OTLP exporter failed")]
    Otlp(#[source] SendError),
    /// The HTTP server could not listen.
    #[error("binding the HTTP server to {listen} (http.listen) failed")]
    Http {
        /// The address.
        listen: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server's TLS files are unusable.
    #[error(transparent)]
    HttpTls(#[from] tls::TlsError),
    /// The runtime or a thread could not be started.
    #[error("starting the agent's threads failed")]
    Runtime(#[source] std::io::Error),
}

/// A running agent.
pub struct Agent {
    snapshot: SharedSnapshot,
    flow_requests: Arc<FlowRequests>,
    telemetry: Arc<Telemetry>,
    http_addr: Option<SocketAddr>,
    stages: Option<Stages>,
    /// `pinning.on_sigterm`.
    on_sigterm: OnSigterm,
    /// Whether the state is pinned (without pins there is nothing a SIGTERM could keep).
    pinned: bool,
    /// The agent's own pod (`POD_NAME`, `POD_NAMESPACE`), for the DaemonSet check.
    pod: Option<PodRef>,
}

/// What [`Agent::stop`] stops, in this order.
struct Stages {
    runtime: tokio::runtime::Runtime,
    http: Option<Server>,
    stop_links: Arc<AtomicBool>,
    /// Set before `stop_links`: leave the attachments and pins for the next agent.
    keep: Arc<AtomicBool>,
    attach: JoinHandle<()>,
    stop_reading: Arc<AtomicBool>,
    read: JoinHandle<()>,
    exporter: Option<(
        tokio::sync::watch::Sender<bool>,
        tokio::task::JoinHandle<Exporter>,
    )>,
    k8s: Option<K8s>,
}

/// The HTTP server's socket and TLS, when it is on. TLS is read first, so a bad certificate
/// stops the agent with the key named before anything listens.
fn bind_http(
    cfg: &Config,
    runtime: &tokio::runtime::Runtime,
) -> Result<Option<(tokio::net::TcpListener, Option<tls::TlsServer>)>, AgentError> {
    if !cfg.http.enabled {
        return Ok(None);
    }
    let tls = tls::server_config(&cfg.http.tls)?;
    let listen = cfg.http.listen;
    let l = runtime.block_on(tokio::net::TcpListener::bind(listen));
    Ok(Some((
        l.map_err(|source| AgentError::Http { listen, source })?,
        tls,
    )))
}

/// The I/O runtime, and the OTLP exporter when an endpoint is set (its TLS files read now).
fn runtime_and_exporter(
    cfg: &Config,
    telemetry: &Arc<Telemetry>,
) -> Result<(tokio::runtime::Runtime, Option<Exporter>), AgentError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("netprobe-io")
        .enable_all()
        .build()
        .map_err(AgentError::Runtime)?;
    let exporter = if cfg.otlp.endpoint.is_empty() {
        None
    } else {
        let _guard = runtime.enter();
        let resource = otlp::resource(&cfg.otlp, |k| std::env::var(k).ok());
        let e = Exporter::new(&cfg.otlp, &resource, Arc::clone(telemetry));
        Some(e.map_err(AgentError::Otlp)?)
    };
    Ok((runtime, exporter))
}

fn spawn<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, AgentError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map_err(AgentError::Runtime)
}

/// Raises the open-files soft limit to the hard limit (container runtimes may start the agent
/// at 1024, which a burst of HTTP clients and the maps could exhaust), saying so when it did.
fn raise_open_files_limit() {
    let (before, after) = privileges::raise_open_files_limit();
    if after > before {
        info!(
            from = before,
            to = after,
            "raised the open-files soft limit to the hard limit"
        );
    }
}

impl Agent {
    /// Starts everything `cfg` asks for, in the calling thread's network namespace. Settings
    /// that cannot work (capabilities, TLS files, the listen address, the Kubernetes API) stop
    /// the start before any program is attached.
    pub fn start(cfg: &Config) -> Result<Self, AgentError> {
        privileges::check()?;
        raise_open_files_limit();
        let telemetry = Arc::new(Telemetry::default());
        let (runtime, mut exporter) = runtime_and_exporter(cfg, &telemetry)?;
        let listener = bind_http(cfg, &runtime)?;
        // Loaded before the Kubernetes notice, so a refusal is the only line printed.
        let drops = cfg.drops.enabled.then(DropSetup::probe).flatten();
        let (pins, started) = ebpf::pin::start(&cfg.pinning, &sizes(cfg));
        if let Some(e) = &mut exporter {
            e.continue_from(started);
        }
        let (mut ebpf, maps, slots) = load(cfg, drops.as_ref(), pins.as_ref())?;
        let conns = ebpf::take_hash_map(&mut ebpf, netprobe_ebpf::CONNS_MAP)?;
        let kernel = KernelFacts {
            drop_reasons: drops.as_ref().and_then(|d| d.reasons.clone()),
            dns: cfg.dns.clone(),
        };
        let counts = metrics::kernel_counts(&mut ebpf, &kernel)?;
        let counting_drops = drops
            .as_ref()
            .is_some_and(|d| ebpf::drops::start(&mut ebpf, d));
        crate::heap::trim();
        let k8s = K8s::start(&cfg.k8s)?;
        let pinned = pins.is_some();
        let carry = pins.as_ref().and_then(|p| open_carry(cfg, p));
        let (attacher, monitor, interfaces) =
            attach(cfg, ebpf, (pins, Arc::clone(&slots)), &telemetry)?;
        let has_reasons = kernel.drop_reasons.is_some();
        let features = [
            ("drops", counting_drops),
            ("drop_reasons", counting_drops && has_reasons),
            ("pinning", pinned),
        ];
        let mut reader = reader(cfg, maps, conns, counts, &features, &telemetry, slots)?;
        if let Some(store) = carry {
            reader = reader.with_carry(store).map_err(AgentError::Sys)?;
        }
        let aggregator = Aggregator::new(
            Budgets::from_config(&cfg.metrics, k8s.is_some()),
            naming_rules(cfg, k8s.is_some()),
            k8s.as_ref().map(K8s::shared),
            interfaces,
            cfg.flows.top_talkers,
        );
        let snapshot = http::shared_empty();
        let flow_requests = Arc::new(FlowRequests::default());
        let stop_links = Arc::new(AtomicBool::new(false));
        let keep = Arc::new(AtomicBool::new(false));
        let attach = spawn_attacher(attacher, monitor, &stop_links, &keep)?;
        let stop_reading = Arc::new(AtomicBool::new(false));
        let read = {
            let (stop, shared) = (Arc::clone(&stop_reading), Arc::clone(&snapshot));
            let requests = Arc::clone(&flow_requests);
            let interval = cfg.flows.poll_interval;
            spawn("netprobe-read", move || {
                read_loop(reader, aggregator, &shared, &requests, interval, &stop);
            })?
        };
        let http = listener.map(|(l, http_tls)| {
            let stale_after = cfg.flows.poll_interval * 5;
            let app = http::router(Arc::clone(&snapshot), Arc::clone(&telemetry), stale_after);
            let _guard = runtime.enter();
            Server::spawn_tls(
                l,
                app,
                Limits::from(&cfg.http),
                Arc::clone(&telemetry),
                http_tls,
            )
        });
        let http_addr = http.as_ref().map(Server::addr);
        let exporter = exporter.map(|e| {
            let (tx, rx) = tokio::sync::watch::channel(false);
            (tx, runtime.spawn(e.run(Arc::clone(&snapshot), rx)))
        });
        Ok(Self {
            snapshot,
            flow_requests,
            telemetry,
            http_addr,
            on_sigterm: cfg.pinning.on_sigterm,
            pinned,
            pod: PodRef::from_env(|k| std::env::var(k).ok()),
            stages: Some(Stages {
                runtime,
                http,
                stop_links,
                keep,
                attach,
                stop_reading,
                read,
                exporter,
                k8s,
            }),
        })
    }

    /// The agent's own event counters.
    pub fn telemetry(&self) -> Arc<Telemetry> {
        Arc::clone(&self.telemetry)
    }

    /// Where the HTTP server listens (`None`: disabled).
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        http::latest(&self.snapshot)
    }

    /// Every flow the agent tracks, decoded, as its next read cycle finds them; `None` if no
    /// cycle ends within `timeout` (a stopped agent). Nothing is kept between cycles for
    /// this: a snapshot holds no flows, so a caller waits for the next cycle's.
    pub fn flows(&self, timeout: Duration) -> Option<Arc<[FlowView]>> {
        let (tx, rx) = mpsc::channel();
        self.flow_requests
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(tx);
        rx.recv_timeout(timeout).ok()
    }

    /// Polls snapshots until `done` holds or `timeout` passes; returns the last snapshot and
    /// whether the condition held.
    pub fn wait_for(
        &self,
        timeout: Duration,
        mut done: impl FnMut(&Snapshot) -> bool,
    ) -> (Arc<Snapshot>, bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let snap = self.snapshot();
            if done(&snap) {
                return (snap, true);
            }
            if Instant::now() >= deadline {
                return (snap, false);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Blocks until SIGTERM or SIGINT.
    pub fn wait_for_signal(&self) {
        let Some(s) = &self.stages else { return };
        s.runtime.block_on(async {
            let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                let _ = tokio::signal::ctrl_c().await;
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
    }

    /// Stops in order: the HTTP server; the attacher (every program detached, nothing more is
    /// counted); the reader, after a final read; the OTLP exporter, after a final export of
    /// that read (the flush); then the maps and the Kubernetes watchers.
    /// Detaching means "go away": nothing of ours stays attached or pinned.
    pub fn stop(mut self) {
        self.shutdown(false);
    }

    /// As [`Agent::stop`], but the programs stay attached and the maps and links pinned, for
    /// the next agent to adopt (a rollout): the kernel keeps counting meanwhile.
    pub fn stop_keeping(mut self) {
        self.shutdown(true);
    }

    /// The stop a SIGTERM asks for, as `pinning.on_sigterm` says: with `auto`, in a cluster,
    /// [`Agent::stop_keeping`] when the agent's DaemonSet stays (a rollout) or the API server
    /// does not answer in time, and [`Agent::stop`] ("go away") when it is gone or being
    /// deleted (an uninstall) — see [`owner`]; standalone, go away. Logs the decision and
    /// its reason in one line.
    pub fn stop_for_signal(mut self) {
        let keep = self.sigterm_keeps();
        self.shutdown(keep);
    }

    fn sigterm_keeps(&self) -> bool {
        let Some(s) = &self.stages else { return false };
        let (keep, why) = match (self.on_sigterm, &s.k8s) {
            _ if !self.pinned => (false, "nothing is pinned".to_owned()),
            (OnSigterm::Keep, _) => (true, "pinning.on_sigterm is keep".into()),
            (OnSigterm::Remove, _) => (false, "pinning.on_sigterm is remove".into()),
            (OnSigterm::Auto, None) => (false, "standalone".into()),
            (OnSigterm::Auto, Some(k8s)) => {
                let owner = s
                    .runtime
                    .block_on(owner::ask(k8s.client(), self.pod.as_ref()));
                (owner.keeps(), owner.to_string())
            }
        };
        if keep {
            info!(
                "SIGTERM: keeping the programs attached and the state pinned for the next agent: {why}"
            );
        } else {
            info!("SIGTERM: detaching and unpinning everything: {why}");
        }
        keep
    }

    fn shutdown(&mut self, keep: bool) {
        let Some(s) = self.stages.take() else { return };
        s.keep.store(keep, Ordering::Relaxed);
        let rt = &s.runtime;
        if let Some(server) = s.http {
            rt.block_on(server.shutdown(Duration::from_secs(5)));
        }
        s.stop_links.store(true, Ordering::Relaxed);
        let _ = s.attach.join();
        s.stop_reading.store(true, Ordering::Relaxed);
        let _ = s.read.join();
        if let Some((tx, task)) = s.exporter {
            let _ = tx.send(true);
            if let Ok(mut exporter) = rt.block_on(task) {
                let snap = self.snapshot();
                // On the runtime's threads, which live in the agent's network namespace (the
                // caller's thread may not).
                let flush = rt.spawn(async move { exporter.export(&snap).await });
                if rt.block_on(flush).unwrap_or(false) {
                    info!("final OTLP export sent");
                }
            }
        }
        drop(s.k8s);
        s.runtime.shutdown_timeout(Duration::from_secs(1));
        info!("stopped");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.shutdown(false);
    }
}

fn sizes(cfg: &Config) -> ebpf::Sizes {
    ebpf::Sizes {
        flows4: cfg.flows.capacity,
        flows6: cfg.flows.capacity_ipv6,
        conns: cfg.connections.capacity,
        dns: (
            cfg.dns.ports_global(),
            cfg.dns.capacity,
            cfg.dns.stats_capacity,
        ),
    }
}

/// Loads the programs (attached nowhere yet), with the maps pinned in `pins`, and takes the
/// reader's maps and the coverage slots.
fn load(
    cfg: &Config,
    drops: Option<&DropSetup>,
    pins: Option<&PinDir>,
) -> Result<(aya::Ebpf, ebpf::Maps, SharedSlots), AgentError> {
    let sizes = sizes(cfg);
    let mut ebpf = ebpf::load_pinned(&sizes, drops.map(|d| &d.layout), pins).map_err(|e| {
        match privileges::explain_refusal(permission_denied(&e)) {
            Some(p) => AgentError::Privileges(p),
            None => AgentError::Ebpf(e),
        }
    })?;
    let maps = ebpf::take_maps(&mut ebpf)?;
    let slots = ebpf::coverage::Slots::take(&mut ebpf)?;
    Ok((ebpf, maps, slots))
}

/// The reader of every kernel table, with what the kernel offers for the agent's metrics.
fn reader(
    cfg: &Config,
    maps: ebpf::Maps,
    conns: aya::maps::MapData,
    counts: Vec<Box<dyn CounterSource>>,
    features: &[(&'static str, bool)],
    telemetry: &Arc<Telemetry>,
    slots: SharedSlots,
) -> Result<Reader, AgentError> {
    let timeouts = Timeouts {
        kernel_idle: cfg.flows.kernel_idle_timeout,
        idle: cfg.flows.idle_timeout,
    };
    let capacity = u64::from(cfg.flows.capacity) + u64::from(cfg.flows.capacity_ipv6);
    let settings = ConnSettings {
        timeouts: ConnTimeouts {
            handshake: cfg.connections.handshake_timeout,
            idle: cfg.connections.idle_timeout,
        },
        capacity: cfg.connections.capacity,
    };
    let conns = ConnTable::new(conns, settings).map_err(AgentError::Sys)?;
    let mut reader = Reader::new(maps, capacity, timeouts, Arc::clone(telemetry))
        .map_err(AgentError::Sys)?
        .with_conns(conns)
        .with_counts(counts)
        .with_coverage(ebpf::coverage::Coverage::new(slots));
    let tcx = ebpf::kernel::Version::running().is_some_and(|v| v >= ebpf::kernel::Version(6, 6));
    let mut all = vec![("tcx", tcx)];
    all.extend_from_slice(features);
    reader.set_kernel_features(&all);
    Ok(reader)
}

/// The pinned store of the flows' carried counts, for twice the flow tables' capacity (a flow
/// stays tracked for `flows.idle_timeout` after its kernel entry left); `None`, said once, when
/// it cannot be had (a restart then continues only what the kernel maps hold).
fn open_carry(cfg: &Config, pins: &PinDir) -> Option<ebpf::pin::carry::CarryStore<Totals>> {
    let capacity = cfg
        .flows
        .capacity
        .saturating_add(cfg.flows.capacity_ipv6)
        .saturating_mul(2);
    pins.carry(capacity)
        .map_err(|e| {
            warn!(error = %e, "no carry store: a restart will lose the counts of flows that left the kernel table");
        })
        .ok()
}

/// The coverage slots, shared by the attacher and the reader.
type SharedSlots = ebpf::coverage::SharedSlots;

/// Attaches to the current interfaces; the link monitor subscribes before the interfaces are
/// listed, so none created in between is missed.
fn attach(
    cfg: &Config,
    ebpf: aya::Ebpf,
    (pins, slots): (Option<PinDir>, SharedSlots),
    telemetry: &Arc<Telemetry>,
) -> Result<(Attacher, LinkMonitor, Interfaces), AgentError> {
    let interfaces: Interfaces = Arc::default();
    let mut attacher = Attacher::new(
        ebpf,
        cfg.interfaces.clone(),
        Arc::clone(&interfaces),
        Arc::clone(telemetry),
    )
    .with_pins(pins)
    .with_slots(slots);
    let monitor = LinkMonitor::new().map_err(AgentError::Netlink)?;
    monitor
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(AgentError::Netlink)?;
    attacher.sync(&netlink::dump_links().map_err(AgentError::Netlink)?);
    info!(
        interfaces = attacher.len(),
        replaced_in_place = attacher.replaced(),
        "programs attached"
    );
    Ok((attacher, monitor, interfaces))
}

/// The attacher's list of interfaces, read by the aggregator.
type Interfaces = Arc<Mutex<Vec<crate::ebpf::attach::InterfaceState>>>;

/// Whether loading failed for lack of permission (`EPERM`/`EACCES` somewhere in the chain).
fn permission_denied(e: &EbpfError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::PermissionDenied)
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// Callers of [`Agent::flows`] waiting for the next cycle's flows.
#[derive(Default)]
struct FlowRequests(Mutex<Vec<mpsc::Sender<Arc<[FlowView]>>>>);

impl FlowRequests {
    /// Hands `flows` to whoever is waiting (and drops them when nobody is).
    fn answer(&self, flows: Vec<FlowView>) {
        let waiting = std::mem::take(
            &mut *self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if waiting.is_empty() {
            return;
        }
        let flows: Arc<[FlowView]> = flows.into();
        for tx in waiting {
            let _ = tx.send(Arc::clone(&flows));
        }
    }
}

/// Reads, aggregates and publishes every `interval` until `stop`, then once more (the final
/// read, after the programs were detached).
fn read_loop(
    mut reader: Reader,
    mut aggregator: Aggregator,
    shared: &SharedSnapshot,
    requests: &FlowRequests,
    interval: Duration,
    stop: &AtomicBool,
) {
    loop {
        // Set before this cycle began: the programs are detached, this read is the last.
        let last = stop.load(Ordering::Relaxed);
        let started = Instant::now();
        let reading = reader.cycle();
        http::publish(shared, aggregator.publish(&reading));
        requests.answer(reading.flows);
        // The cycle's blocks below the mmap threshold are free now: give their pages back.
        crate::heap::trim();
        if last {
            return;
        }
        while !stop.load(Ordering::Relaxed) && started.elapsed() < interval {
            let left = interval.saturating_sub(started.elapsed());
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }
}

/// The naming rules, on this agent's node (`K8S_NODE_NAME`, or `NODE_NAME`), which tells its
/// pods from other nodes' (`netprobe.origin`); in a cluster, its absence is logged.
fn naming_rules(cfg: &Config, cluster: bool) -> Arc<NamingRules> {
    let node = std::env::var("K8S_NODE_NAME")
        .or_else(|_| std::env::var("NODE_NAME"))
        .ok();
    if cluster && node.is_none() {
        warn!(
            "K8S_NODE_NAME is not set: every pod counts as this node's (netprobe.origin), \
             and cluster-wide sums count cross-node traffic twice"
        );
    }
    Arc::new(NamingRules::new(&cfg.k8s, cluster).on_node(node.as_deref()))
}

/// The attacher's thread: follows the interfaces until `stop`, then lets go of the programs
/// (keeping them attached and pinned when `keep` is set by then).
fn spawn_attacher(
    mut attacher: Attacher,
    mut monitor: LinkMonitor,
    stop: &Arc<AtomicBool>,
    keep: &Arc<AtomicBool>,
) -> Result<JoinHandle<()>, AgentError> {
    let (stop, keep) = (Arc::clone(stop), Arc::clone(keep));
    spawn("netprobe-attach", move || {
        watch_links(&mut attacher, &mut monitor, &stop);
        // Released here, in the agent's network namespace: a clsact filter is removed over
        // netlink, which acts in the namespace of the thread that asks.
        let n = attacher.len();
        if keep.load(Ordering::Relaxed) {
            attacher.finish(true);
            info!(
                interfaces = n,
                "programs left attached and pinned for the next agent"
            );
        } else {
            let unpinned = attacher.finish(false).len();
            info!(interfaces = n, unpinned, "programs detached");
        }
    })
}

fn watch_links(attacher: &mut Attacher, monitor: &mut LinkMonitor, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match monitor.recv() {
            Ok(events) => {
                for event in events {
                    match event {
                        LinkEvent::New(link) => attacher.add(&link),
                        LinkEvent::Deleted { index, .. } => attacher.remove(index),
                    }
                }
            }
            Err(NetlinkError::Overrun) => {
                warn!("netlink overrun: re-reading the interface list");
                match netlink::dump_links() {
                    Ok(links) => attacher.sync(&links),
                    Err(e) => warn!(error = %e, "listing interfaces failed"),
                }
            }
            Err(e) => {
                warn!(error = %e, "netlink receive failed");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }
}
