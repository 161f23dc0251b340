//! Root-only tests for `netlink`, each inside its own throw-away network
//! namespace (never touching the root namespace's interfaces).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

mod common;

use common::Netns;
use otel_netprobe::ebpf::netlink::{self, LinkEvent, LinkMonitor, NetlinkError};

/// Runs `f` on a fresh thread that has entered a fresh named netns.
fn in_netns(tag: &str, f: impl FnOnce(&Netns) + Send + 'static) {
    common::require_root();
    let ns = Netns::new(&common::unique(tag));
    let res = std::thread::scope(|s| {
        s.spawn(|| {
            common::enter(&format!("/run/netns/{}", ns.name));
            f(&ns);
        })
        .join()
    });
    drop(ns);
    if let Err(p) = res {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn dump_sees_lo_veth_bridge_and_master() {
    in_netns("dump", |ns| {
        ns.ip("link add npt-a type veth peer name npt-b");
        ns.ip("link add npt-br type bridge");
        ns.ip("link set npt-a master npt-br");
        ns.ip("link set npt-a up");
        let links = netlink::dump_links().unwrap();
        for l in &links {
            println!("{l:?}");
        }
        let by = |n: &str| {
            links
                .iter()
                .find(|l| l.name == n)
                .unwrap_or_else(|| panic!("{n} missing"))
        };
        let lo = by("lo");
        assert!(lo.is_loopback);
        assert_eq!(lo.arp_type, 772);
        let a = by("npt-a");
        let br = by("npt-br");
        assert_eq!(a.kind.as_deref(), Some("veth"));
        assert_eq!(br.kind.as_deref(), Some("bridge"));
        assert_eq!(a.master, Some(br.index));
        assert!(a.up && !a.is_loopback);
        assert_eq!(a.arp_type, 1);
        assert_eq!(by("npt-b").master, None);
        assert_eq!(links.len(), 4, "only this netns's links");
    });
}

fn wait_for(
    mon: &mut LinkMonitor,
    what: &str,
    mut pred: impl FnMut(&LinkEvent) -> bool,
) -> Vec<LinkEvent> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        let evs = mon.recv().unwrap();
        let hit = evs.iter().any(&mut pred);
        seen.extend(evs);
        if hit {
            return seen;
        }
    }
    panic!("timed out waiting for {what}; saw {seen:?}");
}

#[test]
fn monitor_sees_new_and_deleted() {
    in_netns("mon", |ns| {
        let mut mon = LinkMonitor::new().unwrap();
        mon.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ns.ip("link add npt-br type bridge");
        ns.ip("link add npt-c type veth peer name npt-d");
        let seen = wait_for(
            &mut mon,
            "New npt-c",
            |e| matches!(e, LinkEvent::New(l) if l.name == "npt-c" && l.kind.as_deref() == Some("veth")),
        );
        let idx = seen
            .iter()
            .find_map(|e| match e {
                LinkEvent::New(l) if l.name == "npt-c" => Some(l.index),
                _ => None,
            })
            .unwrap();
        // Enslaving/releasing emits AF_BRIDGE RTM_DELLINK notifications that
        // must not be reported as deletions.
        ns.ip("link set npt-c master npt-br");
        wait_for(
            &mut mon,
            "npt-c enslaved",
            |e| matches!(e, LinkEvent::New(l) if l.index == idx && l.master.is_some()),
        );
        ns.ip("link set npt-c nomaster");
        let seen = wait_for(
            &mut mon,
            "npt-c released",
            |e| matches!(e, LinkEvent::New(l) if l.index == idx && l.master.is_none()),
        );
        assert!(
            !seen.iter().any(|e| matches!(e, LinkEvent::Deleted { .. })),
            "{seen:?}"
        );
        ns.ip("link del npt-c");
        let seen = wait_for(
            &mut mon,
            "Deleted npt-c",
            |e| matches!(e, LinkEvent::Deleted { index, name } if *index == idx && name == "npt-c"),
        );
        println!("events around delete: {seen:?}");
    });
}

#[test]
fn monitor_reports_overrun() {
    in_netns("ovr", |ns| {
        // Smallest buffer the kernel allows; flood it without reading.
        let mut mon = LinkMonitor::with_rcvbuf(0).unwrap();
        mon.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        ns.ip("link add npt-e type veth peer name npt-f");
        let mut batch = String::new();
        for i in 0..40 {
            let state = if i % 2 == 0 { "up" } else { "down" };
            writeln!(batch, "link set npt-e {state}").unwrap();
        }
        let path = std::env::temp_dir().join(format!("npt-batch-{}", std::process::id()));
        std::fs::write(&path, batch).unwrap();
        ns.ip(&format!("-batch {}", path.display()));
        let _ = std::fs::remove_file(&path);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut overrun = false;
        while Instant::now() < deadline {
            match mon.recv() {
                Err(NetlinkError::Overrun) => {
                    overrun = true;
                    break;
                }
                Ok(evs) if evs.is_empty() => break,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(overrun, "expected ENOBUFS overrun");
        // The socket stays usable after an overrun and a re-dump works.
        assert!(
            netlink::dump_links()
                .unwrap()
                .iter()
                .any(|l| l.name == "npt-e")
        );
        ns.ip("link set npt-e up");
        wait_for(&mut mon, "event after overrun", |_| true);
    });
}

fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn link_msg(ty: u16, family: u8, index: u32, name: &str) -> Vec<u8> {
    let mut body = vec![family, 0];
    body.extend_from_slice(&1u16.to_ne_bytes());
    body.extend_from_slice(&index.to_ne_bytes());
    body.extend_from_slice(&(0x1u32 | 0x8).to_ne_bytes());
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend(attr(3, format!("{name}\0").as_bytes()));
    body.extend(attr(10, &7u32.to_ne_bytes()));
    body.extend(attr(0x12 | 0x8000, &attr(1, b"vxlan\0")));
    let mut m = Vec::new();
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&[0; 10]);
    m.extend(body);
    m
}

#[test]
fn parser_handles_synthetic_and_malformed_input() {
    let mut dgram = link_msg(16, 0, 9, "vx0");
    dgram.extend(link_msg(17, 7, 9, "vx0")); // AF_BRIDGE: ignored
    dgram.extend(link_msg(17, 0, 5, "gone"));
    let evs = netlink::parse_link_events(&dgram).unwrap();
    assert_eq!(evs.len(), 2, "{evs:?}");
    match &evs[0] {
        LinkEvent::New(l) => {
            assert_eq!(
                (l.index, l.name.as_str(), l.kind.as_deref()),
                (9, "vx0", Some("vxlan"))
            );
            assert_eq!(
                (l.master, l.up, l.is_loopback, l.arp_type),
                (Some(7), true, true, 1)
            );
        }
        e @ LinkEvent::Deleted { .. } => panic!("{e:?}"),
    }
    assert_eq!(
        evs[1],
        LinkEvent::Deleted {
            index: 5,
            name: "gone".into()
        }
    );
    // Every truncation and many single-byte corruptions: errors, never panics.
    for len in 0..dgram.len() {
        let _ = netlink::parse_link_events(&dgram[..len]);
    }
    let mut seed = 0x1234_5678u32;
    for _ in 0..20_000 {
        let mut d = dgram.clone();
        for _ in 0..3 {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            let i = seed as usize % d.len();
            d[i] = (seed >> 24) as u8;
        }
        let _ = netlink::parse_link_events(&d);
    }
    assert!(matches!(
        netlink::parse_link_events(&[1, 2, 3]),
        Err(NetlinkError::Malformed { .. })
    ));
}
