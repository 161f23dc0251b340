//! `make bench`: every figure is a ratio or a difference against a baseline measured in the
//! same run, or says plainly that it is absolute. Needs root (BPF_PROG_TEST_RUN, namespace
//! labs). `cargo bench -p otel-netprobe --bench netprobe -- SECTION` runs one section.
//!
//! 1. `packet`: per-packet cost of our XDP and TC programs (BPF_PROG_TEST_RUN), minus a trivial
//!    XDP_PASS / TC program, for four packet shapes; and the per-CPU flow-table variant.
//!    `traffic`: the same programs under traffic, by the kernel's BPF stats, against a
//!    trivial program on the same hooks, while the lab carries 100k flows. `handshake`: a first
//!    SYN and its SYN-ACK (connection tracking); `dns`: a DNS query and its response;
//!    `drops`: the `kfree_skb` tracepoint per drop.
//! 2. `memory`: kernel memory of the flow tables, shared (ours) vs per-CPU, both measured here.
//! 3. `maps`, `reader`, `export`, `agent`, `attach`, `k8s`: user space (`sections/`);
//!    `k8s_api`: the agents' watchers against a real kube-apiserver (`-- k8s` runs both).
//! 4. `collector`: simulated nodes pushing into the real Collector, 1 to 1,000 nodes, scrape
//!    and remote write (`sections/collector.rs`).
//! 5. `throughput`: pod-to-pod TCP (iperf3) with and without the agent attached.
//! 6. `soak`: 30 minutes (`SOAK_MINUTES`) of changing traffic, veth churn and Collector and API
//!    server restarts under the agent binary, sampled every 10 s and drawn into
//!    `target/soak/soak.png` (`sections/soak.rs`).

#[path = "../tests/common/cgroup.rs"]
mod cgroup;
#[path = "../tests/collector_chain/chain.rs"]
#[allow(
    dead_code,
    clippy::float_cmp,
    reason = "the soak uses the chain's lab, Collector and agent command; counts are exact"
)]
mod chain;
#[path = "../tests/common/collector.rs"]
mod collector;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "netprobe/conns.rs"]
mod conns;
#[path = "netprobe/dns.rs"]
mod dns;
#[path = "netprobe/netobserv.rs"]
mod netobserv;
#[path = "../tests/common/repo.rs"]
mod repo;
mod sections;
#[path = "netprobe/traffic.rs"]
mod traffic;
#[path = "netprobe/traffic_tc.rs"]
mod traffic_tc;

use std::{os::fd::AsFd, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use common::packets::{eth, ipv4, ipv6, tcp, udp};
use netprobe_ebpf::{DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY, FlowKey, FlowKey4, FlowStats};
use otel_netprobe::ebpf::{self, BENCH_OBJECT, sys};

const REPEAT: u32 = 100_000;
const ROUNDS: usize = 15;

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn xdp_ns(prog: &Xdp, frame: &[u8]) -> f64 {
    let mut o = TestRunOptions::new();
    o.data_in = Some(frame);
    o.repeat = REPEAT;
    prog.test_run(o).expect("test run").duration.as_nanos() as f64
}

fn tc_ns(prog: &SchedClassifier, frame: &[u8]) -> f64 {
    let mut o = TestRunOptions::new();
    o.data_in = Some(frame);
    o.repeat = REPEAT;
    prog.test_run(o).expect("test run").duration.as_nanos() as f64
}

/// Baselines and "where the time goes" variants, from the bench object.
const BENCH_XDP: [&str; 5] = [
    "bench_xdp_pass",
    "bench_xdp_percpu",
    "bench_xdp_parse",
    "bench_xdp_lookup",
    "bench_xdp_plainadd",
];

pub(crate) fn load_bench() -> Ebpf {
    let mut b = Ebpf::load(BENCH_OBJECT).expect("bench object");
    for name in BENCH_XDP {
        let p: &mut Xdp = b.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap();
    }
    let p: &mut SchedClassifier = b.program_mut("bench_tc_pass").unwrap().try_into().unwrap();
    p.load().unwrap();
    b
}

pub(crate) fn xdp<'a>(e: &'a Ebpf, name: &str) -> &'a Xdp {
    e.program(name).unwrap().try_into().unwrap()
}

pub(crate) fn tc<'a>(e: &'a Ebpf, name: &str) -> &'a SchedClassifier {
    e.program(name).unwrap().try_into().unwrap()
}

fn per_packet() {
    let mut ours =
        ebpf::load(DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY).expect("production object");
    // BPF_PROG_TEST_RUN runs the programs on loopback (index 1): give it its coverage slot, as
    // the agent gives every attached interface one, so the hit path is what is measured.
    let _slots = ebpf::coverage::Slots::take(&mut ours).inspect(|s| {
        s.lock().expect("slots").assign(1);
    });
    let bench = load_bench();
    let shapes: [(&str, Vec<u8>); 4] = [
        (
            "IPv4 TCP data (1448 B)",
            [
                eth(&[], 0x0800),
                ipv4(6, 0, 0, &tcp(40000, 443, 0x10, 12), 1448),
            ]
            .concat(),
        ),
        (
            "IPv4 TCP SYN (same ISN)",
            [
                eth(&[], 0x0800),
                ipv4(6, 0, 0, &tcp(40001, 443, 0x02, 20), 0),
            ]
            .concat(),
        ),
        (
            "IPv4 UDP (200 B)",
            [
                eth(&[], 0x0800),
                ipv4(17, 0, 0, &udp(40002, 8125, 200), 200),
            ]
            .concat(),
        ),
        (
            "IPv6 TCP data (1428 B)",
            [eth(&[], 0x86dd), ipv6(6, &tcp(40003, 443, 0x10, 12), 1428)].concat(),
        ),
    ];
    println!(
        "\n== Per-packet cost (BPF_PROG_TEST_RUN, {REPEAT} repeats, best of {ROUNDS} interleaved rounds, ns/packet) =="
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9}",
        "packet", "xdp_pass", "ours_xdp", "Δ xdp", "percpu_xdp", "tc_pass", "ours_tc", "Δ tc"
    );
    for (name, frame) in &shapes {
        // Interleaved rounds, so drift on this shared machine hits every program alike; the best
        // round, because noise only ever adds time.
        let mut r: [Vec<f64>; 8] = Default::default();
        for _ in 0..ROUNDS {
            for (i, p) in BENCH_XDP.iter().enumerate() {
                r[i].push(xdp_ns(xdp(&bench, p), frame));
            }
            r[5].push(xdp_ns(xdp(&ours, "netprobe_xdp"), frame));
            r[6].push(tc_ns(tc(&bench, "bench_tc_pass"), frame));
            r[7].push(tc_ns(tc(&ours, "netprobe_tc_ingress"), frame));
        }
        let m = r.map(|v| v.into_iter().fold(f64::INFINITY, f64::min));
        let (pass, percpu, parse, lookup, plain, ours_xdp, tc_pass, ours_tc) =
            (m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7]);
        println!(
            "{name:<24} {pass:>9.0} {ours_xdp:>9.0} {:>+9.0} {percpu:>11.0} {tc_pass:>9.0} {ours_tc:>9.0} {:>+9.0}",
            ours_xdp - pass,
            ours_tc - tc_pass
        );
        if name.starts_with("IPv4") {
            println!(
                "{:<24} where it goes (above xdp_pass): parse {:+.0}; + lookup {:+.0}; + plain adds {:+.0}; \
                 ours (atomic adds) {:+.0}",
                "",
                parse - pass,
                lookup - pass,
                plain - pass,
                ours_xdp - pass
            );
        }
    }
}

fn memory() {
    use aya::maps::{IterableMap, MapData, PerCpuHashMap};
    let ours =
        ebpf::load(DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY).expect("production object");
    let memlock = |name: &str| {
        let aya::maps::Map::HashMap(data) = ours.map(name).unwrap() else {
            panic!("{name} is a hash map")
        };
        sys::map_memlock_bytes(data.fd().as_fd()).expect("memlock")
    };
    let measured = memlock("FLOWS4") + memlock("FLOWS6");
    // The per-CPU design, created here at this machine's CPU count (values preallocated per
    // possible CPU, as the kernel does for every per-CPU hash map), and its kernel accounting.
    let v4 = PerCpuHashMap::<MapData, FlowKey4, FlowStats>::create(DEFAULT_FLOW4_CAPACITY, 0)
        .expect("per-CPU IPv4 table");
    let v6 = PerCpuHashMap::<MapData, FlowKey, FlowStats>::create(DEFAULT_FLOW6_CAPACITY, 0)
        .expect("per-CPU IPv6 table");
    let percpu_measured = sys::map_memlock_bytes(v4.map().fd().as_fd()).expect("memlock")
        + sys::map_memlock_bytes(v6.map().fd().as_fd()).expect("memlock");
    let cpus = aya::util::nr_cpus().unwrap() as u64;
    let tables = [
        (
            u64::from(DEFAULT_FLOW4_CAPACITY),
            size_of::<FlowKey4>() as u64,
        ),
        (
            u64::from(DEFAULT_FLOW6_CAPACITY),
            size_of::<FlowKey>() as u64,
        ),
    ];
    let v = size_of::<FlowStats>() as u64;
    // The kernel's accounting (htab_map_mem_usage): per element a 48-byte header + key + value,
    // one spare element per CPU, and the bucket array (16 bytes per bucket); a per-CPU map keeps
    // an 8-byte pointer in the element and a value per possible CPU.
    let model = |c: u64, percpu: bool| -> u64 {
        tables
            .iter()
            .map(|&(n, k)| {
                let elem = if percpu {
                    48 + k + 8 + v * c
                } else {
                    48 + k + v
                };
                (n + c) * elem + n.next_power_of_two() * 16
            })
            .sum()
    };
    let n = tables[0].0 + tables[1].0;
    println!(
        "\n== Flow tables' kernel memory, {n} flows ({} IPv4 + {} IPv6); absolute, MiB ==",
        tables[0].0, tables[1].0
    );
    println!(
        "measured here, {cpus} possible CPUs (kernel memlock of maps created now): shared {:.1} \
         (model {:.1}), per-CPU {:.1} (model {:.1})",
        mib(measured),
        mib(model(cpus, false)),
        mib(percpu_measured),
        mib(model(cpus, true))
    );
    println!(
        "{:<10} {:>14} {:>14}   (the model above, which the measurement checks)",
        "CPUs", "shared (ours)", "per-CPU"
    );
    for c in [8, 64, 256] {
        println!(
            "{c:<10} {:>10.1} MiB {:>10.1} MiB",
            mib(model(c, false)),
            mib(model(c, true))
        );
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / f64::from(1 << 20)
}

fn throughput() {
    use common::{NodeLab, addr::PODS};
    let lab = NodeLab::new("bench");
    // The server process lives in pod1's namespace (it inherits the spawning thread's).
    let mut server = lab.pods[1].run(|| {
        std::process::Command::new("iperf3")
            .args(["-s", "-B", PODS[1], "-p", "5301"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("iperf3 server")
    });
    assert!(common::wait_until(Duration::from_secs(10), || lab.pods[0]
        .run(|| std::net::TcpStream::connect((PODS[1], 5301)).is_ok())));
    let run = |lab: &NodeLab| -> f64 {
        let out = lab.pods[0].exec(&format!("iperf3 -c {} -p 5301 -t 3 -J", PODS[1]));
        let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 json");
        v["end"]["sum_received"]["bits_per_second"]
            .as_f64()
            .expect("bps")
            / 1e9
    };
    // A third arm: trivial TC programs (return "next") on the same hooks, to tell the cost of
    // having a TC hook at all from the cost of our program.
    let trivial = |lab: &NodeLab| {
        lab.node.run(|| {
            use aya::programs::TcAttachType;
            let mut b = load_bench();
            let p: &mut SchedClassifier =
                b.program_mut("bench_tc_pass").unwrap().try_into().unwrap();
            for iface in ["vethpod0", "vethpod1", "vethpod2", "eth0"] {
                for dir in [TcAttachType::Ingress, TcAttachType::Egress] {
                    p.attach(iface, dir).expect("attach trivial TC");
                }
            }
            b
        })
    };
    let (mut without, mut with, mut baseline) = (vec![], vec![], vec![]);
    for _ in 0..6 {
        without.push(run(&lab));
        let agent = common::agent::start_in(&lab.node, Vec::new());
        common::agent::wait_attached(&agent, 4);
        with.push(run(&lab));
        agent.stop();
        let t = trivial(&lab);
        baseline.push(run(&lab));
        drop(t);
    }
    let _ = server.kill();
    let _ = server.wait();
    let (a, b, c) = (
        median(without.clone()),
        median(with.clone()),
        median(baseline.clone()),
    );
    println!("\n== Pod-to-pod TCP throughput (iperf3, 3 s runs, alternating, medians of 6) ==");
    println!("without agent:            {a:.1} Gbit/s {without:.1?}");
    println!("with agent:               {b:.1} Gbit/s {with:.1?}");
    println!("trivial TC, same hooks:   {c:.1} Gbit/s {baseline:.1?}");
    println!("ratio, agent / none:      {:.1} %", 100.0 * b / a);
    println!("ratio, agent / trivial:   {:.1} %", 100.0 * b / c);
}

fn main() {
    common::require_root();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |s: &str| only.as_deref().is_none_or(|o| s.contains(o));
    if want("packet") {
        per_packet();
    }
    if want("handshake") {
        conns::handshakes();
    }
    if want("dns") {
        dns::queries();
    }
    if want("traffic") {
        traffic::under_traffic();
    } else if only.as_deref() == Some("netobserv") {
        // The TC comparison with NetObserv alone (part of `traffic`).
        traffic::tc_only();
    }
    if want("drops") {
        conns::drops();
    }
    if want("memory") {
        memory();
    }
    if want("maps") {
        sections::maps::batch_vs_iter();
    }
    if want("reader") {
        sections::pipeline::reader_cost();
    }
    if want("export") {
        sections::pipeline::export_cost();
    }
    if want("agent") {
        sections::agent::resident_memory();
    }
    if want("attach") {
        sections::attach::churn();
    }
    if want("k8s") {
        sections::k8s::k8s_index();
    }
    if want("k8s_api") {
        sections::k8s_api::api_load();
    }
    if want("collector") {
        sections::collector::collector_scale();
    }
    if want("throughput") {
        throughput();
    }
    if want("soak") {
        sections::soak::soak();
    }
    let _ = EbpfLoader::new;
}
