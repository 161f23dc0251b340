//! The interfaces the programs are attached to: how many per ingress hook, and one info series
//! per interface naming its hooks.

use super::Cycle;
use crate::{
    export::names::{self, attr},
    frame::{Family, Value},
};

/// Adds the interface families.
pub fn families(c: &Cycle<'_>, out: &mut Vec<Family>) {
    let ifs = &c.health.interfaces;
    out.push(Family::by(
        &names::AGENT_INTERFACES,
        attr::HOOK,
        ["xdp", "xdp_generic", "tc", "none"].map(|hook| {
            let n = ifs.iter().filter(|i| i.hook == hook).count();
            (hook, Value::Int(n as u64))
        }),
    ));
    let mut info = Family::new(&names::AGENT_INTERFACE_INFO);
    for i in ifs {
        let labels = vec![
            (attr::INTERFACE, i.name.clone()),
            (attr::HOOK, i.hook.to_owned()),
            (attr::EGRESS, i.egress.to_string()),
            (attr::TC_ATTACH, i.tc_attach.to_owned()),
        ];
        info.push(labels, Value::Int(1));
    }
    out.push(info);
}
