//! OTLP push: every `otlp.interval` the latest snapshot's frame, with the agent's own health
//! appended, is encoded ([`encode`]) and sent ([`client`]) on its own task, so exporting never
//! blocks counting. Counters are cumulative: a failed export is dropped (and counted) rather
//! than queued, since the next one carries the totals; memory stays bounded by one request
//! whatever the collector does. At shutdown the agent flushes one last export.

pub mod client;
pub mod encode;
mod tls;
mod wire;

use std::{sync::Arc, time::SystemTime};

use tracing::info;

use crate::{
    config::OtlpConfig,
    export::http::{SharedSnapshot, latest},
    frame::{Snapshot, point_count},
    metrics::{self, Family},
    telemetry::{
        Telemetry,
        events::{Event, ExportFailed, ExportRejected, ExportSent},
    },
};

/// The resource attributes of this agent: `service.name`, `service.version`,
/// `service.instance.id`, `host.name`, `k8s.node.name` (from `K8S_NODE_NAME` or `NODE_NAME`,
/// e.g. the downward API), `k8s.cluster.name` when configured, then the configured extras
/// (`otlp.resource_attributes`, `OTEL_RESOURCE_ATTRIBUTES`), which replace any of these.
///
/// `service.instance.id` is one per node, the same across restarts and rollouts: `k8s.node.name`
/// when known, else the host name (an explicit `service.instance.id` among the extras wins). A
/// restarted agent counts from zero again with a new start time; under the same id that is a
/// counter reset of the same series, which Prometheus' `rate()` and `increase()` read as one.
/// A new id per run would start new series instead, and `increase()` would lose the first
/// samples of each.
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
    if !r.iter().any(|(k, _)| k == "service.instance.id") {
        let named = |key: &str| r.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let id = named("k8s.node.name")
            .or_else(|| named("host.name"))
            .unwrap_or_else(random_id);
        r.insert(2, ("service.instance.id".to_owned(), id));
    }
    r
}

/// Only for a host without a name (gethostname failed or gave nothing) and no node name.
fn random_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").map_or_else(
        |_| format!("otel-netprobe-{}", std::process::id()),
        |s| s.trim().to_owned(),
    )
}

fn hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into our buffer.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    (rc == 0 && end > 0).then(|| String::from_utf8_lossy(&buf[..end]).into_owned())
}

/// Pushes frames to one OTLP destination.
pub struct Exporter {
    client: client::OtlpClient,
    encoder: encode::Encoder,
    telemetry: Arc<Telemetry>,
    cfg: OtlpConfig,
    /// The time the last export was stamped with.
    last_stamp: SystemTime,
}

/// The time an export is stamped with: now, and always later than the previous export's.
///
/// Not the snapshot's time: an export carries the agent's own counters read as it is sent, and
/// when no read cycle ended between two exports (a slow cycle, a loaded node) both would send the
/// same snapshot with different values of those counters at one timestamp, which Prometheus
/// refuses as a duplicate sample — failing the whole remote write of that batch (the soak of
/// `make bench` found it). The flow values were read at most one cycle earlier.
fn stamp(last: SystemTime, now: SystemTime) -> SystemTime {
    if now > last {
        now
    } else {
        last + std::time::Duration::from_nanos(1)
    }
}

impl Exporter {
    /// An exporter for `cfg` (validated) with these resource attributes, whose cumulative
    /// series start now (see [`Exporter::continue_from`]); must be called inside a tokio
    /// runtime. Unusable TLS files fail here, before anything is loaded.
    pub fn new(
        cfg: &OtlpConfig,
        resource: &[(String, String)],
        telemetry: Arc<Telemetry>,
    ) -> Result<Self, client::SendError> {
        Ok(Self {
            client: client::OtlpClient::new(cfg)?,
            encoder: encode::Encoder::new(resource, SystemTime::now()),
            telemetry,
            cfg: cfg.clone(),
            last_stamp: SystemTime::UNIX_EPOCH,
        })
    }

    /// The agent adopted a previous agent's pinned state, counting since `started`: the flow
    /// families' series continue from then ([`metrics::flows::CONTINUED`]); the others, which
    /// restart from zero with this process, keep its start.
    pub fn continue_from(&mut self, started: SystemTime) {
        self.encoder.continue_from(started);
    }

    /// Sends the frame of `snap` with the agent's health appended, stamped with the time of
    /// sending ([`stamp`]); counts what happened. Returns whether the backend accepted it.
    pub async fn export(&mut self, snap: &Snapshot) -> bool {
        let health = metrics::agent::families(&self.telemetry);
        let families: Vec<&Family> = snap.frame.families.iter().chain(&health).collect();
        self.last_stamp = stamp(self.last_stamp, SystemTime::now());
        let body = self.encoder.encode(&families, self.last_stamp);
        let points = point_count(families.iter().copied());
        match self.client.send(body).await {
            Ok(accepted) => {
                ExportSent.emit(&self.telemetry);
                if accepted.rejected > 0 {
                    ExportRejected {
                        points: accepted.rejected,
                        message: &accepted.message,
                    }
                    .emit(&self.telemetry);
                }
                true
            }
            Err(e) => {
                ExportFailed { points, error: &e }.emit(&self.telemetry);
                false
            }
        }
    }

    /// Exports the latest snapshot every interval until `stop` turns true, then hands the
    /// exporter back for the final flush. Nothing is sent before the first read cycle.
    pub async fn run(
        mut self,
        snapshot: SharedSnapshot,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        info!(endpoint = %self.cfg.endpoint, protocol = ?self.cfg.protocol, interval = ?self.cfg.interval, "exporting OTLP metrics");
        let mut tick = tokio::time::interval(self.cfg.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return self,
            }
            let snap = latest(&snapshot);
            if snap.health.read_cycles_total > 0 {
                // A stop while sending waits for this export (bounded by otlp.timeout).
                self.export(&snap).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_export_is_stamped_later_than_the_one_before() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(stamp(SystemTime::UNIX_EPOCH, t), t);
        // The same snapshot sent twice, or a clock that did not move: still one later.
        let next = stamp(t, t);
        assert_eq!(next, t + std::time::Duration::from_nanos(1));
        assert!(stamp(next, t) > next);
    }

    fn get<'a>(r: &'a [(String, String)], key: &str) -> Option<&'a str> {
        r.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_instance_is_the_node_and_stays_across_runs() {
        let cfg = OtlpConfig {
            cluster_name: "prod".into(),
            ..OtlpConfig::default()
        };
        let env = |k: &str| (k == "K8S_NODE_NAME").then(|| "node-7".to_owned());
        let r = resource(&cfg, env);
        assert_eq!(get(&r, "service.instance.id"), Some("node-7"));
        assert_eq!(get(&r, "k8s.node.name"), Some("node-7"));
        assert_eq!(get(&r, "k8s.cluster.name"), Some("prod"));
        assert_eq!(get(&r, "service.name"), Some("otel-netprobe"));
        // A second run on the node (a restart, a rollout) names the same instance.
        assert_eq!(resource(&cfg, env), r);
        let keys: Vec<&str> = r.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "service.name",
                "service.version",
                "service.instance.id",
                "host.name",
                "k8s.node.name",
                "k8s.cluster.name"
            ]
        );
    }

    #[test]
    fn without_a_node_the_host_names_the_instance() {
        let r = resource(&OtlpConfig::default(), |_| None);
        let host = hostname().expect("this machine has a host name");
        assert_eq!(get(&r, "service.instance.id"), Some(host.as_str()));
        assert_eq!(get(&r, "host.name"), Some(host.as_str()));
        assert_eq!(get(&r, "k8s.node.name"), None);
        // NODE_NAME is the other spelling of the downward API variable.
        let r = resource(&OtlpConfig::default(), |k| {
            (k == "NODE_NAME").then(|| "n2".to_owned())
        });
        assert_eq!(get(&r, "service.instance.id"), Some("n2"));
    }

    #[test]
    fn resource_attributes_override_the_instance_and_the_node() {
        let mut cfg = OtlpConfig::default();
        cfg.resource_attributes
            .insert("k8s.node.name".into(), "from-attrs".into());
        let env = |k: &str| (k == "K8S_NODE_NAME").then(|| "node-7".to_owned());
        let r = resource(&cfg, env);
        // The node name the operator gave names the instance too.
        assert_eq!(get(&r, "k8s.node.name"), Some("from-attrs"));
        assert_eq!(get(&r, "service.instance.id"), Some("from-attrs"));
        cfg.resource_attributes
            .insert("service.instance.id".into(), "agent-a".into());
        let r = resource(&cfg, env);
        assert_eq!(get(&r, "service.instance.id"), Some("agent-a"));
        assert_eq!(
            r.iter().filter(|(k, _)| k == "service.instance.id").count(),
            1
        );
    }
}
