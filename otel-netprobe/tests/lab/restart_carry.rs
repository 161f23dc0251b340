//! Restart continuity of what user space alone holds: a flow's counts that left the kernel
//! table (it went idle and the reader moved it out) live in the agent's carry store, a pinned
//! map of its own, so a SIGKILL loses none of them; the next agent continues the series with
//! the same start time, and a "go away" stop removes the store with everything else.

use std::{path::Path, time::Duration};

use aya::maps::{HashMap, Map, MapData};
use netprobe_ebpf::{FLOWS4_MAP, FlowKey, FlowKey4, FlowStats};
use otel_netprobe::{ebpf::pin::carry::CARRY_MAP, flow::Totals};

use super::{
    binary::{has_xdp, signal},
    common::wait_until,
    restart::{OtlpCapture, PAYLOAD, Setup},
};

/// The packets of the flow to `port` in the kernel flow table pinned in `dir` (`None`: no
/// entry).
fn in_kernel(dir: &Path, port: u16) -> Option<u64> {
    let data = MapData::from_pin(dir.join(FLOWS4_MAP)).expect("pinned FLOWS4");
    let map: HashMap<_, FlowKey4, FlowStats> =
        HashMap::try_from(Map::HashMap(data)).expect("FLOWS4 as a hash map");
    map.iter()
        .flatten()
        .find(|(k, _)| k.dst_port == port.to_be() && k.protocol == 17)
        .map(|(_, s)| s.packets())
}

/// The packets and bytes the carry store pinned in `dir` holds for the flow to `port`.
fn carried(dir: &Path, port: u16) -> Option<(u64, u64)> {
    let data = MapData::from_pin(dir.join(CARRY_MAP)).ok()?;
    let map: HashMap<_, FlowKey, Totals> = HashMap::try_from(Map::HashMap(data)).ok()?;
    map.iter()
        .flatten()
        .find(|(k, _)| k.dst_port == port.to_be() && k.protocol == 17)
        .map(|(_, t)| (t.buckets.iter().sum(), t.bytes))
}

#[test]
fn restart_continues_a_flow_whose_counts_left_the_kernel_table() {
    let s = Setup::new("carry");
    let port = 7053;
    let otlp = OtlpCapture::start(&s.lab.node, port);
    // Idle flows leave the kernel table after 1 s and are remembered for 10 minutes.
    let flows = "  kernel_idle_timeout: 1s\n  idle_timeout: 10m\n";
    let config = s.config_with("config.yaml", 65_536, Some(otlp.port), flows);
    let mut agent = s.start(&config, "agent.log");
    let dirs = s.bpffs.netns_dirs();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let dir = &dirs[0];
    let ip_len = (PAYLOAD + 28) as u64;
    s.send(port, 300);
    s.wait_counted(port, 300);
    let started = otlp.wait_for(300);
    // The reader moves the idle flow out of the kernel: its 300 packets now live in user space
    // only, and in the carry store.
    let mut seen = (None, None);
    let moved = wait_until(Duration::from_secs(20), || {
        seen = (in_kernel(dir, port), carried(dir, port));
        seen == (None, Some((300, 300 * ip_len)))
    });
    assert!(moved, "kernel entry, carried: {seen:?}");
    s.wait_counted(port, 300);
    signal(&mut agent, libc::SIGKILL);
    assert!(has_xdp(&s.lab.node, "eth0"), "XDP detached by a SIGKILL");
    // While no agent runs, a new kernel entry counts 200 more.
    s.send(port, 200);
    assert_eq!(
        in_kernel(dir, port),
        Some(200),
        "the kernel's entry, no agent"
    );
    let mut agent = s.start(&config, "agent2.log");
    s.wait_counted(port, 500);
    s.send(port, 100);
    s.wait_counted(port, 600);
    assert_eq!(
        otlp.wait_for(600),
        started,
        "the start time of the continued series"
    );
    let log = s.log("agent2.log");
    assert!(log.contains("adopting the pinned maps"), "{log}");
    assert!(
        log.contains("continuing the flows the previous agent carried"),
        "{log}"
    );
    // The flow leaves the kernel again: the store now carries all 600.
    let mut seen = (None, None);
    let moved = wait_until(Duration::from_secs(20), || {
        seen = (in_kernel(dir, port), carried(dir, port));
        seen == (None, Some((600, 600 * ip_len)))
    });
    assert!(moved, "kernel entry, carried: {seen:?}");
    eprintln!(
        "carry: 300 (moved out of the kernel, carried) + 200 (no agent) + 100 = 600 packets, \
         {} bytes; start time {started} kept",
        600 * ip_len
    );
    // SIGTERM in standalone mode: go away, the carry store with everything else.
    assert!(
        signal(&mut agent, libc::SIGTERM).success(),
        "{}",
        s.log("agent2.log")
    );
    assert!(!dir.join(CARRY_MAP).exists(), "the carry store left pinned");
    assert!(
        s.bpffs.netns_dirs().is_empty(),
        "left pinned: {:?}",
        s.bpffs.netns_dirs()
    );
}
