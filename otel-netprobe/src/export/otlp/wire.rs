//! A direct protobuf writer for the export request: the message prost would produce from
//! [`super::encode::Encoder::request`], without building the message tree and without prost's
//! repeated length computations at every nesting level (measured: most of the export cycle's
//! cost at 10k+ series). An attribute set shared by several families' points (the flow series)
//! is encoded once while its series lives (memo 0 and 1 of [`Attrs::memo`]). A test decodes the
//! output with prost and compares it with the reference.

use crate::{
    flow::Attrs,
    metrics::{Family, Histogram, Kind, Metric, Value},
};

const LEN: u32 = 2;
const I64: u32 = 1;
const VARINT: u32 = 0;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Length of a length-delimited field (tag + length + payload) with a one-byte tag.
fn field_len(payload: usize) -> usize {
    1 + varint_len(payload as u64) + payload
}

/// An output buffer with protobuf primitives (field numbers < 16: one-byte tags).
struct W(Vec<u8>);

impl W {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn tag(&mut self, field: u32, wire: u32) {
        self.0.push(((field << 3) | wire) as u8);
    }
    fn len_prefix(&mut self, field: u32, len: usize) {
        self.tag(field, LEN);
        self.varint(len as u64);
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.len_prefix(field, b.len());
        self.0.extend_from_slice(b);
    }
    fn fixed64(&mut self, field: u32, v: u64) {
        self.tag(field, I64);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
}

/// `KeyValue{key, AnyValue{string_value}}` bytes of `labels`, each as field `field` of the
/// enclosing message.
fn attributes<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>, field: u32) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(256));
    for (k, v) in labels {
        let any = field_len(v.len());
        let kv = field_len(k.len()) + field_len(any);
        w.len_prefix(field, kv);
        w.bytes(1, k.as_bytes());
        w.len_prefix(2, any);
        w.bytes(1, v.as_bytes());
    }
    w.0
}

/// The attributes of a point as field `field` of its data point (7 in number points, 9 in
/// histogram points), kept in the set's memos: a set shared by many points, and by one export
/// after another, is encoded once.
fn attrs_of(a: &Attrs, field: u32) -> &[u8] {
    let memo = usize::from(field == 9);
    a.memo(memo, |labels| {
        attributes(labels.iter().map(|(k, v)| (*k, v.as_str())), field)
    })
}

/// A NumberDataPoint: attributes (7), start (2), time (3), then `as_int` (6) or `as_double` (4).
fn number_point_len(attrs: &[u8]) -> usize {
    attrs.len() + 9 + 9 + 9
}

fn number_point(w: &mut W, attrs: &[u8], t: (u64, u64), value: &Value) {
    w.len_prefix(1, number_point_len(attrs));
    w.0.extend_from_slice(attrs);
    w.fixed64(2, t.0);
    w.fixed64(3, t.1);
    match value {
        Value::Int(v) => w.fixed64(6, *v),
        Value::Double(v) => w.fixed64(4, v.to_bits()),
        Value::Histogram(_) => unreachable!("a number point"),
    }
}

/// A HistogramDataPoint: start (2), time (3), count (4), sum (5), bucket counts (6), bounds
/// (7), attributes (9).
fn histogram_point_len(attrs: &[u8], h: &Histogram) -> usize {
    attrs.len() + 9 * 4 + field_len(h.counts.len() * 8) + field_len(h.bounds.len() * 8)
}

fn histogram_point(w: &mut W, attrs: &[u8], t: (u64, u64), h: &Histogram) {
    w.len_prefix(1, histogram_point_len(attrs, h));
    w.fixed64(2, t.0);
    w.fixed64(3, t.1);
    w.fixed64(4, h.count);
    w.fixed64(5, h.sum.to_bits());
    w.len_prefix(6, h.counts.len() * 8);
    for c in &h.counts {
        w.0.extend_from_slice(&c.to_le_bytes());
    }
    w.len_prefix(7, h.bounds.len() * 8);
    for b in h.bounds {
        w.0.extend_from_slice(&b.to_bits().to_le_bytes());
    }
    w.0.extend_from_slice(attrs);
}

/// Data field numbers in Metric.
const GAUGE: u32 = 5;
const SUM: u32 = 7;
const HISTOGRAM: u32 = 9;
const CUMULATIVE: u64 = 2;

/// A family's data field, the field number of its points' attributes, and its trailer length
/// (Sum: temporality and monotonic; Histogram: temporality).
fn layout(f: &Family) -> (u32, u32, usize) {
    match f.metric.kind {
        Kind::Counter => (SUM, 7, 4),
        Kind::Gauge => (GAUGE, 7, 0),
        Kind::Histogram => (HISTOGRAM, 9, 2),
    }
}

/// The length of a family's data (points and trailer).
fn data_len(f: &Family) -> usize {
    let (_, field, trailer) = layout(f);
    let points: usize = f
        .points
        .iter()
        .map(|p| {
            let a = attrs_of(&p.attrs, field);
            match &p.value {
                Value::Histogram(h) => field_len(histogram_point_len(a, h)),
                _ => field_len(number_point_len(a)),
            }
        })
        .sum();
    points + trailer
}

fn metric_len(m: &Metric, data_len: usize) -> usize {
    field_len(m.otlp.len())
        + field_len(m.help.len())
        + field_len(m.unit.len())
        + field_len(data_len)
}

/// Writes one family as a Metric.
fn family(out: &mut W, fam: &Family, data_len: usize, times: (u64, u64)) {
    let (data_field, field, trailer) = layout(fam);
    let metric = fam.metric;
    out.len_prefix(2, metric_len(metric, data_len));
    out.bytes(1, metric.otlp.as_bytes());
    out.bytes(2, metric.help.as_bytes());
    out.bytes(3, metric.unit.as_bytes());
    out.len_prefix(data_field, data_len);
    for point in &fam.points {
        let attrs = attrs_of(&point.attrs, field);
        match &point.value {
            Value::Histogram(h) => histogram_point(out, attrs, times, h),
            value => number_point(out, attrs, times, value),
        }
    }
    if trailer > 0 {
        out.tag(2, VARINT);
        out.varint(CUMULATIVE);
    }
    if metric.kind == Kind::Counter {
        // is_monotonic
        out.tag(3, VARINT);
        out.varint(1);
    }
}

/// The encoded request for `families`; `resource` and the scope as the reference encoder has
/// them; `start`: the start of a family's cumulative series, `at` the time of the points (ns).
/// Lengths are computed first, so the request is written once, into a buffer of its exact size.
pub fn request(
    families: &[&Family],
    resource: &[(String, String)],
    start: impl Fn(&Family) -> u64,
    at: u64,
) -> Vec<u8> {
    let lens: Vec<usize> = families.iter().map(|f| data_len(f)).collect();
    let metrics_len: usize = families
        .iter()
        .zip(&lens)
        .map(|(f, l)| field_len(metric_len(f.metric, *l)))
        .sum();
    // ScopeMetrics { scope = 1 { name = 1, version = 2 }, metrics = 2 }.
    let version = env!("CARGO_PKG_VERSION");
    let scope_len = field_len("otel-netprobe".len()) + field_len(version.len());
    let scope_metrics_len = field_len(scope_len) + metrics_len;
    let res_attrs = attributes(resource.iter().map(|(k, v)| (k.as_str(), v.as_str())), 1);
    let resource_metrics_len = field_len(res_attrs.len()) + field_len(scope_metrics_len);
    let mut w = W(Vec::with_capacity(field_len(resource_metrics_len)));
    w.len_prefix(1, resource_metrics_len);
    w.bytes(1, &res_attrs);
    w.len_prefix(2, scope_metrics_len);
    w.len_prefix(1, scope_len);
    w.bytes(1, b"otel-netprobe");
    w.bytes(2, version.as_bytes());
    for (f, l) in families.iter().zip(lens) {
        family(&mut w, f, l, (start(f), at));
    }
    debug_assert_eq!(w.0.len(), w.0.capacity());
    w.0
}
