//! TCP connections (BPF target only): handshakes, refusals and closes, from the packets that
//! carry SYN, FIN or RST; data packets never come here.
//!
//! A connection is keyed by its client's port and initial sequence number ([`ConnKey`]), as
//! on the first SYN: the server's SYN-ACK (or refusing RST) acknowledges `ISN + 1` to that
//! port, whatever addresses NAT gave the two packets. FINs and RSTs carry no ISN: they find the
//! connection through its client end ([`ConnEnd`]) as the client's packets carry it (their
//! source) or as the server's do (their destination, recorded from the SYN-ACK, which may
//! differ under source NAT). The clock is read on SYN and SYN-ACK only.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::maps::{LruHashMap, PerCpuArray};

use crate::{
    Conn, ConnEnd, ConnKey, Counter, conn_event,
    count::{bump, now_ns},
    parse::{PacketInfo, load},
    tcp_flags,
};

const BPF_NOEXIST: u64 = 1;
const EEXIST: i64 = 17;

/// The connection tables.
pub struct ConnTables<'a> {
    /// Connections by client port and ISN.
    pub conns: &'a LruHashMap<ConnKey, Conn>,
    /// Client ends to connections.
    pub ends: &'a LruHashMap<ConnEnd, ConnKey>,
}

#[inline(always)]
fn key(isn: u32, client_port: u16, version: u8) -> u64 {
    u64::from(isn) | (u64::from(client_port) << 32) | (u64::from(version) << 48)
}

/// `ConnKey`'s memory is this word.
#[inline(always)]
fn as_key(word: &u64) -> &ConnKey {
    // SAFETY: ConnKey is 8 bytes of plain integers, the word's memory exactly.
    unsafe { &*core::ptr::from_ref(word).cast::<ConnKey>() }
}

/// `ConnEnd`'s memory is these three words: the address, then port and version.
#[inline(always)]
fn end_words(addr: [u64; 2], port: u16, version: u8) -> [u64; 3] {
    [
        addr[0],
        addr[1],
        u64::from(port) | (u64::from(version) << 16),
    ]
}

#[inline(always)]
fn as_end(words: &[u64; 3]) -> &ConnEnd {
    // SAFETY: ConnEnd is these 24 bytes of plain integers.
    unsafe { &*words.as_ptr().cast::<ConnEnd>() }
}

#[inline(always)]
fn set(conn: *mut Conn, event: usize) {
    // SAFETY: `conn` is a live map value; a byte store of 1 is the same whoever races it.
    unsafe { core::ptr::write_volatile(&raw mut (*conn).events[event & 7], 1) };
}

#[inline(always)]
fn is_set(conn: *const Conn, event: usize) -> bool {
    // SAFETY: as above.
    unsafe { core::ptr::read_volatile(&raw const (*conn).events[event & 7]) != 0 }
}

/// Takes in one packet that carries SYN, FIN or RST, in `[data, end)`, seen at the hook of
/// `ifindex`.
#[inline(always)]
pub fn on_control(
    t: &ConnTables<'_>,
    counters: &PerCpuArray<u64>,
    info: &PacketInfo,
    (data, end): (usize, usize),
    ifindex: u32,
) {
    // Sequence and acknowledgement numbers, read here rather than by the parser: a data
    // packet never needs them. The mask bounds the offset for the verifier (a transport
    // header is always far below it).
    let at = usize::from(info.l4_offset & 0x7FFF) + 4;
    let Ok(numbers) = load::<[u32; 2]>(data, end, at) else {
        return;
    };
    let (seq, ack) = (u32::from_be(numbers[0]), u32::from_be(numbers[1]));
    let flags = u64::from(info.tcp_flags);
    let (sport, dport) = (info.ports as u16, (info.ports >> 16) as u16);
    let has_ack = flags & tcp_flags::ACK != 0;
    if flags & tcp_flags::SYN != 0 {
        if has_ack {
            answered(t, ack, dport, info);
        } else {
            syn(t, counters, seq, sport, info, ifindex);
        }
        return;
    }
    if flags & tcp_flags::RST != 0 {
        // A RST acknowledging the ISN refuses the SYN.
        let word = key(ack.wrapping_sub(1), dport, info.version);
        if has_ack
            && let Some(c) = t.conns.get_ptr_mut(as_key(&word))
            && !is_set(c, conn_event::ANSWERED)
        {
            set(c, conn_event::REFUSED);
            return;
        }
    }
    // FIN or RST: from the client (its end is the source) or the server (the destination).
    let from_client = end_words(info.src, sport, info.version);
    let (conn, client) = if let Some(k) = t.ends.get_ptr(as_end(&from_client)) {
        // SAFETY: a value pointer from the lookup just above.
        let word = unsafe { core::ptr::read(k.cast::<u64>()) };
        (t.conns.get_ptr_mut(as_key(&word)), true)
    } else {
        let to_client = end_words(info.dst, dport, info.version);
        let Some(k) = t.ends.get_ptr(as_end(&to_client)) else {
            return;
        };
        // SAFETY: as above.
        let word = unsafe { core::ptr::read(k.cast::<u64>()) };
        (t.conns.get_ptr_mut(as_key(&word)), false)
    };
    let Some(c) = conn else {
        return;
    };
    if flags & tcp_flags::RST != 0 {
        if is_set(c, conn_event::ANSWERED) {
            set(c, conn_event::RESET);
        }
    } else if client {
        set(c, conn_event::FIN_CLIENT);
    } else {
        set(c, conn_event::FIN_SERVER);
    }
}

/// A client's SYN: a new connection, or a retransmission of the first SYN (the same ISN at
/// the same hook), or the first SYN passing another hook (not counted again).
#[inline(always)]
fn syn(
    t: &ConnTables<'_>,
    counters: &PerCpuArray<u64>,
    seq: u32,
    sport: u16,
    info: &PacketInfo,
    ifindex: u32,
) {
    let word = key(seq, sport, info.version);
    let k = as_key(&word);
    if let Some(c) = t.conns.get_ptr_mut(k) {
        // SAFETY: a value pointer from the lookup just above.
        unsafe {
            if core::ptr::read_volatile(&raw const (*c).ifindex) == ifindex {
                atomic_xadd::<u32, u32, { AtomicOrdering::Relaxed }>(
                    &raw mut (*c).syn_retransmits,
                    1,
                );
            }
        }
        return;
    }
    let flow = info.flow_words();
    let fresh: [u64; 9] = [
        flow[0],
        flow[1],
        flow[2],
        flow[3],
        flow[4],
        now_ns(),
        0,
        u64::from(ifindex),
        0,
    ];
    // SAFETY: Conn is these 72 bytes: the flow's five words, the SYN time, no handshake
    // yet, the interface and no retransmission, no event.
    let value = unsafe { &*fresh.as_ptr().cast::<Conn>() };
    match t.conns.insert(k, value, BPF_NOEXIST) {
        Ok(()) => {}
        Err(e) if i64::from(e) == -EEXIST => return,
        Err(_) => {
            bump(counters, Counter::ConnsUntracked, 1);
            return;
        }
    }
    let end = end_words(info.src, sport, info.version);
    let _ = t.ends.insert(as_end(&end), k, 0);
}

/// A server's SYN-ACK: acknowledges `ISN + 1` to the client's port.
#[inline(always)]
fn answered(t: &ConnTables<'_>, ack: u32, dport: u16, info: &PacketInfo) {
    let word = key(ack.wrapping_sub(1), dport, info.version);
    let Some(c) = t.conns.get_ptr_mut(as_key(&word)) else {
        return;
    };
    if is_set(c, conn_event::ANSWERED) || is_set(c, conn_event::REFUSED) {
        return;
    }
    let now = now_ns();
    // SAFETY: a value pointer from the lookup just above. The duration is written before the
    // event, so a reader that sees the event sees it (the reader also waits for a non-zero
    // duration, as its copy may interleave with these stores).
    unsafe {
        let syn_ns = core::ptr::read_volatile(&raw const (*c).syn_ns);
        core::ptr::write_volatile(
            &raw mut (*c).handshake_ns,
            now.saturating_sub(syn_ns).max(1),
        );
    }
    set(c, conn_event::ANSWERED);
    // The client's end as the server's packets carry it (a source NAT may have changed it).
    let end = end_words(info.dst, dport, info.version);
    let _ = t.ends.insert(as_end(&end), as_key(&word), 0);
}
