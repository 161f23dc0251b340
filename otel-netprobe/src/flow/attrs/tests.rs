use std::time::{Duration, Instant};

use netprobe_ebpf::{FlowKey, SIZE_BUCKETS, tcp_flags};

use super::*;
use crate::flow::Budget;
use crate::{
    config::{K8sConfig, NamespaceFilter},
    k8s::{
        index::{IndexStore, Kind, OwnerRef, Pod, Record, Service, Slice},
        naming::NamingRules,
    },
};

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u64) -> FlowView {
    let key = FlowKey {
        src_addr: [u32::from_ne_bytes(src), 0, 0, 0],
        dst_addr: [u32::from_ne_bytes(dst), 0, 0, 0],
        src_port: sport.to_be(),
        dst_port: dport.to_be(),
        protocol: 6,
        ip_version: 4,
        pad: [0; 2],
    };
    let mut b = [0; SIZE_BUCKETS];
    b[3] = 4;
    FlowView::new(&key, 400, b, flags, (0, 0))
}

fn pod(ns: &str, name: &str, ip: &str, kind: &str, wl: &str) -> Record {
    Record::Pod {
        pod: Pod {
            namespace: ns.into(),
            name: name.into(),
            node: "node-a".into(),
            owner: Some(OwnerRef {
                kind: kind.into(),
                name: wl.into(),
            }),
            workload: OwnerRef {
                kind: kind.into(),
                name: wl.into(),
            },
            ips: vec![ip.parse().unwrap()],
            host_network: false,
            host_ports: Vec::new(),
        },
        terminal: false,
    }
}

fn naming(exclude: &[&str]) -> Naming {
    let now = Instant::now();
    let mut s = IndexStore::new(Duration::from_secs(30));
    for k in Kind::ALL {
        s.begin_relist(k);
    }
    s.upsert(
        "c",
        pod(
            "shop",
            "checkout-1",
            "10.244.0.11",
            "Deployment",
            "checkout",
        ),
        now,
    );
    s.upsert(
        "p",
        pod(
            "payments",
            "payments-0",
            "10.244.1.3",
            "StatefulSet",
            "payments",
        ),
        now,
    );
    s.upsert(
        "n",
        Record::Node("node-a".into(), vec!["192.0.2.10".parse().unwrap()]),
        now,
    );
    let Record::Pod {
        pod: mut exporter, ..
    } = pod(
        "monitoring",
        "node-exporter-x",
        "192.0.2.10",
        "DaemonSet",
        "node-exporter",
    )
    else {
        unreachable!()
    };
    exporter.host_network = true;
    exporter.host_ports = vec![9100];
    s.upsert(
        "x",
        Record::Pod {
            pod: exporter,
            terminal: false,
        },
        now,
    );
    s.upsert(
        "s",
        Record::Service(Service {
            namespace: "payments".into(),
            name: "payments".into(),
            cluster_ips: vec!["10.96.0.10".parse().unwrap()],
            ports: vec![443],
        }),
        now,
    );
    s.upsert(
        "e",
        Record::Slice(Slice {
            namespace: "payments".into(),
            service: "payments".into(),
            addresses: vec!["10.244.1.3".parse().unwrap()],
            ports: vec![8443],
        }),
        now,
    );
    for k in Kind::ALL {
        s.finish_relist(k, now);
    }
    let cfg = K8sConfig {
        namespaces: NamespaceFilter {
            include: Vec::new(),
            exclude: exclude.iter().map(|s| (*s).to_owned()).collect(),
        },
        ..K8sConfig::default()
    };
    Naming {
        index: Arc::new(s.build()),
        rules: Arc::new(NamingRules::new(&cfg, true).on_node(Some("node-a"))),
        local: Arc::from([]),
    }
}

fn text(l: &Labels) -> String {
    l.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn workload_attributes_name_both_ends_and_the_service() {
    let n = naming(&[]);
    let attrs = FlowAttr::parse_all(FlowAttr::CLUSTER);
    let to_cluster_ip = tcp(
        [10, 244, 0, 11],
        41000,
        [10, 96, 0, 10],
        443,
        tcp_flags::SYN,
    );
    assert_eq!(
        text(&labels(&to_cluster_ip, &attrs, &n)),
        "source.k8s.namespace.name=shop source.k8s.workload.name=checkout \
         source.k8s.workload.kind=Deployment destination.k8s.namespace.name=payments \
         destination.k8s.workload.name=payments destination.k8s.workload.kind=Service \
         destination.k8s.service.name=payments destination.port=443 \
         network.transport=tcp network.type=ipv4 netprobe.origin=this_node"
    );
    // The agent of another node sees the same packets come from there.
    let mut on_b = n.clone();
    on_b.rules = Arc::new(NamingRules::new(&K8sConfig::default(), true).on_node(Some("node-b")));
    assert!(text(&labels(&to_cluster_ip, &attrs, &on_b)).ends_with("netprobe.origin=other_node"));
    let reply = tcp(
        [10, 244, 1, 3],
        8443,
        [10, 244, 0, 11],
        41000,
        tcp_flags::SYN_ACK | tcp_flags::SYN | tcp_flags::ACK,
    );
    assert_eq!(
        text(&labels(&reply, &attrs, &n)),
        "source.k8s.namespace.name=payments source.k8s.workload.name=payments \
         source.k8s.workload.kind=StatefulSet destination.k8s.namespace.name=shop \
         destination.k8s.workload.name=checkout destination.k8s.workload.kind=Deployment \
         source.k8s.service.name=payments source.port=8443 network.transport=tcp \
         network.type=ipv4 netprobe.origin=this_node"
    );
    // No handshake seen, and the client port is the lower one: the endpoint port still
    // says which end is the server.
    let mid = tcp(
        [10, 244, 1, 3],
        8443,
        [10, 244, 0, 11],
        1024,
        tcp_flags::ACK,
    );
    assert!(text(&labels(&mid, &attrs, &n)).contains("source.port=8443"));
    // A hostNetwork pod is named on its declared port; the node's other ports name the node.
    let scrape = tcp(
        [10, 244, 0, 11],
        41001,
        [192, 0, 2, 10],
        9100,
        tcp_flags::SYN,
    );
    let l = text(&labels(&scrape, &attrs, &n));
    assert!(
        l.contains("destination.k8s.namespace.name=monitoring destination.k8s.workload.name=node-exporter destination.k8s.workload.kind=DaemonSet"),
        "{l}"
    );
    let ssh = tcp([10, 244, 0, 11], 41002, [192, 0, 2, 10], 22, tcp_flags::SYN);
    let l = text(&labels(&ssh, &attrs, &n));
    assert!(
        l.contains("destination.k8s.workload.name=node-a destination.k8s.workload.kind=Node"),
        "{l}"
    );
    // Outside the cluster, and pods on demand.
    let ext = tcp(
        [203, 0, 113, 9],
        50000,
        [10, 244, 0, 11],
        80,
        tcp_flags::SYN,
    );
    let mut with_pods = attrs.clone();
    with_pods.push(FlowAttr::End(Side::Destination, EndPart::Pod));
    let l = text(&labels(&ext, &with_pods, &n));
    assert!(
        l.contains("source.k8s.workload.name=external source.k8s.workload.kind=external")
            && l.contains("destination.k8s.pod.name=checkout-1")
            && !l.contains("source.k8s.namespace.name")
            && l.ends_with("netprobe.origin=outside"),
        "{l}"
    );
}

#[test]
fn excluded_namespaces_are_left_out_and_lookups_are_counted() {
    let n = naming(&["pay*"]);
    let mut b = Budget::new(FlowAttr::parse_all(FlowAttr::CLUSTER), 100);
    let flows = [
        tcp(
            [10, 244, 0, 11],
            41000,
            [10, 96, 0, 10],
            443,
            tcp_flags::SYN,
        ),
        tcp(
            [203, 0, 113, 9],
            50000,
            [10, 244, 0, 11],
            80,
            tcp_flags::SYN,
        ),
    ];
    let named = crate::flow::Named::new(&flows, &n, b.needs_peers());
    let set = b.build(&named);
    assert_eq!(named.filtered_flows, 1);
    assert_eq!(set.series.len(), 1);
    assert_eq!(set.of_flow, [crate::flow::SeriesSet::LEFT_OUT, 0]);
    assert_eq!(
        named.lookups,
        Lookups {
            found: 3,
            external: 1,
            unknown: 0
        }
    );
}
