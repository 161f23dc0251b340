//! Wiring: load and attach (attacher thread, driven by netlink), read maps (reader thread),
//! publish snapshots, and stop in order (stop reading, detach, drop maps).
//!
//! Both kernel-facing stages run on plain threads (blocking syscalls); they inherit the
//! network namespace of the thread that calls [`Agent::start`], which is how the tests run the
//! agent inside a lab namespace.

use std::{
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use tracing::{info, warn};

use crate::{
    config::Config,
    ebpf::{
        self, EbpfError,
        attach::Attacher,
        netlink::{self, LinkEvent, LinkMonitor, NetlinkError},
        reader::{Reader, Timeouts},
        sys::SysError,
    },
    export::{http::SharedSnapshot, otlp::ExportStats},
    flow::Snapshot,
    k8s::{K8s, K8sError, naming::NamingRules},
};

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Loading the programs failed.
    #[error(transparent)]
    Ebpf(#[from] EbpfError),
    /// Reading system facts (CPU count) failed.
    #[error("reading system facts failed")]
    Sys(#[source] SysError),
    /// Listing interfaces or opening the link monitor failed.
    #[error("netlink failed")]
    Netlink(#[source] NetlinkError),
    /// The Kubernetes API is configured but unusable.
    #[error(transparent)]
    K8s(#[from] K8sError),
}

/// A running agent.
pub struct Agent {
    snapshot: SharedSnapshot,
    export_stats: Arc<ExportStats>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    k8s: Option<K8s>,
}

impl Agent {
    /// Loads the programs, attaches them to the current interfaces, and starts the attacher and
    /// reader threads.
    pub fn start(cfg: &Config) -> Result<Self, AgentError> {
        // First: a configured but unusable API stops the start before anything is loaded.
        let k8s = K8s::start(&cfg.k8s)?;
        let mut ebpf = ebpf::load(cfg.flows.capacity, cfg.flows.capacity_ipv6)?;
        let maps = ebpf::take_maps(&mut ebpf)?;
        let interfaces = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(AtomicU64::new(0));
        let mut attacher = Attacher::new(
            ebpf,
            cfg.interfaces.clone(),
            Arc::clone(&interfaces),
            Arc::clone(&errors),
        );
        // Subscribe before the dump so no interface created in between is missed.
        let mut monitor = LinkMonitor::new().map_err(AgentError::Netlink)?;
        monitor
            .set_read_timeout(Some(Duration::from_millis(200)))
            .map_err(AgentError::Netlink)?;
        attacher.sync(&netlink::dump_links().map_err(AgentError::Netlink)?);
        info!(interfaces = attacher.len(), "programs attached");

        let timeouts = Timeouts {
            kernel_idle: cfg.flows.kernel_idle_timeout,
            idle: cfg.flows.idle_timeout,
        };
        let capacity = u64::from(cfg.flows.capacity) + u64::from(cfg.flows.capacity_ipv6);
        let mut reader =
            Reader::new(maps, capacity, timeouts, interfaces, errors).map_err(AgentError::Sys)?;
        let export_stats = Arc::new(ExportStats::default());
        reader.set_export_stats(Arc::clone(&export_stats));
        reader.set_budgets(Arc::new(cfg.metrics.budgets(k8s.is_some())));
        reader.set_naming(
            Arc::new(NamingRules::new(&cfg.k8s, k8s.is_some())),
            k8s.as_ref().map(K8s::shared),
        );
        let snapshot: SharedSnapshot = Arc::new(RwLock::new(Arc::new(Snapshot::empty())));
        let stop = Arc::new(AtomicBool::new(false));

        let attach_thread = {
            let stop = Arc::clone(&stop);
            std::thread::Builder::new()
                .name("netprobe-attach".into())
                .spawn(move || watch_links(&mut attacher, &mut monitor, &stop))
                .expect("spawning a thread")
        };
        let read_thread = {
            let stop = Arc::clone(&stop);
            let shared = Arc::clone(&snapshot);
            let interval = cfg.flows.poll_interval;
            std::thread::Builder::new()
                .name("netprobe-read".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let snap = Arc::new(reader.cycle());
                        if let Ok(mut s) = shared.write() {
                            *s = snap;
                        }
                        sleep_until(started + interval, &stop);
                    }
                })
                .expect("spawning a thread")
        };
        Ok(Self {
            snapshot,
            export_stats,
            stop,
            threads: vec![read_thread, attach_thread],
            k8s,
        })
    }

    /// Where the OTLP exporter records what it did (reported in the agent's own metrics).
    pub fn export_stats(&self) -> Arc<ExportStats> {
        Arc::clone(&self.export_stats)
    }

    /// The shared latest snapshot, for the HTTP server.
    pub fn shared_snapshot(&self) -> SharedSnapshot {
        Arc::clone(&self.snapshot)
    }

    /// The latest snapshot.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |s| Arc::clone(&s))
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

    /// Stops reading, detaches every program and frees the maps.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        drop(self.k8s.take());
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn sleep_until(deadline: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
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
