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
        macros::{classifier, map, raw_tracepoint, xdp},
        maps::{HashMap, LruHashMap, PerCpuArray},
        programs::{RawTracePointContext, TcContext, XdpContext},
    };
    use netprobe_ebpf::{
        COUNTER_SLOTS, Conn, ConnEnd, ConnKey, DEFAULT_CONNS_CAPACITY, DEFAULT_DROPS_CAPACITY,
        DEFAULT_FLOW4_CAPACITY, DEFAULT_FLOW6_CAPACITY, DEFAULT_ICMP_ERRORS_CAPACITY, DropKey,
        DropStats, FlowKey, FlowKey4, FlowStats, IFACE_SLOTS, IcmpErrorKey, IfaceSlot,
        UNKNOWN_REASON,
        conn::ConnTables,
        count::{Frame, Packet, Tables, on_packet},
        drop::{SkbOffsets, on_drop},
        iface,
        parse::{load8, parse_ethernet, parse_l3},
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

    /// ICMP errors per answered flow, type and code.
    #[map]
    static ICMP_ERRORS: HashMap<IcmpErrorKey, u64> =
        HashMap::with_max_entries(DEFAULT_ICMP_ERRORS_CAPACITY, 0);

    /// TCP connections by client port and ISN (an LRU: the reader counts what it evicts).
    #[map]
    static CONNS: LruHashMap<ConnKey, Conn> =
        LruHashMap::with_max_entries(DEFAULT_CONNS_CAPACITY, 0);

    /// Client ends of the connections, to find one from a FIN or RST.
    #[map]
    static CONN_ENDS: LruHashMap<ConnEnd, ConnKey> =
        LruHashMap::with_max_entries(2 * DEFAULT_CONNS_CAPACITY, 0);

    /// What each ingress program saw per interface (coverage), per CPU; user space tags the
    /// slots.
    #[map]
    static IFACES: PerCpuArray<IfaceSlot> = PerCpuArray::with_max_entries(IFACE_SLOTS, 0);

    const TABLES: Tables<'static> = Tables {
        v4: &FLOWS4,
        v6: &FLOWS6,
        icmp_errors: &ICMP_ERRORS,
        conns: ConnTables {
            conns: &CONNS,
            ends: &CONN_ENDS,
        },
        counters: &COUNTERS,
    };

    #[xdp]
    pub fn netprobe_xdp(ctx: XdpContext) -> u32 {
        let (data, end) = (ctx.data(), ctx.data_end());
        // SAFETY: a plain read of a context field.
        let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
        iface::on_frame(&IFACES, &COUNTERS, ifindex, (end - data) as u32);
        let packet = Packet {
            data,
            end,
            ifindex: || ifindex,
            frame: Frame::Xdp {
                len: (end - data) as u32,
            },
            load8: |off| load8(data, end, off),
        };
        on_packet(&TABLES, &packet, &parse_ethernet(data, end));
        xdp_action::XDP_PASS
    }

    /// Counts one skb; `l3` for devices whose packets start at the IP header; `ingress` also
    /// in the interface's coverage slot.
    #[inline(always)]
    fn count_skb(ctx: &TcContext, l3: bool, ingress: bool) {
        let skb = ctx.skb.skb;
        if ingress {
            // SAFETY: as below.
            let (ifindex, len) = unsafe { ((*skb).ifindex, (*skb).len) };
            iface::on_frame(&IFACES, &COUNTERS, ifindex, len);
        }
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
        let (data, end) = (ctx.data(), ctx.data_end());
        let parsed = if l3 {
            // SAFETY: as above.
            let proto = unsafe { (*skb).protocol };
            parse_l3(data, end, u16::from_be(proto as u16))
        } else {
            parse_ethernet(data, end)
        };
        let packet = Packet {
            data,
            end,
            // SAFETY: as above.
            ifindex: || unsafe { (*skb).ifindex },
            frame: Frame::Skb {
                len,
                gso_segs,
                gso_size,
            },
            load8: |off| ctx.load::<[u16; 4]>(off).ok(),
        };
        on_packet(&TABLES, &packet, &parsed);
    }

    /// TC/TCX ingress: every packet entering through a virtual interface. Returns
    /// `TC_ACT_UNSPEC` (TCX "next") so programs after ours still run.
    #[classifier]
    pub fn netprobe_tc_ingress(ctx: TcContext) -> i32 {
        count_skb(&ctx, false, true);
        TC_ACT_UNSPEC
    }

    /// TC/TCX ingress on a device without a link-layer header (TUN, WireGuard, IPIP).
    #[classifier]
    pub fn netprobe_tc_ingress_l3(ctx: TcContext) -> i32 {
        count_skb(&ctx, true, true);
        TC_ACT_UNSPEC
    }

    /// TC/TCX egress of locally originated packets on a device without a link-layer header.
    #[classifier]
    pub fn netprobe_tc_egress_l3(ctx: TcContext) -> i32 {
        if locally_originated(&ctx) {
            count_skb(&ctx, true, false);
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
            count_skb(&ctx, false, false);
        }
        TC_ACT_UNSPEC
    }

    /// Dropped packets per flow and reason.
    #[map]
    static DROPS: HashMap<DropKey, DropStats> =
        HashMap::with_max_entries(DEFAULT_DROPS_CAPACITY, 0);

    // `sk_buff` offsets from the running kernel's BTF, set by user space before load
    // (netprobe_ebpf::skb_offsets names them); read volatile so they are not folded to 0.
    #[unsafe(no_mangle)]
    static SKB_HEAD: u32 = 0;
    #[unsafe(no_mangle)]
    static SKB_NETWORK_HEADER: u32 = 0;
    #[unsafe(no_mangle)]
    static SKB_TRANSPORT_HEADER: u32 = 0;
    #[unsafe(no_mangle)]
    static SKB_PROTOCOL: u32 = 0;

    #[inline(always)]
    fn skb_offsets() -> SkbOffsets {
        // SAFETY: reads of our own statics.
        unsafe {
            SkbOffsets {
                head: core::ptr::read_volatile(&raw const SKB_HEAD),
                network_header: core::ptr::read_volatile(&raw const SKB_NETWORK_HEADER),
                transport_header: core::ptr::read_volatile(&raw const SKB_TRANSPORT_HEADER),
                protocol: core::ptr::read_volatile(&raw const SKB_PROTOCOL),
            }
        }
    }

    /// Every dropped buffer, with the kernel's reason (the tracepoint's third argument, 5.17).
    #[raw_tracepoint(tracepoint = "kfree_skb")]
    pub fn netprobe_drop(ctx: RawTracePointContext) -> i32 {
        let reason: u64 = ctx.arg(2);
        on_drop(&ctx, reason as u32, &skb_offsets(), &DROPS, &COUNTERS);
        0
    }

    /// As `netprobe_drop`, for kernels whose tracepoint has no reason (before 5.17).
    #[raw_tracepoint(tracepoint = "kfree_skb")]
    pub fn netprobe_drop_old(ctx: RawTracePointContext) -> i32 {
        on_drop(&ctx, UNKNOWN_REASON, &skb_offsets(), &DROPS, &COUNTERS);
        0
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
