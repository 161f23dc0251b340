//! `make bench`: every figure is a ratio or a difference against a baseline measured in the
//! same run. Needs root (BPF_PROG_TEST_RUN, namespace lab).
//!
//! 1. Per-packet cost of our XDP and TC programs (BPF_PROG_TEST_RUN), minus a trivial
//!    XDP_PASS / TC program, for four packet shapes; and the per-CPU flow-table variant.
//! 2. Kernel memory of the flow table: shared (ours) vs per-CPU, at 8/64/256 CPUs.
//! 3. Reader: µs per flow to read 100k flows, and to read and expire them.
//! 4. Throughput: pod-to-pod TCP (iperf3) with and without the agent attached.

#[path = "../tests/common/mod.rs"]
mod common;

use std::{os::fd::AsFd, sync::Arc, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapData,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use common::packets::{eth, ipv4, ipv6, tcp, udp};
use netprobe_ebpf::{DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY, FlowKey, FlowKey4, FlowStats};
use otel_netprobe::ebpf::{self, BENCH_OBJECT, reader, sys};

const REPEAT: u32 = 100_000;
const ROUNDS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
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

fn load_bench() -> Ebpf {
    let mut b = Ebpf::load(BENCH_OBJECT).expect("bench object");
    for name in [
        "bench_xdp_pass",
        "bench_xdp_percpu",
        "bench_xdp_parse",
        "bench_xdp_lookup",
        "bench_xdp_lookup4",
    ] {
        let p: &mut Xdp = b.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap();
    }
    let p: &mut SchedClassifier = b.program_mut("bench_tc_pass").unwrap().try_into().unwrap();
    p.load().unwrap();
    b
}

fn per_packet() {
    let ours =
        ebpf::load(DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY).expect("production object");
    let bench = load_bench();
    let xdp: &Xdp = ours.program("netprobe_xdp").unwrap().try_into().unwrap();
    let tc: &SchedClassifier = ours
        .program("netprobe_tc_ingress")
        .unwrap()
        .try_into()
        .unwrap();
    let pass: &Xdp = bench.program("bench_xdp_pass").unwrap().try_into().unwrap();
    let percpu: &Xdp = bench
        .program("bench_xdp_percpu")
        .unwrap()
        .try_into()
        .unwrap();
    let tc_pass: &SchedClassifier = bench.program("bench_tc_pass").unwrap().try_into().unwrap();
    let parse: &Xdp = bench
        .program("bench_xdp_parse")
        .unwrap()
        .try_into()
        .unwrap();
    let lookup: &Xdp = bench
        .program("bench_xdp_lookup")
        .unwrap()
        .try_into()
        .unwrap();
    let lookup4: &Xdp = bench
        .program("bench_xdp_lookup4")
        .unwrap()
        .try_into()
        .unwrap();
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
            "IPv4 TCP SYN",
            [
                eth(&[], 0x0800),
                ipv4(6, 0, 0, &tcp(40001, 443, 0x02, 20), 0),
            ]
            .concat(),
        ),
        (
            "IPv4 UDP (200 B)",
            [eth(&[], 0x0800), ipv4(17, 0, 0, &udp(40002, 53, 200), 200)].concat(),
        ),
        (
            "IPv6 TCP data (1428 B)",
            [eth(&[], 0x86dd), ipv6(6, &tcp(40003, 443, 0x10, 12), 1428)].concat(),
        ),
    ];
    println!(
        "\n== Per-packet cost (BPF_PROG_TEST_RUN, {REPEAT} repeats, median of {ROUNDS} rounds, ns/packet) =="
    );
    println!(
        "{:<24} {:>9} {:>9} {:>9} {:>11} {:>9} {:>9} {:>9}",
        "packet", "xdp_pass", "ours_xdp", "Δ xdp", "percpu_xdp", "tc_pass", "ours_tc", "Δ tc"
    );
    for (name, frame) in &shapes {
        // Interleaved rounds, so drift on this shared machine hits every program alike.
        let mut r: [Vec<f64>; 8] = Default::default();
        for _ in 0..ROUNDS {
            r[0].push(xdp_ns(pass, frame));
            r[1].push(xdp_ns(xdp, frame));
            r[2].push(xdp_ns(percpu, frame));
            r[3].push(tc_ns(tc_pass, frame));
            r[4].push(tc_ns(tc, frame));
            r[5].push(xdp_ns(parse, frame));
            r[6].push(xdp_ns(lookup, frame));
            r[7].push(xdp_ns(lookup4, frame));
        }
        let m = r.map(median);
        println!(
            "{name:<24} {:>9.0} {:>9.0} {:>+9.0} {:>11.0} {:>9.0} {:>9.0} {:>+9.0}",
            m[0],
            m[1],
            m[1] - m[0],
            m[2],
            m[3],
            m[4],
            m[4] - m[3]
        );
        println!(
            "{:<24} parse only {:+.0}, parse + 40-byte-key lookup {:+.0}, parse + 16-byte-key lookup {:+.0}",
            "",
            m[5] - m[0],
            m[6] - m[0],
            m[7] - m[0]
        );
    }
}

fn memory() {
    let ours =
        ebpf::load(DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY).expect("production object");
    let memlock = |name: &str| {
        let aya::maps::Map::HashMap(data) = ours.map(name).unwrap() else {
            panic!("{name} is a hash map")
        };
        sys::map_memlock_bytes(data.fd().as_fd()).expect("memlock")
    };
    let measured = memlock("FLOWS4") + memlock("FLOWS6");
    let cpus = sys::possible_cpus().unwrap() as u64;
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
        "\n== Flow tables' kernel memory, {n} flows ({} IPv4 + {} IPv6) ==",
        tables[0].0, tables[1].0
    );
    println!(
        "measured here ({cpus} possible CPUs, kernel memlock): {:.1} MiB (model: {:.1} MiB)",
        mib(measured),
        mib(model(cpus, false))
    );
    println!("{:<10} {:>14} {:>14}", "CPUs", "shared (ours)", "per-CPU");
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

fn reader_cost() {
    const FLOWS: u32 = 100_000;
    const CAP: u32 = 131_072;
    let hash = |k: usize| {
        sys::create_map(
            sys::MAP_TYPE_HASH,
            k as u32,
            size_of::<FlowStats>() as u32,
            CAP,
            0,
        )
        .unwrap()
    };
    let (fd4, fd6) = (hash(size_of::<FlowKey4>()), hash(size_of::<FlowKey>()));
    let counters = sys::create_map(
        sys::MAP_TYPE_PERCPU_ARRAY,
        4,
        8,
        netprobe_ebpf::COUNTER_SLOTS,
        0,
    )
    .unwrap();
    let fill = |fd: std::os::fd::BorrowedFd<'_>| {
        for i in 0..FLOWS {
            let key = FlowKey4 {
                src_addr: i,
                dst_addr: 7,
                src_port: 1,
                dst_port: 2,
                protocol: 6,
                pad: [0; 3],
            };
            let mut v = FlowStats {
                bytes: 1500,
                first_seen_ns: 1,
                last_seen_ns: 1,
                ..FlowStats::default()
            };
            v.size_buckets[5] = 1;
            sys::update_elem(fd, &key, &v, 0).unwrap();
        }
    };
    fill(fd4.as_fd());
    let mk = |idle: Duration| {
        let data = |fd: &std::os::fd::OwnedFd| MapData::from_fd(fd.try_clone().unwrap()).unwrap();
        let maps = ebpf::Maps {
            flows4: data(&fd4),
            flows6: data(&fd6),
            counters: data(&counters),
        };
        let timeouts = reader::Timeouts {
            kernel_idle: idle,
            idle,
        };
        reader::Reader::new(
            maps,
            u64::from(CAP) * 2,
            timeouts,
            Arc::default(),
            Arc::default(),
        )
        .unwrap()
    };
    // Read only: nothing is idle long enough to expire.
    let mut r = mk(Duration::from_secs(3600));
    let mut read = vec![];
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let snap = r.cycle();
        read.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(FLOWS));
        assert_eq!(snap.flows.len(), FLOWS as usize);
    }
    // Read and expire: every flow is idle; each leaves the kernel with its final value.
    let mut expire = vec![];
    for _ in 0..3 {
        fill(fd4.as_fd());
        let mut r = mk(Duration::from_nanos(1));
        let t = std::time::Instant::now();
        let snap = r.cycle();
        expire.push(t.elapsed().as_secs_f64() * 1e6 / f64::from(FLOWS));
        assert_eq!(snap.health.kernel_evictions_total, u64::from(FLOWS));
    }
    println!("\n== Reader, {FLOWS} flows (batched lookups, cumulative table, snapshot) ==");
    println!(
        "read cycle:              {:.3} µs/flow (median of 5)",
        median(read)
    );
    println!(
        "read + expire cycle:     {:.3} µs/flow (median of 3)",
        median(expire)
    );
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
    let (mut without, mut with) = (vec![], vec![]);
    for _ in 0..6 {
        without.push(run(&lab));
        let agent = common::agent::start_in(&lab.node, Vec::new());
        common::agent::wait_attached(&agent, 4);
        with.push(run(&lab));
        agent.stop();
    }
    let _ = server.kill();
    let _ = server.wait();
    let (a, b) = (median(without.clone()), median(with.clone()));
    println!("\n== Pod-to-pod TCP throughput (iperf3, 3 s runs, alternating, medians of 6) ==");
    println!("without agent: {a:.1} Gbit/s {without:.1?}");
    println!("with agent:    {b:.1} Gbit/s {with:.1?}");
    println!("ratio:         {:.1} %", 100.0 * b / a);
}

fn main() {
    common::require_root();
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let want = |s: &str| only.as_deref().is_none_or(|o| s.contains(o));
    if want("packet") {
        per_packet();
    }
    if want("memory") {
        memory();
    }
    if want("reader") {
        reader_cost();
    }
    if want("throughput") {
        throughput();
    }
    let _ = EbpfLoader::new;
}
