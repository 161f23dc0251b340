//! `dns`: the cost of a DNS query (clock read, pending-table insert) and of its response
//! (lookup, delete, clock read, histogram update), each above its trivial baseline in the same
//! run. Every query has a new transaction id, so no packet finds the work done by the one
//! before it; one packet a run (`repeat = 1`), as in `handshake`, with a non-DNS UDP packet
//! measured the same way to show what the method adds.

use aya::programs::SchedClassifier;
use netprobe_ebpf::dns::{DnsQuery, DnsQueryKey};
use otel_netprobe::ebpf;

use crate::{
    common::packets::{eth, ipv4_between, udp},
    conns::once,
    load_bench, median, tc, xdp,
};

/// Queries (and responses) per hook.
const QUERIES: u16 = 10_000;

const CLIENT: [u8; 4] = [10, 244, 0, 11];
const SERVER: [u8; 4] = [10, 244, 1, 53];

/// A UDP frame carrying a DNS header (id, flags, one question) and 40 bytes of sections.
fn dns(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), id: u16, flags: u16) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [id, flags, 1, 0, 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    m.extend(std::iter::repeat_n(0x61u8, 40));
    let l4 = [udp(ports.0, ports.1, m.len()), m].concat();
    [eth(&[], 0x0800), ipv4_between(src, dst, 17, 0, 0, &l4, 0)].concat()
}

fn medians<
    P: for<'a> aya::programs::TestRun<
            Opts<'a> = aya::programs::TestRunOptions<'a>,
            Result = aya::TestRunResult,
        >,
>(
    pass: &P,
    ours: &P,
    port: u16,
) -> [(f64, f64); 3] {
    let mut r: [Vec<f64>; 6] = Default::default();
    for id in 0..QUERIES {
        let query = dns(CLIENT, SERVER, (port, 53), id, 0x0100);
        let response = dns(SERVER, CLIENT, (53, port), id, 0x8180);
        let other = dns(CLIENT, SERVER, (port, 8125), id, 0x0100);
        for (k, frame) in [query, response, other].iter().enumerate() {
            r[2 * k].push(once(pass, frame));
            r[2 * k + 1].push(once(ours, frame));
        }
    }
    let m = r.map(median);
    [(m[0], m[1]), (m[2], m[3]), (m[4], m[5])]
}

/// Query and response cost at XDP and TC.
pub fn queries() {
    let ours = ebpf::load(
        netprobe_ebpf::DEFAULT_FLOW4_CAPACITY,
        netprobe_ebpf::DEFAULT_FLOW6_CAPACITY,
    )
    .expect("production object");
    let bench = load_bench();
    let at_xdp = medians(
        xdp(&bench, "bench_xdp_pass"),
        xdp(&ours, "netprobe_xdp"),
        40000,
    );
    let (pass_tc, ours_tc): (&SchedClassifier, &SchedClassifier) = (
        tc(&bench, "bench_tc_pass"),
        tc(&ours, "netprobe_tc_ingress"),
    );
    let at_tc = medians(pass_tc, ours_tc, 40001);
    let pending = aya::maps::HashMap::<_, DnsQueryKey, DnsQuery>::try_from(
        ours.map(netprobe_ebpf::dns::DNS_QUERIES_MAP)
            .expect("DNS_QUERIES"),
    )
    .expect("DNS_QUERIES is a hash map")
    .keys()
    .count();
    println!(
        "\n== DNS (BPF_PROG_TEST_RUN, one packet a run, median of {QUERIES} distinct transaction ids a hook; {pending} queries left pending) =="
    );
    println!(
        "{:<30} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8}",
        "packet", "xdp_pass", "ours_xdp", "Δ xdp", "tc_pass", "ours_tc", "Δ tc"
    );
    for (k, name) in [
        "query (to :53, 52 B payload)",
        "response (answers it)",
        "UDP to :8125 (same method)",
    ]
    .iter()
    .enumerate()
    {
        let ((px, ox), (pt, ot)) = (at_xdp[k], at_tc[k]);
        println!(
            "{name:<30} {px:>9.0} {ox:>9.0} {:>+8.0} {pt:>9.0} {ot:>9.0} {:>+8.0}",
            ox - px,
            ot - pt
        );
    }
}
