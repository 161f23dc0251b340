//! The agent's own event counters (`netprobe_agent_read_cycles_total`, export results, ...):
//! typed events in [`crate::telemetry`] count them as they happen; the renderers append their
//! families to each frame they render, with the values of that moment, so nothing an
//! exporter does flows back into the reader.

use super::{
    Family, Metric, Module, Value,
    catalogue::{attr::RESULT, metric},
};
use crate::telemetry::{Count, Telemetry};

metric!(
    AGENT_READ_CYCLES,
    "netprobe.agent.read.cycles",
    "{cycle}",
    "netprobe_agent_read_cycles_total",
    Counter,
    own [],
    "Kernel map read cycles completed."
);

metric!(
    AGENT_READ_ERRORS,
    "netprobe.agent.read.errors",
    "{cycle}",
    "netprobe_agent_read_errors_total",
    Counter,
    own [],
    "Kernel map read cycles that failed."
);

metric!(
    AGENT_EVICTIONS,
    "netprobe.agent.evictions",
    "{flow}",
    "netprobe_agent_evictions_total",
    Counter,
    own[REASON],
    "Flows moved out of the kernel table (reason=kernel_idle) or forgotten (reason=expired)."
);

metric!(
    AGENT_ATTACH_ERRORS,
    "netprobe.agent.attach.errors",
    "{error}",
    "netprobe_agent_attach_errors_total",
    Counter,
    own [],
    "Attach attempts that failed."
);

metric!(
    AGENT_EXPORT_REQUESTS,
    "netprobe.agent.export.requests",
    "{request}",
    "netprobe_agent_export_requests_total",
    Counter,
    own[RESULT],
    "OTLP export requests, by result (ok, failed)."
);

metric!(
    AGENT_EXPORT_DROPPED,
    "netprobe.agent.export.dropped",
    "{datapoint}",
    "netprobe_agent_export_dropped_total",
    Counter,
    own [],
    "Data points of failed OTLP exports (the next export carries the totals)."
);

metric!(
    AGENT_CONNS_EVICTED,
    "netprobe.agent.connections.evicted",
    "{connection}",
    "netprobe_agent_connections_evicted_total",
    Counter,
    own [],
    "Connections the full kernel table pushed out before their end (their outcome is not counted)."
);

metric!(
    AGENT_CARRY_UNSAVED,
    "netprobe.agent.carry.unsaved",
    "{flow}",
    "netprobe_agent_carry_unsaved_total",
    Counter,
    own [],
    "Flows whose counts that left the kernel table the full carry store could not keep (a restart continues them from their kernel entry only)."
);

/// Eviction reason.
pub const REASON: &str = "reason";

metric!(
    AGENT_EXPORT_REJECTED,
    "netprobe.agent.export.rejected",
    "{datapoint}",
    "netprobe_agent_export_rejected_total",
    Counter,
    own [],
    "Data points the OTLP backend rejected in requests it accepted (partial success)."
);

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[
        &AGENT_READ_CYCLES,
        &AGENT_READ_ERRORS,
        &AGENT_EVICTIONS,
        &AGENT_ATTACH_ERRORS,
        &AGENT_EXPORT_REQUESTS,
        &AGENT_EXPORT_DROPPED,
        &AGENT_EXPORT_REJECTED,
        &AGENT_CONNS_EVICTED,
        &AGENT_CARRY_UNSAVED,
    ],
    // Rendered with each export from the counters' live values (see [`families`]), not
    // with the cycle's frame.
    families: None,
    counts: &[],
};

/// Where each counter is shown: its metric and its attribute, if the metric has one. A match
/// without a catch-all, so a new counter does not compile until it has its place.
fn place(c: Count) -> (&'static Metric, Option<(&'static str, &'static str)>) {
    match c {
        Count::ReadCycles => (&AGENT_READ_CYCLES, None),
        Count::ReadErrors => (&AGENT_READ_ERRORS, None),
        Count::MovedOut => (&AGENT_EVICTIONS, Some((REASON, "kernel_idle"))),
        Count::Expired => (&AGENT_EVICTIONS, Some((REASON, "expired"))),
        Count::AttachErrors => (&AGENT_ATTACH_ERRORS, None),
        Count::ExportOk => (&AGENT_EXPORT_REQUESTS, Some((RESULT, "ok"))),
        Count::ExportFailed => (&AGENT_EXPORT_REQUESTS, Some((RESULT, "failed"))),
        Count::ExportDropped => (&AGENT_EXPORT_DROPPED, None),
        Count::ExportRejected => (&AGENT_EXPORT_REJECTED, None),
        Count::ConnsEvicted => (&AGENT_CONNS_EVICTED, None),
        Count::CarryFull => (&AGENT_CARRY_UNSAVED, None),
    }
}

/// The counters of `t` as metric families, every counter from the start (at 0 before its
/// first event), in the order of [`Count::ALL`], then the HTTP server's ([`super::http`]).
pub fn families(t: &Telemetry) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::with_capacity(Count::ALL.len());
    for &c in Count::ALL {
        let (metric, attr) = place(c);
        let labels = attr
            .map(|(k, v)| vec![(k, v.to_owned())])
            .unwrap_or_default();
        let value = Value::Int(t.get(c));
        match out.last_mut() {
            Some(f) if f.metric == metric => f.push(labels, value),
            _ => {
                let mut f = Family::new(metric);
                f.push(labels, value);
                out.push(f);
            }
        }
    }
    out.extend(super::http::families(&t.http));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_shown_from_the_start() {
        let f = families(&Telemetry::default());
        let points: Vec<_> = f.iter().flat_map(|f| &f.points).collect();
        let http = super::super::http::families(&Telemetry::default().http);
        let http_points = http.iter().map(|f| f.points.len()).sum::<usize>();
        assert_eq!(points.len(), Count::ALL.len() + http_points);
        assert!(points.iter().all(|p| p.value == Value::Int(0)));
        let names: Vec<&str> = f.iter().map(|f| f.metric.otlp).collect();
        let declared: Vec<&str> = MODULE
            .metrics
            .iter()
            .chain(super::super::http::MODULE.metrics)
            .map(|m| m.otlp)
            .collect();
        assert_eq!(names, declared, "one family per entry, in order");
    }
}
