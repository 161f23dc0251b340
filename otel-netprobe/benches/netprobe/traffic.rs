//! Per-packet cost under traffic: the kernel's own accounting of our programs
//! (`run_time_ns / run_cnt`, with BPF stats enabled) while the lab carries 100k distinct
//! flows, next to a trivial program's on the same hook over the same packets. Unlike
//! BPF_PROG_TEST_RUN's one cache-hot key, this includes a big table and its cache misses.

use std::sync::Arc;

use aya::programs::{ProgramInfo, Xdp, XdpMode, loaded_programs};

use crate::common::{
    NodeLab,
    agent::{start_with, wait_attached},
    packets, traffic,
};
use otel_netprobe::config::{Hook, HookOverride};

/// Distinct flows the traffic carries: 2 source addresses x 50,000 source ports.
pub(crate) const FLOWS: usize = 100_000;
/// Rounds over every flow; the first fills the table, the rest are measured.
pub(crate) const ROUNDS: usize = 4;
/// Packets of a flow in a row: 1, every packet a different flow of the 100k (each lookup and
/// add misses the cache: the worst case); 8, a flow's packets in bursts, as TCP sends them.
pub(crate) const BURSTS: [usize; 2] = [1, 8];

/// Run time and count of the program `id`, as the kernel accounts them.
pub(crate) fn stats(id: u32) -> (u64, u64) {
    let info: ProgramInfo = loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == id)
        .expect("program still loaded");
    (info.run_time().as_nanos() as u64, info.run_count())
}

/// The frames of every flow, once: UDP from outside the lab's addresses to a blackholed
/// destination (the node drops them after the hooks), `ip_len` IP bytes each.
pub(crate) fn frames(dst_mac: [u8; 6], src_mac: [u8; 6]) -> Arc<Vec<Vec<u8>>> {
    let all = (0..FLOWS)
        .map(|i| {
            let src = [10, 201, 0, 1 + (i % 2) as u8];
            let sport = 10_000 + (i / 2) as u16;
            let udp = packets::udp(sport, 9, 100);
            let ip = packets::ipv4_between(src, [10, 200, 0, 1], 17, 0, 0, &udp, 100);
            let mut f = [packets::eth(&[], 0x0800), ip].concat();
            f[..6].copy_from_slice(&dst_mac);
            f[6..12].copy_from_slice(&src_mac);
            f
        })
        .collect();
    Arc::new(all)
}

/// Sends every round (each flow's frame `burst` times in a row) and returns the measured
/// rounds' ns/packet of each program id.
fn measure(send: &dyn Fn(usize), burst: usize, ids: &[u32]) -> Vec<f64> {
    send(1);
    let before: Vec<(u64, u64)> = ids.iter().map(|id| stats(*id)).collect();
    for _ in 1..ROUNDS {
        send(burst);
    }
    ids.iter()
        .zip(before)
        .map(|(id, (t0, n0))| {
            let (t1, n1) = stats(*id);
            (t1 - t0) as f64 / (n1 - n0).max(1) as f64
        })
        .collect()
}

/// The id of the XDP program on `ifname` of the node (from `ip -d link`).
fn xdp_id(lab: &NodeLab, ifname: &str) -> u32 {
    let out = lab.node.ip(&format!("-d link show dev {ifname}"));
    out.split("prog/xdp id ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no XDP program on {ifname}: {out}"))
}

/// The TC comparison alone (`cargo bench --bench netprobe -- netobserv`).
pub fn tc_only() {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF stats");
    let lab = NodeLab::new("stats");
    lab.node.ip("route add blackhole 10.200.0.0/16");
    crate::traffic_tc::against_netobserv(&lab);
}

/// Prints ours against trivial at XDP on the uplink (the agent running), and ours against
/// NetObserv's flow program and trivial at TC ingress on a pod veth ([`crate::traffic_tc`]).
pub fn under_traffic() {
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling BPF stats");
    let lab = NodeLab::new("stats");
    lab.node.ip("route add blackhole 10.200.0.0/16");
    let xdp_uplink = vec![HookOverride {
        name: "eth0".into(),
        hook: Hook::Xdp,
    }];
    // The production table sizes (the test default is smaller).
    let agent = start_with(&lab.node, xdp_uplink, |c| {
        c.flows.capacity = netprobe_ebpf::DEFAULT_FLOW4_CAPACITY;
        c.flows.capacity_ipv6 = netprobe_ebpf::DEFAULT_FLOW6_CAPACITY;
    });
    wait_attached(&agent, 4);
    // XDP: frames from outside on the uplink. One XDP program per interface, so the trivial
    // one takes the hook after ours, over the same rounds of the same frames.
    let from_out = frames(
        traffic::mac(&lab.node, "eth0"),
        traffic::mac(&lab.outside, "eth0"),
    );
    let outside = &lab.outside;
    let send_out = |burst| traffic::raw_frames(outside, "eth0", Arc::clone(&from_out), burst);
    let ours_id = xdp_id(&lab, "eth0");
    let ours_xdp: Vec<f64> = BURSTS
        .iter()
        .map(|b| measure(&send_out, *b, &[ours_id])[0])
        .collect();
    let entries = agent.snapshot().health.flow_table_entries;
    agent.stop();
    let trivial_xdp = lab.node.run(|| {
        let mut b = crate::load_bench();
        let p: &mut Xdp = b.program_mut("bench_xdp_pass").unwrap().try_into().unwrap();
        p.attach("eth0", XdpMode::Driver)
            .expect("attach trivial XDP");
        b
    });
    let pass_id = xdp_id(&lab, "eth0");
    let pass_xdp: Vec<f64> = BURSTS
        .iter()
        .map(|b| measure(&send_out, *b, &[pass_id])[0])
        .collect();
    drop(trivial_xdp);
    crate::traffic_tc::against_netobserv(&lab);
    println!(
        "\n== Per-packet cost under traffic (BPF stats: run_time_ns / run_cnt; {FLOWS} flows in turn, {} measured rounds; {entries} flows in the kernel table) ==",
        ROUNDS - 1
    );
    println!(
        "{:<34} {:>18} {:>8} {:>9} {:>8}",
        "hook", "packets per flow", "ours", "trivial", "Δ"
    );
    for (i, burst) in BURSTS.iter().enumerate() {
        let x = (ours_xdp[i], pass_xdp[i]);
        println!(
            "{:<34} {burst:>18} {:>8.0} {:>9.0} {:>+8.0}",
            "XDP, uplink (ours, then trivial)",
            x.0,
            x.1,
            x.0 - x.1
        );
    }
}
