//! The requests the tests make of the real API server, as admin: server-side apply (the
//! list/watch test server's `apply`), status writes through the status subresource, deletion
//! (immediate, or graceful as `kubectl delete`), lists (typed, or of any kind by discovery),
//! TokenRequest, and the audit log.

use kube::{
    Api,
    api::{DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    core::{ApiResource, Status},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Value, json};

use super::KubeApiServer;

/// The field manager of the tests' server-side applies.
const MANAGER: &str = "netprobe-test";

impl KubeApiServer {
    /// Creates or updates `obj` by server-side apply (as `kubectl apply --server-side`), as
    /// admin; returns the object as the server stored it (uid, defaults, allocated ClusterIPs).
    pub fn apply<K>(&self, obj: &K) -> K
    where
        K: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let body = serde_json::to_value(obj).expect("objects serialize");
        let (api, name) = self.dynamic::<K>(&body);
        let stored = self
            .admin(|_| async move {
                api.patch(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await
            })
            .unwrap_or_else(|e| panic!("applying {}: {e}", describe::<K>(obj)));
        from_dynamic(stored)
    }

    /// Writes `obj`'s status through the status subresource (as a kubelet or a controller
    /// would), by server-side apply; returns the stored object.
    pub fn apply_status<K>(&self, obj: &K) -> K
    where
        K: kube::Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let full = serde_json::to_value(obj).expect("objects serialize");
        let meta = &full["metadata"];
        let body = json!({
            "apiVersion": full["apiVersion"], "kind": full["kind"],
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "status": full["status"],
        });
        let (api, name) = self.dynamic::<K>(&full);
        let stored = self
            .admin(|_| async move {
                api.patch_status(
                    &name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(body),
                )
                .await
            })
            .unwrap_or_else(|e| panic!("writing the status of {}: {e}", describe::<K>(obj)));
        from_dynamic(stored)
    }

    /// Merges `status` into the object's status through the status subresource (a JSON merge
    /// patch: the fields it does not name stay as they are).
    pub fn merge_status<K>(&self, namespace: Option<&str>, name: &str, status: &Value) -> K
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let api = self.dynamic_api::<K>(namespace);
        let (name, what) = (name.to_owned(), format!("{}/{name}", K::kind(&())));
        let patch = json!({ "status": status });
        let stored = self
            .admin(|_| async move {
                api.patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
            })
            .unwrap_or_else(|e| panic!("patching the status of {what}: {e}"));
        from_dynamic(stored)
    }

    /// Deletes the object at once (grace period 0: there is no kubelet to finish a graceful
    /// deletion); `false` when there was none.
    pub fn delete<K>(&self, namespace: Option<&str>, name: &str) -> bool
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.delete_with::<K>(namespace, name, &DeleteParams::default().grace_period(0))
    }

    /// Deletes the object as `kubectl delete` does: a pod on a node is then only marked
    /// (`deletionTimestamp`) until its kubelet confirms, which here never happens.
    pub fn delete_gracefully<K>(&self, namespace: Option<&str>, name: &str) -> bool
    where
        K: kube::Resource<DynamicType = ()>,
    {
        self.delete_with::<K>(namespace, name, &DeleteParams::default())
    }

    fn delete_with<K>(&self, namespace: Option<&str>, name: &str, dp: &DeleteParams) -> bool
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let api = self.dynamic_api::<K>(namespace);
        let (name, dp) = (name.to_owned(), dp.clone());
        let what = format!("{}/{name}", K::kind(&()));
        match self.admin(|_| async move { api.delete(&name, &dp).await }) {
            Ok(_) => true,
            Err(kube::Error::Api(e)) if e.code == 404 => false,
            Err(e) => panic!("deleting {what}: {e}"),
        }
    }

    /// Every object of `K` (in `namespace`, or everywhere).
    pub fn list<K>(&self, namespace: Option<&str>) -> Vec<K>
    where
        K: kube::Resource<DynamicType = ()> + DeserializeOwned,
    {
        let api = self.dynamic_api::<K>(namespace);
        let list = self
            .admin(|_| async move { api.list(&ListParams::default()).await })
            .unwrap_or_else(|e| panic!("listing {}: {e}", K::plural(&())));
        list.items.into_iter().map(from_dynamic).collect()
    }

    /// The object `name` of kind `K` in `namespace`, as the server stores it (what a kubelet or
    /// a test's stand-in for it would run).
    pub fn stored<K>(&self, namespace: &str, name: &str) -> serde_json::Value
    where
        K: kube::Resource<DynamicType = ()> + serde::Serialize + DeserializeOwned,
    {
        let found = self
            .list::<K>(Some(namespace))
            .into_iter()
            .find(|o| o.meta().name.as_deref() == Some(name))
            .unwrap_or_else(|| {
                panic!(
                    "{} {namespace}/{name} is not in the API server",
                    K::kind(&())
                )
            });
        serde_json::to_value(found).expect("JSON")
    }

    /// The names of the objects of `api_version`/`kind` (any type the server serves, found
    /// by discovery) that carry the labels `selector`, in `namespace` if the kind is
    /// namespaced, sorted.
    pub fn names_of(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        selector: &str,
    ) -> Vec<String> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = kube::core::GroupVersionKind::gvk(group, version, kind);
        let (ns, selector) = (namespace.to_owned(), selector.to_owned());
        let what = format!("{api_version} {kind}");
        let names = self.admin(|c| async move {
            let (ar, caps) = kube::discovery::pinned_kind(&c, &gvk).await?;
            let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
                Api::namespaced_with(c, &ns, &ar)
            } else {
                Api::all_with(c, &ar)
            };
            let list = api.list(&ListParams::default().labels(&selector)).await?;
            Ok::<_, kube::Error>(
                list.items
                    .into_iter()
                    .filter_map(|o| o.metadata.name)
                    .collect::<Vec<_>>(),
            )
        });
        let mut names = names.unwrap_or_else(|e| panic!("listing {what}: {e}"));
        names.sort();
        names
    }

    /// A bearer token of ServiceAccount `namespace/name`, from the TokenRequest API (what the
    /// kubelet mounts into the pods that use it), valid for an hour.
    pub fn token(&self, namespace: &str, name: &str) -> String {
        use k8s_openapi::api::{
            authentication::v1::{TokenRequest, TokenRequestSpec},
            core::v1::ServiceAccount,
        };
        let (ns, name) = (namespace.to_owned(), name.to_owned());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let what = format!("{ns}/{name}");
        let answer = self.admin(|c| async move {
            Api::<ServiceAccount>::namespaced(c, &ns)
                .create_token_request(&name, &PostParams::default(), &request)
                .await
        });
        let answer = answer.unwrap_or_else(|e| panic!("TokenRequest for {what}: {e}"));
        answer.status.expect("a TokenRequest's status").token
    }

    /// The audit log so far: one JSON event per request (user, verb, resource, code).
    pub fn audit_events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn dynamic_api<K: kube::Resource<DynamicType = ()>>(
        &self,
        namespace: Option<&str>,
    ) -> Api<DynamicObject> {
        let ar = ApiResource::erase::<K>(&());
        match namespace {
            Some(ns) => Api::namespaced_with(self.admin.clone(), ns, &ar),
            None => Api::all_with(self.admin.clone(), &ar),
        }
    }

    fn dynamic<K: kube::Resource<DynamicType = ()>>(
        &self,
        body: &Value,
    ) -> (Api<DynamicObject>, String) {
        let meta = &body["metadata"];
        let name = meta["name"].as_str().expect("metadata.name").to_owned();
        (self.dynamic_api::<K>(meta["namespace"].as_str()), name)
    }
}

/// `Kind namespace/name` of an object, for messages.
fn describe<K: kube::Resource<DynamicType = ()>>(obj: &K) -> String {
    let m = obj.meta();
    format!(
        "{} {}/{}",
        K::kind(&()),
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default()
    )
}

fn from_dynamic<K: DeserializeOwned>(o: DynamicObject) -> K {
    serde_json::from_value(serde_json::to_value(o).expect("JSON")).expect("a typed object")
}

/// The API's refusal as the server sent it (code, reason, message), if `e` is one.
pub fn refusal(e: &kube::Error) -> Option<&Status> {
    match e {
        kube::Error::Api(r) => Some(r),
        _ => None,
    }
}
