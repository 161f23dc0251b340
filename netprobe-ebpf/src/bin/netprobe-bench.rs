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
        macros::{classifier, map, xdp},
        maps::{PerCpuArray, PerCpuHashMap},
        programs::{TcContext, XdpContext},
    };
    use netprobe_ebpf::{
        COUNTER_SLOTS, FlowKey, FlowKey4, FlowStats,
        count::{Sample, count_other, record_percpu, xdp_sample},
        parse::{Parsed, parse_ethernet},
    };

    #[map]
    static BENCH_PERCPU_FLOWS4: PerCpuHashMap<FlowKey4, FlowStats> =
        PerCpuHashMap::with_max_entries(4096, 0);

    #[map]
    static BENCH_PERCPU_FLOWS6: PerCpuHashMap<FlowKey, FlowStats> =
        PerCpuHashMap::with_max_entries(4096, 0);

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

    #[map]
    static BENCH_SHARED_FLOWS: aya_ebpf::maps::HashMap<FlowKey, FlowStats> =
        aya_ebpf::maps::HashMap::with_max_entries(4096, 0);

    /// Parsing alone (the result is kept so the work is not optimised away).
    #[xdp]
    pub fn bench_xdp_parse(ctx: XdpContext) -> u32 {
        if let Parsed::Ip(info) = parse_ethernet(ctx.data(), ctx.data_end())
            && let Some(slot) = BENCH_COUNTERS.get_ptr_mut(0)
        {
            // SAFETY: this CPU's slot of a per-CPU array.
            unsafe { *slot += u64::from(info.key.dst_port) + u64::from(info.ip_len) };
        }
        xdp_action::XDP_PASS
    }

    /// Parsing and the flow-table lookup, without the update.
    #[xdp]
    pub fn bench_xdp_lookup(ctx: XdpContext) -> u32 {
        if let Parsed::Ip(info) = parse_ethernet(ctx.data(), ctx.data_end())
            && BENCH_SHARED_FLOWS.get_ptr(info.key).is_none()
        {
            let _ = BENCH_SHARED_FLOWS.insert(info.key, FlowStats::default(), 0);
        }
        xdp_action::XDP_PASS
    }

    #[map]
    static BENCH_V4_FLOWS: aya_ebpf::maps::HashMap<[u32; 4], FlowStats> =
        aya_ebpf::maps::HashMap::with_max_entries(4096, 0);

    /// Parsing and a lookup with a 16-byte IPv4 key.
    #[xdp]
    pub fn bench_xdp_lookup4(ctx: XdpContext) -> u32 {
        if let Parsed::Ip(info) = parse_ethernet(ctx.data(), ctx.data_end()) {
            let k = &info.key;
            let key = [
                k.src_addr[0],
                k.dst_addr[0],
                u32::from(k.src_port) << 16 | u32::from(k.dst_port),
                u32::from(k.protocol),
            ];
            if BENCH_V4_FLOWS.get_ptr(key).is_none() {
                let _ = BENCH_V4_FLOWS.insert(key, FlowStats::default(), 0);
            }
        }
        xdp_action::XDP_PASS
    }

    /// Where the time goes: lookup and atomic adds, with a constant instead of the clock.
    #[xdp]
    pub fn bench_xdp_noclock(ctx: XdpContext) -> u32 {
        if let Parsed::Ip(info) = parse_ethernet(ctx.data(), ctx.data_end()) {
            let key = FlowKey4::narrow(&info.key);
            match BENCH_SHARED4.get_ptr_mut(key) {
                // SAFETY: a value pointer from the lookup just above.
                Some(v) => unsafe {
                    netprobe_ebpf::count::add_shared(
                        v,
                        &Sample::single(info.ip_len),
                        info.tcp_flags,
                        1,
                    );
                },
                None => {
                    let _ = BENCH_SHARED4.insert(key, FlowStats::default(), 0);
                }
            }
        }
        xdp_action::XDP_PASS
    }

    /// Where the time goes: lookup, clock, and plain (non-atomic) adds.
    #[xdp]
    pub fn bench_xdp_plainadd(ctx: XdpContext) -> u32 {
        if let Parsed::Ip(info) = parse_ethernet(ctx.data(), ctx.data_end()) {
            let key = FlowKey4::narrow(&info.key);
            let now = netprobe_ebpf::count::now_coarse();
            match BENCH_SHARED4.get_ptr_mut(key) {
                // SAFETY: a value pointer from the lookup just above.
                Some(v) => unsafe {
                    let s = Sample::single(info.ip_len);
                    (*v).bytes += s.bytes;
                    (*v).size_buckets[s.bucket_a & 7] += s.count_a;
                    (*v).last_seen_ns = now;
                },
                None => {
                    let _ = BENCH_SHARED4.insert(key, FlowStats::default(), 0);
                }
            }
        }
        xdp_action::XDP_PASS
    }

    #[map]
    static BENCH_SHARED4: aya_ebpf::maps::HashMap<FlowKey4, FlowStats> =
        aya_ebpf::maps::HashMap::with_max_entries(4096, 0);

    #[xdp]
    pub fn bench_xdp_percpu(ctx: XdpContext) -> u32 {
        let (data, end) = (ctx.data(), ctx.data_end());
        let parsed = parse_ethernet(data, end);
        if let Parsed::Ip(info) = &parsed {
            if let Some(sample) = xdp_sample(&BENCH_COUNTERS, info, (end - data) as u32) {
                if info.key.ip_version == 4 {
                    let key = FlowKey4::narrow(&info.key);
                    record_percpu(
                        &BENCH_PERCPU_FLOWS4,
                        &BENCH_COUNTERS,
                        &key,
                        &sample,
                        info.tcp_flags,
                    );
                } else {
                    record_percpu(
                        &BENCH_PERCPU_FLOWS6,
                        &BENCH_COUNTERS,
                        &info.key,
                        &sample,
                        info.tcp_flags,
                    );
                }
            }
        } else {
            count_other(&BENCH_COUNTERS, &parsed);
        }
        xdp_action::XDP_PASS
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
