//! The dashboards lab's DNS: the real resolver (unbound) in data/cache's pod, asked by
//! shop/checkout each round for a name it has (NoError), one it does not (NXDomain) and one in
//! a zone it drops (unanswered after the agent's `dns.timeout`).

use std::{net::SocketAddr, time::Duration};

use crate::common::{
    Netns, NodeLab,
    addr::{OUTSIDE, PODS},
    dns::{self as wire, A, Unbound},
};

/// The series of checkout's DNS with cache that must move: (metric, extra matchers).
pub const SERIES: [(&str, &str); 3] = [
    (
        "netprobe_dns_responses_total",
        r#",dns_response_code="NoError""#,
    ),
    (
        "netprobe_dns_responses_total",
        r#",dns_response_code="NXDomain""#,
    ),
    ("netprobe_dns_queries_unanswered_total", ""),
];

/// Checkout → cache, as the queries select them.
pub const CHECKOUT_TO_CACHE: &str =
    r#"source_k8s_workload_name="checkout",destination_k8s_workload_name="cache""#;

/// Starts unbound in cache's pod, ready for checkout.
pub fn server(lab: &NodeLab) -> Unbound {
    Unbound::start(&lab.pods[2], &[PODS[2]], OUTSIDE, &lab.pods[0])
}

/// One round of checkout's queries.
pub fn round(checkout: &Netns, round: u16) {
    let server: SocketAddr = format!("{}:53", PODS[2]).parse().expect("address");
    let wait = Duration::from_secs(5);
    for (i, (name, answer)) in [
        ("a.ok.lab", Some(0)),
        ("a.ok.lab", Some(0)),
        ("a.ok.lab", Some(0)),
        ("x.nx.lab", Some(3)),
        ("x.deny.lab", None),
    ]
    .into_iter()
    .enumerate()
    {
        let id = round * 16 + i as u16;
        let q = wire::query(id, name, A, false);
        let got = checkout.run(move || {
            wire::udp(
                server,
                &q,
                if answer.is_some() {
                    wait
                } else {
                    Duration::ZERO
                },
            )
        });
        assert_eq!(
            got.map(|m| wire::header(&m)),
            answer.map(|rcode| (id, rcode)),
            "{name}"
        );
    }
}
