#![allow(clippy::unnecessary_wraps, reason = "owner references are optional")]

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn owner(kind: &str, name: &str) -> Option<OwnerRef> {
    Some(OwnerRef {
        kind: kind.into(),
        name: name.into(),
    })
}

fn pod(name: &str, ips: &[&str], host: bool, own: Option<OwnerRef>) -> Record {
    Record::Pod {
        pod: Pod {
            namespace: "shop".into(),
            name: name.into(),
            node: "node-1".into(),
            workload: own.clone().unwrap_or(OwnerRef {
                kind: "Pod".into(),
                name: name.into(),
            }),
            owner: own,
            ips: ips.iter().map(|s| ip(s)).collect(),
            host_network: host,
            host_ports: if host { vec![9100] } else { Vec::new() },
        },
        terminal: false,
    }
}

fn name(idx: &IpIndex, addr: &str, port: Option<u16>) -> String {
    let a = ip(addr);
    let svc = port
        .and_then(|p| idx.endpoint(a, p))
        .map(|s| format!(" svc {}", s.name))
        .unwrap_or_default();
    match idx.get(a) {
        Some(Entry::Pod(p)) => format!(
            "pod {} {}/{}{svc}",
            p.name, p.workload.kind, p.workload.name
        ),
        Some(Entry::Service(s)) => format!("svc {}", s.name),
        Some(Entry::Node(n)) => format!("node {n}"),
        None => "none".into(),
    }
}

fn service(name: &str, ips: &[&str]) -> Record {
    Record::Service(Service {
        namespace: "shop".into(),
        name: name.into(),
        cluster_ips: ips.iter().map(|s| ip(s)).collect(),
        ports: vec![443],
    })
}

#[test]
fn pods_services_nodes_and_endpoints() {
    let now = Instant::now();
    let mut s = IndexStore::new(Duration::from_secs(30));
    s.upsert(
        "n1",
        Record::Node("node-1".into(), vec![ip("192.0.2.10")]),
        now,
    );
    s.upsert(
        "u1",
        pod("checkout-1", &["10.244.0.11", "fd00::11"], false, None),
        now,
    );
    s.upsert("u2", pod("agent", &["192.0.2.10"], true, None), now);
    s.upsert(
        "s1",
        service("payments", &["10.96.0.10", "fd00:96::10"]),
        now,
    );
    s.upsert(
        "e1",
        Record::Slice(Slice {
            namespace: "shop".into(),
            service: "payments".into(),
            addresses: vec![ip("10.244.0.11")],
            ports: vec![8443],
        }),
        now,
    );
    let idx = s.build();
    assert_eq!(
        name(&idx, "10.244.0.11", None),
        "pod checkout-1 Pod/checkout-1"
    );
    assert_eq!(
        name(&idx, "fd00::11", None),
        "pod checkout-1 Pod/checkout-1"
    );
    assert_eq!(
        name(&idx, "10.244.0.11", Some(8443)),
        "pod checkout-1 Pod/checkout-1 svc payments"
    );
    assert_eq!(
        name(&idx, "10.244.0.11", Some(9090)),
        "pod checkout-1 Pod/checkout-1"
    );
    assert_eq!(name(&idx, "10.96.0.10", None), "svc payments");
    assert_eq!(name(&idx, "fd00:96::10", None), "svc payments");
    // A hostNetwork pod shares the node's address: it names the node, except on the ports
    // the pod declares.
    assert_eq!(name(&idx, "192.0.2.10", None), "node node-1");
    assert_eq!(
        idx.host_port(ip("192.0.2.10"), 9100).map(|p| &*p.name),
        Some("agent")
    );
    assert!(idx.host_port(ip("192.0.2.10"), 22).is_none());
    assert_eq!(name(&idx, "203.0.113.1", None), "none");
    let shop = idx.namespaces[&Arc::<str>::from("shop")];
    assert_eq!((shop.pods, shop.services), (2, 1));
    assert!(!idx.synced, "no watcher has listed yet");
}

#[test]
fn deleted_pods_resolve_for_the_grace_period_and_reuse_wins() {
    let mut s = IndexStore::new(Duration::from_secs(30));
    let t0 = Instant::now();
    s.upsert("u1", pod("old", &["10.244.0.20"], false, None), t0);
    s.delete(Kind::Pod, "u1", t0);
    assert_eq!(name(&s.build(), "10.244.0.20", None), "pod old Pod/old");
    // The IP is reused by a new pod: it takes over at once.
    s.upsert("u2", pod("new", &["10.244.0.20"], false, None), t0);
    assert_eq!(name(&s.build(), "10.244.0.20", None), "pod new Pod/new");
    s.delete(Kind::Pod, "u2", t0);
    s.upsert("u3", pod("other", &["10.244.0.21"], false, None), t0);
    s.delete(Kind::Pod, "u3", t0);
    assert!(s.has_deleted_pods());
    assert_eq!(s.expire(t0 + Duration::from_secs(29)), 0);
    assert_eq!(s.expire(t0 + Duration::from_secs(31)), 3);
    assert_eq!(name(&s.build(), "10.244.0.21", None), "none");
    // Deleted pods are not counted in their namespace.
    assert!(s.build().namespaces.is_empty());
}

#[test]
fn finished_pods_release_their_ip_after_the_grace_period() {
    let mut s = IndexStore::new(Duration::from_secs(30));
    let t0 = Instant::now();
    let Record::Pod { pod: p, .. } = pod("job-x", &["10.244.0.30"], false, None) else {
        unreachable!()
    };
    s.upsert(
        "u1",
        Record::Pod {
            pod: p.clone(),
            terminal: true,
        },
        t0,
    );
    // A later update of the finished pod keeps the first finish time.
    s.upsert(
        "u1",
        Record::Pod {
            pod: p,
            terminal: true,
        },
        t0 + Duration::from_secs(20),
    );
    assert_eq!(name(&s.build(), "10.244.0.30", None), "pod job-x Pod/job-x");
    assert_eq!(s.expire(t0 + Duration::from_secs(31)), 1);
}

#[test]
fn owners_resolve_to_deployments_and_cronjobs() {
    let now = Instant::now();
    let mut s = IndexStore::new(Duration::from_secs(30));
    s.upsert(
        "p1",
        pod(
            "web-7d9f-abcde",
            &["10.244.0.11"],
            false,
            owner("ReplicaSet", "web-7d9f"),
        ),
        now,
    );
    s.upsert(
        "p2",
        pod("db-0", &["10.244.0.12"], false, owner("StatefulSet", "db")),
        now,
    );
    s.upsert(
        "p3",
        pod(
            "backup-29-xyz",
            &["10.244.0.13"],
            false,
            owner("Job", "backup-29"),
        ),
        now,
    );
    s.upsert(
        "p4",
        pod(
            "log-abcde",
            &["10.244.0.14"],
            false,
            owner("DaemonSet", "log"),
        ),
        now,
    );
    // Before the ReplicaSet is known, the pod's workload is the ReplicaSet.
    assert_eq!(
        name(&s.build(), "10.244.0.11", None),
        "pod web-7d9f-abcde ReplicaSet/web-7d9f"
    );
    let controlled = |n: &str, o| Controlled {
        namespace: "shop".into(),
        name: n.into(),
        owner: o,
    };
    s.upsert(
        "rs1",
        Record::ReplicaSet(controlled("web-7d9f", owner("Deployment", "web"))),
        now,
    );
    s.upsert(
        "j1",
        Record::Job(controlled("backup-29", owner("CronJob", "backup"))),
        now,
    );
    let idx = s.build();
    assert_eq!(
        name(&idx, "10.244.0.11", None),
        "pod web-7d9f-abcde Deployment/web"
    );
    assert_eq!(name(&idx, "10.244.0.12", None), "pod db-0 StatefulSet/db");
    assert_eq!(
        name(&idx, "10.244.0.13", None),
        "pod backup-29-xyz CronJob/backup"
    );
    assert_eq!(
        name(&idx, "10.244.0.14", None),
        "pod log-abcde DaemonSet/log"
    );
    // A bare ReplicaSet (no Deployment) is the workload itself.
    s.upsert("rs1", Record::ReplicaSet(controlled("web-7d9f", None)), now);
    assert_eq!(
        name(&s.build(), "10.244.0.11", None),
        "pod web-7d9f-abcde ReplicaSet/web-7d9f"
    );
}

#[test]
fn a_relist_deletes_what_it_does_not_list_and_marks_the_kind_synced() {
    let now = Instant::now();
    let mut s = IndexStore::new(Duration::from_secs(0));
    s.upsert("s1", service("a", &["10.96.0.1"]), now);
    s.upsert("s2", service("b", &["10.96.0.2"]), now);
    s.begin_relist(Kind::Service);
    s.upsert("s2", service("b", &["10.96.0.2"]), now);
    s.finish_relist(Kind::Service, now);
    let idx = s.build();
    assert_eq!(name(&idx, "10.96.0.1", None), "none");
    assert_eq!(name(&idx, "10.96.0.2", None), "svc b");
    assert!(!idx.synced);
    for k in Kind::ALL {
        s.begin_relist(k);
        s.finish_relist(k, now);
    }
    let idx = s.build();
    assert!(idx.synced);
    assert_eq!(idx.sizes.objects, [0, 0, 0, 0, 0, 0]);
}

#[test]
fn regression_names_of_deleted_objects_are_not_kept_forever() {
    // Found writing the `k8s` fuzz target's check that nothing is left once every object is
    // gone: every rollout's ReplicaSet name and every CronJob run's Job name stayed interned
    // for the agent's lifetime. Here 1,000 rollouts of one Deployment, each pod deleted in turn.
    let mut s = IndexStore::new(Duration::from_secs(30));
    let t0 = Instant::now();
    for i in 0..1000 {
        let rs = format!("web-{i:05x}");
        let uid = format!("p{i}");
        s.upsert(
            &uid,
            pod(
                &format!("{rs}-abcde"),
                &["10.0.0.5"],
                false,
                owner("ReplicaSet", &rs),
            ),
            t0,
        );
        let _ = s.build();
        s.delete(Kind::Pod, &uid, t0);
        s.expire(t0 + Duration::from_secs(60));
    }
    let idx = s.build();
    assert!(idx.is_empty());
    drop(idx);
    let _ = s.build();
    assert_eq!(s.interned(), 0, "names kept for objects that are all gone");
    // A live object keeps its names.
    s.upsert(
        "p",
        pod(
            "web-1-x",
            &["10.0.0.6"],
            false,
            owner("ReplicaSet", "web-1"),
        ),
        t0,
    );
    let _ = s.build();
    assert!(
        s.interned() >= 3,
        "namespace, node, owner kind and name: {}",
        s.interned()
    );
}
