//! Traffic with known sizes and counts, sent between lab namespaces.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    time::Duration,
};

use super::{Netns, wait_until};

/// Sends `count` UDP datagrams of `payload` bytes from `src` (in `from`) to `dst` (in `to`),
/// and waits until all of them arrived, so the network path is known to have carried them.
pub fn udp(from: &Netns, src: &str, to: &Netns, dst: &str, count: usize, payload: usize) {
    let dst: SocketAddr = dst.parse().expect("dst address");
    let src: SocketAddr = src.parse().expect("src address");
    let rx = to.run(move || UdpSocket::bind(dst).expect("bind receiver"));
    rx.set_read_timeout(Some(super::patient(Duration::from_secs(10))))
        .expect("timeout");
    from.run(move || {
        let tx = UdpSocket::bind(src).expect("bind sender");
        let buf = vec![0x5a_u8; payload];
        for _ in 0..count {
            tx.send_to(&buf, dst).expect("send");
        }
    });
    let mut buf = vec![0u8; 65536];
    for n in 0..count {
        let got = rx
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {n} of {count} to {dst} lost: {e}"));
        assert_eq!(got, payload);
    }
}

/// A counter of the calling thread's network namespace from /proc/net/{snmp,netstat}, e.g.
/// `("snmp", "Tcp:", "OutSegs")`.
fn proc_counter(file: &str, section: &str, name: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")).expect("proc net");
    let mut lines = text.lines().filter(|l| l.starts_with(section));
    let (names, values) = (lines.next().expect("header"), lines.next().expect("values"));
    let i = names
        .split_whitespace()
        .position(|f| f == name)
        .expect("counter name");
    values
        .split_whitespace()
        .nth(i)
        .expect("value")
        .parse()
        .expect("number")
}

/// TCP segments sent in this namespace, per wire segment: `OutSegs` leaves out
/// retransmissions, which `RetransSegs` counts (a loaded machine makes spurious ones).
pub fn tcp_out_segs() -> u64 {
    proc_counter("snmp", "Tcp:", "OutSegs") + proc_counter("snmp", "Tcp:", "RetransSegs")
}

/// Segments and IPv4 bytes sent in this namespace (`IpExt: OutOctets` is exact for a sender
/// of small, unsegmented packets, like a receiver's ACKs).
fn out_segs_and_octets() -> (u64, u64) {
    (
        tcp_out_segs(),
        proc_counter("netstat", "IpExt:", "OutOctets"),
    )
}

/// Result of a bulk transfer, from the sender's kernel.
#[derive(Debug, Clone, Copy)]
pub struct Bulk {
    /// TCP segments the client namespace sent (wire packets, whatever GSO did).
    pub client_segs: u64,
    /// Payload bytes sent (including retransmissions), from `TCP_INFO`.
    pub client_payload: u64,
    /// TCP segments the server namespace sent.
    pub server_segs: u64,
    /// IP bytes the server namespace sent (it only sends ACKs, SYN-ACK and FIN).
    pub server_octets: u64,
    /// The client's source port.
    pub client_port: u16,
}

/// Sends `bytes` from a client in `from` to a server listening on `dst` in `to`, closes, and
/// reports what the kernels sent. Each namespace must carry no other TCP traffic meanwhile.
pub fn tcp_bulk(from: &Netns, to: &Netns, dst: &str, bytes: usize) -> Bulk {
    tcp_bulk_via(from, to, dst, dst, bytes)
}

/// As [`tcp_bulk`], with the server listening on `listen` and the client connecting to
/// `connect` (e.g. a service's ClusterIP that the node translates to `listen`).
pub fn tcp_bulk_via(from: &Netns, to: &Netns, listen: &str, connect: &str, bytes: usize) -> Bulk {
    let listen: SocketAddr = listen.parse().expect("listen address");
    let dst: SocketAddr = connect.parse().expect("connect address");
    let listener = to.run(move || TcpListener::bind(listen).expect("listen"));
    let server_before = to.run(out_segs_and_octets);
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut sink = vec![0u8; 1 << 16];
        let mut total = 0;
        loop {
            match s.read(&mut sink).expect("read") {
                0 => break,
                n => total += n,
            }
        }
        total
    });
    let (client_segs, client_payload, client_port) = from.run(move || {
        let before = tcp_out_segs();
        let mut c = TcpStream::connect(dst).expect("connect");
        let port = c.local_addr().expect("addr").port();
        let chunk = vec![0xa5u8; 1 << 16];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            c.write_all(&chunk[..n]).expect("write");
            left -= n;
        }
        c.shutdown(std::net::Shutdown::Write).expect("shutdown");
        // Wait for the server's FIN so every segment of ours is acknowledged and counted.
        let mut rest = Vec::new();
        c.read_to_end(&mut rest).expect("read to end");
        let payload = bytes_sent(&c);
        drop(c);
        // The final ACK of the server's FIN goes out before read_to_end returns.
        (tcp_out_segs() - before, payload, port)
    });
    assert_eq!(server.join().expect("server"), bytes);
    let ns = to.name.clone();
    let server_segs_now = || {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            super::enter(&path);
            out_segs_and_octets()
        })
        .join()
        .expect("join")
    };
    // The server's last segments (its FIN) may still be on their way out.
    let (mut server_segs, mut server_octets) = (0, 0);
    wait_until(Duration::from_secs(5), || {
        let now = server_segs_now();
        let segs = now.0 - server_before.0;
        let stable = segs == server_segs && segs > 0;
        (server_segs, server_octets) = (segs, now.1 - server_before.1);
        stable
    });
    Bulk {
        client_segs,
        client_payload,
        server_segs,
        server_octets,
        client_port,
    }
}

fn bytes_sent(s: &TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    // struct tcp_info: tcpi_bytes_sent is at byte offset 200 (since Linux 4.19).
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into our buffer.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &raw mut len,
        )
    };
    assert_eq!(rc, 0, "TCP_INFO");
    assert!(len >= 208, "kernel too old for tcpi_bytes_sent");
    u64::from_ne_bytes(info[200..208].try_into().expect("8 bytes"))
}

/// Sends each of `frames` (whole Ethernet frames, from the destination MAC on) `repeat` times
/// in a row out of interface `ifname` of `ns` through a raw packet socket: for frames no
/// socket would build, such as VLAN-tagged ones from a host without VLAN devices.
pub fn raw_frames(ns: &Netns, ifname: &str, frames: std::sync::Arc<Vec<Vec<u8>>>, repeat: usize) {
    let ifname = ifname.to_owned();
    ns.run(move || {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let c_name = std::ffi::CString::new(ifname.clone()).expect("name");
        // SAFETY: plain libc calls on values we own; the socket is closed by OwnedFd.
        unsafe {
            let index = libc::if_nametoindex(c_name.as_ptr());
            assert_ne!(index, 0, "no interface {ifname}");
            let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
            assert!(
                fd >= 0,
                "packet socket: {}",
                std::io::Error::last_os_error()
            );
            let fd = OwnedFd::from_raw_fd(fd);
            let mut addr: libc::sockaddr_ll = std::mem::zeroed();
            addr.sll_family = libc::AF_PACKET as u16;
            addr.sll_ifindex = index as i32;
            addr.sll_halen = 6;
            for frame in frames.iter().flat_map(|f| std::iter::repeat_n(f, repeat)) {
                addr.sll_addr[..6].copy_from_slice(&frame[..6]);
                let sent = libc::sendto(
                    fd.as_raw_fd(),
                    frame.as_ptr().cast(),
                    frame.len(),
                    0,
                    (&raw const addr).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                );
                assert_eq!(
                    sent,
                    frame.len() as isize,
                    "raw send: {}",
                    std::io::Error::last_os_error()
                );
            }
        }
    });
}

/// The MAC address of interface `ifname` in `ns`.
pub fn mac(ns: &Netns, ifname: &str) -> [u8; 6] {
    let out = ns.ip(&format!("link show dev {ifname}"));
    let text = out
        .split("link/ether ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no MAC in {out}"));
    let mut m = [0u8; 6];
    for (b, h) in m.iter_mut().zip(text.split(':')) {
        *b = u8::from_str_radix(h, 16).expect("hex");
    }
    m
}

/// `n` complete TCP connections from `from` to a server listening on `dst` in `to`: the
/// client sends a few bytes and shuts its side, the server answers with its own FIN.
pub fn tcp_exchanges(from: &Netns, to: &Netns, dst: &str, n: usize) {
    let addr: SocketAddr = dst.parse().expect("address");
    let listener = to.run(move || TcpListener::bind(addr).expect("listen"));
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = listener.accept().expect("accept");
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).expect("read");
        }
    });
    from.run(move || {
        for _ in 0..n {
            let mut c = TcpStream::connect(addr).expect("connect");
            c.write_all(b"hello").expect("write");
            c.shutdown(std::net::Shutdown::Write).expect("shutdown");
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).expect("read to end");
        }
    });
    server.join().expect("server");
}

/// `n` connects from `from` to `dst`, where nothing listens: each refused by a RST.
pub fn tcp_refused(from: &Netns, dst: &str, n: usize) {
    let addr: SocketAddr = dst.parse().expect("address");
    from.run(move || {
        for _ in 0..n {
            let e = TcpStream::connect(addr).expect_err("nothing listens");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        }
    });
}

/// `n` connections from `from` to a server on `dst` in `to` that resets each one (it closes
/// with a zero linger time) once the client's bytes arrived.
pub fn tcp_reset_by_server(from: &Netns, to: &Netns, dst: &str, n: usize) {
    use std::os::fd::AsRawFd;
    let addr: SocketAddr = dst.parse().expect("address");
    let listener = to.run(move || TcpListener::bind(addr).expect("listen"));
    let server = std::thread::spawn(move || {
        for _ in 0..n {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).expect("read");
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: setsockopt with a linger struct we own, on our socket.
            let rc = unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&raw const linger).cast(),
                    std::mem::size_of::<libc::linger>() as u32,
                )
            };
            assert_eq!(rc, 0, "SO_LINGER");
        }
    });
    from.run(move || {
        for _ in 0..n {
            let mut c = TcpStream::connect(addr).expect("connect");
            c.write_all(b"hello").expect("write");
            let mut rest = Vec::new();
            let _ = c.read_to_end(&mut rest);
        }
    });
    server.join().expect("server");
}

/// Sends `count` UDP datagrams of `payload` bytes from `src` (in `from`) to `dst`, without
/// waiting for anything to receive them.
pub fn udp_send(from: &Netns, src: &str, dst: &str, count: usize, payload: usize) {
    let (src, dst): (SocketAddr, SocketAddr) =
        (src.parse().expect("src"), dst.parse().expect("dst"));
    from.run(move || {
        let tx = UdpSocket::bind(src).expect("bind sender");
        let buf = vec![0x5a_u8; payload];
        for _ in 0..count {
            tx.send_to(&buf, dst).expect("send");
        }
    });
}

/// A counter of `ns`'s IPv4 stack from /proc/net/snmp, e.g. `("Icmp:", "OutDestUnreachs")`.
pub fn snmp(ns: &Netns, section: &'static str, name: &'static str) -> u64 {
    ns.run(move || proc_counter("snmp", section, name))
}

/// A counter of `ns` from /proc/net/netstat, e.g. `("TcpExt:", "TCPSynRetrans")`.
pub fn netstat(ns: &Netns, section: &'static str, name: &'static str) -> u64 {
    ns.run(move || proc_counter("netstat", section, name))
}

/// One TCP connect from `from` to `dst` that gives up after `wait`; whether it failed.
pub fn tcp_connect_giving_up(from: &Netns, dst: &str, wait: Duration) -> bool {
    let dst: SocketAddr = dst.parse().expect("dst");
    from.run(move || TcpStream::connect_timeout(&dst, wait).is_err())
}
