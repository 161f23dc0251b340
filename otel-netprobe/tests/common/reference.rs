//! The reference classification of a frame, for differential tests of the kernel's parser:
//! every header is cut out by an independent parser (the `etherparse` crate), and the walk
//! follows what netprobe documents (README, "How counting works"): Ethernet, up to two VLAN
//! tags, IPv4 with options, IPv6 with up to six extension headers (hop-by-hop, routing,
//! fragment, AH, destination options), TCP, UDP, ICMP, ICMPv6; a non-first fragment is
//! counted without ports; a header that is cut short — by the frame's end or by the IP
//! length — is counted in `netprobe_agent_parse_errors_total` under its layer; an IP length
//! longer than the frame is counted under the IP layer.
//!
//! [`ours`] runs the kernel's parser (`netprobe_ebpf::parse`, the code the XDP program runs)
//! and the length check the programs make after it (`count.rs::sample`, BPF-only, modelled
//! here for an XDP frame: the IP length may not exceed the bytes after the link header), so
//! both sides answer in the same terms. Shared by the fuzz target `parser` (the fuzz crate
//! includes this file) and `tests/lab/fuzzed.rs`, which checks the real programs against it.

use etherparse::{
    Ethernet2HeaderSlice, IpAuthHeaderSlice, Ipv4HeaderSlice, Ipv6FragmentHeaderSlice,
    Ipv6HeaderSlice, Ipv6RawExtHeaderSlice, SingleVlanHeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};
use netprobe_ebpf::{
    Counter,
    parse::{self, Parsed},
};

/// What a frame is counted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// In a flow.
    Flow(Flow),
    /// In a global counter only (non-IP or malformed).
    Counted(Counter),
}

/// The flow a packet is counted in, and what else its counting depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    /// 4 or 6.
    pub version: u8,
    /// Source address (IPv4 in the first four bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// The upper-layer protocol (after IPv6 extension headers).
    pub protocol: u8,
    /// Source port (TCP, UDP; else 0).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// The TCP flags byte (else 0).
    pub tcp_flags: u8,
    /// VLAN tags before the IP header.
    pub vlans: u8,
    /// A non-first fragment (no ports).
    pub fragment: bool,
    /// An IPv6 chain longer than the walk (no ports).
    pub ext_too_long: bool,
    /// IP bytes counted.
    pub ip_len: u32,
}

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_ARP: u16 = 0x0806;
const ETH_P_LLDP: u16 = 0x88CC;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

/// The reference outcome of an Ethernet frame handed whole to an XDP program.
pub fn reference(frame: &[u8]) -> Outcome {
    let Ok(eth) = Ethernet2HeaderSlice::from_slice(frame) else {
        return Outcome::Counted(Counter::MalformedEthernet);
    };
    let mut ethertype = eth.ether_type().0;
    let mut off = eth.slice().len();
    let mut vlans = 0;
    while vlans < 2 && (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) {
        let Ok(tag) = SingleVlanHeaderSlice::from_slice(&frame[off..]) else {
            return Outcome::Counted(Counter::MalformedVlan);
        };
        ethertype = tag.ether_type().0;
        off += tag.slice().len();
        vlans += 1;
    }
    let l3 = &frame[off..];
    let flow = match ethertype {
        ETH_P_IP => ipv4(l3),
        ETH_P_IPV6 => ipv6(l3),
        ETH_P_ARP => return Outcome::Counted(Counter::NonIpArp),
        ETH_P_LLDP => return Outcome::Counted(Counter::NonIpLldp),
        // Other EtherTypes, a third VLAN tag, 802.3 length fields.
        _ => return Outcome::Counted(Counter::NonIpOther),
    };
    match flow {
        Ok(mut f) => {
            f.vlans = vlans;
            Outcome::Flow(f)
        }
        Err(c) => Outcome::Counted(c),
    }
}

fn ipv4(l3: &[u8]) -> Result<Flow, Counter> {
    let bad = Counter::MalformedIpv4;
    let h = Ipv4HeaderSlice::from_slice(l3).map_err(|_| bad)?;
    let hlen = usize::from(h.ihl()) * 4;
    let total = usize::from(h.total_len());
    if total < hlen {
        return Err(bad);
    }
    let mut src = [0; 16];
    let mut dst = [0; 16];
    src[..4].copy_from_slice(&h.source());
    dst[..4].copy_from_slice(&h.destination());
    let mut f = Flow {
        version: 4,
        src,
        dst,
        protocol: h.protocol().0,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        vlans: 0,
        fragment: h.fragments_offset().value() != 0,
        ext_too_long: false,
        ip_len: total as u32,
    };
    if !f.fragment {
        // The transport header must lie within the frame and within the IP length.
        let end = total.min(l3.len());
        transport(&l3[hlen..end], &mut f)?;
    }
    if total > l3.len() {
        return Err(bad);
    }
    Ok(f)
}

/// IPv6 extension headers the walk steps over.
fn is_ext(next: u8) -> bool {
    matches!(next, 0 | 43 | 44 | 51 | 60)
}

fn ipv6(l3: &[u8]) -> Result<Flow, Counter> {
    let bad = Counter::MalformedIpv6;
    let h = Ipv6HeaderSlice::from_slice(l3).map_err(|_| bad)?;
    let payload = usize::from(h.payload_length());
    // A payload length of 0 (a jumbogram) means "the rest of the frame".
    let total = if payload == 0 { l3.len() } else { payload + 40 };
    let mut f = Flow {
        version: 6,
        src: h.source(),
        dst: h.destination(),
        protocol: 0,
        src_port: 0,
        dst_port: 0,
        tcp_flags: 0,
        vlans: 0,
        fragment: false,
        ext_too_long: false,
        ip_len: if payload == 0 {
            l3.len() as u32
        } else {
            total as u32
        },
    };
    let limit = total.min(l3.len());
    let mut next = h.next_header().0;
    let mut off = 40;
    let mut walked = 0;
    while walked < parse::MAX_IPV6_EXT_HEADERS && is_ext(next) {
        let rest = l3.get(off..limit).ok_or(bad)?;
        let (after, len) = match next {
            44 => {
                let fh = Ipv6FragmentHeaderSlice::from_slice(rest).map_err(|_| bad)?;
                if fh.fragment_offset().value() != 0 {
                    f.protocol = fh.next_header().0;
                    f.fragment = true;
                    return if total > l3.len() { Err(bad) } else { Ok(f) };
                }
                (fh.next_header().0, fh.slice().len())
            }
            51 => {
                // etherparse refuses an AH whose length field is 0 (8 bytes, no sequence
                // number); the walk steps over it like any 8-byte header.
                if rest.len() >= 8 && rest[1] == 0 {
                    (rest[0], 8)
                } else {
                    let ah = IpAuthHeaderSlice::from_slice(rest).map_err(|_| bad)?;
                    (ah.next_header().0, ah.slice().len())
                }
            }
            _ => {
                let eh = Ipv6RawExtHeaderSlice::from_slice(rest).map_err(|_| bad)?;
                (eh.next_header().0, eh.slice().len())
            }
        };
        next = after;
        off += len;
        walked += 1;
    }
    f.protocol = next;
    if is_ext(next) {
        f.ext_too_long = true;
    } else {
        transport(l3.get(off..limit).ok_or(bad)?, &mut f)?;
    }
    if total > l3.len() {
        return Err(bad);
    }
    Ok(f)
}

fn transport(l4: &[u8], f: &mut Flow) -> Result<(), Counter> {
    let bad = Counter::MalformedTransport;
    match f.protocol {
        6 => {
            let t = TcpHeaderSlice::from_slice(l4).map_err(|_| bad)?;
            f.src_port = t.source_port();
            f.dst_port = t.destination_port();
            f.tcp_flags = t.slice()[13];
        }
        17 => {
            let u = UdpHeaderSlice::from_slice(l4).map_err(|_| bad)?;
            f.src_port = u.source_port();
            f.dst_port = u.destination_port();
        }
        // ICMP and ICMPv6 headers are 8 bytes (type, code, checksum, rest of header). Only the
        // header's length is checked for ICMP: etherparse's Icmpv4Slice also wants a
        // timestamp message (types 13, 14) to be exactly 20 bytes, a rule about the message,
        // not the header (the fuzzer's first finding was this, in the reference).
        1 if l4.len() < etherparse::Icmpv4Header::MIN_LEN => return Err(bad),
        58 => {
            etherparse::Icmpv6Slice::from_slice(l4.get(..8).ok_or(bad)?).map_err(|_| bad)?;
        }
        _ => {}
    }
    Ok(())
}

/// What the kernel's parser makes of the frame at XDP, in the same terms: `parse_ethernet`,
/// then the programs' length check.
pub fn ours(frame: &[u8]) -> Outcome {
    let start = frame.as_ptr() as usize;
    let info = match parse::parse_ethernet(start, start + frame.len()) {
        Parsed::Ip(info) => info,
        Parsed::Other(c) => return Outcome::Counted(c),
    };
    // count.rs::sample for an XDP frame of `frame.len()` bytes.
    let avail = (frame.len() as u32).saturating_sub(info.l3_offset);
    let ip_len = if info.ip_len == 0 { avail } else { info.ip_len };
    if ip_len > avail {
        return Outcome::Counted(if info.version == 4 {
            Counter::MalformedIpv4
        } else {
            Counter::MalformedIpv6
        });
    }
    let key = info.key();
    let addr = |words: [u32; 4]| {
        let mut a = [0u8; 16];
        for (i, w) in words.iter().enumerate() {
            a[i * 4..i * 4 + 4].copy_from_slice(&w.to_ne_bytes());
        }
        a
    };
    Outcome::Flow(Flow {
        version: info.version,
        src: addr(key.src_addr),
        dst: addr(key.dst_addr),
        protocol: info.protocol,
        src_port: u16::from_be(key.src_port),
        dst_port: u16::from_be(key.dst_port),
        tcp_flags: info.tcp_flags,
        vlans: ((info.l3_offset - 14) / 4) as u8,
        fragment: info.fragment,
        ext_too_long: info.ext_too_long,
        ip_len,
    })
}
