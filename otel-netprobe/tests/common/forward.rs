//! A loopback port of one namespace forwarded to a port on a lab namespace's loopback: the
//! dashboards lab's Prometheus servers (in this namespace) scrape the agent and the Collector
//! through it; the multi-node lab's nodes reach the control plane's API server, and its
//! Prometheus each node's Collector.
#![allow(
    dead_code,
    reason = "each test binary uses one of the two entry points"
)]

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
};

use crate::common::{Netns, enter};

/// Forwards connections to a new loopback port of this namespace to `port` on `node`'s
/// loopback; returns the new port.
pub fn forward_into(node: &Netns, port: u16) -> u16 {
    forward(None, 0, node, port)
}

/// Forwards connections to `127.0.0.1:listen` (0: any free port) of `from` (`None`: this
/// namespace) to `127.0.0.1:port` in `to`, for the test's life; returns the listening port.
/// In-process, so nothing crosses the lab's links.
pub fn forward(from: Option<&Netns>, listen: u16, to: &Netns, port: u16) -> u16 {
    let bind = move || TcpListener::bind(("127.0.0.1", listen)).expect("bind forwarder");
    let listener = match from {
        Some(ns) => ns.run(bind),
        None => bind(),
    };
    let local = listener.local_addr().expect("addr").port();
    let path = format!("/run/netns/{}", to.name);
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
