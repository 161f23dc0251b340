//! The watchers: one kube-rs watcher per resource feeding the [`IndexStore`], and a publisher
//! that rebuilds the [`IpIndex`] snapshot when something changed.
//!
//! Pods, services, EndpointSlices and nodes are watched whole (their spec and status carry
//! the addresses); ReplicaSets and Jobs as metadata only (`Api<PartialObjectMeta<K>>`, which
//! asks the server for `PartialObjectMetadata`): the index needs nothing of them but their
//! names and owner references, so their specs (a pod template each) never cross the wire and
//! are never parsed. The RBAC is the same: list and watch on the resource.

use std::{
    fmt::Debug,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt as _};
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Resource,
    core::PartialObjectMeta,
    runtime::{WatchStreamExt as _, watcher},
};
use serde::de::DeserializeOwned;
use tracing::{debug, info, warn};

use super::{
    Shared,
    index::{IndexStore, Kind},
    trim::Trim,
};

/// The shortest time between two index rebuilds.
const MIN_REBUILD_INTERVAL: Duration = Duration::from_millis(200);
/// Watch failures of one resource are logged at most this often (all are counted).
const LOG_EVERY: Duration = Duration::from_secs(60);

/// Runs every watcher and the publisher until the future is dropped.
pub(super) async fn run(client: Client, store: Arc<Mutex<IndexStore>>, shared: Arc<Shared>) {
    let dirty = Arc::new(AtomicBool::new(true));
    let ctx = Ctx {
        store,
        shared,
        dirty,
    };
    let watchers = futures::future::join_all([
        FutureExt::boxed(watch::<Pod>(client.clone(), Kind::Pod, ctx.clone())),
        FutureExt::boxed(watch::<Service>(client.clone(), Kind::Service, ctx.clone())),
        FutureExt::boxed(watch::<EndpointSlice>(
            client.clone(),
            Kind::EndpointSlice,
            ctx.clone(),
        )),
        FutureExt::boxed(watch::<Node>(client.clone(), Kind::Node, ctx.clone())),
        FutureExt::boxed(watch::<PartialObjectMeta<ReplicaSet>>(
            client.clone(),
            Kind::ReplicaSet,
            ctx.clone(),
        )),
        FutureExt::boxed(watch::<PartialObjectMeta<Job>>(
            client,
            Kind::Job,
            ctx.clone(),
        )),
    ]);
    tokio::select! {
        _ = watchers => {}
        () = publish(ctx) => {}
    }
}

#[derive(Clone)]
struct Ctx {
    store: Arc<Mutex<IndexStore>>,
    shared: Arc<Shared>,
    dirty: Arc<AtomicBool>,
}

impl Ctx {
    fn store(&self) -> std::sync::MutexGuard<'_, IndexStore> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Follows one resource for ever: list, watch, and on failure back off and resume (or
/// re-list after 410 Gone, which the watcher does by itself).
async fn watch<K>(client: Client, kind: Kind, ctx: Ctx)
where
    K: Resource<DynamicType = ()> + Trim + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let api: Api<K> = Api::all(client);
    // Lists are served from the API server's watch cache (resourceVersion=0): one agent per
    // node must not make every node's start an etcd quorum read.
    let config = watcher::Config::default().any_semantic();
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut last_log: Option<Instant> = None;
    let mut unlogged = 0u64;
    let slot = kind as usize;
    while let Some(item) = stream.next().await {
        let now = Instant::now();
        match item {
            Ok(event) => {
                ctx.shared.events.fetch_add(1, Ordering::Relaxed);
                apply(&ctx, kind, event, now);
            }
            Err(e) => {
                ctx.shared.restarts[slot].fetch_add(1, Ordering::Relaxed);
                unlogged += 1;
                if last_log.is_none_or(|t| now.duration_since(t) >= LOG_EVERY) {
                    warn!(
                        resource = kind.resource(),
                        failures = unlogged,
                        error = %e,
                        "watching the Kubernetes API failed; retrying with backoff (names may go stale)"
                    );
                    last_log = Some(now);
                    unlogged = 0;
                } else {
                    debug!(resource = kind.resource(), error = %e, "watch failed");
                }
            }
        }
    }
}

fn apply<K: Trim>(ctx: &Ctx, kind: Kind, event: watcher::Event<K>, now: Instant) {
    let mut store = ctx.store();
    match event {
        watcher::Event::Init => store.begin_relist(kind),
        watcher::Event::InitApply(o) | watcher::Event::Apply(o) => match o.trim() {
            Some(r) => store.upsert(o.uid(), r, now),
            None => store.delete(kind, o.uid(), now),
        },
        watcher::Event::Delete(o) => store.delete(kind, o.uid(), now),
        watcher::Event::InitDone => {
            store.finish_relist(kind, now);
            if !ctx.shared.synced[kind as usize].swap(true, Ordering::Relaxed) {
                info!(resource = kind.resource(), "Kubernetes list complete");
            }
        }
    }
    ctx.dirty.store(true, Ordering::Relaxed);
}

/// Rebuilds and publishes the index when the store changed or a deleted pod's grace period
/// ended; waits at least [`MIN_REBUILD_INTERVAL`], and four times the last build's duration,
/// between builds.
async fn publish(ctx: Ctx) {
    let mut pause = MIN_REBUILD_INTERVAL;
    loop {
        tokio::time::sleep(pause).await;
        let started = Instant::now();
        let index = {
            let mut store = ctx.store();
            let expired = store.expire(started);
            if !ctx.dirty.swap(false, Ordering::Relaxed) && expired == 0 {
                continue;
            }
            store.build()
        };
        let was_synced = ctx.shared.index().synced;
        if index.synced && !was_synced {
            info!(
                addresses = index.len(),
                "Kubernetes index ready: flow ends are named"
            );
        }
        ctx.shared.set_index(index);
        pause = MIN_REBUILD_INTERVAL.max(started.elapsed() * 4);
    }
}
