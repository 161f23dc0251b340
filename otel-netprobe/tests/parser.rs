//! The parser and counter in the kernel, fed crafted packets with BPF_PROG_TEST_RUN: every
//! packet is passed, lands in the right flow with the right IP length and size bucket, or in
//! the right global counter.

mod common;

use aya::{
    Ebpf,
    maps::{HashMap, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use common::packets::*;
use netprobe_ebpf::{
    Counter, FlowKey, FlowKey4, FlowStats, SIZE_BUCKETS, size_bucket, tcp_control, tcp_flags,
};

const XDP_PASS: u32 = 2;
const TC_ACT_UNSPEC: u32 = u32::MAX;

struct Kernel {
    ebpf: Ebpf,
}

impl Kernel {
    fn new() -> Self {
        Self::with_capacity(4096)
    }

    fn with_capacity(flows: u32) -> Self {
        common::require_root();
        Self {
            ebpf: otel_netprobe::ebpf::load(flows, flows).expect("load the eBPF object"),
        }
    }

    fn xdp(&self, frame: &[u8]) {
        let prog: &Xdp = self
            .ebpf
            .program("netprobe_xdp")
            .unwrap()
            .try_into()
            .unwrap();
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        let r = prog.test_run(opts).expect("test run");
        assert_eq!(r.return_value, XDP_PASS, "XDP must always pass");
    }

    /// Runs a TC program with `__sk_buff` fields set: ingress_ifindex, gso_segs, gso_size.
    fn tc(&self, name: &str, frame: &[u8], ingress_ifindex: u32, gso_segs: u32, gso_size: u32) {
        let prog: &SchedClassifier = self.ebpf.program(name).unwrap().try_into().unwrap();
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&ingress_ifindex.to_ne_bytes());
        ctx[164..168].copy_from_slice(&gso_segs.to_ne_bytes());
        ctx[176..180].copy_from_slice(&gso_size.to_ne_bytes());
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        opts.ctx_in = Some(&ctx);
        let r = prog.test_run(opts).expect("test run");
        assert_eq!(
            r.return_value, TC_ACT_UNSPEC,
            "TC must always pass on (TCX next)"
        );
    }

    /// Both flow tables, IPv4 keys widened to the general key.
    fn flows(&self) -> Vec<(FlowKey, FlowStats)> {
        let v4: HashMap<_, FlowKey4, FlowStats> =
            HashMap::try_from(self.ebpf.map("FLOWS4").unwrap()).unwrap();
        let v6: HashMap<_, FlowKey, FlowStats> =
            HashMap::try_from(self.ebpf.map("FLOWS6").unwrap()).unwrap();
        let mut all: Vec<_> = v4
            .iter()
            .map(Result::unwrap)
            .map(|(k, s)| (k.widen(), s))
            .collect();
        all.extend(v6.iter().map(Result::unwrap));
        all
    }

    /// Overwrites the value of an IPv4 flow.
    fn set_flow(&mut self, key: &FlowKey, stats: &FlowStats) {
        let mut v4: HashMap<_, FlowKey4, FlowStats> =
            HashMap::try_from(self.ebpf.map_mut("FLOWS4").unwrap()).unwrap();
        v4.insert(FlowKey4::narrow(key), stats, 0).unwrap();
    }

    fn only_flow(&self) -> (FlowKey, FlowStats) {
        let f = self.flows();
        assert_eq!(f.len(), 1, "expected exactly one flow, got {f:?}");
        f[0]
    }

    fn counter(&self, c: Counter) -> u64 {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.ebpf.map("COUNTERS").unwrap()).unwrap();
        m.get(&(c as u32), 0).unwrap().iter().sum()
    }

    fn counters(&self) -> Vec<(Counter, u64)> {
        Counter::ALL
            .iter()
            .map(|c| (*c, self.counter(*c)))
            .filter(|(_, v)| *v != 0)
            .collect()
    }
}

fn v4(a: [u8; 4]) -> [u32; 4] {
    [u32::from_ne_bytes(a), 0, 0, 0]
}

fn v6(a: [u8; 16]) -> [u32; 4] {
    let mut w = [0u32; 4];
    for (i, c) in a.chunks(4).enumerate() {
        w[i] = u32::from_ne_bytes(c.try_into().unwrap());
    }
    w
}

fn key4(proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src_addr: v4(SRC4),
        dst_addr: v4(DST4),
        src_port: sport.to_be(),
        dst_port: dport.to_be(),
        protocol: proto,
        ip_version: 4,
        pad: [0; 2],
    }
}

fn key6(proto: u8, sport: u16, dport: u16) -> FlowKey {
    FlowKey {
        src_addr: v6(SRC6),
        dst_addr: v6(DST6),
        ip_version: 6,
        ..key4(proto, sport, dport)
    }
}

fn one_packet(stats: &FlowStats, ip_len: u64) {
    assert_eq!(stats.packets(), 1);
    assert_eq!(stats.bytes, ip_len);
    let mut b = [0; SIZE_BUCKETS];
    b[size_bucket(ip_len as u32)] = 1;
    assert_eq!(stats.size_buckets, b);
}

#[test]
fn ipv4_udp_counts_ip_length_not_frame_length() {
    let k = Kernel::new();
    // 200 bytes of UDP payload: 228 IP bytes, in a 242-byte frame.
    let f = frame(&[
        &eth(&[], 0x0800),
        &ipv4(17, 0, 0, &udp(40000, 53, 200), 200),
    ]);
    k.xdp(&f);
    k.xdp(&f);
    let (key, stats) = k.only_flow();
    assert_eq!(key, key4(17, 40000, 53));
    assert_eq!(stats.packets(), 2);
    assert_eq!(stats.bytes, 456);
    assert_eq!(stats.size_buckets[2], 2, "228 bytes is in the <=256 bucket");
    assert!(k.counters().is_empty(), "{:?}", k.counters());
}

#[test]
fn small_frames_with_ethernet_padding_count_the_ip_length() {
    let k = Kernel::new();
    // A 28-byte IP packet padded to the 60-byte Ethernet minimum.
    let mut f = frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 0, &udp(1, 2, 0), 0)]);
    f.resize(60, 0);
    k.xdp(&f);
    one_packet(&k.only_flow().1, 28);
}

#[test]
fn vlan_and_qinq_are_walked() {
    let k = Kernel::new();
    let syn = tcp(40001, 443, 0x02, 0);
    k.xdp(&frame(&[&eth(&[0x8100], 0x0800), &ipv4(6, 0, 0, &syn, 0)]));
    let (key, stats) = k.only_flow();
    assert_eq!(key, key4(6, 40001, 443));
    assert_eq!(lanes(&stats), [1, 0, 0, 0], "one SYN");
    one_packet(&stats, 40);

    let k = Kernel::new();
    k.xdp(&frame(&[
        &eth(&[0x88a8, 0x8100], 0x86dd),
        &ipv6(17, &udp(5000, 6000, 10), 10),
    ]));
    let (key, stats) = k.only_flow();
    assert_eq!(key, key6(17, 5000, 6000));
    one_packet(&stats, 58);
}

#[test]
fn three_vlan_tags_are_not_ip() {
    let k = Kernel::new();
    k.xdp(&frame(&[
        &eth(&[0x88a8, 0x8100, 0x8100], 0x0800),
        &ipv4(17, 0, 0, &udp(1, 2, 0), 0),
    ]));
    assert!(k.flows().is_empty());
    assert_eq!(k.counters(), vec![(Counter::NonIpOther, 1)]);
}

#[test]
fn ipv4_options_are_skipped_to_the_transport() {
    let k = Kernel::new();
    let f = frame(&[
        &eth(&[], 0x0800),
        &ipv4(6, 12, 0, &tcp(40002, 8080, 0x18, 12), 100),
    ]);
    k.xdp(&f);
    let (key, stats) = k.only_flow();
    assert_eq!(key, key4(6, 40002, 8080));
    assert_eq!(
        stats.tcp_control, 0,
        "a data packet touches no control lane"
    );
    one_packet(&stats, 32 + 32 + 100);
}

/// The control lanes of a flow: SYN, SYN-ACK, FIN, RST packets.
fn lanes(stats: &FlowStats) -> [u64; 4] {
    [0, 1, 2, 3].map(|lane| tcp_control::count(stats.tcp_control, lane))
}

#[test]
fn control_packets_are_counted_per_kind() {
    let k = Kernel::new();
    let packet = |sport, dport, flags| {
        frame(&[
            &eth(&[], 0x0800),
            &ipv4(6, 0, 0, &tcp(sport, dport, flags, 0), 0),
        ])
    };
    // Client → server: a SYN and its retransmission, data, a FIN+ACK, a RST.
    for flags in [0x02, 0x02, 0x10, 0x18, 0x11, 0x04] {
        k.xdp(&packet(40003, 443, flags));
    }
    // Server → client: the SYN-ACK.
    k.xdp(&packet(443, 40003, 0x12));
    let flows = k.flows();
    let up = flows.iter().find(|(key, _)| *key == key4(6, 40003, 443));
    let down = flows.iter().find(|(key, _)| *key == key4(6, 443, 40003));
    assert_eq!(lanes(&up.expect("client flow").1), [2, 0, 1, 1]);
    assert_eq!(lanes(&down.expect("server flow").1), [0, 1, 0, 0]);
    assert_eq!(
        tcp_control::flags(down.unwrap().1.tcp_control),
        tcp_flags::SYN | tcp_flags::ACK | tcp_flags::SYN_ACK
    );
}

#[test]
fn a_full_control_lane_stops_without_carrying_into_the_next() {
    let mut k = Kernel::new();
    let syn = frame(&[
        &eth(&[], 0x0800),
        &ipv4(6, 0, 0, &tcp(40004, 443, 0x02, 0), 0),
    ]);
    k.xdp(&syn);
    // Fill the SYN lane to its limit, as a SYN flood on one tuple would.
    let (key, mut stats) = k.only_flow();
    stats.tcp_control = tcp_control::LIMIT;
    k.set_flow(&key, &stats);
    k.xdp(&syn);
    k.xdp(&frame(&[
        &eth(&[], 0x0800),
        &ipv4(6, 0, 0, &tcp(40004, 443, 0x04, 0), 0),
    ]));
    let stats = k.only_flow().1;
    assert_eq!(lanes(&stats), [tcp_control::LIMIT, 0, 0, 1]);
    assert_eq!(stats.packets(), 3);
}

#[test]
fn ipv6_extension_headers_are_walked() {
    let k = Kernel::new();
    // hop-by-hop (0) → routing (43) → destination options (60) → UDP.
    let mut rest = ext(43, 0);
    rest.extend(ext(60, 1));
    rest.extend(ext(17, 0));
    rest.extend(udp(7000, 7001, 20));
    k.xdp(&frame(&[&eth(&[], 0x86dd), &ipv6(0, &rest, 20)]));
    let (key, stats) = k.only_flow();
    assert_eq!(key, key6(17, 7000, 7001));
    one_packet(&stats, 40 + 8 + 16 + 8 + 8 + 20);
}

#[test]
fn ipv6_extension_chain_too_long_is_counted_without_ports() {
    let k = Kernel::new();
    let mut rest = Vec::new();
    for _ in 0..7 {
        rest.extend(ext(60, 0));
    }
    rest.extend(ext(17, 0));
    rest.extend(udp(1, 2, 0));
    k.xdp(&frame(&[&eth(&[], 0x86dd), &ipv6(60, &rest, 0)]));
    let (key, stats) = k.only_flow();
    assert_eq!(key, key6(60, 0, 0));
    one_packet(&stats, 40 + 64 + 8);
    assert_eq!(k.counters(), vec![(Counter::Ipv6ExtTooLong, 1)]);
}

#[test]
fn fragments() {
    let k = Kernel::new();
    // First IPv4 fragment (MF, offset 0): has ports.
    k.xdp(&frame(&[
        &eth(&[], 0x0800),
        &ipv4(17, 0, 0x2000, &udp(9000, 9001, 1000), 100),
    ]));
    // Second fragment (offset 16 × 8 bytes): no transport header.
    k.xdp(&frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 16, &[], 300)]));
    // A non-first IPv6 fragment.
    k.xdp(&frame(&[
        &eth(&[], 0x86dd),
        &ipv6(44, &frag6(17, 100, false), 50),
    ]));
    let mut flows = k.flows();
    flows.sort_by_key(|(key, _)| (key.ip_version, key.src_port));
    assert_eq!(flows.len(), 3, "{flows:?}");
    assert_eq!(flows[0].0, key4(17, 0, 0));
    one_packet(&flows[0].1, 320);
    assert_eq!(flows[1].0, key4(17, 9000, 9001));
    one_packet(&flows[1].1, 128);
    assert_eq!(flows[2].0, key6(17, 0, 0));
    one_packet(&flows[2].1, 98);
    assert_eq!(k.counters(), vec![(Counter::Fragments, 2)]);
}

#[test]
fn icmp_has_no_ports() {
    let k = Kernel::new();
    k.xdp(&frame(&[
        &eth(&[], 0x0800),
        &ipv4(1, 0, 0, &icmp_echo(false), 56),
    ]));
    k.xdp(&frame(&[
        &eth(&[], 0x86dd),
        &ipv6(58, &icmp_echo(true), 56),
    ]));
    let mut flows = k.flows();
    flows.sort_by_key(|(key, _)| key.ip_version);
    assert_eq!(flows[0].0, key4(1, 0, 0));
    one_packet(&flows[0].1, 84);
    assert_eq!(flows[1].0, key6(58, 0, 0));
    one_packet(&flows[1].1, 104);
}

#[test]
fn truncated_at_every_layer_is_passed_and_counted() {
    let udp_pkt = frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 0, &udp(1, 2, 0), 0)]);
    let tcp_pkt = frame(&[&eth(&[], 0x0800), &ipv4(6, 0, 0, &tcp(1, 2, 0x10, 0), 0)]);
    let icmp_pkt = frame(&[&eth(&[], 0x0800), &ipv4(1, 0, 0, &icmp_echo(false), 0)]);
    let v6_pkt = frame(&[&eth(&[], 0x86dd), &ipv6(17, &udp(1, 2, 0), 0)]);
    let vlan = eth(&[0x8100], 0x0800);
    let cases: Vec<(&str, Vec<u8>, Counter)> = vec![
        // (A frame shorter than an Ethernet header cannot be test-run: the kernel refuses it,
        // as drivers do; the parser still counts it as MalformedEthernet.)
        ("vlan tag", vlan[..15].to_vec(), Counter::MalformedVlan),
        (
            "ipv4 header",
            udp_pkt[..14 + 19].to_vec(),
            Counter::MalformedIpv4,
        ),
        (
            "ipv6 header",
            v6_pkt[..14 + 39].to_vec(),
            Counter::MalformedIpv6,
        ),
        (
            "udp header",
            udp_pkt[..14 + 20 + 7].to_vec(),
            Counter::MalformedTransport,
        ),
        (
            "tcp header",
            tcp_pkt[..14 + 20 + 13].to_vec(),
            Counter::MalformedTransport,
        ),
        (
            "icmp header",
            icmp_pkt[..14 + 20 + 3].to_vec(),
            Counter::MalformedTransport,
        ),
        // The IPv4 total length claims more than the frame holds.
        (
            "ipv4 total length",
            {
                let p = frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 0, &udp(1, 2, 10), 10)]);
                p[..p.len() - 1].to_vec()
            },
            Counter::MalformedIpv4,
        ),
    ];
    for (what, f, counter) in cases {
        let k = Kernel::new();
        k.xdp(&f);
        assert!(k.flows().is_empty(), "{what}: no flow expected");
        assert_eq!(k.counters(), vec![(counter, 1)], "{what}");
    }
}

#[test]
fn bogus_ihl_and_tcp_offset_are_malformed() {
    let mut bad_ihl = frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 0, &udp(1, 2, 0), 0)]);
    bad_ihl[14] = 0x43;
    let mut bad_doff = frame(&[&eth(&[], 0x0800), &ipv4(6, 0, 0, &tcp(1, 2, 0x10, 0), 0)]);
    bad_doff[14 + 20 + 12] = 0x40;
    let mut bad_version = frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 0, &udp(1, 2, 0), 0)]);
    bad_version[14] = 0x65;
    for (what, f, counter) in [
        ("ihl 3", bad_ihl, Counter::MalformedIpv4),
        ("tcp data offset 4", bad_doff, Counter::MalformedTransport),
        (
            "version 6 in an IPv4 frame",
            bad_version,
            Counter::MalformedIpv4,
        ),
    ] {
        let k = Kernel::new();
        k.xdp(&f);
        assert!(k.flows().is_empty(), "{what}");
        assert_eq!(k.counters(), vec![(counter, 1)], "{what}");
    }
}

#[test]
fn non_ip_by_ethertype_class() {
    let k = Kernel::new();
    let mut arp = eth(&[], 0x0806);
    arp.resize(60, 0);
    let mut lldp = eth(&[], 0x88cc);
    lldp.resize(60, 0);
    let mut other = eth(&[], 0x88b5);
    other.resize(60, 0);
    k.xdp(&arp);
    k.xdp(&lldp);
    k.xdp(&lldp);
    k.xdp(&other);
    assert_eq!(
        k.counters(),
        vec![
            (Counter::NonIpArp, 1),
            (Counter::NonIpLldp, 2),
            (Counter::NonIpOther, 1)
        ]
    );
}

#[test]
fn tc_counts_gso_segments_and_wire_bytes() {
    let k = Kernel::new();
    // A GSO buffer (test runs take at most a page): 20 IP + 32 TCP headers once, 2,900 payload
    // bytes, segment size 1,000 → 3 wire packets: 2 of 1,052 IP bytes and one of 52 + 900.
    let f = frame(&[
        &eth(&[], 0x0800),
        &ipv4(6, 0, 0, &tcp(40004, 5201, 0x10, 12), 2_900),
    ]);
    k.tc("netprobe_tc_ingress", &f, 0, 3, 1000);
    let (key, stats) = k.only_flow();
    assert_eq!(key, key4(6, 40004, 5201));
    assert_eq!(stats.packets(), 3);
    assert_eq!(stats.bytes, 2_900 + 3 * 52);
    let mut b = [0; SIZE_BUCKETS];
    b[size_bucket(1052)] = 2;
    b[size_bucket(952)] += 1;
    assert_eq!(stats.size_buckets, b);
}

#[test]
fn tc_plain_packet_counts_once() {
    let k = Kernel::new();
    let f = frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 0, &udp(1234, 53, 100), 100)]);
    k.tc("netprobe_tc_ingress", &f, 3, 0, 0);
    one_packet(&k.only_flow().1, 128);
}

#[test]
fn tc_egress_counts_only_locally_originated_packets() {
    let k = Kernel::new();
    let f = frame(&[&eth(&[], 0x0800), &ipv4(17, 0, 0, &udp(1234, 53, 100), 100)]);
    // Forwarded: it entered through interface 7 and was counted there.
    k.tc("netprobe_tc_egress", &f, 7, 0, 0);
    assert!(k.flows().is_empty());
    // Locally originated: no ingress interface.
    k.tc("netprobe_tc_egress", &f, 0, 0, 0);
    one_packet(&k.only_flow().1, 128);
}

#[test]
fn a_full_table_counts_what_it_cannot_track() {
    let k = Kernel::with_capacity(4);
    for port in 0..6u16 {
        k.xdp(&frame(&[
            &eth(&[], 0x0800),
            &ipv4(17, 0, 0, &udp(30000 + port, 53, 72), 72),
        ]));
    }
    // Known flows still count when the table is full.
    k.xdp(&frame(&[
        &eth(&[], 0x0800),
        &ipv4(17, 0, 0, &udp(30000, 53, 72), 72),
    ]));
    let flows = k.flows();
    assert_eq!(flows.len(), 4);
    assert_eq!(flows.iter().map(|(_, s)| s.packets()).sum::<u64>(), 5);
    assert_eq!(
        k.counters(),
        vec![(Counter::MapFullPackets, 2), (Counter::MapFullBytes, 200)]
    );
}
