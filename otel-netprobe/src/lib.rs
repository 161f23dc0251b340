//! otel-netprobe: exact per-flow network telemetry from XDP/TC programs, for Kubernetes nodes.
//!
//! The pipeline, one direction only:
//! `ebpf` (load, attach, batched map reads) → `flow` (cumulative per-flow table, naming, series
//! under the cardinality budget) → `metrics` (the aggregator: one immutable [`frame::Frame`]
//! and summary per read cycle, in a [`flow::Snapshot`]) → `export` (Prometheus text, OTLP,
//! summary, HTTP server), with the agent's own health (`telemetry`) appended to the frame by
//! the renderers. `agent` wires the stages together and stops them in order; `config` is the
//! single source of settings.

pub mod agent;
pub mod config;
pub mod ebpf;
pub mod export;
pub mod flow;
pub mod frame;
pub mod k8s;
pub mod metrics;
pub mod privileges;
pub mod telemetry;
