//! otel-netprobe: exact per-flow network telemetry from XDP/TC programs, for Kubernetes nodes.
//!
//! The pipeline, one direction only:
//! `ebpf` (load, attach, batched map reads) → `flow` (cumulative per-flow table, expiry,
//! immutable [`flow::Snapshot`]) → `export` (Prometheus text, summary JSON/table, HTTP server).
//! `agent` wires the stages together; `config` is the single source of settings.

pub mod agent;
pub mod config;
pub mod ebpf;
pub mod export;
pub mod flow;
pub mod k8s;
pub mod telemetry;
