//! Per-flow kernel counters: a kernel map of cumulative counts keyed by a flow and a small
//! attribute tuple — drops by reason, ICMP errors by type and code. A metric module registers
//! its map once ([`FlowCounts`]: the map's name, key → flow, key → attributes); the reader
//! reads every registered map each cycle through a [`CountsTable`] and hands what each entry
//! counted since the previous read to the flow stage, which keeps it with the flow.
//!
//! Like the flow tables, each entry is cumulative: a cycle adds what it counted since the last
//! read, and an entry unchanged for `kernel_idle_timeout` leaves the kernel with its final
//! value (as flows do, by what the kernel offers). Loopback flows are left out, as loopback
//! packets are.

use std::{hash::Hash, mem::size_of, sync::Arc};

use aya::{Ebpf, Pod};
use netprobe_ebpf::FlowKey;
use rustc_hash::FxHashMap;

use super::{EbpfError, btf::DropReasons, reader::Eviction, sys::SysError, table::KernelTable};

/// The values of an entry's attributes, in the order of its metric's attributes; interned,
/// so the flows that share them share one allocation.
pub type AttrValues = Arc<[Box<str>]>;

/// A metric module's kernel map of per-flow counts.
pub trait FlowCounts: Send + 'static {
    /// The map's key: a flow and the attributes' raw values.
    type Key: Pod + Hash + Eq + Send;
    /// The map's value: cumulative `u64` counters and nothing else (`#[repr(C)]`, no
    /// padding), in the order the metric module reads them.
    type Value: Pod + Send;
    /// The attributes' raw values as the key holds them (a reason number, a type and a code).
    type Raw: Copy + Hash + Eq + Send;
    /// The map's name in the eBPF object.
    const MAP: &'static str;
    /// The flow an entry counts for.
    fn flow(&self, key: &Self::Key) -> FlowKey;
    /// The entry's attributes, raw (`None`: the entry is not counted).
    fn raw(&self, key: &Self::Key) -> Option<Self::Raw>;
    /// The attributes' values, asked once per distinct raw value.
    fn values(&self, raw: Self::Raw) -> Vec<String>;
}

/// What a registration may need of the running kernel, learnt at start.
#[derive(Clone, Debug, Default)]
pub struct KernelFacts {
    /// The drop reasons' names (`None`: before 5.17, or no BTF).
    pub drop_reasons: Option<DropReasons>,
}

/// A registered map as the reader drives it, whatever its types.
pub trait CounterSource: Send {
    /// The map's name (what the flow stage files its counts under).
    fn map(&self) -> &'static str;
    /// Hands `fold` what each counted entry added since the last read, as (flow, attribute
    /// values, one delta per counter), and moves out the entries unchanged for `idle_ns`
    /// (folding their final values).
    fn read(
        &mut self,
        now_ns: u64,
        idle_ns: u64,
        eviction: Eviction,
        fold: &mut dyn FnMut(&FlowKey, &AttrValues, &[u64]),
    ) -> Result<(), SysError>;
    /// Entries in the kernel map at the last read.
    fn entries(&self) -> usize;
}

/// Opens `S`'s map in the object, for the reader.
pub fn open<S: FlowCounts>(
    ebpf: &mut Ebpf,
    source: S,
) -> Result<Box<dyn CounterSource>, EbpfError> {
    CountsTable::open(ebpf, source).map(|t| Box::new(t) as Box<dyn CounterSource>)
}

/// The reader of one registered map.
pub struct CountsTable<S: FlowCounts> {
    source: S,
    table: KernelTable<S::Key, S::Value>,
    /// Each entry's last value and the time it last changed.
    prev: FxHashMap<S::Key, (S::Value, u64)>,
    names: FxHashMap<S::Raw, AttrValues>,
    delta: Vec<u64>,
}

impl<S: FlowCounts> CountsTable<S> {
    /// Takes `S::MAP` out of the object.
    pub fn open(ebpf: &mut Ebpf, source: S) -> Result<Self, EbpfError> {
        const { assert!(size_of::<S::Value>() > 0 && size_of::<S::Value>() % 8 == 0) };
        let data = super::take_hash_map(ebpf, S::MAP)?;
        let table = KernelTable::new(data, 256).map_err(|e| EbpfError::Table {
            name: S::MAP,
            source: e,
        })?;
        Ok(Self::new(source, table))
    }

    /// Over an open table (tests create theirs).
    pub fn new(source: S, table: KernelTable<S::Key, S::Value>) -> Self {
        Self {
            source,
            table,
            prev: FxHashMap::default(),
            names: FxHashMap::default(),
            delta: vec![0; size_of::<S::Value>() / 8],
        }
    }

    /// What `new` counted since `old`, counter by counter, into `self.delta`; whether any.
    fn minus(delta: &mut [u64], new: &S::Value, old: &S::Value) -> bool {
        let mut any = false;
        for ((d, n), o) in delta.iter_mut().zip(words(new)).zip(words(old)) {
            *d = n.saturating_sub(o);
            any |= *d > 0;
        }
        any
    }

    /// Hands `fold` the entry's delta under its flow and attributes, unless not counted.
    fn count(
        &mut self,
        key: &S::Key,
        new: &S::Value,
        old: &S::Value,
        fold: &mut dyn FnMut(&FlowKey, &AttrValues, &[u64]),
    ) {
        let flow = self.source.flow(key);
        if is_loopback(&flow) || !Self::minus(&mut self.delta, new, old) {
            return;
        }
        let Some(raw) = self.source.raw(key) else {
            return;
        };
        let source = &self.source;
        let values = self
            .names
            .entry(raw)
            .or_insert_with(|| source.values(raw).into_iter().map(Into::into).collect());
        fold(&flow, values, &self.delta);
    }
}

impl<S: FlowCounts> CounterSource for CountsTable<S> {
    fn map(&self) -> &'static str {
        S::MAP
    }

    fn read(
        &mut self,
        now_ns: u64,
        idle_ns: u64,
        eviction: Eviction,
        fold: &mut dyn FnMut(&FlowKey, &AttrValues, &[u64]),
    ) -> Result<(), SysError> {
        let mut idle = Vec::new();
        let mut seen = FxHashMap::default();
        let mut changed = Vec::new();
        {
            let entries = self.table.read_all()?;
            for (k, v) in entries.keys.iter().zip(entries.values) {
                match self.prev.get(k) {
                    Some((old, at)) if same(v, old) => {
                        if now_ns.saturating_sub(*at) >= idle_ns {
                            idle.push(*k);
                        }
                        seen.insert(*k, (*old, *at));
                    }
                    old => {
                        changed.push((*k, *v, old.map(|o| o.0)));
                        seen.insert(*k, (*v, now_ns));
                    }
                }
            }
        }
        let zero = zeroed::<S::Value>();
        for (k, v, old) in &changed {
            self.count(k, v, old.as_ref().unwrap_or(&zero), fold);
        }
        let mut last = Vec::with_capacity(idle.len());
        self.table.take_each(eviction, &idle, |k, v| {
            if let (Some(v), Some((old, _))) = (v, seen.remove(k)) {
                last.push((*k, v, old));
            }
        })?;
        for (k, v, old) in &last {
            self.count(k, v, old, fold);
        }
        self.prev = seen;
        Ok(())
    }

    fn entries(&self) -> usize {
        self.prev.len()
    }
}

/// The bytes of a `Pod` value read as `u64` words (its counters).
fn words<V: Pod>(v: &V) -> impl Iterator<Item = u64> + '_ {
    // SAFETY: `V: Pod` is plain data without uninitialised bytes; we read its own bytes.
    let bytes =
        unsafe { std::slice::from_raw_parts(std::ptr::from_ref(v).cast::<u8>(), size_of::<V>()) };
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_ne_bytes(c.try_into().unwrap_or_default()))
}

fn same<V: Pod>(a: &V, b: &V) -> bool {
    words(a).eq(words(b))
}

fn zeroed<V: Pod>() -> V {
    // SAFETY: `V: Pod` accepts any bits, zero included.
    unsafe { std::mem::zeroed() }
}

/// Whether either end of `flow` is a loopback address (127.0.0.0/8, ::1).
fn is_loopback(flow: &FlowKey) -> bool {
    let ends = [flow.src_addr, flow.dst_addr];
    ends.iter().any(|a| {
        if flow.ip_version == 4 {
            a[0].to_ne_bytes()[0] == 127
        } else {
            std::net::Ipv6Addr::from(
                a.map(u32::to_ne_bytes)
                    .concat()
                    .try_into()
                    .unwrap_or([0; 16]),
            )
            .is_loopback()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(version: u8, src: [u8; 16], dst: [u8; 16]) -> FlowKey {
        let words = |b: [u8; 16]| {
            std::array::from_fn(|i| {
                u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
            })
        };
        FlowKey {
            src_addr: words(src),
            dst_addr: words(dst),
            src_port: 0,
            dst_port: 0,
            protocol: 6,
            ip_version: version,
            pad: [0; 2],
        }
    }

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    #[test]
    fn loopback_flows_are_told_apart() {
        let (pod, lo) = (v4([10, 244, 0, 11]), v4([127, 0, 0, 1]));
        assert!(!is_loopback(&key(4, pod, v4([10, 244, 0, 12]))));
        assert!(is_loopback(&key(4, lo, lo)));
        assert!(is_loopback(&key(4, pod, v4([127, 1, 2, 3]))));
        let mut one = [0; 16];
        one[15] = 1;
        let mut doc = [0; 16];
        doc[..2].copy_from_slice(&[0x20, 0x01]);
        assert!(is_loopback(&key(6, one, one)));
        assert!(!is_loopback(&key(6, doc, one.map(|b| b ^ 1))));
    }

    #[test]
    fn values_are_read_as_their_counters() {
        let v = netprobe_ebpf::DropStats {
            packets: 3,
            bytes: 684,
        };
        assert_eq!(words(&v).collect::<Vec<_>>(), [3, 684]);
        assert!(same(&v, &v.clone()));
        assert_eq!(words(&zeroed::<u64>()).collect::<Vec<_>>(), [0]);
    }
}
