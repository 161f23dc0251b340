#!/usr/bin/env python3
"""Writes the parser's seed corpus (parser/*.bin): one Ethernet frame per case the kernel's
parser distinguishes. Run from this folder; the output is committed, this script documents it.
regression_reference_*.bin are libFuzzer's own outputs, kept as found."""
import struct

MAC = bytes.fromhex("020000000002") + bytes.fromhex("020000000001")
S4, D4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
S6 = bytes.fromhex("fd000000000000000000000000000001")
D6 = bytes.fromhex("fd000000000000000000000000000002")


def eth(ethertype, payload, tags=()):
    out = MAC
    for tpid, vid in tags:
        out += struct.pack("!HH", tpid, vid)
    return out + struct.pack("!H", ethertype) + payload


def udp(sport=40000, dport=53, payload=b"\x00" * 10):
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport=40000, dport=443, flags=0x02, opts=b"", payload=b""):
    doff = (20 + len(opts)) // 4
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, doff << 4, flags, 65535, 0, 0) + opts + payload


def icmp(t=8, code=0, rest=b"\x00\x01\x00\x01", payload=b""):
    return struct.pack("!BBH", t, code, 0) + rest + payload


def ipv4(proto, l4, opts=b"", frag=0, tot=None, ihl=None):
    ihl = ihl if ihl is not None else 5 + len(opts) // 4
    tot = tot if tot is not None else 20 + len(opts) + len(l4)
    return struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, tot, 1, frag, 64, proto, 0, S4, D4) + opts + l4


def ipv6(nh, payload, plen=None):
    plen = len(payload) if plen is None else plen
    return struct.pack("!IHBB16s16s", 6 << 28, plen, nh, 64, S6, D6) + payload


def ext(nh, length8=0):
    return bytes([nh, length8]) + b"\x01\x04\x00\x00\x00\x00" + b"\x00" * (8 * length8)


def frag6(nh, offset, more):
    return struct.pack("!BBHI", nh, 0, (offset << 3) | more, 7)


def ah(nh):
    return bytes([nh, 1, 0, 0]) + b"\x00" * 8


cases = {
    "ipv4_udp": eth(0x0800, ipv4(17, udp())),
    "ipv4_options_udp": eth(0x0800, ipv4(17, udp(), opts=b"\x01" * 8)),
    "ipv4_tcp_syn": eth(0x0800, ipv4(6, tcp())),
    "ipv4_tcp_options_data": eth(0x0800, ipv4(6, tcp(flags=0x18, opts=b"\x01" * 12, payload=b"x" * 20))),
    "vlan_ipv4_udp": eth(0x0800, ipv4(17, udp()), tags=[(0x8100, 5)]),
    "qinq_ipv4_tcp": eth(0x0800, ipv4(6, tcp(flags=0x11)), tags=[(0x88A8, 7), (0x8100, 5)]),
    "three_tags": eth(0x0800, ipv4(17, udp()), tags=[(0x88A8, 1), (0x8100, 2), (0x8100, 3)]),
    "ipv4_icmp_echo": eth(0x0800, ipv4(1, icmp(payload=b"p" * 8))),
    "ipv4_icmp_unreachable": eth(0x0800, ipv4(1, icmp(3, 3, b"\x00" * 4, ipv4(17, udp(payload=b""))))),
    "ipv4_first_fragment": eth(0x0800, ipv4(17, udp(payload=b"a" * 16), frag=0x2000)),
    "ipv4_later_fragment": eth(0x0800, ipv4(17, b"b" * 16, frag=0x0003)),
    "ipv4_gre": eth(0x0800, ipv4(47, b"\x00\x00\x08\x00" + b"g" * 12)),
    # A header alone (total length 20), protocol TCP, padded to the 60-byte minimum frame with
    # bytes that look like a TCP header.
    "ipv4_short_total_tcp_padded": eth(0x0800, ipv4(6, tcp() + b"\x00" * 6, tot=20)),
    "ipv4_truncated_options": eth(0x0800, ipv4(6, b"", ihl=15, tot=60)),
    "ipv6_udp": eth(0x86DD, ipv6(17, udp())),
    "ipv6_tcp": eth(0x86DD, ipv6(6, tcp(flags=0x12))),
    "ipv6_hbh_dst_tcp": eth(0x86DD, ipv6(0, ext(60) + ext(6, 1) + tcp())),
    "ipv6_routing_first_fragment_udp": eth(0x86DD, ipv6(43, ext(44) + frag6(17, 0, 1) + udp())),
    "ipv6_later_fragment": eth(0x86DD, ipv6(44, frag6(17, 5, 0) + b"c" * 16)),
    "ipv6_ah_udp": eth(0x86DD, ipv6(51, ah(17) + udp())),
    "ipv6_chain_too_long": eth(0x86DD, ipv6(0, b"".join(ext(60) for _ in range(6)) + ext(17) + udp())),
    "ipv6_icmpv6_echo": eth(0x86DD, ipv6(58, icmp(128, 0, payload=b"q" * 8))),
    "ipv6_icmpv6_unreachable": eth(0x86DD, ipv6(58, icmp(1, 4, b"\x00" * 4, ipv6(17, udp(payload=b""))))),
    "ipv6_jumbo_udp": eth(0x86DD, ipv6(17, udp(), plen=0)),
    "arp": eth(0x0806, bytes.fromhex("0001080006040001") + MAC[6:] + S4 + b"\x00" * 6 + D4),
    "lldp": eth(0x88CC, b"\x02\x07\x04" + MAC[:6] + b"\x00\x00"),
    "ieee8023_length": eth(0x0040, b"\xaa\xaa\x03" + b"\x00" * 40),
    "ipv4_tcp_truncated": eth(0x0800, ipv4(6, tcp())[:30]),
}

for name, frame in cases.items():
    with open(f"parser/{name}.bin", "wb") as f:
        f.write(frame)
print(f"{len(cases)} frames")

# Inputs of findings (each has a regression test of its name in netprobe-ebpf/src/parse.rs).
regressions = {
    # IPv4 total length 36, six bytes of ICMP: found by the differential check on mutations.
    "regression_icmp_header_cut_to_six_bytes": bytes.fromhex(
        "020000000002020000000001080045000024000500004001" "0000" "0a000001" "0a000002" "080000000001"),
    "regression_tcp_options_cut_short": eth(0x0800, ipv4(6, tcp(opts=b"\x01" * 12), tot=52))[:14 + 20 + 24],
    "regression_ipv6_extension_header_cut_short":
        eth(0x86DD, ipv6(60, ext(6, 1) + tcp(), plen=16 + 20))[:14 + 40 + 12],
}
for name, frame in regressions.items():
    with open(f"parser/{name}.bin", "wb") as f:
        f.write(frame)
