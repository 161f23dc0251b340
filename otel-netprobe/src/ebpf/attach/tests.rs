//! The hook decision, without root.

use super::*;
use crate::config::HookOverride;

fn link(name: &str, kind: Option<&str>) -> LinkInfo {
    LinkInfo {
        index: 5,
        name: name.into(),
        kind: kind.map(Into::into),
        master: None,
        is_loopback: false,
        up: true,
        arp_type: ARPHRD_ETHER,
    }
}

#[test]
fn hooks_by_kind_and_overrides() {
    let mut cfg = InterfacesConfig::default();
    assert_eq!(
        decide(&cfg, &link("eth0", None)),
        Decision::Attach(Hook::Xdp, LinkLayer::Ethernet)
    );
    assert_eq!(
        decide(&cfg, &link("veth1", Some("veth"))),
        Decision::Attach(Hook::Tc, LinkLayer::Ethernet)
    );
    assert!(matches!(
        decide(&cfg, &link("br0", Some("bridge"))),
        Decision::Skip(_)
    ));
    let mut lo = link("lo", None);
    lo.is_loopback = true;
    assert_eq!(decide(&cfg, &lo), Decision::Skip("loopback"));
    let mut tun = link("wg0", Some("wireguard"));
    tun.arp_type = 65534;
    // WireGuard/TUN: no link-layer header; TC with the L3 programs, even for "physical".
    assert_eq!(
        decide(&cfg, &tun),
        Decision::Attach(Hook::Tc, LinkLayer::None)
    );
    let mut ib = link("ib0", None);
    ib.arp_type = 32;
    assert_eq!(decide(&cfg, &ib), Decision::Skip("unsupported link type"));
    cfg.overrides.push(HookOverride {
        name: "eth*".into(),
        hook: Hook::XdpGeneric,
    });
    assert_eq!(
        decide(&cfg, &link("eth0", Some("veth"))),
        Decision::Attach(Hook::XdpGeneric, LinkLayer::Ethernet)
    );
    cfg.exclude.push("eth1".into());
    assert_eq!(
        decide(&cfg, &link("eth1", None)),
        Decision::Skip("excluded")
    );
    cfg.include = vec!["veth*".into()];
    assert_eq!(
        decide(&cfg, &link("eth2", None)),
        Decision::Skip("not included")
    );
}
