//! Restart continuity: the agent binary killed with SIGKILL under traffic loses no count (the
//! kernel keeps counting into the pinned maps while no agent runs, and the next agent adopts
//! them with the same start time, swapping its programs into the pinned links in place); a
//! SIGTERM in standalone mode leaves nothing attached or pinned; an incompatible pinned layout
//! is replaced with one log line; `otel-netprobe cleanup` removes everything. Each test mounts
//! a bpffs instance of its own (the machine's /sys/fs/bpf is never touched).

use std::{
    fs,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::Duration,
};

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest, common::v1::any_value,
    metrics::v1::metric::Data, metrics::v1::number_data_point,
};
use prost::Message as _;

use super::{
    binary::{Running, VIRTUAL, agent_bin, attached_tc, get_in, has_xdp, signal},
    common::{Netns, NodeLab, addr::PODS, pinned::Bpffs, traffic, unique, wait_until},
};

/// An OTLP/HTTP receiver in a lab namespace that keeps, per request, the start time and value
/// of one series of `netprobe.flow.packets` (the flow to `port`).
pub(super) struct OtlpCapture {
    pub(super) port: u16,
    seen: Arc<Mutex<Vec<(u64, i64)>>>,
}

impl OtlpCapture {
    pub(super) fn start(ns: &Netns, port: u16) -> Self {
        let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").expect("OTLP listener"));
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let keep = Arc::clone(&keep);
                std::thread::spawn(move || serve(conn, port, &keep));
            }
        });
        Self {
            port: addr.port(),
            seen,
        }
    }

    /// Waits until a request carried `packets` for the flow; returns its start time.
    pub(super) fn wait_for(&self, packets: i64) -> u64 {
        let mut found = None;
        let ok = wait_until(Duration::from_secs(30), || {
            found = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|(_, v)| *v == packets)
                .map(|(s, _)| *s);
            found.is_some()
        });
        assert!(
            ok,
            "OTLP never carried {packets}: {:?}",
            self.seen.lock().unwrap()
        );
        found.unwrap_or_default()
    }
}

fn serve(conn: TcpStream, port: u16, seen: &Mutex<Vec<(u64, i64)>>) {
    let mut out = conn.try_clone().expect("clone");
    let mut reader = BufReader::new(conn);
    loop {
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(req) = ExportMetricsServiceRequest::decode(body.as_slice()) {
            seen.lock().unwrap().extend(flow_points(&req, port));
        }
        let reply =
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if out.write_all(reply.as_bytes()).is_err() {
            return;
        }
    }
}

/// `(start_time_unix_nano, value)` of the `netprobe.flow.packets` points to `port`.
fn flow_points(req: &ExportMetricsServiceRequest, port: u16) -> Vec<(u64, i64)> {
    let port = port.to_string();
    let mut points = Vec::new();
    for m in req
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .filter(|m| m.name == "netprobe.flow.packets")
    {
        let Some(Data::Sum(sum)) = &m.data else {
            continue;
        };
        for p in &sum.data_points {
            let to_port = p.attributes.iter().any(|a| {
                a.key == "destination.port"
                    && a.value
                        .as_ref()
                        .and_then(|v| v.value.as_ref())
                        .is_some_and(|v| match v {
                            any_value::Value::StringValue(s) => *s == port,
                            any_value::Value::IntValue(i) => i.to_string() == port,
                            _ => false,
                        })
            });
            if let (true, Some(number_data_point::Value::AsInt(v))) = (to_port, &p.value) {
                points.push((p.start_time_unix_nano, *v));
            }
        }
    }
    points
}

/// The lab, its bpffs, and a config file for the agent binary.
pub(super) struct Setup {
    pub(super) lab: NodeLab,
    pub(super) bpffs: Bpffs,
    dir: PathBuf,
}

impl Setup {
    pub(super) fn new(tag: &str) -> Self {
        let lab = NodeLab::new(tag);
        let bpffs = Bpffs::mount();
        let dir = std::env::temp_dir().join(unique(tag));
        fs::create_dir_all(&dir).expect("work dir");
        Self { lab, bpffs, dir }
    }

    /// A configuration: pinned in our bpffs, flows of `capacity`, OTLP to `otlp` if any.
    fn config(&self, name: &str, capacity: u32, otlp: Option<u16>) -> PathBuf {
        self.config_with(name, capacity, otlp, "")
    }

    /// As [`Setup::config`], with more `flows:` settings (`flows`: indented lines).
    pub(super) fn config_with(
        &self,
        name: &str,
        capacity: u32,
        otlp: Option<u16>,
        flows: &str,
    ) -> PathBuf {
        let mut text = format!(
            "flows:\n  poll_interval: 200ms\n  capacity: {capacity}\n{flows}http:\n  listen: 127.0.0.1:9464\n\
             k8s:\n  mode: standalone\npinning:\n  path: {}\n",
            self.bpffs.0.display()
        );
        if let Some(port) = otlp {
            text += &[
                "otlp:",
                &format!("  endpoint: http://127.0.0.1:{port}"),
                "  protocol: http/protobuf",
                "  gzip: false",
                "  interval: 1s\n",
            ]
            .join("\n");
        }
        let path = self.dir.join(name);
        fs::write(&path, text).expect("config");
        path
    }

    /// Starts the agent binary in the node namespace (XDP on the uplink, TC on the veths),
    /// its log in `log`; waits until it serves its attachments.
    pub(super) fn start(&self, config: &Path, log: &str) -> Running {
        let log = fs::File::create(self.dir.join(log)).expect("log");
        let out = log.try_clone().expect("dup log");
        let child = Running(
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &self.lab.node.name,
                    &agent_bin(),
                    "run",
                    "--hook",
                    "eth0=xdp",
                ])
                .arg("--config")
                .arg(config)
                .stdout(out)
                .stderr(log)
                .spawn()
                .expect("starting the agent binary"),
        );
        let attached = wait_until(Duration::from_secs(30), || {
            get_in(&self.lab.node, "/metrics").is_some_and(|(code, body)| {
                code == 200 && body.contains("netprobe_agent_interfaces{hook=\"tc\"} 3")
            })
        });
        assert!(
            attached,
            "the agent did not attach: {}",
            self.log("agent.log")
        );
        child
    }

    pub(super) fn log(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(name)).unwrap_or_default()
    }

    /// `count` datagrams of `PAYLOAD` bytes from pod 0 to pod 1's `port`, in bursts the
    /// receiver's socket buffer holds (each is received before the next is sent).
    pub(super) fn send(&self, port: u16, count: usize) {
        for burst in [50; 12].iter().scan(count, |left, &b| {
            let n = b.min(*left);
            *left -= n;
            (n > 0).then_some(n)
        }) {
            traffic::udp(
                &self.lab.pods[0],
                &format!("{}:40150", PODS[0]),
                &self.lab.pods[1],
                &format!("{}:{port}", PODS[1]),
                burst,
                PAYLOAD,
            );
        }
    }

    /// Waits until `/metrics` shows `packets` (and their bytes) for the flow to `port`.
    pub(super) fn wait_counted(&self, port: u16, packets: usize) {
        let series = |name: &str| {
            format!(
                "{name}{{source_address=\"{}\",destination_address=\"{}\",destination_port=\"{port}\",\
                 network_transport=\"udp\",network_type=\"ipv4\",netprobe_origin=\"outside\"}}",
                PODS[0], PODS[1]
            )
        };
        let want = [
            format!("{} {packets}", series("netprobe_flow_packets_total")),
            format!(
                "{} {}",
                series("netprobe_flow_bytes_total"),
                packets * (PAYLOAD + 28)
            ),
        ];
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(20), || {
            last = get_in(&self.lab.node, "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default();
            want.iter().all(|w| last.lines().any(|l| l == w))
        });
        assert!(
            ok,
            "never {want:?}:\n{}",
            last.lines()
                .filter(|l| l.contains(&format!("\"{port}\"")))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    /// Asserts that nothing of ours is attached in the node namespace.
    fn assert_nothing_attached(&self, after: &str) {
        assert!(
            !has_xdp(&self.lab.node, "eth0"),
            "XDP left on eth0 after {after}"
        );
        for ifname in VIRTUAL {
            let mut left = (Vec::new(), Vec::new());
            let gone = wait_until(Duration::from_secs(10), || {
                left = attached_tc(&self.lab.node, ifname);
                left.0.is_empty() && left.1.is_empty()
            });
            assert!(gone, "{ifname} after {after}: {left:?}");
        }
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in ["agent.log", "agent2.log", "agent3.log"] {
                eprintln!("--- {log} ---\n{}", self.log(log));
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// UDP payload of the test traffic: 228 IP bytes a datagram.
pub(super) const PAYLOAD: usize = 200;

#[test]
fn sigkill_then_restart_loses_no_count_and_sigterm_leaves_nothing() {
    let s = Setup::new("restart");
    let port = 7050;
    let otlp = OtlpCapture::start(&s.lab.node, port);
    let config = s.config("config.yaml", 65_536, Some(otlp.port));
    let mut agent = s.start(&config, "agent.log");
    let links = s.bpffs.link_ids();
    assert!(
        links.iter().any(|(n, _)| n.starts_with("xdp-")),
        "no pinned XDP link: {links:?}"
    );
    s.send(port, 300);
    s.wait_counted(port, 300);
    let started = otlp.wait_for(300);
    // SIGKILL: nothing detached; the kernel keeps counting while no agent runs.
    signal(&mut agent, libc::SIGKILL);
    assert!(has_xdp(&s.lab.node, "eth0"), "XDP detached by a SIGKILL");
    assert_eq!(s.bpffs.link_ids(), links, "the pinned links after the kill");
    s.send(port, 200);
    let mut agent = s.start(&config, "agent2.log");
    s.wait_counted(port, 500);
    s.send(port, 100);
    s.wait_counted(port, 600);
    assert_eq!(
        otlp.wait_for(600),
        started,
        "the start time of the continued series"
    );
    // The same links: the new programs were swapped in, nothing was detached and re-attached.
    assert_eq!(
        s.bpffs.link_ids(),
        links,
        "the pinned links after the restart"
    );
    let log = s.log("agent2.log");
    assert!(log.contains("adopting the pinned maps"), "{log}");
    eprintln!(
        "restart: 300 + 200 (no agent) + 100 = 600 packets, {} bytes; start time {started} kept; links {links:?}",
        600 * (PAYLOAD + 28)
    );
    // SIGTERM in standalone mode: go away.
    assert!(
        signal(&mut agent, libc::SIGTERM).success(),
        "{}",
        s.log("agent2.log")
    );
    s.assert_nothing_attached("SIGTERM");
    assert!(
        s.bpffs.netns_dirs().is_empty(),
        "left pinned: {:?}",
        s.bpffs.netns_dirs()
    );
}

#[test]
fn an_incompatible_pin_is_replaced_and_cleanup_removes_everything() {
    let s = Setup::new("repin");
    let port = 7051;
    let mut agent = s.start(&s.config("small.yaml", 65_536, None), "agent.log");
    s.send(port, 30);
    s.wait_counted(port, 30);
    signal(&mut agent, libc::SIGKILL);
    let mut agent = s.start(&s.config("large.yaml", 131_072, None), "agent2.log");
    let log = s.log("agent2.log");
    let line = "pinned state from an incompatible layout (map FLOWS4: max_entries 65536 ≠ 131072): replacing it";
    assert_eq!(log.matches(line).count(), 1, "{log}");
    // A fresh table: only what is sent now.
    s.send(port, 50);
    s.wait_counted(port, 50);
    signal(&mut agent, libc::SIGKILL);
    assert!(has_xdp(&s.lab.node, "eth0"));
    let config = s.config("large.yaml", 131_072, None);
    let cleanup = || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &s.lab.node.name,
                &agent_bin(),
                "cleanup",
                "--config",
            ])
            .arg(&config)
            .output()
            .expect("cleanup");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = cleanup();
    eprintln!("cleanup printed:\n{first}");
    assert!(first.contains("unpinned link xdp"), "{first}");
    assert!(first.contains("unpinned map FLOWS4"), "{first}");
    s.assert_nothing_attached("cleanup");
    assert!(
        s.bpffs.netns_dirs().is_empty(),
        "left pinned: {:?}",
        s.bpffs.netns_dirs()
    );
    assert!(
        cleanup().contains("removed 0 item(s)"),
        "a second cleanup removes nothing"
    );
}

/// The stop a rollout makes (a SIGTERM in cluster mode): the library agent's
/// [`otel_netprobe::agent::Agent::stop_keeping`] leaves every program attached and pinned, the
/// next agent continues the flow, and a plain stop then removes everything.
#[test]
fn a_stop_that_keeps_leaves_the_programs_counting_for_the_next_agent() {
    use otel_netprobe::{
        config::{Hook, HookOverride},
        flow::Transport,
    };

    use super::common::agent::{Sel, start_with, wait_attached, wait_flow};
    let s = Setup::new("keep");
    let port = 7052;
    let pins = s.bpffs.0.clone();
    let start = || {
        let pins = pins.clone();
        let xdp = vec![HookOverride {
            name: "eth0".into(),
            hook: Hook::Xdp,
        }];
        let agent = start_with(&s.lab.node, xdp, move |cfg| {
            cfg.pinning.enabled = true;
            cfg.pinning.path = pins;
        });
        wait_attached(&agent, 4);
        agent
    };
    let sel = Sel {
        src: PODS[0],
        dst: PODS[1],
        sport: Some(40150),
        dport: Some(port),
        transport: Transport::Udp,
    };
    let agent = start();
    let links = s.bpffs.link_ids();
    s.send(port, 20);
    wait_flow(&agent, sel, 20);
    agent.stop_keeping();
    assert!(
        has_xdp(&s.lab.node, "eth0"),
        "XDP detached by a stop that keeps"
    );
    assert_eq!(s.bpffs.link_ids(), links, "the pinned links after the stop");
    s.send(port, 10);
    let agent = start();
    let flow = wait_flow(&agent, sel, 30);
    assert_eq!((flow.packets, flow.bytes), (30, 30 * (PAYLOAD as u64 + 28)));
    assert_eq!(
        s.bpffs.link_ids(),
        links,
        "the pinned links after the restart"
    );
    agent.stop();
    s.assert_nothing_attached("stop");
    assert!(
        s.bpffs.netns_dirs().is_empty(),
        "left pinned: {:?}",
        s.bpffs.netns_dirs()
    );
}
