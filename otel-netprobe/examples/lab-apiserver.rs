//! `make demo`'s Kubernetes API: the test suite's list/watch server (`tests/common/apiserver`),
//! serving objects from a JSON file, so the demo's agent names its lab pods as it would in a
//! cluster. Not shipped: it exists because no API server can be installed on these machines.
//!
//! ```text
//! lab-apiserver --listen 127.0.0.1:6443 --objects objects.json --kubeconfig out/kubeconfig
//! ```
//!
//! `objects.json` is a JSON array of Kubernetes objects (Node, Pod, Service, EndpointSlice,
//! ReplicaSet, Job), each with `apiVersion` and `kind`. The server runs until it is killed
//! (SIGTERM, SIGINT).

#[allow(dead_code, reason = "the demo uses only part of the test server's API")]
#[path = "../tests/common/apiserver/mod.rs"]
mod apiserver;

use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context as _, bail};
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    batch::v1::Job,
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use serde_json::Value;

fn apply<K>(api: &apiserver::FakeApiServer, object: Value) -> anyhow::Result<()>
where
    K: kube::Resource<DynamicType = ()> + serde::Serialize + serde::de::DeserializeOwned,
{
    let typed: K = serde_json::from_value(object).context("not a valid object of its kind")?;
    api.apply(&typed);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut listen: Option<SocketAddr> = None;
    let (mut objects, mut kubeconfig) = (None::<PathBuf>, None::<PathBuf>);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--listen" => listen = Some(value()?.parse().context("--listen")?),
            "--objects" => objects = Some(value()?.into()),
            "--kubeconfig" => kubeconfig = Some(value()?.into()),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let (Some(listen), Some(objects), Some(kubeconfig)) = (listen, objects, kubeconfig) else {
        bail!("usage: lab-apiserver --listen ADDR --objects FILE.json --kubeconfig PATH");
    };
    let text = std::fs::read_to_string(&objects)
        .with_context(|| format!("reading {}", objects.display()))?;
    let list: Vec<Value> = serde_json::from_str(&text).context("objects: a JSON array")?;
    let api = apiserver::FakeApiServer::start(move || {
        std::net::TcpListener::bind(listen).expect("binding --listen")
    });
    for (n, o) in list.into_iter().enumerate() {
        let kind = o["kind"].as_str().unwrap_or_default().to_owned();
        let r = match kind.as_str() {
            "Node" => apply::<Node>(&api, o),
            "Pod" => apply::<Pod>(&api, o),
            "Service" => apply::<Service>(&api, o),
            "EndpointSlice" => apply::<EndpointSlice>(&api, o),
            "ReplicaSet" => apply::<ReplicaSet>(&api, o),
            "Job" => apply::<Job>(&api, o),
            _ => bail!("object {n}: unsupported kind {kind:?}"),
        };
        r.with_context(|| format!("object {n} ({kind})"))?;
    }
    api.write_kubeconfig(&kubeconfig);
    println!(
        "lab-apiserver: serving {} on {}",
        objects.display(),
        api.url()
    );
    // Until a signal ends the process.
    loop {
        std::thread::park();
    }
}
