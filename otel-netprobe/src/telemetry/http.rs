//! The embedded HTTP server's own health: connections accepted, refused and closed by reason,
//! and open now. The server (`export::serve`) counts these here; like every event counter they
//! start at 0, and `metrics::http` shows them, appended to each frame by the renderers. A leaf,
//! as the rest of telemetry: it imports nothing of the agent.

use std::sync::atomic::{AtomicU64, Ordering};

use tracing::warn;

/// Why the server closed (or saw the end of) a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub enum Closed {
    /// The client closed it, or HTTP ended it (`Connection: close`, a malformed or too-large
    /// request answered with its error).
    Done,
    /// The request head did not arrive whole within `http.header_read_timeout`.
    HeaderTimeout,
    /// No byte moved either way for `http.idle_timeout`.
    IdleTimeout,
    /// Its slot was given to a new connection while the server was full.
    Evicted,
    /// The agent stopped.
    Shutdown,
}

impl Closed {
    /// Every reason, in the order they are shown.
    pub const ALL: [Closed; 5] = [
        Closed::Done,
        Closed::HeaderTimeout,
        Closed::IdleTimeout,
        Closed::Evicted,
        Closed::Shutdown,
    ];

    /// The `reason` attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Closed::Done => "done",
            Closed::HeaderTimeout => "header_timeout",
            Closed::IdleTimeout => "idle_timeout",
            Closed::Evicted => "evicted",
            Closed::Shutdown => "shutdown",
        }
    }
}

/// The HTTP server's counters.
#[derive(Debug, Default)]
pub struct HttpCounters {
    accepted: AtomicU64,
    refused: AtomicU64,
    closed: [AtomicU64; 5],
    /// Seconds (since the epoch) of the last warning about a full server, to log once a minute.
    last_full_warning: AtomicU64,
}

impl HttpCounters {
    /// A connection was accepted.
    pub fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was refused (closed at once, unserved).
    pub fn refused(&self, why: &str) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.warn_full(why);
    }

    /// A connection ended.
    pub fn closed(&self, reason: Closed) {
        self.closed[reason as usize].fetch_add(1, Ordering::Relaxed);
        if reason == Closed::Evicted {
            self.warn_full("connections are evicted to admit new ones");
        }
    }

    /// Connections accepted so far.
    pub fn accepted_total(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Connections refused so far.
    pub fn refused_total(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Connections closed for `reason` so far.
    pub fn closed_total(&self, reason: Closed) -> u64 {
        self.closed[reason as usize].load(Ordering::Relaxed)
    }

    /// Connections open now: accepted and not yet closed.
    pub fn open(&self) -> u64 {
        let closed: u64 = self.closed.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        self.accepted_total().saturating_sub(closed)
    }

    fn warn_full(&self, what: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let last = self.last_full_warning.load(Ordering::Relaxed);
        if now >= last + 60
            && self
                .last_full_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                what,
                "the HTTP server is full (http.max_connections); counted in netprobe_agent_http_connections_*"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_is_accepted_less_closed() {
        let c = HttpCounters::default();
        for _ in 0..5 {
            c.accepted();
        }
        c.closed(Closed::Evicted);
        c.closed(Closed::HeaderTimeout);
        c.refused("full");
        assert_eq!(c.open(), 3);
        assert_eq!(c.accepted_total(), 5);
        assert_eq!(c.refused_total(), 1);
        assert_eq!(c.closed_total(Closed::Evicted), 1);
        assert_eq!(c.closed_total(Closed::Done), 0);
    }
}
