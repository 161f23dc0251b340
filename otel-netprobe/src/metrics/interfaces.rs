//! The interfaces the programs are attached to: how many per ingress hook, and one info series
//! per interface naming its hooks.

use super::{Cycle, Family, Module, Value, catalogue::metric};

metric!(
    AGENT_INTERFACES,
    "netprobe.agent.interfaces",
    "{interface}",
    "netprobe_agent_interfaces",
    Gauge,
    own[HOOK],
    "Interfaces attached, by ingress hook."
);

metric!(
    AGENT_INTERFACE_INFO,
    "netprobe.agent.interface.info",
    "{interface}",
    "netprobe_agent_interface_info",
    Gauge,
    own [INTERFACE, HOOK, EGRESS, TC_ATTACH],
    "One series per attached interface naming its hooks."
);

/// Ingress hook.
pub const HOOK: &str = "hook";
/// Interface name.
pub const INTERFACE: &str = "interface";
/// Whether TC egress is attached.
pub const EGRESS: &str = "egress";
/// How TC programs are attached (`tcx`, `clsact`, `none`).
pub const TC_ATTACH: &str = "tc_attach";

/// This module: its entries and how they are filled.
pub const MODULE: Module = Module {
    metrics: &[&AGENT_INTERFACES, &AGENT_INTERFACE_INFO],
    families: Some(families),
    counts: None,
};

/// Adds the interface families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let ifs = &c.health.interfaces;
    out.push(Family::by(
        &AGENT_INTERFACES,
        HOOK,
        ["xdp", "xdp_generic", "tc", "none"].map(|hook| {
            let n = ifs.iter().filter(|i| i.hook == hook).count();
            (hook, Value::Int(n as u64))
        }),
    ));
    let mut info = Family::new(&AGENT_INTERFACE_INFO);
    for i in ifs {
        let labels = vec![
            (INTERFACE, i.name.clone()),
            (HOOK, i.hook.to_owned()),
            (EGRESS, i.egress.to_string()),
            (TC_ATTACH, i.tc_attach.to_owned()),
        ];
        info.push(labels, Value::Int(1));
    }
    out.push(info);
}
