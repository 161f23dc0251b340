//! The real OpenTelemetry Collector, `otelcol-netprobe` (the official core and contrib modules
//! of `collector-config/distribution/`, one release, built by `make setup`), run the way the
//! chart's Deployment runs it: its configuration file and environment, inside a network namespace
//! the test made (the configurations bind fixed ports on 0.0.0.0), and inside a memory cgroup
//! with the container's limit, which `memory_limiter`'s `limit_percentage` is a share of. The
//! process is stopped and its cgroup and files removed on drop, also when the test fails.
//!
//! Included with `#[path]` by the test files that need it, beside `common/cgroup.rs` and
//! `common/repo.rs` (no change to `common/mod.rs`).
#![allow(dead_code, reason = "each test binary uses a different part")]

use std::{
    fs::{self, OpenOptions},
    io,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    cgroup::MemoryCgroup,
    common::{
        Netns,
        backends::{http_get, http_post, tool},
        patient, unique, within,
    },
    repo,
};

/// The feature gates that turn the deprecated settings our configurations once used into
/// errors: a configuration that passes `validate` with them uses none of them.
pub const NO_DEPRECATED: &str = "--feature-gates=exporter.prometheus.DisableResourceToTelemetryConversion,exporter.prometheusremotewrite.DisableResourceToTelemetryConversion,exporter.prometheusremotewritexporter.removeTopLevelHTTPSettings";

/// How long the Collector may take to answer its health check after it was started.
const STARTUP: Duration = Duration::from_secs(60);

/// What a Collector pod runs: its configuration, its command-line arguments (the chart's, with
/// `--config` pointing at the file), its environment and its container's memory limit.
#[derive(Clone, Debug)]
pub struct Pod {
    /// A name for logs and errors (`chart scrape`, `otelcol.yaml`).
    pub name: String,
    /// The configuration file's text.
    pub config: String,
    /// Arguments besides `--config`.
    pub args: Vec<String>,
    /// Environment variables (nothing else of this process's environment is passed on).
    pub env: Vec<(String, String)>,
    /// The memory limit in bytes.
    pub memory_limit: u64,
}

/// Bytes of a Kubernetes memory quantity as the chart writes them (`512Mi`, `1Gi`, `500M`).
pub fn quantity(q: &str) -> u64 {
    let (digits, unit) = q.split_at(q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len()));
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|e| panic!("quantity {q}: {e}"));
    let unit = match unit {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "k" => 1000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        other => panic!("quantity {q}: unit {other}"),
    };
    n * unit
}

impl Pod {
    /// The chart's Collector rendered (release `np`, namespace `netprobe`) with `values`: the
    /// ConfigMap's `config.yaml`, the workload's (a DaemonSet with `collector.topology=node`,
    /// a Deployment with `gateway`) arguments, plain environment values and
    /// `resources.limits.memory`.
    pub fn from_chart(name: &str, values: &Value) -> Self {
        let r = repo::render(values).unwrap_or_else(|e| panic!("render {values}: {e}"));
        let collector = "np-otel-netprobe-collector";
        let workload = ["DaemonSet", "Deployment"]
            .iter()
            .flat_map(|kind| r.all(kind))
            .find(|o| o["metadata"]["name"] == collector)
            .unwrap_or_else(|| panic!("{name}: no Collector DaemonSet or Deployment"));
        Self::from_objects(name, r.get("ConfigMap", collector), workload)
    }

    /// The chart's Collector from its ConfigMap and workload (DaemonSet or Deployment): as
    /// rendered, or as an API server stores them after `helm install` (what a kubelet would
    /// run).
    pub fn from_objects(name: &str, config_map: &Value, deployment: &Value) -> Self {
        let config = config_map["data"]["config.yaml"]
            .as_str()
            .expect("the Collector's config.yaml")
            .to_owned();
        let c = &deployment["spec"]["template"]["spec"]["containers"][0];
        let args: Vec<String> = c["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a.as_str().expect("an argument").to_owned())
            .filter(|a| !a.starts_with("--config="))
            .collect();
        let env = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                let value = e["value"].as_str().unwrap_or_else(|| {
                    panic!("{name}: env {e} is not a plain value; give the test one")
                });
                (
                    e["name"].as_str().expect("name").to_owned(),
                    value.to_owned(),
                )
            })
            .collect();
        let limit = c["resources"]["limits"]["memory"]
            .as_str()
            .expect("the Collector's memory limit");
        Self {
            name: name.to_owned(),
            config,
            args,
            env,
            memory_limit: quantity(limit),
        }
    }

    /// A file of `collector-config/` as its README runs it (`--config FILE` and the variables
    /// it names in `env`), with the memory limit the chart gives a Collector by default.
    pub fn from_file(file: &str, env: &[(&str, &str)]) -> Self {
        let chart = Self::from_chart("chart defaults", &serde_json::json!({}));
        Self {
            name: file.to_owned(),
            config: repo::read(&format!("collector-config/{file}")),
            args: Vec::new(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            memory_limit: chart.memory_limit,
        }
    }

    /// A port the configuration listens on, from its `host:port` at `pointer` (a JSON pointer
    /// into the configuration, e.g. `/extensions/health_check/endpoint`).
    pub fn port(&self, pointer: &str) -> u16 {
        let config: Value = serde_norway::from_str(&self.config).expect("config YAML");
        let at = config
            .pointer(pointer)
            .unwrap_or_else(|| panic!("{}: nothing at {pointer}", self.name));
        let port = match at {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.rsplit(':').next().and_then(|p| p.parse().ok()),
            _ => None,
        };
        port.and_then(|p| u16::try_from(p).ok())
            .unwrap_or_else(|| panic!("{}: no port at {pointer}: {at}", self.name))
    }

    /// The health check's port.
    pub fn health_port(&self) -> u16 {
        self.port("/extensions/health_check/endpoint")
    }

    /// What `memory_limiter` must report for this pod's limit: (total, limit, spike) in MiB, as
    /// the component computes them from its percentages.
    pub fn limiter_mib(&self) -> (u64, u64, u64) {
        let config: Value = serde_norway::from_str(&self.config).expect("config YAML");
        let ml = &config["processors"]["memory_limiter"];
        let pct = |k: &str| {
            ml[k]
                .as_u64()
                .unwrap_or_else(|| panic!("memory_limiter.{k}"))
        };
        let share = |p: u64| (self.memory_limit * p / 100) >> 20;
        (
            self.memory_limit >> 20,
            share(pct("limit_percentage")),
            share(pct("spike_limit_percentage")),
        )
    }

    /// Writes the configuration into `dir`; returns its path.
    fn write_config(&self, dir: &Path) -> PathBuf {
        let path = dir.join("config.yaml");
        fs::write(&path, &self.config).expect("write the Collector's config");
        path
    }

    /// `otelcol-netprobe validate` of this pod's configuration with its environment and the
    /// extra `flags`; `Err` carries what it printed.
    pub fn validate(&self, flags: &[&str]) -> Result<(), String> {
        let dir = std::env::temp_dir().join(unique("colval"));
        fs::create_dir_all(&dir).expect("temp dir");
        let config = self.write_config(&dir);
        let mut cmd = Command::new(tool("otelcol-netprobe"));
        cmd.arg("validate")
            .arg(format!("--config={}", config.display()))
            .args(&self.args)
            .args(flags);
        clean_env(&mut cmd, &self.env);
        let out = cmd.output().expect("run otelcol-netprobe validate");
        let _ = fs::remove_dir_all(&dir);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}

/// Only `env` and a `PATH` reach the Collector: nothing of the machine's OTEL_* variables.
fn clean_env(cmd: &mut Command, env: &[(String, String)]) {
    cmd.env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
        .envs(env.iter().map(|(k, v)| (k, v)));
}

/// A running Collector (or one stopped on purpose, to be started again).
pub struct Collector {
    child: Option<Child>,
    ns: String,
    dir: PathBuf,
    pod: Pod,
    /// How long the last start took, from the spawn to a 200 from the health check.
    pub started_in: Duration,
    // Dropped after the process is gone.
    cgroup: MemoryCgroup,
}

impl Collector {
    /// Starts `pod` inside `ns` and its own memory cgroup, and waits until its health check
    /// answers 200 (the pipelines are running).
    pub fn start(ns: &Netns, pod: Pod) -> Self {
        let tag = unique("otelcol");
        let dir = std::env::temp_dir().join(&tag);
        fs::create_dir_all(&dir).expect("Collector dir");
        let cgroup = MemoryCgroup::new(&tag, pod.memory_limit);
        let mut c = Self {
            child: None,
            ns: ns.name.clone(),
            dir,
            pod,
            started_in: Duration::ZERO,
            cgroup,
        };
        c.start_again();
        c
    }

    /// Starts the (stopped) Collector again with the same configuration, in the same cgroup;
    /// waits for its health check.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "{}: already running", self.pod.name);
        let config = self.pod.write_config(&self.dir);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("log"))
            .expect("Collector log");
        let mut cmd = self.cgroup.command(&tool("otelcol-netprobe"));
        cmd.arg(format!("--config={}", config.display()))
            .args(&self.pod.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log);
        clean_env(&mut cmd, &self.pod.env);
        let started = Instant::now();
        let child = within(Some(&self.ns), move || cmd.spawn())
            .unwrap_or_else(|e| panic!("spawn otelcol-netprobe: {e}"));
        self.child = Some(child);
        let deadline = started + patient(STARTUP);
        loop {
            if self.health() == Some(200) {
                break;
            }
            let exited = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                exited.is_none() && Instant::now() < deadline,
                "{}: not healthy ({exited:?}) within {STARTUP:?}:\n{}",
                self.pod.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.started_in = started.elapsed();
    }

    /// The pod it runs.
    pub fn pod(&self) -> &Pod {
        &self.pod
    }

    /// Its cgroup.
    pub fn cgroup(&self) -> &MemoryCgroup {
        &self.cgroup
    }

    /// Its process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The status of `GET /` on the health check's port (`None`: no answer).
    pub fn health(&self) -> Option<u16> {
        self.get(self.pod.health_port(), "/").ok().map(|(s, _)| s)
    }

    /// `GET http://127.0.0.1:PORT/PATH` from its namespace.
    pub fn get(&self, port: u16, path: &str) -> io::Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{port}{path}");
        within(Some(&self.ns), move || http_get(&url))
    }

    /// `POST http://127.0.0.1:PORT/PATH` from its namespace.
    pub fn post(
        &self,
        port: u16,
        path: &str,
        content_type: &'static str,
        body: String,
    ) -> io::Result<(u16, String)> {
        let url = format!("http://127.0.0.1:{port}{path}");
        within(Some(&self.ns), move || {
            http_post(&url, content_type, body.as_bytes())
        })
    }

    /// Everything it logged, over all its runs.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// What `memory_limiter` logged at its (last) start: (total, limit, spike) in MiB.
    pub fn limiter_mib(&self) -> Option<(u64, u64, u64)> {
        let log = self.log();
        let field = |line: &str, key: &str| -> Option<u64> {
            let at = line.find(&format!("\"{key}\": "))? + key.len() + 4;
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        };
        let total = log
            .lines()
            .rev()
            .find_map(|l| field(l, "total_memory_mib"))?;
        let configured = log
            .lines()
            .rev()
            .find(|l| l.contains("Memory limiter configured"))?;
        Some((
            total,
            field(configured, "limit_mib")?,
            field(configured, "spike_limit_mib")?,
        ))
    }

    /// SIGTERM, then waits (60 s at most) for it to exit; returns its exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self
            .child
            .take()
            .unwrap_or_else(|| panic!("{}: not running", self.pod.name));
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + patient(Duration::from_secs(60));
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "{}: no exit 60 s after SIGTERM:\n{}",
                    self.pod.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- {} log (last lines) ---", self.pod.name);
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One OTLP/JSON request with one cumulative counter point `name = value` (with `attrs`),
/// from service `service` on node `probe-node`: a point through a Collector's pipeline.
pub fn probe_request(service: &str, name: &str, attrs: &[(&str, &str)], value: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let attributes: Vec<serde_json::Value> = attrs
        .iter()
        .map(|(k, v)| serde_json::json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    serde_json::json!({"resourceMetrics": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": service}},
            {"key": "k8s.node.name", "value": {"stringValue": "probe-node"}}]},
        "scopeMetrics": [{"scope": {"name": service}, "metrics": [{
            "name": name, "unit": "{probe}",
            "sum": {"aggregationTemporality": 2, "isMonotonic": true, "dataPoints": [{
                "attributes": attributes,
                "startTimeUnixNano": (now - 1_000_000_000).to_string(),
                "timeUnixNano": now.to_string(),
                "asInt": value.to_string()}]}}]}]}]})
    .to_string()
}
