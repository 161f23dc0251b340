//! The agent's own health, exported as `netprobe_agent_*`.
//!
//! Two kinds of figures. State the reader sees each cycle ([`Health`]: table fill, flows
//! tracked, interfaces, the Kubernetes index) is turned into metric families with the frame.
//! Things that happen — a read cycle done or failed, flows moved out of the kernel, an attach
//! or an export that failed — are typed events ([`events`]): each is a struct whose `emit`
//! increments its counter in the shared [`Telemetry`] and logs at a bounded rate. Every
//! counter exists from the start at 0, so dashboards see error counters before the first
//! error. A leaf: it imports nothing of the agent, and anyone may count an event; the renderers
//! append the counters to the frame they render (`metrics::agent`), so nothing an exporter
//! does flows back into the reader.

pub mod events;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use serde::Serialize;

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
    pub interfaces: Vec<crate::ebpf::attach::InterfaceState>,
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

/// Declares [`Count`] and [`Count::ALL`] from one list, so the counter arrays (sized by
/// `ALL`) always have a slot for every variant, and each variant's slot is its position.
macro_rules! counts {
    ($($(#[$doc:meta])* $name:ident,)+) => {
        /// The event counters.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Count {
            $($(#[$doc])* $name,)+
        }

        impl Count {
            /// Every counter, in declaration order: `ALL[c as usize] == c`.
            pub const ALL: &'static [Count] = &[$(Count::$name,)+];
        }
    };
}

counts! {
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

const COUNTS: usize = Count::ALL.len();

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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_start_at_zero_and_logging_is_bounded() {
        let t = Telemetry::with_log_window(Duration::from_secs(3600));
        assert!(Count::ALL.iter().all(|c| t.get(*c) == 0));
        assert_eq!(t.may_log(Count::ExportFailed), Some(0));
        assert_eq!(t.may_log(Count::ExportFailed), None);
        assert_eq!(t.may_log(Count::ExportFailed), None);
        // Another kind has its own window.
        assert_eq!(t.may_log(Count::ReadErrors), Some(0));
        let t = Telemetry::with_log_window(Duration::ZERO);
        assert_eq!(t.may_log(Count::ExportFailed), Some(0));
    }

    #[test]
    fn every_counter_has_its_own_slot() {
        for (i, c) in Count::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i, "{c:?}");
        }
    }
}
