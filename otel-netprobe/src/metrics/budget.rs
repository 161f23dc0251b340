//! The cardinality budget's use: series per flow metric (the overflow series included) and the
//! flows counted in each metric's overflow series.

use super::{
    Cycle, Family, Module, Value,
    catalogue::metric,
    flows::{FLOW_BYTES, FLOW_PACKETS, PACKET_SIZE},
};
use crate::flow::SeriesSet;

metric!(
    AGENT_SERIES,
    "netprobe.agent.series",
    "{series}",
    "netprobe_agent_series",
    Gauge,
    own[METRIC],
    "Series each flow metric reports, the overflow series included."
);

metric!(
    AGENT_SERIES_OVERFLOW,
    "netprobe.agent.series.overflow_flows",
    "{flow}",
    "netprobe_agent_series_overflow_flows",
    Gauge,
    own[METRIC],
    "Flows counted in a metric's overflow series (otel.metric.overflow=true): over the series budget."
);

/// A metric's OTLP name.
pub const METRIC: &str = "metric";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[&AGENT_SERIES, &AGENT_SERIES_OVERFLOW],
    families: Some(families),
    counts: None,
};

/// Adds the budget families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let sets: [(&str, &SeriesSet); 3] = [
        (FLOW_PACKETS.otlp, &c.series.flows),
        (FLOW_BYTES.otlp, &c.series.flows),
        (PACKET_SIZE.otlp, c.series.sizes()),
    ];
    let by_metric = |f: fn(&SeriesSet) -> u64| sets.map(|(m, set)| (m, Value::Int(f(set))));
    out.push(Family::by(
        &AGENT_SERIES,
        METRIC,
        by_metric(|s| s.series.len() as u64),
    ));
    out.push(Family::by(
        &AGENT_SERIES_OVERFLOW,
        METRIC,
        by_metric(|s| s.overflow_flows),
    ));
}
