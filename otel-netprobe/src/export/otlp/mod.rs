//! OTLP push: every `otlp.interval` the latest snapshot is encoded ([`encode`]) and sent
//! ([`client`]) on its own task, so exporting never blocks counting. Counters are cumulative: a
//! failed export is dropped (and counted) rather than queued, since the next one carries the
//! totals; memory stays bounded by one request whatever the collector does.

pub mod client;
pub mod encode;
mod wire;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use tracing::{info, warn};

use crate::{config::OtlpConfig, export::http::SharedSnapshot};

/// What the exporter did, for the agent's own metrics.
#[derive(Debug, Default)]
pub struct ExportStats {
    /// Requests the backend accepted.
    pub ok: AtomicU64,
    /// Requests that failed after their retries.
    pub failed: AtomicU64,
    /// Data points in failed requests (dropped: the next request carries the totals).
    pub dropped_points: AtomicU64,
}

/// The resource attributes of this agent: `service.name`, `service.instance.id` (unique per
/// agent run), `host.name`, `k8s.node.name` (from `K8S_NODE_NAME` or `NODE_NAME`, e.g. the
/// downward API), `k8s.cluster.name` when configured, then the configured extras.
pub fn resource(cfg: &OtlpConfig, env: impl Fn(&str) -> Option<String>) -> Vec<(String, String)> {
    let mut r = vec![
        (
            "service.name".to_owned(),
            env("OTEL_SERVICE_NAME").unwrap_or_else(|| "otel-netprobe".into()),
        ),
        (
            "service.version".to_owned(),
            env!("CARGO_PKG_VERSION").to_owned(),
        ),
        ("service.instance.id".to_owned(), instance_id()),
    ];
    if let Some(h) = hostname() {
        r.push(("host.name".into(), h));
    }
    if let Some(n) = env("K8S_NODE_NAME").or_else(|| env("NODE_NAME")) {
        r.push(("k8s.node.name".into(), n));
    }
    if !cfg.cluster_name.is_empty() {
        r.push(("k8s.cluster.name".into(), cfg.cluster_name.clone()));
    }
    for (k, v) in &cfg.resource_attributes {
        r.retain(|(existing, _)| existing != k);
        r.push((k.clone(), v.clone()));
    }
    r
}

fn instance_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").map_or_else(
        |_| format!("{}-{}", hostname().unwrap_or_default(), std::process::id()),
        |s| s.trim().to_owned(),
    )
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    (rc == 0).then(|| {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    })
}

/// Runs the export loop until the task is aborted. Build `client` first with
/// [`client::OtlpClient::new`], so bad settings stop the agent at start.
pub async fn run(
    cfg: OtlpConfig,
    mut client: client::OtlpClient,
    resource: Vec<(String, String)>,
    snapshot: SharedSnapshot,
    stats: Arc<ExportStats>,
) {
    let encoder = encode::Encoder::new(&resource, SystemTime::now());
    info!(endpoint = %cfg.endpoint, protocol = ?cfg.protocol, interval = ?cfg.interval, "exporting OTLP metrics");
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_warning: Option<Instant> = None;
    loop {
        tick.tick().await;
        let snap = crate::export::http::latest(&snapshot);
        if snap.health.read_cycles_total == 0 {
            continue;
        }
        let req = encoder.encode(&snap);
        match client.send(req).await {
            Ok(_) => {
                stats.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                stats
                    .dropped_points
                    .fetch_add(points(&snap), Ordering::Relaxed);
                // At most one warning a minute: an absent collector must not flood the log.
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    warn!(error = %e, "OTLP export failed; dropped (the next export carries the totals)");
                    last_warning = Some(Instant::now());
                }
            }
        }
    }
}

/// Data points in one export of `snap`.
fn points(snap: &crate::flow::Snapshot) -> u64 {
    let sets = snap.series();
    let agent: usize = crate::export::health::agent_series(snap)
        .iter()
        .map(|(_, rows)| rows.len())
        .sum();
    (2 * sets.flows.series.len() + sets.sizes.series.len() + agent) as u64
}
