//! The cost of the connection and drop tracking, each above its trivial baseline in the same
//! run.
//!
//! `handshake`: a first SYN (a new connection: clock read, table insert) and its SYN-ACK
//! (lookup, clock read, update), each ISN distinct, so no packet finds the work done by the one
//! before it. Every run is one packet (`repeat = 1`), so the kernel's timing overhead is part of
//! each figure: the trivial program pays it too, and the difference is ours. A data packet,
//! measured the same way, shows what the method adds to the `packet` table's figure.
//!
//! `drops`: the `kfree_skb` raw tracepoint (BPF_PROG_TEST_RUN cannot time raw tracepoints), by
//! the kernel's BPF stats while the lab drops UDP datagrams sent to a closed port; a trivial
//! program on the same tracepoint sees the same drops.

use aya::programs::{ProgramInfo, RawTracePoint, SchedClassifier, TestRun, TestRunOptions};

use crate::{
    common::{
        NodeLab,
        addr::PODS,
        agent::{start_with, wait_attached},
        packets::{eth, ipv4_between, tcp_seq},
        traffic,
    },
    load_bench, median, tc, xdp,
};
use netprobe_ebpf::{Conn, ConnKey};
use otel_netprobe::ebpf;

/// Handshakes per hook.
const HANDSHAKES: u32 = 10_000;
/// Datagrams to a closed port.
const DROPS: usize = 20_000;

const CLIENT: [u8; 4] = [10, 244, 0, 11];
const SERVER: [u8; 4] = [10, 244, 1, 20];

fn seg(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let l4 = tcp_seq(ports.0, ports.1, flags, seq, ack);
    [eth(&[], 0x0800), ipv4_between(src, dst, 6, 0, 0, &l4, 0)].concat()
}

/// One run of one packet, ns.
pub(crate) fn once<
    P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::TestRunResult>,
>(
    prog: &P,
    frame: &[u8],
) -> f64 {
    let mut o = TestRunOptions::new();
    o.data_in = Some(frame);
    o.repeat = 1;
    prog.test_run(o).expect("test run").duration.as_nanos() as f64
}

/// Medians of (trivial, ours) for the SYN, the SYN-ACK and a data packet of each handshake,
/// ISNs from `first_isn`.
fn medians<P: for<'a> TestRun<Opts<'a> = TestRunOptions<'a>, Result = aya::TestRunResult>>(
    pass: &P,
    ours: &P,
    first_isn: u32,
) -> [(f64, f64); 3] {
    let mut r: [Vec<f64>; 6] = Default::default();
    for i in 0..HANDSHAKES {
        // The same client port (one flow), a new ISN: a new connection each time.
        let isn = first_isn.wrapping_add(i.wrapping_mul(7919));
        let syn = seg(CLIENT, SERVER, (40000, 443), 0x02, isn, 0);
        let syn_ack = seg(SERVER, CLIENT, (443, 40000), 0x12, 77, isn.wrapping_add(1));
        let data = seg(CLIENT, SERVER, (40000, 443), 0x10, isn.wrapping_add(1), 78);
        for (k, frame) in [syn, syn_ack, data].iter().enumerate() {
            r[2 * k].push(once(pass, frame));
            r[2 * k + 1].push(once(ours, frame));
        }
    }
    let m = r.map(median);
    [(m[0], m[1]), (m[2], m[3]), (m[4], m[5])]
}

/// SYN and SYN-ACK cost at XDP and TC.
pub fn handshakes() {
    let ours = ebpf::load(
        netprobe_ebpf::DEFAULT_FLOW4_CAPACITY,
        netprobe_ebpf::DEFAULT_FLOW6_CAPACITY,
    )
    .expect("production object");
    let bench = load_bench();
    let at_xdp = medians(xdp(&bench, "bench_xdp_pass"), xdp(&ours, "netprobe_xdp"), 1);
    let (pass_tc, ours_tc): (&SchedClassifier, &SchedClassifier) = (
        tc(&bench, "bench_tc_pass"),
        tc(&ours, "netprobe_tc_ingress"),
    );
    let at_tc = medians(pass_tc, ours_tc, 0x8000_0001);
    let conns = aya::maps::HashMap::<_, ConnKey, Conn>::try_from(ours.map("CONNS").expect("CONNS"))
        .expect("CONNS is a hash map")
        .keys()
        .count();
    println!(
        "\n== Handshake tracking (BPF_PROG_TEST_RUN, one packet a run, median of {HANDSHAKES} distinct ISNs a hook; {conns} connections in the table after) =="
    );
    println!(
        "{:<28} {:>9} {:>9} {:>8} {:>9} {:>9} {:>8}",
        "packet", "xdp_pass", "ours_xdp", "Δ xdp", "tc_pass", "ours_tc", "Δ tc"
    );
    for (k, name) in [
        "first SYN (new connection)",
        "SYN-ACK (matches its SYN)",
        "data (same method)",
    ]
    .iter()
    .enumerate()
    {
        let ((px, ox), (pt, ot)) = (at_xdp[k], at_tc[k]);
        println!(
            "{name:<28} {px:>9.0} {ox:>9.0} {:>+8.0} {pt:>9.0} {ot:>9.0} {:>+8.0}",
            ox - px,
            ot - pt
        );
    }
}

/// Run time and count of the program `id`, as the kernel accounts them.
fn stats(id: u32) -> (u64, u64) {
    let info: ProgramInfo = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .expect("program still loaded");
    (info.run_time().as_nanos() as u64, info.run_count())
}

/// The id of the loaded program whose (kernel-truncated) name starts `prefix`.
fn id_named(prefix: &str) -> Vec<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with(prefix)))
        .map(|p| p.id())
        .collect()
}

/// Cost per drop of the agent's `kfree_skb` program, against a trivial one.
pub fn drops() {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF stats");
    let lab = NodeLab::new("dropb");
    let before: Vec<u32> = id_named("netprobe_drop");
    let agent = start_with(&lab.node, Vec::new(), |_| {});
    wait_attached(&agent, 4);
    let ours: Vec<u32> = id_named("netprobe_drop")
        .into_iter()
        .filter(|id| !before.contains(id))
        .collect();
    assert_eq!(ours.len(), 1, "the agent's drop program (kernel with BTF)");
    let mut bench = load_bench();
    let p: &mut RawTracePoint = bench
        .program_mut("bench_kfree_skb")
        .unwrap()
        .try_into()
        .unwrap();
    p.load().expect("load trivial tracepoint");
    p.attach("kfree_skb").expect("attach trivial tracepoint");
    let trivial = p.info().expect("info").id();
    let ids = [ours[0], trivial];
    let t0 = ids.map(stats);
    traffic::udp_send(
        &lab.pods[0],
        &format!("{}:40999", PODS[0]),
        &format!("{}:9", PODS[1]),
        DROPS,
        100,
    );
    let t1 = ids.map(stats);
    let per = |i: usize| (t1[i].0 - t0[i].0) as f64 / (t1[i].1 - t0[i].1).max(1) as f64;
    let runs = t1[1].1 - t0[1].1;
    agent.stop();
    println!(
        "\n== Drop tracking (BPF stats on kfree_skb: run_time_ns / run_cnt; {DROPS} UDP datagrams to a closed port, {runs} tracepoint hits) =="
    );
    println!(
        "{:<34} {:>8} {:>9} {:>8}",
        "program", "ours", "trivial", "Δ"
    );
    println!(
        "{:<34} {:>8.0} {:>9.0} {:>+8.0}",
        "kfree_skb raw tracepoint",
        per(0),
        per(1),
        per(0) - per(1)
    );
}
