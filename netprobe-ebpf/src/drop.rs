//! Dropped packets, from the `kfree_skb` raw tracepoint (BPF target only): the flow the packet
//! belongs to, read from the `sk_buff` with `bpf_probe_read_kernel` at offsets user space
//! resolved from the kernel's BTF (load-time globals), and the kernel's reason for the drop
//! (the tracepoint's third argument from 5.17; [`crate::UNKNOWN_REASON`] before).
//!
//! A raw tracepoint needs neither tracefs nor BTF-based trampolines. The address family comes
//! from `skb->protocol`, not from a MAC header, which a dropped buffer may not have.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

use aya_ebpf::{
    helpers::bpf_probe_read_kernel,
    maps::{HashMap, PerCpuArray},
    programs::RawTracePointContext,
};

use crate::{Counter, DropKey, DropStats, count::bump, parse::proto};

/// The `sk_buff` offsets, as user space sets them before load.
pub struct SkbOffsets {
    /// `head`.
    pub head: u32,
    /// `network_header`.
    pub network_header: u32,
    /// `transport_header`.
    pub transport_header: u32,
    /// `protocol`.
    pub protocol: u32,
}

/// Reads a `T` at `base + off` of kernel memory.
#[inline(always)]
fn read<T>(base: *const u8, off: usize) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a fault is an error, not a crash.
    unsafe { bpf_probe_read_kernel(base.wrapping_add(off).cast::<T>()).ok() }
}

/// The flow (as [`FlowKey`]'s five words) and IP length of the packet in `skb`, or `None` when
/// it is not (readable) IP.
#[inline(always)]
fn flow_of(skb: *const u8, o: &SkbOffsets) -> Option<([u64; 5], u32)> {
    let protocol = u16::from_be(read::<u16>(skb, o.protocol as usize)?);
    let head = read::<u64>(skb, o.head as usize)? as *const u8;
    let nh = usize::from(read::<u16>(skb, o.network_header as usize)?);
    let th = read::<u16>(skb, o.transport_header as usize)?;
    let ip = head.wrapping_add(nh);
    let (mut words, ip_len, l4, next) = match protocol {
        0x0800 => {
            let h: [u32; 5] = read(ip, 0)?;
            let w0 = u32::from_be(h[0]);
            if w0 >> 28 != 4 {
                return None;
            }
            let frag = u32::from_be(h[1]) & 0x1FFF != 0;
            let next = ((u32::from_be(h[2]) >> 16) & 0xFF) as u8;
            let ihl = ((w0 >> 24) & 0xF) as usize * 4;
            let words = [u64::from(h[3]), 0, u64::from(h[4]), 0, 4 << 40];
            (words, w0 & 0xFFFF, (!frag).then_some(ihl), next)
        }
        0x86DD => {
            let h: [u64; 5] = read(ip, 0)?;
            let first = u64::from_be(h[0]);
            if first >> 60 != 6 {
                return None;
            }
            let next = ((first >> 8) & 0xFF) as u8;
            let payload = ((first >> 16) & 0xFFFF) as u32;
            // The addresses are the next 32 bytes, as the key stores them.
            let words = [h[1], h[2], h[3], h[4], 6 << 40];
            // Extension headers: the transport header, when the stack set it.
            let l4 = if next == proto::TCP || next == proto::UDP {
                Some(40)
            } else if th != u16::MAX && usize::from(th) > nh {
                Some(usize::from(th) - nh)
            } else {
                None
            };
            (words, payload + 40, l4, next)
        }
        _ => return None,
    };
    words[4] |= u64::from(next) << 32;
    if let Some(l4) = l4
        && (next == proto::TCP || next == proto::UDP)
    {
        words[4] |= u64::from(read::<u32>(ip, l4)?);
    }
    Some((words, ip_len))
}

/// Records the drop of `skb` for `reason`.
#[inline(always)]
pub fn on_drop(
    ctx: &RawTracePointContext,
    reason: u32,
    offsets: &SkbOffsets,
    drops: &HashMap<DropKey, DropStats>,
    counters: &PerCpuArray<u64>,
) {
    let skb: *const u8 = ctx.arg(0);
    let Some((flow, ip_len)) = flow_of(skb, offsets) else {
        bump(counters, Counter::DropsUnparsed, 1);
        return;
    };
    let words = [
        flow[0],
        flow[1],
        flow[2],
        flow[3],
        flow[4],
        u64::from(reason),
    ];
    // SAFETY: DropKey is the first 44 bytes of these 48, plain integers (the FlowKey's five
    // words, then the reason).
    let key = unsafe { &*words.as_ptr().cast::<DropKey>() };
    let mut entry = drops.get_ptr_mut(key);
    if entry.is_none() {
        let zero = [0u64; 2];
        // SAFETY: DropStats is these 16 bytes.
        let zero = unsafe { &*zero.as_ptr().cast::<DropStats>() };
        let _ = drops.insert(key, zero, 1);
        entry = drops.get_ptr_mut(key);
    }
    match entry {
        // SAFETY: a value pointer from the lookup just above; every writer adds atomically.
        Some(v) => unsafe {
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(&raw mut (*v).packets, 1);
            atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(
                &raw mut (*v).bytes,
                u64::from(ip_len),
            );
        },
        None => bump(counters, Counter::DropsUntracked, 1),
    }
}
