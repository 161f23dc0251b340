//! Kubernetes awareness: watchers on the API server keep an IP index that names both ends of
//! every flow (namespace, workload, service, pod, node).
//!
//! The watchers run on their own thread with a small runtime, so the counting path never waits
//! for the API: while the API is unreachable the last index keeps naming (or, before the first
//! list, every end is `unknown`), and the watchers reconnect with backoff.
//!
//! Permissions needed (cluster-wide, read-only): get/list/watch on `pods`, `services`,
//! `nodes`, `endpointslices` (discovery.k8s.io), `replicasets` (apps) and `jobs` (batch).
//! The last two are watched as metadata only, which needs the same verbs. At SIGTERM,
//! [`owner`] gets the agent's own pod and, in its namespace only, its DaemonSet (`get`).

pub mod index;
pub mod naming;
pub mod owner;
pub mod trim;
mod watch;

use std::{
    path::Path,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use kube::config::{KubeConfigOptions, Kubeconfig};
use serde::Serialize;
use tracing::info;

use crate::config::{K8sConfig, K8sMode};
use index::{IndexSizes, IndexStore, IpIndex, Kind};

/// The Kubernetes API could not be used as configured.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// `k8s.kubeconfig` (or `$KUBECONFIG`, `~/.kube/config`) could not be used.
    #[error("config key `k8s.kubeconfig`: cannot use {path}: {source}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The in-cluster service account could not be used.
    #[error("in-cluster Kubernetes configuration is unusable: {0}")]
    InCluster(#[source] kube::config::InClusterError),
    /// `k8s.mode` is `cluster` but no API is configured.
    #[error(
        "config key `k8s.mode`: cluster, but no Kubernetes API is configured (no in-cluster service account, no k8s.kubeconfig, $KUBECONFIG or ~/.kube/config)"
    )]
    NoApi,
    /// The client could not be built.
    #[error("building the Kubernetes client failed: {0}")]
    Client(#[source] kube::Error),
    /// The runtime or thread could not be created.
    #[error("starting the Kubernetes watchers failed: {0}")]
    Runtime(#[source] std::io::Error),
}

/// State shared between the watcher thread and the readers.
#[derive(Debug, Default)]
pub struct Shared {
    index: RwLock<Arc<IpIndex>>,
    /// Per [`Kind`]: watch failures (each one a reconnect, or a re-list after 410 Gone).
    restarts: [AtomicU64; 6],
    /// Per [`Kind`]: whether its first list completed.
    synced: [AtomicBool; 6],
    /// Watch events applied.
    events: AtomicU64,
}

impl Shared {
    /// The current index snapshot.
    pub fn index(&self) -> Arc<IpIndex> {
        self.index
            .read()
            .map_or_else(|p| Arc::clone(&p.into_inner()), |i| Arc::clone(&i))
    }

    fn set_index(&self, index: IpIndex) {
        let index = Arc::new(index);
        match self.index.write() {
            Ok(mut i) => *i = index,
            Err(p) => *p.into_inner() = index,
        }
    }

    /// The watchers' figures, for the agent's metrics.
    pub fn health(&self) -> K8sHealth {
        self.health_of(&self.index())
    }

    /// The watchers' figures with those of `index` (a snapshot taken by the caller, so the
    /// figures and the names of one agent snapshot come from the same index).
    pub fn health_of(&self, index: &IpIndex) -> K8sHealth {
        K8sHealth {
            synced: index.synced,
            sizes: index.sizes,
            watch_restarts: std::array::from_fn(|i| self.restarts[i].load(Ordering::Relaxed)),
            events_total: self.events.load(Ordering::Relaxed),
        }
    }
}

/// The Kubernetes watchers' health, exported as `netprobe_agent_k8s_*`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct K8sHealth {
    /// Every resource has been listed at least once.
    pub synced: bool,
    /// Objects and addresses indexed.
    #[serde(skip)]
    pub sizes: IndexSizes,
    /// Per [`Kind::ALL`] entry: watch failures (reconnects, re-lists after 410 Gone).
    pub watch_restarts: [u64; 6],
    /// Watch events applied.
    pub events_total: u64,
}

/// The running watchers; dropping this stops them.
pub struct K8s {
    shared: Arc<Shared>,
    client: kube::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl K8s {
    /// Starts the watchers on their own thread, or returns `None` (after a one-line notice)
    /// when no API is configured and `k8s.mode` allows running standalone.
    pub fn start(cfg: &K8sConfig) -> Result<Option<Self>, K8sError> {
        if cfg.mode == K8sMode::Standalone {
            return Ok(None);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(K8sError::Runtime)?;
        let Some(config) = runtime.block_on(client_config(cfg))? else {
            if cfg.mode == K8sMode::Cluster {
                return Err(K8sError::NoApi);
            }
            info!(
                "standalone: no Kubernetes API configured (in-cluster or kubeconfig); flows are named by address"
            );
            return Ok(None);
        };
        info!(api = %config.cluster_url, "naming flows from the Kubernetes API");
        let client = {
            let _guard = runtime.enter();
            kube::Client::try_from(config).map_err(K8sError::Client)?
        };
        let shared = Arc::new(Shared::default());
        let store = Arc::new(Mutex::new(IndexStore::new(cfg.delete_grace)));
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = {
            let (shared, client) = (Arc::clone(&shared), client.clone());
            std::thread::Builder::new()
                .name("netprobe-k8s".into())
                .spawn(move || {
                    runtime.block_on(async move {
                        tokio::select! {
                            () = watch::run(client, store, shared) => {}
                            _ = stopped => {}
                        }
                    });
                })
                .map_err(K8sError::Runtime)?
        };
        Ok(Some(Self {
            shared,
            client,
            stop: Some(stop),
            thread: Some(thread),
        }))
    }

    /// The state readers use.
    pub fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }

    /// The API client (its requests are driven by the watchers' thread, which runs until
    /// this is dropped).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }
}

impl Drop for K8s {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The API's client configuration: `k8s.kubeconfig`, else in-cluster, else `$KUBECONFIG` or
/// `~/.kube/config`; `None` when there is none.
async fn client_config(cfg: &K8sConfig) -> Result<Option<kube::Config>, K8sError> {
    let from_file = |path: &Path| {
        Kubeconfig::read_from(path).map_err(|source| K8sError::Kubeconfig {
            path: path.display().to_string(),
            source,
        })
    };
    let kubeconfig = if !cfg.kubeconfig.is_empty() {
        Some((
            cfg.kubeconfig.clone(),
            from_file(Path::new(&cfg.kubeconfig))?,
        ))
    } else if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return match kube::Config::incluster() {
            Ok(c) => Ok(Some(c)),
            Err(e) if cfg.mode == K8sMode::Cluster => Err(K8sError::InCluster(e)),
            // In a pod without a service account token (automountServiceAccountToken: false),
            // `auto` means standalone.
            Err(e) => {
                tracing::warn!(error = %e, "in-cluster Kubernetes configuration is unusable");
                Ok(None)
            }
        };
    } else {
        let env = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty());
        let home = std::env::var_os("HOME").map(|h| Path::new(&h).join(".kube/config"));
        match (env, home) {
            (Some(_), _) => Some((
                "$KUBECONFIG".to_owned(),
                Kubeconfig::read().map_err(|source| K8sError::Kubeconfig {
                    path: "$KUBECONFIG".into(),
                    source,
                })?,
            )),
            (None, Some(h)) if h.exists() => Some((h.display().to_string(), from_file(&h)?)),
            _ => None,
        }
    };
    let Some((path, kc)) = kubeconfig else {
        return Ok(None);
    };
    kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map(Some)
        .map_err(|source| K8sError::Kubeconfig { path, source })
}

/// The resource names, in [`Kind::ALL`] order (for metrics and logs).
pub fn resources() -> [&'static str; 6] {
    Kind::ALL.map(Kind::resource)
}
