//! `agent`: the resident memory of a running `otel-netprobe run` — idle, then with 100k live
//! flows, serving `/metrics` and exporting OTLP every second to a sink. Absolute figures, with
//! the idle agent of the same run as the baseline, beside the goal (≤ 80 MiB).
//! `NETPROBE_BENCH_AGENT=PATH` measures another build of the binary the same way;
//! `NETPROBE_BENCH_BEFORE=PATH` measures a second build in the same run, printed beside (e.g.
//! the previous release's, for a before/after).

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use crate::common::{
    NodeLab,
    addr::PODS,
    backends::{free_port, http_get},
    wait_until,
};

/// Source ports × destination ports: the live flows (pod0 → pod1, UDP).
const SOURCES: u16 = 2;
const PORTS: u16 = 50_000;

/// The goal for the resident memory with 100k live flows (issue 18).
const GOAL_MIB: f64 = 80.0;

fn agent_bin() -> PathBuf {
    std::env::var_os("NETPROBE_BENCH_AGENT").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_otel-netprobe")),
        PathBuf::from,
    )
}

/// What [`measure`] found: resident MiB idle and with the flows, and the share of one CPU.
struct Resident {
    idle: f64,
    /// Median of the samples over ten cycles, and their maximum.
    busy: f64,
    max: f64,
    cpu: f64,
}

/// An OTLP/HTTP sink in the calling thread's namespace: answers 200 to every POST and counts
/// the requests.
fn sink() -> (SocketAddr, Arc<AtomicU64>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("sink");
    let addr = l.local_addr().expect("addr");
    let n = Arc::new(AtomicU64::new(0));
    let count = Arc::clone(&n);
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let mut r = BufReader::new(conn);
            let mut len = 0;
            let mut line = String::new();
            while r.read_line(&mut line).is_ok_and(|n| n > 2) {
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_ok() {
                count.fetch_add(1, Ordering::Relaxed);
            }
            let _ = r
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (addr, n)
}

fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

fn mib(pid: u32) -> f64 {
    super::rss_bytes(&pid.to_string()) as f64 / f64::from(1 << 20)
}

/// Idle, then with 100k live flows; this build, and the one `NETPROBE_BENCH_BEFORE` names.
pub fn resident_memory() {
    let before = std::env::var_os("NETPROBE_BENCH_BEFORE").map(PathBuf::from);
    let runs: Vec<(PathBuf, Resident)> = before
        .into_iter()
        .chain([agent_bin()])
        .map(|bin| {
            let r = measure(bin.clone());
            (bin, r)
        })
        .collect();
    println!(
        "\n== Agent resident memory (VmRSS of a running `otel-netprobe run`, serving /metrics and exporting OTLP every second); absolute, goal ≤ {GOAL_MIB:.0} MiB with 100k flows =="
    );
    for (bin, r) in &runs {
        let flows = f64::from(SOURCES) * f64::from(PORTS);
        println!(
            "{}: idle {:.1} MiB; with {flows} live flows {:.1} MiB (median of samples every \
             50 ms over ten cycles; max {:.1}; +{:.1} MiB over idle; goal ≤ {GOAL_MIB:.0}: {}), \
             using {:.1} % of one CPU (a read cycle and an export every second)",
            bin.display(),
            r.idle,
            r.busy,
            r.max,
            r.busy - r.idle,
            if r.busy <= GOAL_MIB { "met" } else { "NOT met" },
            100.0 * r.cpu
        );
    }
}

/// Runs `bin` in a lab of its own: resident memory idle, then with 100k live flows.
fn measure(bin: PathBuf) -> Resident {
    let lab = NodeLab::new("brss");
    let listen = format!("127.0.0.1:{}", free_port());
    let dir = std::env::temp_dir().join(crate::common::unique("brss"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "http:\n  listen: {listen}\nflows:\n  kernel_idle_timeout: 1h\n  idle_timeout: 1h\n"
        ),
    )
    .expect("config");
    let (sink_addr, exports) = lab.node.run(sink);
    let mut child: Child = lab.node.run(move || {
        Command::new(&bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{sink_addr}"))
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
            .env("OTEL_METRIC_EXPORT_INTERVAL", "1000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the agent")
    });
    let pid = child.id();
    let url = format!("http://{listen}/metrics");
    let metrics = || {
        let url = url.clone();
        lab.node
            .run(move || http_get(&url).map(|(_, b)| b).unwrap_or_default())
    };
    let exported = |n: u64| {
        let from = exports.load(Ordering::Relaxed);
        wait_until(Duration::from_secs(60), || {
            exports.load(Ordering::Relaxed) >= from + n
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), || {
            gauge(&metrics(), "netprobe_agent_interfaces{hook=\"tc\"}") == Some(4.0)
        }),
        "the agent did not attach"
    );
    assert!(exported(3), "no exports");
    let idle = mib(pid);
    lab.pods[0].run(|| {
        let dst: std::net::IpAddr = PODS[1].parse().unwrap();
        for s in 0..SOURCES {
            let sock = UdpSocket::bind((PODS[0], 40_000 + s)).expect("bind");
            for p in 1..=PORTS {
                let _ = sock.send_to(b"x", (dst, p));
            }
        }
    });
    let flows = f64::from(SOURCES) * f64::from(PORTS);
    assert!(
        wait_until(Duration::from_secs(60), || {
            gauge(&metrics(), "netprobe_agent_flows_tracked").is_some_and(|n| n >= flows)
        }),
        "the agent did not track {flows} flows"
    );
    assert!(exported(5), "no exports of the 100k flows");
    // CPU over ten read cycles and exports of the 100k flows; the resident memory sampled
    // every 50 ms meanwhile (a sample may land inside a cycle, whose blocks are then mapped).
    let (cpu, started) = (super::cpu_seconds(pid), std::time::Instant::now());
    let from = exports.load(Ordering::Relaxed);
    let mut samples = vec![];
    while exports.load(Ordering::Relaxed) < from + 10 && started.elapsed() < Duration::from_secs(60)
    {
        samples.push(mib(pid));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(exported(0), "no exports of the 100k flows");
    let cpu = (super::cpu_seconds(pid) - cpu) / started.elapsed().as_secs_f64();
    let max = samples.iter().copied().fold(0.0, f64::max);
    let busy = crate::median(samples);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    Resident {
        idle,
        busy,
        max,
        cpu,
    }
}
