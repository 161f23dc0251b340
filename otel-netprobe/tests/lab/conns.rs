//! TCP connections on the node lab, exact where the kernels decide: complete exchanges are
//! opened and closed by FIN with one handshake each, connects to a closed port are refused and
//! never opened, a server that resets closes by RST, and a handshake whose first SYN was
//! dropped waits for the retransmission (one each).

use otel_netprobe::{
    config::flow_attr,
    export::summary,
    metrics::conns::{self, TCP_CLOSE_REASON, TCP_FAILURE_REASON},
};

use std::time::Duration;

use super::common::{
    NodeLab,
    addr::PODS,
    agent::{frame_histogram, frame_sum, start_in, start_with, wait_attached, wait_frame},
    traffic,
};

/// The standalone attributes of the connection flow from pod 0 to pod 1's `port`.
fn to_pod1(port: &str) -> [(&'static str, &str); 3] {
    [
        (flow_attr::SOURCE_ADDRESS, PODS[0]),
        (flow_attr::DESTINATION_ADDRESS, PODS[1]),
        (flow_attr::DESTINATION_PORT, port),
    ]
}

#[test]
fn exchanges_are_opened_and_closed_by_fin_refusals_and_resets_counted() {
    let lab = NodeLab::new("conn");
    let agent = start_in(&lab.node, Vec::new());
    wait_attached(&agent, 4);
    traffic::tcp_exchanges(&lab.pods[0], &lab.pods[1], &format!("{}:7050", PODS[1]), 5);
    let fin = [&to_pod1("7050")[..], &[(TCP_CLOSE_REASON, "fin")]].concat();
    let snap = wait_frame(&agent, "5 closed by fin", &conns::TCP_CLOSED, |s| {
        frame_sum(s, &conns::TCP_CLOSED, &fin) == Some(5)
    });
    let flow = to_pod1("7050");
    assert_eq!(frame_sum(&snap, &conns::TCP_OPENED, &flow), Some(5));
    assert_eq!(frame_sum(&snap, &conns::TCP_ACTIVE, &flow), Some(0));
    assert_eq!(frame_sum(&snap, &conns::TCP_FAILED, &flow), None);
    assert_eq!(
        frame_sum(&snap, &conns::TCP_SYN_RETRANSMITS, &flow),
        Some(0)
    );
    let h = frame_histogram(&snap, &conns::TCP_HANDSHAKE, &flow).expect("handshakes");
    assert_eq!(h.count, 5, "{h:?}");
    assert!(h.sum > 0.0 && h.sum < 5.0, "{h:?}");

    traffic::tcp_refused(&lab.pods[0], &format!("{}:7051", PODS[1]), 4);
    let refused = [&to_pod1("7051")[..], &[(TCP_FAILURE_REASON, "refused")]].concat();
    let snap = wait_frame(&agent, "4 refused", &conns::TCP_FAILED, |s| {
        frame_sum(s, &conns::TCP_FAILED, &refused) == Some(4)
    });
    assert_eq!(
        frame_sum(&snap, &conns::TCP_OPENED, &to_pod1("7051")),
        Some(0)
    );

    traffic::tcp_reset_by_server(&lab.pods[0], &lab.pods[1], &format!("{}:7052", PODS[1]), 3);
    let rst = [&to_pod1("7052")[..], &[(TCP_CLOSE_REASON, "rst")]].concat();
    let snap = wait_frame(&agent, "3 closed by rst", &conns::TCP_CLOSED, |s| {
        frame_sum(s, &conns::TCP_CLOSED, &rst) == Some(3)
    });
    assert_eq!(
        frame_sum(&snap, &conns::TCP_OPENED, &to_pod1("7052")),
        Some(3)
    );
    // The summary totals the same counts (this lab has no other connections).
    let total = |name: &str, attrs: &[(&str, &str)]| {
        snap.summary
            .metrics
            .iter()
            .find(|m| m.name == name)
            .and_then(|m| {
                m.rows.iter().find(|r| {
                    r.attributes.len() == attrs.len()
                        && attrs
                            .iter()
                            .all(|(k, v)| r.attributes.get(*k).map(String::as_str) == Some(*v))
                })
            })
            .map(|r| r.value)
    };
    assert_eq!(total(conns::TCP_OPENED.otlp, &[]), Some(8.0));
    assert_eq!(total(conns::TCP_ACTIVE.otlp, &[]), Some(0.0));
    let (fin, rst) = ([(TCP_CLOSE_REASON, "fin")], [(TCP_CLOSE_REASON, "rst")]);
    assert_eq!(total(conns::TCP_CLOSED.otlp, &fin), Some(5.0));
    assert_eq!(total(conns::TCP_CLOSED.otlp, &rst), Some(3.0));
    let refused = [(TCP_FAILURE_REASON, "refused")];
    assert_eq!(total(conns::TCP_FAILED.otlp, &refused), Some(4.0));
    assert_eq!(
        total(conns::TCP_HANDSHAKE.otlp, &[]),
        Some(8.0),
        "handshakes observed"
    );
    let table = summary::table(&snap.summary);
    assert!(
        table.contains("netprobe.tcp.connections.closed netprobe.tcp.close.reason=rst"),
        "{table}"
    );
    agent.stop();
}

/// A server that never answers (nftables drops every SYN): one connect that the client gives
/// up after 3.5 s is one `unanswered` failure after the handshake timeout (1 s here), its SYN
/// retransmissions equal to the client kernel's own count, before and after the timeout, and
/// never a second connection.
#[test]
fn a_syn_nobody_answers_is_one_unanswered_failure() {
    let lab = NodeLab::new("unans");
    let (client, server) = (&lab.pods[0], &lab.pods[1]);
    for rule in [
        "add table inet np",
        "add chain inet np in { type filter hook input priority 0; }",
        "add rule inet np in tcp dport 7053 tcp flags syn counter drop",
    ] {
        server.exec(&format!("nft '{rule}'"));
    }
    let agent = start_with(&lab.node, Vec::new(), |c| {
        c.connections.handshake_timeout = Duration::from_secs(1);
    });
    wait_attached(&agent, 4);
    let before = traffic::netstat(client, "TcpExt:", "TCPSynRetrans");
    let dst = format!("{}:7053", PODS[1]);
    assert!(traffic::tcp_connect_giving_up(
        client,
        &dst,
        Duration::from_millis(3500)
    ));
    let retransmitted = traffic::netstat(client, "TcpExt:", "TCPSynRetrans") - before;
    assert!(retransmitted >= 1, "the client retried");
    let flow = to_pod1("7053");
    let unanswered = [&flow[..], &[(TCP_FAILURE_REASON, "unanswered")]].concat();
    let snap = wait_frame(&agent, "1 unanswered", &conns::TCP_FAILED, |s| {
        frame_sum(s, &conns::TCP_FAILED, &unanswered) == Some(1)
            && frame_sum(s, &conns::TCP_SYN_RETRANSMITS, &flow) == Some(retransmitted)
    });
    assert_eq!(frame_sum(&snap, &conns::TCP_OPENED, &flow), Some(0));
    // Once the entry is gone (the client quiet for longer than its backoff), still one.
    let snap = wait_frame(&agent, "the entry deleted", &conns::TCP_FAILED, |s| {
        s.health.conn_table_entries == 0
    });
    assert_eq!(frame_sum(&snap, &conns::TCP_FAILED, &unanswered), Some(1));
    assert_eq!(
        frame_sum(&snap, &conns::TCP_SYN_RETRANSMITS, &flow),
        Some(retransmitted)
    );
    agent.stop();
}
