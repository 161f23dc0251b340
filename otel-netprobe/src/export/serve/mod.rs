//! The HTTP server's connection handling: the accept loop, and the bounds that keep a slow or
//! hostile client from holding the agent's descriptors (in the chart the server listens on
//! every address of every node). The routes are [`super::http`]'s; this module only decides
//! which connections are served and for how long.
//!
//! - A request head must arrive whole within `header_read_timeout` of the server waiting for
//!   it (hyper's timer: it runs after accept and again between keep-alive requests).
//! - A connection on which no byte moves either way for `idle_timeout` is closed.
//! - At most `max_connections` are open. When full, a newcomer takes the slot of the
//!   longest-idle connection with no request in progress (so a scrape is answered while slow
//!   clients flood the port); when every connection is answering a request it is refused.
//! - Request heads are limited to `max_header_bytes` and `max_headers` (431 beyond); request
//!   bodies are never read (every route is a GET).
//!
//! - With `http.tls`, each connection's TLS handshake must complete within
//!   `header_read_timeout` too; with a client CA, a connection without a verified client
//!   certificate is answered 403 for everything but `/healthz` ([`tls`]).
//!
//! Everything is counted in [`crate::telemetry::http::HttpCounters`].

mod slots;
pub mod tls;
mod tracked;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::{
    body::Incoming,
    rt::{Read, Write},
    server::conn::http1,
    service::service_fn,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use slots::{Admission, Busy, Table, admit, lock};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, watch},
};
use tower_service::Service as _;
use tracing::{debug, info, warn};
use tracked::Tracked;

use crate::{
    config::HttpConfig,
    telemetry::{Telemetry, http::Closed},
};

/// The bounds of the server (from [`HttpConfig`]).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// See [`HttpConfig::header_read_timeout`].
    pub header_read_timeout: Duration,
    /// See [`HttpConfig::idle_timeout`].
    pub idle_timeout: Duration,
    /// See [`HttpConfig::max_connections`].
    pub max_connections: usize,
    /// See [`HttpConfig::max_header_bytes`].
    pub max_header_bytes: usize,
    /// See [`HttpConfig::max_headers`].
    pub max_headers: usize,
}

impl From<&HttpConfig> for Limits {
    fn from(c: &HttpConfig) -> Self {
        Self {
            header_read_timeout: c.header_read_timeout,
            idle_timeout: c.idle_timeout,
            max_connections: c.max_connections,
            max_header_bytes: c.max_header_bytes,
            max_headers: c.max_headers,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from(&HttpConfig::default())
    }
}

/// A running server: stop it with [`Server::shutdown`].
pub struct Server {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves `app` on `listener` within `limits`, on the current tokio runtime.
    pub fn spawn(
        listener: TcpListener,
        app: axum::Router,
        limits: Limits,
        counters: Arc<Telemetry>,
    ) -> Self {
        Self::spawn_tls(listener, app, limits, counters, None)
    }

    /// As [`Server::spawn`], over TLS when `tls` is given ([`tls::server_config`]).
    pub fn spawn_tls(
        listener: TcpListener,
        app: axum::Router,
        limits: Limits,
        counters: Arc<Telemetry>,
        tls: Option<tls::TlsServer>,
    ) -> Self {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let (stop, stopped) = watch::channel(false);
        let tls = tls.map(|t| (tokio_rustls::TlsAcceptor::from(t.config), t.client_auth));
        let task = tokio::spawn(accept_loop(listener, app, limits, counters, stopped, tls));
        Self { addr, stop, task }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in progress finish (each connection closes after its
    /// current response), and waits up to `grace` for the connections to end.
    pub async fn shutdown(self, grace: Duration) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(grace, self.task).await.is_err() {
            debug!("HTTP connections still open after the shutdown grace period");
        }
    }
}

/// The HTTP/1 protocol settings of every connection: the header-read timeout and the size
/// limits of a request head.
pub fn protocol(limits: &Limits) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    builder
}

async fn accept_loop(
    listener: TcpListener,
    app: axum::Router,
    limits: Limits,
    counters: Arc<Telemetry>,
    mut stopped: watch::Receiver<bool>,
    tls: Option<(tokio_rustls::TlsAcceptor, bool)>,
) {
    info!(listen = %listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
        max_connections = limits.max_connections, tls = tls.is_some(),
        "serving /metrics, /api/v1/summary, /healthz");
    let table: Table = Arc::default();
    let builder = Arc::new(protocol(&limits));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stopped.changed() => break,
            r = listener.accept() => r,
            // Reap finished connection tasks so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors (EMFILE/ENFILE) or a connection reset before accept: the
                // kernel keeps the backlog; back off briefly instead of spinning.
                counters.http.refused("accept failed");
                warn!(error = %e, "accepting an HTTP connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let c = &counters.http;
        let (id, evict) = match admit(&table, limits.max_connections, c) {
            Admission::Admitted(id, evict, evicted) => {
                if evicted {
                    // Let the evicted connection's task close its socket before the next
                    // accept, so a flood holds about `max_connections` descriptors, not
                    // those plus every eviction still pending.
                    tokio::task::yield_now().await;
                }
                (id, evict)
            }
            Admission::Refused => {
                c.refused("every connection is answering a request");
                drop(stream);
                continue;
            }
        };
        let conn = Connection {
            id,
            table: Arc::clone(&table),
            evict,
            counters: Arc::clone(&counters),
            stopped: stopped.clone(),
            idle_timeout: limits.idle_timeout,
            handshake_timeout: limits.header_read_timeout,
        };
        tasks.spawn(conn.run(stream, app.clone(), Arc::clone(&builder), tls.clone()));
    }
    // Stopping: each connection finishes its response and closes (see `Connection::run`).
    while tasks.join_next().await.is_some() {}
}

/// One accepted connection's task.
struct Connection {
    id: u64,
    table: Table,
    evict: Arc<Notify>,
    counters: Arc<Telemetry>,
    stopped: watch::Receiver<bool>,
    idle_timeout: Duration,
    handshake_timeout: Duration,
}

impl Connection {
    async fn run(
        self,
        stream: TcpStream,
        app: axum::Router,
        builder: Arc<http1::Builder>,
        tls: Option<(tokio_rustls::TlsAcceptor, bool)>,
    ) {
        let started = Instant::now();
        let activity = Arc::new(AtomicU64::new(0));
        let tracked = Tracked {
            inner: stream,
            started,
            activity: Arc::clone(&activity),
        };
        let Some((acceptor, client_auth)) = tls else {
            return self
                .serve(
                    TokioIo::new(tracked),
                    app,
                    &builder,
                    started,
                    activity,
                    true,
                )
                .await;
        };
        // The handshake is part of the request head's time: a client that opens a connection
        // and never finishes it holds its slot no longer than a slow plain-HTTP one.
        let evict = Arc::clone(&self.evict);
        let handshake = tokio::time::timeout(self.handshake_timeout, acceptor.accept(tracked));
        let stream = tokio::select! {
            r = handshake => match r {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => return self.end_early(Closed::Done, &e.to_string()),
                Err(_) => return self.end_early(Closed::HeaderTimeout, "TLS handshake timed out"),
            },
            // Its slot went to a newcomer (the successor owns the table entry now).
            () = evict.notified() => return self.counters.http.closed(Closed::Evicted),
        };
        // A certificate is only there if the verifier accepted it (an unverifiable one fails
        // the handshake); without a client CA nobody is asked, and every request is served.
        let (_, session) = stream.get_ref();
        let verified = !client_auth || session.peer_certificates().is_some();
        self.serve(
            TokioIo::new(stream),
            app,
            &builder,
            started,
            activity,
            verified,
        )
        .await;
    }

    /// A connection that ended before HTTP began (its TLS handshake failed).
    fn end_early(self, reason: Closed, why: &str) {
        debug!(error = why, "TLS handshake failed");
        lock(&self.table).open.remove(&self.id);
        self.counters.http.closed(reason);
    }

    async fn serve<I: Read + Write + Unpin + Send + 'static>(
        mut self,
        io: I,
        app: axum::Router,
        builder: &http1::Builder,
        started: Instant,
        activity: Arc<AtomicU64>,
        verified: bool,
    ) {
        let (table, id) = (Arc::clone(&self.table), self.id);
        let svc = service_fn(move |req: hyper::Request<Incoming>| {
            let mut app = app.clone();
            let guard = Busy::new(Arc::clone(&table), id);
            async move {
                let response = if verified || tls::allowed_without_client_cert(req.uri().path()) {
                    app.call(req).await
                } else {
                    Ok(forbidden())
                };
                drop(guard);
                response
            }
        });
        let conn = builder.serve_connection(io, svc);
        tokio::pin!(conn);
        let mut shutting_down = false;
        let reason = loop {
            let last = Duration::from_millis(activity.load(Ordering::Relaxed));
            let idle_deadline = started + last + self.idle_timeout;
            tokio::select! {
                r = conn.as_mut() => break match r {
                    Ok(()) if shutting_down => Closed::Shutdown,
                    Ok(()) => Closed::Done,
                    Err(e) if e.is_timeout() => Closed::HeaderTimeout,
                    Err(e) => {
                        debug!(error = %e, "HTTP connection ended with an error");
                        Closed::Done
                    }
                },
                () = self.evict.notified() => break Closed::Evicted,
                () = tokio::time::sleep_until(idle_deadline.into()) => {
                    let now = Duration::from_millis(activity.load(Ordering::Relaxed));
                    if now == last {
                        break Closed::IdleTimeout;
                    }
                }
                _ = self.stopped.changed(), if !shutting_down => {
                    shutting_down = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        };
        // An evicted connection's slot was already taken by its successor.
        if reason != Closed::Evicted {
            lock(&self.table).open.remove(&self.id);
        }
        self.counters.http.closed(reason);
    }
}

/// The answer to a request that needs a client certificate the connection did not present.
fn forbidden() -> axum::response::Response {
    let mut r = axum::response::Response::new(axum::body::Body::from(
        "a client certificate signed by http.tls.client_ca_file is required\n",
    ));
    *r.status_mut() = hyper::StatusCode::FORBIDDEN;
    r
}
