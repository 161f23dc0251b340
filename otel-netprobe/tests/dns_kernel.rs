//! DNS in the kernel, fed crafted packets with BPF_PROG_TEST_RUN: a query waits in
//! `DNS_QUERIES` under the client's address, port and transaction id; the response that finds
//! it (through NAT too) adds its latency to its rcode's histogram in `DNS_STATS`, under the
//! query's flow without the client port; copies, retransmissions and what only looks like DNS
//! on the port are counted as what they are.

mod common;

use common::{kernel::*, packets::*};
use netprobe_ebpf::{
    Counter,
    dns::{DnsKey, DnsQuery, DnsQueryKey, DnsStats},
};

const CLIENT: [u8; 4] = [10, 244, 0, 11];
const VIP: [u8; 4] = [10, 96, 0, 10];
const DNS_POD: [u8; 4] = [10, 244, 1, 53];

/// A DNS message: the header (id, flags, one question, `answers` answers) and `extra` bytes
/// standing for the question and answer sections.
fn dns(id: u16, flags: u16, extra: usize) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [id, flags, 1, u16::from(flags & 0x8000 != 0), 0, 0] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    m.extend(std::iter::repeat_n(0x61u8, extra));
    m
}

const QUERY: u16 = 0x0100;
const NOERROR: u16 = 0x8180;
const NXDOMAIN: u16 = 0x8183;
const SERVFAIL: u16 = 0x8182;

/// A UDP/IPv4 Ethernet frame carrying `payload`.
fn udp4(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), payload: &[u8]) -> Vec<u8> {
    let l4 = [udp(ports.0, ports.1, payload.len()), payload.to_vec()].concat();
    [eth(&[], 0x0800), ipv4_between(src, dst, 17, 0, 0, &l4, 0)].concat()
}

/// A TCP/IPv4 Ethernet frame whose payload is `message` with DNS's two-byte length prefix.
fn tcp4(src: [u8; 4], dst: [u8; 4], ports: (u16, u16), message: &[u8]) -> Vec<u8> {
    let prefix = (message.len() as u16).to_be_bytes();
    let l4 = [
        tcp_seq(ports.0, ports.1, 0x18, 1, 1),
        prefix.to_vec(),
        message.to_vec(),
    ]
    .concat();
    [eth(&[], 0x0800), ipv4_between(src, dst, 6, 0, 0, &l4, 0)].concat()
}

fn pending(k: &Kernel) -> Vec<(DnsQueryKey, DnsQuery)> {
    k.entries("DNS_QUERIES")
}

fn answered(k: &Kernel) -> Vec<(DnsKey, DnsStats)> {
    k.entries("DNS_STATS")
}

fn only_answered(k: &Kernel) -> (DnsKey, DnsStats) {
    let a = answered(k);
    assert_eq!(a.len(), 1, "one answered entry expected: {a:?}");
    a[0]
}

#[test]
fn a_udp_query_waits_and_its_response_answers_it() {
    let k = Kernel::new();
    k.xdp(&udp4(CLIENT, DNS_POD, (40000, 53), &dns(0x1234, QUERY, 20)));
    let p = pending(&k);
    assert_eq!(p.len(), 1, "{p:?}");
    let (key, q) = p[0];
    assert_eq!(key.addr, v4(CLIENT));
    assert_eq!(
        (u16::from_be(key.port), u16::from_be(key.id), key.ip_version),
        (40000, 0x1234, 4)
    );
    assert_eq!(
        (u16::from_be(q.flow.src_port), u16::from_be(q.flow.dst_port)),
        (40000, 53)
    );
    assert!(q.query_ns > 0);
    assert!(answered(&k).is_empty());

    k.xdp(&udp4(
        DNS_POD,
        CLIENT,
        (53, 40000),
        &dns(0x1234, NXDOMAIN, 60),
    ));
    assert!(pending(&k).is_empty(), "the answered query left the table");
    let (key, stats) = only_answered(&k);
    assert_eq!(key.rcode, 3);
    assert_eq!(key.flow.src_addr, v4(CLIENT));
    assert_eq!(key.flow.dst_addr, v4(DNS_POD));
    assert_eq!(
        (
            u16::from_be(key.flow.src_port),
            u16::from_be(key.flow.dst_port)
        ),
        (0, 53),
        "no client port: the series never show it"
    );
    assert_eq!((key.flow.protocol, key.flow.ip_version), (17, 4));
    assert_eq!(stats.responses(), 1);
    assert!(stats.sum_ns > 0);
    // Both packets still count in their flows.
    assert_eq!(k.flows().len(), 2);
}

#[test]
fn the_response_through_nat_answers_the_query_to_the_service() {
    let k = Kernel::new();
    // Sent to the Service's ClusterIP, answered by the pod behind it.
    k.xdp(&udp4(CLIENT, VIP, (40001, 53), &dns(7, QUERY, 20)));
    k.xdp(&udp4(DNS_POD, CLIENT, (53, 40001), &dns(7, NOERROR, 80)));
    let (key, stats) = only_answered(&k);
    assert_eq!(key.flow.dst_addr, v4(VIP), "named as the client asked");
    assert_eq!((key.rcode, stats.responses()), (0, 1));
}

#[test]
fn copies_and_retransmissions_count_once() {
    let k = Kernel::new();
    let query = udp4(CLIENT, DNS_POD, (40002, 53), &dns(9, QUERY, 20));
    k.xdp(&query);
    let first = pending(&k)[0].1.query_ns;
    k.xdp(&query);
    let p = pending(&k);
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].1.query_ns, first, "latency runs from the first copy");
    let response = udp4(DNS_POD, CLIENT, (53, 40002), &dns(9, SERVFAIL, 20));
    k.xdp(&response);
    k.xdp(&response);
    let (key, stats) = only_answered(&k);
    assert_eq!((key.rcode, stats.responses()), (2, 1));
    assert_eq!(k.counter(Counter::DnsResponsesUnmatched), 1);
}

#[test]
fn a_response_to_an_unseen_query_is_unmatched() {
    let k = Kernel::new();
    // Another transaction id, then another client port.
    k.xdp(&udp4(CLIENT, DNS_POD, (40003, 53), &dns(1, QUERY, 20)));
    k.xdp(&udp4(DNS_POD, CLIENT, (53, 40003), &dns(2, NOERROR, 20)));
    k.xdp(&udp4(DNS_POD, CLIENT, (53, 40004), &dns(1, NOERROR, 20)));
    assert!(answered(&k).is_empty());
    assert_eq!(pending(&k).len(), 1);
    assert_eq!(k.counter(Counter::DnsResponsesUnmatched), 2);
}

#[test]
fn tcp_dns_after_the_length_prefix_at_tc() {
    let k = Kernel::new();
    let query = tcp4(CLIENT, DNS_POD, (40005, 53), &dns(0xBEEF, QUERY, 20));
    k.tc("netprobe_tc_ingress", &query, 0, 1, 0);
    assert_eq!(pending(&k).len(), 1);
    // A large answer (EDNS0: over 512 bytes).
    let response = tcp4(DNS_POD, CLIENT, (53, 40005), &dns(0xBEEF, NOERROR, 1200));
    k.tc("netprobe_tc_ingress", &response, 0, 1, 0);
    let (key, stats) = only_answered(&k);
    assert_eq!((key.flow.protocol, key.rcode, stats.responses()), (6, 0, 1));
}

#[test]
fn a_large_udp_answer_at_tc_and_ipv6() {
    let k = Kernel::new();
    let (c6, s6) = (
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x53],
    );
    let udp6 = |src, dst, ports: (u16, u16), payload: &[u8]| {
        let l4 = [udp(ports.0, ports.1, payload.len()), payload.to_vec()].concat();
        [eth(&[], 0x86DD), ipv6_between(src, dst, 17, &l4, 0)].concat()
    };
    k.tc(
        "netprobe_tc_ingress",
        &udp6(c6, s6, (40006, 53), &dns(5, QUERY, 30)),
        0,
        1,
        0,
    );
    k.tc(
        "netprobe_tc_ingress",
        &udp6(s6, c6, (53, 40006), &dns(5, NOERROR, 1400)),
        0,
        1,
        0,
    );
    let (key, stats) = only_answered(&k);
    assert_eq!(
        (key.flow.ip_version, key.rcode, stats.responses()),
        (6, 0, 1)
    );
    assert_eq!(key.flow.dst_addr, v6(s6));
}

#[test]
fn only_dns_on_the_port_is_dns() {
    let k = Kernel::new();
    // Two questions; a "query" from the DNS port; a response to it; a segment that does not
    // start a message; UDP to another port.
    let mut two = dns(3, QUERY, 20);
    two[5] = 2;
    k.xdp(&udp4(CLIENT, DNS_POD, (40007, 53), &two));
    k.xdp(&udp4(DNS_POD, CLIENT, (53, 40007), &dns(3, QUERY, 20)));
    k.xdp(&udp4(CLIENT, DNS_POD, (40007, 53), &dns(3, NOERROR, 20)));
    let l4 = [tcp_seq(40008, 53, 0x18, 1, 1), vec![0, 3, 1, 2, 3, 4, 5, 6]].concat();
    k.xdp(
        &[
            eth(&[], 0x0800),
            ipv4_between(CLIENT, DNS_POD, 6, 0, 0, &l4, 0),
        ]
        .concat(),
    );
    k.xdp(&udp4(CLIENT, DNS_POD, (40009, 5353), &dns(3, QUERY, 20)));
    assert!(pending(&k).is_empty());
    assert!(answered(&k).is_empty());
    assert_eq!(k.counter(Counter::DnsResponsesUnmatched), 0);
    let packets: u64 = k.flows().iter().map(|(_, s)| s.packets()).sum();
    assert_eq!(packets, 5, "every packet still counts in its flow");
}
