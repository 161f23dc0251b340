//! Crafted frames for BPF_PROG_TEST_RUN: Ethernet, VLAN tags, IPv4 (with options), IPv6 (with
//! extension headers), TCP, UDP, ICMP. Checksums are left zero: the programs never check them.

/// IPv4 addresses used in crafted packets.
pub const SRC4: [u8; 4] = [10, 1, 0, 1];
/// IPv4 destination.
pub const DST4: [u8; 4] = [10, 1, 0, 2];
/// IPv6 source.
pub const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
/// IPv6 destination.
pub const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// An Ethernet header: MACs, then a (TPID, TCI) pair per tag, then the EtherType.
pub fn eth(tags: &[u16], ethertype: u16) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
    for tpid in tags {
        f.extend_from_slice(&tpid.to_be_bytes());
        f.extend_from_slice(&100u16.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

/// TCP header with ports and flags, `opts` bytes of NOP options (multiple of 4).
pub fn tcp(sport: u16, dport: u16, flags: u8, opts: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0]);
    h.push((((20 + opts) / 4) as u8) << 4);
    h.push(flags);
    h.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]);
    h.extend(std::iter::repeat_n(1u8, opts));
    h
}

/// UDP header.
pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&((8 + payload) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 0]);
    h
}

/// ICMP / ICMPv6 echo request header.
pub fn icmp_echo(v6: bool) -> Vec<u8> {
    vec![if v6 { 128 } else { 8 }, 0, 0, 0, 0, 1, 0, 1]
}

/// An IPv4 header (with `opts` bytes of options) followed by `l4` and `payload` bytes.
pub fn ipv4(proto: u8, opts: usize, frag: u16, l4: &[u8], payload: usize) -> Vec<u8> {
    ipv4_between(SRC4, DST4, proto, opts, frag, l4, payload)
}

/// As [`ipv4`], between the given addresses.
pub fn ipv4_between(
    src: [u8; 4],
    dst: [u8; 4],
    proto: u8,
    opts: usize,
    frag: u16,
    l4: &[u8],
    payload: usize,
) -> Vec<u8> {
    let ihl = (20 + opts) / 4;
    let tot = 20 + opts + l4.len() + payload;
    let mut h = vec![0x40 | ihl as u8, 0];
    h.extend_from_slice(&(tot as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend(std::iter::repeat_n(1u8, opts));
    h.extend_from_slice(l4);
    h.extend(std::iter::repeat_n(0xabu8, payload));
    h
}

/// An IPv6 extension header of type-independent shape: next header, length, padding.
pub fn ext(next: u8, len8: u8) -> Vec<u8> {
    let mut h = vec![next, len8];
    h.extend(std::iter::repeat_n(0u8, 6 + usize::from(len8) * 8));
    h
}

/// An IPv6 fragment header.
pub fn frag6(next: u8, offset8: u16, more: bool) -> Vec<u8> {
    let v = (offset8 << 3) | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&v.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 1]);
    h
}

/// An IPv6 header whose first next-header is `next`, followed by `rest` and `payload` bytes.
pub fn ipv6(next: u8, rest: &[u8], payload: usize) -> Vec<u8> {
    let plen = rest.len() + payload;
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(plen as u16).to_be_bytes());
    h.push(next);
    h.push(64);
    h.extend_from_slice(&SRC6);
    h.extend_from_slice(&DST6);
    h.extend_from_slice(rest);
    h.extend(std::iter::repeat_n(0xcdu8, payload));
    h
}

/// Concatenates frame parts.
pub fn frame(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}
