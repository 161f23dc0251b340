//! The agent's HTTP server's own connections (`netprobe_agent_http_connections_*`): accepted
//! and refused, closed by reason, open now. The server (`export::serve`) counts them in
//! [`crate::telemetry::http`]; like the other event counters they are rendered with their live
//! values, appended to each frame by [`super::agent::families`], not with the cycle's frame.

use super::{
    Family, Module, Value,
    agent::REASON,
    catalogue::{attr::RESULT, metric},
};
use crate::telemetry::http::{Closed, HttpCounters};

metric!(
    AGENT_HTTP_CONNECTIONS,
    "netprobe.agent.http.connections",
    "{connection}",
    "netprobe_agent_http_connections_total",
    Counter,
    own[RESULT],
    "Connections to the agent's HTTP server: accepted, or refused (every slot busy answering a request, or accept failed)."
);

metric!(
    AGENT_HTTP_CONNECTIONS_CLOSED,
    "netprobe.agent.http.connections.closed",
    "{connection}",
    "netprobe_agent_http_connections_closed_total",
    Counter,
    own[REASON],
    "HTTP connections closed, by reason: done (the client or the protocol ended it), header_timeout, idle_timeout, evicted (its slot given to a newcomer), shutdown."
);

metric!(
    AGENT_HTTP_CONNECTIONS_OPEN,
    "netprobe.agent.http.connections.open",
    "{connection}",
    "netprobe_agent_http_connections_open",
    Gauge,
    own [],
    "HTTP connections open now (at most http.max_connections)."
);

/// This module: its entries; rendered with the agent's event counters (see [`families`]).
pub const MODULE: Module = Module {
    metrics: &[
        &AGENT_HTTP_CONNECTIONS,
        &AGENT_HTTP_CONNECTIONS_CLOSED,
        &AGENT_HTTP_CONNECTIONS_OPEN,
    ],
    families: None,
    counts: &[],
};

/// The HTTP server's counters as metric families, every point from the start (at 0), in
/// [`MODULE`] order.
pub fn families(c: &HttpCounters) -> Vec<Family> {
    vec![
        Family::by(
            &AGENT_HTTP_CONNECTIONS,
            RESULT,
            [
                ("accepted", Value::Int(c.accepted_total())),
                ("refused", Value::Int(c.refused_total())),
            ],
        ),
        Family::by(
            &AGENT_HTTP_CONNECTIONS_CLOSED,
            REASON,
            Closed::ALL.map(|r| (r.as_str(), Value::Int(c.closed_total(r)))),
        ),
        Family::single(&AGENT_HTTP_CONNECTIONS_OPEN, Value::Int(c.open())),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_is_shown_from_the_start_and_open_is_accepted_less_closed() {
        let c = HttpCounters::default();
        let f = families(&c);
        let names: Vec<&str> = f.iter().map(|f| f.metric.otlp).collect();
        let declared: Vec<&str> = MODULE.metrics.iter().map(|m| m.otlp).collect();
        assert_eq!(names, declared, "one family per entry, in order");
        let points: Vec<_> = f.iter().flat_map(|f| &f.points).collect();
        assert_eq!(points.len(), 2 + Closed::ALL.len() + 1);
        assert!(points.iter().all(|p| p.value == Value::Int(0)));

        for _ in 0..5 {
            c.accepted();
        }
        c.closed(Closed::Evicted);
        c.closed(Closed::HeaderTimeout);
        c.refused("full");
        let f = families(&c);
        let open = &f[2].points[0];
        assert_eq!(open.value, Value::Int(3));
        let refused = &f[0].points[1];
        assert_eq!(refused.value, Value::Int(1));
    }
}
