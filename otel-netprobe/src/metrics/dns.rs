//! DNS: responses by code, the latency from a query to its response as the node saw them, and
//! queries never answered — per workload pair like every flow metric. The kernel
//! (`netprobe-ebpf/src/dns.rs`) matches a response to its query at the packet hooks and counts
//! it in `DNS_STATS` (per query flow without the client port, and rcode: a latency histogram);
//! its pending queries wait in `DNS_QUERIES`, where the reader finds those older than
//! `dns.timeout` and counts them unanswered. Both maps are registered here; points only for
//! series whose flows had any.

use netprobe_ebpf::{
    Counter, FlowKey,
    dns::{
        DNS_LATENCY_BOUNDS_NS, DNS_LATENCY_BUCKETS, DNS_QUERIES_MAP, DNS_STATS_MAP, DnsKey,
        DnsQuery, DnsQueryKey, DnsStats,
    },
};

use super::{Cycle, Family, Module, SeriesFamilies as _, Value, catalogue::metric};
use crate::ebpf::counts::{self, FlowCounts, PendingEntries};

metric!(
    DNS_RESPONSES,
    "netprobe.dns.responses",
    "{response}",
    "netprobe_dns_responses_total",
    Counter,
    flow[RESPONSE_CODE],
    "DNS responses matched to their query on this node, per flow (client to server) and dns.response.code (NoError, NXDomain, ServFail, Refused, ...)."
);

metric!(
    DNS_DURATION,
    "netprobe.dns.duration",
    "s",
    "netprobe_dns_duration_seconds",
    Histogram,
    flow[],
    "Time from a DNS query to its response as this node saw them (100 µs to 5 s buckets), per flow (client to server)."
);

metric!(
    DNS_UNANSWERED,
    "netprobe.dns.queries.unanswered",
    "{query}",
    "netprobe_dns_queries_unanswered_total",
    Counter,
    flow[],
    "DNS queries this node saw without a response within dns.timeout, per flow (client to server)."
);

metric!(
    AGENT_DNS_UNMATCHED,
    "netprobe.agent.dns.responses_unmatched",
    "{response}",
    "netprobe_agent_dns_responses_unmatched_total",
    Counter,
    own[],
    "DNS responses whose query this node did not see pending (sent before the agent started, routed past the node's hooks, already answered, or counted unanswered)."
);

metric!(
    AGENT_DNS_UNTRACKED,
    "netprobe.agent.dns.untracked",
    "{message}",
    "netprobe_agent_dns_untracked_total",
    Counter,
    own[KIND],
    "DNS queries (kind=query) and responses (kind=response) not recorded because their kernel table was full."
);

/// The DNS response code's name (RFC 6895's mnemonics), `rcode_N` for one without.
pub const RESPONSE_CODE: &str = "dns.response.code";
/// What was not recorded: `query` or `response`.
pub const KIND: &str = "kind";

/// The latency buckets' bounds in seconds.
pub const BOUNDS: [f64; DNS_LATENCY_BOUNDS_NS.len()] = {
    let mut b = [0.0; DNS_LATENCY_BOUNDS_NS.len()];
    let mut i = 0;
    while i < b.len() {
        b[i] = DNS_LATENCY_BOUNDS_NS[i] as f64 / 1e9;
        i += 1;
    }
    b
};

/// This module: its entries, how they are filled, and its two kernel maps.
pub const MODULE: Module = Module {
    metrics: &[
        &DNS_RESPONSES,
        &DNS_DURATION,
        &DNS_UNANSWERED,
        &AGENT_DNS_UNMATCHED,
        &AGENT_DNS_UNTRACKED,
    ],
    families: Some(families),
    counts: &[
        |ebpf, _| counts::open(ebpf, Answered),
        |ebpf, facts| counts::open_pending(ebpf, Pending, facts.dns.timeout),
    ],
};

/// The `DNS_STATS` map: per query flow (client port 0) and rcode, the latency buckets and
/// their sum.
pub struct Answered;

impl FlowCounts for Answered {
    type Key = DnsKey;
    type Value = DnsStats;
    type Raw = u8;
    const MAP: &'static str = DNS_STATS_MAP;

    fn flow(&self, key: &DnsKey) -> FlowKey {
        key.flow
    }

    fn raw(&self, key: &DnsKey) -> Option<u8> {
        Some(key.rcode)
    }

    fn values(&self, rcode: u8) -> Vec<String> {
        vec![rcode_name(rcode)]
    }
}

/// The `DNS_QUERIES` map: pending queries, each with its flow and arrival time.
pub struct Pending;

impl PendingEntries for Pending {
    type Key = DnsQueryKey;
    type Value = DnsQuery;
    const MAP: &'static str = DNS_QUERIES_MAP;

    fn flow(&self, query: &DnsQuery) -> FlowKey {
        query.flow
    }

    fn started_ns(&self, query: &DnsQuery) -> u64 {
        query.query_ns
    }
}

/// The name of a response code (the header's four bits: 0..=15).
pub fn rcode_name(rcode: u8) -> String {
    const NAMES: [&str; 12] = [
        "NoError",
        "FormErr",
        "ServFail",
        "NXDomain",
        "NotImp",
        "Refused",
        "YXDomain",
        "YXRRSet",
        "NXRRSet",
        "NotAuth",
        "NotZone",
        "DSOTYPENI",
    ];
    NAMES
        .get(usize::from(rcode))
        .map_or_else(|| format!("rcode_{rcode}"), |n| (*n).to_owned())
}

/// Adds the DNS families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let (flows, set) = (c.named.flows, &c.series.flows);
    out.push(
        set.counter_by(&DNS_RESPONSES, flows, &[RESPONSE_CODE], |f, emit| {
            for e in f.counts(DNS_STATS_MAP) {
                emit(&[&e.attrs[0]], e.values[..DNS_LATENCY_BUCKETS].iter().sum());
            }
        }),
    );
    out.push(
        set.histogram_by(&DNS_DURATION, &BOUNDS, flows, &[], |f, emit| {
            for e in f.counts(DNS_STATS_MAP) {
                let (buckets, sum_ns) = e.values.split_at(DNS_LATENCY_BUCKETS);
                emit(&[], buckets, sum_ns[0] as f64 / 1e9);
            }
        }),
    );
    out.push(set.counter_by(&DNS_UNANSWERED, flows, &[], |f, emit| {
        for e in f.counts(DNS_QUERIES_MAP) {
            emit(&[], e.values[0]);
        }
    }));
    let n = |x: Counter| Value::Int(c.counters.get(x));
    out.push(Family::single(
        &AGENT_DNS_UNMATCHED,
        n(Counter::DnsResponsesUnmatched),
    ));
    out.push(Family::by(
        &AGENT_DNS_UNTRACKED,
        KIND,
        [
            ("query", n(Counter::DnsQueriesUntracked)),
            ("response", n(Counter::DnsResponsesUntracked)),
        ],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_codes_are_named() {
        let names: Vec<String> = [0, 2, 3, 5, 11, 12, 15].map(rcode_name).into();
        assert_eq!(
            names,
            [
                "NoError",
                "ServFail",
                "NXDomain",
                "Refused",
                "DSOTYPENI",
                "rcode_12",
                "rcode_15"
            ]
        );
    }

    #[test]
    fn bounds_are_the_kernels_in_seconds() {
        // As the `le` labels print them.
        let printed: Vec<String> = BOUNDS.iter().map(ToString::to_string).collect();
        assert_eq!(printed[0], "0.0001");
        assert_eq!(printed[9], "0.1");
        assert_eq!(printed[14], "5");
        assert!(BOUNDS.windows(2).all(|w| w[0] < w[1]));
    }
}
