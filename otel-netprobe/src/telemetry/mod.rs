//! The agent's own events, exported as `netprobe_agent_*` counters.
//!
//! Things that happen — a read cycle done or failed, flows moved out of the kernel, an attach
//! or an export that failed — are typed events ([`events`]): each is a struct whose `emit`
//! increments its counter in the shared [`Telemetry`] and logs at a bounded rate. Every
//! counter exists from the start at 0, so dashboards see error counters before the first
//! error. (State the reader sees each cycle — table fill, flows tracked, interfaces — is
//! `flow::Health`, turned into families with the frame.) A leaf: it imports nothing of the agent, and anyone may count an event; the renderers
//! append the counters to the frame they render (`metrics::agent`), so nothing an exporter
//! does flows back into the reader.

pub mod events;
pub mod http;

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

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
    /// Data points of accepted requests that the backend rejected (OTLP partial success).
    ExportRejected,
    /// Connections the kernel table pushed out before their end (it was full).
    ConnsEvicted,
    /// Flows whose carried counts the full carry store could not keep.
    CarryFull,
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
