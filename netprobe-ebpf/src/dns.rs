//! DNS queries and responses, seen at the hooks every packet already passes (no hook of its
//! own): the types the DNS maps share with user space, the header classification (host-tested),
//! and, for the BPF target, how a DNS packet is recorded.
//!
//! A UDP or TCP packet to or from a configured DNS port ([`DNS_PORTS_GLOBAL`], 53 by default)
//! whose first payload bytes (after TCP's two-byte length prefix) look like a DNS header with
//! one question is a query (QR 0, to the port) or a response (QR 1, from the port). A query
//! records its arrival time in [`DNS_QUERIES_MAP`] under the client's address, port and
//! transaction id — a key that NAT between the query and the response leaves alone, like the
//! connection table's port and ISN. The response that finds it (and deletes it, so a copy of the
//! response is not a second answer) adds its latency to its rcode's histogram in
//! [`DNS_STATS_MAP`], under the query's flow without the client's ephemeral port. Queries nobody
//! answers are found by the reader (older than `dns.timeout`) and counted as unanswered there.
//! The clock is read only on DNS packets; the header is read with `bpf_skb_load_bytes` at TC,
//! so a response whose payload is not in the linear part of the buffer (a large EDNS0 answer)
//! is read all the same.

use crate::FlowKey;

/// Name of the pending-query table (client address, port and transaction id → query).
pub const DNS_QUERIES_MAP: &str = "DNS_QUERIES";
/// Name of the answered-query table (flow without the client port, and rcode → histogram).
pub const DNS_STATS_MAP: &str = "DNS_STATS";
/// Name of the load-time global holding the DNS ports: four 16-bit lanes in network byte
/// order (see [`dns_ports_global`]).
pub const DNS_PORTS_GLOBAL: &str = "DNS_PORTS";
/// Default capacity of the pending-query table. A full table counts a query in
/// `Counter::DnsQueriesUntracked` (it is then neither answered nor unanswered).
pub const DEFAULT_DNS_QUERIES_CAPACITY: u32 = 16_384;
/// Default capacity of the answered-query table (client, server, server port and rcode).
pub const DEFAULT_DNS_STATS_CAPACITY: u32 = 8_192;
/// The most DNS ports the programs match.
pub const MAX_DNS_PORTS: usize = 4;
/// The global's value when user space sets nothing: port 53 in every lane.
pub const DEFAULT_DNS_PORTS: u64 = dns_ports_global(&[53]);

/// Upper bounds (inclusive, ns) of the DNS latency buckets, 100 µs … 5 s; the last bucket is
/// unbounded.
pub const DNS_LATENCY_BOUNDS_NS: [u64; 15] = [
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
];
/// Number of DNS latency buckets (the bounds above plus "slower").
pub const DNS_LATENCY_BUCKETS: usize = DNS_LATENCY_BOUNDS_NS.len() + 1;

/// The bucket of a latency in ns, without branches (as `size_bucket`).
#[inline(always)]
pub fn dns_bucket(ns: u64) -> usize {
    let l = crate::opaque(ns);
    let mut n = 0;
    let mut i = 0;
    while i < DNS_LATENCY_BOUNDS_NS.len() {
        n += DNS_LATENCY_BOUNDS_NS[i].wrapping_sub(l) >> 63;
        i += 1;
    }
    n as usize
}

/// The global's value for `ports` (at most [`MAX_DNS_PORTS`], none of them 0): each in network
/// byte order in its 16-bit lane, unused lanes repeating the first port (a lane of 0 would
/// match every packet without ports).
pub const fn dns_ports_global(ports: &[u16]) -> u64 {
    let mut w = 0u64;
    let mut i = 0;
    while i < MAX_DNS_PORTS {
        let p = if i < ports.len() { ports[i] } else { ports[0] };
        let raw = u16::from_ne_bytes(p.to_be_bytes());
        w |= (raw as u64) << (16 * i);
        i += 1;
    }
    w
}

const LANES_ONE: u64 = 0x0001_0001_0001_0001;
const LANES_HIGH: u64 = 0x8000_8000_8000_8000;

/// Whether `port` (as the packet carries it) is in one of the global's lanes: any lane of
/// `global ^ port·LANES_ONE` is zero (the exact "has a zero lane" test).
#[inline(always)]
pub fn is_dns_port(global: u64, port: u16) -> bool {
    let x = global ^ (u64::from(port) * LANES_ONE);
    x.wrapping_sub(LANES_ONE) & !x & LANES_HIGH != 0
}

/// What a packet to or from a DNS port is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsPacket {
    /// A query with this transaction id.
    Query {
        /// The transaction id (as on the wire).
        id: u16,
    },
    /// A response with this transaction id and rcode (the header's four bits).
    Response {
        /// The transaction id.
        id: u16,
        /// The response code (0 NoError, 2 ServFail, 3 NXDomain, 5 Refused, ...).
        rcode: u8,
    },
}

/// Classifies the first eight payload bytes of a packet on a DNS port: for UDP the header's
/// id, flags, question and answer counts; for TCP the two-byte length prefix, then id, flags
/// and question count (`tcp`). Only standard queries (opcode 0) with exactly one question are
/// DNS here; anything else on the port (a TCP segment that does not start a message, another
/// protocol) is not. `to_port`/`from_port`: whether the destination / source port is a DNS
/// port (a query must go to one, a response come from one).
#[inline(always)]
pub fn classify(words: [u16; 4], tcp: bool, to_port: bool, from_port: bool) -> Option<DnsPacket> {
    let [a, b, c, d] = words.map(u16::from_be);
    let (len, id, flags, questions) = if tcp { (a, b, c, d) } else { (12, a, b, c) };
    let opcode = (flags >> 11) & 0xF;
    if questions != 1 || opcode != 0 || len < 12 {
        return None;
    }
    let id = id.to_be();
    if flags & 0x8000 == 0 {
        to_port.then_some(DnsPacket::Query { id })
    } else {
        from_port.then_some(DnsPacket::Response {
            id,
            rcode: (flags & 0xF) as u8,
        })
    }
}

/// A pending query's key: the client's address (IPv4 in the first word), port and the
/// transaction id, as the query carries them (and the response, reversed).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DnsQueryKey {
    /// Client address.
    pub addr: [u32; 4],
    /// Client port (network byte order).
    pub port: u16,
    /// Transaction id (network byte order).
    pub id: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// Zero.
    pub pad: [u8; 3],
}

/// A pending query: its flow (client → server, as the query was seen) and arrival time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsQuery {
    /// The query's flow.
    pub flow: FlowKey,
    /// `CLOCK_MONOTONIC` when the first copy of the query was seen, ns.
    pub query_ns: u64,
}

/// An answered-query entry's key: the query's flow with the client port zeroed (the series
/// never show it, and ephemeral ports would make an entry per query), and the rcode.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DnsKey {
    /// Client → server flow, client port 0.
    pub flow: FlowKey,
    /// Response code.
    pub rcode: u8,
    /// Zero.
    pub pad: [u8; 3],
}

/// Answered queries of one key: the latency histogram (the count is its sum) and the sum of
/// latencies.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Responses per latency bucket ([`DNS_LATENCY_BOUNDS_NS`]).
    pub buckets: [u64; DNS_LATENCY_BUCKETS],
    /// Sum of the latencies, ns.
    pub sum_ns: u64,
}

impl DnsStats {
    /// Responses counted.
    pub fn responses(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

const _: () = assert!(core::mem::size_of::<DnsQueryKey>() == 24);
const _: () = assert!(core::mem::size_of::<DnsQuery>() == 48);
const _: () = assert!(core::mem::align_of::<DnsQuery>() == 8);
const _: () = assert!(core::mem::size_of::<DnsKey>() == 44);
const _: () = assert!(core::mem::size_of::<DnsStats>() == 136);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` integers with explicit padding, sizes asserted above.
    unsafe impl aya::Pod for super::DnsQueryKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DnsQuery {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DnsKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DnsStats {}
}

#[cfg(target_arch = "bpf")]
pub use record::on_packet;

#[cfg(target_arch = "bpf")]
mod record {
    use core::intrinsics::{AtomicOrdering, atomic_xadd};

    use aya_ebpf::{
        macros::map,
        maps::{HashMap, PerCpuArray},
    };

    use super::{
        DEFAULT_DNS_PORTS, DEFAULT_DNS_QUERIES_CAPACITY, DEFAULT_DNS_STATS_CAPACITY, DnsKey,
        DnsPacket, DnsQuery, DnsQueryKey, DnsStats, classify, dns_bucket, is_dns_port,
    };
    use crate::{
        Counter,
        count::{bump, now_ns},
        parse::{PacketInfo, proto},
    };

    const BPF_NOEXIST: u64 = 1;
    const EEXIST: i64 = 17;

    /// DNS queries waiting for their response, by client address, port and transaction id
    /// (user space sizes it, 1 entry when DNS is off).
    #[map]
    static DNS_QUERIES: HashMap<DnsQueryKey, DnsQuery> =
        HashMap::with_max_entries(DEFAULT_DNS_QUERIES_CAPACITY, 0);

    /// Answered DNS queries per flow (without the client port) and rcode: latency histograms.
    #[map]
    static DNS_STATS: HashMap<DnsKey, DnsStats> =
        HashMap::with_max_entries(DEFAULT_DNS_STATS_CAPACITY, 0);

    /// The DNS ports ([`super::dns_ports_global`]; 0: DNS off), set by user space before load.
    #[unsafe(no_mangle)]
    static DNS_PORTS: u64 = DEFAULT_DNS_PORTS;

    /// Records a UDP or TCP packet (ports 0 otherwise, and no DNS port is 0) if it goes to or
    /// comes from a DNS port; `load` reads eight bytes at an offset from the start of the frame
    /// (direct at XDP, `bpf_skb_load_bytes` at TC).
    #[inline(always)]
    pub fn on_packet(
        counters: &PerCpuArray<u64>,
        info: &PacketInfo,
        load: impl Fn(usize) -> Option<[u16; 4]>,
    ) {
        // SAFETY: a read of a program global (volatile: its value is set at load).
        let ports = unsafe { core::ptr::read_volatile(&raw const DNS_PORTS) };
        if ports == 0 {
            return;
        }
        let to = is_dns_port(ports, (info.ports >> 16) as u16);
        let from = is_dns_port(ports, info.ports as u16);
        if to | from {
            on_dns(counters, info, (to, from), load);
        }
    }

    /// Records a packet to or from a DNS port.
    #[inline(always)]
    fn on_dns(
        counters: &PerCpuArray<u64>,
        info: &PacketInfo,
        (to_port, from_port): (bool, bool),
        load: impl Fn(usize) -> Option<[u16; 4]>,
    ) {
        let tcp = info.protocol == proto::TCP;
        // The payload follows the IP and transport headers; the mask bounds the offset for the
        // verifier (headers end far below it).
        let at = ((info.l3_offset + info.hdr_len) & 0x7FFF) as usize;
        let Some(words) = load(at) else {
            return;
        };
        match classify(words, tcp, to_port, from_port) {
            Some(DnsPacket::Query { id }) => query(counters, info, id),
            Some(DnsPacket::Response { id, rcode }) => response(counters, info, id, rcode),
            None => {}
        }
    }

    /// A pending query's key from an address and port as the packet carries them.
    #[inline(always)]
    fn key_words(addr: [u64; 2], port: u16, id: u16, version: u8) -> [u64; 3] {
        [
            addr[0],
            addr[1],
            u64::from(port) | (u64::from(id) << 16) | (u64::from(version) << 32),
        ]
    }

    #[inline(always)]
    fn as_key(words: &[u64; 3]) -> &DnsQueryKey {
        // SAFETY: DnsQueryKey is these 24 bytes of plain integers.
        unsafe { &*words.as_ptr().cast::<DnsQueryKey>() }
    }

    /// A query: its time, unless a copy was already seen (a retransmission keeps the first).
    #[inline(always)]
    fn query(counters: &PerCpuArray<u64>, info: &PacketInfo, id: u16) {
        let words = key_words(info.src, info.ports as u16, id, info.version);
        let flow = info.flow_words();
        let value: [u64; 6] = [flow[0], flow[1], flow[2], flow[3], flow[4], now_ns()];
        // SAFETY: DnsQuery is these 48 bytes: the flow's five words, then the time.
        let value = unsafe { &*value.as_ptr().cast::<DnsQuery>() };
        match DNS_QUERIES.insert(as_key(&words), value, BPF_NOEXIST) {
            Ok(()) => {}
            Err(e) if i64::from(e) == -EEXIST => {}
            Err(_) => bump(counters, Counter::DnsQueriesUntracked, 1),
        }
    }

    /// A response: answers the pending query it finds (once: whoever deletes the entry counts).
    #[inline(always)]
    fn response(counters: &PerCpuArray<u64>, info: &PacketInfo, id: u16, rcode: u8) {
        let words = key_words(info.dst, (info.ports >> 16) as u16, id, info.version);
        let key = as_key(&words);
        let Some(found) = DNS_QUERIES.get_ptr(key) else {
            bump(counters, Counter::DnsResponsesUnmatched, 1);
            return;
        };
        // SAFETY: a value pointer from the lookup just above; DnsQuery is six words.
        let query: [u64; 6] = unsafe { core::ptr::read(found.cast::<[u64; 6]>()) };
        if DNS_QUERIES.remove(key).is_err() {
            // Another CPU took this query with a copy of the response.
            return;
        }
        let latency = now_ns().saturating_sub(query[5]);
        // The query's flow without the client (source) port, then the rcode.
        let stats_key: [u64; 6] = [
            query[0],
            query[1],
            query[2],
            query[3],
            query[4] & !0xFFFF,
            u64::from(rcode),
        ];
        // SAFETY: DnsKey is the first 44 bytes of these 48: the flow's five words, the rcode
        // and zero padding.
        let stats_key = unsafe { &*stats_key.as_ptr().cast::<DnsKey>() };
        match stats_entry(stats_key) {
            // SAFETY: a value pointer from a lookup in this run; every writer adds atomically.
            Some(stats) => unsafe {
                let buckets = (&raw mut (*stats).buckets).cast::<u64>();
                let bucket = buckets.add(dns_bucket(latency) & 15);
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(bucket, 1);
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                    &raw mut (*stats).sum_ns,
                    latency,
                );
            },
            None => bump(counters, Counter::DnsResponsesUntracked, 1),
        }
    }

    /// The answered-query entry of `key`, created empty if needed; `None` when the table is
    /// full.
    #[inline(always)]
    fn stats_entry(key: &DnsKey) -> Option<*mut DnsStats> {
        if let Some(entry) = DNS_STATS.get_ptr_mut(key) {
            return Some(entry);
        }
        let mut zero = core::mem::MaybeUninit::<DnsStats>::uninit();
        let words = zero.as_mut_ptr().cast::<u64>();
        let mut i = 0;
        // Word stores, volatile so that the compiler does not make them a memset call (the
        // BPF target turns one into a byte loop).
        while i < core::mem::size_of::<DnsStats>() / 8 {
            // SAFETY: `i` words into a DnsStats.
            unsafe { core::ptr::write_volatile(words.add(i), 0) };
            i += 1;
        }
        // SAFETY: every word was written above.
        let zero = unsafe { zero.assume_init_ref() };
        match DNS_STATS.insert(key, zero, BPF_NOEXIST) {
            Ok(()) => {}
            Err(e) if i64::from(e) == -EEXIST => {}
            Err(_) => return None,
        }
        DNS_STATS.get_ptr_mut(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(words: [u16; 4]) -> [u16; 4] {
        words.map(u16::to_be)
    }

    #[test]
    fn a_udp_query_and_its_response() {
        // id 0x1234, RD; one question.
        let q = classify(be([0x1234, 0x0100, 1, 0]), false, true, false);
        assert_eq!(
            q,
            Some(DnsPacket::Query {
                id: 0x1234u16.to_be()
            })
        );
        // QR, RD, RA, rcode 3 (NXDomain).
        let r = classify(be([0x1234, 0x8183, 1, 0]), false, false, true);
        assert_eq!(
            r,
            Some(DnsPacket::Response {
                id: 0x1234u16.to_be(),
                rcode: 3
            })
        );
    }

    #[test]
    fn tcp_reads_past_the_length_prefix() {
        let q = classify(be([29, 0xBEEF, 0x0100, 1]), true, true, false);
        assert_eq!(
            q,
            Some(DnsPacket::Query {
                id: 0xBEEFu16.to_be()
            })
        );
        // A segment that does not start a message: its "prefix" is no DNS length.
        assert_eq!(
            classify(be([3, 0xBEEF, 0x0100, 1]), true, true, false),
            None
        );
    }

    #[test]
    fn not_dns_on_the_port() {
        // Two questions, an UPDATE (opcode 5), a query from the port, a response to it.
        assert_eq!(classify(be([1, 0x0100, 2, 0]), false, true, false), None);
        assert_eq!(classify(be([1, 0x2800, 1, 0]), false, true, false), None);
        assert_eq!(classify(be([1, 0x0100, 1, 0]), false, false, true), None);
        assert_eq!(classify(be([1, 0x8180, 1, 0]), false, true, false), None);
    }

    #[test]
    fn ports_match_exactly_in_any_lane() {
        let raw = |p: u16| u16::from_ne_bytes(p.to_be_bytes());
        let g = dns_ports_global(&[53, 5353]);
        for p in [53, 5353] {
            assert!(is_dns_port(g, raw(p)), "{p}");
        }
        for p in [0, 52, 54, 5352, 853, 13568] {
            assert!(!is_dns_port(g, raw(p)), "{p}");
        }
        assert!(is_dns_port(DEFAULT_DNS_PORTS, raw(53)));
        assert!(!is_dns_port(DEFAULT_DNS_PORTS, 0));
    }

    #[test]
    fn latency_buckets_edges() {
        assert_eq!(dns_bucket(0), 0);
        assert_eq!(dns_bucket(100_000), 0);
        assert_eq!(dns_bucket(100_001), 1);
        assert_eq!(dns_bucket(5_000_000_000), 14);
        assert_eq!(dns_bucket(5_000_000_001), 15);
        assert_eq!(dns_bucket(u64::MAX / 2), 15);
    }
}
