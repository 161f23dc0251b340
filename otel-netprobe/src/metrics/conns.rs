//! The TCP connection metrics, per connection flow (client to server, as the first SYN went):
//! opened, failed (by reason), closed (by reason), open now, SYN retransmissions, and the
//! handshake-duration histogram. Points only for series whose flows carried connections.

use super::Cycle;
use crate::{
    export::names::{self, attr},
    flow::{
        FlowView,
        conns::{ConnCounts, HANDSHAKE_BOUNDS},
    },
    frame::Family,
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
    out.push(set.counter_by(&names::TCP_OPENED, flows, &[], |f, emit| {
        if let Some(n) = conn(f) {
            emit(&[], n.opened);
        }
    }));
    out.push(set.counter_by(
        &names::TCP_FAILED,
        flows,
        &[attr::TCP_FAILURE_REASON],
        |f, emit| {
            for (reason, n) in ["refused", "unanswered"]
                .iter()
                .zip(conn(f).map(|c| c.failed).unwrap_or_default())
            {
                if n > 0 {
                    emit(&[reason], n);
                }
            }
        },
    ));
    out.push(set.counter_by(
        &names::TCP_CLOSED,
        flows,
        &[attr::TCP_CLOSE_REASON],
        |f, emit| {
            for (reason, n) in ["fin", "rst", "idle"]
                .iter()
                .zip(conn(f).map(|c| c.closed).unwrap_or_default())
            {
                if n > 0 {
                    emit(&[reason], n);
                }
            }
        },
    ));
    // A gauge, summed over the series' flows like the counters (and in the summary's totals).
    out.push(set.counter_by(&names::TCP_ACTIVE, flows, &[], |f, emit| {
        if let Some(n) = conn(f) {
            emit(&[], n.active);
        }
    }));
    out.push(
        set.counter_by(&names::TCP_SYN_RETRANSMITS, flows, &[], |f, emit| {
            if let Some(n) = conn(f) {
                emit(&[], n.syn_retransmits);
            }
        }),
    );
    out.push(
        set.histogram_of(&names::TCP_HANDSHAKE, &HANDSHAKE_BOUNDS, flows, |f| {
            conn(f)
                .filter(|n| n.opened > 0)
                .map(|n| (&n.handshake[..], n.handshake_sum_ns as f64 / 1e9))
        }),
    );
}
