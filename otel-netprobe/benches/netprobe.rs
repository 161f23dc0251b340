//! `make bench`: every figure is a ratio or a difference against a baseline measured in the
//! same run. Needs root (BPF_PROG_TEST_RUN, namespace lab).
//!
//! 1. Per-packet cost of our XDP and TC programs (BPF_PROG_TEST_RUN), minus a trivial
//!    XDP_PASS / TC program, for four packet shapes; and the per-CPU flow-table variant.
//!    Under traffic (`traffic`): the kernel's BPF stats of our programs and a trivial one on
//!    the same hooks while the lab carries 100k flows.
//! 2. Kernel memory of the flow table: shared (ours) vs per-CPU, at 8/64/256 CPUs.
//! 3. Reader: µs per flow to read 100k flows, and to read and expire them.
//! 4. Throughput: pod-to-pod TCP (iperf3) with and without the agent attached.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "netprobe/traffic.rs"]
mod traffic;

use std::{os::fd::AsFd, sync::Arc, time::Duration};

use aya::{
    Ebpf, EbpfLoader,
    maps::MapData,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use common::packets::{eth, ipv4, ipv6, tcp, udp};
use netprobe_ebpf::{DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY, FlowKey, FlowKey4, FlowStats};
use otel_netprobe::ebpf::{self, BENCH_OBJECT, reader, sys};

/// Counts the bytes this thread holds on the heap, so the Kubernetes index's memory is
/// measured exactly (an RSS difference of a few MiB is mostly allocator noise).
struct CountingAlloc;

thread_local! {
    static LIVE_HEAP: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only adds bookkeeping.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let _ = LIVE_HEAP.try_with(|c| c.set(c.get() + l.size() as isize));
        // SAFETY: same layout contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        let _ = LIVE_HEAP.try_with(|c| c.set(c.get() - l.size() as isize));
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let _ = LIVE_HEAP.try_with(|c| c.set(c.get() + new as isize - l.size() as isize));
        // SAFETY: as for `realloc` itself.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn live_heap() -> isize {
    LIVE_HEAP.with(std::cell::Cell::get)
}

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

/// Baselines and "where the time goes" variants, from the bench object.
const BENCH_XDP: [&str; 5] = [
    "bench_xdp_pass",
    "bench_xdp_percpu",
    "bench_xdp_parse",
    "bench_xdp_lookup",
    "bench_xdp_plainadd",
];

fn load_bench() -> Ebpf {
    let mut b = Ebpf::load(BENCH_OBJECT).expect("bench object");
    for name in BENCH_XDP {
        let p: &mut Xdp = b.program_mut(name).unwrap().try_into().unwrap();
        p.load().unwrap();
    }
    let p: &mut SchedClassifier = b.program_mut("bench_tc_pass").unwrap().try_into().unwrap();
    p.load().unwrap();
    b
}

fn xdp<'a>(e: &'a Ebpf, name: &str) -> &'a Xdp {
    e.program(name).unwrap().try_into().unwrap()
}

fn tc<'a>(e: &'a Ebpf, name: &str) -> &'a SchedClassifier {
    e.program(name).unwrap().try_into().unwrap()
}

fn per_packet() {
    let ours =
        ebpf::load(DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY).expect("production object");
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

/// Writes 100k IPv4 flows whose counters depend on `round` into the flow table `fd`.
fn fill_flows(fd: std::os::fd::BorrowedFd<'_>, round: u64) {
    for i in 0..READER_FLOWS {
        let key = FlowKey4 {
            src_addr: i,
            dst_addr: 7,
            src_port: 1,
            dst_port: 2,
            protocol: 6,
            pad: [0; 3],
        };
        let mut v = FlowStats {
            bytes: 1500 * round,
            first_seen_ns: reader::coarse_now_ns(),
            ..FlowStats::default()
        };
        v.size_buckets[5] = round;
        sys::update_elem(fd, &key, &v, 0).unwrap();
    }
}

const READER_FLOWS: u32 = 100_000;

fn reader_cost() {
    const FLOWS: u32 = READER_FLOWS;
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
    let timed = |r: &mut reader::Reader| {
        let t = std::time::Instant::now();
        let snap = r.cycle();
        (t.elapsed().as_secs_f64() * 1e6 / f64::from(FLOWS), snap)
    };
    let hour = Duration::from_secs(3600);
    // Steady state: the same 100k flows, none with new packets since the last read.
    fill_flows(fd4.as_fd(), 1);
    let mut r = mk(hour);
    let mut quiet = vec![];
    for _ in 0..6 {
        let (us, snap) = timed(&mut r);
        quiet.push(us);
        assert_eq!(snap.flows.len(), FLOWS as usize);
    }
    quiet.remove(0); // the first cycle creates every record
    // Worst case: every flow had packets since the last read.
    let mut busy = vec![];
    for round in 2..7 {
        fill_flows(fd4.as_fd(), round);
        busy.push(timed(&mut r).0);
    }
    // Memory of the steady state, before the expiry rounds below make and drop readers.
    let snap = r.cycle();
    let series = snap.series();
    let body = otel_netprobe::export::otlp::encode::Encoder::new(&[], std::time::SystemTime::now())
        .encode(&snap);
    let rss = rss_bytes();
    drop((snap, series, body));
    let rss_line = format!(
        "resident memory with {FLOWS} live flows (reader, snapshot, series, one encoded export): {:.1} MiB",
        rss as f64 / f64::from(1 << 20)
    );
    // Read and expire: 100k known flows all went idle; each leaves the kernel with its final
    // value (one lookup-and-delete each) and is forgotten.
    let mut expire = vec![];
    for round in 0..3 {
        fill_flows(fd4.as_fd(), 10 + round);
        let mut r = mk(hour);
        r.cycle();
        r.set_timeouts(reader::Timeouts {
            kernel_idle: Duration::from_nanos(1),
            idle: Duration::from_nanos(1),
        });
        let (us, snap) = timed(&mut r);
        expire.push(us);
        assert_eq!(snap.health.kernel_evictions_total, u64::from(FLOWS));
        assert!(snap.flows.is_empty());
    }
    println!("\n== Reader, {FLOWS} flows (batched lookups, cumulative table, snapshot) ==");
    println!("{rss_line}");
    println!(
        "read cycle, no flow changed:    {:.3} µs/flow (median of 5)",
        median(quiet)
    );
    println!(
        "read cycle, every flow changed: {:.3} µs/flow (median of 5)",
        median(busy)
    );
    println!(
        "read + expire every flow:       {:.3} µs/flow (median of 3)",
        median(expire)
    );
}

fn export_cost() {
    use otel_netprobe::{
        config::MetricsConfig,
        export::otlp::encode::Encoder,
        flow::{FlowView, Snapshot},
    };
    println!("\n== OTLP export cycle (series built, request encoded to protobuf), median of 5 ==");
    for n in [1_000u32, 10_000, 100_000] {
        let flows: Vec<FlowView> = (0..n)
            .map(|i| {
                let key = FlowKey {
                    src_addr: [i.to_be(), 0, 0, 0],
                    dst_addr: [7, 0, 0, 0],
                    src_port: 40000u16.to_be(),
                    dst_port: 443u16.to_be(),
                    protocol: 6,
                    ip_version: 4,
                    pad: [0; 2],
                };
                let mut b = [0; netprobe_ebpf::SIZE_BUCKETS];
                b[5] = u64::from(i);
                FlowView::new(&key, u64::from(i) * 1500, b, 0, (0, 0))
            })
            .collect();
        let budgets = Arc::new(
            MetricsConfig {
                max_series: n as usize + 1,
                ..MetricsConfig::default()
            }
            .budgets(false),
        );
        let encoder = Encoder::new(
            &[("service.name".into(), "otel-netprobe".into())],
            std::time::SystemTime::now(),
        );
        let mut ms = vec![];
        let mut size = 0;
        for _ in 0..5 {
            let snap = Snapshot {
                flows: flows.clone(),
                budgets: Arc::clone(&budgets),
                ..Snapshot::empty()
            };
            let t = std::time::Instant::now();
            let body = encoder.encode(&snap);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
            size = body.len();
        }
        let m = median(ms);
        println!(
            "{n:>7} series: {m:>8.2} ms/cycle, {:.2} µs/series, {:.1} MiB request",
            m * 1e3 / f64::from(n),
            size as f64 / f64::from(1 << 20)
        );
    }
}

/// A store of `n` pods: ten per Deployment (via its ReplicaSet), 20 namespaces, 50 nodes; one
/// service per Deployment with an EndpointSlice of its ten pods.
fn k8s_store(n: u32) -> otel_netprobe::k8s::index::IndexStore {
    use otel_netprobe::k8s::index::{
        Controlled, IndexStore, OwnerRef, Pod, Record, Service, Slice,
    };
    use std::net::{IpAddr, Ipv4Addr};
    let now = std::time::Instant::now();
    let mut store = IndexStore::new(Duration::from_secs(30));
    let ip = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i));
    let owner = |kind: &str, name: String| {
        Some(OwnerRef {
            kind: kind.into(),
            name: name.into(),
        })
    };
    // Ten pods per Deployment (via its ReplicaSet), 20 namespaces, 50 nodes; one service
    // per Deployment with an EndpointSlice of its ten pods.
    for i in 0..n {
        let ns = format!("namespace-{}", (i / 10) % 20);
        let rs = format!("app-{}-7d9f8c6b5", i / 10);
        let pod = Pod {
            namespace: ns.as_str().into(),
            name: format!("{rs}-{i:05x}").into(),
            node: format!("node-{}", i % 50).into(),
            workload: owner("ReplicaSet", rs.clone()).unwrap(),
            owner: owner("ReplicaSet", rs),
            ips: vec![ip(i)],
            host_network: false,
            host_ports: Vec::new(),
        };
        let uid = format!("{i:08x}-0000-4000-8000-000000000000");
        store.upsert(
            &uid,
            Record::Pod {
                pod,
                terminal: false,
            },
            now,
        );
    }
    for i in 0..n / 10 {
        let ns = format!("namespace-{}", i % 20);
        let rs = Controlled {
            namespace: ns.as_str().into(),
            name: format!("app-{i}-7d9f8c6b5").into(),
            owner: owner("Deployment", format!("app-{i}")),
        };
        store.upsert(&format!("rs-{i}"), Record::ReplicaSet(rs), now);
        let svc = Service {
            namespace: ns.as_str().into(),
            name: format!("svc-{i}").into(),
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i))],
            ports: vec![80],
        };
        store.upsert(&format!("svc-{i}"), Record::Service(svc), now);
        let slice = Slice {
            namespace: ns.as_str().into(),
            service: format!("svc-{i}").into(),
            addresses: (0..10).map(|j| ip(i * 10 + j)).collect(),
            ports: vec![8080],
        };
        store.upsert(&format!("slice-{i}"), Record::Slice(slice), now);
    }
    store
}

fn k8s_index() {
    use otel_netprobe::k8s::naming::{Naming, NamingRules};
    use std::net::{IpAddr, Ipv4Addr};
    println!("\n== Kubernetes IP index (store + snapshot), per pod ==");
    // The first round warms up (code, allocator arenas) and is not reported: the figures are
    // the index's own, not one-time costs of the process.
    for (n, report) in [
        (1_000u32, false),
        (1_000, true),
        (10_000, true),
        (100_000, true),
    ] {
        let before = rss_bytes();
        let heap_before = live_heap();
        let mut store = k8s_store(n);
        let ip = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i));
        let t = std::time::Instant::now();
        let index = store.build();
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        let per_pod = (rss_bytes().saturating_sub(before)) as f64 / f64::from(n);
        let heap_per_pod = (live_heap() - heap_before) as f64 / f64::from(n);
        let naming = Naming {
            index: Arc::new(index),
            rules: Arc::new(NamingRules::standalone()),
        };
        if !report {
            continue;
        }
        let time_lookups = |with_endpoint: bool| {
            let lookups = 2_000_000u32;
            let t = std::time::Instant::now();
            let mut found = 0u32;
            let mut x = 12_345u32;
            for _ in 0..lookups {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let a = ip(x % n);
                if naming.peer(a).found()
                    && (!with_endpoint || naming.index.endpoint(a, 8080).is_some())
                {
                    found += 1;
                }
            }
            assert_eq!(found, lookups);
            t.elapsed().as_secs_f64() * 1e9 / f64::from(lookups)
        };
        let (addr_ns, both_ns) = (time_lookups(false), time_lookups(true));
        // One lookup = what naming a flow's server end costs: the address, then its endpoint.
        println!(
            "{n:>7} pods: {heap_per_pod:>4.0} B heap/pod ({per_pod:>4.0} B RSS/pod), lookup \
             {addr_ns:>4.1} ns (address), {both_ns:>4.1} ns (address + endpoint), \
             index build {build_ms:.1} ms"
        );
        if n == 10_000 && report {
            decorate_cost(&naming, n);
        }
        drop((store, naming));
    }
}

/// What naming costs an export cycle: 100k pod-to-pod flows aggregated into series with the
/// workload-level attributes, against the standalone (address) attributes.
fn decorate_cost(naming: &otel_netprobe::k8s::naming::Naming, pods: u32) {
    use otel_netprobe::flow::{Budget, FlowAttr, FlowView};
    let flows: Vec<FlowView> = (0..100_000u32)
        .map(|i| {
            let (a, b) = (i % pods, (i * 7 + 3) % pods);
            let key = FlowKey {
                src_addr: [(0x0af4_0000 + a).to_be(), 0, 0, 0],
                dst_addr: [(0x0af4_0000 + b).to_be(), 0, 0, 0],
                src_port: (30_000 + (i % 30_000) as u16).to_be(),
                dst_port: 8080u16.to_be(),
                protocol: 6,
                ip_version: 4,
                pad: [0; 2],
            };
            let mut sizes = [0; netprobe_ebpf::SIZE_BUCKETS];
            sizes[5] = 10;
            FlowView::new(&key, 15_000, sizes, 0, (0, 0))
        })
        .collect();
    let time = |attrs: &[&str]| {
        let mut b = Budget::new(FlowAttr::parse_all(attrs.iter().copied()), 1_000_000);
        let mut best = f64::MAX;
        let mut series = 0;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            series = b.build(&flows, naming).series.len();
            best = best.min(t.elapsed().as_secs_f64());
        }
        (best * 1e9 / flows.len() as f64, series)
    };
    let (k8s, k8s_series) = time(&FlowAttr::CLUSTER);
    let (plain, plain_series) = time(&FlowAttr::STANDALONE);
    println!(
        "  naming 100k flows into series: {k8s:.0} ns/flow with workload attributes \
         ({k8s_series} series) vs {plain:.0} ns/flow with addresses ({plain_series} series): \
         {:.2}x",
        k8s / plain
    );
}

/// Resident memory of this process, bytes (VmRSS).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("VmRSS:")
                    .map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok())
            })
        })
        .flatten()
        .unwrap_or(0)
        * 1024
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
    if want("traffic") {
        traffic::under_traffic();
    }
    if want("memory") {
        memory();
    }
    if want("reader") {
        reader_cost();
    }
    if want("export") {
        export_cost();
    }
    if want("k8s") {
        k8s_index();
    }
    if want("throughput") {
        throughput();
    }
    let _ = EbpfLoader::new;
}
