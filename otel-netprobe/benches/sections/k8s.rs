//! `k8s`: the Kubernetes index's memory and lookup cost, and what naming costs a cycle.

use std::{sync::Arc, time::Duration};

use netprobe_ebpf::FlowKey;

/// Counts the bytes this thread holds on the heap, so the Kubernetes index's memory is
/// measured exactly (an RSS difference of a few MiB is mostly allocator noise).
struct CountingAlloc;

thread_local! {
    static LIVE_HEAP: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

// SAFETY: forwards to the system allocator unchanged; only adds bookkeeping.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, l: std::alloc::Layout) -> *mut u8 {
        let _ = LIVE_HEAP.try_with(|c| c.set(c.get() + l.size() as isize));
        // SAFETY: same layout contract as the caller's.
        unsafe { std::alloc::System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: std::alloc::Layout) {
        let _ = LIVE_HEAP.try_with(|c| c.set(c.get() - l.size() as isize));
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { std::alloc::System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: std::alloc::Layout, new: usize) -> *mut u8 {
        let _ = LIVE_HEAP.try_with(|c| c.set(c.get() + new as isize - l.size() as isize));
        // SAFETY: as for `realloc` itself.
        unsafe { std::alloc::System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn live_heap() -> isize {
    LIVE_HEAP.with(std::cell::Cell::get)
}

/// A store of `n` pods: ten per Deployment (via its ReplicaSet), 20 namespaces, 50 nodes; one
/// service per Deployment with an EndpointSlice of its ten pods.
fn k8s_store(n: u32) -> otel_netprobe::k8s::index::IndexStore {
    use otel_netprobe::k8s::index::{
        Controlled, IndexStore, OwnerRef, Pod, Record, Service, Slice,
    };
    use std::net::{IpAddr, Ipv4Addr};
    let now = std::time::Instant::now();
    let mut store = IndexStore::new(Duration::from_secs(30));
    let ip = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i));
    let owner = |kind: &str, name: String| {
        Some(OwnerRef {
            kind: kind.into(),
            name: name.into(),
        })
    };
    // Ten pods per Deployment (via its ReplicaSet), 20 namespaces, 50 nodes; one service
    // per Deployment with an EndpointSlice of its ten pods.
    for i in 0..n {
        let ns = format!("namespace-{}", (i / 10) % 20);
        let rs = format!("app-{}-7d9f8c6b5", i / 10);
        let pod = Pod {
            namespace: ns.as_str().into(),
            name: format!("{rs}-{i:05x}").into(),
            node: format!("node-{}", i % 50).into(),
            workload: owner("ReplicaSet", rs.clone()).unwrap(),
            owner: owner("ReplicaSet", rs),
            ips: vec![ip(i)],
            host_network: false,
            host_ports: Vec::new(),
        };
        let uid = format!("{i:08x}-0000-4000-8000-000000000000");
        store.upsert(
            &uid,
            Record::Pod {
                pod,
                terminal: false,
            },
            now,
        );
    }
    for i in 0..n / 10 {
        let ns = format!("namespace-{}", i % 20);
        let rs = Controlled {
            namespace: ns.as_str().into(),
            name: format!("app-{i}-7d9f8c6b5").into(),
            owner: owner("Deployment", format!("app-{i}")),
        };
        store.upsert(&format!("rs-{i}"), Record::ReplicaSet(rs), now);
        let svc = Service {
            namespace: ns.as_str().into(),
            name: format!("svc-{i}").into(),
            cluster_ips: vec![IpAddr::V4(Ipv4Addr::from(0x0a60_0000 + i))],
            ports: vec![80],
        };
        store.upsert(&format!("svc-{i}"), Record::Service(svc), now);
        let slice = Slice {
            namespace: ns.as_str().into(),
            service: format!("svc-{i}").into(),
            addresses: (0..10).map(|j| ip(i * 10 + j)).collect(),
            ports: vec![8080],
        };
        store.upsert(&format!("slice-{i}"), Record::Slice(slice), now);
    }
    store
}

pub fn k8s_index() {
    use otel_netprobe::k8s::naming::{Naming, NamingRules};
    use std::net::{IpAddr, Ipv4Addr};
    println!(
        "\n== Kubernetes IP index (store + snapshot), per pod; absolute, and naming as × the address series =="
    );
    // The first round warms up (code, allocator arenas) and is not reported: the figures are
    // the index's own, not one-time costs of the process.
    for (n, report) in [
        (1_000u32, false),
        (1_000, true),
        (10_000, true),
        (100_000, true),
    ] {
        let before = super::rss_bytes("self");
        let heap_before = live_heap();
        let mut store = k8s_store(n);
        let ip = |i: u32| IpAddr::V4(Ipv4Addr::from(0x0af4_0000 + i));
        let t = std::time::Instant::now();
        let index = store.build();
        let build_ms = t.elapsed().as_secs_f64() * 1e3;
        let per_pod = (super::rss_bytes("self").saturating_sub(before)) as f64 / f64::from(n);
        let heap_per_pod = (live_heap() - heap_before) as f64 / f64::from(n);
        let naming = Naming {
            index: Arc::new(index),
            rules: Arc::new(NamingRules::standalone()),
            local: Arc::from([]),
        };
        if !report {
            continue;
        }
        let time_lookups = |with_endpoint: bool| {
            let lookups = 2_000_000u32;
            let t = std::time::Instant::now();
            let mut found = 0u32;
            let mut x = 12_345u32;
            for _ in 0..lookups {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let a = ip(x % n);
                if naming.peer(a).found()
                    && (!with_endpoint || naming.index.endpoint(a, 8080).is_some())
                {
                    found += 1;
                }
            }
            assert_eq!(found, lookups);
            t.elapsed().as_secs_f64() * 1e9 / f64::from(lookups)
        };
        let (addr_ns, both_ns) = (time_lookups(false), time_lookups(true));
        // One lookup = what naming a flow's server end costs: the address, then its endpoint.
        println!(
            "{n:>7} pods: {heap_per_pod:>4.0} B heap/pod ({per_pod:>4.0} B RSS/pod), lookup \
             {addr_ns:>4.1} ns (address), {both_ns:>4.1} ns (address + endpoint), \
             index build {build_ms:.1} ms"
        );
        if n == 10_000 && report {
            decorate_cost(&naming, n);
        }
        drop((store, naming));
    }
}

/// What naming costs an export cycle: 100k pod-to-pod flows aggregated into series with the
/// workload-level attributes, against the standalone (address) attributes.
fn decorate_cost(naming: &otel_netprobe::k8s::naming::Naming, pods: u32) {
    use otel_netprobe::{
        config::FlowAttr,
        flow::{Budget, FlowView, Named},
    };
    let flows: Vec<FlowView> = (0..100_000u32)
        .map(|i| {
            let (a, b) = (i % pods, (i * 7 + 3) % pods);
            let key = FlowKey {
                src_addr: [(0x0af4_0000 + a).to_be(), 0, 0, 0],
                dst_addr: [(0x0af4_0000 + b).to_be(), 0, 0, 0],
                src_port: (30_000 + (i % 30_000) as u16).to_be(),
                dst_port: 8080u16.to_be(),
                protocol: 6,
                ip_version: 4,
                pad: [0; 2],
            };
            let mut sizes = [0; netprobe_ebpf::SIZE_BUCKETS];
            sizes[5] = 10;
            FlowView::new(&key, 15_000, sizes, 0, (0, 0))
        })
        .collect();
    let time = |attrs: &[&str]| {
        let mut b = Budget::new(FlowAttr::parse_all(attrs.iter().copied()), 1_000_000);
        let mut best = f64::MAX;
        let mut series = 0;
        for _ in 0..5 {
            let t = std::time::Instant::now();
            let named = Named::new(&flows, naming, b.needs_peers());
            series = b.build(&named).series.len();
            best = best.min(t.elapsed().as_secs_f64());
        }
        (best * 1e9 / flows.len() as f64, series)
    };
    let (k8s, k8s_series) = time(&FlowAttr::CLUSTER);
    let (plain, plain_series) = time(&FlowAttr::STANDALONE);
    println!(
        "  naming 100k flows into series: {k8s:.0} ns/flow with workload attributes \
         ({k8s_series} series) vs {plain:.0} ns/flow with addresses ({plain_series} series): \
         {:.2}x",
        k8s / plain
    );
}
