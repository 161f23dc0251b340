//! Drops and ICMP errors on the node lab, equal to what the kernels say: a first SYN dropped
//! by an nftables rule (the rule's own counter) makes a one-second handshake with one
//! retransmission; UDP to a closed port is dropped for want of a socket and answered by ICMP
//! errors (the replying namespace's own counter).

use otel_netprobe::{
    config::flow_attr,
    ebpf::btf::{Btf, DropReasons},
    metrics::{conns, drops, icmp},
};

use super::common::{
    NodeLab,
    addr::PODS,
    agent::{frame_histogram, frame_sum, start_in, wait_attached, wait_frame},
    traffic,
};

/// How this kernel names a drop the agent reports as `name` from 5.17 on: the name where
/// the kernel has it, `NOT_SPECIFIED` where it has reasons but not that one, `unknown`
/// before reasons.
fn reason_here(name: &str) -> &str {
    match Btf::running().ok().and_then(|b| DropReasons::of(&b).ok()) {
        Some(r) if r.has(name) => name,
        Some(_) => "NOT_SPECIFIED",
        None => "unknown",
    }
}

/// The number after `counter packets` in `nft list` output.
fn nft_packets(listing: &str) -> u64 {
    listing
        .split("counter packets ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no counter in {listing}"))
}

#[test]
fn a_dropped_first_syn_makes_a_one_second_handshake() {
    let lab = NodeLab::new("syndrop");
    let server = &lab.pods[1];
    // The first SYN of each client port is dropped; its retransmission passes.
    for rule in [
        "add table inet np",
        "add set inet np seen { type ipv4_addr . inet_service; flags dynamic,timeout; timeout 10m; }",
        "add chain inet np in { type filter hook input priority 0; }",
        "add rule inet np in tcp dport 7060 tcp flags syn ip saddr . tcp sport @seen accept",
        "add rule inet np in tcp dport 7060 tcp flags syn add @seen { ip saddr . tcp sport } counter drop",
    ] {
        server.exec(&format!("nft '{rule}'"));
    }
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    traffic::tcp_exchanges(&lab.pods[0], server, &format!("{}:7060", PODS[1]), 3);
    let flow = [
        (flow_attr::SOURCE_ADDRESS, PODS[0]),
        (flow_attr::DESTINATION_ADDRESS, PODS[1]),
        (flow_attr::DESTINATION_PORT, "7060"),
    ];
    let reason = reason_here("NETFILTER_DROP");
    let dropped = [&flow[..], &[(drops::DROP_REASON, reason)]].concat();
    let snap = wait_frame(
        &agent,
        "3 opened, 3 first SYNs dropped",
        &drops::PACKET_DROPS,
        |s| {
            frame_sum(s, &conns::TCP_OPENED, &flow) == Some(3)
                && frame_sum(s, &drops::PACKET_DROPS, &dropped) == Some(3)
        },
    );
    let rule_counter = nft_packets(&server.exec("nft list chain inet np in"));
    assert_eq!(rule_counter, 3, "the rule's own counter");
    assert_eq!(
        frame_sum(&snap, &drops::PACKET_DROPS, &dropped),
        Some(rule_counter)
    );
    // A SYN of 20 IP + 40 TCP bytes (options), each.
    assert_eq!(
        frame_sum(&snap, &drops::PACKET_DROP_BYTES, &dropped),
        Some(3 * 60)
    );
    assert_eq!(
        frame_sum(&snap, &conns::TCP_SYN_RETRANSMITS, &flow),
        Some(3)
    );
    let h = frame_histogram(&snap, &conns::TCP_HANDSHAKE, &flow).expect("handshakes");
    // Every client waited for its retransmission: about a second (the initial RTO).
    assert_eq!(h.count, 3, "{h:?}");
    let under_half_a_second: u64 = h.counts[..13].iter().sum();
    assert_eq!(under_half_a_second, 0, "{h:?}");
    assert!((2.9..30.0).contains(&h.sum), "{h:?}");
    agent.stop();
}

#[test]
fn udp_to_a_closed_port_is_dropped_and_answered_by_icmp() {
    let lab = NodeLab::new("noport");
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    let before = traffic::snmp(&lab.pods[1], "Icmp:", "OutDestUnreachs");
    traffic::udp_send(
        &lab.pods[0],
        &format!("{}:40150", PODS[0]),
        &format!("{}:7070", PODS[1]),
        10,
        100,
    );
    let flow = [
        (flow_attr::SOURCE_ADDRESS, PODS[0]),
        (flow_attr::DESTINATION_ADDRESS, PODS[1]),
        (flow_attr::DESTINATION_PORT, "7070"),
        (flow_attr::NETWORK_TRANSPORT, "udp"),
    ];
    let reason = reason_here("NO_SOCKET");
    let dropped = [&flow[..], &[(drops::DROP_REASON, reason)]].concat();
    // The replying namespace limits its ICMP errors; its own counter says how many it sent.
    let mut sent = 0;
    let snap = wait_frame(
        &agent,
        "10 drops, the errors sent",
        &icmp::ICMP_ERRORS,
        |s| {
            sent = traffic::snmp(&lab.pods[1], "Icmp:", "OutDestUnreachs") - before;
            frame_sum(s, &drops::PACKET_DROPS, &dropped) == Some(10)
                && frame_sum(s, &icmp::ICMP_ERRORS, &flow) == Some(sent)
        },
    );
    assert!(sent > 0);
    assert_eq!(
        frame_sum(&snap, &drops::PACKET_DROP_BYTES, &dropped),
        Some(10 * 128)
    );
    // ICMP 3/3, by name.
    let unreachable = [
        &flow[..],
        &[
            (icmp::ICMP_TYPE, "destination_unreachable"),
            (icmp::ICMP_CODE, "port_unreachable"),
        ],
    ]
    .concat();
    assert_eq!(
        frame_sum(&snap, &icmp::ICMP_ERRORS, &unreachable),
        Some(sent)
    );
    agent.stop();
}
