//! The TC half of the under-traffic section: ours beside NetObserv's flow program and a
//! trivial one, in one TCX ingress chain on a pod veth, over the very same frames. Every run
//! loads fresh programs with empty tables, so its first round is every flow's first packet (the
//! hash insert) and the later rounds are packets of known flows. The runs alternate which of
//! ours and theirs goes first in the chain (the first one takes the packet's cache misses);
//! the trivial program is always last.

use std::sync::Arc;

use aya::{
    Ebpf,
    programs::{SchedClassifier, TcAttachType, links::LinkOrder, tc::TcAttachOptions},
};

use crate::{
    common::{NodeLab, traffic},
    netobserv,
    traffic::{BURSTS, FLOWS, ROUNDS, frames, stats},
};

/// Runs per burst size (alternating the order of ours and theirs).
const RUNS: usize = 4;

/// ns/packet per program of one run: the first round (new flows) and the later ones.
struct Run {
    new: Vec<f64>,
    known: Vec<f64>,
}

/// Sends round 1, then the rest, and returns each program's ns/packet for both.
fn run(send: &dyn Fn(usize), burst: usize, ids: &[u32]) -> Run {
    let snap = || ids.iter().map(|id| stats(*id)).collect::<Vec<_>>();
    let per = |a: &[(u64, u64)], b: &[(u64, u64)]| {
        a.iter()
            .zip(b)
            .map(|((t0, n0), (t1, n1))| (t1 - t0) as f64 / (n1 - n0).max(1) as f64)
            .collect()
    };
    let s0 = snap();
    send(burst);
    let s1 = snap();
    for _ in 1..ROUNDS {
        send(burst);
    }
    let s2 = snap();
    Run {
        new: per(&s0, &s1),
        known: per(&s1, &s2),
    }
}

/// Our production object with the production table sizes, its TC ingress program attached
/// at `ifname` (first or last in the chain) with the interface's coverage slot, as the agent
/// attaches it (no reader runs: the tables only fill).
fn ours(ifname: &str, first: bool) -> (Ebpf, u32) {
    let mut e = otel_netprobe::ebpf::load(
        netprobe_ebpf::DEFAULT_FLOW4_CAPACITY,
        netprobe_ebpf::DEFAULT_FLOW6_CAPACITY,
    )
    .expect("production object");
    let c_name = std::ffi::CString::new(ifname).expect("name");
    // SAFETY: a libc call on a valid C string.
    let index = unsafe { libc::if_nametoindex(c_name.as_ptr()) };
    let slots = otel_netprobe::ebpf::coverage::Slots::take(&mut e).expect("coverage slots");
    slots.lock().expect("slots").assign(index);
    let id = attach_tcx(&mut e, "netprobe_tc_ingress", ifname, first);
    (e, id)
}

/// Attaches `e`'s TC program `name` at `ifname`'s TCX ingress, first or last in the chain;
/// returns its program id (ours, the bench object's and NetObserv's alike).
pub(crate) fn attach_tcx(e: &mut Ebpf, name: &str, ifname: &str, first: bool) -> u32 {
    let p: &mut SchedClassifier = e.program_mut(name).unwrap().try_into().unwrap();
    let order = if first {
        LinkOrder::first()
    } else {
        LinkOrder::last()
    };
    p.attach_with_options(
        ifname,
        TcAttachType::Ingress,
        TcAttachOptions::TcxOrder(order),
    )
    .unwrap_or_else(|e| panic!("attach {name} at {ifname}: {e}"));
    p.info().expect("program info").id()
}

/// Attaches the bench object's TC program named `name` last in `ifname`'s chain.
fn bench_tc(e: &mut Ebpf, name: &str, ifname: &str) -> u32 {
    attach_tcx(e, name, ifname, false)
}

/// The insert-path variants of the bench object ([`VARIANTS`]), each with its own table of
/// the production size.
const VARIANTS: [(&str, &str, &str); 7] = [
    (
        "bench_v_two",
        "V_TWO",
        "lookup, insert zeroed, lookup again, add (production)",
    ),
    (
        "bench_v_one",
        "V_ONE",
        "lookup, one insert with the sample in it",
    ),
    (
        "bench_v_noclock",
        "V_NOCLOCK",
        "  the same without bpf_ktime_get_ns",
    ),
    (
        "bench_v_noprealloc",
        "V_NOPREALLOC",
        "  the same, BPF_F_NO_PREALLOC table",
    ),
    ("bench_v_lru", "V_LRU", "  the same, LRU hash"),
    ("bench_v_key40", "V_KEY40", "  the same, 40-byte key"),
    (
        "bench_v_percpu",
        "V_PERCPU",
        "  the same, per-CPU hash, plain adds",
    ),
];

/// Loads the variants and attaches them, then the trivial program, at `ifname`'s ingress.
fn variants(ifname: &str) -> (Ebpf, Vec<u32>) {
    let mut loader = aya::EbpfLoader::new();
    for (_, map, _) in VARIANTS {
        loader.map_max_entries(map, netprobe_ebpf::DEFAULT_FLOW4_CAPACITY);
    }
    let mut e = loader
        .load(otel_netprobe::ebpf::BENCH_OBJECT)
        .expect("bench object");
    let mut ids = Vec::new();
    for name in VARIANTS.map(|v| v.0).iter().chain(&["bench_tc_pass"]) {
        let p: &mut SchedClassifier = e.program_mut(name).unwrap().try_into().unwrap();
        p.load().expect("variant passes the verifier");
        ids.push(bench_tc(&mut e, name, ifname));
    }
    (e, ids)
}

/// Where the first packet's time goes: each variant's excess over trivial, in runs of their
/// own (their tables would otherwise evict ours and theirs from the cache).
fn insert_variants(lab: &NodeLab, send: &dyn Fn(usize)) {
    println!(
        "\n== Where a flow's first packet goes (TC ingress chain of the variants alone, same frames; excess over trivial, ns; mean of 2 runs) =="
    );
    println!(
        "{:<52} {:>10} {:>10} {:>10} {:>10}",
        "variant (production-size table each)", "new, b=1", "known, b=1", "new, b=8", "known, b=8"
    );
    let mut cells = vec![Vec::new(); VARIANTS.len()];
    for burst in BURSTS {
        let runs: Vec<Run> = (0..2)
            .map(|_| {
                let (kept, ids) = lab.node.run(|| variants("vethpod0"));
                let r = run(send, burst, &ids);
                lab.node.run(move || drop(kept));
                r
            })
            .collect();
        for (i, cell) in cells.iter_mut().enumerate() {
            for pick in
                [|r: &Run| r.new.clone(), |r: &Run| r.known.clone()] as [fn(&Run) -> Vec<f64>; 2]
            {
                let d: Vec<f64> = runs
                    .iter()
                    .map(|r| {
                        let v = pick(r);
                        v[i] - v[v.len() - 1]
                    })
                    .collect();
                cell.push(summary(&d).0);
            }
        }
    }
    for ((_, _, label), c) in VARIANTS.iter().zip(cells) {
        println!(
            "{label:<52} {:>+10.0} {:>+10.0} {:>+10.0} {:>+10.0}",
            c[0], c[1], c[2], c[3]
        );
    }
}

/// Mean and spread of one column.
fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(0.0, f64::max);
    (mean, min, max)
}

/// Measures and prints ours, NetObserv's (when its object can be obtained) and trivial at
/// `vethpod0`'s TCX ingress.
pub fn against_netobserv(lab: &NodeLab) {
    let theirs_obj = match netobserv::object() {
        Ok(p) => Some(p),
        Err(e) => {
            println!("NetObserv's object could not be obtained ({e}): ours only");
            None
        }
    };
    let from_pod = frames(
        traffic::mac(&lab.node, "br0"),
        traffic::mac(&lab.pods[0], "eth0"),
    );
    let pod = &lab.pods[0];
    let send = |burst| traffic::raw_frames(pod, "eth0", Arc::clone(&from_pod), burst);
    println!(
        "\n== Per-packet cost under traffic, TC ingress on a pod veth (one TCX chain; BPF stats run_time_ns / run_cnt; {FLOWS} UDP flows in turn; {RUNS} runs per row, fresh tables each, ours and NetObserv's alternating first; mean [min–max]) =="
    );
    if theirs_obj.is_some() {
        println!(
            "NetObserv {}: their TCX ingress flow program from their prebuilt object, sampling 1, cache {} flows, optional features off",
            netobserv::VERSION,
            netobserv::CACHE_MAX_FLOWS
        );
    }
    println!(
        "{:<28} {:>6} {:>16} {:>16} {:>10} {:>8} {:>8} {:>14}",
        "packets", "burst", "ours", "NetObserv", "trivial", "Δ ours", "Δ theirs", "Δ ours/theirs"
    );
    for burst in BURSTS {
        let mut runs = Vec::new();
        for r in 0..RUNS {
            let ours_first = r % 2 == 0;
            let theirs_obj = theirs_obj.clone();
            let (kept, ids) = lab.node.run(move || {
                let mut theirs = theirs_obj.as_deref().map(netobserv::load);
                let (ours, ours_id) = ours("vethpod0", true);
                let mut ids = vec![ours_id];
                if let Some(t) = theirs.as_mut() {
                    ids.push(netobserv::attach(t, "vethpod0", !ours_first));
                }
                let mut trivial = crate::load_bench();
                ids.push(bench_tc(&mut trivial, "bench_tc_pass", "vethpod0"));
                ((ours, theirs, trivial), ids)
            });
            runs.push(run(&send, burst, &ids));
            lab.node.run(move || drop(kept));
        }
        for (label, pick) in [
            (
                "first packet of every flow",
                (|r: &Run| r.new.clone()) as fn(&Run) -> Vec<f64>,
            ),
            ("known flows (rounds 2–4)", |r: &Run| r.known.clone()),
        ] {
            let cols: Vec<Vec<f64>> = runs.iter().map(pick).collect();
            let col = |i: usize| -> Vec<f64> { cols.iter().map(|c| c[i]).collect() };
            let triv = col(cols[0].len() - 1);
            let d =
                |i: usize| -> Vec<f64> { col(i).iter().zip(&triv).map(|(a, t)| a - t).collect() };
            let fmt = |v: &[f64]| {
                let (m, lo, hi) = summary(v);
                format!("{m:.0} [{lo:.0}–{hi:.0}]")
            };
            let (d_ours, _, _) = summary(&d(0));
            if theirs_obj.is_some() {
                let (d_theirs, _, _) = summary(&d(1));
                let ratios: Vec<f64> = d(0).iter().zip(d(1)).map(|(a, b)| a / b).collect();
                let (_, rlo, rhi) = summary(&ratios);
                println!(
                    "{label:<28} {burst:>6} {:>16} {:>16} {:>10.0} {d_ours:>+8.0} {d_theirs:>+8.0} {:>5.2}× [{rlo:.2}–{rhi:.2}]",
                    fmt(&col(0)),
                    fmt(&col(1)),
                    summary(&triv).0,
                    d_ours / d_theirs
                );
            } else {
                println!(
                    "{label:<28} {burst:>6} {:>16} {:>16} {:>10.0} {d_ours:>+8.0}",
                    fmt(&col(0)),
                    "-",
                    summary(&triv).0
                );
            }
        }
    }
    insert_variants(lab, &send);
}
