//! Devices without a link-layer header (TUN here; WireGuard and IPIP alike): packets start at
//! the IP header, and the L3 TC programs count them exactly, in and out.

mod common;

use std::{
    fs::{File, OpenOptions},
    io::Write,
    net::UdpSocket,
    os::fd::AsRawFd,
    time::Duration,
};

use common::{
    Netns,
    agent::{Sel, start_in, wait_flow},
    packets::{ipv4, udp},
    unique,
};
use otel_netprobe::flow::Transport;

/// Creates TUN device `name` in the calling thread's namespace; packets written to the returned
/// file enter the stack through it.
fn tun(name: &str) -> File {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .expect("open /dev/net/tun");
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    let flags: u16 = 0x0001 | 0x1000; // IFF_TUN | IFF_NO_PI
    ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
    // SAFETY: TUNSETIFF reads and writes the 40-byte ifreq we own.
    let rc = unsafe { libc::ioctl(f.as_raw_fd(), 0x4004_54ca, ifr.as_mut_ptr()) };
    assert_eq!(rc, 0, "TUNSETIFF: {}", std::io::Error::last_os_error());
    f
}

/// An IPv4 UDP packet 10.77.0.2:40300 → 10.77.0.1:7300 with a valid header checksum (the
/// kernel checks it on receive).
fn packet(payload: usize) -> Vec<u8> {
    let mut p = ipv4(17, 0, 0, &udp(40300, 7300, payload), payload);
    p[12..16].copy_from_slice(&[10, 77, 0, 2]);
    p[16..20].copy_from_slice(&[10, 77, 0, 1]);
    let sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let csum = !(((folded & 0xffff) + (folded >> 16)) as u16);
    p[10..12].copy_from_slice(&csum.to_be_bytes());
    p
}

#[test]
fn tun_traffic_is_counted_in_and_out() {
    common::require_root();
    let node = Netns::new(&format!("{}-node", unique("tun")));
    let agent = start_in(&node, Vec::new());
    let mut dev = node.run(|| tun("tun0"));
    node.ip("addr add 10.77.0.1/24 dev tun0");
    node.ip("link set tun0 up");
    let (snap, ok) = agent.wait_for(Duration::from_secs(10), |s| {
        s.health.interfaces.iter().any(|i| i.name == "tun0")
    });
    assert!(ok, "tun0 not attached: {:?}", snap.health.interfaces);
    let rx = node.run(|| UdpSocket::bind("10.77.0.1:7300").expect("bind"));
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();

    // In: 6 datagrams of 300 payload bytes = 328 IP bytes each.
    for _ in 0..6 {
        dev.write_all(&packet(300)).expect("write to tun");
    }
    let mut buf = [0u8; 2048];
    for n in 0..6 {
        let (len, from) = rx
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {n} lost: {e}"));
        assert_eq!((len, from.to_string().as_str()), (300, "10.77.0.2:40300"));
    }
    let inbound = Sel {
        src: "10.77.0.2",
        dst: "10.77.0.1",
        sport: Some(40300),
        dport: Some(7300),
        transport: Transport::Udp,
    };
    let f = wait_flow(&agent, inbound, 6);
    assert_eq!((f.packets, f.bytes), (6, 6 * 328));

    // Out: 4 replies of 100 payload bytes, locally originated, counted at TC egress.
    for _ in 0..4 {
        rx.send_to(&[7u8; 100], "10.77.0.2:40300").expect("send");
    }
    let outbound = Sel {
        src: "10.77.0.1",
        dst: "10.77.0.2",
        sport: Some(7300),
        dport: Some(40300),
        transport: Transport::Udp,
    };
    let f = wait_flow(&agent, outbound, 4);
    assert_eq!((f.packets, f.bytes), (4, 4 * 128));
    let tun0 = agent
        .snapshot()
        .health
        .interfaces
        .iter()
        .find(|i| i.name == "tun0")
        .cloned()
        .unwrap();
    assert_eq!((tun0.hook, tun0.egress), ("tc", true));
    drop(dev);
    agent.stop();
}
