//! The embedded HTTP server: `/metrics` (Prometheus text), `/api/v1/summary` (JSON) and
//! `/healthz`. Handlers only read the latest snapshot; they never touch the kernel.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

use axum::{
    Json, Router,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
    routing::get,
};

use super::{prometheus, summary::Summary};
use crate::flow::Snapshot;

/// The latest snapshot, replaced whole by the reader (readers clone the `Arc`, never wait on a
/// half-built one).
pub type SharedSnapshot = Arc<RwLock<Arc<Snapshot>>>;

/// The latest snapshot (a poisoned lock still holds a whole snapshot: use it).
pub fn latest(shared: &SharedSnapshot) -> Arc<Snapshot> {
    let guard = shared
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Arc::clone(&guard)
}

#[derive(Clone)]
struct AppState {
    snapshot: SharedSnapshot,
    top_talkers: usize,
    stale_after: Duration,
}

impl AppState {
    fn current(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |s| Arc::clone(&s))
    }
}

/// Builds the router. A snapshot older than `stale_after` makes `/healthz` answer 503.
pub fn router(snapshot: SharedSnapshot, top_talkers: usize, stale_after: Duration) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/summary", get(summary))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            snapshot,
            top_talkers,
            stale_after,
        })
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let body = prometheus::render(&s.current());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn summary(State(s): State<AppState>) -> Json<Summary> {
    Json(Summary::of(&s.current(), s.top_talkers))
}

async fn healthz(State(s): State<AppState>) -> (StatusCode, &'static str) {
    let snap = s.current();
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
