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
        maps::{HashMap, PerCpuArray, PerCpuHashMap},
        programs::{RawTracePointContext, TcContext, XdpContext},
    };
    use netprobe_ebpf::{
        COUNTER_SLOTS, FlowKey, FlowKey4, FlowStats, SIZE_BUCKETS,
        count::{Frame, Sample, bump, sample},
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
