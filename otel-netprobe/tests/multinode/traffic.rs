//! The multi-node lab's traffic: every kind the cluster view must count once, with how many
//! packets each node sees and where the rule keeps the count.

use std::{
    net::{SocketAddr, UdpSocket},
    time::Duration,
};

use crate::{
    common::{Netns, patient, traffic},
    lab::{ClusterLab, OUTSIDE, OUTSIDE6},
};

/// The ClusterIP of Service `shop/web`, backed by the pod on node-b, translated on node-a.
pub const CLUSTER_IP: &str = "10.96.0.20";

/// One kind of traffic: `count` UDP datagrams of `payload` bytes (or TCP connections), and
/// which nodes see it.
pub struct Kind {
    pub name: &'static str,
    /// The server port: the series' `destination_port`.
    pub port: u16,
    pub count: u64,
    /// IP bytes of each packet (UDP: payload + 28, or + 48 over IPv6).
    pub packet_bytes: u64,
    /// Packets node-a and node-b each count.
    pub seen: [u64; 2],
    /// The node whose count the rule keeps (where the packet entered the cluster's view).
    pub once_at: usize,
}

/// `count` datagrams of `payload` bytes from `src` (in `from`) to `dst`, received at `listen`
/// in `to` (where a DNAT on the way delivers them); waits until all arrived.
fn udp_via(
    from: &Netns,
    src: &str,
    dst: &str,
    to: &Netns,
    listen: &str,
    count: usize,
    payload: usize,
) {
    let (src, dst, listen): (SocketAddr, SocketAddr, SocketAddr) = (
        src.parse().expect("src"),
        dst.parse().expect("dst"),
        listen.parse().expect("listen"),
    );
    let rx = to.run(move || UdpSocket::bind(listen).expect("bind receiver"));
    rx.set_read_timeout(Some(patient(Duration::from_secs(10))))
        .expect("timeout");
    from.run(move || {
        let tx = UdpSocket::bind(src).expect("bind sender");
        for _ in 0..count {
            tx.send_to(&vec![0x5a_u8; payload], dst).expect("send");
        }
    });
    let mut buf = vec![0u8; 65536];
    for n in 0..count {
        let got = rx
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {n} of {count} to {dst} via {listen} lost: {e}"));
        assert_eq!(got, payload);
    }
}

/// Sends every kind of traffic once, with source ports offset by `round`.
pub fn send(lab: &ClusterLab, round: u16) {
    let (a, b) = (&lab.nodes[0], &lab.nodes[1]);
    let (client, peer, web) = (&a.pods[0], &a.pods[1], &b.pods[0]);
    let c4 = a.pod_ips[0].0;
    let sport = |base: u16| base + round * 100;
    let v4 = |ip: &str, port: u16| format!("{ip}:{port}");
    let v6 = |ip: &str, port: u16| format!("[{ip}]:{port}");
    let w4 = b.pod_ips[0].0;
    traffic::udp(client, &v4(c4, sport(41001)), web, &v4(w4, 7101), 10, 100);
    traffic::udp(
        client,
        &v4(c4, sport(41002)),
        peer,
        &v4(a.pod_ips[1].0, 7102),
        8,
        200,
    );
    // Sent to the ClusterIP; node-a's DNAT delivers it to web on node-b.
    udp_via(
        client,
        &v4(c4, sport(41003)),
        &v4(CLUSTER_IP, 8080),
        web,
        &v4(w4, 8080),
        6,
        300,
    );
    traffic::udp(
        &lab.outside,
        &v4(OUTSIDE, sport(41004)),
        web,
        &v4(w4, 7104),
        5,
        400,
    );
    traffic::udp(
        client,
        &v4(c4, sport(41005)),
        &lab.outside,
        &v4(OUTSIDE, 7105),
        4,
        500,
    );
    // The hostNetwork pod on node-a (the node's own address) ↔ web on node-b.
    traffic::udp(&a.ns, &v4(a.ip, sport(41006)), web, &v4(w4, 7106), 7, 100);
    traffic::udp(web, &v4(w4, sport(41007)), &a.ns, &v4(a.ip, 7107), 3, 100);
    let (c6, w6) = (a.pod_ips[0].1, b.pod_ips[0].1);
    traffic::udp(client, &v6(c6, sport(41008)), web, &v6(w6, 7108), 9, 100);
    traffic::udp(
        &lab.outside,
        &v6(OUTSIDE6, sport(41009)),
        peer,
        &v6(a.pod_ips[1].1, 7109),
        2,
        100,
    );
    traffic::tcp_exchanges(client, web, &v4(w4, 7110), 3);
}

pub const KINDS: [Kind; 9] = [
    Kind {
        name: "pod→pod across nodes",
        port: 7101,
        count: 10,
        packet_bytes: 128,
        seen: [10, 10],
        once_at: 0,
    },
    Kind {
        name: "pod→pod on one node",
        port: 7102,
        count: 8,
        packet_bytes: 228,
        seen: [8, 0],
        once_at: 0,
    },
    Kind {
        name: "pod→ClusterIP→pod on the other node",
        port: 8080,
        count: 6,
        packet_bytes: 328,
        seen: [6, 6],
        once_at: 0,
    },
    Kind {
        name: "outside→pod",
        port: 7104,
        count: 5,
        packet_bytes: 428,
        seen: [0, 5],
        once_at: 1,
    },
    Kind {
        name: "pod→outside",
        port: 7105,
        count: 4,
        packet_bytes: 528,
        seen: [4, 0],
        once_at: 0,
    },
    Kind {
        name: "hostNetwork pod→pod across nodes",
        port: 7106,
        count: 7,
        packet_bytes: 128,
        seen: [7, 7],
        once_at: 0,
    },
    Kind {
        name: "pod→hostNetwork pod across nodes",
        port: 7107,
        count: 3,
        packet_bytes: 128,
        seen: [3, 3],
        once_at: 1,
    },
    Kind {
        name: "pod→pod across nodes, IPv6",
        port: 7108,
        count: 9,
        packet_bytes: 148,
        seen: [9, 9],
        once_at: 0,
    },
    Kind {
        name: "outside→pod, IPv6",
        port: 7109,
        count: 2,
        packet_bytes: 148,
        seen: [2, 0],
        once_at: 0,
    },
];
