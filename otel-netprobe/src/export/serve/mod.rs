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
//! Everything is counted in [`crate::telemetry::http::HttpCounters`].

mod slots;
mod tracked;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use hyper::{body::Incoming, server::conn::http1, service::service_fn};
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
        let addr = listener
            .local_addr()
            .unwrap_or_else(|_| ([0, 0, 0, 0], 0).into());
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, app, limits, counters, stopped));
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
) {
    info!(listen = %listener.local_addr().map_or_else(|_| "?".into(), |a| a.to_string()),
        max_connections = limits.max_connections, "serving /metrics, /api/v1/summary, /healthz");
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
        };
        tasks.spawn(conn.run(stream, app.clone(), Arc::clone(&builder)));
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
}

impl Connection {
    async fn run(mut self, stream: TcpStream, app: axum::Router, builder: Arc<http1::Builder>) {
        let started = Instant::now();
        let activity = Arc::new(AtomicU64::new(0));
        let io = TokioIo::new(Tracked {
            inner: stream,
            started,
            activity: Arc::clone(&activity),
        });
        let (table, id) = (Arc::clone(&self.table), self.id);
        let svc = service_fn(move |req: hyper::Request<Incoming>| {
            let mut app = app.clone();
            let guard = Busy::new(Arc::clone(&table), id);
            async move {
                let response = app.call(req).await;
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
