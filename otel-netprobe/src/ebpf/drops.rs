//! The drop program's set-up: what the running kernel's BTF says (the `sk_buff` offsets it
//! reads, whether its tracepoint carries a reason, the reasons' names), and loading and
//! attaching it. Drops are an addition: a kernel without BTF, or one whose verifier refuses
//! the program, runs the agent without them, said once in the log and in the agent's metrics.

use aya::{Ebpf, programs::RawTracePoint};
use netprobe_ebpf::{DROP_PROGRAM, DROP_PROGRAM_NO_REASON};
use tracing::{info, warn};

use super::{
    btf::{Btf, DropReasons, SkbLayout},
    kernel,
};

/// What the drop program needs to know of this kernel.
#[derive(Debug)]
pub struct DropSetup {
    /// Where it finds the packet in an `sk_buff`.
    pub layout: SkbLayout,
    /// The reasons by number (`None` before 5.17: the tracepoint has no reason).
    pub reasons: Option<DropReasons>,
}

impl DropSetup {
    /// From the running kernel's BTF; `None` (said once) when it has none, or not the fields.
    pub fn probe() -> Option<Self> {
        let release = kernel::release();
        let btf = match Btf::running() {
            Ok(b) => b,
            Err(e) => {
                warn!(kernel = %release, error = %e, "no BTF: dropped packets are not counted");
                return None;
            }
        };
        let layout = match SkbLayout::of(&btf) {
            Ok(l) => l,
            Err(e) => {
                warn!(kernel = %release, error = %e, "the kernel's BTF lacks what the drop program reads: dropped packets are not counted");
                return None;
            }
        };
        let reasons = DropReasons::of(&btf).ok();
        if reasons.is_none() {
            info!(kernel = %release, "no drop reasons before 5.17: drops are counted with reason `unknown`");
        }
        Some(Self { layout, reasons })
    }
}

/// Loads the drop program that fits the kernel (with or without the reason argument) and
/// attaches it to `kfree_skb`; whether it runs.
pub fn start(ebpf: &mut Ebpf, setup: &DropSetup) -> bool {
    let name = if setup.reasons.is_some() {
        DROP_PROGRAM
    } else {
        DROP_PROGRAM_NO_REASON
    };
    let Some(prog) = ebpf
        .program_mut(name)
        .and_then(|p| <&mut RawTracePoint>::try_from(p).ok())
    else {
        warn!(program = name, "the eBPF object has no drop program");
        return false;
    };
    if let Err(e) = prog
        .load()
        .and_then(|()| prog.attach("kfree_skb").map(|_| ()))
    {
        warn!(kernel = %kernel::release(), program = name, error = %e, "the drop program did not start: dropped packets are not counted");
        return false;
    }
    true
}
