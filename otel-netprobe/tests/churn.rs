//! Interface churn: 50 pod-like veths created while the agent runs are attached (driven by
//! netlink events), their traffic is counted exactly, and deleting them drops their state.
//! How fast they are attached is measured by `make bench` (`attach`).

mod common;

use std::time::Duration;

use common::{
    Netns,
    agent::{Sel, flows, start_in, wait_flows},
    sh, traffic, unique,
};
use otel_netprobe::{flow::Transport, telemetry::Count};

const VETHS: usize = 50;

#[test]
fn fifty_veths_come_and_go() {
    common::require_root();
    let p = unique("churn");
    let node = Netns::new(&format!("{p}-node"));
    let pods = Netns::new(&format!("{p}-pods"));
    let agent = start_in(&node, Vec::new());
    let (snap, ok) = agent.wait_for(Duration::from_secs(10), |s| s.health.read_cycles_total > 0);
    assert!(
        ok && snap.health.interfaces.is_empty(),
        "{:?}",
        snap.health.interfaces
    );

    let batch = (0..VETHS)
        .map(|i| {
            format!(
                "link add vc{i} type veth peer name vp{i} netns {}\naddr add 10.200.{i}.1/30 dev vc{i}\nlink set vc{i} up\n",
                pods.name
            )
        })
        .collect::<Vec<_>>()
        .concat();
    sh(&format!("printf '{batch}' | ip -n {} -batch -", node.name));
    let batch = (0..VETHS)
        .map(|i| format!("addr add 10.200.{i}.2/30 dev vp{i}\nlink set vp{i} up\n"))
        .collect::<Vec<_>>()
        .concat();
    sh(&format!("printf '{batch}' | ip -n {} -batch -", pods.name));
    let (snap, ok) = agent.wait_for(Duration::from_secs(30), |s| {
        s.health.interfaces.len() == VETHS
    });
    assert!(ok, "attached {} of {VETHS}", snap.health.interfaces.len());
    node.ip(&format!(
        "link add vcx type veth peer name vpx netns {}",
        pods.name
    ));
    let (_, ok) = agent.wait_for(Duration::from_secs(10), |s| {
        s.health.interfaces.iter().any(|i| i.name == "vcx")
    });
    assert!(ok, "vcx not attached");
    node.ip("link del vcx");
    assert!(snap.health.interfaces.iter().all(|i| i.hook == "tc"));

    for i in 0..VETHS {
        let (src, dst) = (format!("10.200.{i}.2"), format!("10.200.{i}.1"));
        traffic::udp(
            &pods,
            &format!("{src}:41000"),
            &node,
            &format!("{dst}:7100"),
            3,
            100,
        );
    }
    // The flows of veth i: exactly one, with exactly 3 datagrams of 128 IP bytes once counted.
    let veth_flows = |all: &[otel_netprobe::flow::FlowView], i: usize| {
        let (src, dst) = (format!("10.200.{i}.2"), format!("10.200.{i}.1"));
        let sel = Sel {
            src: &src,
            dst: &dst,
            sport: Some(41000),
            dport: Some(7100),
            transport: Transport::Udp,
        };
        flows(all, sel)
    };
    let (all, ok) = wait_flows(&agent, Duration::from_secs(20), |all| {
        (0..VETHS).all(|i| veth_flows(all, i).iter().map(|f| f.packets).sum::<u64>() >= 3)
    });
    assert!(ok, "not every veth's traffic was counted");
    for i in 0..VETHS {
        let f = veth_flows(&all, i);
        assert_eq!(f.len(), 1, "vc{i}");
        assert_eq!((f[0].packets, f[0].bytes), (3, 3 * 128), "vc{i}");
    }

    let batch = (0..VETHS)
        .map(|i| format!("link del vc{i}\n"))
        .collect::<Vec<_>>()
        .concat();
    sh(&format!("printf '{batch}' | ip -n {} -batch -", node.name));
    let (snap, ok) = agent.wait_for(Duration::from_secs(30), |s| s.health.interfaces.is_empty());
    assert!(
        ok,
        "still attached after deletion: {:?}",
        snap.health.interfaces
    );
    assert_eq!(agent.telemetry().get(Count::AttachErrors), 0);
    agent.stop();
}
