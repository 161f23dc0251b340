//! The embedded HTTP server: `/metrics` (Prometheus text of the frame and the agent's health),
//! `/api/v1/summary` (JSON) and `/healthz`. Handlers only read the latest snapshot; they never
//! touch the kernel and build nothing but the response, and `/metrics` and the summary are
//! rendered at most once per snapshot (per read cycle) however often they are asked for
//! ([`Renders`]). Which connections are served, and for how long, is [`super::serve`]'s.

use std::{
    sync::{
        Arc, RwLock, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use bytes::Bytes;

use axum::{
    Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use super::prometheus;
use crate::{frame::Snapshot, metrics, telemetry::Telemetry};

/// The latest snapshot, replaced whole by the reader (readers clone the `Arc`, never wait on a
/// half-built one).
pub type SharedSnapshot = Arc<RwLock<Arc<Snapshot>>>;

/// A shared slot holding an empty snapshot.
pub fn shared_empty() -> SharedSnapshot {
    Arc::new(RwLock::new(Arc::new(Snapshot::empty())))
}

/// The latest snapshot (a poisoned lock still holds a whole snapshot: use it).
pub fn latest(shared: &SharedSnapshot) -> Arc<Snapshot> {
    let guard = shared
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(&guard)
}

/// Replaces the latest snapshot.
pub fn publish(shared: &SharedSnapshot, snap: Snapshot) {
    let snap = Arc::new(snap);
    match shared.write() {
        Ok(mut s) => *s = snap,
        Err(p) => *p.into_inner() = snap,
    }
}

/// One endpoint's body, rendered from one snapshot and kept until the next.
#[derive(Default)]
struct Rendered {
    from: Weak<Snapshot>,
    body: Bytes,
}

/// The rendered bodies of `/metrics` and `/api/v1/summary`: each is rendered once per
/// snapshot, by the first request that asks for it after the reader published a new one;
/// requests that arrive meanwhile wait for that rendering rather than start their own, so a
/// flood of scrapes costs one rendering per read cycle. The agent's own counters in
/// `/metrics` are read at that rendering too.
#[derive(Default)]
pub struct Renders {
    metrics: tokio::sync::Mutex<Rendered>,
    summary: tokio::sync::Mutex<Rendered>,
    count: AtomicU64,
}

impl Renders {
    /// How many bodies were rendered so far (both endpoints).
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    async fn get(
        &self,
        slot: &tokio::sync::Mutex<Rendered>,
        snap: &Arc<Snapshot>,
        render: impl FnOnce(&Snapshot) -> Bytes,
    ) -> Bytes {
        let mut r = slot.lock().await;
        // A live weak pointer to the same allocation is the same snapshot (a freed one could
        // share its address with a newer snapshot, hence the liveness test).
        let same = r.from.strong_count() > 0 && std::ptr::eq(r.from.as_ptr(), Arc::as_ptr(snap));
        if !same {
            r.body = render(snap);
            r.from = Arc::downgrade(snap);
            self.count.fetch_add(1, Ordering::Relaxed);
        }
        r.body.clone()
    }
}

#[derive(Clone)]
struct AppState {
    snapshot: SharedSnapshot,
    telemetry: Arc<Telemetry>,
    stale_after: Duration,
    renders: Arc<Renders>,
}

/// Builds the router. A snapshot older than `stale_after` makes `/healthz` answer 503.
pub fn router(
    snapshot: SharedSnapshot,
    telemetry: Arc<Telemetry>,
    stale_after: Duration,
) -> Router {
    router_with(snapshot, telemetry, stale_after, Arc::default())
}

/// [`router`], with the render cache given (tests read its count).
pub fn router_with(
    snapshot: SharedSnapshot,
    telemetry: Arc<Telemetry>,
    stale_after: Duration,
    renders: Arc<Renders>,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/summary", get(summary))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            snapshot,
            telemetry,
            stale_after,
            renders,
        })
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let snap = latest(&s.snapshot);
    let body = s
        .renders
        .get(&s.renders.metrics, &snap, |snap| {
            let health = metrics::agent::families(&s.telemetry);
            Bytes::from(prometheus::render(
                snap.frame.families.iter().chain(&health),
            ))
        })
        .await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn summary(State(s): State<AppState>) -> impl IntoResponse {
    let snap = latest(&s.snapshot);
    let body = s
        .renders
        .get(&s.renders.summary, &snap, |snap| {
            Bytes::from(serde_json::to_string(&snap.summary).unwrap_or_default())
        })
        .await;
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    let snap = latest(&s.snapshot);
    let age = SystemTime::now()
        .duration_since(snap.taken_at)
        .unwrap_or_default();
    if snap.health.read_cycles_total > 0 && age <= s.stale_after {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "flow reader has not completed a recent cycle\n",
        )
    }
}
