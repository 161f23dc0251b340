//! How the programs sit in the kernel: the TC attach method the kernel offers (TCX from 6.6, a
//! clsact qdisc before), checked in the kernel rather than taken from the agent's word; and the
//! binary users run, counting exactly and leaving nothing attached after SIGTERM.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::common::{
    Netns, NodeLab,
    addr::PODS,
    agent::{start_in, wait_attached},
    backends::http_get,
    kernel_version, patient, traffic, wait_until,
};

pub(super) use super::common::pinned::{VIRTUAL, attached_tc, has_xdp};

#[test]
fn tc_programs_are_attached_the_way_the_kernel_offers() {
    let tcx = kernel_version() >= (6, 6);
    let lab = NodeLab::new("attach");
    let agent = start_in(&lab.node, Vec::new());
    let snap = wait_attached(&agent, 4);
    let expected = if tcx { "tcx" } else { "clsact" };
    for i in &snap.health.interfaces {
        assert_eq!(i.tc_attach, expected, "the agent's report for {}", i.name);
    }
    for ifname in VIRTUAL {
        // In the kernel: exactly our ingress and egress programs, by the kernel's mechanism.
        let (by_tcx, by_clsact) = attached_tc(&lab.node, ifname);
        let (mut got, none) = if tcx {
            (by_tcx, by_clsact)
        } else {
            (by_clsact, by_tcx)
        };
        got.sort();
        // netprobe_tc_egress and netprobe_tc_ingress, as the kernel names them.
        assert_eq!(
            got,
            ["netprobe_tc_egr", "netprobe_tc_ing"],
            "{ifname}: attached by {expected}"
        );
        assert!(
            none.is_empty(),
            "{ifname}: also attached otherwise: {none:?}"
        );
    }
    agent.stop();
    // Polled: a process another test of this binary forks at that moment holds copies of our
    // link descriptors until it execs, and the kernel detaches when the last copy is closed.
    for ifname in VIRTUAL {
        let mut left = (Vec::new(), Vec::new());
        let gone = wait_until(Duration::from_secs(10), || {
            left = attached_tc(&lab.node, ifname);
            left.0.is_empty() && left.1.is_empty()
        });
        assert!(gone, "{ifname} after stop: {left:?}");
    }
}

/// The agent binary, as users run it: the host's build, or the one the kernel-matrix VM
/// carries (`NETPROBE_AGENT_BIN`).
pub(super) fn agent_bin() -> String {
    std::env::var("NETPROBE_AGENT_BIN")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_otel-netprobe").to_owned())
}

/// A child process killed if the test ends (or fails) before it exits.
pub(super) struct Running(pub(super) Child);

/// Sends `signal` to the agent and waits (with a deadline) for its exit.
pub(super) fn signal(child: &mut Running, signal: i32) -> std::process::ExitStatus {
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.0.id() as i32, signal) }, 0);
    let deadline = Instant::now() + patient(Duration::from_secs(20));
    loop {
        if let Some(s) = child.0.try_wait().expect("wait") {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the agent did not exit on signal {signal}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A GET from inside `ns` (the agent's server listens on the namespace's loopback).
pub(super) fn get_in(ns: &Netns, path: &str) -> Option<(u16, String)> {
    let url = format!("http://127.0.0.1:9464{path}");
    ns.run(move || http_get(&url).ok())
}

#[test]
fn the_binary_counts_exactly_and_sigterm_detaches_every_program() {
    let lab = NodeLab::new("sigterm");
    let dir = std::env::temp_dir().join(format!("netprobe-sigterm-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        "flows:\n  poll_interval: 200ms\nhttp:\n  listen: 127.0.0.1:9464\nk8s:\n  mode: standalone\n",
    )
    .unwrap();
    // Inside the lab's node namespace only, XDP on its uplink, TC on its veths.
    let mut child = Running(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &lab.node.name,
                &agent_bin(),
                "run",
                "--hook",
                "eth0=xdp",
            ])
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the agent binary"),
    );
    let attached = wait_until(Duration::from_secs(30), || {
        get_in(&lab.node, "/metrics").is_some_and(|(code, body)| {
            code == 200 && body.contains("netprobe_agent_interfaces{hook=\"tc\"} 3")
        })
    });
    assert!(
        attached,
        "the agent did not attach: {:?}",
        get_in(&lab.node, "/metrics")
    );
    assert!(has_xdp(&lab.node, "eth0"));
    traffic::udp(
        &lab.pods[0],
        &format!("{}:40140", PODS[0]),
        &lab.pods[1],
        &format!("{}:7040", PODS[1]),
        10,
        200,
    );
    let series = format!(
        "netprobe_flow_packets_total{{source_address=\"{}\",destination_address=\"{}\",\
         destination_port=\"7040\",network_transport=\"udp\",network_type=\"ipv4\",netprobe_origin=\"outside\"}}",
        PODS[0], PODS[1]
    );
    let mut last = String::new();
    let counted = wait_until(Duration::from_secs(20), || {
        last = get_in(&lab.node, "/metrics")
            .map(|(_, b)| b)
            .unwrap_or_default();
        last.lines().any(|l| l == format!("{series} 10"))
    });
    assert!(counted, "{series} never showed 10:\n{last}");
    // SIGTERM: a clean exit, and nothing of ours left in the kernel's hooks.
    let status = signal(&mut child, libc::SIGTERM);
    let mut stderr = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(status.success(), "exit {status}: {stderr}");
    assert!(!has_xdp(&lab.node, "eth0"), "XDP left on eth0");
    for ifname in VIRTUAL {
        let (a, b) = attached_tc(&lab.node, ifname);
        assert!(
            a.is_empty() && b.is_empty(),
            "{ifname} after SIGTERM: {a:?} {b:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
