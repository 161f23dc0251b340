//! Coverage measured by the agent itself: on every hooked interface of the node lab (the pod
//! veths at TC, the uplink at XDP), what our ingress program saw equals what the interface's
//! own counters received, packets and bytes, for UDP of several sizes and bulk TCP (GSO buffers
//! at TC). Then another XDP program replaces ours on the uplink (BPF_LINK_UPDATE on our link,
//! as a tool holding it could): frames sent after that are in the interface's counters only,
//! the ratio falls to exactly what they make it, and the alert's expression (the rate of seen
//! bytes over received bytes) is 0 over that window.

use std::{
    os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd},
    time::Duration,
};

use otel_netprobe::{
    agent::Agent,
    config::{Hook, HookOverride},
    ebpf::coverage::{InterfaceCoverage, Pair},
    frame::Snapshot,
    metrics::coverage::AGENT_INTERFACE_COVERAGE,
};

use super::common::{
    self, NodeLab,
    addr::{NODE_BR, NODE_UPLINK, OUTSIDE, PODS},
    agent::{start_in, wait_attached},
    packets, traffic,
};

const HOOKED: [&str; 4] = ["eth0", "vethpod0", "vethpod1", "vethpod2"];
const ETH_HLEN: u64 = 14;

/// What our program must have seen of what interface `name` received: the same everywhere but
/// on `eth0`, a veth with native XDP, which counts its frames' bytes after taking their
/// Ethernet header off (`veth_xdp_rcv`: `skb->len` after `eth_type_trans`), where our XDP
/// program sees the whole frame.
fn expected_seen(name: &str, kernel: Pair) -> Pair {
    match name {
        "eth0" => Pair {
            packets: kernel.packets,
            bytes: kernel.bytes + ETH_HLEN * kernel.packets,
        },
        _ => kernel,
    }
}

/// The coverage of interface `name` in `snap`.
fn coverage(snap: &Snapshot, name: &str) -> Option<InterfaceCoverage> {
    let index = snap
        .health
        .interfaces
        .iter()
        .find(|i| i.name == name)?
        .index;
    snap.health
        .coverage
        .iter()
        .find(|c| c.index == index)
        .copied()
}

/// Waits until `cond` holds of every hooked interface's coverage.
fn wait_coverage(
    agent: &Agent,
    what: &str,
    mut cond: impl FnMut(&str, &InterfaceCoverage) -> bool,
) -> std::sync::Arc<Snapshot> {
    let (snap, ok) = agent.wait_for(common::patient(Duration::from_secs(20)), |s| {
        HOOKED
            .iter()
            .all(|n| coverage(s, n).is_some_and(|c| cond(n, &c)))
    });
    let all: Vec<_> = HOOKED.iter().map(|n| (n, coverage(&snap, n))).collect();
    assert!(ok, "{what}: {all:?}");
    snap
}

#[test]
fn every_hooked_interface_is_covered_and_a_replaced_program_shows() {
    let lab = NodeLab::new("cov");
    // No router solicitations or MLD reports from the outside host: after the replacement the
    // uplink must receive only the test's frames.
    lab.outside.sysctl("net.ipv6.conf.eth0.disable_ipv6", "1");
    pin_neighbours(&lab);
    let agent = start_in(
        &lab.node,
        vec![HookOverride {
            name: "eth0".into(),
            hook: Hook::Xdp,
        }],
    );
    wait_attached(&agent, 4);
    // The baselines are taken at the first read: wait for it before sending.
    wait_coverage(&agent, "no coverage before traffic", |_, _| true);
    send_on_every_path(&lab);
    // At least what was sent into each interface (ARP and neighbour discovery add a few), and
    // exactly what the interface received: at TC the same buffers and bytes; at native XDP on
    // a veth the same frames, whose bytes the veth counts without their Ethernet header
    // (README, Coverage).
    let least = |n: &str| match n {
        "vethpod0" => 10 + 1,
        "vethpod1" => 5 + 1,
        "vethpod2" => 3,
        _ => 9,
    };
    let snap = wait_coverage(&agent, "seen == received on every interface", |n, c| {
        c.kernel.packets >= least(n) && c.seen == expected_seen(n, c.kernel)
    });
    for n in HOOKED {
        let c = coverage(&snap, n).expect("coverage");
        eprintln!(
            "coverage {n}: seen {} packets {} bytes, received {} packets {} bytes, ratio {}",
            c.seen.packets,
            c.seen.bytes,
            c.kernel.packets,
            c.kernel.bytes,
            c.ratio()
        );
        let exact = expected_seen(n, c.kernel).bytes as f64 / c.kernel.bytes as f64;
        assert!((c.ratio() - exact).abs() < 1e-12, "{n}: {c:?}");
        if n != "eth0" {
            assert!((c.ratio() - 1.0).abs() < f64::EPSILON, "{n}: {c:?}");
        }
    }
    let ratio = common::agent::frame_sum(
        &snap,
        &AGENT_INTERFACE_COVERAGE,
        &[("interface", "vethpod0")],
    );
    assert_eq!(ratio, Some(1), "the exported ratio");

    // Another XDP program takes our place on the uplink.
    let before = coverage(&snap, "eth0").expect("eth0");
    let _other = replace_our_xdp(&lab, "eth0");
    // Frames the node takes silently: UDP to a socket it holds open, sent raw (no neighbour
    // resolution on either side).
    let sink = lab
        .node
        .run(|| std::net::UdpSocket::bind((NODE_UPLINK, 7206)).expect("bind"));
    let (count, frame_len) = (20_u64, raw_udp_to_uplink(&lab, 20, 400));
    let (snap, ok) = agent.wait_for(common::patient(Duration::from_secs(20)), |s| {
        coverage(s, "eth0").is_some_and(|c| c.kernel.packets >= before.kernel.packets + count)
    });
    drop(sink);
    let after = coverage(&snap, "eth0").expect("eth0");
    assert!(ok, "the frames did not arrive: {after:?}");
    assert_eq!(
        after.seen, before.seen,
        "our program no longer runs on eth0"
    );
    // The veth counts them without their Ethernet header (XDP attached).
    let counted_len = frame_len - ETH_HLEN;
    assert_eq!(
        (after.kernel.packets, after.kernel.bytes),
        (
            before.kernel.packets + count,
            before.kernel.bytes + count * counted_len
        ),
        "the interface counted exactly the test's frames"
    );
    let expected = before.seen.bytes as f64 / (before.kernel.bytes + count * counted_len) as f64;
    assert!((after.ratio() - expected).abs() < 1e-12, "{after:?}");
    // NetprobeInterfaceCoverageLow's expression over the window since the replacement: seen
    // bytes over received bytes, against its 0.9.
    let window = (after.seen.bytes - before.seen.bytes) as f64
        / (after.kernel.bytes - before.kernel.bytes) as f64;
    assert!(window < 0.9, "the alert's ratio: {window}");
    eprintln!(
        "coverage eth0 after another XDP program replaced ours: {} of {} bytes = {:.4} \
         (expected {expected:.4}); over the window {window}",
        after.seen.bytes,
        after.kernel.bytes,
        after.ratio()
    );
    agent.stop();
}

/// UDP of several sizes on every path of the lab, and bulk TCP pod to pod.
fn send_on_every_path(lab: &NodeLab) {
    let udp = |from: &common::Netns, src: &str, to: &common::Netns, dst: &str, n, len| {
        traffic::udp(from, src, to, dst, n, len);
    };
    let (p0, p1, p2) = (&lab.pods[0], &lab.pods[1], &lab.pods[2]);
    udp(
        p0,
        &format!("{}:40201", PODS[0]),
        p1,
        &format!("{}:7201", PODS[1]),
        10,
        200,
    );
    udp(
        p1,
        &format!("{}:40202", PODS[1]),
        &lab.outside,
        &format!("{OUTSIDE}:7202"),
        5,
        1472,
    );
    udp(
        &lab.outside,
        &format!("{OUTSIDE}:40203"),
        p2,
        &format!("{}:7203", PODS[2]),
        9,
        300,
    );
    udp(
        p2,
        &format!("{}:40204", PODS[2]),
        &lab.node,
        &format!("{NODE_BR}:7204"),
        3,
        36,
    );
    traffic::tcp_bulk(p0, p1, &format!("{}:7205", PODS[1]), 1 << 20);
}

/// Loads the bench object's trivial XDP program and puts it in our XDP link on `ifname`, in
/// place of ours; returns the object, which must outlive the replacement.
fn replace_our_xdp(lab: &NodeLab, ifname: &str) -> aya::Ebpf {
    let mut other = aya::Ebpf::load(otel_netprobe::ebpf::BENCH_OBJECT).expect("bench object");
    let pass: &mut aya::programs::Xdp = other
        .program_mut("bench_xdp_pass")
        .expect("bench_xdp_pass")
        .try_into()
        .expect("an XDP program");
    pass.load().expect("load the trivial XDP program");
    let ours = xdp_link_of(lab, ifname);
    link_update(&ours, pass.fd().expect("program fd").as_fd().as_raw_fd());
    other
}

/// Both ends of the uplink hold each other's address for good (`nud permanent`), so no ARP
/// crosses it: a neighbour entry re-validated when it goes stale — at any moment, seconds apart
/// under emulation (the arm64 6.12 VM got one 28-byte ARP frame in the replacement's window) —
/// would add a frame the test did not send.
fn pin_neighbours(lab: &NodeLab) {
    let hex = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    let (node_mac, outside_mac) = (
        hex(traffic::mac(&lab.node, "eth0")),
        hex(traffic::mac(&lab.outside, "eth0")),
    );
    lab.node.ip(&format!(
        "neigh replace {OUTSIDE} lladdr {outside_mac} dev eth0 nud permanent"
    ));
    lab.outside.ip(&format!(
        "neigh replace {NODE_UPLINK} lladdr {node_mac} dev eth0 nud permanent"
    ));
}

/// Sends `count` raw UDP frames of `payload` bytes from the outside host to the node's uplink
/// address (no neighbour resolution on either side); returns the frame length.
fn raw_udp_to_uplink(lab: &NodeLab, count: usize, payload: usize) -> u64 {
    let (dst_mac, src_mac) = (
        traffic::mac(&lab.node, "eth0"),
        traffic::mac(&lab.outside, "eth0"),
    );
    let ip = packets::ipv4_between(
        [10, 99, 0, 2],
        [10, 99, 0, 1],
        17,
        0,
        0,
        &packets::udp(40206, 7206, payload),
        payload,
    );
    let mut frame = [packets::eth(&[], 0x0800), ip].concat();
    frame[..6].copy_from_slice(&dst_mac);
    frame[6..12].copy_from_slice(&src_mac);
    let frame_len = frame.len() as u64;
    traffic::raw_frames(
        &lab.outside,
        "eth0",
        std::sync::Arc::new(vec![frame; count]),
        1,
    );
    frame_len
}

/// Our XDP link on `ifname` in the node namespace: the program the interface runs (its id from
/// `ip -d link`, namespace-correct) and the one XDP link of that program.
fn xdp_link_of(lab: &NodeLab, ifname: &str) -> OwnedFd {
    let out = lab.node.ip(&format!("-j -d link show dev {ifname}"));
    let json: serde_json::Value = serde_json::from_str(&out).expect("ip -j");
    let prog = json[0]["xdp"]["prog"]["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("no XDP program on {ifname}: {out}")) as u32;
    let link = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .find(|l| {
            l.program_id() == prog
                && l.link_type().ok() == Some(aya::programs::links::LinkType::Xdp)
        })
        .unwrap_or_else(|| panic!("no XDP link of program {prog}"));
    let mut attr = [0u32; 16];
    attr[0] = link.id();
    // SAFETY: bpf(BPF_LINK_GET_FD_BY_ID) with a zeroed attribute of 64 bytes naming the link.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, 30, attr.as_mut_ptr(), 64) };
    assert!(
        fd >= 0,
        "BPF_LINK_GET_FD_BY_ID: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a new fd the kernel just gave us.
    unsafe { OwnedFd::from_raw_fd(fd as i32) }
}

/// Puts program `prog_fd` in link `link` in place of its program (BPF_LINK_UPDATE).
fn link_update(link: &OwnedFd, prog_fd: i32) {
    let mut attr = [0u32; 16];
    attr[0] = link.as_raw_fd() as u32;
    attr[1] = prog_fd as u32;
    // SAFETY: bpf(BPF_LINK_UPDATE) with link_fd and new_prog_fd, no flags.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, 29, attr.as_mut_ptr(), 64) };
    assert_eq!(
        rc,
        0,
        "BPF_LINK_UPDATE: {}",
        std::io::Error::last_os_error()
    );
}
