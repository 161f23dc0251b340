//! The Kubernetes trimming and index: arbitrary Pod, Service, EndpointSlice, Node, ReplicaSet
//! and Job JSON (as a watcher hands them over), added, deleted and re-listed in any order. No
//! panic; the memory the store and its index hold stays proportional to what they were given
//! (a counting allocator measures it); and once every object is gone, nothing is left — no
//! address, no endpoint, no namespace, no interned name.
//!
//! Input: chunks separated by 0xFF (never in UTF-8 JSON); a chunk's first byte is the
//! operation — bits 0..3: the kind (mod 6); bits 3..5: 0 or 1 add/replace, 2 delete, 3 begin
//! or finish a re-list — and the rest is the object's JSON.
#![no_main]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::{Duration, Instant},
};

use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        batch::v1::Job,
        core::v1::{Node, Pod, Service},
        discovery::v1::EndpointSlice,
    },
    serde::de::DeserializeOwned,
};
use kube::core::PartialObjectMeta;
use otel_netprobe::k8s::{
    index::{IndexStore, Kind},
    trim::Trim,
};

/// Bytes allocated and not yet freed, by everything in this process.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        // SAFETY: as for `dealloc` and `alloc`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const GRACE: Duration = Duration::from_secs(30);

/// Parses `json` as a `K`, trims it and applies `op` to the store; returns the (kind, uid)
/// it added, if any.
fn apply<K: DeserializeOwned + Trim>(
    store: &mut IndexStore,
    kind: Kind,
    op: u8,
    json: &[u8],
    now: Instant,
) -> Option<String> {
    let object: K = serde_json::from_slice(json).ok()?;
    let uid = object.uid().to_owned();
    if op == 2 {
        store.delete(kind, &uid, now);
        return None;
    }
    match object.trim() {
        Some(record) => {
            store.upsert(&uid, record, now);
            Some(uid)
        }
        None => {
            store.delete(kind, &uid, now);
            None
        }
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let now = Instant::now();
    let before = LIVE.load(Ordering::Relaxed);
    let mut store = IndexStore::new(GRACE);
    let mut added: Vec<(Kind, String)> = Vec::new();
    let mut relisting = [false; 6];
    for chunk in data.split(|b| *b == 0xFF) {
        let Some((&op, json)) = chunk.split_first() else {
            continue;
        };
        let k = usize::from(op & 7) % 6;
        let kind = Kind::ALL[k];
        let action = (op >> 3) & 3;
        if action == 3 {
            if relisting[k] {
                store.finish_relist(kind, now);
            } else {
                store.begin_relist(kind);
            }
            relisting[k] = !relisting[k];
            continue;
        }
        let uid = match kind {
            Kind::Pod => apply::<Pod>(&mut store, kind, action, json, now),
            Kind::Service => apply::<Service>(&mut store, kind, action, json, now),
            Kind::EndpointSlice => apply::<EndpointSlice>(&mut store, kind, action, json, now),
            Kind::Node => apply::<Node>(&mut store, kind, action, json, now),
            // Watched as metadata only: the rest of the object is never read.
            Kind::ReplicaSet => {
                apply::<PartialObjectMeta<ReplicaSet>>(&mut store, kind, action, json, now)
            }
            Kind::Job => apply::<PartialObjectMeta<Job>>(&mut store, kind, action, json, now),
        };
        if let Some(uid) = uid {
            added.push((kind, uid));
        }
    }
    let index = store.build();
    // Every address and endpoint came from the input; the memory held is the input's size
    // times a constant, plus one map entry per (address, port) endpoint and host port (an
    // EndpointSlice names addresses × ports).
    let held = LIVE.load(Ordering::Relaxed) - before;
    let pairs = index.sizes.endpoints as isize + index.sizes.addresses as isize;
    let bound = 64 * 1024 + 64 * data.len() as isize + 256 * pairs;
    assert!(
        held <= bound,
        "the store and index hold {held} bytes for {} input bytes and {pairs} entries",
        data.len()
    );
    for ip in ["10.0.0.1", "::1", "192.168.0.1"] {
        let _ = index.get(ip.parse().unwrap());
    }
    drop(index);
    // Everything leaves: deleted, past the pods' grace period, rebuilt.
    for (kind, uid) in &added {
        store.delete(*kind, uid, now);
    }
    store.expire(now + GRACE * 2);
    let empty = store.build();
    assert_eq!(
        empty.len(),
        0,
        "addresses left after every object was deleted"
    );
    assert_eq!(empty.sizes.endpoints, 0, "endpoints left");
    assert!(empty.namespaces.is_empty(), "namespaces left");
    drop(empty);
    let _ = store.build();
    assert_eq!(
        store.interned(),
        0,
        "names interned for objects that are all gone"
    );
});
