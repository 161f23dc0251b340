//! The HTTP endpoint under slow and hostile clients, against the agent binary (in the chart it
//! listens on every address of every node): 2,000 half-open requests are all closed within
//! the header-read timeout, the agent's descriptors return to their starting count, and a
//! normal scrape is answered all the while; an idle keep-alive connection is closed by the
//! same timer; a 16 MiB header is refused. Every run is inside a network namespace this test
//! made (traffic on its loopback only), under a timeout.

mod common;

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{
    Netns,
    backends::http_get,
    binary::{self, Agent, sample},
    patient, unique, wait_until,
};

/// The agent's bounds in these tests: a short header-read timeout, so the test is quick.
const CONFIG: &str =
    "http:\n  header_read_timeout: 2s\n  idle_timeout: 5s\n  max_connections: 256\n";
const SLOW_CLIENTS: usize = 2000;

struct Run {
    ns: Netns,
    agent: Agent,
    dir: std::path::PathBuf,
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start() -> Run {
    common::require_root();
    let ns = Netns::new(&unique("httpb"));
    let dir = std::env::temp_dir().join(unique("httpb"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let config = dir.join("config.yaml");
    std::fs::write(&config, CONFIG).expect("config");
    let listen: SocketAddr = "127.0.0.1:9464".parse().expect("addr");
    let cmd = binary::command(&[
        "run",
        "--config",
        config.to_str().expect("utf-8 path"),
        "--listen",
        "127.0.0.1:9464",
    ]);
    let agent = Agent::start(&ns, cmd, listen);
    agent.metrics();
    // `/healthz` says 503 until the first read cycle completes: wait for it, so that a later
    // "still answers" check tests the server, not the agent's start-up.
    let ready = wait_until(patient(Duration::from_secs(60)), || {
        agent.get("/healthz").is_some()
    });
    assert!(ready, "/healthz never answered 200: {}", agent.log());
    Run { ns, agent, dir }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// This process may hold a few thousand sockets (the soft limit up to the hard one).
fn raise_nofile() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit on a local struct.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim);
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim);
    }
}

/// Whether the server closed `s`: end of stream or a reset, within `wait`.
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).expect("read timeout");
        match s.read(&mut buf) {
            Ok(0) => return true,
            // A response (the server may answer before closing): keep reading.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

/// GETs /metrics and the summary in a loop, from the agent's namespace, until told to stop.
struct Scraper {
    thread: std::thread::JoinHandle<()>,
    answered: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
}

impl Scraper {
    fn start(ns: &Netns, addr: SocketAddr, running: &Arc<AtomicBool>) -> Self {
        let (answered, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (running, ok, bad) = (
            Arc::clone(running),
            Arc::clone(&answered),
            Arc::clone(&failures),
        );
        let thread = ns.spawn(move || {
            let mut n = 0u64;
            while running.load(Ordering::Relaxed) {
                let path = if n.is_multiple_of(2) {
                    "/metrics"
                } else {
                    "/api/v1/summary"
                };
                match http_get(&format!("http://{addr}{path}")) {
                    Ok((200, body)) if !body.is_empty() => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("scrape {n} of {path} failed: {other:?}");
                        bad.fetch_add(1, Ordering::Relaxed)
                    }
                };
                n += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self {
            thread,
            answered,
            failures,
        }
    }

    /// (answered, failed).
    fn stop(self) -> (u64, u64) {
        self.thread.join().expect("scraper");
        (
            self.answered.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
        )
    }
}

/// [`SLOW_CLIENTS`] clients, each a request line and one header, never finished; returns them
/// and the most descriptors the agent held meanwhile.
fn flood(ns: &Netns, addr: SocketAddr, pid: u32) -> (Vec<TcpStream>, usize) {
    ns.run(move || {
        let mut clients = Vec::with_capacity(SLOW_CLIENTS);
        let mut peak = 0;
        for i in 0..SLOW_CLIENTS {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(60))
                .unwrap_or_else(|e| panic!("slow client {i}: connect: {e}"));
            // The server may already have closed an older client to make room for this one;
            // what matters is that this one got in.
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: 1\r\n");
            clients.push(s);
            if i % 50 == 0 {
                peak = peak.max(open_fds(pid));
            }
        }
        (clients, peak)
    })
}

#[test]
fn two_thousand_slow_clients_are_closed_and_scrapes_are_answered_throughout() {
    raise_nofile();
    let run = start();
    let pid = run.agent.pid();
    let before = open_fds(pid);
    let addr = run.agent.listen;

    let flooding = Arc::new(AtomicBool::new(true));
    let scraper = Scraper::start(&run.ns, addr, &flooding);
    let started = Instant::now();
    let (mut clients, peak) = flood(&run.ns, addr, pid);
    let flood_took = started.elapsed();

    // Every one is closed by the server: timed out, or evicted for a newer one.
    let wait = patient(Duration::from_secs(30));
    let deadline = Instant::now() + wait;
    let open: Vec<usize> = clients
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| {
            // At least a moment each: one already closed answers at once.
            let left = deadline.saturating_duration_since(Instant::now());
            (!closed_by_server(s, left.max(Duration::from_millis(10)))).then_some(i)
        })
        .collect();
    let all_closed = started.elapsed();
    flooding.store(false, Ordering::Relaxed);
    let (ok, failed) = scraper.stop();
    assert!(
        open.is_empty(),
        "{} of {SLOW_CLIENTS} slow clients still open after {wait:?}: {:?}",
        open.len(),
        &open[..open.len().min(10)]
    );
    drop(clients);

    let mut after = open_fds(pid);
    let back = wait_until(Duration::from_secs(30), || {
        after = open_fds(pid);
        after <= before
    });
    let text = run
        .agent
        .wait_metrics("the closed slow clients counted", |t| {
            let closed = ["header_timeout", "evicted"]
                .map(|r| {
                    sample(
                        t,
                        &format!("netprobe_agent_http_connections_closed_total{{reason=\"{r}\"}}"),
                    )
                    .unwrap_or(0.0)
                })
                .iter()
                .sum::<f64>();
            closed >= SLOW_CLIENTS as f64
        });
    let metric = |name: &str| sample(&text, name).map_or(-1, |v| v as i64);
    println!(
        "{SLOW_CLIENTS} slow clients connected in {flood_took:.1?}, all closed {all_closed:.1?} after the first; \
         agent descriptors: {before} before, {peak} at most during the flood, {after} after; \
         scrapes answered during the flood: {ok}, failed: {failed}; connections: accepted {}, refused {}, \
         closed by header_timeout {}, evicted {}, done {}",
        metric("netprobe_agent_http_connections_total{result=\"accepted\"}"),
        metric("netprobe_agent_http_connections_total{result=\"refused\"}"),
        metric("netprobe_agent_http_connections_closed_total{reason=\"header_timeout\"}"),
        metric("netprobe_agent_http_connections_closed_total{reason=\"evicted\"}"),
        metric("netprobe_agent_http_connections_closed_total{reason=\"done\"}"),
    );
    assert!(
        back,
        "agent descriptors: {before} before the flood, {after} after it"
    );
    assert_eq!(failed, 0, "scrapes failed during the flood ({ok} answered)");
    assert!(ok >= 1, "no scrape was answered during the flood");
    // Slow clients are evicted, never refused: a refusal is only for a server whose every
    // connection is answering a request.
    assert_eq!(
        metric("netprobe_agent_http_connections_total{result=\"refused\"}"),
        0
    );
    assert!(
        metric("netprobe_agent_http_connections_open") <= 256,
        "{text}"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_by_the_header_read_timeout() {
    let run = start();
    let addr = run.agent.listen;
    // /healthz answers 200 once the reader has published a cycle; the agent may not have yet.
    let healthy = run.ns.run(move || {
        wait_until(patient(Duration::from_secs(30)), || {
            matches!(http_get(&format!("http://{addr}/healthz")), Ok((200, _)))
        })
    });
    assert!(healthy, "the agent never answered /healthz with 200");
    let (first, waited) = run.ns.run(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: agent\r\n\r\n")
            .expect("request");
        // The response, and then the connection stays open (keep-alive) until the server's
        // timer for the next request head runs out.
        let mut head = [0u8; 12];
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.read_exact(&mut head).expect("response");
        let t = Instant::now();
        let closed = closed_by_server(&mut s, patient(Duration::from_secs(30)));
        assert!(closed, "an idle keep-alive connection was never closed");
        (String::from_utf8_lossy(&head).into_owned(), t.elapsed())
    });
    assert_eq!(first, "HTTP/1.1 200");
    // Closed by the 2 s header-read timeout, not by the 5 s idle timeout.
    let text = run
        .agent
        .wait_metrics("the keep-alive connection counted", |t| {
            sample(
                t,
                "netprobe_agent_http_connections_closed_total{reason=\"header_timeout\"}",
            ) == Some(1.0)
        });
    assert_eq!(
        sample(
            &text,
            "netprobe_agent_http_connections_closed_total{reason=\"idle_timeout\"}"
        ),
        Some(0.0)
    );
    println!("idle keep-alive connection closed {waited:.1?} after its response");
}

#[test]
fn an_oversized_header_is_refused() {
    let run = start();
    let addr = run.agent.listen;
    let status = run.ns.run(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\nX-Big: ");
        // 16 MiB of header value, in pieces: the server stops reading long before the end.
        let chunk = vec![b'a'; 64 * 1024];
        for _ in 0..256 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
        let mut answer = Vec::new();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let _ = s.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    });
    assert_eq!(status, "HTTP/1.1 431 Request Header Fields Too Large");
    // And the agent still answers.
    assert!(run.agent.get("/healthz").is_some());
}
