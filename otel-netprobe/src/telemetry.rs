//! The agent's own health: what the reader and the attacher did, exported as
//! `netprobe_agent_*`. Counters start at zero so dashboards see them before the first error.

use serde::Serialize;

/// One interface the agent attached to (or tried to).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceState {
    /// Interface name.
    pub name: String,
    /// Interface index.
    pub index: u32,
    /// Ingress hook in use (`xdp`, `xdp_generic`, `tc`, or `none` if attaching failed).
    pub hook: &'static str,
    /// Whether TC egress (locally originated packets) is attached.
    pub egress: bool,
    /// How the TC programs are attached: `tcx` (kernel 6.6 on), `clsact` (a cls_bpf filter on
    /// a clsact qdisc, before), or `none` (XDP only).
    pub tc_attach: &'static str,
}

/// Health figures, copied into every snapshot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Health {
    /// Kernel flow table capacity.
    pub flow_table_capacity: u64,
    /// Entries in the kernel flow table at the last read.
    pub flow_table_entries: u64,
    /// Kernel memory of the flow table (the kernel's own accounting), bytes.
    pub flow_table_memory_bytes: u64,
    /// Flows tracked in user space.
    pub flows_tracked: u64,
    /// Kernel entries moved out because idle (counts kept).
    pub kernel_evictions_total: u64,
    /// Flows forgotten because idle.
    pub flows_expired_total: u64,
    /// Read cycles completed.
    pub read_cycles_total: u64,
    /// Read cycles that failed.
    pub read_errors_total: u64,
    /// Duration of the last read cycle, seconds.
    pub last_read_seconds: f64,
    /// Attach attempts that failed.
    pub attach_errors_total: u64,
    /// Interfaces currently attached.
    pub interfaces: Vec<InterfaceState>,
    /// OTLP export requests the backend accepted.
    pub export_ok_total: u64,
    /// OTLP export requests that failed after their retries.
    pub export_failed_total: u64,
    /// Data points in failed OTLP exports (dropped; the next export carries the totals).
    pub export_dropped_points_total: u64,
    /// The Kubernetes watchers' figures (`None`: standalone).
    pub k8s: Option<crate::k8s::K8sHealth>,
}
