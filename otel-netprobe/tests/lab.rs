//! The node lab: exact counts on every path of a simulated node, with the real agent attached
//! in the node namespace (pod→pod, pod→node, pod→outside, outside→pod, node→outside,
//! node→pod; UDP, bulk TCP, ICMP, IPv6, VLAN-tagged frames), the TC attach method the kernel
//! offers, and the binary's clean exit on SIGTERM; and the programs under the fuzz corpus
//! and random frames (`lab/fuzzed.rs`).
//!
//! The same binary is the kernel matrix: the `kernel_*` tests boot Debian's 5.10, 6.1 and 6.12
//! kernels in QEMU and run every other test of this file there (`common::vm`).

#[path = "lab/binary.rs"]
mod binary;
mod common;
#[path = "lab/conns.rs"]
mod conns;
#[path = "lab/coverage.rs"]
mod coverage;
#[path = "lab/dns.rs"]
mod dns;
#[path = "lab/drops.rs"]
mod drops;
#[path = "lab/fuzzed.rs"]
mod fuzzed;
#[path = "lab/restart.rs"]
mod restart;
#[path = "lab/restart_carry.rs"]
mod restart_carry;
#[path = "lab/tcp.rs"]
mod tcp;

use std::time::Duration;

use common::{
    NodeLab,
    addr::{NODE_BR, NODE_UPLINK, OUTSIDE, PODS},
    agent::{Sel, start_in, wait_attached, wait_flow},
    packets, traffic,
};
use netprobe_ebpf::{SIZE_BUCKETS, size_bucket};
use otel_netprobe::{
    config::{Hook, HookOverride},
    flow::Transport,
};

/// One UDP path: `count` datagrams of `payload` bytes, and the exact counts expected.
fn udp_path(agent: &otel_netprobe::agent::Agent, lab: &NodeLab, case: (&str, usize, usize)) {
    let (path, count, payload) = case;
    let (from, src, to, dst, sport, dport) = match path {
        "pod-pod" => (&lab.pods[0], PODS[0], &lab.pods[1], PODS[1], 40101, 7001),
        "pod-node" => (&lab.pods[0], PODS[0], &lab.node, NODE_BR, 40102, 7002),
        "pod-outside" => (&lab.pods[1], PODS[1], &lab.outside, OUTSIDE, 40103, 7003),
        "outside-pod" => (&lab.outside, OUTSIDE, &lab.pods[2], PODS[2], 40104, 7004),
        "node-outside" => (&lab.node, NODE_UPLINK, &lab.outside, OUTSIDE, 40105, 7005),
        "node-pod" => (&lab.node, NODE_BR, &lab.pods[2], PODS[2], 40106, 7006),
        other => panic!("unknown path {other}"),
    };
    traffic::udp(
        from,
        &format!("{src}:{sport}"),
        to,
        &format!("{dst}:{dport}"),
        count,
        payload,
    );
    let sel = Sel {
        src,
        dst,
        sport: Some(sport),
        dport: Some(dport),
        transport: Transport::Udp,
    };
    let flow = wait_flow(agent, sel, count as u64);
    let ip_len = payload as u64 + 28;
    assert_eq!(flow.packets, count as u64, "{path}: packets");
    assert_eq!(flow.bytes, count as u64 * ip_len, "{path}: IP bytes");
    let mut buckets = [0; SIZE_BUCKETS];
    buckets[size_bucket(ip_len as u32)] = count as u64;
    assert_eq!(flow.size_buckets, buckets, "{path}: size buckets");
}

#[test]
fn every_path_is_counted_exactly_once_at_tc() {
    let lab = NodeLab::new("tc");
    let agent = start_in(&lab.node, Vec::new());
    let snap = wait_attached(&agent, 4);
    assert!(
        snap.health
            .interfaces
            .iter()
            .all(|i| i.hook == "tc" && i.egress),
        "{:?}",
        snap.health.interfaces
    );
    // Sizes on the bucket edges: 64 and 1500 IP bytes are the last of their buckets.
    for case in [
        ("pod-pod", 10, 200),
        ("pod-node", 7, 36),
        ("pod-outside", 5, 1472),
        ("outside-pod", 9, 1000),
        ("node-outside", 4, 37),
        ("node-pod", 3, 500),
    ] {
        udp_path(&agent, &lab, case);
    }
    agent.stop();
}

#[test]
fn the_xdp_entry_point_counts_the_uplink() {
    let lab = NodeLab::new("xdp");
    let force_xdp = vec![HookOverride {
        name: "eth0".into(),
        hook: Hook::Xdp,
    }];
    let agent = start_in(&lab.node, force_xdp);
    let snap = wait_attached(&agent, 4);
    let eth0 = snap
        .health
        .interfaces
        .iter()
        .find(|i| i.name == "eth0")
        .expect("eth0");
    assert_eq!(eth0.hook, "xdp", "native XDP on the uplink veth");
    for case in [
        ("outside-pod", 11, 300),
        ("pod-outside", 6, 64),
        ("node-outside", 2, 1200),
    ] {
        udp_path(&agent, &lab, case);
    }
    agent.stop();
}

#[test]
fn ipv6_udp_pod_to_outside() {
    use common::addr::{OUTSIDE6, PODS6};
    let lab = NodeLab::new("v6");
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    let (src, dst) = (
        format!("[{}]:40110", PODS6[0]),
        format!("[{OUTSIDE6}]:7010"),
    );
    traffic::udp(&lab.pods[0], &src, &lab.outside, &dst, 8, 952);
    let sel = Sel {
        src: PODS6[0],
        dst: OUTSIDE6,
        sport: Some(40110),
        dport: Some(7010),
        transport: Transport::Udp,
    };
    let flow = wait_flow(&agent, sel, 8);
    // 952 bytes of payload + 8 UDP + 40 IPv6 = 1000 IP bytes.
    assert_eq!((flow.packets, flow.bytes), (8, 8000));
    assert_eq!(flow.size_buckets[size_bucket(1000)], 8);
    agent.stop();
}

#[test]
fn counts_survive_the_kernel_entry_and_idle_flows_are_forgotten() {
    let lab = NodeLab::new("evict");
    let agent = common::agent::start_with(&lab.node, Vec::new(), |c| {
        c.flows.kernel_idle_timeout = Duration::from_secs(1);
        c.flows.idle_timeout = Duration::from_secs(3);
    });
    wait_attached(&agent, 4);
    let (src, dst) = (format!("{}:40120", PODS[0]), format!("{}:7020", PODS[1]));
    let sel = Sel {
        src: PODS[0],
        dst: PODS[1],
        sport: Some(40120),
        dport: Some(7020),
        transport: Transport::Udp,
    };
    traffic::udp(&lab.pods[0], &src, &lab.pods[1], &dst, 5, 100);
    wait_flow(&agent, sel, 5);
    // Idle for a second: the kernel entry is moved out, the counts stay.
    let (snap, ok) = agent.wait_for(common::patient(Duration::from_secs(10)), |s| {
        s.health.kernel_evictions_total >= 1 && s.health.flow_table_entries == 0
    });
    assert!(ok, "no kernel eviction: {:?}", snap.health);
    let now = common::agent::current_flows(&agent);
    assert_eq!(common::agent::flows(&now, sel)[0].packets, 5);
    // The flow comes back: a new kernel entry adds to the same cumulative counts.
    traffic::udp(&lab.pods[0], &src, &lab.pods[1], &dst, 4, 100);
    let flow = wait_flow(&agent, sel, 9);
    assert_eq!((flow.packets, flow.bytes), (9, 9 * 128));
    // Idle past idle_timeout: forgotten, its series gone.
    let (_, ok) =
        common::agent::wait_flows(&agent, common::patient(Duration::from_secs(20)), |f| {
            common::agent::flows(f, sel).is_empty()
        });
    let snap = agent.snapshot();
    assert!(
        ok && snap.health.flows_expired_total >= 1,
        "{:?}",
        snap.health
    );
    agent.stop();
}

#[test]
fn icmp_echo_both_ways() {
    let lab = NodeLab::new("icmp");
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    lab.pods[0].exec(&format!("ping -q -c 4 -i 0.05 -s 100 {}", PODS[1]));
    for (src, dst) in [(PODS[0], PODS[1]), (PODS[1], PODS[0])] {
        let sel = Sel {
            src,
            dst,
            sport: None,
            dport: None,
            transport: Transport::Icmp,
        };
        let flow = wait_flow(&agent, sel, 4);
        assert_eq!((flow.packets, flow.bytes), (4, 4 * 128), "{src} → {dst}");
    }
    agent.stop();
}

/// VLAN-tagged frames (one tag, and two: QinQ) from the outside host, on the uplink at XDP
/// (which sees the tags) and at TC (which sees the frame after the kernel moved the outer tag
/// into metadata): each frame counted once, in its IP flow, with its IP length. Sent raw, so the
/// test needs no VLAN support in the kernel (the host's has none); the node drops them after
/// the hooks, having no VLAN device.
#[test]
fn vlan_tagged_frames_are_counted_once() {
    for hook in [Hook::Xdp, Hook::Tc] {
        let lab = NodeLab::new("vlan");
        let agent = start_in(
            &lab.node,
            vec![HookOverride {
                name: "eth0".into(),
                hook,
            }],
        );
        wait_attached(&agent, 4);
        let (dst_mac, src_mac) = (
            traffic::mac(&lab.node, "eth0"),
            traffic::mac(&lab.outside, "eth0"),
        );
        // The lab's addresses: outside → node uplink.
        let frame = |tags: &[u16], sport: u16, payload: usize| {
            let udp = packets::udp(sport, 7030, payload);
            let ip = packets::ipv4_between([10, 99, 0, 2], [10, 99, 0, 1], 17, 0, 0, &udp, payload);
            let mut f = [packets::eth(tags, 0x0800), ip].concat();
            f[..6].copy_from_slice(&dst_mac);
            f[6..12].copy_from_slice(&src_mac);
            f
        };
        let mut frames = vec![frame(&[0x8100], 40130, 100); 6];
        frames.extend(vec![frame(&[0x88a8, 0x8100], 40131, 300); 4]);
        traffic::raw_frames(&lab.outside, "eth0", std::sync::Arc::new(frames), 1);
        for (sport, count, ip_len) in [(40130, 6, 128), (40131, 4, 328)] {
            let sel = Sel {
                src: OUTSIDE,
                dst: NODE_UPLINK,
                sport: Some(sport),
                dport: Some(7030),
                transport: Transport::Udp,
            };
            let flow = wait_flow(&agent, sel, count);
            assert_eq!(
                (flow.packets, flow.bytes),
                (count, count * ip_len),
                "{hook:?}, source port {sport}"
            );
            assert_eq!(flow.size_buckets[size_bucket(ip_len as u32)], count);
        }
        agent.stop();
    }
}

/// Every kernel of the matrix runs all of the tests above (and in `tcp` and `binary`).
mod kernel_matrix {
    use std::time::Duration;

    /// Generous: a boot is seconds, the suite under emulation a few minutes.
    const VM_TIMEOUT: Duration = Duration::from_secs(1500);

    #[test]
    fn kernel_5_10_runs_the_lab_exactly() {
        super::common::vm::run_lab("5.10", VM_TIMEOUT);
    }

    #[test]
    fn kernel_6_1_runs_the_lab_exactly() {
        super::common::vm::run_lab("6.1", VM_TIMEOUT);
    }

    #[test]
    fn kernel_6_12_runs_the_lab_exactly() {
        super::common::vm::run_lab("6.12", VM_TIMEOUT);
    }

    /// aarch64 emulated on x86_64: the lab took 20+ minutes on a loaded 2-CPU machine.
    const ARM64_VM_TIMEOUT: Duration = Duration::from_secs(2400);

    /// The aarch64 build (scripts/cross-arm64.sh, which make test-arm64 runs first) on Debian's
    /// arm64 6.12 under qemu-system-aarch64. Outside make test for now: a fresh clone's cold
    /// cross-build (~25 min on this machine kind) and 20+ minutes of emulation would take
    /// make test past its 45-minute budget.
    #[test]
    #[ignore = "outside make test's time budget: make test-arm64 runs it"]
    fn kernel_arm64_6_12_runs_the_lab_exactly() {
        super::common::vm::run_lab("arm64-6.12", ARM64_VM_TIMEOUT);
    }

    /// arm64 5.10: outside make test's 45-minute budget (another 20 minutes of emulation);
    /// `make test-arm64` runs both arm64 lines.
    #[test]
    #[ignore = "outside make test's time budget: make test-arm64 runs it"]
    fn kernel_arm64_5_10_runs_the_lab_exactly() {
        super::common::vm::run_lab("arm64-5.10", ARM64_VM_TIMEOUT);
    }
}

/// Every program of the production object, at the production table sizes, passes this
/// kernel's verifier (the drop program where the kernel has BTF, as every kernel of the matrix
/// does); prints how many instructions the verifier walked, past libtest's capture, so the
/// kernel matrix reports them per kernel.
#[test]
fn every_program_passes_this_kernels_verifier() {
    use otel_netprobe::ebpf::{self, drops};
    use std::io::Write as _;
    common::require_root();
    let setup =
        drops::DropSetup::probe().expect("the kernel's BTF (every kernel of the matrix has it)");
    let sizes = ebpf::Sizes::flows(
        netprobe_ebpf::DEFAULT_FLOW4_CAPACITY,
        netprobe_ebpf::DEFAULT_FLOW6_CAPACITY,
    );
    let mut object = ebpf::load_with(&sizes, Some(&setup.layout)).expect("load");
    assert!(
        drops::start(&mut object, &setup),
        "the drop program loads and attaches"
    );
    // Loaded programs, with the verifier's count where the kernel reports it (5.16 on).
    let mut verified: Vec<(String, Option<u32>)> = object
        .programs()
        .filter_map(|(name, p)| {
            let info = p.info().ok()?;
            Some((name.to_owned(), info.verified_instruction_count()))
        })
        .collect();
    verified.sort();
    let names: Vec<&str> = verified.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["netprobe_xdp", "netprobe_tc_ingress", "netprobe_tc_egress"] {
        assert!(names.contains(&want), "{want} not loaded: {names:?}");
    }
    assert!(
        names.iter().any(|n| n.starts_with("netprobe_drop")),
        "{names:?}"
    );
    let line: Vec<String> = if verified.iter().all(|(_, c)| c.is_none()) {
        vec![format!(
            "not reported before 5.16; loaded {}",
            names.join(" ")
        )]
    } else {
        verified
            .iter()
            .map(|(n, c)| c.map_or_else(|| format!("{n} ?"), |c| format!("{n} {c}")))
            .collect()
    };
    let _ = writeln!(
        std::io::stderr(),
        "verified instructions: {}",
        line.join(", ")
    );
}
