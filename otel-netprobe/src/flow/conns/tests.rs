use std::time::Duration;

use netprobe_ebpf::{Conn, ConnKey, FlowKey, conn_event};

use super::*;

const S: u64 = 1_000_000_000;

fn flow(port: u16) -> FlowKey {
    FlowKey {
        src_addr: [1, 0, 0, 0],
        dst_addr: [2, 0, 0, 0],
        src_port: port.to_be(),
        dst_port: 443u16.to_be(),
        protocol: 6,
        ip_version: 4,
        pad: [0; 2],
    }
}

fn key(port: u16) -> ConnKey {
    ConnKey {
        isn: u32::from(port) * 7,
        client_port: port.to_be(),
        ip_version: 4,
        pad: 0,
    }
}

fn conn(port: u16, syn_ns: u64, events: &[usize], handshake_ns: u64) -> (ConnKey, Conn) {
    let mut c = Conn {
        flow: flow(port),
        syn_ns,
        handshake_ns,
        ..Conn::default()
    };
    for e in events {
        c.events[*e] = 1;
    }
    (key(port), c)
}

const T: ConnTimeouts = ConnTimeouts {
    handshake: Duration::from_secs(30),
    idle: Duration::from_secs(300),
};

/// Every flow changed a moment ago.
const fn busy(_: &FlowKey) -> Option<u64> {
    BUSY
}

const BUSY: Option<u64> = Some(u64::MAX / 2);

use conn_event::{ANSWERED, FIN_CLIENT, FIN_SERVER, REFUSED, RESET};

#[test]
fn a_connection_is_opened_once_and_closed_once() {
    let mut t = ConnTracker::new();
    let c = t.ingest(&[conn(1, S, &[], 0)], S, T, busy);
    assert_eq!(c.deltas[&flow(1)].opened, 0);
    // Answered after 3 ms: opened, one handshake in the <= 5 ms bucket.
    let c = t.ingest(&[conn(1, S, &[ANSWERED], 3_000_000)], 2 * S, T, busy);
    let d = &c.deltas[&flow(1)];
    assert_eq!((d.opened, d.active), (1, 1));
    assert_eq!(d.handshake[6], 1, "{:?}", d.handshake);
    assert_eq!(d.handshake_sum_ns, 3_000_000);
    // Seen again: nothing more.
    let c = t.ingest(&[conn(1, S, &[ANSWERED], 3_000_000)], 3 * S, T, busy);
    assert_eq!(
        (c.deltas[&flow(1)].opened, c.deltas[&flow(1)].active),
        (0, 1)
    );
    // One FIN is not a close; both are.
    let c = t.ingest(
        &[conn(1, S, &[ANSWERED, FIN_CLIENT], 3_000_000)],
        4 * S,
        T,
        busy,
    );
    assert!(c.finished.is_empty());
    let both = conn(1, S, &[ANSWERED, FIN_CLIENT, FIN_SERVER], 3_000_000);
    let c = t.ingest(&[both], 5 * S, T, busy);
    let d = &c.deltas[&flow(1)];
    assert_eq!((d.closed, d.active), ([1, 0, 0], 0));
    assert_eq!(c.finished, vec![key(1)]);
    // Deleted from the kernel: forgotten, not evicted.
    let c = t.ingest(&[], 6 * S, T, busy);
    assert_eq!(c.evicted, 0);
    assert!(t.is_empty());
}

#[test]
fn the_event_without_its_duration_waits_for_the_next_cycle() {
    let mut t = ConnTracker::new();
    let c = t.ingest(&[conn(2, S, &[ANSWERED], 0)], S, T, busy);
    assert_eq!(c.deltas[&flow(2)].opened, 0);
    let c = t.ingest(&[conn(2, S, &[ANSWERED], 500)], S, T, busy);
    assert_eq!(c.deltas[&flow(2)].opened, 1);
    assert_eq!(
        c.deltas[&flow(2)].handshake[0],
        1,
        "500 ns is in the first bucket"
    );
}

#[test]
fn refused_unanswered_reset_and_idle() {
    let mut t = ConnTracker::new();
    let entries = [
        conn(3, S, &[REFUSED], 0),
        conn(4, S, &[], 0),
        conn(5, S, &[ANSWERED, RESET], 1_000),
        conn(6, S, &[ANSWERED], 1_000),
    ];
    // At 20 s nothing timed out yet.
    let c = t.ingest(&entries, 20 * S, T, busy);
    assert_eq!(c.deltas[&flow(3)].failed, [1, 0]);
    assert_eq!(c.deltas[&flow(4)].failed, [0, 0]);
    assert_eq!(c.deltas[&flow(5)].closed, [0, 1, 0]);
    assert_eq!(c.deltas[&flow(5)].opened, 1);
    assert_eq!(c.deltas[&flow(6)].active, 1);
    // At 31 s the SYN of 4 is unanswered; at 400 s the flow of 6 has been quiet since 50 s.
    let rest = [entries[1], entries[3]];
    let c = t.ingest(&rest, 31 * S, T, busy);
    assert_eq!(c.deltas[&flow(4)].failed, [0, 1]);
    let quiet = |_: &FlowKey| Some(50 * S);
    let c = t.ingest(&[entries[3]], 400 * S, T, quiet);
    assert_eq!(c.deltas[&flow(6)].closed, [0, 0, 1]);
    assert_eq!(c.deltas[&flow(6)].active, 0);
}

#[test]
fn an_unanswered_syn_is_one_failure_however_long_the_client_retries() {
    let mut t = ConnTracker::new();
    let (k, mut c) = conn(7, S, &[], 0);
    // Unanswered at 31 s; the entry stays (not deleted) while the client retries.
    let cycle = t.ingest(&[(k, c)], 31 * S, T, busy);
    assert_eq!(cycle.deltas[&flow(7)].failed, [0, 1]);
    assert!(cycle.finished.is_empty(), "kept while the client may retry");
    // A retransmission at 63 s: counted, not a new connection, no second failure.
    c.syn_retransmits = 1;
    let cycle = t.ingest(&[(k, c)], 64 * S, T, busy);
    let d = &cycle.deltas[&flow(7)];
    assert_eq!((d.failed, d.syn_retransmits, d.opened), ([0, 0], 1, 0));
    assert!(cycle.finished.is_empty());
    // The client backs off: a retransmission 63 s after the SYN may be followed by one about
    // 63 s later. Quiet that long and a half (and a second): deleted, never recounted.
    let cycle = t.ingest(&[(k, c)], 150 * S, T, busy);
    assert!(cycle.finished.is_empty(), "the client may still retry");
    let cycle = t.ingest(&[(k, c)], 160 * S, T, busy);
    assert_eq!(cycle.finished, [k]);
    assert!(
        cycle
            .deltas
            .get(&flow(7))
            .is_none_or(|d| d.failed == [0, 0])
    );
    let cycle = t.ingest(&[], 161 * S, T, busy);
    assert_eq!(cycle.evicted, 0, "a deleted entry is not an eviction");
}

#[test]
fn retransmits_are_counted_by_difference() {
    let mut t = ConnTracker::new();
    let (k, mut c) = conn(7, S, &[], 0);
    c.syn_retransmits = 1;
    let d = t.ingest(&[(k, c)], S, T, busy);
    assert_eq!(d.deltas[&flow(7)].syn_retransmits, 1);
    c.syn_retransmits = 3;
    let d = t.ingest(&[(k, c)], S, T, busy);
    assert_eq!(d.deltas[&flow(7)].syn_retransmits, 2);
}

#[test]
fn an_entry_gone_before_its_end_is_an_eviction() {
    let mut t = ConnTracker::new();
    t.ingest(&[conn(8, S, &[ANSWERED], 10)], S, T, busy);
    let c = t.ingest(&[], 2 * S, T, busy);
    assert_eq!(c.evicted, 1);
    // A new connection in a reused entry also ends the old one's story.
    t.ingest(&[conn(9, S, &[ANSWERED], 10)], S, T, busy);
    let c = t.ingest(&[conn(9, 5 * S, &[], 0)], 6 * S, T, busy);
    assert_eq!((c.evicted, c.deltas[&flow(9)].active), (1, 0));
}
