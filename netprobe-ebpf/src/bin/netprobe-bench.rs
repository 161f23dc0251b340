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
        COUNTER_SLOTS, FlowKey, FlowStats,
        count::{count_other, record_percpu, xdp_sample},
        parse::{Parsed, parse_ethernet},
    };

    #[map]
    static BENCH_PERCPU_FLOWS: PerCpuHashMap<FlowKey, FlowStats> =
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

    #[xdp]
    pub fn bench_xdp_percpu(ctx: XdpContext) -> u32 {
        let (data, end) = (ctx.data(), ctx.data_end());
        let parsed = parse_ethernet(data, end);
        if let Parsed::Ip(info) = &parsed {
            if let Some(sample) = xdp_sample(&BENCH_COUNTERS, info, (end - data) as u32) {
                record_percpu(
                    &BENCH_PERCPU_FLOWS,
                    &BENCH_COUNTERS,
                    &info.key,
                    &sample,
                    info.tcp_flags,
                );
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
