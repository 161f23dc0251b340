//! The kernel programs under random frames: the parser's fuzz corpus
//! (`fuzz/seeds/parser/`, built into this binary so the kernel matrix's VMs have it) and
//! frames mutated from it, through the real XDP and TC ingress programs with
//! BPF_PROG_TEST_RUN. Every verdict is "pass", no frame is changed, and what the tables and
//! counters hold equals what the reference parser (`common::reference`: etherparse, walked as
//! netprobe documents it) says of each frame. Runs in the kernel matrix too (a few seconds).

use std::collections::BTreeMap;

use aya::programs::{SchedClassifier, TestRun as _, TestRunOptions, Xdp};
use netprobe_ebpf::{Counter, FlowKey};

use super::common::{
    self,
    kernel::{Kernel, TC_ACT_UNSPEC, XDP_PASS},
    reference::{self, Outcome},
};

macro_rules! seed {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!("../../fuzz/seeds/parser/", $name, ".bin")).as_slice(),
        )
    };
}

/// The committed seeds (and every input a fuzzer finding added), by file name.
const SEEDS: &[(&str, &[u8])] = &[
    seed!("arp"),
    seed!("ieee8023_length"),
    seed!("ipv4_first_fragment"),
    seed!("ipv4_gre"),
    seed!("ipv4_icmp_echo"),
    seed!("ipv4_icmp_unreachable"),
    seed!("ipv4_later_fragment"),
    seed!("ipv4_options_udp"),
    seed!("ipv4_short_total_tcp_padded"),
    seed!("ipv4_tcp_options_data"),
    seed!("ipv4_tcp_syn"),
    seed!("ipv4_tcp_truncated"),
    seed!("ipv4_truncated_options"),
    seed!("ipv4_udp"),
    seed!("ipv6_ah_udp"),
    seed!("ipv6_chain_too_long"),
    seed!("ipv6_hbh_dst_tcp"),
    seed!("ipv6_icmpv6_echo"),
    seed!("ipv6_icmpv6_unreachable"),
    seed!("ipv6_jumbo_udp"),
    seed!("ipv6_later_fragment"),
    seed!("ipv6_routing_first_fragment_udp"),
    seed!("ipv6_tcp"),
    seed!("ipv6_udp"),
    seed!("lldp"),
    seed!("qinq_ipv4_tcp"),
    seed!("regression_icmp_header_cut_to_six_bytes"),
    seed!("regression_ipv6_extension_header_cut_short"),
    seed!("regression_reference_icmp_timestamp_header"),
    seed!("regression_tcp_options_cut_short"),
    seed!("three_tags"),
    seed!("vlan_ipv4_udp"),
];

/// Mutations per seed (deterministic: the same frames on every kernel).
const MUTATIONS: usize = 40;

/// xorshift64*: a fixed sequence, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The seeds and their mutations: bytes flipped or set to edge values, cut short, extended.
/// Frames shorter than an Ethernet header are left out (BPF_PROG_TEST_RUN refuses them).
pub fn frames() -> Vec<Vec<u8>> {
    let mut rng = Rng(0x19_2026);
    let mut out = Vec::new();
    for (_, seed) in SEEDS {
        out.push(seed.to_vec());
        for _ in 0..MUTATIONS {
            let mut f = seed.to_vec();
            for _ in 0..=rng.below(4) {
                match rng.below(6) {
                    0 | 1 => {
                        let i = rng.below(f.len());
                        f[i] ^= 1 << rng.below(8);
                    }
                    2 => {
                        let i = rng.below(f.len());
                        f[i] = [0, 0xFF, 0x7F, 0x80, 5, 6][rng.below(6)];
                    }
                    3 => f.truncate(rng.below(f.len() + 1)),
                    4 => f.extend((0..rng.below(64)).map(|_| rng.next() as u8)),
                    _ => {
                        // A length field: IPv4 total length or IPv6 payload length.
                        if f.len() > 20 {
                            let i = 16 + rng.below(4);
                            f[i] = rng.next() as u8;
                        }
                    }
                }
                if f.is_empty() {
                    break;
                }
            }
            if f.len() >= 14 {
                out.push(f);
            }
        }
    }
    out
}

/// What the tables must hold after every frame ran through `runs` programs.
#[derive(Default, Debug, PartialEq)]
struct Expected {
    counters: BTreeMap<String, u64>,
    flows: BTreeMap<String, (u64, u64)>,
}

fn key_of(f: &reference::Flow) -> FlowKey {
    let words = |a: [u8; 16]| {
        std::array::from_fn(|i| {
            u32::from_ne_bytes([a[i * 4], a[i * 4 + 1], a[i * 4 + 2], a[i * 4 + 3]])
        })
    };
    FlowKey {
        src_addr: words(f.src),
        dst_addr: words(f.dst),
        src_port: f.src_port.to_be(),
        dst_port: f.dst_port.to_be(),
        protocol: f.protocol,
        ip_version: f.version,
        pad: [0; 2],
    }
}

/// What the tables must hold after each of `runs` went through one program.
fn expected<'a>(runs: impl IntoIterator<Item = &'a Vec<u8>>) -> Expected {
    let mut e = Expected::default();
    for f in runs {
        match reference::reference(f) {
            Outcome::Counted(c) => *e.counters.entry(format!("{c:?}")).or_default() += 1,
            Outcome::Flow(flow) => {
                let v = e.flows.entry(format!("{:?}", key_of(&flow))).or_default();
                v.0 += 1;
                v.1 += u64::from(flow.ip_len);
                if flow.fragment {
                    *e.counters.entry("Fragments".into()).or_default() += 1;
                } else if flow.ext_too_long {
                    *e.counters.entry("Ipv6ExtTooLong".into()).or_default() += 1;
                }
            }
        }
    }
    e
}

/// BPF_PROG_TEST_RUN builds no socket buffer for an IPv4 frame shorter than an IPv4 header
/// (or IPv6 likewise): EINVAL before any program runs. Such a frame cannot reach TC.
fn tc_refuses(f: &[u8]) -> bool {
    let ethertype = u16::from_be_bytes([f[12], f[13]]);
    let l3 = f.len() - 14;
    (ethertype == 0x0800 && l3 < 20) || (ethertype == 0x86DD && l3 < 40)
}

fn observed(k: &Kernel) -> Expected {
    let mut e = Expected::default();
    for c in Counter::ALL {
        let is_parse = matches!(
            c,
            Counter::NonIpArp
                | Counter::NonIpLldp
                | Counter::NonIpOther
                | Counter::MalformedEthernet
                | Counter::MalformedVlan
                | Counter::MalformedIpv4
                | Counter::MalformedIpv6
                | Counter::MalformedTransport
                | Counter::Fragments
                | Counter::Ipv6ExtTooLong
        );
        let n = k.counter(c);
        if is_parse && n > 0 {
            e.counters.insert(format!("{c:?}"), n);
        }
    }
    for (key, stats) in k.flows() {
        e.flows
            .insert(format!("{key:?}"), (stats.packets(), stats.bytes));
    }
    e
}

#[test]
fn the_host_parser_and_the_reference_agree_on_the_corpus() {
    let frames = frames();
    for f in &frames {
        assert_eq!(
            reference::ours(f),
            reference::reference(f),
            "frame {f:02x?}"
        );
    }
}

#[test]
fn random_frames_pass_the_programs_unchanged_and_count_as_the_reference_says() {
    common::require_root();
    let frames = frames();
    // Room for every frame's flow: nothing may be counted as untracked.
    let k = Kernel::with_capacity(65_536);
    let xdp: &Xdp = k.ebpf.program("netprobe_xdp").unwrap().try_into().unwrap();
    let tc: &SchedClassifier = k
        .ebpf
        .program("netprobe_tc_ingress")
        .unwrap()
        .try_into()
        .unwrap();
    let mut out = vec![0u8; 4096];
    let (mut at_tc, mut refused) = (Vec::new(), 0);
    for f in &frames {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(f);
        opts.data_out = Some(&mut out);
        let r = xdp
            .test_run(opts)
            .unwrap_or_else(|e| panic!("XDP test run of {f:02x?}: {e}"));
        assert_eq!(r.return_value, XDP_PASS, "XDP verdict for {f:02x?}");
        assert_eq!(
            &out[..r.data_size_out as usize],
            f.as_slice(),
            "XDP changed the frame"
        );

        let ctx = [0u8; 192];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(f);
        opts.data_out = Some(&mut out);
        opts.ctx_in = Some(&ctx);
        let r = match tc.test_run(opts) {
            Ok(r) => r,
            Err(_) if tc_refuses(f) => {
                refused += 1;
                continue;
            }
            Err(e) => panic!("TC test run of {f:02x?}: {e}"),
        };
        assert_eq!(r.return_value, TC_ACT_UNSPEC, "TC verdict for {f:02x?}");
        assert_eq!(
            &out[..r.data_size_out as usize],
            f.as_slice(),
            "TC changed the frame"
        );
        at_tc.push(f);
    }
    let mut want = expected(&frames);
    let tc_want = expected(at_tc.iter().copied());
    for (c, n) in tc_want.counters {
        *want.counters.entry(c).or_default() += n;
    }
    for (k, (p, b)) in tc_want.flows {
        let v = want.flows.entry(k).or_default();
        v.0 += p;
        v.1 += b;
    }
    let got = observed(&k);
    assert_eq!(got.counters, want.counters, "global counters");
    let missing: Vec<_> = want
        .flows
        .iter()
        .filter(|(k, v)| got.flows.get(*k) != Some(v))
        .collect();
    let extra: Vec<_> = got
        .flows
        .iter()
        .filter(|(k, _)| !want.flows.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "flows differ: expected but not in the kernel as expected: {missing:?}; in the kernel only: {extra:?}"
    );
    assert_eq!(k.counter(Counter::MapFullPackets), 0);
    println!(
        "{} frames through XDP, {} through TC ingress ({refused} too short for the kernel to \
         make a socket buffer of): {} flows, counters {:?}",
        frames.len(),
        at_tc.len(),
        got.flows.len(),
        got.counters
    );
}
