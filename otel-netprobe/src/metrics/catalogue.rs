//! The catalogue's vocabulary: what a catalogue entry says of a metric (OTLP name, unit,
//! Prometheus name, kind, help, and the attributes its points carry). Each metric module
//! declares its entries with [`metric!`] next to the code that fills them and lists them in its
//! [`super::Module`]; [`all`] is the catalogue, read by the docs, the dashboards' and alerts'
//! checks and every renderer (through the frame).
//!
//! OTLP names are dotted; the Prometheus names are what the Collector's prometheus exporter
//! makes of them (dots to underscores, unit suffix, `_total` on counters), and what the agent's
//! own `/metrics` serves, so dashboards work either way.

/// What a metric's points are: cumulative counters, gauges, or histograms with their bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A monotonic cumulative sum (OTLP `Sum`, Prometheus `counter`).
    Counter,
    /// A value at the time of the frame (OTLP `Gauge`, Prometheus `gauge`).
    Gauge,
    /// Bucket counts, sum and count (OTLP `Histogram`, Prometheus `histogram`).
    Histogram,
}

impl Kind {
    /// `counter`, `gauge` or `histogram`: the Prometheus `# TYPE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A catalogue entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Metric {
    /// OTLP name.
    pub otlp: &'static str,
    /// UCUM unit.
    pub unit: &'static str,
    /// Prometheus name (without `_bucket`/`_sum`/`_count` for histograms).
    pub prometheus: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// One-line help text.
    pub help: &'static str,
    /// The attributes of its own its points carry (OTLP names), e.g. a drop reason.
    pub attributes: &'static [&'static str],
    /// Whether it is counted per flow: its points also carry the flow attributes chosen in
    /// `metrics.flow_attributes`, under the series budget.
    pub per_flow: bool,
}

/// Declares a catalogue entry as a `pub const`, documented by its help text:
/// `metric!(ID, "otlp.name", "unit", "prometheus_name", Kind, flow [attrs], "help")` for a
/// metric counted per flow (its points carry the flow attributes and `attrs`), `own [attrs]`
/// for one whose points carry only `attrs`.
macro_rules! metric {
    ($id:ident, $otlp:literal, $unit:literal, $prom:literal, $kind:ident,
     flow [$($attr:expr),* $(,)?], $help:literal) => {
        metric!(@ $id, $otlp, $unit, $prom, $kind, true, [$($attr),*], $help);
    };
    ($id:ident, $otlp:literal, $unit:literal, $prom:literal, $kind:ident,
     own [$($attr:expr),* $(,)?], $help:literal) => {
        metric!(@ $id, $otlp, $unit, $prom, $kind, false, [$($attr),*], $help);
    };
    (@ $id:ident, $otlp:literal, $unit:literal, $prom:literal, $kind:ident, $flow:literal,
     [$($attr:expr),*], $help:literal) => {
        #[doc = $help]
        pub const $id: $crate::metrics::Metric = $crate::metrics::Metric {
            otlp: $otlp,
            unit: $unit,
            prometheus: $prom,
            kind: $crate::metrics::Kind::$kind,
            help: $help,
            attributes: &[$($attr),*],
            per_flow: $flow,
        };
    };
}
pub(crate) use metric;

/// Attribute names more than one module's metrics carry.
pub mod attr {
    /// An outcome: of an export (`ok`, `failed`), of a Kubernetes lookup (`found`, ...).
    pub const RESULT: &str = "result";
}

/// Every metric in the catalogue, module by module in [`super::MODULES`] order.
pub fn all() -> impl Iterator<Item = &'static Metric> {
    super::MODULES
        .iter()
        .flat_map(|m| m.metrics.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names_follow_the_collector_rules() {
        for m in all() {
            let base = m.otlp.replace('.', "_");
            let unit = match m.unit {
                "By" => "_bytes",
                "s" => "_seconds",
                "1" if m.prometheus.ends_with("_ratio") => "_ratio",
                _ => "",
            };
            let mut expected = base.clone();
            if !expected.ends_with(unit) {
                expected.push_str(unit);
            }
            if m.kind == Kind::Counter {
                expected.push_str("_total");
            }
            assert_eq!(m.prometheus, expected, "{}", m.otlp);
        }
    }

    #[test]
    fn every_name_is_declared_once() {
        let mut seen = std::collections::BTreeSet::new();
        for m in all() {
            assert!(seen.insert(m.otlp), "{} twice", m.otlp);
        }
    }
}
