//! DNS for the lab: the real resolver (unbound) serving a pod's addresses with local zones that
//! answer NoError (a large EDNS0 answer too), NXDomain and Refused, one that drops queries, and
//! two zones forwarded to a stand-in upstream on the outside host — one that answers after a
//! fixed delay and one that answers ServFail, the upstream faults unbound cannot make on demand;
//! and a client that speaks DNS over UDP and TCP.

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{SocketAddr, TcpStream, UdpSocket},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{Netns, patient, unique, wait_until};

/// The stand-in upstream's ports: the slow one, the failing one.
pub const SLOW_PORT: u16 = 5353;
/// See [`SLOW_PORT`].
pub const FAIL_PORT: u16 = 5354;
/// How long the slow upstream waits before it answers.
pub const SLOW_DELAY: Duration = Duration::from_millis(1200);

/// Record types the tests ask for.
pub const A: u16 = 1;
/// TXT.
pub const TXT: u16 = 16;

/// A query for `name` (dotted, no trailing dot) of `qtype`, recursion desired, with an EDNS0
/// OPT record advertising 4096 bytes when `edns`.
pub fn query(id: u16, name: &str, qtype: u16, edns: bool) -> Vec<u8> {
    let mut m = Vec::new();
    for w in [id, 0x0100, 1, 0, 0, u16::from(edns)] {
        m.extend_from_slice(&w.to_be_bytes());
    }
    for label in name.split('.') {
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    if edns {
        // Root name, type OPT, UDP payload size 4096, no extended rcode or flags, no data.
        m.extend_from_slice(&[0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0]);
    }
    m
}

/// A response's transaction id and rcode.
pub fn header(m: &[u8]) -> (u16, u8) {
    assert!(m.len() >= 12, "short DNS message: {m:?}");
    (u16::from_be_bytes([m[0], m[1]]), m[3] & 0x0F)
}

/// Where the question section ends.
fn question_end(m: &[u8]) -> usize {
    let mut at = 12;
    while m[at] != 0 {
        at += 1 + usize::from(m[at]);
    }
    at + 5
}

/// The question's name, lower case, dotted.
fn question_name(m: &[u8]) -> String {
    let mut labels = Vec::new();
    let mut at = 12;
    while m[at] != 0 {
        let n = usize::from(m[at]);
        labels.push(String::from_utf8_lossy(&m[at + 1..at + 1 + n]).to_lowercase());
        at += 1 + n;
    }
    labels.join(".")
}

/// The answer to a query `q`: its id and question, `rcode`, one A record (10.9.9.8) when the
/// rcode is 0, and the query's additional section (its OPT record) echoed.
fn answer(q: &[u8], rcode: u8) -> Vec<u8> {
    let end = question_end(q);
    let mut m = q[..12].to_vec();
    m[2] = 0x81 | (q[2] & 0x01);
    m[3] = 0x80 | rcode;
    m[6..8].copy_from_slice(&u16::from(rcode == 0).to_be_bytes());
    m[8..10].copy_from_slice(&[0, 0]);
    m.extend_from_slice(&q[12..end]);
    if rcode == 0 {
        m.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 8]);
    }
    m.extend_from_slice(&q[end..]);
    m
}

/// Sends `q` over UDP from a fresh socket and waits up to `wait` for its answer (`None`: no
/// answer).
pub fn udp(server: SocketAddr, q: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().unwrap()
    } else {
        "[::]:0".parse().unwrap()
    };
    let s = UdpSocket::bind(bind).expect("bind");
    s.send_to(q, server).expect("send");
    if wait.is_zero() {
        return None;
    }
    s.set_read_timeout(Some(wait)).expect("timeout");
    let mut buf = vec![0; 65_535];
    let n = s.recv(&mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}

/// Sends `q` over TCP (one segment: the length prefix and the message) and reads the answer.
pub fn tcp(server: SocketAddr, q: &[u8]) -> Vec<u8> {
    let mut s =
        TcpStream::connect_timeout(&server, patient(Duration::from_secs(5))).expect("connect");
    s.set_read_timeout(Some(patient(Duration::from_secs(5))))
        .expect("timeout");
    let framed = [&(q.len() as u16).to_be_bytes()[..], q].concat();
    s.write_all(&framed).expect("write");
    let mut len = [0; 2];
    s.read_exact(&mut len).expect("length");
    let mut m = vec![0; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut m).expect("message");
    m
}

/// unbound serving `addrs` on port 53 inside a pod; killed on drop.
pub struct Unbound {
    child: Child,
    dir: std::path::PathBuf,
}

impl Unbound {
    /// Starts unbound in `pod` on `addrs`, forwarding `slow.lab` and `fail.lab` to the
    /// stand-in upstream at `upstream`, and waits until it answers `client`'s queries.
    pub fn start(pod: &Netns, addrs: &[&str], upstream: &str, client: &Netns) -> Self {
        let dir = std::env::temp_dir().join(unique("unbound"));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut conf = vec!["server:".to_owned()];
        conf.extend(addrs.iter().map(|a| format!("  interface: {a}")));
        // One thread, in the foreground, no chroot, user or syslog; iterator only (no DNSSEC
        // validation); the upstream's timeout above the slow one's delay, so unbound asks once.
        conf.push(format!("  directory: \"{}\"", dir.display()));
        conf.extend(
            [
                "port: 53",
                "username: \"\"",
                "chroot: \"\"",
                "pidfile: \"\"",
                "use-syslog: no",
                "logfile: \"\"",
                "do-daemonize: no",
                "num-threads: 1",
                "module-config: \"iterator\"",
                "do-not-query-localhost: no",
                "access-control: 0.0.0.0/0 allow",
                "access-control: ::/0 allow",
                "edns-buffer-size: 4096",
                "max-udp-size: 4096",
                "infra-cache-min-rtt: 3000",
                "qname-minimisation: no",
                "local-zone: \"ok.lab.\" static",
                "local-data: \"a.ok.lab. 60 A 10.9.9.9\"",
                "local-zone: \"nx.lab.\" always_nxdomain",
                "local-zone: \"refuse.lab.\" always_refuse",
                "local-zone: \"deny.lab.\" deny",
            ]
            .map(|l| format!("  {l}")),
        );
        // A TXT answer of about 1.9 KB: more than 512 bytes, and more than one IPv4 fragment.
        for i in 0..8 {
            let text: String = std::iter::repeat_n(char::from(b'a' + i), 230).collect();
            conf.push(format!("  local-data: 'big.ok.lab. 60 TXT \"{text}\"'"));
        }
        for (zone, port) in [("slow.lab.", SLOW_PORT), ("fail.lab.", FAIL_PORT)] {
            conf.push(format!(
                "forward-zone:\n  name: \"{zone}\"\n  forward-addr: {upstream}@{port}"
            ));
        }
        conf.push(String::new());
        let conf = conf.join("\n");
        let path = dir.join("unbound.conf");
        std::fs::write(&path, conf).expect("write unbound.conf");
        let log = std::fs::File::create(dir.join("unbound.log")).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &pod.name, "unbound", "-d", "-p", "-c"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("unbound starts (make setup installs it)");
        let server: SocketAddr = format!("{}:53", addrs[0]).parse().unwrap();
        let me = Self { child, dir };
        let ready = wait_until(Duration::from_secs(20), || {
            let q = query(1, "a.ok.lab", A, false);
            client
                .run(move || udp(server, &q, Duration::from_millis(300)))
                .is_some_and(|r| header(&r) == (1, 0))
        });
        assert!(ready, "unbound answers: {}", me.log());
        me
    }

    /// What unbound logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("unbound.log")).unwrap_or_default()
    }
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stand-in upstream (the test's own, for the faults unbound cannot make on demand): on
/// [`SLOW_PORT`] it answers every copy of a question [`SLOW_DELAY`] after the first copy came,
/// on [`FAIL_PORT`] ServFail at once. Stopped on drop.
pub struct Upstream {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    /// Listens on `addr` (both ports) inside `ns`.
    pub fn start(ns: &Netns, addr: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let bind = |port| {
            let a: SocketAddr = format!("{addr}:{port}").parse().unwrap();
            ns.run(move || UdpSocket::bind(a).expect("bind upstream"))
        };
        let (slow, fail) = (bind(SLOW_PORT), bind(FAIL_PORT));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || serve(&slow, &fail, &flag));
        Self {
            stop,
            thread: Some(thread),
        }
    }
}

fn serve(slow: &UdpSocket, fail: &UdpSocket, stop: &AtomicBool) {
    for s in [slow, fail] {
        s.set_nonblocking(true).expect("nonblocking");
    }
    let mut first: HashMap<String, Instant> = HashMap::new();
    let mut due: Vec<(Instant, SocketAddr, Vec<u8>)> = Vec::new();
    let mut buf = vec![0; 4096];
    while !stop.load(Ordering::Relaxed) {
        while let Ok((n, from)) = fail.recv_from(&mut buf) {
            let _ = fail.send_to(&answer(&buf[..n], 2), from);
        }
        while let Ok((n, from)) = slow.recv_from(&mut buf) {
            let q = &buf[..n];
            let at = *first.entry(question_name(q)).or_insert_with(Instant::now) + SLOW_DELAY;
            due.push((at, from, answer(q, 0)));
        }
        let now = Instant::now();
        due.retain(|(at, to, m)| {
            if *at > now {
                return true;
            }
            let _ = slow.send_to(m, to);
            false
        });
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
