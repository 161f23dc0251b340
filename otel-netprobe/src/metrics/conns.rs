//! The TCP connection metrics, per connection flow (client to server, as the first SYN went):
//! opened, failed (by reason), closed (by reason), open now, SYN retransmissions, and the
//! handshake-duration histogram. Points only for series whose flows carried connections.

use super::{Cycle, Family, Module, SeriesFamilies as _, catalogue::metric};
use crate::flow::{
    FlowView,
    conns::{ConnCounts, HANDSHAKE_BOUNDS},
};

metric!(
    TCP_OPENED,
    "netprobe.tcp.connections.opened",
    "{connection}",
    "netprobe_tcp_connections_opened_total",
    Counter,
    flow [],
    "TCP connections whose handshake completed as seen on the node (a SYN answered by its SYN-ACK), client to server."
);

metric!(
    TCP_FAILED,
    "netprobe.tcp.connections.failed",
    "{connection}",
    "netprobe_tcp_connections_failed_total",
    Counter,
    flow[TCP_FAILURE_REASON],
    "TCP connections that failed: netprobe.tcp.failure.reason=refused (a RST answered the SYN) or unanswered (no SYN-ACK within the handshake timeout)."
);

metric!(
    TCP_CLOSED,
    "netprobe.tcp.connections.closed",
    "{connection}",
    "netprobe_tcp_connections_closed_total",
    Counter,
    flow[TCP_CLOSE_REASON],
    "TCP connections that closed: netprobe.tcp.close.reason=fin (both sides), rst (after the handshake) or idle (past the idle timeout)."
);

metric!(
    TCP_ACTIVE,
    "netprobe.tcp.connections.active",
    "{connection}",
    "netprobe_tcp_connections_active",
    Gauge,
    flow [],
    "TCP connections open now (opened since the agent started, not closed)."
);

metric!(
    TCP_HANDSHAKE,
    "netprobe.tcp.handshake.duration",
    "s",
    "netprobe_tcp_handshake_duration_seconds",
    Histogram,
    flow [],
    "First SYN to the matching SYN-ACK, as seen on the node (retransmissions included in the wait)."
);

metric!(
    TCP_SYN_RETRANSMITS,
    "netprobe.tcp.syn.retransmits",
    "{packet}",
    "netprobe_tcp_syn_retransmits_total",
    Counter,
    flow [],
    "SYNs a client sent again (same ISN) while waiting for an answer."
);

/// Why a TCP connection failed: `refused`, `unanswered`.
pub const TCP_FAILURE_REASON: &str = "netprobe.tcp.failure.reason";
/// How a TCP connection closed: `fin`, `rst`, `idle`.
pub const TCP_CLOSE_REASON: &str = "netprobe.tcp.close.reason";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[
        &TCP_OPENED,
        &TCP_FAILED,
        &TCP_CLOSED,
        &TCP_ACTIVE,
        &TCP_SYN_RETRANSMITS,
        &TCP_HANDSHAKE,
    ],
    families: Some(families),
    counts: None,
};

fn conn(f: &FlowView) -> Option<&ConnCounts> {
    f.extras
        .as_deref()
        .map(|e| &e.conn)
        .filter(|c| !c.is_empty())
}

/// Adds the connection families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    out.push(set.counter_by(&TCP_OPENED, flows, &[], |f, emit| {
        if let Some(n) = conn(f) {
            emit(&[], n.opened);
        }
    }));
    out.push(
        set.counter_by(&TCP_FAILED, flows, &[TCP_FAILURE_REASON], |f, emit| {
            for (reason, n) in ["refused", "unanswered"]
                .iter()
                .zip(conn(f).map(|c| c.failed).unwrap_or_default())
            {
                if n > 0 {
                    emit(&[reason], n);
                }
            }
        }),
    );
    out.push(
        set.counter_by(&TCP_CLOSED, flows, &[TCP_CLOSE_REASON], |f, emit| {
            for (reason, n) in ["fin", "rst", "idle"]
                .iter()
                .zip(conn(f).map(|c| c.closed).unwrap_or_default())
            {
                if n > 0 {
                    emit(&[reason], n);
                }
            }
        }),
    );
    // A gauge, summed over the series' flows like the counters (and in the summary's totals).
    out.push(set.counter_by(&TCP_ACTIVE, flows, &[], |f, emit| {
        if let Some(n) = conn(f) {
            emit(&[], n.active);
        }
    }));
    out.push(set.counter_by(&TCP_SYN_RETRANSMITS, flows, &[], |f, emit| {
        if let Some(n) = conn(f) {
            emit(&[], n.syn_retransmits);
        }
    }));
    out.push(
        set.histogram_by(&TCP_HANDSHAKE, &HANDSHAKE_BOUNDS, flows, &[], |f, emit| {
            if let Some(n) = conn(f).filter(|n| n.opened > 0) {
                emit(&[], &n.handshake, n.handshake_sum_ns as f64 / 1e9);
            }
        }),
    );
}
