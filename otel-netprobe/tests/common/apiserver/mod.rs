//! A fake Kubernetes API server that speaks the real list/watch protocol, so the tests can run
//! the unmodified kube-rs client and `kube::runtime::watcher` against it, for what the real
//! kube-apiserver (`../kubeapi/`) does not do on demand: compact its history under a watcher
//! (410 Gone), cut watches mid-stream, refuse connections and come back with a changed store.
//! Only `tests/k8s.rs` (those faults) and `tests/apiserver.rs` (this server against kube-rs)
//! use it; every other Kubernetes test, the dashboards lab and `make demo` run the real one.
//! It serves whole objects also to metadata-only requests (kube-rs reads their metadata from
//! them).
//!
//! What it serves (GET only, plain HTTP, no authentication):
//! - `/api/v1/{plural}` and `/apis/{group}/{version}/{plural}`, both also under
//!   `namespaces/{ns}/`, and `.../{plural}/{name}` for a single object; anything else is a
//!   404 `Status`;
//! - LIST: items in (namespace, name) order, without `apiVersion`/`kind` as real servers send
//!   them; `limit` + `continue` page through a snapshot taken at the first page;
//!   `labelSelector` (`a=b`, `a==b`, `a!=b`, `a`, `!a`; no set-based `in`/`notin`) and
//!   `fieldSelector` (`path=v`, `path!=v` on any dotted JSON path, e.g. `spec.nodeName`);
//!   `resourceVersion`/`resourceVersionMatch` are ignored: a list always serves the latest state;
//! - WATCH (`watch=true`): replays the retained history after `resourceVersion` (the current
//!   objects as ADDED when it is absent or `0`), then live events; an ERROR event with
//!   `410 Expired` when that history was [compacted](FakeApiServer::compact); a BOOKMARK
//!   every [`BOOKMARK_EVERY`] with `allowWatchBookmarks=true`; streaming lists
//!   (`sendInitialEvents=true`); the stream ends after `timeoutSeconds`, capped at
//!   [`MAX_WATCH`] so watches cycle.
//!
//! Resource versions come from one counter shared by all resources, as with etcd.

mod http;
mod wire;

use http::serve;
use wire::{
    Query, Selector, bookmark_line, event_line, full, full_bytes, key_of, line, namespace_of,
    not_found, now, parse_path, respond, status, status_json, without_type,
};

use std::{
    collections::{BTreeMap, HashMap},
    convert::Infallible,
    io,
    net::{Ipv4Addr, SocketAddr, TcpListener},
    path::Path,
    sync::{
        Arc, Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU16, Ordering},
        mpsc as std_mpsc,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::{Method, Request, Response, StatusCode, body::Frame, header, server::conn::http1};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};

/// The longest a watch stays open, whatever its `timeoutSeconds`.
pub const MAX_WATCH: Duration = Duration::from_secs(60);
/// How often a watch that allows bookmarks gets one.
pub const BOOKMARK_EVERY: Duration = Duration::from_secs(1);

/// Resources served before anything is applied: (apiVersion, plural, kind, namespaced).
/// Other types are served once an object of theirs is applied.
const BUILTIN: &[(&str, &str, &str, bool)] = &[
    ("v1", "pods", "Pod", true),
    ("v1", "services", "Service", true),
    ("v1", "nodes", "Node", false),
    ("v1", "namespaces", "Namespace", false),
    (
        "discovery.k8s.io/v1",
        "endpointslices",
        "EndpointSlice",
        true,
    ),
    ("apps/v1", "replicasets", "ReplicaSet", true),
    ("apps/v1", "deployments", "Deployment", true),
    ("apps/v1", "statefulsets", "StatefulSet", true),
    ("apps/v1", "daemonsets", "DaemonSet", true),
    ("batch/v1", "jobs", "Job", true),
    ("batch/v1", "cronjobs", "CronJob", true),
];

type Body = UnsyncBoxBody<Bytes, io::Error>;
/// (apiVersion, plural).
type Key = (String, String);
type Shared = Arc<Mutex<Store>>;

/// A fake API server on its own thread and tokio runtime, shut down (thread joined, sockets
/// closed) on drop. Its methods are synchronous and may be called from any thread, also from
/// inside another tokio runtime.
pub struct FakeApiServer {
    store: Shared,
    security: Security,
    tls: Option<tokio_rustls::TlsAcceptor>,
    bind: Box<dyn Fn() -> TcpListener + Send + Sync>,
    addr: SocketAddr,
    runtime: tokio::runtime::Handle,
    /// Set while listening: stops the accept loop, which answers once the listener is closed.
    listening: Mutex<Option<(oneshot::Sender<()>, std_mpsc::Receiver<()>)>>,
    quit: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Store {
    /// The last resource version handed out.
    rv: u64,
    /// Watches resuming from a version below this one get 410 Expired.
    compacted: u64,
    resources: BTreeMap<Key, Resource>,
    history: Vec<Arc<Change>>,
    watchers: Vec<Watcher>,
    /// Snapshots of lists of several pages, (resource version, items), kept for the server's
    /// life; continue token `{index}-{offset}`.
    pages: Vec<(u64, Vec<Value>)>,
    lists: HashMap<String, usize>,
    watches: HashMap<String, usize>,
    bookmarks: usize,
    /// Requests must carry `Authorization: Bearer {token}` (else 401).
    token: Option<String>,
    /// Requests refused with 401.
    unauthorized: usize,
}

/// Transport security and authentication, as a real API server has them.
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// Serve HTTPS with this certificate and key (PEM files), trusted through `ca` (PEM).
    pub tls: Option<TlsFiles>,
    /// The bearer token every request must carry.
    pub token: Option<String>,
}

/// A server certificate, its key, and the CA a client trusts it by.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// Server certificate (PEM).
    pub cert: std::path::PathBuf,
    /// Its private key (PEM).
    pub key: std::path::PathBuf,
    /// The CA's certificate (PEM), written into the kubeconfig.
    pub ca: std::path::PathBuf,
}

fn acceptor(files: &TlsFiles) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .expect("server certificate")
        .collect::<Result<_, _>>()
        .expect("server certificate PEM");
    let key = PrivateKeyDer::from_pem_file(&files.key).expect("server key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server certificate and key");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

struct Resource {
    kind: String,
    namespaced: bool,
    /// By (namespace or "", name).
    objects: BTreeMap<(String, String), Value>,
}

/// An ADDED, MODIFIED or DELETED event of the history.
struct Change {
    key: Key,
    rv: u64,
    object: Value,
    /// The event as sent.
    line: Bytes,
}

enum Msg {
    Line(Bytes),
    /// End the response abruptly.
    Cut,
}

struct Watcher {
    key: Key,
    namespace: Option<String>,
    selector: Selector,
    tx: mpsc::UnboundedSender<Msg>,
}

impl Watcher {
    fn wants(&self, key: &Key, object: &Value) -> bool {
        *key == self.key
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == namespace_of(object))
            && self.selector.matches(object)
    }
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store {
    fn publish(&mut self, key: Key, kind: &str, object: Value) {
        let rv = self.rv;
        let line = event_line(kind, &object);
        self.watchers.retain(|w| {
            if w.wants(&key, &object) {
                w.tx.send(Msg::Line(line.clone())).is_ok()
            } else {
                !w.tx.is_closed()
            }
        });
        self.history.push(Arc::new(Change {
            key,
            rv,
            object,
            line,
        }));
    }

    fn matching<'a>(&'a self, watcher: &'a Watcher) -> impl Iterator<Item = &'a Value> {
        let objects = self.resources[&watcher.key].objects.values();
        objects.filter(|o| watcher.wants(&watcher.key, o))
    }

    /// One page of a list.
    fn list(&mut self, filter: &Watcher, query: &Query) -> Response<Body> {
        *self.lists.entry(filter.key.1.clone()).or_default() += 1;
        let limit = query.positive("limit").unwrap_or(usize::MAX);
        let (index, start): (usize, usize) = if let Some(token) = query.get("continue") {
            let parsed = token
                .split_once('-')
                .and_then(|(i, s)| Some((i.parse().ok()?, s.parse().ok()?)));
            match parsed.filter(|&(i, _)| i < self.pages.len()) {
                Some(parsed) => parsed,
                None => return status(StatusCode::GONE, "Expired", "unknown continue token"),
            }
        } else {
            let items: Vec<Value> = self
                .matching(filter)
                .map(|o| without_type(o.clone()))
                .collect();
            self.pages.push((self.rv, items));
            (self.pages.len() - 1, 0)
        };
        let (rv, items) = &self.pages[index];
        let end = start.saturating_add(limit).min(items.len());
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if end < items.len() {
            metadata["continue"] = json!(format!("{index}-{end}"));
        }
        let single_page = start == 0 && end == items.len() && query.get("continue").is_none();
        let kind = format!("{}List", self.resources[&filter.key].kind);
        let page = items.get(start..end).unwrap_or_default();
        let list = json!({ "apiVersion": filter.key.0, "kind": kind, "metadata": metadata, "items": page });
        if single_page {
            self.pages.pop(); // needs no snapshot
        }
        respond(StatusCode::OK, full(&list))
    }
}

impl FakeApiServer {
    /// Starts the server listening on what `bind` returns. `bind` is called again by
    /// [`recover`](Self::recover) and must then bind the same address (std listeners set
    /// SO_REUSEADDR on Unix, so a port just closed can be bound again). It may bind inside
    /// another network namespace.
    pub fn start(bind: impl Fn() -> TcpListener + Send + Sync + 'static) -> Self {
        Self::start_secure(bind, Security::default())
    }

    /// As [`Self::start`], with HTTPS and/or a required bearer token.
    pub fn start_secure(
        bind: impl Fn() -> TcpListener + Send + Sync + 'static,
        security: Security,
    ) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the fake API server");
        let (quit, quit_rx) = oneshot::channel::<()>();
        let handle = runtime.handle().clone();
        // Dropping the runtime once `quit` fires ends every task and closes its sockets.
        let thread = std::thread::Builder::new()
            .name("fake-apiserver".into())
            .spawn(move || runtime.block_on(async { quit_rx.await.unwrap_or_default() }))
            .expect("spawning the fake API server thread");
        let resources = BUILTIN
            .iter()
            .map(|&(api_version, plural, kind, namespaced)| {
                let resource = Resource {
                    kind: kind.into(),
                    namespaced,
                    objects: BTreeMap::new(),
                };
                ((api_version.into(), plural.into()), resource)
            });
        let store = Store {
            rv: 1,
            resources: resources.collect(),
            token: security.token.clone(),
            ..Store::default()
        };
        let mut server = Self {
            store: Arc::new(Mutex::new(store)),
            tls: security.tls.as_ref().map(acceptor),
            security,
            bind: Box::new(bind),
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            runtime: handle,
            listening: Mutex::new(None),
            quit: Some(quit),
            thread: Some(thread),
        };
        server.addr = server.listen();
        server
    }

    /// Starts the server on 127.0.0.1 at a free port, and on that same port after an outage
    /// (while down, the port is free for anyone to take; in practice nobody does).
    pub fn start_local() -> Self {
        let port = AtomicU16::new(0);
        Self::start(move || {
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port.load(Ordering::Relaxed)))
                .expect("binding the fake API server on 127.0.0.1");
            let addr = listener
                .local_addr()
                .expect("a bound listener has an address");
            port.store(addr.port(), Ordering::Relaxed);
            listener
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`, the cluster URL.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Requests refused for a missing or wrong bearer token.
    pub fn unauthorized(&self) -> usize {
        lock(&self.store).unauthorized
    }

    /// Writes a kubeconfig whose current context points at this server (no credentials).
    pub fn write_kubeconfig(&self, path: &Path) {
        self.write_kubeconfig_with_token(path, self.security.token.as_deref());
    }

    /// As [`Self::write_kubeconfig`], with the given bearer token (or none) instead of the
    /// server's, to test refused credentials. With TLS, the CA is the server's.
    pub fn write_kubeconfig_with_token(&self, path: &Path, token: Option<&str>) {
        let url = self.url();
        let ca = self.security.tls.as_ref().map_or(String::new(), |t| {
            format!("\n    certificate-authority: {}", t.ca.display())
        });
        let user = token.map_or_else(|| "{}".to_owned(), |t| format!("\n    token: {t}"));
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}{ca}\n\
             users:\n- name: fake\n  user: {user}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\n"
        );
        std::fs::write(path, config).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    /// Creates or replaces the object with its (namespace, name) and tells the watchers
    /// (ADDED or MODIFIED). Sets apiVersion and kind, a fresh resourceVersion, and a uid and
    /// creationTimestamp when the object has none (an update keeps the stored ones).
    /// Returns the new resourceVersion.
    pub fn apply<K>(&self, obj: &K) -> String
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize,
    {
        let mut object = serde_json::to_value(obj).expect("Kubernetes objects serialize to JSON");
        let key = key_of::<K>();
        let namespace = obj.meta().namespace.clone().unwrap_or_default();
        let name = obj
            .meta()
            .name
            .clone()
            .expect("an applied object needs metadata.name");
        let mut store = lock(&self.store);
        store.rv += 1;
        let rv = store.rv;
        let resource = store
            .resources
            .entry(key.clone())
            .or_insert_with(|| Resource {
                kind: K::kind(&()).into_owned(),
                namespaced: !namespace.is_empty(),
                objects: BTreeMap::new(),
            });
        let old = resource.objects.get(&(namespace.clone(), name.clone()));
        let kept = |field: &str| old.and_then(|o| o["metadata"].get(field)).cloned();
        let (uid, created) = (kept("uid"), kept("creationTimestamp"));
        let event = if old.is_some() { "MODIFIED" } else { "ADDED" };
        object["apiVersion"] = json!(key.0);
        object["kind"] = json!(resource.kind);
        let meta = &mut object["metadata"];
        if meta.get("uid").is_none() {
            meta["uid"] =
                uid.unwrap_or_else(|| json!(format!("00000000-0000-4000-8000-{rv:012x}")));
        }
        if meta.get("creationTimestamp").is_none() {
            meta["creationTimestamp"] = created.unwrap_or_else(now);
        }
        meta["resourceVersion"] = json!(rv.to_string());
        resource.objects.insert((namespace, name), object.clone());
        store.publish(key, event, object);
        rv.to_string()
    }

    /// Deletes the object and tells the watchers (DELETED, with its last state at a new
    /// resourceVersion, which is returned); `None` when there was no such object.
    pub fn delete<K>(&self, namespace: Option<&str>, name: &str) -> Option<String>
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let key = key_of::<K>();
        let id = (namespace.unwrap_or_default().to_owned(), name.to_owned());
        let mut store = lock(&self.store);
        let mut object = store.resources.get_mut(&key)?.objects.remove(&id)?;
        store.rv += 1;
        object["metadata"]["resourceVersion"] = json!(store.rv.to_string());
        store.publish(key, "DELETED", object);
        Some(store.rv.to_string())
    }

    /// Drops the event history: a watch resuming from any version handed out so far gets
    /// 410 Expired, so its client must re-list (the counter moves on one version so that even
    /// the latest one expires). Open watches are not affected.
    pub fn compact(&self) {
        let mut store = lock(&self.store);
        store.rv += 1;
        store.compacted = store.rv;
        store.history.clear();
    }

    /// Abruptly cuts every open watch connection (no terminating chunk), as a network
    /// failure or an API server restart would.
    pub fn drop_watches(&self) {
        for watcher in lock(&self.store).watchers.drain(..) {
            let _ = watcher.tx.send(Msg::Cut);
        }
    }

    /// Stops listening: once this returns, new connections are refused; open connections
    /// are closed and watches cut. The store keeps working. No-op when already down.
    pub fn outage(&self) {
        self.drop_watches();
        let listening = self.listening().take();
        if let Some((stop, stopped)) = listening {
            let _ = stop.send(());
            // An error means the runtime, and the listener with it, is gone already.
            let _ = stopped.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Listens again on the same address after an [`outage`](Self::outage); no-op when up.
    pub fn recover(&self) {
        if self.listening().is_none() {
            assert_eq!(
                self.listen(),
                self.addr,
                "`bind` must bind the same address again"
            );
        }
    }

    /// LIST requests served for resources named `plural` (each page counts).
    pub fn lists(&self, plural: &str) -> usize {
        lock(&self.store)
            .lists
            .get(plural)
            .copied()
            .unwrap_or_default()
    }

    /// WATCH requests served for resources named `plural`.
    pub fn watches(&self, plural: &str) -> usize {
        lock(&self.store)
            .watches
            .get(plural)
            .copied()
            .unwrap_or_default()
    }

    /// BOOKMARK events sent over all watches, not counting those ending initial events.
    pub fn bookmarks(&self) -> usize {
        lock(&self.store).bookmarks
    }

    fn listen(&self) -> SocketAddr {
        let listener = (self.bind)();
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let (stop, stop_rx) = oneshot::channel();
        let (stopped_tx, stopped) = std_mpsc::channel();
        let store = Arc::clone(&self.store);
        let tls = self.tls.clone();
        self.runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("registering the listener");
            serve(&listener, &store, tls, stop_rx).await;
            drop(listener);
            let _ = stopped_tx.send(());
        });
        *self.listening() = Some((stop, stopped));
        addr
    }

    fn listening(&self) -> MutexGuard<'_, Option<(oneshot::Sender<()>, std_mpsc::Receiver<()>)>> {
        self.listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.outage();
        if let Some(quit) = self.quit.take() {
            let _ = quit.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
