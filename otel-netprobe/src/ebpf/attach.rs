//! Attaching the programs to interfaces, driven by netlink link events.
//!
//! Rules (see the README): loopback and bridge/bond/team masters are skipped (masters would
//! count their ports' packets a second time); devices without a link-layer header get the L3 TC
//! programs; the rest are matched
//! against the include/exclude patterns, then get the configured hook for their kind:
//! physical (no link kind) → XDP by default, virtual → TC ingress. Native XDP that the driver
//! refuses falls back to TC ingress. TC egress (locally originated packets) goes on every
//! attached interface when enabled.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use aya::{
    Ebpf,
    programs::{SchedClassifier, TcAttachType, Xdp, XdpMode},
};
use netprobe_ebpf::{
    TC_EGRESS_L3_PROGRAM, TC_EGRESS_PROGRAM, TC_INGRESS_L3_PROGRAM, TC_INGRESS_PROGRAM, XDP_PROGRAM,
};
use tracing::{info, warn};

use super::{
    EbpfError,
    coverage::SharedSlots,
    links::{self, Held},
    netlink::LinkInfo,
    pin::PinDir,
};
use crate::{
    config::{Hook, InterfacesConfig, glob_match},
    telemetry::{
        Telemetry,
        events::{AttachFailed, Event},
    },
};

/// One interface the agent attached to (or tried to).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct InterfaceState {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Ingress hook in use (`xdp`, `xdp_generic`, `tc`, or `none` if attaching failed).
    pub hook: &'static str,
    /// Whether TC egress (locally originated packets) is attached.
    pub egress: bool,
    /// How the TC programs are attached: `tcx` (kernel 6.6 on), `clsact` (a cls_bpf filter on
    /// a clsact qdisc, before), or `none` (XDP only).
    pub tc_attach: &'static str,
}

const ARPHRD_ETHER: u16 = 1;
/// Devices whose packets start at the IP header: PPP, raw IP, IPIP/SIT/IP6 tunnels, GRE, and
/// ARPHRD_NONE (TUN, WireGuard).
const ARPHRD_L3: [u16; 7] = [512, 519, 768, 769, 776, 778, 65534];

/// Where a device's packets start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkLayer {
    /// At an Ethernet header.
    Ethernet,
    /// At the IP header (tunnels, TUN, WireGuard): TC only, with the L3 programs.
    None,
}

/// What to do with an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Attach with this ingress hook.
    Attach(Hook, LinkLayer),
    /// Leave it alone, for this reason.
    Skip(&'static str),
}

/// Decides the hook for `link` under `cfg` (pure: unit-tested without root).
pub fn decide(cfg: &InterfacesConfig, link: &LinkInfo) -> Decision {
    if link.is_loopback {
        return Decision::Skip("loopback");
    }
    let layer = if link.arp_type == ARPHRD_ETHER {
        LinkLayer::Ethernet
    } else if ARPHRD_L3.contains(&link.arp_type) {
        LinkLayer::None
    } else {
        return Decision::Skip("unsupported link type");
    };
    if matches!(link.kind.as_deref(), Some("bridge" | "bond" | "team")) {
        return Decision::Skip("master device: its ports are attached instead");
    }
    if !cfg.include.iter().any(|p| glob_match(p, &link.name)) {
        return Decision::Skip("not included");
    }
    if cfg.exclude.iter().any(|p| glob_match(p, &link.name)) {
        return Decision::Skip("excluded");
    }
    let hook = cfg
        .overrides
        .iter()
        .find(|o| glob_match(&o.name, &link.name))
        .map_or_else(
            || {
                if link.kind.is_none() {
                    cfg.physical_hook
                } else {
                    cfg.virtual_hook
                }
            },
            |o| o.hook,
        );
    match (hook, layer) {
        (Hook::None, _) => Decision::Skip("hook: none"),
        // Our XDP program parses from the Ethernet header.
        (_, LinkLayer::None) => Decision::Attach(Hook::Tc, layer),
        (hook, LinkLayer::Ethernet) => Decision::Attach(hook, layer),
    }
}

/// How a TC program is attached: through a TCX link (6.6 on), or as a cls_bpf filter on a
/// clsact qdisc (before).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcMode {
    /// A TCX link, first in the chain.
    Tcx,
    /// A cls_bpf filter on the interface's clsact qdisc.
    Clsact,
}

impl TcMode {
    /// The name reported in the agent's metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tcx => "tcx",
            Self::Clsact => "clsact",
        }
    }
}

struct Attached {
    name: String,
    hook: Hook,
    ingress: Held,
    egress: Option<Held>,
}

fn tc_mode(held: &Held) -> Option<TcMode> {
    match held {
        Held::Tc(_, mode) => Some(*mode),
        Held::Xdp(_) => None,
    }
}

/// Loads the three programs of the production object into the kernel.
pub(crate) fn load_programs(ebpf: &mut Ebpf) -> Result<(), EbpfError> {
    let xdp: &mut Xdp = program(ebpf, XDP_PROGRAM)?;
    xdp.load().map_err(|source| EbpfError::Program {
        name: XDP_PROGRAM,
        source,
    })?;
    for name in [
        TC_INGRESS_PROGRAM,
        TC_EGRESS_PROGRAM,
        TC_INGRESS_L3_PROGRAM,
        TC_EGRESS_L3_PROGRAM,
    ] {
        let tc: &mut SchedClassifier = program(ebpf, name)?;
        tc.load()
            .map_err(|source| EbpfError::Program { name, source })?;
    }
    Ok(())
}

fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, EbpfError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program>,
{
    ebpf.program_mut(name)
        .and_then(|p| p.try_into().ok())
        .ok_or(EbpfError::Missing(name))
}

/// Owns the loaded programs and their links; keeps them in step with the interfaces.
pub struct Attacher {
    ebpf: Ebpf,
    cfg: InterfacesConfig,
    attached: HashMap<u32, Attached>,
    state: Arc<Mutex<Vec<InterfaceState>>>,
    telemetry: Arc<Telemetry>,
    pins: Option<PinDir>,
    /// Attachments taken over from a previous agent (replaced in place).
    replaced: usize,
    slots: Option<SharedSlots>,
}

impl Attacher {
    /// Wraps a loaded object (see [`super::load`]); `state` is shared with the aggregator,
    /// failures are counted in `telemetry`.
    pub fn new(
        ebpf: Ebpf,
        cfg: InterfacesConfig,
        state: Arc<Mutex<Vec<InterfaceState>>>,
        telemetry: Arc<Telemetry>,
    ) -> Self {
        Self {
            ebpf,
            cfg,
            attached: HashMap::new(),
            state,
            telemetry,
            pins: None,
            replaced: 0,
            slots: None,
        }
    }

    /// Pins the XDP and TCX links in `pins`, and takes over the attachments a previous agent
    /// left there (and its cls_bpf filters) in place.
    #[must_use]
    pub fn with_pins(mut self, pins: Option<PinDir>) -> Self {
        self.pins = pins;
        self
    }

    /// How many attachments were taken over from a previous agent, in place.
    pub fn replaced(&self) -> usize {
        self.replaced
    }

    /// Lets go of every attachment: `keep` (when pinned) leaves them in the kernel (pinned
    /// links stay with their pins, cls_bpf filters stay) for the next agent; otherwise they
    /// are detached and this namespace's pin directory is removed. Returns what was unpinned.
    pub fn finish(mut self, keep: bool) -> Vec<String> {
        // Unpinned, nothing could be taken over: a filter kept would only count twice later.
        let keep = keep && self.pins.is_some();
        for (_, a) in self.attached.drain() {
            links::release(a.ingress, keep);
            if let Some(e) = a.egress {
                links::release(e, keep);
            }
        }
        if keep {
            return Vec::new();
        }
        self.pins.take().map(|p| p.remove_all()).unwrap_or_default()
    }

    /// Unpins (so detaches) links pinned for interfaces this agent did not attach that way:
    /// gone interfaces, or a hook that changed.
    fn prune_pins(&self) {
        let Some(pins) = &self.pins else { return };
        for (kind, index, path) in pins.links() {
            let ours = self.attached.get(&index).is_some_and(|a| {
                let tcx = |h: &Held| tc_mode(h) == Some(TcMode::Tcx);
                match kind.as_str() {
                    "xdp" => matches!(a.ingress, Held::Xdp(_)),
                    "tcx-ingress" => tcx(&a.ingress),
                    "tcx-egress" => a.egress.as_ref().is_some_and(tcx),
                    _ => false,
                }
            });
            if !ours {
                info!(pin = %path.display(), "removing a stale pinned link");
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// Gives each interface a coverage slot before its ingress program is attached, and frees
    /// it when the interface goes.
    #[must_use]
    pub fn with_slots(mut self, slots: SharedSlots) -> Self {
        self.slots = Some(slots);
        self
    }

    fn slots(&self, f: impl FnOnce(&mut super::coverage::Slots)) {
        if let Some(s) = &self.slots {
            f(&mut s.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        }
    }

    /// Makes the attached set equal to `links` (after the initial dump, or a netlink overrun).
    pub fn sync(&mut self, links: &[LinkInfo]) {
        let present: Vec<u32> = links.iter().map(|l| l.index).collect();
        let gone: Vec<u32> = self
            .attached
            .keys()
            .filter(|i| !present.contains(i))
            .copied()
            .collect();
        for index in gone {
            self.remove(index);
        }
        for link in links {
            self.add(link);
        }
        self.prune_pins();
    }

    /// Attaches to a new (or changed) interface.
    pub fn add(&mut self, link: &LinkInfo) {
        if let Some(a) = self.attached.get_mut(&link.index) {
            a.name.clone_from(&link.name);
            self.publish();
            return;
        }
        let (hook, layer) = match decide(&self.cfg, link) {
            Decision::Attach(h, l) => (h, l),
            Decision::Skip(_) => return,
        };
        // Tagged before the program runs there: it counts from its first packet.
        self.slots(|s| {
            s.assign(link.index);
        });
        match self.attach(link, hook, layer) {
            Ok(a) => {
                info!(interface = %link.name, index = link.index, hook = a.hook.as_str(), egress = a.egress.is_some(), "attached");
                self.attached.insert(link.index, a);
            }
            Err(e) => {
                self.slots(|s| s.release(link.index));
                AttachFailed {
                    interface: &link.name,
                    hook: "ingress",
                    error: &e,
                }
                .emit(&self.telemetry);
            }
        }
        self.publish();
    }

    /// Forgets a removed interface (its links went with it).
    pub fn remove(&mut self, index: u32) {
        let Some(a) = self.attached.remove(&index) else {
            return;
        };
        // The kernel already detached the links with the device; dropping ours frees them.
        drop(a.ingress);
        drop(a.egress);
        if let Some(pins) = &self.pins {
            for kind in ["xdp", "tcx-ingress", "tcx-egress"] {
                let _ = std::fs::remove_file(pins.link(kind, index));
            }
        }
        self.slots(|s| s.release(index));
        info!(interface = %a.name, index, "interface gone; forgotten");
        self.publish();
    }

    /// Number of interfaces attached.
    pub fn len(&self) -> usize {
        self.attached.len()
    }

    /// True when nothing is attached.
    pub fn is_empty(&self) -> bool {
        self.attached.is_empty()
    }

    fn attach(
        &mut self,
        link: &LinkInfo,
        hook: Hook,
        layer: LinkLayer,
    ) -> Result<Attached, EbpfError> {
        let (ingress, hook) = match hook {
            Hook::Xdp | Hook::XdpGeneric => {
                let mode = if hook == Hook::Xdp {
                    XdpMode::Driver
                } else {
                    XdpMode::Skb
                };
                let xdp: &mut Xdp = program(&mut self.ebpf, XDP_PROGRAM)?;
                match links::xdp(xdp, link.index, mode, self.pins.as_ref()) {
                    Ok((held, replaced)) => {
                        self.replaced += usize::from(replaced);
                        (Held::Xdp(held), hook)
                    }
                    Err(e) => {
                        warn!(interface = %link.name, error = %e, "XDP refused; counting at TC ingress instead");
                        (
                            self.attach_tc(link, TcAttachType::Ingress, layer)?,
                            Hook::Tc,
                        )
                    }
                }
            }
            Hook::Tc | Hook::None => (
                self.attach_tc(link, TcAttachType::Ingress, layer)?,
                Hook::Tc,
            ),
        };
        let egress = if self.cfg.egress {
            match self.attach_tc(link, TcAttachType::Egress, layer) {
                Ok(held) => Some(held),
                Err(e) => {
                    AttachFailed {
                        interface: &link.name,
                        hook: "egress",
                        error: &e,
                    }
                    .emit(&self.telemetry);
                    None
                }
            }
        } else {
            None
        };
        Ok(Attached {
            name: link.name.clone(),
            hook,
            ingress,
            egress,
        })
    }

    fn attach_tc(
        &mut self,
        link: &LinkInfo,
        dir: TcAttachType,
        layer: LinkLayer,
    ) -> Result<Held, EbpfError> {
        let prog_name = match (dir == TcAttachType::Ingress, layer) {
            (true, LinkLayer::Ethernet) => TC_INGRESS_PROGRAM,
            (false, LinkLayer::Ethernet) => TC_EGRESS_PROGRAM,
            (true, LinkLayer::None) => TC_INGRESS_L3_PROGRAM,
            (false, LinkLayer::None) => TC_EGRESS_L3_PROGRAM,
        };
        let pins = self.pins.clone();
        let tc: &mut SchedClassifier = program(&mut self.ebpf, prog_name)?;
        let (held, mode, replaced) = links::tc(tc, &link.name, link.index, dir, pins.as_ref())
            .map_err(|source| EbpfError::Program {
                name: prog_name,
                source,
            })?;
        self.replaced += usize::from(replaced);
        Ok(Held::Tc(held, mode))
    }

    fn publish(&self) {
        let mut list: Vec<InterfaceState> = self
            .attached
            .iter()
            .map(|(index, a)| InterfaceState {
                name: a.name.clone(),
                index: *index,
                hook: a.hook.as_str(),
                egress: a.egress.is_some(),
                tc_attach: tc_mode(&a.ingress)
                    .or_else(|| a.egress.as_ref().and_then(tc_mode))
                    .map_or("none", TcMode::as_str),
            })
            .collect();
        list.sort_by_key(|i| i.index);
        if let Ok(mut s) = self.state.lock() {
            *s = list;
        }
    }
}

#[cfg(test)]
mod tests;
