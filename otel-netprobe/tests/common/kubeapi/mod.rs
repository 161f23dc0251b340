//! A real Kubernetes API server for the tests: the `kube-apiserver` (v1.37) and `etcd` that
//! `make setup` builds from the official Go modules (`scripts/gotools.sh`), started on loopback
//! inside a network namespace the test made (the lab's node, where the agent runs, or one of
//! its own), with generated certificates ([`pki`]), RBAC authorization, an audit log, and its
//! data in a temp dir. Everything is killed and removed on drop, also when a test fails.
//!
//! There is no kubelet, scheduler or controller-manager: what those would write (ReplicaSets
//! of a Deployment, pod status, EndpointSlices, a namespace's `default` ServiceAccount) the
//! tests write themselves through the API ([`objects`]), as admin. Everything is admitted,
//! defaulted and validated by the real server.
//!
//! Its surface mirrors the list/watch test server's (`apply`, `delete`), so tests read the
//! same; requests run on a tokio runtime whose thread lives in the server's namespace (the
//! server listens on that namespace's loopback only).

pub mod helm;
pub mod objects;
pub mod pki;
pub mod requests;
mod runtime;

use std::{
    fs,
    future::Future,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kube::{
    Client,
    config::{KubeConfigOptions, Kubeconfig},
};

use runtime::NsRuntime;

use super::{Netns, backends::tool, patient, unique};

/// The API server's port on its namespace's loopback.
pub const PORT: u16 = 6443;
/// Services get their ClusterIPs from here (`--service-cluster-ip-range`).
pub const SERVICE_CIDR: &str = "10.96.0.0/16";

/// Who a kubeconfig speaks as.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// The admin client certificate (`system:masters`).
    Admin,
    /// A bearer token, e.g. from [`KubeApiServer::token`].
    Token(String),
}

/// etcd and kube-apiserver, running; stopped and removed on drop.
pub struct KubeApiServer {
    /// The namespace it listens in.
    pub netns: String,
    /// The harness's whole start: certificates made, etcd and kube-apiserver started,
    /// `/readyz` answering `ok`.
    pub start_time: Duration,
    dir: PathBuf,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    runtime: NsRuntime,
    admin: Client,
    /// Its own namespace, when it made one (dropped last).
    own_ns: Option<Netns>,
    /// How it was started (for a restart).
    options: Options,
}

/// How to run the server.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// etcd syncs its log to disk, as in production (the API-load bench); the tests' throwaway
    /// data skips it (`--unsafe-no-fsync`), which spares the shared disk.
    pub fsync: bool,
    /// Write the audit log (every request's user, verb, resource and response code).
    pub audit: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            fsync: false,
            audit: true,
        }
    }
}

impl KubeApiServer {
    /// Starts the server on loopback in `ns` (e.g. the lab's node, where the agent runs) and
    /// waits until it is ready.
    pub fn start_in(ns: &Netns) -> Self {
        Self::start_with(&ns.name, None, Options::default())
    }

    /// Starts the server in a network namespace of its own.
    pub fn start() -> Self {
        let ns = Netns::new(&unique("kapi"));
        let name = ns.name.clone();
        Self::start_with(&name, Some(ns), Options::default())
    }

    /// Starts the server on loopback in the existing namespace named `netns` (one made by
    /// someone else, e.g. `make demo`'s node: it is left in place on drop), with `options`.
    pub fn start_in_netns(netns: &str, options: Options) -> Self {
        Self::start_with(netns, None, options)
    }

    /// As [`Self::start`], with options.
    pub fn start_own(options: Options) -> Self {
        let ns = Netns::new(&unique("kapi"));
        let name = ns.name.clone();
        Self::start_with(&name, Some(ns), options)
    }

    fn start_with(netns: &str, own_ns: Option<Netns>, options: Options) -> Self {
        super::require_root();
        let dir = std::env::temp_dir().join(unique("kubeapi"));
        fs::create_dir_all(&dir).expect("the API server's temp dir");
        let started = Instant::now();
        let runtime = NsRuntime::start(netns);
        pki::make(&dir);
        let admin_config = dir.join("admin.kubeconfig");
        write_kubeconfig(&dir, &admin_config, &Credentials::Admin);
        // The client connects on its first request: it can be made before the server runs.
        let admin = runtime.block_on(async move { client_from(&admin_config).await });
        // From here on, whatever fails, drop stops what was started and removes the dir.
        let mut server = Self {
            netns: netns.to_owned(),
            start_time: Duration::ZERO,
            dir,
            etcd: None,
            apiserver: None,
            runtime,
            admin,
            own_ns,
            options,
        };
        server.etcd = Some(server.spawn("etcd", &etcd_args(&server.dir, options)));
        let args = apiserver_args(&server.dir, options);
        server.apiserver = Some(server.spawn("kube-apiserver", &args));
        server.wait_ready();
        server.start_time = started.elapsed();
        server
    }

    /// Starts the tool `name` in the server's namespace, its output into `{name}.log`.
    fn spawn(&self, name: &str, args: &[String]) -> Child {
        spawn_in(
            &self.netns,
            &tool(name),
            args,
            &self.dir.join(format!("{name}.log")),
        )
    }

    /// Polls `/readyz` (etcd reachable, every post-start hook done: RBAC's bootstrap roles,
    /// the priority classes, the `default` namespace) until it answers `ok`.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + patient(Duration::from_secs(180));
        let mut last;
        loop {
            let exited = [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ]
            .into_iter()
            .find_map(|(name, child)| {
                let status = child.as_mut()?.try_wait().ok().flatten()?;
                Some(format!("{name} exited ({status})"))
            });
            if let Some(exited) = exited {
                panic!("{exited} before the API server was ready\n{}", self.logs());
            }
            let client = self.admin.clone();
            let answer = self.runtime.block_on(async move {
                let req = hyper::Request::get("/readyz")
                    .body(Vec::new())
                    .expect("request");
                client.request_text(req).await
            });
            match answer {
                Ok(text) if text.trim() == "ok" => return,
                Ok(text) => last = text,
                Err(e) => last = e.to_string(),
            }
            assert!(
                Instant::now() < deadline,
                "the API server was not ready in time: {last}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops kube-apiserver (etcd keeps running), keeps it down for `down` (the outage the
    /// caller asks for), starts it again and waits until it is ready.
    pub fn restart_apiserver(&mut self, down: Duration) {
        if let Some(mut c) = self.apiserver.take() {
            stop(&mut c, Duration::from_secs(10));
        }
        std::thread::sleep(down);
        let args = apiserver_args(&self.dir, self.options);
        self.apiserver = Some(self.spawn("kube-apiserver", &args));
        self.wait_ready();
    }

    /// The tails of the server's and etcd's logs.
    pub fn logs(&self) -> String {
        let tail = |f: &str| {
            let text = fs::read_to_string(self.dir.join(f)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            lines[lines.len().saturating_sub(30)..].join("\n")
        };
        format!(
            "--- kube-apiserver log (tail) ---\n{}\n--- etcd log (tail) ---\n{}",
            tail("kube-apiserver.log"),
            tail("etcd.log")
        )
    }

    /// The cluster CA's certificate (PEM file).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The admin kubeconfig (client certificate in `system:masters`).
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.dir.join("admin.kubeconfig")
    }

    /// Writes a kubeconfig for this server that speaks as `creds`.
    pub fn write_kubeconfig(&self, path: &Path, creds: &Credentials) {
        write_kubeconfig(&self.dir, path, creds);
    }

    /// The process ids of kube-apiserver and etcd (for /proc figures).
    pub fn pids(&self) -> (u32, u32) {
        let pid = |c: &Option<Child>| c.as_ref().map_or(0, Child::id);
        (pid(&self.apiserver), pid(&self.etcd))
    }

    /// Runs `f` with the admin client on the runtime in the server's namespace.
    pub fn admin<F, T>(&self, f: impl FnOnce(Client) -> F) -> T
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        self.runtime.block_on(f(self.admin.clone()))
    }

    /// Runs `fut` on the runtime in the server's namespace (where its loopback is reachable).
    pub fn block_on<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        self.runtime.block_on(fut)
    }

    /// A client that speaks as `creds` (built in the server's namespace).
    pub fn client(&self, creds: &Credentials) -> Client {
        let path = self.dir.join(unique("kubeconfig"));
        self.write_kubeconfig(&path, creds);
        self.runtime.block_on(async move {
            let c = client_from(&path).await;
            let _ = fs::remove_file(&path);
            c
        })
    }
}

/// etcd, alone, on the namespace's loopback, its data in `dir`.
fn etcd_args(dir: &Path, options: Options) -> Vec<String> {
    let mut args = vec![
        format!("--data-dir={}", dir.join("etcd").display()),
        "--name=default".into(),
        "--listen-client-urls=http://127.0.0.1:2379".into(),
        "--advertise-client-urls=http://127.0.0.1:2379".into(),
        "--listen-peer-urls=http://127.0.0.1:2380".into(),
        "--initial-advertise-peer-urls=http://127.0.0.1:2380".into(),
        "--initial-cluster=default=http://127.0.0.1:2380".into(),
        "--log-level=warn".into(),
    ];
    if !options.fsync {
        args.push("--unsafe-no-fsync".into());
    }
    args
}

/// kube-apiserver on the namespace's loopback, with the certificates of [`pki`] in `dir`.
fn apiserver_args(dir: &Path, options: Options) -> Vec<String> {
    let d = |f: &str| dir.join(f).display().to_string();
    let mut args = vec![
        "--etcd-servers=http://127.0.0.1:2379".to_owned(),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={PORT}"),
        // Loopback may not be advertised through the `kubernetes` Service's endpoints
        // ("may not be in the loopback range"), which nothing here uses: no reconciler.
        "--advertise-address=127.0.0.1".into(),
        "--endpoint-reconciler-type=none".into(),
        format!("--tls-cert-file={}", d("apiserver.pem")),
        format!("--tls-private-key-file={}", d("apiserver.key")),
        format!("--client-ca-file={}", d("ca.pem")),
        format!("--service-account-key-file={}", d("sa.pub")),
        format!("--service-account-signing-key-file={}", d("sa.key")),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--authorization-mode=RBAC".into(),
        // The chart's `agent.privileged=true` variant must be admitted, as on a cluster.
        "--allow-privileged=true".into(),
        format!("--cert-dir={}", d("certs")),
        "--profiling=false".into(),
    ];
    if options.audit {
        fs::write(
            dir.join("audit-policy.yaml"),
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n\
             rules:\n  - level: Metadata\n",
        )
        .expect("audit policy");
        args.extend([
            format!("--audit-policy-file={}", d("audit-policy.yaml")),
            format!("--audit-log-path={}", d("audit.log")),
            "--audit-log-format=json".into(),
        ]);
    }
    args
}

fn write_kubeconfig(dir: &Path, path: &Path, creds: &Credentials) {
    let user = match creds {
        Credentials::Admin => format!(
            "client-certificate: {}\n    client-key: {}",
            dir.join("admin.pem").display(),
            dir.join("admin.key").display()
        ),
        Credentials::Token(t) => format!("token: {t}"),
    };
    let config = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lab\n  cluster:\n    server: https://127.0.0.1:{PORT}\n    \
         certificate-authority: {ca}\nusers:\n- name: user\n  user:\n    {user}\ncontexts:\n- name: lab\n  \
         context:\n    cluster: lab\n    user: user\n    namespace: default\ncurrent-context: lab\n",
        ca = dir.join("ca.pem").display()
    );
    fs::write(path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

async fn client_from(path: &Path) -> Client {
    let kc = Kubeconfig::read_from(path).expect("a kubeconfig we wrote");
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("a usable kubeconfig");
    Client::try_from(config).expect("a client")
}

/// Starts `bin ARGS` inside the namespace `netns`, its output into `log`.
fn spawn_in(netns: &str, bin: &Path, args: &[String], log: &Path) -> Child {
    let file = fs::File::create(log).expect("log file");
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("dup log"))
        .stderr(file);
    super::within(Some(netns), move || cmd.spawn())
        .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()))
}

/// SIGTERM, then SIGKILL if it has not exited within `grace`.
fn stop(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Some(mut c) = self.apiserver.take() {
            stop(&mut c, Duration::from_secs(10));
        }
        if let Some(mut c) = self.etcd.take() {
            stop(&mut c, Duration::from_secs(10));
        }
        let _ = fs::remove_dir_all(&self.dir);
        // The runtime, then the namespace (own_ns), go with the fields.
    }
}
