//! The flow metrics' families: a metric's points summed over the series of one budget's
//! grouping ([`SeriesSet`], built in `flow`), so every flow metric of a budget has the same
//! series and shares their attribute sets.

use std::collections::BTreeMap;

use super::{Family, Histogram, Metric, Value};
use crate::flow::{FlowView, SeriesSet};

/// The families a metric module builds from a grouping.
pub trait SeriesFamilies {
    /// A counter family: one point per series, the sum of `value` over its flows.
    fn counter(
        &self,
        metric: &'static Metric,
        flows: &[FlowView],
        value: impl Fn(&FlowView) -> u64,
    ) -> Family;

    /// A counter family whose points also carry `extra` attributes: `value` reports each part
    /// of a flow's count with its extra attribute values (a flow's drops per reason, say); one
    /// point per series and values, in a stable order.
    fn counter_by(
        &self,
        metric: &'static Metric,
        flows: &[FlowView],
        extra: &'static [&'static str],
        value: impl Fn(&FlowView, &mut dyn FnMut(&[&str], u64)),
    ) -> Family;

    /// A histogram family with `bounds` whose points also carry `extra` attributes, for only
    /// the series (and values) where some flow has observations: `value` reports each part of
    /// a flow's observations with its extra attribute values, its bucket counts
    /// (`bounds.len() + 1`) and its sum.
    fn histogram_by(
        &self,
        metric: &'static Metric,
        bounds: &'static [f64],
        flows: &[FlowView],
        extra: &'static [&'static str],
        value: impl Fn(&FlowView, &mut dyn FnMut(&[&str], &[u64], f64)),
    ) -> Family;

    /// A histogram family with `bounds`: one point per series, adding up each flow's bucket
    /// counts (`bounds.len() + 1` of them) and sum, as `value` gives them.
    fn histogram<'f>(
        &self,
        metric: &'static Metric,
        bounds: &'static [f64],
        flows: &'f [FlowView],
        value: impl Fn(&'f FlowView) -> (&'f [u64], f64),
    ) -> Family;
}

/// Adds a point on series `s` of `set` with its `extra` attribute `values`: without extra
/// attributes the point shares the series' attribute set (and its renderings) with the other
/// families.
fn push_point(
    set: &SeriesSet,
    family: &mut Family,
    (s, extra, values): (u32, &'static [&'static str], Vec<String>),
    value: Value,
) {
    let series = &set.series[s as usize];
    if extra.is_empty() {
        family.push_shared(series.clone(), value);
    } else {
        let mut labels = series.to_vec();
        labels.extend(extra.iter().copied().zip(values));
        family.push(labels, value);
    }
}

impl SeriesFamilies for SeriesSet {
    fn counter(
        &self,
        metric: &'static Metric,
        flows: &[FlowView],
        value: impl Fn(&FlowView) -> u64,
    ) -> Family {
        let mut family = Family::new(metric);
        family.totals_by = Some(&[]);
        family.points.reserve_exact(self.series.len());
        for (a, v) in self.series.iter().zip(self.sums(flows, value)) {
            family.push_shared(a.clone(), Value::Int(v));
        }
        family
    }

    fn counter_by(
        &self,
        metric: &'static Metric,
        flows: &[FlowView],
        extra: &'static [&'static str],
        value: impl Fn(&FlowView, &mut dyn FnMut(&[&str], u64)),
    ) -> Family {
        let mut sums = BTreeMap::<(u32, Vec<String>), u64>::new();
        for (f, &s) in flows.iter().zip(&self.of_flow) {
            if (s as usize) < self.series.len() {
                value(f, &mut |values, n| {
                    debug_assert_eq!(values.len(), extra.len(), "{}", metric.otlp);
                    let key = values.iter().map(|v| (*v).to_owned()).collect();
                    *sums.entry((s, key)).or_default() += n;
                });
            }
        }
        let mut family = Family::new(metric);
        family.totals_by = Some(extra);
        for ((s, values), n) in sums {
            push_point(self, &mut family, (s, extra, values), Value::Int(n));
        }
        family
    }

    fn histogram_by(
        &self,
        metric: &'static Metric,
        bounds: &'static [f64],
        flows: &[FlowView],
        extra: &'static [&'static str],
        value: impl Fn(&FlowView, &mut dyn FnMut(&[&str], &[u64], f64)),
    ) -> Family {
        let width = bounds.len() + 1;
        let mut sums = BTreeMap::<(u32, Vec<String>), (Vec<u64>, f64)>::new();
        for (f, &s) in flows.iter().zip(&self.of_flow) {
            if (s as usize) < self.series.len() {
                value(f, &mut |values, buckets, sum| {
                    debug_assert_eq!(values.len(), extra.len(), "{}", metric.otlp);
                    debug_assert_eq!(buckets.len(), width, "{}", metric.otlp);
                    let key = values.iter().map(|v| (*v).to_owned()).collect();
                    let e = sums
                        .entry((s, key))
                        .or_insert_with(|| (vec![0; width], 0.0));
                    for (t, b) in e.0.iter_mut().zip(buckets) {
                        *t += b;
                    }
                    e.1 += sum;
                });
            }
        }
        let mut family = Family::new(metric);
        family.totals_by = Some(extra);
        for ((s, values), (counts, sum)) in sums {
            let h = Histogram {
                bounds,
                count: counts.iter().sum(),
                counts: counts.into(),
                sum,
            };
            push_point(self, &mut family, (s, extra, values), Value::Histogram(h));
        }
        family
    }

    fn histogram<'f>(
        &self,
        metric: &'static Metric,
        bounds: &'static [f64],
        flows: &'f [FlowView],
        value: impl Fn(&'f FlowView) -> (&'f [u64], f64),
    ) -> Family {
        let width = bounds.len() + 1;
        let mut counts = vec![0u64; self.series.len() * width];
        let mut sums = vec![0f64; self.series.len()];
        for (f, &s) in flows.iter().zip(&self.of_flow) {
            let s = s as usize;
            if s >= sums.len() {
                continue;
            }
            let (buckets, sum) = value(f);
            for (t, b) in counts[s * width..(s + 1) * width].iter_mut().zip(buckets) {
                *t += b;
            }
            sums[s] += sum;
        }
        let mut family = Family::new(metric);
        family.totals_by = Some(&[]);
        family.points.reserve_exact(self.series.len());
        for ((a, c), sum) in self.series.iter().zip(counts.chunks_exact(width)).zip(sums) {
            let h = Histogram {
                bounds,
                counts: c.into(),
                sum,
                count: c.iter().sum(),
            };
            family.push_shared(a.clone(), Value::Histogram(h));
        }
        family
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        config::{FlowAttr, flow_attr as attr},
        flow::{Attrs, Budget, Named, udp_flow as flow},
        k8s::naming::Naming,
        metrics::flows::{FLOW_PACKETS, PACKET_SIZE},
    };

    #[test]
    fn families_sum_over_the_grouping_and_histograms_carry_their_bounds() {
        static BOUNDS: [f64; 2] = [0.5, 2.0];
        let mut b = Budget::new(vec![FlowAttr::ServerPort], 100);
        let flows = [flow(1, 53, 100), flow(2, 53, 300), flow(3, 80, 200)];
        let naming = Naming::standalone();
        let set = b.build(&Named::new(&flows, &naming, false));
        let packets = set.counter(&FLOW_PACKETS, &flows, |f| f.packets);
        let values: Vec<&Value> = packets.points.iter().map(|p| &p.value).collect();
        assert_eq!(values, [&Value::Int(2), &Value::Int(1)]);
        // Three buckets per flow (two bounds): 53 gets (1, 2, 3) twice, 80 once.
        let buckets = [1, 2, 3];
        let h = set.histogram(&PACKET_SIZE, &BOUNDS, &flows, |f| {
            (&buckets[..], f.bytes as f64)
        });
        let Value::Histogram(first) = &h.points[0].value else {
            panic!("histogram")
        };
        assert_eq!(first.bounds, BOUNDS);
        assert_eq!(
            (&first.counts[..], first.count, first.sum),
            (&[2, 4, 6][..], 12, 400.0)
        );
        // The attribute sets are shared between the families of one grouping.
        assert!(Attrs::same(&h.points[1].attrs, &packets.points[1].attrs));
    }

    #[test]
    fn extra_attributes_split_a_series_points() {
        let mut b = Budget::new(vec![FlowAttr::ServerPort], 100);
        let flows = [flow(1, 53, 100), flow(2, 53, 300), flow(3, 80, 200)];
        let naming = Naming::standalone();
        let set = b.build(&Named::new(&flows, &naming, false));
        // Say each flow dropped one packet per 100 bytes: half for "a", the rest for "b".
        let family = set.counter_by(&FLOW_PACKETS, &flows, &["reason"], |f, emit| {
            let n = f.bytes / 100;
            emit(&["a"], n / 2);
            emit(&["b"], n - n / 2);
        });
        assert_eq!(family.totals_by, Some(&["reason"][..]));
        let points: Vec<(Vec<(&str, String)>, &Value)> = family
            .points
            .iter()
            .map(|p| (p.attrs.to_vec(), &p.value))
            .collect();
        let port = |p: &str, r: &str| {
            vec![
                (attr::DESTINATION_PORT, p.to_owned()),
                (attr::ORIGIN, "outside".to_owned()),
                ("reason", r.to_owned()),
            ]
        };
        assert_eq!(
            points,
            [
                (port("53", "a"), &Value::Int(1)),
                (port("53", "b"), &Value::Int(3)),
                (port("80", "a"), &Value::Int(1)),
                (port("80", "b"), &Value::Int(1)),
            ]
        );
    }

    #[test]
    fn histograms_split_by_extra_attributes() {
        static BOUNDS: [f64; 1] = [1.0];
        let mut b = Budget::new(vec![FlowAttr::ServerPort], 100);
        let flows = [flow(1, 53, 100), flow(2, 53, 300), flow(3, 80, 200)];
        let naming = Naming::standalone();
        let set = b.build(&Named::new(&flows, &naming, false));
        // Each flow observed once under 1 with code "a", and port 53's flows once above with "b".
        let h = set.histogram_by(&PACKET_SIZE, &BOUNDS, &flows, &["code"], |f, emit| {
            emit(&["a"], &[1, 0], 0.5);
            if f.dst_port == 53 {
                emit(&["b"], &[0, 1], 2.0);
            }
        });
        let points: Vec<(String, String, &[u64], f64)> = h
            .points
            .iter()
            .map(|p| {
                let Value::Histogram(h) = &p.value else {
                    panic!("histogram")
                };
                assert_eq!(p.attrs[1], (attr::ORIGIN, "outside".to_owned()));
                (
                    p.attrs[0].1.clone(),
                    p.attrs[2].1.clone(),
                    &h.counts[..],
                    h.sum,
                )
            })
            .collect();
        assert_eq!(
            points,
            [
                ("53".into(), "a".into(), &[2, 0][..], 1.0),
                ("53".into(), "b".into(), &[0, 2][..], 4.0),
                ("80".into(), "a".into(), &[1, 0][..], 0.5),
            ]
        );
        assert_eq!(h.totals_by, Some(&["code"][..]));
    }
}
