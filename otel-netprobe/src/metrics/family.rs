//! A metric's points: the [`Family`] a metric module fills each cycle (its catalogue entry and
//! one point per series), and what a point holds — attributes and a value: an integer or a
//! float (counters and gauges) or a histogram that carries its own bounds.

use super::catalogue::{Kind, Metric};
use crate::flow::{Attrs, Labels};

/// A histogram point: bucket counts against explicit upper bounds (inclusive; the last bucket
/// is unbounded, so there is one more count than bounds), their sum and count.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Upper bounds of the buckets, ascending.
    pub bounds: &'static [f64],
    /// Observations per bucket (`bounds.len() + 1` of them).
    pub counts: Box<[u64]>,
    /// Sum of the observations.
    pub sum: f64,
    /// Number of observations (the sum of `counts`).
    pub count: u64,
}

/// A point's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A whole number (counts).
    Int(u64),
    /// A real number (ratios, durations).
    Double(f64),
    /// A distribution.
    Histogram(Histogram),
}

/// One point: attributes and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// Its attributes.
    pub attrs: Attrs,
    /// Its value.
    pub value: Value,
}

/// One metric and its points.
#[derive(Clone, Debug, PartialEq)]
pub struct Family {
    /// The catalogue entry.
    pub metric: &'static Metric,
    /// The points, in a stable order.
    pub points: Vec<Point>,
    /// Whether the traffic summary shows this family's total, and split by which of its
    /// attributes (`None`: not in the summary). The flow metrics are totalled over their
    /// series; a metric with an attribute of its own (a drop reason) is split by it.
    pub totals_by: Option<&'static [&'static str]>,
}

impl Family {
    /// A family without points.
    pub fn new(metric: &'static Metric) -> Self {
        Self {
            metric,
            points: Vec::new(),
            totals_by: None,
        }
    }

    /// A family of one point without attributes.
    pub fn single(metric: &'static Metric, value: Value) -> Self {
        let mut f = Self::new(metric);
        f.push(Vec::new(), value);
        f
    }

    /// A family of one point per `(attribute value, value)` of one attribute.
    pub fn by<V: Into<Value>>(
        metric: &'static Metric,
        key: &'static str,
        rows: impl IntoIterator<Item = (impl Into<String>, V)>,
    ) -> Self {
        let mut f = Self::new(metric);
        for (k, v) in rows {
            f.push(vec![(key, k.into())], v.into());
        }
        f
    }

    /// Adds a point.
    pub fn push(&mut self, labels: Labels, value: Value) {
        self.push_shared(Attrs::new(labels), value);
    }

    /// Adds a point with attributes shared with other points.
    pub fn push_shared(&mut self, attrs: Attrs, value: Value) {
        debug_assert!(
            matches!(
                (self.metric.kind, &value),
                (Kind::Histogram, Value::Histogram(_))
                    | (
                        Kind::Counter | Kind::Gauge,
                        Value::Int(_) | Value::Double(_)
                    )
            ),
            "{}: a {} takes no {value:?}",
            self.metric.otlp,
            self.metric.kind
        );
        self.points.push(Point { attrs, value });
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v)
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Double(v)
    }
}
