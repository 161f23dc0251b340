//! Bounds-checked header walking shared by the XDP and TC entry points.
//!
//! The parser reads packet bytes between two addresses (`data`, `data_end`), as the kernel hands
//! them to XDP and TC programs; every read is preceded by the bounds check the verifier wants to
//! see. The same code runs on the host over a byte slice, where it is unit-tested.
//!
//! What it parses: Ethernet, up to two VLAN tags (802.1Q / 802.1ad), IPv4 with options, IPv6
//! with a bounded walk of extension headers, TCP, UDP, ICMP and ICMPv6. Anything else is
//! classified, never rejected: the programs always pass the packet.

use crate::{Counter, FlowKey, opaque};

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;
const ETH_P_LLDP: u16 = 0x88CC;

/// IP protocol numbers the parser knows.
pub mod proto {
    /// ICMP.
    pub const ICMP: u8 = 1;
    /// TCP.
    pub const TCP: u8 = 6;
    /// UDP.
    pub const UDP: u8 = 17;
    /// ICMPv6.
    pub const ICMPV6: u8 = 58;
    /// IPv6 hop-by-hop options.
    pub const HOPOPTS: u8 = 0;
    /// IPv6 routing header.
    pub const ROUTING: u8 = 43;
    /// IPv6 fragment header.
    pub const FRAGMENT: u8 = 44;
    /// IPv6 destination options.
    pub const DSTOPTS: u8 = 60;
    /// Authentication header.
    pub const AH: u8 = 51;
}

/// How many IPv6 extension headers the parser walks before giving up on the transport.
pub const MAX_IPV6_EXT_HEADERS: usize = 6;

/// A parsed IP packet: its flow, sizes and TCP flags.
///
/// The flow's identity is kept in words as the key maps store it, so that the programs build a
/// key with two (IPv4) or five (IPv6) stores; [`PacketInfo::key`] decodes it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PacketInfo {
    /// 4 or 6.
    pub version: u8,
    /// IP protocol number (IPv6: the upper-layer next header).
    pub protocol: u8,
    /// The TCP flags byte (0 for other transports).
    pub tcp_flags: u8,
    /// Set for non-first IPv4/IPv6 fragments (counted without ports).
    pub fragment: bool,
    /// Set when the IPv6 extension-header chain was too long to reach the transport.
    pub ext_too_long: bool,
    /// Source address as stored in a key: IPv4 in the low half of the first word.
    pub src: [u64; 2],
    /// Destination address, likewise.
    pub dst: [u64; 2],
    /// Source and destination port as on the wire (the four bytes read as one `u32`); 0 when
    /// the transport has none.
    pub ports: u32,
    /// Offset of the IP header from `data`.
    pub l3_offset: u32,
    /// IP length from the header (IPv4 total length, IPv6 payload length + 40); 0 for an IPv6
    /// jumbogram, where the caller must use the buffer length.
    pub ip_len: u32,
    /// IP header length plus transport header length: the headers every GSO segment repeats.
    pub hdr_len: u32,
    /// Offset of the transport header from `data` (0 when none was read): where the rare
    /// packets that need more of it (SYN, FIN, RST; ICMP errors) read it again.
    pub l4_offset: u16,
}

impl PacketInfo {
    /// The IPv4 key's two words ([`crate::FlowKey4`]'s memory).
    #[inline(always)]
    pub fn key4_words(&self) -> [u64; 2] {
        [
            self.src[0] | (self.dst[0] << 32),
            u64::from(self.ports) | (u64::from(self.protocol) << 32),
        ]
    }

    /// The IPv6 key's five words ([`FlowKey`]'s memory).
    #[inline(always)]
    pub fn key6_words(&self) -> [u64; 5] {
        [
            self.src[0],
            self.src[1],
            self.dst[0],
            self.dst[1],
            u64::from(self.ports) | (u64::from(self.protocol) << 32) | (6 << 40),
        ]
    }

    /// The flow's key as [`FlowKey`]'s five words, whatever the IP version (the connection,
    /// drop and ICMP tables use the general key).
    #[inline(always)]
    pub fn flow_words(&self) -> [u64; 5] {
        let tail = u64::from(self.ports)
            | (u64::from(self.protocol) << 32)
            | (u64::from(self.version) << 40);
        [self.src[0], self.src[1], self.dst[0], self.dst[1], tail]
    }

    /// The flow's key, decoded (user space and tests).
    pub fn key(&self) -> FlowKey {
        if self.version == 4 {
            crate::FlowKey4::from_words(self.key4_words()).widen()
        } else {
            FlowKey::from_words(self.key6_words())
        }
    }
}

/// Outcome of parsing one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// An IP packet to count in its flow.
    Ip(PacketInfo),
    /// A packet counted only in this global counter (non-IP, or malformed at some layer).
    Other(Counter),
}

/// Reads `size_of::<T>()` bytes at `data + off` after a bounds check against `end`.
#[inline(always)]
pub(crate) fn load<T: Copy>(data: usize, end: usize, off: usize) -> Result<T, ()> {
    if data + off + core::mem::size_of::<T>() > end {
        return Err(());
    }
    let ptr = (data + off) as *const T;
    // SAFETY: the bytes are within [data, end), checked just above; T is plain data. In BPF a
    // plain read compiles to word loads, which the kernel allows at any packet offset on the
    // architectures we support; `read_unaligned` would be split into byte loads (measured: most
    // of the parser's cost). On the host, where alignment matters, read unaligned.
    #[cfg(target_arch = "bpf")]
    let value = unsafe { core::ptr::read(ptr) };
    #[cfg(not(target_arch = "bpf"))]
    let value = unsafe { core::ptr::read_unaligned(ptr) };
    Ok(value)
}

/// Eight bytes at `data + off`, bounds-checked against `end` (the XDP side of
/// [`crate::count::Packet::load8`]).
#[inline(always)]
pub fn load8(data: usize, end: usize, off: usize) -> Option<[u16; 4]> {
    load::<[u16; 4]>(data, end, off).ok()
}

#[inline(always)]
fn be16(raw: u16) -> u16 {
    u16::from_be(raw)
}

/// Parses the frame in `[data, data_end)`, starting at the Ethernet header.
#[inline(always)]
pub fn parse_ethernet(data: usize, data_end: usize) -> Parsed {
    let Ok(mut ethertype) = load::<u16>(data, data_end, 12).map(be16) else {
        return Parsed::Other(Counter::MalformedEthernet);
    };
    let mut off = ETH_HLEN;
    // Up to two VLAN tags (QinQ); the tag's EtherType follows its 2-byte TCI.
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let Ok(inner) = load::<u16>(data, data_end, off + 2).map(be16) else {
            return Parsed::Other(Counter::MalformedVlan);
        };
        ethertype = inner;
        off += 4;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let Ok(inner) = load::<u16>(data, data_end, off + 2).map(be16) else {
                return Parsed::Other(Counter::MalformedVlan);
            };
            ethertype = inner;
            off += 4;
        }
    }
    match ethertype {
        ETH_P_IP => parse_ipv4(data, data_end, off),
        ETH_P_IPV6 => parse_ipv6(data, data_end, off),
        ETH_P_ARP => Parsed::Other(Counter::NonIpArp),
        ETH_P_LLDP => Parsed::Other(Counter::NonIpLldp),
        _ => Parsed::Other(Counter::NonIpOther),
    }
}

/// Parses a packet of a device without a link-layer header (TUN, WireGuard, IPIP), whose IP
/// header starts at `data`; `ethertype` is the packet's protocol (`skb->protocol`, host order).
#[inline(always)]
pub fn parse_l3(data: usize, data_end: usize, ethertype: u16) -> Parsed {
    match ethertype {
        ETH_P_IP => parse_ipv4(data, data_end, 0),
        ETH_P_IPV6 => parse_ipv6(data, data_end, 0),
        _ => Parsed::Other(Counter::NonIpOther),
    }
}

/// Parses an IPv4 packet whose header starts at `data + off`.
#[inline(always)]
pub fn parse_ipv4(data: usize, data_end: usize, off: usize) -> Parsed {
    // The fixed 20-byte header, read as five words.
    let Ok(hdr) = load::<[u32; 5]>(data, data_end, off) else {
        return Parsed::Other(Counter::MalformedIpv4);
    };
    let w0 = u32::from_be(hdr[0]);
    let version = w0 >> 28;
    let ihl = ((w0 >> 24) & 0xF) as usize * 4;
    let tot_len = w0 & 0xFFFF;
    if version != 4 || ihl < 20 || (tot_len as usize) < ihl {
        return Parsed::Other(Counter::MalformedIpv4);
    }
    // The options, whole: a header cut short is the IPv4 layer's error, not the transport's.
    if load::<u8>(data, data_end, off + (ihl & 0x3C) - 1).is_err() {
        return Parsed::Other(Counter::MalformedIpv4);
    }
    let frag_off = u32::from_be(hdr[1]) & 0x1FFF;
    let info = PacketInfo {
        version: 4,
        protocol: ((u32::from_be(hdr[2]) >> 16) & 0xFF) as u8,
        tcp_flags: 0,
        // Non-first fragment: no transport header; counted in the flow without ports. A first
        // fragment (more-fragments set, offset 0) still carries the transport header.
        fragment: frag_off != 0,
        ext_too_long: false,
        src: [u64::from(hdr[3]), 0],
        dst: [u64::from(hdr[4]), 0],
        ports: 0,
        l3_offset: off as u32,
        ip_len: tot_len,
        hdr_len: ihl as u32,
        l4_offset: 0,
    };
    if info.fragment {
        return Parsed::Ip(info);
    }
    // IHL is at most 60: the verifier sees a bounded offset.
    parse_transport(data, data_end, off + (ihl & 0x3C), info)
}

/// How an IPv6 extension header's length follows from its second byte `b`:
/// `((b & mask) + add) << shift`, packed as `mask | add << 8 | shift << 16`, per next-header
/// value; 0 for values that are not extension headers. A table rather
/// than branches, so that each header of the walk leaves the verifier one state, not three.
const fn ext_rule(next: u8) -> u32 {
    match next {
        // Length in 8-byte units, not counting the first 8 bytes.
        proto::HOPOPTS | proto::ROUTING | proto::DSTOPTS => 0xFF | (1 << 8) | (3 << 16),
        // Length in 4-byte units, not counting the first 8 bytes (two units).
        proto::AH => 0xFF | (2 << 8) | (2 << 16),
        // Always 8 bytes.
        proto::FRAGMENT => (1 << 8) | (3 << 16),
        _ => 0,
    }
}

const fn ext_rules() -> [u32; 256] {
    let mut t = [0; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ext_rule(i as u8);
        i += 1;
    }
    t
}

/// Indexed by any `u8` (a smaller table would need a mask the compiler may drop after an
/// earlier range test, which the verifier cannot see through).
static EXT_RULES: [u32; 256] = ext_rules();

/// Extension headers the walk steps over (bit `n` for next-header value `n`).
const EXT_HEADERS: u64 = (1 << proto::HOPOPTS)
    | (1 << proto::ROUTING)
    | (1 << proto::FRAGMENT)
    | (1 << proto::AH)
    | (1 << proto::DSTOPTS);

#[inline(always)]
fn is_ext_header(next: u8) -> bool {
    next < 64 && (EXT_HEADERS >> next) & 1 != 0
}

/// Parses an IPv6 packet whose header starts at `data + off`, walking extension headers.
#[inline(always)]
pub fn parse_ipv6(data: usize, data_end: usize, off: usize) -> Parsed {
    // version/class/label (4), payload length (2), next header (1), hop limit (1), addresses (32).
    let Ok(w0) = load::<u32>(data, data_end, off) else {
        return Parsed::Other(Counter::MalformedIpv6);
    };
    let Ok(lens) = load::<[u16; 2]>(data, data_end, off + 4) else {
        return Parsed::Other(Counter::MalformedIpv6);
    };
    let Ok(addrs) = load::<[u64; 4]>(data, data_end, off + 8) else {
        return Parsed::Other(Counter::MalformedIpv6);
    };
    if u32::from_be(w0) >> 28 != 6 {
        return Parsed::Other(Counter::MalformedIpv6);
    }
    let payload_len = u32::from(be16(lens[0]));
    let mut next = (u16::from_be(lens[1]) >> 8) as u8;
    let mut info = PacketInfo {
        version: 6,
        protocol: 0,
        tcp_flags: 0,
        fragment: false,
        ext_too_long: false,
        src: [addrs[0], addrs[1]],
        dst: [addrs[2], addrs[3]],
        ports: 0,
        l3_offset: off as u32,
        ip_len: if payload_len == 0 {
            0
        } else {
            payload_len + 40
        },
        hdr_len: 40,
        l4_offset: 0,
    };
    let mut ext_off: usize = 40;
    let mut walked = 0;
    while walked < MAX_IPV6_EXT_HEADERS && is_ext_header(next) {
        // Every extension header is at least 8 bytes: its next header, its length, and (in a
        // fragment header) the fragment offset.
        let Ok(eh) = load::<[u8; 8]>(data, data_end, off + ext_off) else {
            return Parsed::Other(Counter::MalformedIpv6);
        };
        if next == proto::FRAGMENT && u16::from_be_bytes([eh[2], eh[3]]) & 0xFFF8 != 0 {
            // The fragment header within the IP length too (0: a jumbogram, the buffer's).
            if info.ip_len != 0 && ext_off as u32 + 8 > info.ip_len {
                return Parsed::Other(Counter::MalformedIpv6);
            }
            info.protocol = eh[0];
            info.fragment = true;
            info.hdr_len = (ext_off + 8) as u32;
            return Parsed::Ip(info);
        }
        let rule = EXT_RULES[usize::from(next)];
        let len = ((u32::from(eh[1]) & rule & 0xFF) + ((rule >> 8) & 3)) << ((rule >> 16) & 3);
        // At most 2064 bytes; the mask tells the verifier so (it knows no bounds of a shift by
        // a variable amount), and keeps the offset after six headers below 64 KiB.
        ext_off += (opaque(len) & 0xFFF) as usize;
        next = eh[0];
        walked += 1;
    }
    // The last extension header walked, whole, within the buffer and the IP length (each
    // one ends where the next begins, so the last one's end covers them all).
    if walked > 0
        && (load::<u8>(data, data_end, off + ext_off - 1).is_err()
            || info.ip_len != 0 && ext_off as u32 > info.ip_len)
    {
        return Parsed::Other(Counter::MalformedIpv6);
    }
    info.protocol = next;
    info.hdr_len = ext_off as u32;
    info.l4_offset = (off + ext_off) as u16;
    if is_ext_header(next) {
        info.ext_too_long = true;
        return Parsed::Ip(info);
    }
    parse_transport(data, data_end, off + ext_off, info)
}

/// Reads the transport header at `data + off` into `info`. The header must be whole: within
/// the buffer, and within the IP length (`info.ip_len`; 0 for a jumbogram), so bytes after
/// the IP packet (Ethernet padding of a short frame) are never read as its header.
#[inline(always)]
fn parse_transport(data: usize, data_end: usize, off: usize, mut info: PacketInfo) -> Parsed {
    let l4_len = match info.protocol {
        proto::TCP => {
            // Ports (4), seq (4), ack (4), data offset + flags (2) + window (2), in one load:
            // the compiler drops bounds checks it can prove from another one, which the
            // verifier, tracking bounds per pointer, cannot follow.
            let Ok(h) = load::<[u32; 4]>(data, data_end, off) else {
                return Parsed::Other(Counter::MalformedTransport);
            };
            let off_flags = h[3].to_ne_bytes();
            let doff = u32::from(off_flags[0] >> 4) * 4;
            // At least the fixed 20 bytes; the options, whole.
            if doff < 20 || load::<u8>(data, data_end, off + (doff as usize & 0x3C) - 1).is_err() {
                return Parsed::Other(Counter::MalformedTransport);
            }
            info.ports = h[0];
            info.tcp_flags = off_flags[1];
            doff
        }
        proto::UDP => {
            let Ok(hdr) = load::<[u32; 2]>(data, data_end, off) else {
                return Parsed::Other(Counter::MalformedTransport);
            };
            info.ports = hdr[0];
            8
        }
        proto::ICMP | proto::ICMPV6 => {
            // Type, code, checksum and the 4-byte rest of the header.
            if load::<[u32; 2]>(data, data_end, off).is_err() {
                return Parsed::Other(Counter::MalformedTransport);
            }
            8
        }
        _ => 0,
    };
    if info.ip_len != 0 && (off as u32 - info.l3_offset) + l4_len > info.ip_len {
        return Parsed::Other(Counter::MalformedTransport);
    }
    info.hdr_len += l4_len;
    info.l4_offset = off as u16;
    Parsed::Ip(info)
}

/// The flow of the packet an ICMP error quotes, as [`FlowKey`]'s five words: its IP header
/// (IPv4 for ICMP, IPv6 for ICMPv6) eight bytes after the error's own header at `l4`, and the
/// first eight bytes of its transport (the ports of TCP and UDP). `None` when the quote is cut
/// short or is not IP.
#[inline(always)]
pub fn parse_quoted(data: usize, data_end: usize, l4: usize, version: u8) -> Option<[u64; 5]> {
    let off = l4 + 8;
    if version == 4 {
        let hdr = load::<[u32; 5]>(data, data_end, off).ok()?;
        let w0 = u32::from_be(hdr[0]);
        if w0 >> 28 != 4 {
            return None;
        }
        let ihl = ((w0 >> 24) & 0xF) as usize * 4;
        let protocol = (u32::from_be(hdr[2]) >> 16) & 0xFF;
        let later_fragment = u32::from_be(hdr[1]) & 0x1FFF != 0;
        let ports = if !later_fragment && (protocol == 6 || protocol == 17) {
            load::<u32>(data, data_end, off + (ihl & 0x3C)).ok()?
        } else {
            0
        };
        Some([
            u64::from(hdr[3]),
            0,
            u64::from(hdr[4]),
            0,
            u64::from(ports) | (u64::from(protocol) << 32) | (4 << 40),
        ])
    } else {
        // One load of the whole header: the verifier tracks bounds per pointer, and the
        // compiler would drop checks it can prove from a later one on another pointer.
        let h = load::<[u64; 5]>(data, data_end, off).ok()?;
        let first = u64::from_be(h[0]);
        if first >> 60 != 6 {
            return None;
        }
        let next = ((first >> 8) & 0xFF) as u8;
        let addrs = [h[1], h[2], h[3], h[4]];
        let ports = if next == proto::TCP || next == proto::UDP {
            load::<u32>(data, data_end, off + 40).ok()?
        } else {
            0
        };
        Some([
            addrs[0],
            addrs[1],
            addrs[2],
            addrs[3],
            u64::from(ports) | (u64::from(next) << 32) | (6 << 40),
        ])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;

    fn parse(frame: &[u8]) -> Parsed {
        let start = frame.as_ptr() as usize;
        parse_ethernet(start, start + frame.len())
    }

    fn ipv4_udp(ihl_words: u8, payload: usize) -> Vec<u8> {
        let opts = (usize::from(ihl_words) - 5) * 4;
        let tot = (20 + opts + 8 + payload) as u16;
        let mut f = std::vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x40 | ihl_words, 0]);
        f.extend_from_slice(&tot.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.extend(std::iter::repeat_n(1u8, opts));
        f.extend_from_slice(&[0x9c, 0x40, 0x00, 0x35, 0, 0, 0, 0]);
        f.extend(std::iter::repeat_n(0u8, payload));
        f
    }

    #[test]
    fn udp_over_ipv4_with_options() {
        let Parsed::Ip(info) = parse(&ipv4_udp(7, 10)) else {
            panic!("not IP")
        };
        let key = info.key();
        assert_eq!(u16::from_be(key.src_port), 40000);
        assert_eq!(u16::from_be(key.dst_port), 53);
        assert_eq!((key.protocol, key.ip_version), (17, 4));
        assert_eq!((info.ip_len, info.hdr_len, info.l3_offset), (46, 36, 14));
        assert_eq!(key.src_addr[0].to_ne_bytes(), [10, 0, 0, 1]);
        assert_eq!(key.dst_addr, [u32::from_ne_bytes([10, 0, 0, 2]), 0, 0, 0]);
    }

    #[test]
    fn every_truncation_is_classified_never_read_past_the_end() {
        let f = ipv4_udp(5, 0);
        for len in 0..f.len() {
            let got = parse(&f[..len]);
            let want = match len {
                0..14 => Parsed::Other(Counter::MalformedEthernet),
                14..34 => Parsed::Other(Counter::MalformedIpv4),
                _ => Parsed::Other(Counter::MalformedTransport),
            };
            assert_eq!(got, want, "truncated to {len}");
        }
        assert!(matches!(parse(&f), Parsed::Ip(_)));
    }

    /// Inputs the differential oracle (the `parser` fuzz target, `tests/lab/fuzzed.rs`) found
    /// classified differently from the reference: each is named after its input and kept in
    /// the seed corpus (`otel-netprobe/fuzz/seeds/parser/`).
    fn seed(name: &str) -> Vec<u8> {
        let path = std::format!(
            "{}/../otel-netprobe/fuzz/seeds/parser/{name}.bin",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn regression_icmp_header_cut_to_six_bytes() {
        // IPv4 total length 36, six bytes of ICMP in the frame: the transport header is cut
        // short (it was read as four bytes, and the packet called a malformed IPv4 one).
        assert_eq!(
            parse(&seed("regression_icmp_header_cut_to_six_bytes")),
            Parsed::Other(Counter::MalformedTransport)
        );
    }

    #[test]
    fn regression_ipv4_short_total_tcp_padded() {
        // Total length 20 (a header alone) with protocol TCP, in a frame padded to 60 bytes:
        // the padding was read as a TCP header and counted in a flow with its "ports".
        assert_eq!(
            parse(&seed("ipv4_short_total_tcp_padded")),
            Parsed::Other(Counter::MalformedTransport)
        );
    }

    #[test]
    fn regression_ipv4_truncated_options() {
        // IHL 15 (40 bytes of options) in a frame that ends after the fixed header: the IPv4
        // header is cut short (it was called the transport's error).
        assert_eq!(
            parse(&seed("ipv4_truncated_options")),
            Parsed::Other(Counter::MalformedIpv4)
        );
    }

    #[test]
    fn regression_tcp_options_cut_short() {
        // Data offset 8 (12 bytes of options), the frame ends 4 bytes into them.
        assert_eq!(
            parse(&seed("regression_tcp_options_cut_short")),
            Parsed::Other(Counter::MalformedTransport)
        );
    }

    #[test]
    fn regression_ipv6_extension_header_cut_short() {
        // A destination-options header of 16 bytes, the frame ends 12 bytes into it, before
        // a TCP header: the IPv6 layer's error (it was called the transport's).
        assert_eq!(
            parse(&seed("regression_ipv6_extension_header_cut_short")),
            Parsed::Other(Counter::MalformedIpv6)
        );
    }

    #[test]
    fn size_buckets_edges() {
        assert_eq!(crate::size_bucket(64), 0);
        assert_eq!(crate::size_bucket(65), 1);
        assert_eq!(crate::size_bucket(1500), 5);
        assert_eq!(crate::size_bucket(1501), 6);
        assert_eq!(crate::size_bucket(9000), 6);
        assert_eq!(crate::size_bucket(9001), 7);
    }
}
