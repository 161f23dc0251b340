//! otel-netprobe: exact per-flow network telemetry from XDP/TC programs, for Kubernetes nodes.
//!
//! The pipeline, one direction only (each stage imports only the stages before it; the
//! `layers` test checks it):
//! `ebpf` (load, attach, batched map reads) and `k8s` (the IP index) → `flow` (cumulative
//! per-flow table, naming, series under the cardinality budget) → `metrics` (one module per
//! metric: its catalogue entries and how it is filled) → `frame` (the aggregator: one
//! immutable [`frame::Frame`] and summary per read cycle, in a [`frame::Snapshot`]) →
//! `export` (Prometheus text, OTLP, summary, HTTP server) → `agent` (the wiring, ordered
//! stop). `config` (the settings), `telemetry` (the agent's event counters) and `privileges`
//! are leaves anyone may read; the renderers append the event counters to the frame.

pub mod agent;
pub mod config;
pub mod ebpf;
pub mod export;
pub mod flow;
pub mod frame;
pub mod heap;
pub mod k8s;
pub mod metrics;
pub mod privileges;
pub mod telemetry;
