//! The counting core shared by every entry point (BPF target only).
//!
//! An entry point parses the frame ([`crate::parse`]), turns the packet into a [`Sample`] (one
//! wire packet, or the wire segments of a GSO buffer at TC), and records it with
//! [`record_shared`] (the production flow table) or [`record_percpu`] (the per-CPU design that
//! `make bench` measures against it).

use core::intrinsics::{AtomicOrdering, atomic_or, atomic_xadd};

use aya_ebpf::{
    helpers::generated::bpf_ktime_get_coarse_ns,
    maps::{HashMap, PerCpuArray, PerCpuHashMap},
};

use crate::{
    Counter, FlowKey, FlowKey4, FlowStats, SIZE_BUCKETS,
    parse::{PacketInfo, Parsed},
    size_bucket,
};

const BPF_NOEXIST: u64 = 1;
const EEXIST: i32 = 17;

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

/// Adds `n` to a per-CPU global counter.
#[inline(always)]
pub fn bump(counters: &PerCpuArray<u64>, counter: Counter, n: u64) {
    if let Some(slot) = counters.get_ptr_mut(counter as u32) {
        // SAFETY: a per-CPU slot is only written by this CPU, with preemption disabled.
        unsafe { *slot += n };
    }
}

/// Counts the side effects of a parse that produced no flow, or the parse's own flags.
#[inline(always)]
pub fn count_other(counters: &PerCpuArray<u64>, parsed: &Parsed) {
    if let Parsed::Other(counter) = parsed {
        bump(counters, *counter, 1);
    }
}

/// Global counters for a packet that is counted in a flow but was only partly parsed.
#[inline(always)]
pub fn count_partial(counters: &PerCpuArray<u64>, info: &PacketInfo, packets: u64) {
    if info.fragment {
        bump(counters, Counter::Fragments, packets);
    } else if info.ext_too_long {
        bump(counters, Counter::Ipv6ExtTooLong, packets);
    }
}

/// `CLOCK_MONOTONIC_COARSE`, ns.
#[inline(always)]
pub fn now_coarse() -> u64 {
    // SAFETY: a helper without arguments; the coarse clock costs ~5 ns against ~30 for the
    // precise one, and a tick (1-4 ms) is resolution enough for idle expiry.
    unsafe { bpf_ktime_get_coarse_ns() }
}

/// The production flow tables: IPv4 (16-byte keys) and IPv6.
pub struct SharedTables<'a> {
    /// IPv4 flows.
    pub v4: &'a HashMap<FlowKey4, FlowStats>,
    /// IPv6 flows.
    pub v6: &'a HashMap<FlowKey, FlowStats>,
}

/// Records `sample` in the shared flow table of its IP version with atomic adds; on a full
/// table, counts the packet as untracked.
#[inline(always)]
pub fn record_shared(
    tables: &SharedTables<'_>,
    counters: &PerCpuArray<u64>,
    key: &FlowKey,
    sample: &Sample,
    tcp_flags: u64,
) {
    if key.ip_version == 4 {
        record_in(
            tables.v4,
            counters,
            &FlowKey4::narrow(key),
            sample,
            tcp_flags,
        );
    } else {
        record_in(tables.v6, counters, key, sample, tcp_flags);
    }
}

#[inline(always)]
fn record_in<K>(
    flows: &HashMap<K, FlowStats>,
    counters: &PerCpuArray<u64>,
    key: &K,
    sample: &Sample,
    tcp_flags: u64,
) {
    let now = now_coarse();
    if let Some(stats) = flows.get_ptr_mut(key) {
        // SAFETY: a value pointer from the lookup just above.
        unsafe { add_shared(stats, sample, tcp_flags, now) };
        return;
    }
    let fresh = fresh_stats(sample, tcp_flags, now);
    match flows.insert(key, fresh, BPF_NOEXIST) {
        Ok(()) => {}
        // Another CPU inserted the flow first: add to its entry.
        Err(e) if e == -EEXIST => {
            if let Some(stats) = flows.get_ptr_mut(key) {
                // SAFETY: a value pointer from the lookup just above.
                unsafe { add_shared(stats, sample, tcp_flags, now) };
            }
        }
        Err(_) => {
            bump(counters, Counter::MapFullPackets, sample.packets());
            bump(counters, Counter::MapFullBytes, sample.bytes);
        }
    }
}

#[inline(always)]
fn fresh_stats(sample: &Sample, tcp_flags: u64, now: u64) -> FlowStats {
    let mut fresh = FlowStats {
        bytes: sample.bytes,
        first_seen_ns: now,
        last_seen_ns: now,
        tcp_flags,
        ..FlowStats::default()
    };
    fresh.size_buckets[sample.bucket_a & (SIZE_BUCKETS - 1)] += sample.count_a;
    fresh.size_buckets[sample.bucket_b & (SIZE_BUCKETS - 1)] += sample.count_b;
    fresh
}

/// Adds `sample` to a shared flow value with atomic adds, stamps it, merges TCP flags.
///
/// # Safety
/// `stats` must point at a live flow-table value, as returned by a lookup in this program run.
#[inline(always)]
pub unsafe fn add_shared(stats: *mut FlowStats, sample: &Sample, tcp_flags: u64, now: u64) {
    // SAFETY: `stats` points at a live map value (the caller's lookup, checked by the verifier);
    // writers on other CPUs only ever use atomic adds/ors on these fields, and the plain store of
    // `last_seen_ns` is a word store that may race harmlessly with another CPU's equal-ish time.
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
        core::ptr::write_volatile(&raw mut (*stats).last_seen_ns, now);
        // Flags rarely change after the first packets: read before paying for an atomic or.
        if tcp_flags & !core::ptr::read_volatile(&raw const (*stats).tcp_flags) != 0 {
            atomic_or::<u64, u64, { AtomicOrdering::Relaxed }>(
                &raw mut (*stats).tcp_flags,
                tcp_flags,
            );
        }
    }
}

/// Records `sample` in a per-CPU flow table with plain adds (the alternative design, measured
/// in `make bench`).
#[inline(always)]
pub fn record_percpu<K>(
    flows: &PerCpuHashMap<K, FlowStats>,
    counters: &PerCpuArray<u64>,
    key: &K,
    sample: &Sample,
    tcp_flags: u64,
) {
    let now = now_coarse();
    if let Some(stats) = flows.get_ptr_mut(key) {
        // SAFETY: this CPU's copy of a live map value; no other CPU writes it.
        unsafe {
            (*stats).bytes += sample.bytes;
            (*stats).size_buckets[sample.bucket_a & (SIZE_BUCKETS - 1)] += sample.count_a;
            (*stats).size_buckets[sample.bucket_b & (SIZE_BUCKETS - 1)] += sample.count_b;
            (*stats).last_seen_ns = now;
            (*stats).tcp_flags |= tcp_flags;
        }
        return;
    }
    if flows
        .insert(key, fresh_stats(sample, tcp_flags, now), 0)
        .is_err()
    {
        bump(counters, Counter::MapFullPackets, sample.packets());
        bump(counters, Counter::MapFullBytes, sample.bytes);
    }
}

/// Turns a parse into a sample for an XDP frame (`frame_len` bytes from `data`), or `None` when
/// the IP length disagrees with the frame (counted as malformed).
#[inline(always)]
pub fn xdp_sample(
    counters: &PerCpuArray<u64>,
    info: &PacketInfo,
    frame_len: u32,
) -> Option<Sample> {
    let avail = frame_len.saturating_sub(info.l3_offset);
    let ip_len = if info.ip_len == 0 { avail } else { info.ip_len };
    if ip_len > avail {
        let counter = if info.key.ip_version == 4 {
            Counter::MalformedIpv4
        } else {
            Counter::MalformedIpv6
        };
        bump(counters, counter, 1);
        return None;
    }
    Some(Sample::single(ip_len))
}

/// Turns a parse into a sample for a TC buffer of `skb_len` bytes that the wire carries as
/// `gso_segs` segments of `gso_size` payload bytes (both 0/1 for a plain packet).
#[inline(always)]
pub fn tc_sample(
    counters: &PerCpuArray<u64>,
    info: &PacketInfo,
    skb_len: u32,
    gso_segs: u32,
    gso_size: u32,
) -> Option<Sample> {
    let avail = skb_len.saturating_sub(info.l3_offset);
    if gso_segs > 1 && gso_size > 0 && !info.fragment {
        // The header's length field describes the whole buffer (or is 0 for BIG TCP).
        return Some(Sample::gso(avail, info.hdr_len, gso_size, gso_segs));
    }
    xdp_sample(counters, info, skb_len)
}
