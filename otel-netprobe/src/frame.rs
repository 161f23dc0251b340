//! The metric frame: what every exporter renders, built once per read cycle on the reader's
//! thread and never changed afterwards.
//!
//! A frame is a list of metric families; each family is its catalogue entry
//! ([`crate::export::names::Metric`]: name, unit, kind, help) and its points; a point is its
//! attributes and a value: an integer or a float (counters and gauges) or a histogram that
//! carries its own bounds. Renderers (Prometheus text, OTLP, the summary) walk families and
//! points and never name a catalogue metric; the metric modules in [`crate::metrics`] fill it.

use std::{
    ops::Deref,
    sync::{Arc, OnceLock},
    time::SystemTime,
};

use crate::export::names::{Kind, Metric};

/// Attribute set of one point, in label order (OTLP names; Prometheus replaces the dots).
pub type Labels = Vec<(&'static str, String)>;

/// A point's attributes, cheap to clone. The points of one series in several families (the
/// flow metrics) share one set, which lives as long as its series is admitted to the budget; a
/// renderer may keep its rendering of a set in the set's memos, so a set is rendered once, not
/// once per point and export.
#[derive(Clone, Debug)]
pub struct Attrs(Arc<AttrSet>);

#[derive(Debug)]
struct AttrSet {
    labels: Labels,
    memos: [OnceLock<Box<[u8]>>; MEMOS],
}

/// Memo slots per attribute set; renderers choose theirs (see [`Attrs::memo`]).
pub const MEMOS: usize = 3;

impl Attrs {
    /// An attribute set.
    pub fn new(labels: Labels) -> Self {
        Self(Arc::new(AttrSet {
            labels,
            memos: Default::default(),
        }))
    }

    /// The rendering of this set kept in memo `slot` (0..[`MEMOS`]; each renderer has its
    /// own), made by `render` the first time.
    pub fn memo(
        &self,
        slot: usize,
        render: impl FnOnce(&[(&'static str, String)]) -> Vec<u8>,
    ) -> &[u8] {
        self.0.memos[slot].get_or_init(|| render(&self.0.labels).into_boxed_slice())
    }

    /// Whether both are the same set (not only equal labels).
    pub fn same(a: &Self, b: &Self) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

impl Deref for Attrs {
    type Target = [(&'static str, String)];

    fn deref(&self) -> &Self::Target {
        &self.0.labels
    }
}

impl PartialEq for Attrs {
    fn eq(&self, other: &Self) -> bool {
        self.0.labels == other.0.labels
    }
}

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

/// Everything the exporters render, taken at one instant.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Wall-clock time the frame was taken (the time of its points).
    pub taken_at: SystemTime,
    /// The metric families, flow metrics first.
    pub families: Vec<Family>,
}

impl Frame {
    /// A frame without families.
    pub fn empty() -> Self {
        Self {
            taken_at: SystemTime::now(),
            families: Vec::new(),
        }
    }

    /// The family of `metric`, if the frame has it.
    pub fn family(&self, metric: &Metric) -> Option<&Family> {
        self.families.iter().find(|f| f.metric.otlp == metric.otlp)
    }
}

/// Points in `families` (what one export carries; a histogram is one point).
pub fn point_count<'a>(families: impl IntoIterator<Item = &'a Family>) -> u64 {
    families.into_iter().map(|f| f.points.len() as u64).sum()
}
