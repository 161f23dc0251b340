//! The attachments that survive a restart, and the in-place replacement that lets a new agent
//! take them over without detaching (a detach, on some NIC drivers, resets the link).
//!
//! XDP and TCX attachments are bpf_links pinned in the pin directory ([`super::pin`]); a new
//! agent opens the pin and swaps its freshly loaded program into the link
//! (`BPF_LINK_UPDATE`). Before 6.6, TC programs are cls_bpf filters on a clsact qdisc, which
//! the kernel keeps with no file at all: ours sit at a fixed priority and handle, and a new
//! agent replaces the filter there. aya detaches a link when its handle is dropped, except a
//! pinned bpf_link (closing one descriptor leaves the pin's reference): so a stop that keeps
//! the attachments forgets the netlink filters' handles ([`release`]).

use std::path::Path;

use aya::programs::{
    LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
    links::{FdLink, PinnedLink},
    tc::{NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle},
    xdp::XdpLink,
};
use tracing::warn;

use super::{attach::TcMode, pin::PinDir};

/// Priority of our cls_bpf filters (clsact, kernels before 6.6): first, so we see every packet
/// before another filter can redirect or drop it (ours return "unspec": the rest still run).
pub const CLSACT_PRIORITY: u16 = 1;
/// Handle of our cls_bpf filters at [`CLSACT_PRIORITY`] ("np").
pub const CLSACT_HANDLE: u32 = 0x6e70;

/// An attachment this agent holds.
pub enum Held {
    /// XDP (a bpf_link).
    Xdp(XdpLink),
    /// TC: a TCX bpf_link, or a cls_bpf filter.
    Tc(SchedClassifierLink, TcMode),
}

/// Lets go of an attachment: detaches it, unless `keep` (then a pinned bpf_link stays with its
/// pin, and a cls_bpf filter stays in the kernel).
pub fn release(held: Held, keep: bool) {
    match held {
        Held::Tc(link, TcMode::Clsact) if keep => std::mem::forget(link),
        // A pinned bpf_link's handle only closes a descriptor; an unpinned one detaches.
        other => drop(other),
    }
}

/// The link pinned at `path`.
fn open_pin(path: &Path) -> Result<FdLink, String> {
    PinnedLink::from_pin(path)
        .map(FdLink::from)
        .map_err(|e| e.to_string())
}

/// Pins `fd` at `path`; `None` (the link detached with the failed pin) on failure.
fn pin(fd: FdLink, path: &Path) -> Option<FdLink> {
    let _ = std::fs::remove_file(path);
    match fd.pin(path) {
        Ok(pinned) => Some(FdLink::from(pinned)),
        Err(e) => {
            warn!(pin = %path.display(), error = %e, "pinning a link failed; attaching unpinned");
            None
        }
    }
}

/// Attaches `xdp` to interface `index`: into our pinned link when there is one (in place),
/// else a new link, pinned. Returns the link and whether it replaced one.
pub fn xdp(
    xdp: &mut Xdp,
    index: u32,
    mode: XdpMode,
    pins: Option<&PinDir>,
) -> Result<(XdpLink, bool), ProgramError> {
    if let Some(path) = pins.map(|p| p.link("xdp", index)) {
        if path.exists() {
            let replaced = open_pin(&path).and_then(|fd| {
                let link = XdpLink::try_from(fd).map_err(|e| e.to_string())?;
                let id = xdp.attach_to_link(link).map_err(|e| e.to_string())?;
                xdp.take_link(id).map_err(|e| e.to_string())
            });
            match replaced {
                Ok(link) => return Ok((link, true)),
                Err(e) => {
                    warn!(pin = %path.display(), error = %e, "a pinned XDP link could not be taken over; attaching anew");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let id = xdp.attach_to_if_index(index, mode)?;
        let link = xdp.take_link(id)?;
        let Ok(fd) = FdLink::try_from(link) else {
            // A netlink attachment (no bpf_link on this kernel): nothing to pin.
            let id = xdp.attach_to_if_index(index, mode)?;
            return Ok((xdp.take_link(id)?, false));
        };
        if let Some(fd) = pin(fd, &path) {
            let link = XdpLink::try_from(fd)
                .map_err(|e| ProgramError::IOError(std::io::Error::other(e)))?;
            return Ok((link, false));
        }
    }
    let id = xdp.attach_to_if_index(index, mode)?;
    Ok((xdp.take_link(id)?, false))
}

/// Attaches `tc` to interface `name` (`index`) in direction `dir`: into our pinned TCX link or
/// our cls_bpf filter when there is one (in place), else anew (TCX, pinned, from 6.6; a
/// cls_bpf filter at our priority and handle before). Returns the link, how it is attached,
/// and whether it replaced one.
pub fn tc(
    tc: &mut SchedClassifier,
    name: &str,
    index: u32,
    dir: TcAttachType,
    pins: Option<&PinDir>,
) -> Result<(SchedClassifierLink, TcMode, bool), ProgramError> {
    let kind = if dir == TcAttachType::Ingress {
        "tcx-ingress"
    } else {
        "tcx-egress"
    };
    let path = pins.map(|p| p.link(kind, index));
    if let Some(path) = path.as_deref().filter(|p| p.exists()) {
        let replaced = open_pin(path).and_then(|fd| {
            let link = SchedClassifierLink::try_from(fd).map_err(|e| e.to_string())?;
            let id = tc.attach_to_link(link).map_err(|e| e.to_string())?;
            tc.take_link(id).map_err(|e| e.to_string())
        });
        match replaced {
            Ok(link) => return Ok((link, TcMode::Tcx, true)),
            Err(e) => {
                warn!(pin = %path.display(), error = %e, "a pinned TCX link could not be taken over; attaching anew");
                let _ = std::fs::remove_file(path);
            }
        }
    }
    // First in the TCX chain, so we see every packet before another program can redirect or
    // drop it; we return "next", so they all still run.
    let tcx = tc.attach_with_options(name, dir, TcAttachOptions::TcxOrder(LinkOrder::first()));
    match tcx {
        Ok(id) => {
            let link = tc.take_link(id)?;
            let Some(path) = path else {
                return Ok((link, TcMode::Tcx, false));
            };
            let fd = FdLink::try_from(link).map_err(|e| ProgramError::IOError(std::io::Error::other(e)))?;
            if let Some(fd) = pin(fd, &path) {
                let link = SchedClassifierLink::try_from(fd)
                    .map_err(|e| ProgramError::IOError(std::io::Error::other(e)))?;
                return Ok((link, TcMode::Tcx, false));
            }
            let id = tc.attach_with_options(name, dir, TcAttachOptions::TcxOrder(LinkOrder::first()))?;
            Ok((tc.take_link(id)?, TcMode::Tcx, false))
        }
        Err(tcx_error) => clsact(tc, name, dir).inspect_err(|_| {
            warn!(interface = %name, tcx = %tcx_error, "neither TCX nor a clsact qdisc accepted the TC program");
        }),
    }
}

/// Kernels before 6.6: our cls_bpf filter replaced in place, or added (on an existing clsact
/// qdisc too: its other filters keep running).
fn clsact(
    tc: &mut SchedClassifier,
    name: &str,
    dir: TcAttachType,
) -> Result<(SchedClassifierLink, TcMode, bool), ProgramError> {
    let handle = TcHandle::from(CLSACT_HANDLE);
    if let Ok(ours) = SchedClassifierLink::attached(name, dir, CLSACT_PRIORITY, handle, None) {
        // Replaces only an existing filter at our priority and handle (no NLM_F_CREATE).
        if let Ok(id) = tc.attach_to_link(ours) {
            return Ok((tc.take_link(id)?, TcMode::Clsact, true));
        }
    }
    let _ = aya::programs::tc::qdisc_add_clsact(name);
    let ours = NlOptions {
        priority: CLSACT_PRIORITY,
        handle,
        ..NlOptions::default()
    };
    let id = match tc.attach_with_options(name, dir, TcAttachOptions::Netlink(ours)) {
        Ok(id) => id,
        Err(e) => {
            // Our priority is taken by a filter of another protocol: any priority will do,
            // but the next agent will add its own filter instead of replacing this one.
            warn!(interface = %name, error = %e, "our clsact priority is taken; attaching at another");
            tc.attach_with_options(name, dir, TcAttachOptions::Netlink(NlOptions::default()))?
        }
    };
    Ok((tc.take_link(id)?, TcMode::Clsact, false))
}

/// Deletes our cls_bpf filters (by program name) from interface `name`; returns the
/// directions they were on. For `otel-netprobe cleanup`, which has no handles to them.
pub fn remove_filters(name: &str, programs: &[&str]) -> Vec<&'static str> {
    let mut removed = Vec::new();
    for (dir, label) in [
        (TcAttachType::Ingress, "ingress"),
        (TcAttachType::Egress, "egress"),
    ] {
        for prog in programs {
            if aya::programs::tc::qdisc_detach_program(name, dir, prog).is_ok() {
                removed.push(label);
            }
        }
    }
    removed
}

/// `otel-netprobe cleanup`: detaches and unpins everything of ours in this network namespace —
/// the pinned links and maps under `cfg.path` (whether or not pinning is on now) and our
/// cls_bpf filters on every interface (found by program name) — and returns what it removed,
/// one line each. Idempotent: a second run removes nothing.
pub fn cleanup(cfg: &crate::config::PinningConfig) -> Vec<String> {
    let mut removed = Vec::new();
    if let Ok(dir) = super::pin::netns_dir(cfg)
        && dir.exists()
    {
        let pins = PinDir::at(dir.clone());
        removed.extend(
            pins.remove_all()
                .into_iter()
                .map(|r| format!("unpinned {r}")),
        );
        if !dir.exists() {
            removed.push(format!("removed {}", dir.display()));
        }
    }
    let programs = [
        netprobe_ebpf::TC_INGRESS_PROGRAM,
        netprobe_ebpf::TC_EGRESS_PROGRAM,
        netprobe_ebpf::TC_INGRESS_L3_PROGRAM,
        netprobe_ebpf::TC_EGRESS_L3_PROGRAM,
    ];
    for link in super::netlink::dump_links().unwrap_or_default() {
        for dir in remove_filters(&link.name, &programs) {
            removed.push(format!("deleted our cls_bpf filter on {} {dir}", link.name));
        }
    }
    removed
}
