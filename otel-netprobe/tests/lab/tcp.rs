//! Bulk TCP on the bridged and the routed path: GSO buffers are counted as the wire segments
//! the sender's kernel reports.

use super::common::{
    NodeLab,
    addr::{OUTSIDE, PODS},
    agent::{Sel, start_in, wait_attached, wait_flow},
    traffic,
};
use netprobe_ebpf::size_bucket;
use otel_netprobe::flow::Transport;

/// Bulk TCP: GSO buffers are counted as the wire segments the sender's kernel reports, and IP
/// bytes as payload plus one set of headers per segment (20 IP + 32 TCP with timestamps; the
/// SYN carries 8 more bytes of options).
fn bulk(lab: &NodeLab, agent: &otel_netprobe::agent::Agent, to_outside: bool) {
    let (to, dst) = if to_outside {
        (&lab.outside, OUTSIDE)
    } else {
        (&lab.pods[1], PODS[1])
    };
    let port = if to_outside { 5202 } else { 5201 };
    let b = traffic::tcp_bulk(&lab.pods[0], to, &format!("{dst}:{port}"), 8 << 20);
    let up = Sel {
        src: PODS[0],
        dst,
        sport: Some(b.client_port),
        dport: Some(port),
        transport: Transport::Tcp,
    };
    let flow = wait_flow(agent, up, b.client_segs);
    assert_eq!(flow.packets, b.client_segs, "client segments ({b:?})");
    assert_eq!(
        flow.bytes,
        b.client_payload + 52 * b.client_segs + 8,
        "client IP bytes ({b:?})"
    );
    // Wire packets, not buffers: nearly all are full 1500-byte segments.
    assert!(
        flow.size_buckets[size_bucket(1500)] > 5000,
        "{:?}",
        flow.size_buckets
    );
    let down = Sel {
        src: dst,
        dst: PODS[0],
        sport: Some(port),
        dport: Some(b.client_port),
        transport: Transport::Tcp,
    };
    let flow = wait_flow(agent, down, b.server_segs);
    assert_eq!(flow.packets, b.server_segs, "server segments ({b:?})");
    // The receiver's ACKs may carry SACK options, so its own kernel's byte count is the truth.
    assert_eq!(flow.bytes, b.server_octets, "server IP bytes ({b:?})");
}

#[test]
fn bulk_tcp_counts_wire_segments_not_buffers() {
    let lab = NodeLab::new("bulk");
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    bulk(&lab, &agent, false);
    bulk(&lab, &agent, true);
    agent.stop();
}
