//! A fake Kubernetes API server that speaks the real list/watch protocol, so the tests can run
//! the unmodified kube-rs client and `kube::runtime::watcher` against it (no API server binary
//! exists on the test machines).
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
            ..Store::default()
        };
        let mut server = Self {
            store: Arc::new(Mutex::new(store)),
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

    /// Starts the server on 127.0.0.1 at a free port, and on that same port after an outage.
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
        format!("http://{}", self.addr)
    }

    /// Writes a kubeconfig whose current context points at this server (no credentials).
    pub fn write_kubeconfig(&self, path: &Path) {
        let url = self.url();
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    \
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
        let key = (
            K::api_version(&()).into_owned(),
            K::plural(&()).into_owned(),
        );
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
        let key = (
            K::api_version(&()).into_owned(),
            K::plural(&()).into_owned(),
        );
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
        let listening = self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some((stop, stopped)) = listening {
            let _ = stop.send(());
            // An error means the runtime, and the listener with it, is gone already.
            let _ = stopped.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Listens again on the same address after an [`outage`](Self::outage); no-op when up.
    pub fn recover(&self) {
        if self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
        {
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
        self.runtime.spawn(async move {
            let listener =
                tokio::net::TcpListener::from_std(listener).expect("registering the listener");
            serve(&listener, &store, stop_rx).await;
            drop(listener);
            let _ = stopped_tx.send(());
        });
        *self
            .listening
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((stop, stopped));
        addr
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

/// Accepts connections until `stop`; the connections are closed when this returns.
async fn serve(
    listener: &tokio::net::TcpListener,
    store: &Shared,
    mut stop: oneshot::Receiver<()>,
) {
    // Every connection ends when this is dropped.
    let (kill, _) = watch::channel(());
    loop {
        let stream = tokio::select! {
            biased;
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let mut killed = kill.subscribe();
        let store = Arc::clone(store);
        let service = hyper::service::service_fn(move |req| {
            let response = route(&store, &req);
            async move { Ok::<_, Infallible>(response) }
        });
        tokio::spawn(async move {
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                biased;
                _ = killed.changed() => {}
                _ = conn => {}
            }
        });
    }
}

fn route<B>(shared: &Shared, req: &Request<B>) -> Response<Body> {
    let path = req.uri().path();
    if req.method() != Method::GET {
        return status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "only GET is served",
        );
    }
    let query = Query::parse(req.uri().query().unwrap_or_default());
    let selector = match Selector::parse(&query) {
        Ok(selector) => selector,
        Err(e) => return status(StatusCode::BAD_REQUEST, "BadRequest", &e),
    };
    let Some((key, namespace, name)) = parse_path(path) else {
        return not_found(path);
    };
    let mut store = lock(shared);
    let Some(resource) = store.resources.get(&key) else {
        return not_found(path);
    };
    if namespace.is_some() && !resource.namespaced {
        return not_found(path);
    }
    if let Some(name) = name {
        let object = resource.objects.get(&(namespace.unwrap_or_default(), name));
        return object.map_or_else(|| not_found(path), |o| respond(StatusCode::OK, full(o)));
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = Watcher {
        key,
        namespace,
        selector,
        tx,
    };
    if query.flag("watch") {
        start_watch(shared, store, watcher, rx, &query)
    } else {
        store.list(&watcher, &query)
    }
}

/// Answers a watch request: the events it missed (or all objects), then a live stream.
fn start_watch(
    shared: &Shared,
    mut store: MutexGuard<'_, Store>,
    watcher: Watcher,
    rx: mpsc::UnboundedReceiver<Msg>,
    query: &Query,
) -> Response<Body> {
    *store.watches.entry(watcher.key.1.clone()).or_default() += 1;
    let (api_version, kind) = (
        watcher.key.0.clone(),
        store.resources[&watcher.key].kind.clone(),
    );
    let from: Option<u64> = query.positive("resourceVersion");
    let mut replay: Vec<Msg> = match from {
        Some(from) if from < store.compacted => {
            let expired = status_json(StatusCode::GONE, "Expired", "too old resource version");
            let error = line(&json!({ "type": "ERROR", "object": expired }));
            return respond(StatusCode::OK, full_bytes(error));
        }
        Some(from) => {
            let missed = store
                .history
                .iter()
                .filter(|c| c.rv > from && watcher.wants(&c.key, &c.object));
            missed.map(|c| Msg::Line(c.line.clone())).collect()
        }
        None => store
            .matching(&watcher)
            .map(|o| Msg::Line(event_line("ADDED", o)))
            .collect(),
    };
    if query.flag("sendInitialEvents") {
        replay.push(Msg::Line(bookmark_line(
            &api_version,
            &kind,
            store.rv,
            true,
        )));
    }
    store.watchers.push(watcher);
    drop(store);
    let timeout = query.positive("timeoutSeconds");
    let timeout = timeout.map_or(MAX_WATCH, |t| Duration::from_secs(t).min(MAX_WATCH));
    let bookmarks = query
        .flag("allowWatchBookmarks")
        .then_some((api_version, kind));
    let (out, mut body) = mpsc::channel(16);
    tokio::spawn(pump(
        Arc::clone(shared),
        replay,
        rx,
        out,
        bookmarks,
        timeout,
    ));
    let body = StreamBody::new(futures::stream::poll_fn(move |cx| body.poll_recv(cx)));
    respond(StatusCode::OK, body.boxed_unsync())
}

/// Writes one watch's events into its response body until the timeout, a cut, or the client
/// going away.
async fn pump(
    store: Shared,
    mut batch: Vec<Msg>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    out: mpsc::Sender<Result<Frame<Bytes>, io::Error>>,
    bookmarks: Option<(String, String)>,
    timeout: Duration,
) {
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + BOOKMARK_EVERY, BOOKMARK_EVERY);
    loop {
        for msg in batch.drain(..) {
            // A body error makes hyper close the connection without the last chunk.
            let (frame, cut) = match msg {
                Msg::Line(line) => (Ok(Frame::data(line)), false),
                Msg::Cut => (Err(io::Error::other("watch cut by the test")), true),
            };
            if out.send(frame).await.is_err() || cut {
                return;
            }
        }
        tokio::select! {
            () = &mut deadline => return,
            msg = rx.recv() => batch.push(msg.unwrap_or(Msg::Cut)),
            _ = ticks.tick(), if bookmarks.is_some() => {
                let Some((api_version, kind)) = &bookmarks else { return };
                // Publishing holds the lock: with the queue drained under it, every event up to
                // `rv` goes out first, so a bookmark never overtakes an event.
                let mut store = lock(&store);
                while let Ok(msg) = rx.try_recv() {
                    batch.push(msg);
                }
                store.bookmarks += 1;
                batch.push(Msg::Line(bookmark_line(api_version, kind, store.rv, false)));
            }
        }
    }
}

/// Splits `/api/v1[/namespaces/{ns}]/{plural}[/{name}]` (or `/apis/{group}/{version}/...`).
fn parse_path(path: &str) -> Option<(Key, Option<String>, Option<String>)> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ((*version).to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, plural, name) = match rest {
        [plural] => (None, plural, None),
        [plural, name] => (None, plural, Some(name)),
        ["namespaces", ns, plural] => (Some(ns), plural, None),
        ["namespaces", ns, plural, name] => (Some(ns), plural, Some(name)),
        _ => return None,
    };
    let owned = |s: &&str| (*s).to_owned();
    Some((
        (api_version, owned(plural)),
        namespace.map(owned),
        name.map(owned),
    ))
}

/// The decoded query string.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(query: &str) -> Self {
        let pairs = query.split('&').filter(|p| !p.is_empty()).map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        });
        Self(pairs.collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A number above zero.
    fn positive<T: std::str::FromStr + Default + PartialOrd>(&self, key: &str) -> Option<T> {
        self.get(key)?.parse().ok().filter(|n| *n > T::default())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }
}

/// Decodes `application/x-www-form-urlencoded` text.
fn decode(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [bytes.next().unwrap_or(b'?'), bytes.next().unwrap_or(b'?')];
                let hex = std::str::from_utf8(&hex).unwrap_or("?");
                u8::from_str_radix(hex, 16).unwrap_or(b'?')
            }
            b => b,
        });
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Label and field selectors: each requirement must hold.
#[derive(Default)]
struct Selector {
    labels: Vec<(String, Op, String)>,
    fields: Vec<(String, Op, String)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Equal,
    NotEqual,
    Exists,
    Absent,
}

impl Selector {
    fn parse(query: &Query) -> Result<Self, String> {
        let parse = |selector: Option<&str>| {
            let terms = selector
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty());
            terms
                .map(|term| {
                    let (key, op, value) = if term.contains(['(', ' ']) {
                        return Err(format!("unsupported selector `{term}`"));
                    } else if let Some((k, v)) = term.split_once("!=") {
                        (k, Op::NotEqual, v)
                    } else if let Some((k, v)) =
                        term.split_once("==").or_else(|| term.split_once('='))
                    {
                        (k, Op::Equal, v)
                    } else if let Some(k) = term.strip_prefix('!') {
                        (k, Op::Absent, "")
                    } else {
                        (term, Op::Exists, "")
                    };
                    Ok((key.to_owned(), op, value.to_owned()))
                })
                .collect::<Result<Vec<_>, String>>()
        };
        let selector = Self {
            labels: parse(query.get("labelSelector"))?,
            fields: parse(query.get("fieldSelector"))?,
        };
        if selector
            .fields
            .iter()
            .any(|(_, op, _)| matches!(op, Op::Exists | Op::Absent))
        {
            return Err("field selectors take = and != only".into());
        }
        Ok(selector)
    }

    fn matches(&self, object: &Value) -> bool {
        let labels = self.labels.iter().all(|(key, op, value)| {
            let label = object["metadata"]["labels"]
                .get(key)
                .and_then(Value::as_str);
            match op {
                Op::Equal => label == Some(value.as_str()),
                Op::NotEqual => label != Some(value.as_str()),
                Op::Exists => label.is_some(),
                Op::Absent => label.is_none(),
            }
        });
        // A missing field reads as "", as `spec.nodeName=` matches unscheduled pods.
        let fields = self.fields.iter().all(|(path, op, value)| {
            let field = match path.split('.').try_fold(object, |v, k| v.get(k)) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (field == *value) == (*op == Op::Equal)
        });
        labels && fields
    }
}

fn namespace_of(object: &Value) -> &str {
    object["metadata"]["namespace"].as_str().unwrap_or_default()
}

/// A list item: real servers leave out apiVersion and kind (the list carries them).
fn without_type(mut object: Value) -> Value {
    if let Some(fields) = object.as_object_mut() {
        fields.remove("apiVersion");
        fields.remove("kind");
    }
    object
}

/// Now as a Kubernetes timestamp (whole seconds, UTC).
fn now() -> Value {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let time = k8s_openapi::jiff::Timestamp::from_second(secs as i64).expect("now is a valid time");
    json!(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(time))
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    line(&json!({ "type": kind, "object": object }))
}

fn bookmark_line(api_version: &str, kind: &str, rv: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": kind, "apiVersion": api_version, "metadata": metadata });
    line(&json!({ "type": "BOOKMARK", "object": object }))
}

/// JSON and a newline.
fn line(value: &Value) -> Bytes {
    let mut line = serde_json::to_vec(value).expect("JSON values serialize");
    line.push(b'\n');
    line.into()
}

fn full(value: &Value) -> Body {
    full_bytes(
        serde_json::to_vec(value)
            .expect("JSON values serialize")
            .into(),
    )
}

fn full_bytes(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn respond(code: StatusCode, body: Body) -> Response<Body> {
    let response = Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, "application/json");
    response.body(body).expect("a valid response")
}

fn status_json(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    })
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    respond(code, full(&status_json(code, reason, message)))
}

fn not_found(path: &str) -> Response<Body> {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("the server could not find {path}"),
    )
}
