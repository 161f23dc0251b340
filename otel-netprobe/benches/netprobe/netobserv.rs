//! NetObserv's flow program, loaded from their own prebuilt object for the under-traffic
//! comparison. The object comes from their Go module on the Go module proxy, downloaded into
//! the tools cache (nothing of theirs is in this repository) and loaded with aya, configured as
//! their default deployment configures it.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use aya::{Ebpf, EbpfLoader, programs::SchedClassifier};

macro_rules! version {
    () => {
        "v1.10.0-community"
    };
}
/// The one version of their module the proxy serves (others answer 403).
pub const VERSION: &str = version!();
/// Their module at that version.
const MODULE: &str = concat!("github.com/netobserv/netobserv-ebpf-agent@", version!());
/// Their TCX ingress flow program (section `classifier/tcx_ingress`; returns TCX_NEXT).
pub const PROGRAM: &str = "tcx_ingress_flow_parse";
/// Their flow table's capacity as their operator deploys the agent (the FlowCollector's
/// `spec.agent.ebpf.cacheMaxFlows` default; the bare agent's `CACHE_MAX_FLOWS` is 5,000).
pub const CACHE_MAX_FLOWS: u32 = 100_000;

/// The object for this machine's architecture in their module, downloaded into the tools
/// cache on first use; `Err` says in one line why it could not be obtained.
pub fn object() -> Result<PathBuf, String> {
    let tools = std::env::var_os("NETPROBE_TOOLS_DIR").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/otel-netprobe"),
        PathBuf::from,
    );
    let out = Command::new("go")
        .args(["mod", "download", "-json", MODULE])
        .env("GOMODCACHE", tools.join("go/mod"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .current_dir(std::env::temp_dir())
        .output()
        .map_err(|e| format!("go: {e}"))?;
    let json = String::from_utf8_lossy(&out.stdout);
    let dir = json
        .split("\"Dir\": \"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or_else(|| format!("go mod download {MODULE} failed: {}", json.trim()))?;
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "x86"
    };
    let path = PathBuf::from(dir).join(format!("pkg/ebpf/bpf_{arch}_bpfel.o"));
    path.exists()
        .then_some(path.clone())
        .ok_or_else(|| format!("{} is missing", path.display()))
}

/// Their object with the constants and map sizes their agent sets by default (their
/// `configureFlowSpecVariables` with sampling 1 and every optional feature off: no RTT, DNS,
/// drops, filters, network events, translation, IPsec or packet capture), and their TCX ingress
/// flow program loaded. Their maps are pinned by name: they are created in a private bpffs
/// mounted for the load and unmounted right after, so nothing of theirs stays pinned.
pub fn load(object: &Path) -> Ebpf {
    let bytes = std::fs::read(object).expect("reading NetObserv's object");
    let pins =
        std::env::temp_dir().join(format!("netprobe-bench-netobserv-{}", std::process::id()));
    std::fs::create_dir_all(&pins).expect("pin directory");
    mount_bpffs(&pins);
    let (sampling, off, group, dns_port) = (1u32, 0u8, 10u8, 53u16);
    let loaded = EbpfLoader::new()
        .default_map_pin_directory(&pins)
        .override_global("sampling", &sampling, true)
        .override_global("has_filter_sampling", &off, true)
        .override_global("trace_messages", &off, true)
        .override_global("enable_rtt", &off, true)
        .override_global("enable_pca", &off, true)
        .override_global("enable_dns_tracking", &off, true)
        .override_global("enable_flows_filtering", &off, true)
        .override_global("dns_port", &dns_port, true)
        .override_global("enable_network_events_monitoring", &off, true)
        .override_global("network_events_monitoring_groupid", &group, true)
        .override_global("enable_pkt_translation_tracking", &off, true)
        .override_global("enable_ipsec", &off, true)
        .map_max_entries("aggregated_flows", CACHE_MAX_FLOWS)
        .map_max_entries("additional_flow_metrics", CACHE_MAX_FLOWS)
        .map_max_entries("dns_flows", 1)
        .map_max_entries("filter_map", 1)
        .map_max_entries("peer_filter_map", 1)
        .map_max_entries("ipsec_ingress_map", 1)
        .map_max_entries("ipsec_egress_map", 1)
        .load(&bytes);
    umount(&pins);
    let mut ebpf = loaded.expect("aya loads NetObserv's object");
    let p: &mut SchedClassifier = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
    p.load()
        .expect("NetObserv's flow program passes the verifier");
    ebpf
}

/// Attaches their program at `ifname`'s TCX ingress, first or last in the chain.
pub fn attach(ebpf: &mut Ebpf, ifname: &str, first: bool) -> u32 {
    crate::traffic_tc::attach_tcx(ebpf, PROGRAM, ifname, first)
}

fn mount_bpffs(dir: &Path) {
    let ok = Command::new("mount")
        .args(["-t", "bpf", "bpf"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "mounting a private bpffs at {}", dir.display());
}

fn umount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
    let _ = std::fs::remove_dir(dir);
}
