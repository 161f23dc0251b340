//! `make demo`'s Kubernetes control plane: the real `kube-apiserver` and `etcd` that `make setup`
//! builds, started on loopback in the demo's node namespace by the test suite's own harness
//! (`tests/common/kubeapi/`, included through `#[path]`: the certificates, flags, readiness
//! check, object builders and `helm install` are the tests' and the bench's, written once).
//! Not shipped; `scripts/demo.sh` runs it.
//!
//! ```text
//! demo-cluster --netns NODE_NAMESPACE --lab lab.yaml --kubeconfig out/kubeconfig
//! ```
//!
//! It makes the lab of `lab.yaml` real API objects as a cluster would have them (the
//! controllers' and kubelets' parts written by hand, as in the tests): Namespaces with their
//! `default` ServiceAccount, Nodes, Deployments → ReplicaSets → Pods and StatefulSets → Pods
//! (bound to their node, their addresses written through the status subresource), Services
//! with the ClusterIP asked for and their EndpointSlices. It installs the chart (`helm install
//! netprobe charts/otel-netprobe -n otel-netprobe`, the Helm v4 SDK) and writes a kubeconfig
//! with a token of the chart's own ServiceAccount (TokenRequest), so that the demo's agent
//! names its lab with exactly the permissions a cluster install gives it. The kubeconfig is
//! written last: once it exists, everything is in place. Then it runs until SIGTERM or SIGINT,
//! and stops kube-apiserver and etcd and removes their data (under `$TMPDIR`).

mod common;
mod lab;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use common::kubeapi::{Credentials, KubeApiServer, Options};
use serde_json::json;

/// The release and namespace of the chart's install, as the README's install command names them.
const RELEASE: &str = "netprobe";
const RELEASE_NAMESPACE: &str = "otel-netprobe";

struct Args {
    netns: String,
    lab: PathBuf,
    kubeconfig: PathBuf,
}

fn args() -> anyhow::Result<Args> {
    let (mut netns, mut lab, mut kubeconfig) = (None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--netns" => netns = Some(value()?),
            "--lab" => lab = Some(PathBuf::from(value()?)),
            "--kubeconfig" => kubeconfig = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let (Some(netns), Some(lab), Some(kubeconfig)) = (netns, lab, kubeconfig) else {
        bail!("usage: demo-cluster --netns NAMESPACE --lab LAB.yaml --kubeconfig PATH");
    };
    Ok(Args {
        netns,
        lab,
        kubeconfig,
    })
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let lab = lab::Lab::read(&args.lab)?;
    // Registered first: a signal during the start is acted on once the start is over.
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for the signal handlers")?;
    let (mut term, mut int) = signals.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        Ok::<_, std::io::Error>((
            signal(SignalKind::terminate())?,
            signal(SignalKind::interrupt())?,
        ))
    })?;

    // The demo's data is thrown away: no fsync, and no audit log.
    let options = Options {
        fsync: false,
        audit: false,
    };
    let api = KubeApiServer::start_in_netns(&args.netns, options);
    let version = api
        .admin(|c| async move { c.apiserver_version().await })
        .context("the API server's /version")?;
    println!(
        "kube-apiserver {} and etcd ready in {} (https://127.0.0.1:{} in {})",
        version.git_version,
        secs(api.start_time),
        common::kubeapi::PORT,
        args.netns
    );

    // The lab's objects and the chart's install at once: neither needs the other.
    let (objects, objects_time, installed) = std::thread::scope(|s| {
        let install = s.spawn(|| {
            let t = Instant::now();
            let r = api.helm_install(RELEASE, RELEASE_NAMESPACE, &json!({}));
            (r, t.elapsed())
        });
        let t = Instant::now();
        let objects = lab.apply(&api);
        (objects, t.elapsed(), install.join())
    });
    let (release, install_time) = match installed {
        Ok((r, t)) => (r.map_err(|e| anyhow::anyhow!("helm install: {e}"))?, t),
        Err(panic) => std::panic::resume_unwind(panic),
    };
    println!("{objects} lab objects made in {}", secs(objects_time));
    println!(
        "helm install {RELEASE} charts/otel-netprobe -n {RELEASE_NAMESPACE}: deployed, {} objects, in {}",
        release.objects.len(),
        secs(install_time)
    );
    let account = release.agent_name();
    // Written aside and renamed: whoever waits for the file never reads half of it.
    let partial = args.kubeconfig.with_extension("partial");
    api.write_kubeconfig(&partial, &Credentials::Token(api.agent_token(&release)));
    std::fs::rename(&partial, &args.kubeconfig)
        .with_context(|| format!("renaming {} into place", partial.display()))?;
    println!(
        "kubeconfig for ServiceAccount {RELEASE_NAMESPACE}/{account} (TokenRequest): {}",
        args.kubeconfig.display()
    );

    signals.block_on(async {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    });
    drop(api);
    Ok(())
}
