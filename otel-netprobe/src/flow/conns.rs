//! TCP connections in user space: what the kernel's connection table ([`Conn`] entries, one per
//! client port and ISN) says each read cycle, turned into counts per connection flow (client to
//! server, as the first SYN went): opened, failed (refused, unanswered), closed (fin, rst,
//! idle), SYN retransmissions, handshake durations, and the connections open now.
//!
//! Each connection is counted once per outcome: the tracker remembers every entry it has seen
//! (by its key and the time of its SYN) and what it already counted; entries whose story is
//! over are handed back to be deleted from the kernel. The kernel marks events; the timeouts
//! are decided here: no SYN-ACK within `handshake_timeout` is `unanswered`, an open connection
//! whose flow carried nothing for `idle_timeout` is closed as `idle`. [`ConnTable`] reads the
//! kernel table each cycle and files what the tracker says under the flows of [`FlowTable`].

use std::time::Duration;

use aya::maps::MapData;
use netprobe_ebpf::{Conn, ConnKey, FlowKey, conn_event};
use rustc_hash::{FxHashMap, FxHashSet};

use super::FlowTable;
use crate::ebpf::{sys::SysError, table::KernelTable};

/// Upper bounds of the handshake-duration buckets, seconds: 50 µs to 10 s.
pub const HANDSHAKE_BOUNDS: [f64; 17] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Buckets of the handshake histogram (the bounds and one unbounded).
pub const HANDSHAKE_BUCKETS: usize = HANDSHAKE_BOUNDS.len() + 1;

/// Why a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Failure {
    /// A RST answered the SYN.
    Refused,
    /// No SYN-ACK within the handshake timeout.
    Unanswered,
}

/// How a connection closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Close {
    /// Both sides sent FIN.
    Fin,
    /// A RST after the handshake.
    Rst,
    /// Nothing on the connection's flow for the idle timeout.
    Idle,
}

/// Cumulative connection counts of one connection flow.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    /// Handshakes completed.
    pub opened: u64,
    /// Failures: refused, unanswered.
    pub failed: [u64; 2],
    /// Closes: fin, rst, idle.
    pub closed: [u64; 3],
    /// SYNs retransmitted.
    pub syn_retransmits: u64,
    /// Handshake durations per bucket ([`HANDSHAKE_BOUNDS`]).
    pub handshake: [u64; HANDSHAKE_BUCKETS],
    /// Sum of the handshake durations, ns.
    pub handshake_sum_ns: u64,
    /// Connections open now (a gauge, not cumulative).
    pub active: u64,
}

impl ConnCounts {
    /// Whether nothing was ever counted (and none is open).
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    fn observe(&mut self, ns: u64) {
        let seconds = ns as f64 / 1e9;
        let i = HANDSHAKE_BOUNDS
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(HANDSHAKE_BOUNDS.len());
        self.handshake[i] += 1;
        self.handshake_sum_ns += ns;
    }

    /// Adds a cycle's counts (all but `active`, which the cycle sets).
    pub fn add(&mut self, d: &Self) {
        self.opened += d.opened;
        for (t, n) in self.failed.iter_mut().zip(d.failed) {
            *t += n;
        }
        for (t, n) in self.closed.iter_mut().zip(d.closed) {
            *t += n;
        }
        self.syn_retransmits += d.syn_retransmits;
        for (t, n) in self.handshake.iter_mut().zip(d.handshake) {
            *t += n;
        }
        self.handshake_sum_ns += d.handshake_sum_ns;
        self.active = d.active;
    }
}

/// Timeouts the tracker decides by.
#[derive(Clone, Copy, Debug)]
pub struct ConnTimeouts {
    /// A SYN unanswered this long has failed.
    pub handshake: Duration,
    /// An open connection whose flow carried nothing this long is closed.
    pub idle: Duration,
}

/// What the tracker remembers of one kernel entry.
#[derive(Clone, Copy, Debug)]
struct Tracked {
    syn_ns: u64,
    flow: FlowKey,
    retransmits: u32,
    opened: bool,
    done: bool,
    /// For an unanswered handshake: when its SYN was last seen again (0: not lingering). The
    /// entry stays in the kernel while the client may still retry ([`linger_ns`]), so that a
    /// retransmission after the timeout is not a new connection.
    lingering_since: u64,
}

impl Tracked {
    /// A connection first seen as `conn`.
    fn new(conn: &Conn) -> Self {
        Self {
            syn_ns: conn.syn_ns,
            flow: conn.flow,
            retransmits: 0,
            opened: false,
            done: false,
            lingering_since: 0,
        }
    }
}

/// One cycle's outcome.
#[derive(Debug, Default)]
pub struct ConnCycle {
    /// Per connection flow, what this cycle added (its `active` is the current figure).
    pub deltas: FxHashMap<FlowKey, ConnCounts>,
    /// Entries whose story is over, to delete from the kernel table.
    pub finished: Vec<ConnKey>,
    /// Entries that left the kernel table before their story was over (the table was full).
    pub evicted: u64,
}

/// The connection tracker.
#[derive(Debug, Default)]
pub struct ConnTracker {
    tracked: FxHashMap<ConnKey, Tracked>,
}

/// How long an unanswered SYN must stay quiet before its entry goes: a client backs off
/// exponentially (Linux: 1, 2, 4, ... s, about 2 minutes in all), so its next retransmission
/// comes at most about as long after the last one as that one came after the first SYN.
fn linger_ns(t: &Tracked, timeouts: ConnTimeouts) -> u64 {
    let since_syn = t.lingering_since.saturating_sub(t.syn_ns);
    let backoff = since_syn + since_syn / 2 + 1_000_000_000;
    backoff.max(timeouts.handshake.as_nanos() as u64)
}

fn has(c: &Conn, event: usize) -> bool {
    c.events[event] != 0
}

impl ConnTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    /// Connections remembered (open, or waiting for their handshake).
    pub fn len(&self) -> usize {
        self.tracked.len()
    }

    /// True when none is remembered.
    pub fn is_empty(&self) -> bool {
        self.tracked.is_empty()
    }

    /// Takes in the kernel table's entries at monotonic time `now_ns`; `flow_changed_at` says
    /// when a flow's counts last changed (`None`: the flow is gone).
    pub fn ingest(
        &mut self,
        entries: &[(ConnKey, Conn)],
        now_ns: u64,
        timeouts: ConnTimeouts,
        flow_changed_at: impl Fn(&FlowKey) -> Option<u64>,
    ) -> ConnCycle {
        let mut out = ConnCycle::default();
        let mut seen: FxHashSet<ConnKey> = FxHashSet::default();
        for (key, conn) in entries {
            seen.insert(*key);
            let t = self.tracked.entry(*key).or_insert(Tracked::new(conn));
            if t.syn_ns != conn.syn_ns {
                // Another connection with the same port and ISN took the entry's place.
                if !t.done {
                    out.evicted += 1;
                }
                *t = Tracked::new(conn);
            }
            if t.done && t.lingering_since > 0 {
                // An unanswered SYN the client may still be retrying: its retransmissions
                // count, and the entry goes once they stop.
                if conn.syn_retransmits > t.retransmits {
                    let more = conn.syn_retransmits - t.retransmits;
                    out.deltas.entry(conn.flow).or_default().syn_retransmits += u64::from(more);
                    t.retransmits = conn.syn_retransmits;
                    t.lingering_since = now_ns;
                }
                if now_ns.saturating_sub(t.lingering_since) >= linger_ns(t, timeouts) {
                    out.finished.push(*key);
                }
                continue;
            }
            if t.done {
                // Still there: its delete failed; try again.
                out.finished.push(*key);
                continue;
            }
            let d = out.deltas.entry(conn.flow).or_default();
            d.syn_retransmits += u64::from(conn.syn_retransmits.saturating_sub(t.retransmits));
            t.retransmits = t.retransmits.max(conn.syn_retransmits);
            // The duration is written before the event; a copy taken between the two stores
            // shows the event without it: wait for the next cycle.
            if !t.opened && has(conn, conn_event::ANSWERED) && conn.handshake_ns > 0 {
                t.opened = true;
                d.opened += 1;
                d.observe(conn.handshake_ns);
            }
            let age = now_ns.saturating_sub(conn.syn_ns);
            let outcome = if has(conn, conn_event::REFUSED) && !t.opened {
                Some(Err(Failure::Refused))
            } else if !t.opened && age >= timeouts.handshake.as_nanos() as u64 {
                Some(Err(Failure::Unanswered))
            } else if t.opened
                && has(conn, conn_event::FIN_CLIENT)
                && has(conn, conn_event::FIN_SERVER)
            {
                Some(Ok(Close::Fin))
            } else if t.opened && has(conn, conn_event::RESET) {
                Some(Ok(Close::Rst))
            } else if t.opened
                && flow_changed_at(&conn.flow)
                    .is_none_or(|at| now_ns.saturating_sub(at) >= timeouts.idle.as_nanos() as u64)
                && age >= timeouts.idle.as_nanos() as u64
            {
                Some(Ok(Close::Idle))
            } else {
                None
            };
            match outcome {
                Some(Err(f)) => d.failed[f as usize] += 1,
                Some(Ok(c)) => d.closed[c as usize] += 1,
                None => {}
            }
            if matches!(outcome, Some(Err(Failure::Unanswered))) {
                t.done = true;
                t.lingering_since = now_ns;
            } else if outcome.is_some() {
                t.done = true;
                out.finished.push(*key);
            }
        }
        // Entries gone from the kernel: deleted by us (done), or pushed out by the LRU.
        self.tracked.retain(|key, t| {
            let present = seen.contains(key);
            if !present && !t.done {
                out.evicted += 1;
            }
            present
        });
        for t in self.tracked.values() {
            if t.opened && !t.done {
                out.deltas.entry(t.flow).or_default().active += 1;
            }
        }
        out
    }
}

/// Timeouts and capacity of the connection tracking.
#[derive(Clone, Copy, Debug)]
pub struct ConnSettings {
    /// Handshake and idle timeouts.
    pub timeouts: ConnTimeouts,
    /// The kernel table's capacity.
    pub capacity: u32,
}

/// What one read of the connection table found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnRead {
    /// Entries in the kernel table.
    pub entries: u64,
    /// Connections the table pushed out before their end (this cycle).
    pub evicted: u64,
}

/// The kernel's connection table and its tracker.
pub struct ConnTable {
    table: KernelTable<ConnKey, Conn>,
    tracker: ConnTracker,
    settings: ConnSettings,
    /// Flows with open connections after the last cycle (their gauge drops to 0 when none).
    active: Vec<FlowKey>,
}

impl ConnTable {
    /// A reader of the connection table behind `data`.
    pub fn new(data: MapData, settings: ConnSettings) -> Result<Self, SysError> {
        Ok(Self {
            table: KernelTable::new(data, 256)?,
            tracker: ConnTracker::new(),
            settings,
            active: Vec::new(),
        })
    }

    /// The kernel table's capacity.
    pub fn capacity(&self) -> u32 {
        self.settings.capacity
    }

    /// Reads the table at monotonic time `mono_ns` (the connections' clock) into the flows of
    /// `table` (coarse time `now_ns`), and deletes the entries whose story is over.
    pub fn read(
        &mut self,
        table: &mut FlowTable,
        now_ns: u64,
        mono_ns: u64,
    ) -> Result<ConnRead, SysError> {
        let entries: Vec<(ConnKey, Conn)> = {
            let e = self.table.read_all()?;
            e.keys
                .iter()
                .copied()
                .zip(e.values.iter().copied())
                .collect()
        };
        let cycle = self
            .tracker
            .ingest(&entries, mono_ns, self.settings.timeouts, |f| {
                table.changed_at(f)
            });
        for flow in self.active.drain(..) {
            if !cycle.deltas.contains_key(&flow) {
                table.extras_mut(&flow, now_ns, false).conn.active = 0;
            }
        }
        for (flow, d) in &cycle.deltas {
            let news = d.opened
                + d.failed.iter().sum::<u64>()
                + d.closed.iter().sum::<u64>()
                + d.syn_retransmits
                > 0;
            table.extras_mut(flow, now_ns, news).conn.add(d);
            if d.active > 0 {
                self.active.push(*flow);
            }
        }
        for key in &cycle.finished {
            self.table.remove(key)?;
        }
        Ok(ConnRead {
            entries: entries.len() as u64,
            evicted: cycle.evicted,
        })
    }
}

#[cfg(test)]
mod tests;
