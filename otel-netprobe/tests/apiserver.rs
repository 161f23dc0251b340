//! The fake API server (tests/common/apiserver.rs) against the real kube-rs client and
//! `kube::runtime::watcher`: list then watch, bookmarks, re-lists after 410, resumes after a
//! dropped connection, outages, streaming lists, list queries, and the kinds the agent reads.

mod common;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    pin::Pin,
    time::Duration,
};

use common::apiserver::FakeApiServer;
use futures::{Stream, StreamExt};
use k8s_openapi::api::{
    apps::v1::ReplicaSet,
    core::v1::{Node, Pod, Service},
    discovery::v1::EndpointSlice,
};
use kube::{
    Api, Client, Config, ResourceExt,
    api::{ApiResource, DynamicObject, ListParams},
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{
        WatchStreamExt,
        watcher::{self, Event},
    },
};
use serde_json::json;

/// Generous: kube's default backoff waits up to several seconds between retries.
const DEADLINE: Duration = Duration::from_secs(60);

type Events = Pin<Box<dyn Stream<Item = Result<Event<Pod>, watcher::Error>> + Send>>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// A client configured from the kubeconfig the server writes.
async fn client(server: &FakeApiServer) -> Client {
    let path =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("kubeconfig-{}", server.addr().port()));
    server.write_kubeconfig(&path);
    let kubeconfig = Kubeconfig::read_from(&path).expect("reading the kubeconfig");
    let options = KubeConfigOptions::default();
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("a config from the kubeconfig");
    Client::try_from(config).expect("a client")
}

fn pod(namespace: &str, name: &str, ip: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": { "namespace": namespace, "name": name, "labels": { "app": name } },
        "spec": { "nodeName": "node-1", "containers": [{ "name": "c", "image": "busybox" }] },
        "status": { "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }] },
    }))
    .expect("a pod")
}

fn ip(pod: &Pod) -> &str {
    let status = pod.status.as_ref().expect("a pod status");
    status.pod_ip.as_deref().expect("a pod IP")
}

fn pods(client: Client, config: watcher::Config) -> Events {
    watcher::watcher(Api::<Pod>::all(client), config)
        .default_backoff()
        .boxed()
}

/// The next item of the watcher.
async fn next(events: &mut Events) -> Result<Event<Pod>, watcher::Error> {
    tokio::time::timeout(DEADLINE, events.next())
        .await
        .expect("no watch event before the deadline")
        .expect("watchers never end")
}

/// The next `n` items, which must not be errors.
async fn take(events: &mut Events, n: usize) -> Vec<Event<Pod>> {
    let mut taken = Vec::new();
    for _ in 0..n {
        taken.push(
            next(events)
                .await
                .unwrap_or_else(|e| panic!("watch error: {e}")),
        );
    }
    taken
}

/// Events as `Init`, `InitApply(name)`, `Apply(name)`, ...
fn names(events: &[Event<Pod>]) -> Vec<String> {
    events.iter().map(ToString::to_string).collect()
}

fn applied(event: Event<Pod>) -> Pod {
    match event {
        Event::Apply(pod) => pod,
        other => panic!("expected Apply, got {other}"),
    }
}

/// Polls the watcher, which must stay quiet, until `done` holds.
async fn quiet_until(events: &mut Events, what: &str, done: impl Fn() -> bool) {
    let wait = async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::select! {
        item = events.next() => panic!("the watcher yielded {item:?} while waiting for {what}"),
        waited = tokio::time::timeout(DEADLINE, wait) => waited.unwrap_or_else(|_| panic!("timed out waiting for {what}")),
    }
}

/// Pods `a` and `b` exist, a watcher has listed them (exactly Init, InitApply ×2, InitDone)
/// and its watch is open.
async fn two_pods_listed_and_watched(server: &FakeApiServer) -> Events {
    server.apply(&pod("default", "a", "10.244.0.11"));
    server.apply(&pod("default", "b", "10.244.0.12"));
    let mut events = pods(client(server).await, watcher::Config::default());
    let init = take(&mut events, 4).await;
    assert_eq!(
        names(&init),
        ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]
    );
    quiet_until(&mut events, "the watch", || server.watches("pods") == 1).await;
    events
}

#[test]
fn list_then_watch_lifecycle() {
    let server = FakeApiServer::start_local();
    server.apply(&pod("default", "a", "10.244.0.11"));
    server.apply(&pod("default", "b", "10.244.0.12"));
    server.apply(&pod("kube-system", "c", "10.244.0.13"));
    runtime().block_on(async {
        // Pages of two: the initial list takes two requests.
        let mut events = pods(
            client(&server).await,
            watcher::Config::default().page_size(2),
        );
        let init = take(&mut events, 5).await;
        let expected = [
            "Init",
            "InitApply(a)",
            "InitApply(b)",
            "InitApply(c)",
            "InitDone",
        ];
        assert_eq!(names(&init), expected);
        let ips: Vec<&str> = init[1..4]
            .iter()
            .map(|e| match e {
                Event::InitApply(pod) => ip(pod),
                other => panic!("expected InitApply, got {other}"),
            })
            .collect();
        assert_eq!(ips, ["10.244.0.11", "10.244.0.12", "10.244.0.13"]);
        assert_eq!(server.lists("pods"), 2);

        server.apply(&pod("default", "d", "10.244.0.14"));
        let added = applied(next(&mut events).await.expect("an event"));
        assert_eq!((added.name_any(), ip(&added)), ("d".into(), "10.244.0.14"));
        let uid = added.uid().expect("a uid");
        assert!(added.creation_timestamp().is_some());

        let rv = server.apply(&pod("default", "d", "10.244.0.15"));
        let modified = applied(next(&mut events).await.expect("an event"));
        assert_eq!(
            (modified.name_any(), ip(&modified)),
            ("d".into(), "10.244.0.15")
        );
        assert_eq!(modified.uid(), Some(uid.clone()), "updates keep the uid");
        assert_eq!(modified.resource_version(), Some(rv));

        server.delete::<Pod>(Some("default"), "d");
        match next(&mut events).await.expect("an event") {
            Event::Delete(pod) => {
                assert_eq!((pod.name_any(), ip(&pod)), ("d".into(), "10.244.0.15"));
                assert_eq!(pod.uid(), Some(uid));
            }
            other => panic!("expected Delete, got {other}"),
        }
        assert_eq!((server.lists("pods"), server.watches("pods")), (2, 1));
    });
}

#[test]
fn bookmarks_keep_an_idle_watch_healthy_across_watch_timeouts() {
    let server = FakeApiServer::start_local();
    server.apply(&pod("default", "a", "10.244.0.11"));
    runtime().block_on(async {
        // The server ends each watch after 2 s; the watcher resumes from its last bookmark.
        let mut events = pods(client(&server).await, watcher::Config::default().timeout(2));
        assert_eq!(
            names(&take(&mut events, 3).await),
            ["Init", "InitApply(a)", "InitDone"]
        );
        quiet_until(&mut events, "3 bookmarks and a second watch", || {
            server.bookmarks() >= 3 && server.watches("pods") >= 2
        })
        .await;
        assert_eq!(
            server.lists("pods"),
            1,
            "resuming from a bookmark needs no re-list"
        );

        server.apply(&pod("default", "b", "10.244.0.12"));
        assert_eq!(
            applied(next(&mut events).await.expect("an event")).name_any(),
            "b"
        );
        assert_eq!(server.lists("pods"), 1);
    });
}

#[test]
fn compacted_history_makes_the_watcher_relist() {
    let server = FakeApiServer::start_local();
    runtime().block_on(async {
        let mut events = two_pods_listed_and_watched(&server).await;

        server.compact();
        server.drop_watches();
        match next(&mut events).await {
            Err(watcher::Error::WatchError(status)) => {
                assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            }
            other => panic!("expected a 410 watch error, got {other:?}"),
        }
        // Applied before the watcher's next poll, which is the one that re-lists.
        server.apply(&pod("default", "e", "10.244.0.15"));
        let relist = take(&mut events, 5).await;
        let expected = [
            "Init",
            "InitApply(a)",
            "InitApply(b)",
            "InitApply(e)",
            "InitDone",
        ];
        assert_eq!(names(&relist), expected);
        assert_eq!(server.lists("pods"), 2);
    });
}

#[test]
fn dropped_watch_resumes_without_relisting() {
    let server = FakeApiServer::start_local();
    server.apply(&pod("default", "a", "10.244.0.11"));
    runtime().block_on(async {
        let mut events = pods(client(&server).await, watcher::Config::default());
        assert_eq!(
            names(&take(&mut events, 3).await),
            ["Init", "InitApply(a)", "InitDone"]
        );
        quiet_until(&mut events, "the watch", || server.watches("pods") == 1).await;

        server.drop_watches();
        server.apply(&pod("default", "b", "10.244.0.12"));
        let added = applied(next(&mut events).await.expect("an event"));
        assert_eq!((added.name_any(), ip(&added)), ("b".into(), "10.244.0.12"));
        assert_eq!((server.lists("pods"), server.watches("pods")), (1, 2));
    });
}

#[test]
fn watcher_recovers_from_an_outage() {
    let server = FakeApiServer::start_local();
    runtime().block_on(async {
        let mut events = two_pods_listed_and_watched(&server).await;

        server.outage();
        let refused = std::net::TcpStream::connect(server.addr()).map(|_| ());
        let refused = refused.expect_err("connecting during the outage");
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
        server.delete::<Pod>(Some("default"), "a");
        server.apply(&pod("default", "c", "10.244.0.13"));
        match next(&mut events).await {
            Err(watcher::Error::WatchStartFailed(_)) => {}
            other => panic!("expected the watch to fail to start, got {other:?}"),
        }

        server.recover();
        let first = loop {
            match next(&mut events).await {
                Ok(event) => break event,
                Err(watcher::Error::WatchStartFailed(_)) => {} // retries before the recovery
                Err(e) => panic!("unexpected watch error: {e}"),
            }
        };
        let second = take(&mut events, 1).await.remove(0);
        assert_eq!(names(&[first, second]), ["Delete(a)", "Apply(c)"]);
        assert_eq!(
            server.lists("pods"),
            1,
            "the history still covers the outage"
        );
    });
}

#[test]
fn streaming_list_initial_events() {
    let server = FakeApiServer::start_local();
    server.apply(&pod("default", "a", "10.244.0.11"));
    server.apply(&pod("default", "b", "10.244.0.12"));
    runtime().block_on(async {
        let config = watcher::Config::default().streaming_lists();
        let mut events = pods(client(&server).await, config);
        let init = take(&mut events, 4).await;
        assert_eq!(
            names(&init),
            ["Init", "InitApply(a)", "InitApply(b)", "InitDone"]
        );
        server.apply(&pod("default", "c", "10.244.0.13"));
        assert_eq!(
            applied(next(&mut events).await.expect("an event")).name_any(),
            "c"
        );
        assert_eq!((server.lists("pods"), server.watches("pods")), (0, 1));
    });
}

#[test]
fn list_pages_selectors_get_and_not_found() {
    let server = FakeApiServer::start_local();
    for i in 0..5 {
        server.apply(&pod(
            "default",
            &format!("p{i}"),
            &format!("10.244.0.{}", 20 + i),
        ));
    }
    let mut elsewhere = pod("other", "q", "10.244.1.20");
    elsewhere.spec.as_mut().expect("a spec").node_name = Some("node-2".into());
    server.apply(&elsewhere);
    runtime().block_on(async {
        let client = client(&server).await;
        let default: Api<Pod> = Api::namespaced(client.clone(), "default");
        let page = |token: Option<String>| {
            let lp = ListParams::default().limit(2);
            let lp = match &token {
                Some(token) => lp.continue_token(token),
                None => lp,
            };
            let default = default.clone();
            async move { default.list(&lp).await.expect("a page") }
        };
        let first = page(None).await;
        assert_eq!(first.types.kind, "PodList");
        // Later pages come from the snapshot of the first, like etcd's.
        server.apply(&pod("default", "p5", "10.244.0.25"));
        let second = page(first.metadata.continue_.clone()).await;
        let third = page(second.metadata.continue_.clone()).await;
        let pages: Vec<Vec<String>> = [&first, &second, &third]
            .iter()
            .map(|p| p.items.iter().map(ResourceExt::name_any).collect())
            .collect();
        assert_eq!(pages, [vec!["p0", "p1"], vec!["p2", "p3"], vec!["p4"]]);
        assert_eq!(third.metadata.continue_, None);
        assert_eq!(
            first.metadata.resource_version,
            third.metadata.resource_version
        );
        assert_eq!(server.lists("pods"), 3);

        let all: Api<Pod> = Api::all(client.clone());
        let select = |lp: ListParams| {
            let all = all.clone();
            async move {
                let list = all.list(&lp).await.expect("a list");
                list.items
                    .iter()
                    .map(ResourceExt::name_any)
                    .collect::<Vec<_>>()
            }
        };
        assert_eq!(
            select(ListParams::default()).await,
            ["p0", "p1", "p2", "p3", "p4", "p5", "q"]
        );
        assert_eq!(select(ListParams::default().labels("app=p1")).await, ["p1"]);
        assert_eq!(
            select(ListParams::default().labels("app!=p1,app!=q")).await,
            ["p0", "p2", "p3", "p4", "p5"]
        );
        assert_eq!(
            select(ListParams::default().fields("spec.nodeName=node-2")).await,
            ["q"]
        );
        assert_eq!(
            select(ListParams::default().fields("metadata.namespace!=default")).await,
            ["q"]
        );

        assert_eq!(ip(&default.get("p1").await.expect("p1")), "10.244.0.21");
        let not_found = |result: Result<_, kube::Error>| match result {
            Err(kube::Error::Api(status)) => (status.code, status.reason),
            Ok(()) => panic!("found something that does not exist"),
            Err(e) => panic!("unexpected error: {e}"),
        };
        let missing = default.get("q").await.map(|_| ());
        assert_eq!(not_found(missing), (404, "NotFound".into()));
        let widgets = ApiResource {
            group: "example.com".into(),
            version: "v1".into(),
            api_version: "example.com/v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        let widgets: Api<DynamicObject> = Api::all_with(client, &widgets);
        let unknown = widgets.list(&ListParams::default()).await.map(|_| ());
        assert_eq!(not_found(unknown), (404, "NotFound".into()));
    });
}

#[test]
fn kinds_round_trip_through_the_client() {
    let server = FakeApiServer::start_local();
    let service: Service = serde_json::from_value(json!({
        "metadata": { "namespace": "default", "name": "web" },
        "spec": {
            "type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::a"],
            "ipFamilies": ["IPv4", "IPv6"], "selector": { "app": "web" },
            "ports": [{ "name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080 }],
        },
    }))
    .expect("a service");
    let slice: EndpointSlice = serde_json::from_value(json!({
        "metadata": { "namespace": "default", "name": "web-x7k2p",
                      "labels": { "kubernetes.io/service-name": "web" } },
        "addressType": "IPv4",
        "endpoints": [{ "addresses": ["10.244.0.11"], "conditions": { "ready": true }, "nodeName": "node-1",
                        "targetRef": { "kind": "Pod", "namespace": "default", "name": "web-5d8f-abcde" } }],
        "ports": [{ "name": "http", "port": 8080, "protocol": "TCP" }],
    }))
    .expect("an EndpointSlice");
    let node: Node = serde_json::from_value(json!({
        "metadata": { "name": "node-1" },
        "status": { "addresses": [{ "type": "InternalIP", "address": "10.99.0.1" },
                                  { "type": "Hostname", "address": "node-1" }] },
    }))
    .expect("a node");
    let replica_set: ReplicaSet = serde_json::from_value(json!({
        "metadata": { "namespace": "default", "name": "web-5d8f", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "1111", "controller": true }] },
        "spec": { "replicas": 1, "selector": { "matchLabels": { "app": "web" } },
                  "template": { "metadata": { "labels": { "app": "web" } } } },
    }))
    .expect("a ReplicaSet");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": { "namespace": "default", "name": "web-5d8f-abcde", "ownerReferences": [{
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f", "uid": "2222", "controller": true }] },
        "spec": { "nodeName": "node-1", "containers": [{ "name": "web", "image": "nginx" }] },
        "status": { "podIP": "10.244.0.11", "podIPs": [{ "ip": "10.244.0.11" }, { "ip": "fd00:244::11" }] },
    }))
    .expect("a pod");
    server.apply(&service);
    server.apply(&slice);
    server.apply(&node);
    server.apply(&replica_set);
    server.apply(&pod);
    runtime().block_on(async {
        let client = client(&server).await;
        let lp = ListParams::default();
        let services = Api::<Service>::all(client.clone()).list(&lp).await;
        let services = services.expect("services");
        assert_eq!(services.types.kind, "ServiceList");
        let listed = &services.items[..];
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].spec, service.spec);
        let cluster_ips = listed[0].spec.as_ref().and_then(|s| s.cluster_ips.clone());
        assert_eq!(
            cluster_ips,
            Some(vec!["10.96.0.10".into(), "fd00:96::a".into()])
        );
        let meta = &listed[0].metadata;
        assert!(
            meta.uid.is_some()
                && meta.resource_version.is_some()
                && meta.creation_timestamp.is_some()
        );

        let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default")
            .list(&lp)
            .await;
        let slices = slices.expect("EndpointSlices").items;
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].labels(), slice.labels());
        assert_eq!(
            (&slices[0].endpoints, &slices[0].ports),
            (&slice.endpoints, &slice.ports)
        );
        assert_eq!(slices[0].endpoints[0].addresses, ["10.244.0.11"]);

        let nodes = Api::<Node>::all(client.clone()).list(&lp).await;
        let nodes = nodes.expect("nodes").items;
        assert_eq!(nodes.len(), 1);
        let addresses = |n: &Node| n.status.as_ref().and_then(|s| s.addresses.clone());
        assert_eq!(addresses(&nodes[0]), addresses(&node));
        assert_eq!(addresses(&nodes[0]).map(|a| a.len()), Some(2));

        let sets = Api::<ReplicaSet>::namespaced(client.clone(), "default")
            .list(&lp)
            .await;
        let sets = sets.expect("ReplicaSets").items;
        assert_eq!(sets.len(), 1);
        assert_eq!(sets[0].spec, replica_set.spec);
        assert_eq!(sets[0].owner_references(), replica_set.owner_references());

        let pods = Api::<Pod>::all(client).list(&lp).await;
        let pods = pods.expect("pods").items;
        assert_eq!(pods.len(), 1);
        assert_eq!(pods[0].owner_references(), pod.owner_references());
        let pod_ips = |p: &Pod| p.status.as_ref().and_then(|s| s.pod_ips.clone());
        assert_eq!(pod_ips(&pods[0]), pod_ips(&pod));
        assert_eq!(pod_ips(&pods[0]).map(|ips| ips.len()), Some(2));
    });
}

/// Sends a raw HTTP/1.1 GET that asks the server to close the connection after the response.
fn raw_get(server: &FakeApiServer, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(server.addr()).expect("connecting");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("a read timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: fake\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .expect("sending the request");
    stream
}

/// Reads until the server closes the connection.
fn read_to_close(stream: &mut TcpStream, mut response: Vec<u8>) -> String {
    stream
        .read_to_end(&mut response)
        .expect("reading until the server closes");
    String::from_utf8(response).expect("a UTF-8 response")
}

#[test]
fn watch_wire_format_timeout_cut_and_shutdown() {
    let server = FakeApiServer::start_local();
    server.apply(&pod("default", "a", "10.244.0.11"));
    let watch = "/api/v1/namespaces/default/pods?watch=1&resourceVersion=1";

    // The timeout ends the chunked stream cleanly, with the last chunk.
    let mut stream = raw_get(&server, &format!("{watch}&timeoutSeconds=1"));
    let ended = read_to_close(&mut stream, Vec::new());
    assert!(ended.starts_with("HTTP/1.1 200 OK\r\n"), "{ended}");
    let head = ended.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/json\r\n"),
        "{ended}"
    );
    assert!(head.contains("transfer-encoding: chunked\r\n"), "{ended}");
    assert!(ended.contains(r#""type":"ADDED""#), "{ended}");
    assert!(ended.ends_with("\r\n0\r\n\r\n"), "{ended}");

    // A cut ends it without the last chunk.
    let mut stream = raw_get(&server, watch);
    let mut seen = Vec::new();
    let mut buf = [0; 4096];
    while !String::from_utf8_lossy(&seen).contains("ADDED") {
        let n = stream.read(&mut buf).expect("reading the replay");
        assert_ne!(n, 0, "the watch ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    server.drop_watches();
    let cut = read_to_close(&mut stream, seen);
    assert!(!cut.ends_with("0\r\n\r\n"), "{cut}");

    // Dropping the server closes its listener.
    let addr = server.addr();
    drop(server);
    let refused = TcpStream::connect(addr)
        .map(|_| ())
        .expect_err("connecting after drop");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}
