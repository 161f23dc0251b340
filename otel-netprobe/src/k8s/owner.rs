//! At SIGTERM in a cluster: a rollout (the agent's DaemonSet stays, so the next pod adopts the
//! pinned state) or an uninstall (the DaemonSet is gone or being deleted, so nothing may stay)?
//! Read from the API server with the chart's read-only RBAC: the agent's own Pod (`POD_NAME`,
//! `POD_NAMESPACE` from the downward API), its controller ownerReference, and that DaemonSet.
//! Used by the agent's shutdown only; it touches nothing but the API.

use std::{fmt, time::Duration};

use k8s_openapi::api::{apps::v1::DaemonSet, core::v1::Pod};
use kube::{Api, Client};

/// How long the API server gets to answer at SIGTERM (the chart's
/// `terminationGracePeriodSeconds` covers it and the final export).
pub const DEADLINE: Duration = Duration::from_secs(2);

/// The agent's own Pod, as the downward API names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodRef {
    /// `POD_NAMESPACE`.
    pub namespace: String,
    /// `POD_NAME`.
    pub name: String,
}

impl PodRef {
    /// From `POD_NAMESPACE` and `POD_NAME` as `get` reads them; `None` unless both are set.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let non_empty = |k: &str| get(k).filter(|v| !v.is_empty());
        Some(Self {
            namespace: non_empty("POD_NAMESPACE")?,
            name: non_empty("POD_NAME")?,
        })
    }
}

/// What the API server said about the agent's DaemonSet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Owner {
    /// It exists, is the object the pod names (same uid) and is not being deleted: a rollout,
    /// or a pod deleted or evicted that the DaemonSet replaces.
    Stays {
        /// `namespace/name`.
        daemonset: String,
    },
    /// 404: deleted (`helm uninstall` deletes it before the pods get their SIGTERM).
    Gone {
        /// `namespace/name`.
        daemonset: String,
    },
    /// It has a deletionTimestamp (a foreground deletion, or finalizers hold it).
    Deleting {
        /// `namespace/name`.
        daemonset: String,
    },
    /// A DaemonSet of that name exists, but not the pod's (another uid: deleted and made again).
    Replaced {
        /// `namespace/name`.
        daemonset: String,
    },
    /// The pod has no DaemonSet as its controller (run by hand, or by another controller).
    NotADaemonSet,
    /// The pod itself is gone (404), so its owner cannot be named.
    PodGone,
    /// `POD_NAME` / `POD_NAMESPACE` are not set: the agent cannot name its pod.
    Unnamed,
    /// The server refused the question (401: e.g. the ServiceAccount the uninstall deleted;
    /// 403: the RBAC binding is gone or does not grant it).
    Refused {
        /// What was asked, e.g. `get daemonsets.apps netprobe/np-otel-netprobe`.
        asked: String,
        /// The HTTP status.
        code: u16,
        /// The server's message.
        message: String,
    },
    /// No verdict within [`DEADLINE`]: no connection, a timeout, or a server error (5xx, 429).
    Unanswered {
        /// What happened.
        why: String,
    },
}

impl Owner {
    /// Whether a SIGTERM keeps the pinned state: when the DaemonSet stays, and when the API
    /// gave no verdict. An uninstall's SIGTERM reaches the pod through the API server (Helm
    /// deletes, the garbage collector deletes the pods, the kubelet stops them), so a server
    /// that does not answer points at a stop that started on the node (a liveness restart, an
    /// eviction, a node shutdown), after which the DaemonSet's next pod adopts the state.
    /// Keeping wrongly leaves programs that pass every packet until `otel-netprobe cleanup`
    /// or a reboot; removing wrongly loses every count of a rollout.
    pub fn keeps(&self) -> bool {
        matches!(self, Self::Stays { .. } | Self::Unanswered { .. })
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stays { daemonset } => {
                write!(
                    f,
                    "DaemonSet {daemonset} stays (a rollout or a pod restart)"
                )
            }
            Self::Gone { daemonset } => write!(f, "DaemonSet {daemonset} is gone (404)"),
            Self::Deleting { daemonset } => {
                write!(f, "DaemonSet {daemonset} is being deleted")
            }
            Self::Replaced { daemonset } => write!(
                f,
                "DaemonSet {daemonset} is not the pod's owner any more (another uid)"
            ),
            Self::NotADaemonSet => f.write_str("the pod is not owned by a DaemonSet"),
            Self::PodGone => f.write_str("the agent's own pod is gone (404)"),
            Self::Unnamed => f.write_str("POD_NAME and POD_NAMESPACE are not set"),
            Self::Refused {
                asked,
                code,
                message,
            } => write!(f, "the API server refused `{asked}` ({code}: {message})"),
            Self::Unanswered { why } => write!(
                f,
                "the API server gave no answer within {DEADLINE:?} ({why}); after an uninstall \
                 during an API outage, run `otel-netprobe cleanup` on the node"
            ),
        }
    }
}

/// Asks the API server, within [`DEADLINE`], about the DaemonSet that owns `pod`.
pub async fn ask(client: Client, pod: Option<&PodRef>) -> Owner {
    let Some(pod) = pod else {
        return Owner::Unnamed;
    };
    tokio::time::timeout(DEADLINE, ask_unbounded(client, pod))
        .await
        .unwrap_or_else(|_| Owner::Unanswered {
            why: "timed out".into(),
        })
}

async fn ask_unbounded(client: Client, pod: &PodRef) -> Owner {
    let ns = &pod.namespace;
    let asked = format!("get pods {ns}/{}", pod.name);
    let p = match Api::<Pod>::namespaced(client.clone(), ns)
        .get(&pod.name)
        .await
    {
        Ok(p) => p,
        Err(e) => return verdict(&e, asked, Owner::PodGone),
    };
    let Some(owner) = p
        .metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| o.controller == Some(true) && o.kind == "DaemonSet")
    else {
        return Owner::NotADaemonSet;
    };
    let daemonset = format!("{ns}/{}", owner.name);
    let asked = format!("get daemonsets.apps {daemonset}");
    match Api::<DaemonSet>::namespaced(client, ns)
        .get(&owner.name)
        .await
    {
        Ok(d) if d.metadata.uid.as_deref() != Some(owner.uid.as_str()) => {
            Owner::Replaced { daemonset }
        }
        Ok(d) if d.metadata.deletion_timestamp.is_some() => Owner::Deleting { daemonset },
        Ok(_) => Owner::Stays { daemonset },
        Err(e) => verdict(&e, asked, Owner::Gone { daemonset }),
    }
}

/// A failed request: `not_found` on 404, [`Owner::Refused`] on 401/403, else no verdict.
fn verdict(e: &kube::Error, asked: String, not_found: Owner) -> Owner {
    match e {
        kube::Error::Api(s) if s.code == 404 => not_found,
        kube::Error::Api(s) if s.code == 401 || s.code == 403 => Owner::Refused {
            asked,
            code: s.code,
            message: s.message.clone(),
        },
        other => Owner::Unanswered {
            why: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pod_is_named_by_both_variables() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            PodRef::from_env(env(&[("POD_NAME", "np-x1"), ("POD_NAMESPACE", "netprobe")])),
            Some(PodRef {
                namespace: "netprobe".into(),
                name: "np-x1".into()
            })
        );
        assert_eq!(PodRef::from_env(env(&[("POD_NAME", "np-x1")])), None);
        assert_eq!(
            PodRef::from_env(env(&[("POD_NAME", ""), ("POD_NAMESPACE", "netprobe")])),
            None
        );
    }

    #[test]
    fn only_a_daemonset_that_stays_or_no_answer_keeps() {
        let ds = || "netprobe/np-otel-netprobe".to_owned();
        let keeps = [
            Owner::Stays { daemonset: ds() },
            Owner::Unanswered { why: "x".into() },
        ];
        let removes = [
            Owner::Gone { daemonset: ds() },
            Owner::Deleting { daemonset: ds() },
            Owner::Replaced { daemonset: ds() },
            Owner::NotADaemonSet,
            Owner::PodGone,
            Owner::Unnamed,
            Owner::Refused {
                asked: "get".into(),
                code: 401,
                message: "Unauthorized".into(),
            },
        ];
        assert!(keeps.iter().all(Owner::keeps));
        assert!(!removes.iter().any(Owner::keeps));
    }
}
