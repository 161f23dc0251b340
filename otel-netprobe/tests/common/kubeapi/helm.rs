//! `helm install` / `helm uninstall` of the repository's chart into the real API server, with
//! the Helm v4 SDK (`tests/tools/chart.py`, run from the venv `make setup` installs) inside
//! the server's network namespace, as admin: the same actions the `helm` CLI runs.

use std::{path::PathBuf, process::Command};

use serde_json::Value;

use super::KubeApiServer;

/// An installed release: what its manifest holds.
#[derive(Debug)]
pub struct Release {
    /// The release name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Every object of its manifest (hooks, e.g. `helm test`'s pod, are not in it).
    pub objects: Vec<Value>,
}

impl Release {
    /// The name of the agent's ServiceAccount, ClusterRole and DaemonSet (`{release}-otel-netprobe`).
    pub fn agent_name(&self) -> String {
        format!("{}-otel-netprobe", self.name)
    }

    /// `Kind/name` of every object, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .objects
            .iter()
            .map(|o| {
                format!(
                    "{}/{}",
                    o["kind"].as_str().unwrap_or("?"),
                    o["metadata"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect();
        v.sort();
        v
    }
}

fn tools_dir() -> PathBuf {
    std::env::var_os("NETPROBE_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/otel-netprobe"),
        PathBuf::from,
    )
}

fn chart_dir() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root");
    root.join("charts/otel-netprobe").display().to_string()
}

impl KubeApiServer {
    /// Runs `chart.py ARGS` in the server's namespace; (success, its JSON answer).
    fn chart_py(&self, args: &[&str]) -> (bool, Value) {
        let python = tools_dir().join("venv/bin/python");
        assert!(
            python.is_file(),
            "{} is missing: run `make setup`",
            python.display()
        );
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tools/chart.py");
        let out = Command::new("ip")
            .args(["netns", "exec", &self.netns])
            .arg(python)
            .arg(script)
            .args(args)
            .output()
            .expect("running chart.py");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "chart.py {args:?}: {e}\nstdout: {stdout}\nstderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.success(), v)
    }

    /// `helm install RELEASE charts/otel-netprobe -n NAMESPACE --create-namespace` with
    /// `values`, as admin; `Err` carries Helm's message (the server's refusal included).
    pub fn helm_install(
        &self,
        release: &str,
        namespace: &str,
        values: &Value,
    ) -> Result<Release, String> {
        let kubeconfig = self.admin_kubeconfig().display().to_string();
        let (ok, v) = self.chart_py(&[
            "install",
            &kubeconfig,
            &chart_dir(),
            &values.to_string(),
            release,
            namespace,
        ]);
        if let Some(e) = v["error"].as_str() {
            return Err(e.to_owned());
        }
        assert!(ok, "chart.py install: {v}");
        assert_eq!(v["status"], "deployed", "{release}: {v}");
        Ok(Release {
            name: release.to_owned(),
            namespace: namespace.to_owned(),
            objects: v["objects"].as_array().cloned().unwrap_or_default(),
        })
    }

    /// `helm uninstall RELEASE -n NAMESPACE`.
    pub fn helm_uninstall(&self, release: &Release) {
        let kubeconfig = self.admin_kubeconfig().display().to_string();
        let (ok, v) = self.chart_py(&["uninstall", &kubeconfig, &release.name, &release.namespace]);
        assert!(ok, "helm uninstall {}: {v}", release.name);
    }

    /// `helm list -n NAMESPACE --all`: the release names.
    pub fn helm_releases(&self, namespace: &str) -> Vec<String> {
        let kubeconfig = self.admin_kubeconfig().display().to_string();
        let (ok, v) = self.chart_py(&["releases", &kubeconfig, namespace]);
        assert!(ok, "helm list: {v}");
        v["releases"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect()
    }

    /// A token of the release's own agent ServiceAccount (TokenRequest): the identity the
    /// DaemonSet's pods run with.
    pub fn agent_token(&self, release: &Release) -> String {
        self.token(&release.namespace, &release.agent_name())
    }
}
