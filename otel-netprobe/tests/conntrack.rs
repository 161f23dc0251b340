//! TCP connections and ICMP errors in the kernel, fed crafted packets with BPF_PROG_TEST_RUN:
//! handshakes matched by the client's port and ISN (through NAT), retransmitted SYNs counted
//! once per hook, refusals, closes by FIN from each side and by RST; ICMP errors counted under
//! the flow of the packet they quote.

mod common;

use common::{kernel::*, packets::*};
use netprobe_ebpf::{Conn, ConnKey, IcmpErrorKey, conn_event};

const CLIENT: [u8; 4] = [10, 244, 0, 11];
const VIP: [u8; 4] = [10, 96, 0, 10];
const BACKEND: [u8; 4] = [10, 244, 1, 20];
const NODE: [u8; 4] = [10, 99, 0, 1];
const REMOTE: [u8; 4] = [10, 99, 0, 2];

const SYN: u8 = 0x02;
const SYN_ACK: u8 = 0x12;
const FIN_ACK: u8 = 0x11;
const RST: u8 = 0x04;
const RST_ACK: u8 = 0x14;
const ACK: u8 = 0x10;

/// An Ethernet frame of one TCP segment.
fn seg(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    let l4 = tcp_seq(ports.0, ports.1, flags, seq, ack);
    [eth(&[], 0x0800), ipv4_between(src, dst, 6, 0, 0, &l4, 0)].concat()
}

fn conns(k: &Kernel) -> Vec<(ConnKey, Conn)> {
    k.entries("CONNS")
}

fn only_conn(k: &Kernel) -> (ConnKey, Conn) {
    let c = conns(k);
    assert_eq!(c.len(), 1, "one connection expected: {c:?}");
    c[0]
}

fn events(c: &Conn) -> [u8; 5] {
    [
        c.events[conn_event::ANSWERED],
        c.events[conn_event::REFUSED],
        c.events[conn_event::FIN_CLIENT],
        c.events[conn_event::FIN_SERVER],
        c.events[conn_event::RESET],
    ]
}

#[test]
fn a_handshake_then_a_fin_from_each_side() {
    let k = Kernel::new();
    k.xdp(&seg(CLIENT, REMOTE, (40000, 443), SYN, 1000, 0));
    let (key, c) = only_conn(&k);
    assert_eq!(
        (key.isn, u16::from_be(key.client_port), key.ip_version),
        (1000, 40000, 4)
    );
    assert_eq!(
        u16::from_be(c.flow.dst_port),
        443,
        "the SYN's flow, client to server"
    );
    assert_eq!(c.flow.src_addr[0].to_ne_bytes(), CLIENT);
    assert!(c.syn_ns > 0);
    assert_eq!((c.handshake_ns, events(&c)), (0, [0; 5]));
    k.xdp(&seg(REMOTE, CLIENT, (443, 40000), SYN_ACK, 7000, 1001));
    k.xdp(&seg(CLIENT, REMOTE, (40000, 443), ACK, 1001, 7001));
    k.xdp(&seg(CLIENT, REMOTE, (40000, 443), FIN_ACK, 1001, 7001));
    let c = only_conn(&k).1;
    assert!(c.handshake_ns > 0);
    assert_eq!(events(&c), [1, 0, 1, 0, 0]);
    k.xdp(&seg(REMOTE, CLIENT, (443, 40000), FIN_ACK, 7001, 1002));
    let c = only_conn(&k).1;
    assert_eq!(events(&c), [1, 0, 1, 1, 0]);
    assert_eq!(c.syn_retransmits, 0);
}

#[test]
fn a_syn_ack_for_another_isn_answers_nothing() {
    let k = Kernel::new();
    k.xdp(&seg(CLIENT, REMOTE, (40001, 443), SYN, 5000, 0));
    k.xdp(&seg(REMOTE, CLIENT, (443, 40001), SYN_ACK, 1, 4242));
    assert_eq!(events(&only_conn(&k).1), [0; 5]);
}

#[test]
fn a_retransmitted_syn_is_counted_once_per_hook() {
    let k = Kernel::new();
    let syn = seg(CLIENT, REMOTE, (40002, 443), SYN, 2000, 0);
    for _ in 0..3 {
        k.xdp(&syn);
    }
    assert_eq!(only_conn(&k).1.syn_retransmits, 2);
    // The first SYN passing another interface's hook is the same SYN.
    let ns = common::Netns::new(&common::unique("hook"));
    ns.ip("link add npa type veth peer name npb");
    let index: u32 = ns
        .ip("-o link show dev npa")
        .split(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let tc_on_other = {
        let syn = syn.clone();
        ns.run(move || {
            let k = Kernel::new();
            k.xdp(&syn);
            k.tc_on("netprobe_tc_ingress", &syn, index, index, 1, 0);
            let c = only_conn(&k).1;
            (c.syn_retransmits, c.ifindex)
        })
    };
    assert_eq!(tc_on_other.0, 0, "seen first at ifindex {}", tc_on_other.1);
}

#[test]
fn a_refused_syn_is_not_opened() {
    let k = Kernel::new();
    k.xdp(&seg(CLIENT, REMOTE, (40003, 81), SYN, 3000, 0));
    k.xdp(&seg(REMOTE, CLIENT, (81, 40003), RST_ACK, 0, 3001));
    let c = only_conn(&k).1;
    assert_eq!(events(&c), [0, 1, 0, 0, 0]);
    assert_eq!(c.handshake_ns, 0);
}

#[test]
fn a_reset_after_the_handshake_closes() {
    let k = Kernel::new();
    k.xdp(&seg(CLIENT, REMOTE, (40004, 443), SYN, 4000, 0));
    k.xdp(&seg(REMOTE, CLIENT, (443, 40004), SYN_ACK, 9000, 4001));
    k.xdp(&seg(REMOTE, CLIENT, (443, 40004), RST, 9001, 0));
    assert_eq!(events(&only_conn(&k).1), [1, 0, 0, 0, 1]);
}

#[test]
fn nat_changes_addresses_not_the_match() {
    // DNAT: the client connects to a service address; the backend answers from its own.
    let k = Kernel::new();
    k.xdp(&seg(CLIENT, VIP, (40005, 443), SYN, 5000, 0));
    k.xdp(&seg(BACKEND, CLIENT, (8443, 40005), SYN_ACK, 1, 5001));
    k.xdp(&seg(BACKEND, CLIENT, (8443, 40005), FIN_ACK, 2, 5001));
    let c = only_conn(&k).1;
    assert_eq!(
        events(&c),
        [1, 0, 0, 1, 0],
        "answered, and the server's FIN found"
    );
    assert_eq!(
        c.flow.dst_addr[0].to_ne_bytes(),
        VIP,
        "named by what the client asked for"
    );
    // SNAT: the pod's SYN leaves as the node's; the answer comes to the node's address.
    let k = Kernel::new();
    k.xdp(&seg(CLIENT, REMOTE, (40006, 443), SYN, 6000, 0));
    k.xdp(&seg(REMOTE, NODE, (443, 40006), SYN_ACK, 1, 6001));
    k.xdp(&seg(REMOTE, NODE, (443, 40006), FIN_ACK, 2, 6001));
    k.xdp(&seg(CLIENT, REMOTE, (40006, 443), FIN_ACK, 6001, 3));
    assert_eq!(events(&only_conn(&k).1), [1, 0, 1, 1, 0]);
}

#[test]
fn icmp_errors_are_counted_under_the_flow_they_answer() {
    let k = Kernel::new();
    // A UDP datagram from this host to a closed port, and the port-unreachable it drew.
    let datagram = ipv4_between(CLIENT, REMOTE, 17, 0, 0, &udp(5353, 9999, 20), 20);
    let error = icmp_error(3, 3, &datagram[..28]);
    k.xdp(
        &[
            eth(&[], 0x0800),
            ipv4_between(REMOTE, CLIENT, 1, 0, 0, &error, 0),
        ]
        .concat(),
    );
    // IPv6: packet too big, quoting a TCP segment.
    let segment = ipv6(6, &tcp_seq(40007, 443, ACK, 1, 1), 1200);
    let too_big = icmp_error(2, 0, &segment[..48]);
    k.xdp(&[eth(&[], 0x86dd), ipv6_between(DST6, SRC6, 58, &too_big, 0)].concat());
    // A quote cut short: the error counts in its own flow only.
    let short = icmp_error(11, 0, &datagram[..12]);
    k.xdp(
        &[
            eth(&[], 0x0800),
            ipv4_between(REMOTE, CLIENT, 1, 0, 0, &short, 0),
        ]
        .concat(),
    );
    let mut errors: Vec<(IcmpErrorKey, u64)> = k.entries("ICMP_ERRORS");
    errors.sort_by_key(|(e, _)| e.icmp_version);
    assert_eq!(errors.len(), 2, "{errors:?}");
    let (v4, n) = errors[0];
    assert_eq!(
        (v4.icmp_type, v4.icmp_code, v4.icmp_version, n),
        (3, 3, 4, 1)
    );
    assert_eq!(v4.flow.src_addr[0].to_ne_bytes(), CLIENT);
    assert_eq!(v4.flow.dst_addr[0].to_ne_bytes(), REMOTE);
    assert_eq!(
        (
            u16::from_be(v4.flow.src_port),
            u16::from_be(v4.flow.dst_port)
        ),
        (5353, 9999)
    );
    assert_eq!(v4.flow.protocol, 17);
    let (v6e, n) = errors[1];
    assert_eq!(
        (v6e.icmp_type, v6e.icmp_code, v6e.icmp_version, n),
        (2, 0, 6, 1)
    );
    assert_eq!(v6e.flow, key6(6, 40007, 443));
    // All three errors are packets of their own ICMP flows too.
    let icmp: u64 = k
        .flows()
        .iter()
        .filter(|(f, _)| f.protocol == 1 || f.protocol == 58)
        .map(|(_, s)| s.packets())
        .sum();
    assert_eq!(icmp, 3);
}
