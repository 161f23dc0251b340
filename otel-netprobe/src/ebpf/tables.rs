//! The kernel's other tables, read with the flows each cycle: the TCP connections (through
//! the [`ConnTracker`]), the drops per flow and reason, and the ICMP errors per answered flow.
//! What they say goes into the flows' extras in the [`FlowTable`], so it is named, budgeted
//! and aggregated with the flows.
//!
//! Drops and ICMP errors are cumulative per kernel entry, like flows: each cycle adds what an
//! entry counted since the previous read, and an entry unchanged for `kernel_idle_timeout`
//! leaves the kernel with its final value (as flows do, by what the kernel offers).

use std::{
    collections::HashMap as StdHashMap, hash::Hash, os::fd::AsFd, sync::Arc, time::Duration,
};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError},
};
use netprobe_ebpf::{Conn, ConnKey, DropKey, DropStats, FlowKey, IcmpErrorKey};
use rustc_hash::FxHashMap;

use super::{
    btf::DropReasons,
    reader::Eviction,
    sys::{BatchReader, SysError, TypedMap},
};
use crate::flow::{
    FlowTable,
    conns::{ConnTimeouts, ConnTracker},
};

/// The other tables, taken out of the object (see [`super::take_other_maps`]).
pub struct OtherMaps {
    /// Connections by client port and ISN.
    pub conns: MapData,
    /// Drops per flow and reason.
    pub drops: MapData,
    /// ICMP errors per answered flow, type and code.
    pub icmp: MapData,
}

/// What a kernel entry counts, as far as the reader is concerned: what it added since `old`.
trait Delta: Pod + PartialEq + Default {
    fn minus(&self, old: &Self) -> Self;
}

impl Delta for DropStats {
    fn minus(&self, old: &Self) -> Self {
        Self {
            packets: self.packets.saturating_sub(old.packets),
            bytes: self.bytes.saturating_sub(old.bytes),
        }
    }
}

impl Delta for u64 {
    fn minus(&self, old: &Self) -> Self {
        self.saturating_sub(*old)
    }
}

fn aya_handle<K: Pod, V: Pod>(data: &MapData) -> Result<HashMap<MapData, K, V>, SysError> {
    let aya = |e: MapError| SysError::Aya(Box::new(e));
    let fd = data.fd().as_fd().try_clone_to_owned();
    let fd = fd.map_err(|e| aya(MapError::IoError(e)))?;
    let map = Map::from_map_data(MapData::from_fd(fd).map_err(aya)?).map_err(aya)?;
    HashMap::try_from(map).map_err(aya)
}

/// A table of cumulative counts per key, read as deltas.
struct Counts<K, V> {
    data: MapData,
    aya: HashMap<MapData, K, V>,
    batch: BatchReader<K, V>,
    /// Each entry's last value and the time it last changed.
    prev: FxHashMap<K, (V, u64)>,
}

impl<K: Pod + Hash + Eq, V: Delta> Counts<K, V> {
    fn new(data: MapData) -> Result<Self, SysError> {
        Ok(Self {
            aya: aya_handle(&data)?,
            data,
            batch: BatchReader::new(256),
            prev: FxHashMap::default(),
        })
    }

    /// Hands `fold` what each entry counted since the last read, and moves out the entries
    /// unchanged for `idle_ns` (folding their final values).
    fn read(
        &mut self,
        now_ns: u64,
        idle_ns: u64,
        eviction: Eviction,
        mut fold: impl FnMut(&K, &V),
    ) -> Result<(), SysError> {
        let mut idle = Vec::new();
        let mut seen = FxHashMap::default();
        {
            let entries = self.batch.read_all(self.data.fd().as_fd())?;
            for (k, v) in entries.keys.iter().zip(entries.values) {
                let (old, at) = self.prev.get(k).copied().unwrap_or((V::default(), now_ns));
                if *v == old {
                    if now_ns.saturating_sub(at) >= idle_ns {
                        idle.push(*k);
                    }
                    seen.insert(*k, (old, at));
                } else {
                    fold(k, &v.minus(&old));
                    seen.insert(*k, (*v, now_ns));
                }
            }
        }
        let typed = TypedMap::<K, V>::new(self.data.fd().as_fd())?;
        for k in idle {
            let (old, _) = seen.remove(&k).unwrap_or_default();
            if let Some(last) = eviction.take(&typed, Some(&mut self.aya), &k)? {
                fold(&k, &last.minus(&old));
            }
        }
        self.prev = seen;
        Ok(())
    }

    fn len(&self) -> usize {
        self.prev.len()
    }
}

/// Timeouts and capacity of the connection tracking.
#[derive(Clone, Copy, Debug)]
pub struct ConnSettings {
    /// Handshake and idle timeouts.
    pub timeouts: ConnTimeouts,
    /// The kernel table's capacity.
    pub capacity: u32,
}

/// Figures of the other tables, for the agent's own metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableFigures {
    /// Connections in the kernel table.
    pub conns: u64,
    /// Its capacity.
    pub conns_capacity: u64,
    /// Connections the table pushed out before their end (this cycle).
    pub conns_evicted: u64,
    /// Drop entries in the kernel table.
    pub drops: u64,
    /// ICMP-error entries.
    pub icmp_errors: u64,
}

/// The reader of the other tables.
pub struct OtherTables {
    conns_data: MapData,
    conns: HashMap<MapData, ConnKey, Conn>,
    conns_batch: BatchReader<ConnKey, Conn>,
    tracker: ConnTracker,
    settings: ConnSettings,
    /// Flows with open connections after the last cycle (their gauge drops to 0 when none).
    active: Vec<FlowKey>,
    drops: Counts<DropKey, DropStats>,
    /// Drop reasons by number (`None`: no drop program; every drop is `unknown`).
    reasons: Option<DropReasons>,
    names: StdHashMap<u32, Arc<str>>,
    icmp: Counts<IcmpErrorKey, u64>,
}

impl OtherTables {
    /// A reader over the other maps; `reasons` names the drops (from the kernel's BTF).
    pub fn new(
        maps: OtherMaps,
        settings: ConnSettings,
        reasons: Option<DropReasons>,
    ) -> Result<Self, SysError> {
        Ok(Self {
            conns: aya_handle(&maps.conns)?,
            conns_data: maps.conns,
            conns_batch: BatchReader::new(256),
            tracker: ConnTracker::new(),
            settings,
            active: Vec::new(),
            drops: Counts::new(maps.drops)?,
            reasons,
            names: StdHashMap::new(),
            icmp: Counts::new(maps.icmp)?,
        })
    }

    fn reason(&mut self, n: u32) -> Option<Arc<str>> {
        let reasons = self.reasons.as_ref();
        if reasons.is_some_and(|r| !r.is_drop(n)) {
            return None;
        }
        Some(Arc::clone(self.names.entry(n).or_insert_with(|| {
            reasons.map_or("unknown", |r| r.name(n)).into()
        })))
    }

    /// Reads the tables at coarse time `now_ns` (and monotonic `mono_ns`, the connections'
    /// clock) into `table`; entries idle for `kernel_idle` leave the kernel.
    pub fn read(
        &mut self,
        table: &mut FlowTable,
        now_ns: u64,
        mono_ns: u64,
        kernel_idle: Duration,
        eviction: Eviction,
    ) -> Result<TableFigures, SysError> {
        let idle_ns = kernel_idle.as_nanos() as u64;
        let mut figures = TableFigures {
            conns_capacity: u64::from(self.settings.capacity),
            ..TableFigures::default()
        };
        // Connections.
        let entries: Vec<(ConnKey, Conn)> = {
            let e = self.conns_batch.read_all(self.conns_data.fd().as_fd())?;
            e.keys
                .iter()
                .copied()
                .zip(e.values.iter().copied())
                .collect()
        };
        figures.conns = entries.len() as u64;
        let cycle = self
            .tracker
            .ingest(&entries, mono_ns, self.settings.timeouts, |f| {
                table.changed_at(f)
            });
        for flow in self.active.drain(..) {
            if !cycle.deltas.contains_key(&flow) {
                table.extras_mut(&flow, now_ns, false).conn.active = 0;
            }
        }
        for (flow, d) in &cycle.deltas {
            let news = d.opened
                + d.failed.iter().sum::<u64>()
                + d.closed.iter().sum::<u64>()
                + d.syn_retransmits
                > 0;
            table.extras_mut(flow, now_ns, news).conn.add(d);
            if d.active > 0 {
                self.active.push(*flow);
            }
        }
        for key in &cycle.finished {
            match self.conns.remove(key) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(SysError::Aya(Box::new(e))),
            }
        }
        figures.conns_evicted = cycle.evicted;
        // Drops and ICMP errors.
        let mut drops = Vec::new();
        self.drops
            .read(now_ns, idle_ns, eviction, |k, d| drops.push((*k, *d)))?;
        for (k, d) in drops {
            // Loopback is not the network (its packets are not counted either): the agent's
            // own refused exports, a local socket's purged queue.
            if is_loopback(&k.flow) {
                continue;
            }
            if let Some(reason) = self.reason(k.reason) {
                table
                    .extras_mut(&k.flow, now_ns, true)
                    .add_drops(&reason, d.packets, d.bytes);
            }
        }
        self.icmp.read(now_ns, idle_ns, eviction, |k, n| {
            table
                .extras_mut(&k.flow, now_ns, true)
                .add_icmp(k.icmp_type, k.icmp_code, *n);
        })?;
        figures.drops = self.drops.len() as u64;
        figures.icmp_errors = self.icmp.len() as u64;
        Ok(figures)
    }
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
    fn loopback_drops_are_told_apart() {
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
}
