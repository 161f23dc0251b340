//! Real metric backends for end-to-end tests: VictoriaMetrics (receives OTLP/HTTP) and
//! Prometheus (scrapes a target), each a child process on a free 127.0.0.1 port with its data in
//! a temporary directory, in this namespace or in a lab namespace (where the agent under test
//! runs: its loopback is the lab's); both are killed and cleaned up on drop. `make setup` installs them into
//! `$NETPROBE_TOOLS_DIR/bin` (default `~/.cache/otel-netprobe/bin`).
//!
//! HTTP is a minimal blocking HTTP/1.0 client over `TcpStream`, meant for loopback only.

use std::{
    fmt::Write as _,
    fs::{self, File},
    io::{self, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command},
    time::{Duration, Instant},
};

use serde_json::Value;

/// How long a backend may take to become ready.
const STARTUP: Duration = Duration::from_secs(30);

/// The path of an installed test tool, e.g. `tool("victoria-metrics")`.
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("NETPROBE_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/otel-netprobe"),
        PathBuf::from,
    );
    let path = dir.join("bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `make setup`",
        path.display()
    );
    path
}

/// A currently free TCP port on 127.0.0.1 (bound, read and released).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Percent-encodes everything but RFC 3986 unreserved characters (for query strings).
pub fn url_encode(s: &str) -> String {
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// One HTTP/1.0 request to `url` (`http://HOST:PORT/PATH`); returns status and body.
pub fn http(method: &str, url: &str, content_type: &str, body: &[u8]) -> io::Result<(u16, String)> {
    let target = url.strip_prefix("http://").expect("http:// URL");
    let (host, path) = target.split_at(target.find('/').unwrap_or(target.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut s = TcpStream::connect(host)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let head = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    match head.split(' ').nth(1).and_then(|c| c.parse().ok()) {
        Some(status) => Ok((status, body.to_owned())),
        None => Err(io::Error::other(format!("bad response: {head}"))),
    }
}

/// `GET url`.
pub fn http_get(url: &str) -> io::Result<(u16, String)> {
    http("GET", url, "text/plain", b"")
}

/// `POST url` with a body.
pub fn http_post(url: &str, content_type: &str, body: &[u8]) -> io::Result<(u16, String)> {
    http("POST", url, content_type, body)
}

/// A backend child process with its temporary directory (removed on drop) and log.
struct Backend {
    url: String,
    child: Child,
    dir: PathBuf,
    /// The network namespace it runs in (`None`: this process's).
    ns: Option<String>,
}

impl Backend {
    /// Runs `tool(name)` with the arguments `args(dir, listen_addr)` and waits until
    /// `GET ready_path` answers 200. Should the process exit early (most likely because its
    /// port was taken meanwhile), it is retried twice on fresh ports.
    fn start(
        ns: Option<&str>,
        name: &str,
        ready_path: &str,
        args: impl Fn(&str, &str) -> Vec<String>,
    ) -> Self {
        let dir = std::env::temp_dir().join(super::unique(name));
        fs::create_dir_all(&dir).expect("create backend dir");
        let dir_str = dir.to_str().expect("utf-8 temp dir");
        let spawn = |addr: &str| {
            let log = File::create(dir.join("log")).expect("create log");
            let mut cmd = Command::new(tool(name));
            cmd.args(args(dir_str, addr))
                .current_dir(&dir)
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log);
            let child = super::within(ns, move || cmd.spawn())
                .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
            (child, format!("http://{addr}"))
        };
        let (child, url) = spawn(&format!("127.0.0.1:{}", free_port()));
        let mut b = Self {
            url,
            child,
            dir: dir.clone(),
            ns: ns.map(str::to_owned),
        };
        let (deadline, mut retries) = (Instant::now() + STARTUP, 2);
        while !matches!(b.get(ready_path), Ok((200, _))) {
            let exited = b.child.try_wait().expect("try_wait");
            assert!(
                Instant::now() < deadline && (exited.is_none() || retries > 0),
                "{name} not ready ({exited:?}): {}",
                b.log()
            );
            if exited.is_some() {
                retries -= 1;
                (b.child, b.url) = spawn(&format!("127.0.0.1:{}", free_port()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        b
    }

    /// `GET` a path of this backend, from its namespace.
    fn get(&self, path: &str) -> io::Result<(u16, String)> {
        let url = format!("{}{path}", self.url);
        super::within(self.ns.as_deref(), move || http_get(&url))
    }

    /// `POST` to a path of this backend, from its namespace.
    fn post(
        &self,
        path: &str,
        content_type: &'static str,
        body: Vec<u8>,
    ) -> io::Result<(u16, String)> {
        let url = format!("{}{path}", self.url);
        super::within(self.ns.as_deref(), move || {
            http_post(&url, content_type, &body)
        })
    }

    /// The process's output so far.
    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Runs an instant PromQL query (Prometheus HTTP API) and returns `data.result`.
    fn query(&self, promql: &str) -> Value {
        let path = format!("/api/v1/query?query={}", url_encode(promql));
        let (status, body) = self
            .get(&path)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(
            status == 200 && v["status"] == "success",
            "query `{promql}`: {status} {body}"
        );
        v["data"]["result"].clone()
    }

    /// Polls `query(promql)` every 100 ms, after `before()`, until `pred` holds on the result;
    /// panics after `timeout`.
    fn wait_query(
        &self,
        promql: &str,
        timeout: Duration,
        before: impl Fn(),
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            before();
            let r = self.query(promql);
            if pred(&r) {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "`{promql}` still {r} after {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- log of {} ---\n{}", self.url, self.log());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The series and value of a query answer holding exactly one series.
pub fn single_series(answer: &Value) -> Option<(&Value, f64)> {
    match answer.as_array()?.as_slice() {
        [series] => Some((
            &series["metric"],
            series["value"][1].as_str()?.parse().ok()?,
        )),
        _ => None,
    }
}

/// The value of a query answer holding exactly one series.
pub fn single_value(answer: &Value) -> Option<f64> {
    single_series(answer).map(|(_, v)| v)
}

/// A VictoriaMetrics single-node server, killed on drop.
pub struct VictoriaMetrics {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    backend: Backend,
}

impl VictoriaMetrics {
    /// Starts it in this namespace and waits for `/health`. OTLP metric names and labels are
    /// converted to Prometheus naming (`a.b` with unit `By` and a monotonic sum becomes
    /// `a_b_bytes_total`); samples are queryable as soon as they are flushed (no latency
    /// offset, no response cache).
    pub fn start() -> Self {
        Self::start_in(None)
    }

    /// As [`Self::start`], inside the named network namespace (`None`: this one).
    pub fn start_in(ns: Option<&str>) -> Self {
        let backend = Backend::start(ns, "victoria-metrics", "/health", |dir, addr| {
            vec![
                format!("-storageDataPath={dir}/data"),
                format!("-httpListenAddr={addr}"),
                "-opentelemetry.usePrometheusNaming".into(),
                "-search.latencyOffset=0s".into(),
                "-search.disableCache".into(),
                "-retentionPeriod=1d".into(),
            ]
        });
        Self {
            url: backend.url.clone(),
            backend,
        }
    }

    /// The OTLP/HTTP base endpoint (as `OTEL_EXPORTER_OTLP_ENDPOINT`): `/v1/metrics` is appended.
    pub fn otlp_http_endpoint(&self) -> String {
        format!("{}/opentelemetry", self.url)
    }

    /// The full URL that takes `ExportMetricsServiceRequest` protobuf POSTs.
    pub fn otlp_metrics_url(&self) -> String {
        format!("{}/opentelemetry/v1/metrics", self.url)
    }

    /// Imports Prometheus text exposition lines (timestamped now unless given).
    pub fn import_prometheus(&self, text: &str) {
        let r = self.backend.post(
            "/api/v1/import/prometheus",
            "text/plain",
            text.as_bytes().to_vec(),
        );
        assert!(matches!(r, Ok((204, _))), "import: {r:?}");
    }

    /// Posts an OTLP/HTTP request body (protobuf, uncompressed) as a collector would forward it.
    pub fn post_otlp(&self, body: Vec<u8>) -> io::Result<(u16, String)> {
        self.backend
            .post("/opentelemetry/v1/metrics", "application/x-protobuf", body)
    }

    /// Makes everything ingested so far searchable (`/internal/force_flush`).
    pub fn flush(&self) {
        let r = self.backend.get("/internal/force_flush");
        assert!(matches!(r, Ok((200, _))), "force_flush: {r:?}");
    }

    /// An instant query at the current second; returns `data.result`. A sample stamped later
    /// within the same second is not yet visible: use [`Self::wait_query`].
    pub fn query(&self, promql: &str) -> Value {
        self.backend.query(promql)
    }

    /// Polls the query, flushing before each try, until `pred` holds; panics after `timeout`.
    pub fn wait_query(
        &self,
        promql: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.backend
            .wait_query(promql, timeout, || self.flush(), pred)
    }
}

/// A Prometheus server scraping one target, killed on drop.
pub struct Prometheus {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    backend: Backend,
}

impl Prometheus {
    /// Starts it scraping `scrape_target` (`host:port`, path `/metrics`) as job `netprobe`
    /// every `scrape_interval` (e.g. `"1s"`), and waits for `/-/ready`. The first scrape comes
    /// about 5 s later (Prometheus 2.53 throttles target discovery to 5 s, with no flag to change
    /// it), so give the first `wait_query` at least 15 s.
    pub fn start(scrape_target: &str, scrape_interval: &str) -> Self {
        Self::start_in(None, scrape_target, scrape_interval)
    }

    /// As [`Self::start`], inside the named network namespace (`None`: this one).
    pub fn start_in(ns: Option<&str>, scrape_target: &str, scrape_interval: &str) -> Self {
        let config = format!(
            "global:\n  scrape_interval: {scrape_interval}\nscrape_configs:\n  - job_name: netprobe\n    static_configs:\n      - targets: ['{scrape_target}']\n"
        );
        Self::launch(ns, config)
    }

    /// As [`Self::start`] with a whole configuration file of the caller's (scrape jobs with
    /// target labels, `rule_files`, evaluation interval).
    pub fn start_with_config(config: &str) -> Self {
        Self::launch(None, config.to_owned())
    }

    /// As [`Self::start_with_config`], inside the named network namespace (`None`: this one),
    /// with `flags` added to its command line (e.g. `--web.enable-remote-write-receiver`).
    pub fn start_in_with(ns: Option<&str>, config: &str, flags: &[&str]) -> Self {
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        Self::launch_with(ns, config.to_owned(), flags)
    }

    /// Starts Prometheus in `ns` with `config` as its configuration file.
    fn launch(ns: Option<&str>, config: String) -> Self {
        Self::launch_with(ns, config, Vec::new())
    }

    fn launch_with(ns: Option<&str>, config: String, flags: Vec<String>) -> Self {
        let backend = Backend::start(ns, "prometheus", "/-/ready", move |dir, addr| {
            fs::write(format!("{dir}/prometheus.yml"), &config).expect("write prometheus.yml");
            let mut args = vec![
                format!("--config.file={dir}/prometheus.yml"),
                format!("--storage.tsdb.path={dir}/data"),
                format!("--web.listen-address={addr}"),
            ];
            args.extend(flags.iter().cloned());
            args
        });
        Self {
            url: backend.url.clone(),
            backend,
        }
    }

    /// An instant query now; returns `data.result`.
    pub fn query(&self, promql: &str) -> Value {
        self.backend.query(promql)
    }

    /// `GET` an HTTP API path with its query string (e.g. `/api/v1/query_range?...`) from its
    /// namespace; returns `data`, after checking the answer is a success.
    pub fn api(&self, path_and_query: &str) -> Value {
        let (status, body) = self
            .backend
            .get(path_and_query)
            .unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"));
        let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        assert!(
            status == 200 && v["status"] == "success",
            "{path_and_query}: {status} {body}"
        );
        v["data"].clone()
    }

    /// The process's output so far.
    pub fn log(&self) -> String {
        self.backend.log()
    }

    /// Polls the query until `pred` holds; panics after `timeout`.
    pub fn wait_query(
        &self,
        promql: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        self.backend.wait_query(promql, timeout, || (), pred)
    }
}
