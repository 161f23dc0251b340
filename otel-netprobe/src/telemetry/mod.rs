//! The agent's own health, exported as `netprobe_agent_*`.
//!
//! Two kinds of figures. State the reader sees each cycle ([`Health`]: table fill, flows
//! tracked, interfaces, the Kubernetes index) is turned into metric families with the frame.
//! Things that happen — a read cycle done or failed, flows moved out of the kernel, an attach
//! or an export that failed — are typed events ([`events`]): each is a struct whose `emit`
//! increments its counter in the shared [`Telemetry`] and logs at a bounded rate. Every
//! counter exists from the start at 0, so dashboards see error counters before the first
//! error. Renderers append [`Telemetry::families`] to the frame they render, so nothing an
//! exporter does flows back into the reader.

pub mod events;
pub mod http;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;

use crate::{
    export::names::{self, attr},
    frame::{Family, Value},
};

/// One interface the agent attached to (or tried to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceState {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Ingress hook in use (`xdp`, `xdp_generic`, `tc`, or `none` if attaching failed).
    pub hook: &'static str,
    /// Whether TC egress (locally originated packets) is attached.
    pub egress: bool,
    /// How the TC programs are attached: `tcx` (kernel 6.6 on), `clsact` (a cls_bpf filter on
    /// a clsact qdisc, before), or `none` (XDP only).
    pub tc_attach: &'static str,
}

/// What the reader saw in its latest cycle, copied into every snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    /// Kernel flow table capacity.
    pub flow_table_capacity: u64,
    /// Entries in the kernel flow table at the last read.
    pub flow_table_entries: u64,
    /// Kernel memory of the flow table (the kernel's own accounting), bytes.
    pub flow_table_memory_bytes: u64,
    /// Flows tracked in user space.
    pub flows_tracked: u64,
    /// Read cycles completed, this snapshot's included (the [`Count::ReadCycles`] counter as
    /// of this cycle; likewise the next two).
    pub read_cycles_total: u64,
    /// Kernel entries moved out because idle (counts kept).
    pub kernel_evictions_total: u64,
    /// Flows forgotten because idle.
    pub flows_expired_total: u64,
    /// Duration of the last read cycle, seconds.
    pub last_read_seconds: f64,
    /// Interfaces currently attached.
    pub interfaces: Vec<InterfaceState>,
    /// The Kubernetes watchers' figures (`None`: standalone).
    pub k8s: Option<crate::k8s::K8sHealth>,
    /// The connection, drop and ICMP-error tables' figures.
    #[serde(skip)]
    pub tables: crate::ebpf::tables::TableFigures,
    /// What the running kernel offers the agent, as (feature, present).
    pub features: Vec<(&'static str, bool)>,
    /// The running kernel's release.
    pub kernel: String,
}

/// The event counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Count {
    /// Read cycles completed.
    ReadCycles,
    /// Read cycles that failed.
    ReadErrors,
    /// Flows moved out of the kernel table because idle (their counts kept).
    MovedOut,
    /// Flows forgotten because idle.
    Expired,
    /// Attach attempts that failed.
    AttachErrors,
    /// OTLP export requests the backend accepted.
    ExportOk,
    /// OTLP export requests that failed after their retries.
    ExportFailed,
    /// Data points of the failed requests.
    ExportDropped,
    /// Connections the kernel table pushed out before their end (it was full).
    ConnsEvicted,
}

const COUNTS: usize = Count::ConnsEvicted as usize + 1;

/// At most one log line per event kind per window; the next says how many were left out.
#[derive(Debug, Default)]
struct RateLimit {
    /// Milliseconds since [`Telemetry::started`] of the last line, plus one (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

/// The event counters of one agent, shared by every component that emits events.
#[derive(Debug)]
pub struct Telemetry {
    counts: [AtomicU64; COUNTS],
    /// The embedded HTTP server's connections.
    pub http: http::HttpCounters,
    limits: [RateLimit; COUNTS],
    started: Instant,
    window: Duration,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::with_log_window(Duration::from_secs(60))
    }
}

impl Telemetry {
    /// Counters at 0; repeated log lines of one event kind at most once per `window`.
    pub fn with_log_window(window: Duration) -> Self {
        Self {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            http: http::HttpCounters::default(),
            limits: std::array::from_fn(|_| RateLimit::default()),
            started: Instant::now(),
            window,
        }
    }

    /// The value of a counter.
    pub fn get(&self, c: Count) -> u64 {
        self.counts[c as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, c: Count, n: u64) {
        self.counts[c as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Whether an event of kind `c` may log now; `Some(n)`: yes, and `n` lines were left out
    /// since the last one.
    pub(crate) fn may_log(&self, c: Count) -> Option<u64> {
        let limit = &self.limits[c as usize];
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = limit.last.load(Ordering::Relaxed);
        let window = self.window.as_millis() as u64;
        if last != 0 && now < last + window
            || limit
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            limit.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(limit.suppressed.swap(0, Ordering::Relaxed))
    }

    /// The counters as metric families, in catalogue order.
    pub fn families(&self) -> Vec<Family> {
        let n = |c| Value::Int(self.get(c));
        vec![
            Family::single(&names::AGENT_READ_CYCLES, n(Count::ReadCycles)),
            Family::single(&names::AGENT_READ_ERRORS, n(Count::ReadErrors)),
            Family::by(
                &names::AGENT_EVICTIONS,
                attr::REASON,
                [
                    ("kernel_idle", n(Count::MovedOut)),
                    ("expired", n(Count::Expired)),
                ],
            ),
            Family::single(&names::AGENT_ATTACH_ERRORS, n(Count::AttachErrors)),
            Family::by(
                &names::AGENT_EXPORT_REQUESTS,
                attr::RESULT,
                [
                    ("ok", n(Count::ExportOk)),
                    ("failed", n(Count::ExportFailed)),
                ],
            ),
            Family::single(&names::AGENT_EXPORT_DROPPED, n(Count::ExportDropped)),
            Family::single(&names::AGENT_CONNS_EVICTED, n(Count::ConnsEvicted)),
        ]
        .into_iter()
        .chain(self.http.families())
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_and_logging_is_bounded() {
        let t = Telemetry::with_log_window(Duration::from_secs(3600));
        let f = t.families();
        let points: Vec<_> = f.iter().flat_map(|f| &f.points).collect();
        assert_eq!(points.len(), 9 + 8);
        assert!(points.iter().all(|p| p.value == Value::Int(0)));
        assert_eq!(t.may_log(Count::ExportFailed), Some(0));
        assert_eq!(t.may_log(Count::ExportFailed), None);
        assert_eq!(t.may_log(Count::ExportFailed), None);
        // Another kind has its own window.
        assert_eq!(t.may_log(Count::ReadErrors), Some(0));
        let t = Telemetry::with_log_window(Duration::ZERO);
        assert_eq!(t.may_log(Count::ExportFailed), Some(0));
    }
}
