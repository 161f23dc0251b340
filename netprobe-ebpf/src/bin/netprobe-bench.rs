//! Programs that `make bench` measures ours against, in the same run: trivial XDP and TC
//! programs (the baseline) and the per-CPU flow-table design (the alternative to the shared
//! table with atomic adds that the agent uses).
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(
    clippy::needless_pass_by_value,
    reason = "the program macros hand the context over by value"
)]
#![allow(
    clippy::inline_always,
    reason = "BPF helpers must be inlined into the program"
)]

#[cfg(target_arch = "bpf")]
mod prog {
    use aya_ebpf::{
        bindings::{TC_ACT_UNSPEC, xdp_action},
        macros::{classifier, map, raw_tracepoint, xdp},
        maps::{HashMap, LruHashMap, PerCpuArray, PerCpuHashMap},
        programs::{RawTracePointContext, TcContext, XdpContext},
    };
    use netprobe_ebpf::{
        COUNTER_SLOTS, FlowKey, FlowKey4, FlowStats, SIZE_BUCKETS,
        count::{Frame, Sample, add, bump, init_with_sample, now_ns, sample},
        parse::{PacketInfo, Parsed, parse_ethernet},
    };

    #[map]
    static BENCH_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

    #[xdp]
    pub fn bench_xdp_pass(_ctx: XdpContext) -> u32 {
        xdp_action::XDP_PASS
    }

    #[classifier]
    pub fn bench_tc_pass(_ctx: TcContext) -> i32 {
        TC_ACT_UNSPEC
    }

    /// The trivial program on the drop tracepoint, beside the agent's.
    #[raw_tracepoint(tracepoint = "kfree_skb")]
    pub fn bench_kfree_skb(_ctx: RawTracePointContext) -> i32 {
        0
    }

    /// Parsing alone (the result is kept so the work is not optimised away).
    #[xdp]
    pub fn bench_xdp_parse(ctx: XdpContext) -> u32 {
        if let Parsed::Ip(info) = parse_ethernet(ctx.data(), ctx.data_end())
            && let Some(slot) = BENCH_COUNTERS.get_ptr_mut(0)
        {
            // SAFETY: this CPU's slot of a per-CPU array.
            unsafe { *slot += u64::from(info.ports) + u64::from(info.ip_len) };
        }
        xdp_action::XDP_PASS
    }

    #[map]
    static BENCH_SHARED4: HashMap<FlowKey4, FlowStats> = HashMap::with_max_entries(4096, 0);

    /// The IPv4 key the production programs build (two word stores).
    #[inline(always)]
    fn key4(words: &[u64; 2]) -> &FlowKey4 {
        // SAFETY: FlowKey4 is exactly these 16 bytes of plain integers.
        unsafe { &*words.as_ptr().cast::<FlowKey4>() }
    }

    /// Parsing and the IPv4 flow-table lookup, without the update.
    #[xdp]
    pub fn bench_xdp_lookup(ctx: XdpContext) -> u32 {
        if let Parsed::Ip(info) = parse_ethernet(ctx.data(), ctx.data_end())
            && info.version == 4
        {
            let words = info.key4_words();
            if BENCH_SHARED4.get_ptr(key4(&words)).is_none() {
                let _ = BENCH_SHARED4.insert(key4(&words), FlowStats::default(), 0);
            }
        }
        xdp_action::XDP_PASS
    }

    /// Where the time goes: parsing, lookup and plain (non-atomic) adds; the production
    /// program minus this is the price of the atomic adds.
    #[xdp]
    pub fn bench_xdp_plainadd(ctx: XdpContext) -> u32 {
        let (data, end) = (ctx.data(), ctx.data_end());
        if let Parsed::Ip(info) = parse_ethernet(data, end)
            && info.version == 4
            && let Some(s) = sample(
                &BENCH_COUNTERS,
                &info,
                Frame::Xdp {
                    len: (end - data) as u32,
                },
            )
        {
            let words = info.key4_words();
            match BENCH_SHARED4.get_ptr_mut(key4(&words)) {
                // SAFETY: a value pointer from the lookup just above.
                Some(v) => unsafe {
                    (*v).bytes += s.bytes;
                    (*v).size_buckets[s.bucket_a & (SIZE_BUCKETS - 1)] += s.count_a;
                },
                None => {
                    let _ = BENCH_SHARED4.insert(key4(&words), FlowStats::default(), 0);
                }
            }
        }
        xdp_action::XDP_PASS
    }

    #[map]
    static BENCH_PERCPU_FLOWS4: PerCpuHashMap<FlowKey4, FlowStats> =
        PerCpuHashMap::with_max_entries(4096, 0);

    #[map]
    static BENCH_PERCPU_FLOWS6: PerCpuHashMap<FlowKey, FlowStats> =
        PerCpuHashMap::with_max_entries(4096, 0);

    /// The per-CPU design: the same parse and sample, plain adds into this CPU's copy.
    #[xdp]
    pub fn bench_xdp_percpu(ctx: XdpContext) -> u32 {
        let (data, end) = (ctx.data(), ctx.data_end());
        match parse_ethernet(data, end) {
            Parsed::Ip(info) => {
                let frame = Frame::Xdp {
                    len: (end - data) as u32,
                };
                if let Some(s) = sample(&BENCH_COUNTERS, &info, frame) {
                    if info.version == 4 {
                        let words = info.key4_words();
                        record_percpu(&BENCH_PERCPU_FLOWS4, key4(&words), &s, &info);
                    } else {
                        let words = info.key6_words();
                        // SAFETY: FlowKey is exactly these 40 bytes of plain integers.
                        let key = unsafe { &*words.as_ptr().cast::<FlowKey>() };
                        record_percpu(&BENCH_PERCPU_FLOWS6, key, &s, &info);
                    }
                }
            }
            Parsed::Other(c) => bump(&BENCH_COUNTERS, c, 1),
        }
        xdp_action::XDP_PASS
    }

    #[inline(always)]
    fn record_percpu<K>(
        flows: &PerCpuHashMap<K, FlowStats>,
        key: &K,
        s: &Sample,
        info: &PacketInfo,
    ) {
        if let Some(v) = flows.get_ptr_mut(key) {
            // SAFETY: this CPU's copy of a live map value; no other CPU writes it.
            unsafe {
                (*v).bytes += s.bytes;
                (*v).size_buckets[s.bucket_a & (SIZE_BUCKETS - 1)] += s.count_a;
                if s.count_b != 0 {
                    (*v).size_buckets[s.bucket_b & (SIZE_BUCKETS - 1)] += s.count_b;
                }
                if info.tcp_flags & netprobe_ebpf::tcp_flags::CONTROL != 0 {
                    (*v).tcp_control += netprobe_ebpf::tcp_control::increment(info.tcp_flags);
                }
            }
        } else if flows.insert(key, FlowStats::default(), 0).is_err() {
            bump(
                &BENCH_COUNTERS,
                netprobe_ebpf::Counter::MapFullPackets,
                s.packets(),
            );
        }
    }

    // Where a flow's first packet spends its time, under traffic: the same parse and sample
    // as the TC program, then one way of creating the flow's entry, each in its own table of
    // the production size (user space sizes these before load; `load_bench` leaves them at 1).

    #[map]
    static V_TWO: HashMap<FlowKey4, FlowStats> = HashMap::with_max_entries(1, 0);
    #[map]
    static V_ONE: HashMap<FlowKey4, FlowStats> = HashMap::with_max_entries(1, 0);
    #[map]
    static V_NOCLOCK: HashMap<FlowKey4, FlowStats> = HashMap::with_max_entries(1, 0);
    #[map]
    static V_NOPREALLOC: HashMap<FlowKey4, FlowStats> = HashMap::with_max_entries(1, 1);
    #[map]
    static V_LRU: LruHashMap<FlowKey4, FlowStats> = LruHashMap::with_max_entries(1, 0);
    #[map]
    static V_KEY40: HashMap<FlowKey, FlowStats> = HashMap::with_max_entries(1, 0);
    #[map]
    static V_PERCPU: PerCpuHashMap<FlowKey4, FlowStats> = PerCpuHashMap::with_max_entries(1, 0);

    /// The IPv4 key words and sample of a TC packet, as the production program makes them.
    #[inline(always)]
    fn tc_sample(ctx: &TcContext) -> Option<([u64; 2], Sample)> {
        let (data, end) = (ctx.data(), ctx.data_end());
        let Parsed::Ip(info) = parse_ethernet(data, end) else {
            return None;
        };
        // SAFETY: plain reads of context fields.
        let (len, gso_segs) = unsafe { ((*ctx.skb.skb).len, (*ctx.skb.skb).gso_segs) };
        let frame = Frame::Skb {
            len,
            gso_segs,
            gso_size: 0,
        };
        if info.version != 4 {
            return None;
        }
        sample(&BENCH_COUNTERS, &info, frame).map(|s| (info.key4_words(), s))
    }

    /// Creates the entry with the sample in it (one update), or adds.
    macro_rules! one_update {
        ($map:expr, $key:expr, $s:expr, $now:expr) => {
            match $map.get_ptr_mut($key) {
                // SAFETY: a value pointer from the lookup just above.
                Some(v) => unsafe { add(v, $s, 0) },
                None => {
                    let mut fresh = core::mem::MaybeUninit::<FlowStats>::uninit();
                    init_with_sample(&mut fresh, $now, $s, 0);
                    // SAFETY: `init_with_sample` wrote every word.
                    let _ = $map.insert($key, unsafe { fresh.assume_init_ref() }, 1);
                }
            }
        };
    }

    /// The production path: insert a zeroed entry, look it up again, add.
    #[classifier]
    pub fn bench_v_two(ctx: TcContext) -> i32 {
        if let Some((w, s)) = tc_sample(&ctx) {
            let mut v = V_TWO.get_ptr_mut(key4(&w));
            if v.is_none() {
                let mut fresh = core::mem::MaybeUninit::<FlowStats>::uninit();
                let zero = Sample::single(0);
                init_with_sample(&mut fresh, now_ns(), &Sample { count_a: 0, ..zero }, 0);
                // SAFETY: `init_with_sample` wrote every word.
                let _ = V_TWO.insert(key4(&w), unsafe { fresh.assume_init_ref() }, 1);
                v = V_TWO.get_ptr_mut(key4(&w));
            }
            if let Some(v) = v {
                // SAFETY: a value pointer from the lookup just above.
                unsafe { add(v, &s, 0) };
            }
        }
        TC_ACT_UNSPEC
    }

    /// One update instead.
    #[classifier]
    pub fn bench_v_one(ctx: TcContext) -> i32 {
        if let Some((w, s)) = tc_sample(&ctx) {
            one_update!(V_ONE, key4(&w), &s, now_ns());
        }
        TC_ACT_UNSPEC
    }

    /// One update without reading the clock.
    #[classifier]
    pub fn bench_v_noclock(ctx: TcContext) -> i32 {
        if let Some((w, s)) = tc_sample(&ctx) {
            one_update!(V_NOCLOCK, key4(&w), &s, 0);
        }
        TC_ACT_UNSPEC
    }

    /// One update into a table without preallocated entries (BPF_F_NO_PREALLOC).
    #[classifier]
    pub fn bench_v_noprealloc(ctx: TcContext) -> i32 {
        if let Some((w, s)) = tc_sample(&ctx) {
            one_update!(V_NOPREALLOC, key4(&w), &s, now_ns());
        }
        TC_ACT_UNSPEC
    }

    /// One update into an LRU hash.
    #[classifier]
    pub fn bench_v_lru(ctx: TcContext) -> i32 {
        if let Some((w, s)) = tc_sample(&ctx) {
            one_update!(V_LRU, key4(&w), &s, now_ns());
        }
        TC_ACT_UNSPEC
    }

    /// One update with the 40-byte (IPv6-sized) key.
    #[classifier]
    pub fn bench_v_key40(ctx: TcContext) -> i32 {
        if let Some((w, s)) = tc_sample(&ctx) {
            let words = [w[0], w[1], 0, 0, 0];
            // SAFETY: FlowKey is exactly these 40 bytes of plain integers.
            let key = unsafe { &*words.as_ptr().cast::<FlowKey>() };
            one_update!(V_KEY40, key, &s, now_ns());
        }
        TC_ACT_UNSPEC
    }

    /// One update into a per-CPU table, plain adds.
    #[classifier]
    pub fn bench_v_percpu(ctx: TcContext) -> i32 {
        if let Some((w, s)) = tc_sample(&ctx) {
            if let Some(v) = V_PERCPU.get_ptr_mut(key4(&w)) {
                // SAFETY: this CPU's copy of a live value.
                unsafe {
                    (*v).bytes += s.bytes;
                    (*v).size_buckets[s.bucket_a & (SIZE_BUCKETS - 1)] += s.count_a;
                }
            } else {
                let mut fresh = core::mem::MaybeUninit::<FlowStats>::uninit();
                init_with_sample(&mut fresh, now_ns(), &s, 0);
                // SAFETY: `init_with_sample` wrote every word.
                let _ = V_PERCPU.insert(key4(&w), unsafe { fresh.assume_init_ref() }, 1);
            }
        }
        TC_ACT_UNSPEC
    }

    #[panic_handler]
    fn panic(_info: &core::panic::PanicInfo) -> ! {
        loop {}
    }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
#[cfg(target_arch = "bpf")]
static LICENSE: [u8; 4] = *b"GPL\0";
