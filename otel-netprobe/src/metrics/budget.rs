//! The cardinality budget's use: series per flow metric (the overflow series included) and the
//! flows counted in each metric's overflow series.

use super::Cycle;
use crate::{
    export::names::{self, attr},
    flow::SeriesSet,
    frame::{Family, Value},
};

/// Adds the budget families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let sets: [(&str, &SeriesSet); 3] = [
        (names::FLOW_PACKETS.otlp, &c.series.flows),
        (names::FLOW_BYTES.otlp, &c.series.flows),
        (names::PACKET_SIZE.otlp, c.series.sizes()),
    ];
    let by_metric = |f: fn(&SeriesSet) -> u64| sets.map(|(m, set)| (m, Value::Int(f(set))));
    out.push(Family::by(
        &names::AGENT_SERIES,
        attr::METRIC,
        by_metric(|s| s.series.len() as u64),
    ));
    out.push(Family::by(
        &names::AGENT_SERIES_OVERFLOW,
        attr::METRIC,
        by_metric(|s| s.overflow_flows),
    ));
}
