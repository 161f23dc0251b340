//! The contract between otel-netprobe's kernel programs and its user-space agent.
//!
//! This `no_std` library is compiled twice: for the BPF target, where the programs in `main.rs`
//! use it, and for the host, where the agent reads maps with these exact layouts (feature `user`
//! adds the `aya::Pod` impls) and where the parser is unit-tested. Every type here is `#[repr(C)]`
//! with explicit padding and a compile-time size check, so the ABI cannot drift silently.
#![no_std]
// In BPF every helper must be inlined into the program: calls cost and some cannot be verified.
#![allow(clippy::inline_always)]
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

pub mod dns;
pub mod parse;

#[cfg(target_arch = "bpf")]
pub mod conn;
#[cfg(target_arch = "bpf")]
pub mod count;
#[cfg(target_arch = "bpf")]
pub mod drop;
#[cfg(target_arch = "bpf")]
pub mod iface;

/// Name of the IPv4 flow table map in the eBPF object (16-byte keys).
pub const FLOWS4_MAP: &str = "FLOWS4";
/// Name of the IPv6 flow table map in the eBPF object (40-byte keys).
pub const FLOWS6_MAP: &str = "FLOWS6";
/// Name of the per-CPU global counter array in the eBPF object.
pub const COUNTERS_MAP: &str = "COUNTERS";
/// Name of the dropped-packet table (per flow and reason).
pub const DROPS_MAP: &str = "DROPS";
/// Name of the ICMP-error table (per answered flow, type and code).
pub const ICMP_ERRORS_MAP: &str = "ICMP_ERRORS";
/// Name of the connection table (TCP handshakes and closes, by the client's port and ISN).
pub const CONNS_MAP: &str = "CONNS";
/// Name of the table that finds a connection from its client end (as either side sees it).
pub const CONN_ENDS_MAP: &str = "CONN_ENDS";
/// The layout of the maps shared across agent restarts (they are pinned in bpffs and adopted by
/// the next agent). **Bump it whenever a shared map's key or value type changes meaning** —
/// a field added, removed, reordered or reinterpreted, a counter slot or size bucket
/// renumbered — even when the sizes stay equal (sizes, types, flags and capacities are
/// checked anyway; this catches what they cannot). A bump makes the next agent replace the
/// pinned state once, with one log line, instead of reading it with the wrong layout.
pub const LAYOUT_VERSION: u32 = 1;
/// Name of the agent's own pinned map of restart facts (layout version, start time); created
/// by user space, not part of the object.
pub const META_MAP: &str = "NP_META";
/// Default capacity of the connection table (an LRU: the least recently touched connection
/// makes room, and the reader counts it as evicted).
pub const DEFAULT_CONNS_CAPACITY: u32 = 32_768;
/// Name of the drop program for kernels whose `kfree_skb` tracepoint carries a reason (5.17).
pub const DROP_PROGRAM: &str = "netprobe_drop";
/// Name of the drop program for kernels before 5.17 (no reason argument).
pub const DROP_PROGRAM_NO_REASON: &str = "netprobe_drop_old";
/// The load-time globals of the drop programs: `sk_buff` field offsets from the kernel's BTF.
pub mod skb_offsets {
    /// Offset of `head`.
    pub const HEAD: &str = "SKB_HEAD";
    /// Offset of `network_header`.
    pub const NETWORK_HEADER: &str = "SKB_NETWORK_HEADER";
    /// Offset of `transport_header`.
    pub const TRANSPORT_HEADER: &str = "SKB_TRANSPORT_HEADER";
    /// Offset of `protocol`.
    pub const PROTOCOL: &str = "SKB_PROTOCOL";
}
/// Default capacity of the drop table.
pub const DEFAULT_DROPS_CAPACITY: u32 = 16_384;
/// Default capacity of the ICMP-error table.
pub const DEFAULT_ICMP_ERRORS_CAPACITY: u32 = 8_192;
/// The reason a drop program records on kernels whose tracepoint has none.
pub const UNKNOWN_REASON: u32 = u32::MAX;
/// Name of the XDP entry point.
pub const XDP_PROGRAM: &str = "netprobe_xdp";
/// Name of the TC ingress entry point.
pub const TC_INGRESS_PROGRAM: &str = "netprobe_tc_ingress";
/// Name of the TC egress entry point (locally originated packets only).
pub const TC_EGRESS_PROGRAM: &str = "netprobe_tc_egress";
/// Name of the TC ingress entry point for devices without a link-layer header.
pub const TC_INGRESS_L3_PROGRAM: &str = "netprobe_tc_ingress_l3";
/// Name of the TC egress entry point for devices without a link-layer header.
pub const TC_EGRESS_L3_PROGRAM: &str = "netprobe_tc_egress_l3";

/// Default capacity of the IPv4 flow table. With [`DEFAULT_FLOW6_CAPACITY`]: 262,144 flows in
/// about 50 MiB of kernel memory, whatever the number of CPUs (one shared value per flow,
/// updated with atomic adds).
pub const DEFAULT_FLOW4_CAPACITY: u32 = 196_608;
/// Default capacity of the IPv6 flow table.
pub const DEFAULT_FLOW6_CAPACITY: u32 = 65_536;

/// Upper bounds (inclusive, IP bytes) of the packet-size buckets; the last bucket is unbounded.
pub const SIZE_BUCKET_BOUNDS: [u32; 7] = [64, 128, 256, 512, 1024, 1500, 9000];
/// Number of packet-size buckets (the bounds above plus "larger").
pub const SIZE_BUCKETS: usize = SIZE_BUCKET_BOUNDS.len() + 1;

/// Returns the bucket index of a packet of `ip_len` IP bytes.
///
/// Branch-free: the number of bounds the length exceeds, each `(bound - len) >> 63` (1 exactly
/// when `len > bound`). In the kernel this is one unknown value in 0..=7 for the verifier rather
/// than seven paths with a constant each, which every later instruction would be verified for
/// (two buckets of a GSO buffer made that 2^14 paths). The length goes through [`opaque`]: knowing
/// it is below 2^32, the compiler would turn each term back into a compare and a branch.
#[inline(always)]
pub fn size_bucket(ip_len: u32) -> usize {
    let l = opaque(u64::from(ip_len));
    let n = (64u64.wrapping_sub(l) >> 63)
        + (128u64.wrapping_sub(l) >> 63)
        + (256u64.wrapping_sub(l) >> 63)
        + (512u64.wrapping_sub(l) >> 63)
        + (1024u64.wrapping_sub(l) >> 63)
        + (1500u64.wrapping_sub(l) >> 63)
        + (9000u64.wrapping_sub(l) >> 63);
    n as usize
}

/// `v`, through memory the compiler cannot see into: what it proves about `v` (and so about a
/// mask or a branch-free formula applied to it) is forgotten, so the instructions written stay in
/// the program for the verifier, which could not prove the same. A stack store and load.
#[inline(always)]
pub fn opaque<T: Copy>(v: T) -> T {
    // SAFETY: a read of a local just written.
    unsafe { core::ptr::read_volatile(&raw const v) }
}

/// Identity of a unidirectional flow.
///
/// Addresses are stored exactly as they appear on the wire (network byte order), IPv4 in the
/// first word with the other three zero. Ports are in network byte order too (the kernel never
/// swaps bytes; user space does). ICMP and ICMPv6 flows have zero ports; non-first IPv4
/// fragments and unparsed transports also have zero ports.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    /// Source address, network byte order.
    pub src_addr: [u32; 4],
    /// Destination address, network byte order.
    pub dst_addr: [u32; 4],
    /// Source port, network byte order (0 where the transport has none).
    pub src_port: u16,
    /// Destination port, network byte order (0 where the transport has none).
    pub dst_port: u16,
    /// IP protocol number (IPv6: the upper-layer next header).
    pub protocol: u8,
    /// 4 or 6.
    pub ip_version: u8,
    /// Explicit padding; always zero (it is hashed).
    pub pad: [u8; 2],
}

impl FlowKey {
    /// The key whose memory is these five words (how the programs build it: five stores).
    pub fn from_words(w: [u64; 5]) -> Self {
        let word = |i: usize, j: usize| {
            let b = w[i].to_ne_bytes();
            u32::from_ne_bytes([b[j], b[j + 1], b[j + 2], b[j + 3]])
        };
        let tail = w[4].to_ne_bytes();
        Self {
            src_addr: [word(0, 0), word(0, 4), word(1, 0), word(1, 4)],
            dst_addr: [word(2, 0), word(2, 4), word(3, 0), word(3, 4)],
            src_port: u16::from_ne_bytes([tail[0], tail[1]]),
            dst_port: u16::from_ne_bytes([tail[2], tail[3]]),
            protocol: tail[4],
            ip_version: tail[5],
            pad: [tail[6], tail[7]],
        }
    }
}

/// The IPv4 flow key: the same identity as [`FlowKey`] in 16 bytes. The kernel hashes and
/// compares every key on every packet; a 16-byte key is measurably cheaper than a 40-byte one
/// (`make bench`), and most traffic is IPv4.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey4 {
    /// Source address, network byte order.
    pub src_addr: u32,
    /// Destination address, network byte order.
    pub dst_addr: u32,
    /// Source port, network byte order.
    pub src_port: u16,
    /// Destination port, network byte order.
    pub dst_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    /// Explicit padding; always zero (it is hashed).
    pub pad: [u8; 3],
}

impl FlowKey4 {
    /// The key whose memory is these two words (how the programs build it: two stores).
    pub fn from_words(w: [u64; 2]) -> Self {
        let (a, b) = (w[0].to_ne_bytes(), w[1].to_ne_bytes());
        Self {
            src_addr: u32::from_ne_bytes([a[0], a[1], a[2], a[3]]),
            dst_addr: u32::from_ne_bytes([a[4], a[5], a[6], a[7]]),
            src_port: u16::from_ne_bytes([b[0], b[1]]),
            dst_port: u16::from_ne_bytes([b[2], b[3]]),
            protocol: b[4],
            pad: [b[5], b[6], b[7]],
        }
    }

    /// The IPv4 key of a [`FlowKey`] whose `ip_version` is 4.
    #[inline(always)]
    pub fn narrow(k: &FlowKey) -> Self {
        Self {
            src_addr: k.src_addr[0],
            dst_addr: k.dst_addr[0],
            src_port: k.src_port,
            dst_port: k.dst_port,
            protocol: k.protocol,
            pad: [0; 3],
        }
    }

    /// The general key.
    pub fn widen(&self) -> FlowKey {
        FlowKey {
            src_addr: [self.src_addr, 0, 0, 0],
            dst_addr: [self.dst_addr, 0, 0, 0],
            src_port: self.src_port,
            dst_port: self.dst_port,
            protocol: self.protocol,
            ip_version: 4,
            pad: [0; 2],
        }
    }
}

/// Per-flow counters in the kernel, one shared value per flow, updated with atomic adds.
///
/// The packet count is not stored: it is the sum of the size buckets, which saves one atomic add
/// per packet. Nor is the time of the latest packet: the reader sees when the counts last
/// changed, so the hot path reads no clock and stores nothing but its adds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// IP bytes (IP header + payload) of every wire packet.
    pub bytes: u64,
    /// Wire packets per size bucket (see [`SIZE_BUCKET_BOUNDS`]).
    pub size_buckets: [u64; SIZE_BUCKETS],
    /// `CLOCK_MONOTONIC` time the kernel entry was created, ns: tells a new entry of the
    /// same flow from the one the reader saw before.
    pub first_seen_ns: u64,
    /// TCP control packets of the flow, counted per kind in four 16-bit lanes (see
    /// [`tcp_control`]); only SYN, FIN and RST packets touch it.
    pub tcp_control: u64,
}

impl FlowStats {
    /// Wire packets counted (the sum of the size buckets).
    pub fn packets(&self) -> u64 {
        self.size_buckets.iter().sum()
    }
}

/// TCP flag bits of the header's flags byte, and the union of flags user space derives from
/// [`FlowStats::tcp_control`].
pub mod tcp_flags {
    /// FIN.
    pub const FIN: u64 = 0x01;
    /// SYN.
    pub const SYN: u64 = 0x02;
    /// RST.
    pub const RST: u64 = 0x04;
    /// PSH.
    pub const PSH: u64 = 0x08;
    /// ACK.
    pub const ACK: u64 = 0x10;
    /// URG.
    pub const URG: u64 = 0x20;
    /// ECE.
    pub const ECE: u64 = 0x40;
    /// CWR.
    pub const CWR: u64 = 0x80;
    /// Synthetic: a packet with both SYN and ACK set was seen (the server side of a handshake).
    pub const SYN_ACK: u64 = 0x100;
    /// The flags whose packets the kernel counts per flow: SYN, FIN and RST.
    pub const CONTROL: u8 = (SYN | FIN | RST) as u8;
}

/// Per-flow counts of TCP control packets, kept in one `u64` of four 16-bit lanes so that one
/// atomic add (which every supported kernel has; atomic `or` needs 5.12) records a packet of
/// any kind: a SYN (without ACK), a SYN-ACK, a FIN, a RST. A lane stops at
/// [`tcp_control::LIMIT`] (its top bit set), so lanes never carry into each other: a lane that
/// reached it means "at least that many".
pub mod tcp_control {
    /// Lane of SYN packets without ACK (the client's, retransmissions included).
    pub const SYN: u32 = 0;
    /// Lane of SYN-ACK packets (the server's).
    pub const SYN_ACK: u32 = 1;
    /// Lane of FIN packets.
    pub const FIN: u32 = 2;
    /// Lane of RST packets.
    pub const RST: u32 = 3;
    /// A lane at or above this stops counting.
    pub const LIMIT: u64 = 0x8000;
    /// The top bit of every lane.
    pub const FULL: u64 = 0x8000_8000_8000_8000;

    /// What a packet with TCP flags byte `flags` adds: 1 in the lane of each kind it is.
    #[inline(always)]
    pub const fn increment(flags: u8) -> u64 {
        let f = flags as u64;
        let fin = f & 1;
        let syn = (f >> 1) & 1;
        let rst = (f >> 2) & 1;
        let ack = (f >> 4) & 1;
        (syn & (ack ^ 1)) | ((syn & ack) << 16) | (fin << 32) | (rst << 48)
    }

    /// `inc` without the lanes that are full in `current`.
    #[inline(always)]
    pub const fn unsaturated(inc: u64, current: u64) -> u64 {
        inc & !((current & FULL) >> 15)
    }

    /// The count in `lane` of a control value.
    pub const fn count(control: u64, lane: u32) -> u64 {
        (control >> (16 * lane)) & 0xFFFF
    }

    /// The union of flags ([`super::tcp_flags`]) a control value shows.
    pub const fn flags(control: u64) -> u64 {
        let mut f = 0;
        if count(control, SYN) > 0 {
            f |= super::tcp_flags::SYN;
        }
        if count(control, SYN_ACK) > 0 {
            f |= super::tcp_flags::SYN | super::tcp_flags::ACK | super::tcp_flags::SYN_ACK;
        }
        if count(control, FIN) > 0 {
            f |= super::tcp_flags::FIN;
        }
        if count(control, RST) > 0 {
            f |= super::tcp_flags::RST;
        }
        f
    }
}

/// A dropped packet's flow and why the kernel dropped it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DropKey {
    /// The flow, as the packet's headers say at the drop (IPv4 widened).
    pub flow: FlowKey,
    /// `enum skb_drop_reason` of the running kernel ([`UNKNOWN_REASON`] before 5.17).
    pub reason: u32,
}

/// Packets and IP bytes dropped.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Packets.
    pub packets: u64,
    /// IP bytes (the header's length).
    pub bytes: u64,
}

/// An ICMP error and the flow it answers (the packet it quotes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct IcmpErrorKey {
    /// The flow of the quoted packet: the one the error answers.
    pub flow: FlowKey,
    /// ICMP (or ICMPv6) type.
    pub icmp_type: u8,
    /// ICMP code.
    pub icmp_code: u8,
    /// 4 or 6: ICMP or ICMPv6.
    pub icmp_version: u8,
    /// Explicit padding; always zero (it is hashed).
    pub pad: u8,
}

/// A TCP connection's identity: the client's port and initial sequence number, as on its
/// first SYN. Both survive the NAT a node applies (DNAT to a service's backend, a source NAT
/// that keeps the port), so the server's SYN-ACK (`ack = ISN + 1`, to the client's port) finds
/// the connection whatever addresses it carries. Word-aligned: the programs handle it as one
/// `u64`.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    /// The client's initial sequence number.
    pub isn: u32,
    /// The client's port, network byte order.
    pub client_port: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// Explicit padding; always zero (it is hashed).
    pub pad: u8,
}

/// What the kernel saw of a connection. Fields other than the retransmit count are written
/// once (events are bytes set to 1: a write that two CPUs may race on harmlessly).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Conn {
    /// The flow of the first SYN (client to server, as the node saw it).
    pub flow: FlowKey,
    /// `CLOCK_MONOTONIC` time of the first SYN, ns.
    pub syn_ns: u64,
    /// First SYN to the matching SYN-ACK, ns (0 until answered).
    pub handshake_ns: u64,
    /// The interface whose hook saw the first SYN: the same SYN at another hook is not a
    /// retransmission.
    pub ifindex: u32,
    /// SYNs with the connection's ISN after the first, at the same hook.
    pub syn_retransmits: u32,
    /// Events, one byte each ([`conn_event`]).
    pub events: [u8; 8],
}

/// Indexes into [`Conn::events`].
pub mod conn_event {
    /// A SYN-ACK with `ack = ISN + 1` answered the SYN.
    pub const ANSWERED: usize = 0;
    /// A RST with `ack = ISN + 1` answered the SYN: refused.
    pub const REFUSED: usize = 1;
    /// The client sent a FIN.
    pub const FIN_CLIENT: usize = 2;
    /// The server sent a FIN.
    pub const FIN_SERVER: usize = 3;
    /// A RST after the handshake (either side).
    pub const RESET: usize = 4;
}

/// A client end of a connection (address and port as one side's packets carry it), to find
/// the connection from a FIN or RST, which carry no ISN.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnEnd {
    /// Address, network byte order (IPv4 in the first word).
    pub addr: [u32; 4],
    /// Port, network byte order.
    pub port: u16,
    /// 4 or 6.
    pub ip_version: u8,
    /// Explicit padding; always zero (it is hashed).
    pub pad: [u8; 5],
}

/// Name of the per-CPU array of interface slots: what each ingress program saw per interface,
/// compared by user space with the interface's own counters (coverage).
pub const IFACES_MAP: &str = "IFACES";
/// Slots in [`IFACES_MAP`]: interfaces measured at once (a power of two).
pub const IFACE_SLOTS: u32 = 1024;
/// Slots a program tries for an interface: `ifindex`, `ifindex + 1`, … (modulo
/// [`IFACE_SLOTS`]); user space gives an interface the first free one of these.
pub const IFACE_PROBES: u32 = 4;

/// The `i`-th slot an interface may have ([`IFACE_PROBES`]).
#[inline(always)]
pub const fn iface_slot(ifindex: u32, i: u32) -> u32 {
    ifindex.wrapping_add(i) & (IFACE_SLOTS - 1)
}

/// One interface's slot in [`IFACES_MAP`], per CPU: every frame (XDP) or socket buffer (TC)
/// the interface's ingress program ran for, IP or not, and its length as the hook sees it
/// (`data_end - data` at XDP, `skb->len` at TC, link-layer header included on Ethernet).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceSlot {
    /// The interface this slot belongs to (0: free). Written by user space only.
    pub ifindex: u32,
    /// Explicit padding; always zero.
    pub pad: u32,
    /// Frames or buffers seen.
    pub packets: u64,
    /// Their bytes as the hook sees them.
    pub bytes: u64,
}

/// Indexes of the per-CPU global counters ([`COUNTERS_MAP`]).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Non-IP packets: ARP.
    NonIpArp = 0,
    /// Non-IP packets: LLDP.
    NonIpLldp = 1,
    /// Non-IP packets: any other EtherType (or more than two VLAN tags).
    NonIpOther = 2,
    /// Malformed or truncated: Ethernet header.
    MalformedEthernet = 3,
    /// Malformed or truncated: VLAN tag.
    MalformedVlan = 4,
    /// Malformed or truncated: IPv4 header (short, bad IHL, bad total length).
    MalformedIpv4 = 5,
    /// Malformed or truncated: IPv6 header or extension headers.
    MalformedIpv6 = 6,
    /// Malformed or truncated: TCP, UDP, ICMP or ICMPv6 header.
    MalformedTransport = 7,
    /// Packets counted in a flow without ports because they are non-first fragments.
    Fragments = 8,
    /// IPv6 packets whose extension-header chain was longer than the parser walks.
    Ipv6ExtTooLong = 9,
    /// Packets not tracked because the flow table was full.
    MapFullPackets = 10,
    /// IP bytes of the packets not tracked because the flow table was full.
    MapFullBytes = 11,
    /// Dropped packets whose headers could not be read (not IP, or not yet parsed).
    DropsUnparsed = 12,
    /// Dropped packets not recorded because the drop table was full.
    DropsUntracked = 13,
    /// ICMP errors not recorded because their table was full.
    IcmpErrorsUntracked = 14,
    /// SYNs whose connection could not be recorded (the table refused the insert).
    ConnsUntracked = 15,
    /// DNS queries not recorded because the pending-query table was full (they are then
    /// neither answered nor unanswered).
    DnsQueriesUntracked = 16,
    /// DNS responses that found no pending query (its query was not seen on this node, came
    /// before the agent started, or was already answered or given up).
    DnsResponsesUnmatched = 17,
    /// DNS responses not recorded because the answered-query table was full.
    DnsResponsesUntracked = 18,
    /// Packets an ingress program saw on an interface that has no coverage slot
    /// ([`IFACES_MAP`]): counted in their flows, missing from the interface's coverage.
    IfaceNoSlot = 19,
}

/// Number of slots in the global counter array.
pub const COUNTER_SLOTS: u32 = 32;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; 20] = [
        Counter::NonIpArp,
        Counter::NonIpLldp,
        Counter::NonIpOther,
        Counter::MalformedEthernet,
        Counter::MalformedVlan,
        Counter::MalformedIpv4,
        Counter::MalformedIpv6,
        Counter::MalformedTransport,
        Counter::Fragments,
        Counter::Ipv6ExtTooLong,
        Counter::MapFullPackets,
        Counter::MapFullBytes,
        Counter::DropsUnparsed,
        Counter::DropsUntracked,
        Counter::IcmpErrorsUntracked,
        Counter::ConnsUntracked,
        Counter::DnsQueriesUntracked,
        Counter::DnsResponsesUnmatched,
        Counter::DnsResponsesUntracked,
        Counter::IfaceNoSlot,
    ];
}

const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
const _: () = assert!(core::mem::size_of::<FlowKey4>() == 16);
const _: () = assert!(core::mem::align_of::<FlowKey>() == 4);
const _: () = assert!(core::mem::size_of::<FlowStats>() == 88);
const _: () = assert!(core::mem::align_of::<FlowStats>() == 8);
const _: () = assert!(Counter::ALL.len() as u32 <= COUNTER_SLOTS);
const _: () = assert!(core::mem::size_of::<DropKey>() == 44);
const _: () = assert!(core::mem::size_of::<DropStats>() == 16);
const _: () = assert!(core::mem::size_of::<IcmpErrorKey>() == 44);
const _: () = assert!(core::mem::size_of::<ConnKey>() == 8);
const _: () = assert!(core::mem::size_of::<Conn>() == 72);
const _: () = assert!(core::mem::align_of::<Conn>() == 8);
const _: () = assert!(core::mem::size_of::<ConnEnd>() == 24);
const _: () = assert!(core::mem::size_of::<IfaceSlot>() == 24);
const _: () = assert!(IFACE_SLOTS.is_power_of_two());

#[cfg(feature = "user")]
mod pod {
    // SAFETY: FlowKey is #[repr(C)], Copy, made only of integers, with explicit padding fields,
    // so every bit pattern is valid and there are no uninitialised bytes.
    unsafe impl aya::Pod for super::FlowKey {}
    // SAFETY: as above for FlowKey4.
    unsafe impl aya::Pod for super::FlowKey4 {}
    // SAFETY: as above for FlowStats.
    unsafe impl aya::Pod for super::FlowStats {}
    // SAFETY: as above: integers and explicit padding only.
    unsafe impl aya::Pod for super::DropKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IcmpErrorKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Conn {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ConnEnd {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::IfaceSlot {}
}
