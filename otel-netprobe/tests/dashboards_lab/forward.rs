//! A loopback port of this (root) namespace forwarded to a port on a lab namespace's loopback,
//! where the agent serves /metrics and the Collector its exporter: the Prometheus servers of
//! the dashboards lab, in this namespace, scrape through it.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
};

use crate::common::{Netns, enter};

/// Forwards connections to a new loopback port of this namespace to `port` on `node`'s
/// loopback; returns the new port.
pub fn forward_into(node: &Netns, port: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind forwarder");
    let local = listener.local_addr().expect("addr").port();
    let path = format!("/run/netns/{}", node.name);
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let path = path.clone();
            std::thread::spawn(move || {
                let upstream = std::thread::spawn(move || {
                    enter(&path);
                    TcpStream::connect(("127.0.0.1", port))
                })
                .join()
                .expect("connect thread");
                let Ok(upstream) = upstream else { return };
                pipe(client, upstream);
            });
        }
    });
    local
}

fn pipe(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    let copy = |mut from: TcpStream, mut to: TcpStream| {
        let mut buf = [0u8; 16 << 10];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 || to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    };
    let t = std::thread::spawn(move || copy(a, b));
    let mut buf = [0u8; 16 << 10];
    while let Ok(n) = b2.read(&mut buf) {
        if n == 0 || a2.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = a2.shutdown(Shutdown::Write);
    let _ = t.join();
}
