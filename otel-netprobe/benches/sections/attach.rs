//! `attach`: how soon interfaces created under a running agent are attached (driven by
//! netlink) and visible in its snapshots. Absolute times; a snapshot comes every read cycle
//! (200 ms here), so each figure includes up to one cycle.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use crate::common::{Netns, agent::start_in, sh, unique};

const VETHS: usize = 50;

/// 50 veths created in one batch, then one more.
pub fn churn() {
    let p = unique("bchurn");
    let node = Netns::new(&format!("{p}-node"));
    let pods = Netns::new(&format!("{p}-pods"));
    let agent = start_in(&node, Vec::new());
    let (_, ok) = agent.wait_for(Duration::from_secs(10), |s| s.health.read_cycles_total > 0);
    assert!(ok, "the agent reads");
    let started = Instant::now();
    let mut batch = String::new();
    for i in 0..VETHS {
        let _ = writeln!(
            batch,
            "link add vc{i} type veth peer name vp{i} netns {}\nlink set vc{i} up",
            pods.name
        );
    }
    sh(&format!("printf '{batch}' | ip -n {} -batch -", node.name));
    let created = started.elapsed();
    let (snap, ok) = agent.wait_for(Duration::from_secs(30), |s| {
        s.health.interfaces.len() == VETHS
    });
    assert!(ok, "attached {} of {VETHS}", snap.health.interfaces.len());
    let all = started.elapsed();
    let one = Instant::now();
    node.ip(&format!(
        "link add vcx type veth peer name vpx netns {}",
        pods.name
    ));
    let (_, ok) = agent.wait_for(Duration::from_secs(10), |s| {
        s.health.interfaces.iter().any(|i| i.name == "vcx")
    });
    assert!(ok, "vcx not attached");
    let one = one.elapsed();
    agent.stop();
    println!(
        "\n== Interfaces created under a running agent; absolute, each including up to one 200 ms read cycle =="
    );
    println!(
        "{VETHS} veths created in one `ip -batch` ({created:.2?}): all attached and in a snapshot {all:.2?} after it began"
    );
    println!("one more veth: attached and in a snapshot {one:.2?} after `ip link add`");
}
