//! What a flow carries besides its packet counts: the TCP connections it is the client-to-server
//! flow of, and its counts from the kernel's per-flow counter maps (its drops per reason, the
//! ICMP errors that answered it per type and code, ...: see [`crate::ebpf::counts`]).
//! Cumulative like the packet counts, and kept (and forgotten) with the flow's record.

use super::conns::ConnCounts;
use crate::ebpf::counts::AttrValues;

/// A flow's counts from one kernel counter map for one set of attribute values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelCounts {
    /// The map's name (what its metric module asks for).
    pub map: &'static str,
    /// The attributes' values, in the order of the metric's attributes.
    pub attrs: AttrValues,
    /// The counters, in the order of the map's value (e.g. packets, bytes).
    pub values: Box<[u64]>,
}

/// A flow's extras.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowExtras {
    /// Its TCP connections (when it is their client-to-server flow).
    pub conn: ConnCounts,
    /// Its counts from the kernel's per-flow counter maps.
    pub counts: Vec<KernelCounts>,
}

impl FlowExtras {
    /// Adds `delta` to the flow's counts of `map` with these attribute values.
    pub fn add_counts(&mut self, map: &'static str, attrs: &AttrValues, delta: &[u64]) {
        let found = self.counts.iter_mut().find(|c| {
            c.map == map && (std::sync::Arc::ptr_eq(&c.attrs, attrs) || c.attrs == *attrs)
        });
        match found {
            Some(c) => {
                for (v, d) in c.values.iter_mut().zip(delta) {
                    *v += d;
                }
            }
            None => self.counts.push(KernelCounts {
                map,
                attrs: attrs.clone(),
                values: delta.into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_up_per_map_and_attribute_values() {
        let mut e = FlowExtras::default();
        let (a, b): (AttrValues, AttrValues) = (["NO_SOCKET".into()].into(), ["x".into()].into());
        e.add_counts("DROPS", &a, &[1, 100]);
        e.add_counts("DROPS", &["NO_SOCKET".into()].into(), &[2, 200]);
        e.add_counts("DROPS", &b, &[1, 50]);
        e.add_counts("OTHER", &a, &[7]);
        let got: Vec<(&str, &str, &[u64])> = e
            .counts
            .iter()
            .map(|c| (c.map, &*c.attrs[0], &c.values[..]))
            .collect();
        assert_eq!(
            got,
            [
                ("DROPS", "NO_SOCKET", &[3, 300][..]),
                ("DROPS", "x", &[1, 50][..]),
                ("OTHER", "NO_SOCKET", &[7][..]),
            ]
        );
    }
}
