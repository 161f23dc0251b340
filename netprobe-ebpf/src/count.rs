//! The counting core shared by every entry point (BPF target only).
//!
//! An entry point parses the frame ([`crate::parse`]) and hands the result to [`on_packet`],
//! with what its hook knows of the packet's length ([`Frame`]). `on_packet` turns the packet
//! into a [`Sample`] (one wire packet, or the wire segments of a GSO buffer at TC) and records
//! it in the flow table of its IP version with atomic adds.
//!
//! Written for every verifier from 5.10 on: no atomic operation but add (atomic `or` and
//! fetch arrive in 5.12), no stack access at a variable offset, no memset/memcpy calls, and
//! values the later code depends on computed without branches where a branch would make the
//! verifier walk the rest of the program once per outcome.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_ns,
    maps::{HashMap, PerCpuArray},
};

use crate::{
    Counter, FlowKey, FlowKey4, FlowStats, IcmpErrorKey, SIZE_BUCKETS,
    conn::{ConnTables, on_control},
    parse::{PacketInfo, Parsed, load, parse_quoted, proto},
    size_bucket, tcp_control, tcp_flags,
};

const BPF_NOEXIST: u64 = 1;
const EEXIST: i64 = 17;

/// What one packet (or one GSO buffer) adds to its flow.
#[derive(Clone, Copy)]
pub struct Sample {
    /// IP bytes on the wire.
    pub bytes: u64,
    /// Bucket of the (full-size) segments and how many of them.
    pub bucket_a: usize,
    /// Number of packets in `bucket_a`.
    pub count_a: u64,
    /// Bucket of the last, shorter segment of a GSO buffer.
    pub bucket_b: usize,
    /// 0 or 1: the last segment of a GSO buffer.
    pub count_b: u64,
}

impl Sample {
    /// One wire packet of `ip_len` IP bytes.
    #[inline(always)]
    pub fn single(ip_len: u32) -> Self {
        Self {
            bytes: u64::from(ip_len),
            bucket_a: size_bucket(ip_len),
            count_a: 1,
            bucket_b: 0,
            count_b: 0,
        }
    }

    /// A GSO buffer of `buf_len` IP bytes (one set of headers) that the wire carries as `segs`
    /// segments of `gso_size` payload bytes, each with its own `hdr_len` bytes of headers.
    #[inline(always)]
    pub fn gso(buf_len: u32, hdr_len: u32, gso_size: u32, segs: u32) -> Self {
        let full = segs - 1;
        let payload = buf_len.saturating_sub(hdr_len);
        let last_payload = payload.saturating_sub(full * gso_size);
        Self {
            bytes: u64::from(payload) + u64::from(segs) * u64::from(hdr_len),
            bucket_a: size_bucket(hdr_len + gso_size),
            count_a: u64::from(full),
            bucket_b: size_bucket(hdr_len + last_payload),
            count_b: 1,
        }
    }

    /// Packets this sample stands for.
    #[inline(always)]
    pub fn packets(&self) -> u64 {
        self.count_a + self.count_b
    }
}

/// What the hook knows of the packet's length besides its parsed headers.
#[derive(Clone, Copy)]
pub enum Frame {
    /// An XDP frame of `len` bytes from `data`.
    Xdp {
        /// `data_end - data`.
        len: u32,
    },
    /// A socket buffer of `len` bytes that the wire carries as `gso_segs` segments of
    /// `gso_size` payload bytes (0/1 for a plain packet).
    Skb {
        /// `skb->len`.
        len: u32,
        /// `skb->gso_segs`.
        gso_segs: u32,
        /// `skb->gso_size`.
        gso_size: u32,
    },
}

/// A frame as its hook hands it over: the bytes in `[data, end)`, how to read the interface
/// whose hook runs and eight bytes at an offset, and what the hook knows of the length.
#[derive(Clone, Copy)]
pub struct Packet<I: Fn() -> u32, L: Fn(usize) -> Option<[u16; 4]>> {
    /// Start of the frame.
    pub data: usize,
    /// End of the frame (exclusive).
    pub end: usize,
    /// Reads the interface the hook is attached to: only packets with SYN, FIN or RST need
    /// it (at XDP it is a chain of dependent loads the verifier writes in).
    pub ifindex: I,
    /// Length facts.
    pub frame: Frame,
    /// Reads eight bytes at an offset from `data`: only DNS packets need it (at TC with
    /// `bpf_skb_load_bytes`, which also reads a payload outside the linear part).
    pub load8: L,
}

/// The maps the core writes: the flow tables (IPv4 with 16-byte keys, IPv6), the TCP
/// connections, the ICMP errors by the flow they answer, and the per-CPU global counters.
pub struct Tables<'a> {
    /// IPv4 flows.
    pub v4: &'a HashMap<FlowKey4, FlowStats>,
    /// IPv6 flows.
    pub v6: &'a HashMap<FlowKey, FlowStats>,
    /// ICMP errors per answered flow, type and code.
    pub icmp_errors: &'a HashMap<IcmpErrorKey, u64>,
    /// TCP connections.
    pub conns: ConnTables<'a>,
    /// Global counters ([`Counter`]).
    pub counters: &'a PerCpuArray<u64>,
}

/// Counts one parsed packet: in its flow, or in a global counter; a TCP packet with SYN, FIN
/// or RST also in its connection; an ICMP error also under the flow it answers; a DNS query or
/// response also in the DNS tables.
#[inline(always)]
pub fn on_packet<I: Fn() -> u32, L: Fn(usize) -> Option<[u16; 4]>>(
    t: &Tables<'_>,
    p: &Packet<I, L>,
    parsed: &Parsed,
) {
    match parsed {
        Parsed::Ip(info) => {
            if let Some(sample) = sample(t.counters, info, p.frame) {
                count_partial(t.counters, info, sample.packets());
                // Data packets (no SYN, FIN or RST; other transports have no flags) skip the
                // control lanes and the connections with this one test.
                let control = info.tcp_flags & tcp_flags::CONTROL;
                record(t, info, &sample, control);
                if control != 0 {
                    on_control(&t.conns, t.counters, info, (p.data, p.end), (p.ifindex)());
                }
                if info.protocol == proto::ICMP || info.protocol == proto::ICMPV6 {
                    record_icmp_error(t, p.data, p.end, info);
                } else {
                    crate::dns::on_packet(t.counters, info, &p.load8);
                }
            }
        }
        Parsed::Other(counter) => bump(t.counters, *counter, 1),
    }
}

/// Counts an ICMP error under the flow of the packet it quotes (errors whose quote is cut
/// short are counted only in their own flow).
#[inline(always)]
fn record_icmp_error(t: &Tables<'_>, data: usize, data_end: usize, info: &PacketInfo) {
    // The type and code, read again here: only ICMP packets pay for it. The mask bounds the
    // offset for the verifier.
    let l4 = usize::from(info.l4_offset & 0x7FFF);
    let Ok([icmp_type, icmp_code]) = load::<[u8; 2]>(data, data_end, l4) else {
        return;
    };
    // Errors that quote the packet they answer: destination unreachable, time exceeded,
    // parameter problem (v4 and v6), packet too big (v6).
    let error = match info.protocol {
        proto::ICMP => matches!(icmp_type, 3 | 11 | 12),
        _ => matches!(icmp_type, 1..=4),
    };
    if !error {
        return;
    }
    let Some(quoted) = parse_quoted(data, data_end, l4, info.version) else {
        return;
    };
    let words = [
        quoted[0],
        quoted[1],
        quoted[2],
        quoted[3],
        quoted[4],
        u64::from(icmp_type) | (u64::from(icmp_code) << 8) | (u64::from(info.version) << 16),
    ];
    // SAFETY: IcmpErrorKey is the first 44 bytes of these 48: the quoted FlowKey's five
    // words, then type, code, version and a zero pad byte.
    let key = unsafe { &*words.as_ptr().cast::<IcmpErrorKey>() };
    let mut entry = t.icmp_errors.get_ptr_mut(key);
    if entry.is_none() {
        let _ = t.icmp_errors.insert(key, 0, BPF_NOEXIST);
        entry = t.icmp_errors.get_ptr_mut(key);
    }
    match entry {
        // A value pointer from the lookup just above.
        Some(n) => {
            // SAFETY: as above.
            unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(n, 1) };
        }
        None => bump(t.counters, Counter::IcmpErrorsUntracked, 1),
    }
}

/// Adds `n` to a per-CPU global counter.
#[inline(always)]
pub fn bump(counters: &PerCpuArray<u64>, counter: Counter, n: u64) {
    if let Some(slot) = counters.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot is only written by this CPU, with preemption disabled.
        unsafe { *slot += n };
    }
}

/// Global counters for a packet that is counted in a flow but was only partly parsed.
#[inline(always)]
fn count_partial(counters: &PerCpuArray<u64>, info: &PacketInfo, packets: u64) {
    if info.fragment {
        bump(counters, Counter::Fragments, packets);
    } else if info.ext_too_long {
        bump(counters, Counter::Ipv6ExtTooLong, packets);
    }
}

/// `CLOCK_MONOTONIC`, ns. Read only when a flow's entry is created (the coarse clock, 25 ns
/// cheaper, arrives in 5.11); the reader compares it with its coarse clock, the same clock at
/// a tick's resolution.
#[inline(always)]
pub fn now_ns() -> u64 {
    // SAFETY: a helper without arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// Turns a parse into a sample, or `None` when the IP length disagrees with the buffer
/// (counted as malformed).
#[inline(always)]
pub fn sample(counters: &PerCpuArray<u64>, info: &PacketInfo, frame: Frame) -> Option<Sample> {
    let len = match frame {
        Frame::Xdp { len } => len,
        Frame::Skb {
            len,
            gso_segs,
            gso_size,
        } => {
            if gso_segs > 1 && gso_size > 0 && !info.fragment {
                // The header's length field describes the whole buffer (or is 0 for BIG TCP).
                let avail = len.saturating_sub(info.l3_offset);
                return Some(Sample::gso(avail, info.hdr_len, gso_size, gso_segs));
            }
            len
        }
    };
    let avail = len.saturating_sub(info.l3_offset);
    let ip_len = if info.ip_len == 0 { avail } else { info.ip_len };
    if ip_len > avail {
        let counter = if info.version == 4 {
            Counter::MalformedIpv4
        } else {
            Counter::MalformedIpv6
        };
        bump(counters, counter, 1);
        return None;
    }
    Some(Sample::single(ip_len))
}

/// Records `sample` in the flow table of its IP version; `control` is the packet's SYN, FIN
/// and RST flags.
#[inline(always)]
pub fn record(t: &Tables<'_>, info: &PacketInfo, sample: &Sample, control: u8) {
    let control = if control != 0 {
        tcp_control::increment(info.tcp_flags)
    } else {
        0
    };
    if info.version == 4 {
        let words = info.key4_words();
        // SAFETY: FlowKey4 is 16 bytes of plain integers, the words' memory exactly (their
        // alignment is stricter than its).
        let key = unsafe { &*words.as_ptr().cast::<FlowKey4>() };
        record_in(t.v4, t.counters, key, sample, control);
    } else {
        let words = info.key6_words();
        // SAFETY: as above: FlowKey is these 40 bytes.
        let key = unsafe { &*words.as_ptr().cast::<FlowKey>() };
        record_in(t.v6, t.counters, key, sample, control);
    }
}

/// Finds (or creates) the flow's entry and adds the sample to it; a full table counts the
/// packet as untracked.
#[inline(always)]
fn record_in<K>(
    flows: &HashMap<K, FlowStats>,
    counters: &PerCpuArray<u64>,
    key: &K,
    sample: &Sample,
    control: u64,
) {
    let mut entry = flows.get_ptr_mut(key);
    if entry.is_none() {
        let mut fresh = core::mem::MaybeUninit::<FlowStats>::uninit();
        init_fresh(&mut fresh, now_ns());
        // SAFETY: `init_fresh` wrote every word of the value.
        let fresh = unsafe { fresh.assume_init_ref() };
        match flows.insert(key, fresh, BPF_NOEXIST) {
            // Created, or another CPU created it first: add to the entry either way.
            Ok(()) => {}
            Err(e) if i64::from(e) == -EEXIST => {}
            Err(_) => {
                untracked(counters, sample);
                return;
            }
        }
        entry = flows.get_ptr_mut(key);
    }
    match entry {
        // SAFETY: a value pointer from the lookup just above.
        Some(stats) => unsafe { add(stats, sample, control) },
        // The reader moved the entry out between our insert and lookup: not counted in it.
        None => untracked(counters, sample),
    }
}

#[inline(always)]
fn untracked(counters: &PerCpuArray<u64>, sample: &Sample) {
    bump(counters, Counter::MapFullPackets, sample.packets());
    bump(counters, Counter::MapFullBytes, sample.bytes);
}

/// Writes a zeroed FlowStats created at `now` into `v` as word stores, in place (volatile, so
/// the compiler can neither fold them into a memset call, which the BPF target turns into a
/// byte loop, nor copy the value elsewhere).
#[inline(always)]
fn init_fresh(v: &mut core::mem::MaybeUninit<FlowStats>, now: u64) {
    const WORDS: usize = core::mem::size_of::<FlowStats>() / 8;
    let w = v.as_mut_ptr().cast::<u64>();
    let mut i = 0;
    while i < WORDS {
        // SAFETY: `i` words into a FlowStats, which is WORDS words long.
        unsafe { core::ptr::write_volatile(w.add(i), 0) };
        i += 1;
    }
    // SAFETY: the field is within the value written above.
    unsafe { core::ptr::write_volatile(&raw mut (*v.as_mut_ptr()).first_seen_ns, now) };
}

/// All ones when `x == i`, else zero, without a branch.
#[inline(always)]
const fn eq_mask(x: usize, i: usize) -> u64 {
    let d = (x ^ i) as u64;
    ((d | d.wrapping_neg()) >> 63).wrapping_sub(1)
}

/// For the bench's insert-path variants only (the production path stays two-step: on 5.10
/// this one-update path makes `netprobe_tc_ingress` exceed the verifier's 1M instructions).
/// Writes the FlowStats of a flow created at `now` by `sample` (and a TCP control packet's
/// lanes, `control`) into `v` as word stores, in place (volatile, so the compiler can neither
/// fold them into a memset call, which the BPF target turns into a byte loop, nor copy the
/// value elsewhere). The size buckets are written branch-free, each word its own constant
/// offset (5.10's verifier refuses stack writes at a variable offset).
#[inline(always)]
pub fn init_with_sample(
    v: &mut core::mem::MaybeUninit<FlowStats>,
    now: u64,
    sample: &Sample,
    control: u64,
) {
    let p = v.as_mut_ptr();
    // SAFETY: every field of the value, each written once.
    unsafe {
        core::ptr::write_volatile(&raw mut (*p).bytes, sample.bytes);
        let buckets = (&raw mut (*p).size_buckets).cast::<u64>();
        let mut i = 0;
        while i < SIZE_BUCKETS {
            let n = (sample.count_a & eq_mask(sample.bucket_a, i))
                + (sample.count_b & eq_mask(sample.bucket_b, i));
            core::ptr::write_volatile(buckets.add(i), n);
            i += 1;
        }
        core::ptr::write_volatile(&raw mut (*p).first_seen_ns, now);
        core::ptr::write_volatile(&raw mut (*p).tcp_control, control);
    }
}

/// Adds `sample` (and a TCP control packet's lanes) to a shared flow value with atomic adds.
///
/// # Safety
/// `stats` must point at a live flow-table value, as returned by a lookup in this program run.
#[inline(always)]
pub unsafe fn add(stats: *mut FlowStats, sample: &Sample, control: u64) {
    // SAFETY: `stats` points at a live map value (the caller's lookup, checked by the verifier);
    // every writer uses atomic adds on these fields.
    unsafe {
        // BPF's `lock xadd`: the target has no compare-and-swap, so core's atomic types lack
        // fetch_add here; the intrinsic compiles to the single atomic add instruction.
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*stats).bytes, sample.bytes);
        let buckets = (&raw mut (*stats).size_buckets).cast::<u64>();
        atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
            buckets.add(sample.bucket_a & (SIZE_BUCKETS - 1)),
            sample.count_a,
        );
        if sample.count_b != 0 {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                buckets.add(sample.bucket_b & (SIZE_BUCKETS - 1)),
                sample.count_b,
            );
        }
        if control != 0 {
            let current = core::ptr::read_volatile(&raw const (*stats).tcp_control);
            let inc = tcp_control::unsaturated(control, current);
            if inc != 0 {
                atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                    &raw mut (*stats).tcp_control,
                    inc,
                );
            }
        }
    }
}
