//! The `otel-netprobe` binary as users run it, always inside a network namespace the test
//! created and under a timeout: a regression can neither attach to this machine's interfaces
//! nor hang the suite.

use std::{
    fs,
    net::SocketAddr,
    path::PathBuf,
    process::{Child, Command, ExitStatus, Output, Stdio},
    time::{Duration, Instant},
};

use super::{Netns, backends::http_get, unique, wait_until};

/// How long any run of the binary may take before the test kills it and fails.
pub const TIMEOUT: Duration = Duration::from_secs(120);

/// The binary under test.
pub fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_otel-netprobe"))
}

/// A command for the binary that sees no Kubernetes API (no in-cluster variables, no
/// kubeconfig) and no `OTEL_*` variables of the machine running the tests.
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(path());
    c.args(args);
    clean_env(&mut c);
    c
}

/// Removes what would let a run see this machine's Kubernetes API or OTLP settings.
pub fn clean_env(c: &mut Command) {
    c.env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBECONFIG")
        .env("HOME", "/nonexistent")
        // Nothing pinned in the machine's shared /sys/fs/bpf (a test that wants pinning
        // mounts a bpffs of its own and says so in its configuration).
        .env("NETPROBE_NO_PINNING", "true");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            c.env_remove(k);
        }
    }
}

/// Runs `cmd` inside `ns` to its end, killing it (and failing) after [`TIMEOUT`].
pub fn run_to_end(ns: &Netns, cmd: Command) -> Output {
    let child = spawn_in(ns, cmd, Stdio::piped());
    let pid = child.id();
    let deadline = Instant::now() + TIMEOUT;
    let waiter = std::thread::spawn(move || child.wait_with_output());
    while !waiter.is_finished() {
        if Instant::now() >= deadline {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let _ = waiter.join();
            panic!("`otel-netprobe` did not exit within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    waiter
        .join()
        .expect("waiter")
        .expect("wait for otel-netprobe")
}

fn spawn_in(ns: &Netns, mut cmd: Command, out: Stdio) -> Child {
    cmd.stdin(Stdio::null()).stdout(out).stderr(Stdio::piped());
    ns.run(move || cmd.spawn()).expect("spawn otel-netprobe")
}

/// A running `otel-netprobe run`, killed on drop if still running.
pub struct Agent {
    child: Child,
    ns: String,
    /// Where it serves `/metrics`.
    pub listen: SocketAddr,
    log: PathBuf,
}

impl Agent {
    /// Starts `cmd` (a `run` command listening at `listen`) inside `ns`; its output goes to a
    /// log file.
    pub fn start(ns: &Netns, mut cmd: Command, listen: SocketAddr) -> Self {
        let log = std::env::temp_dir().join(unique("agentlog"));
        let file = fs::File::create(&log).expect("log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().expect("dup log"))
            .stderr(file);
        let child = ns.run(move || cmd.spawn()).expect("spawn otel-netprobe");
        Self {
            child,
            ns: ns.name.clone(),
            listen,
            log,
        }
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `GET path` from its namespace (`None` while it does not answer).
    pub fn get(&self, path: &str) -> Option<String> {
        let url = format!("http://{}{path}", self.listen);
        let ns = self.ns.clone();
        super::within(Some(&ns), move || http_get(&url))
            .ok()
            .filter(|(status, _)| *status == 200)
            .map(|(_, body)| body)
    }

    /// `/metrics`, waiting (with a deadline) until it answers.
    pub fn metrics(&self) -> String {
        let mut text = None;
        let ok = wait_until(Duration::from_secs(60), || {
            text = self.get("/metrics");
            text.is_some()
        });
        assert!(ok, "/metrics never answered: {}", self.log());
        text.unwrap_or_default()
    }

    /// Waits until `/metrics` satisfies `pred`; returns that text.
    pub fn wait_metrics(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut last = String::new();
        let ok = wait_until(Duration::from_secs(60), || {
            last = self.metrics();
            pred(&last)
        });
        assert!(
            ok,
            "{what}: not within 60 s\n{last}\n--- log ---\n{}",
            self.log()
        );
        last
    }

    /// SIGTERM, then waits (with [`TIMEOUT`]) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit {TIMEOUT:?} after SIGTERM: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- otel-netprobe log ---\n{}", self.log());
        }
        let _ = fs::remove_file(&self.log);
    }
}

/// The value of the sample `name` (with its labels, as written) in a Prometheus text.
pub fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The samples of a Prometheus text whose names start with one of `prefixes`:
/// `name{labels sorted}` → value.
pub fn samples(text: &str, prefixes: &[&str]) -> std::collections::BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && prefixes.iter().any(|p| l.starts_with(p)))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let mut labels: Vec<&str> = labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect();
            labels.sort_unstable();
            Some((
                format!("{name}{{{}}}", labels.join(",")),
                value.parse().ok()?,
            ))
        })
        .collect()
}

/// Data points in a `/metrics` text as OTLP counts them: one per sample, a histogram's
/// buckets and sum aside (its count stands for the histogram's one point).
pub fn points(text: &str) -> u64 {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter(|l| {
            let name = l.split(['{', ' ']).next().unwrap_or_default();
            !name.ends_with("_bucket") && !name.ends_with("_sum")
        })
        .count() as u64
}

/// Resident memory of process `pid`, MiB.
pub fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .expect("VmRSS");
    kb / 1024.0
}
