//! otel-netprobe's eBPF programs: entry points and map definitions only.
//!
//! One parsing-and-counting core ([`netprobe_ebpf::parse`], [`netprobe_ebpf::count::on_packet`])
//! with these entry points: XDP on uplinks whose driver runs XDP natively, TC (TCX) ingress on
//! virtual interfaces, TC egress for locally originated packets, and the TC pair for devices
//! without a link-layer header. Every program always lets the packet through.
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
        maps::{HashMap, PerCpuArray},
        programs::{TcContext, XdpContext},
    };
    use netprobe_ebpf::{
        COUNTER_SLOTS, DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY, FlowKey, FlowKey4,
        FlowStats,
        count::{Frame, Tables, on_packet},
        parse::{parse_ethernet, parse_l3},
    };

    /// The IPv4 flow table: one shared value per flow (memory figures in the README). User
    /// space sizes it before load.
    #[map]
    static FLOWS4: HashMap<FlowKey4, FlowStats> =
        HashMap::with_max_entries(DEFAULT_FLOW4_CAPACITY, 0);

    /// The IPv6 flow table.
    #[map]
    static FLOWS6: HashMap<FlowKey, FlowStats> =
        HashMap::with_max_entries(DEFAULT_FLOW6_CAPACITY, 0);

    /// Global counters (non-IP, malformed per layer, fragments, table full), per CPU.
    #[map]
    static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

    const TABLES: Tables<'static> = Tables {
        v4: &FLOWS4,
        v6: &FLOWS6,
        counters: &COUNTERS,
    };

    #[xdp]
    pub fn netprobe_xdp(ctx: XdpContext) -> u32 {
        let (data, end) = (ctx.data(), ctx.data_end());
        let frame = Frame::Xdp {
            len: (end - data) as u32,
        };
        on_packet(&TABLES, &parse_ethernet(data, end), frame);
        xdp_action::XDP_PASS
    }

    /// Counts one skb; `l3` for devices whose packets start at the IP header.
    #[inline(always)]
    fn count_skb(ctx: &TcContext, l3: bool) {
        let skb = ctx.skb.skb;
        // SAFETY: `skb` is the context pointer the kernel passed; these are plain field reads
        // (the verifier rewrites them into loads from the sk_buff and its shared info, so the
        // ones not always needed are read only when they are).
        let (len, gso_segs) = unsafe { ((*skb).len, (*skb).gso_segs) };
        let gso_size = if gso_segs > 1 {
            // SAFETY: as above.
            unsafe { (*skb).gso_size }
        } else {
            0
        };
        let parsed = if l3 {
            // SAFETY: as above.
            let proto = unsafe { (*skb).protocol };
            parse_l3(ctx.data(), ctx.data_end(), u16::from_be(proto as u16))
        } else {
            parse_ethernet(ctx.data(), ctx.data_end())
        };
        let frame = Frame::Skb {
            len,
            gso_segs,
            gso_size,
        };
        on_packet(&TABLES, &parsed, frame);
    }

    /// TC/TCX ingress: every packet entering through a virtual interface. Returns
    /// `TC_ACT_UNSPEC` (TCX "next") so programs after ours still run.
    #[classifier]
    pub fn netprobe_tc_ingress(ctx: TcContext) -> i32 {
        count_skb(&ctx, false);
        TC_ACT_UNSPEC
    }

    /// TC/TCX ingress on a device without a link-layer header (TUN, WireGuard, IPIP).
    #[classifier]
    pub fn netprobe_tc_ingress_l3(ctx: TcContext) -> i32 {
        count_skb(&ctx, true);
        TC_ACT_UNSPEC
    }

    /// TC/TCX egress of locally originated packets on a device without a link-layer header.
    #[classifier]
    pub fn netprobe_tc_egress_l3(ctx: TcContext) -> i32 {
        if locally_originated(&ctx) {
            count_skb(&ctx, true);
        }
        TC_ACT_UNSPEC
    }

    #[inline(always)]
    fn locally_originated(ctx: &TcContext) -> bool {
        // SAFETY: plain read of a context field. Forwarded (and bridged) packets carry the
        // index of the interface they entered through, where they were counted.
        unsafe { (*ctx.skb.skb).ingress_ifindex == 0 }
    }

    /// TC/TCX egress: only locally originated packets (no ingress interface), so forwarded
    /// packets, already counted where they entered, are not counted twice.
    #[classifier]
    pub fn netprobe_tc_egress(ctx: TcContext) -> i32 {
        if locally_originated(&ctx) {
            count_skb(&ctx, false);
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
