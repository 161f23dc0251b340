//! DNS on the node lab, against the real resolver: unbound in a pod answers a client pod over
//! UDP and TCP, IPv4 and IPv6 — NoError (a 1.9 KB EDNS0 answer among them), NXDomain, Refused,
//! ServFail (its forwarder fails), nothing (a zone it drops), and an answer that takes 1.2 s
//! (its forwarder is slow) — and the agent's responses per code equal what the clients
//! received, unanswered queries and latencies included, at TC and at XDP.

use std::{net::SocketAddr, time::Duration};

use otel_netprobe::{
    config::{Hook, HookOverride, flow_attr},
    metrics::{dns, flows::FLOW_PACKETS},
};

use super::common::{
    NodeLab,
    addr::{OUTSIDE, PODS, PODS6},
    agent::{frame_histogram, frame_sum, start_in, wait_attached, wait_frame},
    dns::{self as wire, A, SLOW_DELAY, TXT, Unbound, Upstream},
    patient,
};

/// What the client pods send: (client pod, server, transport, name, type, EDNS0, copies).
const QUERIES: &[(usize, bool, &str, &str, u16, bool, usize)] = &[
    (0, false, "udp", "a.ok.lab", A, false, 5),
    (0, false, "udp", "big.ok.lab", TXT, true, 1),
    (0, false, "udp", "x.nx.lab", A, false, 3),
    (0, false, "udp", "x.refuse.lab", A, false, 2),
    (0, false, "udp", "x.fail.lab", A, false, 1),
    (0, false, "udp", "x.deny.lab", A, false, 2),
    (0, false, "tcp", "a.ok.lab", A, false, 2),
    (0, false, "tcp", "x.nx.lab", A, false, 1),
    (0, true, "udp", "a.ok.lab", A, false, 2),
    (0, true, "udp", "x.nx.lab", A, false, 1),
    (2, false, "udp", "s.slow.lab", A, false, 1),
];

/// A client's answers of one kind: (client pod, IPv6, transport, rcode name).
type Kind = (usize, bool, &'static str, String);

/// Sends every query once per copy from its pod; returns the rcodes the clients received per
/// (pod, IPv6, transport, rcode name) and the biggest answer's size.
fn ask(lab: &NodeLab) -> (Vec<(Kind, u64)>, usize) {
    let mut got: Vec<(Kind, u64)> = Vec::new();
    let mut biggest = 0;
    let mut id = 0x4000;
    for &(pod, v6, transport, name, qtype, edns, copies) in QUERIES {
        let server: SocketAddr = if v6 {
            format!("[{}]:53", PODS6[1])
        } else {
            format!("{}:53", PODS[1])
        }
        .parse()
        .unwrap();
        for _ in 0..copies {
            id += 1;
            let q = wire::query(id, name, qtype, edns);
            // A query to the dropping zone is not waited for: nothing will come.
            let wait = if name.ends_with("deny.lab") {
                Duration::ZERO
            } else {
                patient(Duration::from_secs(5))
            };
            let answer = lab.pods[pod].run(move || match transport {
                "tcp" => Some(wire::tcp(server, &q)),
                _ => wire::udp(server, &q, wait),
            });
            let Some(answer) = answer else {
                assert!(wait.is_zero(), "{name}: no answer");
                continue;
            };
            let (got_id, rcode) = wire::header(&answer);
            assert_eq!(got_id, id, "{name}");
            biggest = biggest.max(answer.len());
            let key = (pod, v6, transport, dns::rcode_name(rcode));
            match got.iter_mut().find(|(k, _)| *k == key) {
                Some((_, n)) => *n += 1,
                None => got.push((key, 1)),
            }
        }
    }
    (got, biggest)
}

fn dns_is_counted_exactly(tag: &str, hook: Hook) {
    let lab = NodeLab::new(tag);
    let _upstream = Upstream::start(&lab.outside, OUTSIDE);
    // Ready before the agent starts: its readiness probe is not the test's traffic.
    let unbound = Unbound::start(&lab.pods[1], &[PODS[1], PODS6[1]], OUTSIDE, &lab.pods[0]);
    let all = vec![HookOverride {
        name: "*".into(),
        hook,
    }];
    let agent = start_in(&lab.node, all);
    wait_attached(&agent, 4);
    let (got, biggest) = ask(&lab);
    assert!(biggest > 1500, "the TXT answer is {biggest} bytes");
    let flow = |pod: usize, v6: bool, transport: &'static str| {
        let (src, dst) = if v6 {
            (PODS6[pod], PODS6[1])
        } else {
            (PODS[pod], PODS[1])
        };
        vec![
            (flow_attr::SOURCE_ADDRESS, src),
            (flow_attr::DESTINATION_ADDRESS, dst),
            (flow_attr::DESTINATION_PORT, "53"),
            (flow_attr::NETWORK_TRANSPORT, transport),
        ]
    };
    let udp4 = flow(0, false, "udp");
    // The two dropped queries are unanswered once dns.timeout (5 s) has passed.
    let snap = wait_frame(
        &agent,
        "every response and the unanswered queries",
        &dns::DNS_RESPONSES,
        |s| {
            got.iter().all(|((pod, v6, t, code), n)| {
                let labels = [
                    &flow(*pod, *v6, t)[..],
                    &[(dns::RESPONSE_CODE, code.as_str())],
                ]
                .concat();
                frame_sum(s, &dns::DNS_RESPONSES, &labels) == Some(*n)
            }) && frame_sum(s, &dns::DNS_UNANSWERED, &udp4) == Some(2)
        },
    );
    let expected: &[(usize, bool, &str, &str, u64)] = &[
        (0, false, "udp", "NoError", 6),
        (0, false, "udp", "NXDomain", 3),
        (0, false, "udp", "Refused", 2),
        (0, false, "udp", "ServFail", 1),
        (0, false, "tcp", "NoError", 2),
        (0, false, "tcp", "NXDomain", 1),
        (0, true, "udp", "NoError", 2),
        (0, true, "udp", "NXDomain", 1),
        (2, false, "udp", "NoError", 1),
    ];
    for &(pod, v6, t, code, n) in expected {
        let labels = [&flow(pod, v6, t)[..], &[(dns::RESPONSE_CODE, code)]].concat();
        assert_eq!(
            frame_sum(&snap, &dns::DNS_RESPONSES, &labels),
            Some(n),
            "{pod} {v6} {t} {code}; clients got {got:?}; unbound: {}",
            unbound.log()
        );
    }
    let responses: u64 = expected.iter().map(|e| e.4).sum();
    assert_eq!(frame_sum(&snap, &dns::DNS_RESPONSES, &[]), Some(responses));
    assert_eq!(frame_sum(&snap, &dns::DNS_UNANSWERED, &[]), Some(2));
    // One latency per answered query, in the same series.
    for (f, n) in [
        (udp4.clone(), 12),
        (flow(0, false, "tcp"), 3),
        (flow(0, true, "udp"), 3),
    ] {
        let h = frame_histogram(&snap, &dns::DNS_DURATION, &f).expect("histogram");
        assert_eq!(h.count, n, "{f:?}: {h:?}");
        assert!(h.sum > 0.0, "{h:?}");
    }
    // The slow answer took at least the upstream's delay: in a bucket above 1 s.
    let slow = frame_histogram(&snap, &dns::DNS_DURATION, &flow(2, false, "udp")).expect("slow");
    let above_a_second: u64 = slow.counts[13..].iter().sum();
    assert_eq!((slow.count, above_a_second), (1, 1), "{slow:?}");
    assert!(slow.sum >= SLOW_DELAY.as_secs_f64(), "{slow:?}");
    // Every response found its query; nothing overflowed.
    assert_eq!(frame_sum(&snap, &dns::AGENT_DNS_UNMATCHED, &[]), Some(0));
    assert_eq!(frame_sum(&snap, &dns::AGENT_DNS_UNTRACKED, &[]), Some(0));
    agent.stop();
}

#[test]
fn dns_responses_latency_and_unanswered_at_tc() {
    dns_is_counted_exactly("dnstc", Hook::Tc);
}

#[test]
fn dns_responses_latency_and_unanswered_at_xdp() {
    dns_is_counted_exactly("dnsxdp", Hook::XdpGeneric);
}

/// `dns.enabled: false`: the same queries are counted as traffic, and nothing as DNS.
#[test]
fn dns_off_counts_traffic_and_no_dns() {
    let lab = NodeLab::new("dnsoff");
    let _unbound = Unbound::start(&lab.pods[1], &[PODS[1]], OUTSIDE, &lab.pods[0]);
    let agent = super::common::agent::start_with(&lab.node, Vec::new(), |c| c.dns.enabled = false);
    wait_attached(&agent, 4);
    let server: SocketAddr = format!("{}:53", PODS[1]).parse().unwrap();
    for id in 1..=4 {
        let q = wire::query(id, "a.ok.lab", A, false);
        let got = lab.pods[0].run(move || wire::udp(server, &q, patient(Duration::from_secs(5))));
        assert_eq!(got.map(|m| wire::header(&m)), Some((id, 0)));
    }
    let queries = [
        (flow_attr::SOURCE_ADDRESS, PODS[0]),
        (flow_attr::DESTINATION_ADDRESS, PODS[1]),
        (flow_attr::DESTINATION_PORT, "53"),
    ];
    let answers = [
        (flow_attr::SOURCE_ADDRESS, PODS[1]),
        (flow_attr::DESTINATION_ADDRESS, PODS[0]),
        (flow_attr::SOURCE_PORT, "53"),
    ];
    let snap = wait_frame(&agent, "4 queries and 4 answers", &FLOW_PACKETS, |s| {
        frame_sum(s, &FLOW_PACKETS, &queries) == Some(4)
            && frame_sum(s, &FLOW_PACKETS, &answers) == Some(4)
    });
    for m in [
        &dns::DNS_RESPONSES,
        &dns::DNS_DURATION,
        &dns::DNS_UNANSWERED,
    ] {
        assert_eq!(frame_sum(&snap, m, &[]), None, "{}", m.otlp);
    }
    assert_eq!(frame_sum(&snap, &dns::AGENT_DNS_UNMATCHED, &[]), Some(0));
    agent.stop();
}
