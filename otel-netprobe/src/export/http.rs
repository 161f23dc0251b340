//! The embedded HTTP server: `/metrics` (Prometheus text of the frame and the agent's health),
//! `/api/v1/summary` (JSON) and `/healthz`. Handlers only read the latest snapshot; they never
//! touch the kernel and build nothing but the response.

use std::{
    sync::{Arc, RwLock},
    time::{Duration, SystemTime},
};

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

#[derive(Clone)]
struct AppState {
    snapshot: SharedSnapshot,
    telemetry: Arc<Telemetry>,
    stale_after: Duration,
}

/// Builds the router. A snapshot older than `stale_after` makes `/healthz` answer 503.
pub fn router(
    snapshot: SharedSnapshot,
    telemetry: Arc<Telemetry>,
    stale_after: Duration,
) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/summary", get(summary))
        .route("/healthz", get(healthz))
        .with_state(AppState {
            snapshot,
            telemetry,
            stale_after,
        })
}

async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let snap = latest(&s.snapshot);
    let health = metrics::agent::families(&s.telemetry);
    let body = prometheus::render(snap.frame.families.iter().chain(&health));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

async fn summary(State(s): State<AppState>) -> impl IntoResponse {
    let body = serde_json::to_string(&latest(&s.snapshot).summary).unwrap_or_default();
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
