//! Renderers: everything here reads a [`crate::frame::Snapshot`] (its frame and summary) and the
//! agent's event counters, and nothing else; no renderer names a metric (the catalogue lives
//! with the metric modules, `crate::metrics`).
//!
//! `prometheus` renders frames as text and `otlp` as protobuf, both generically; `summary`
//! prints the traffic summary and fetches it from a running agent; `http` serves them.

pub mod http;
pub mod otlp;
pub mod prometheus;
pub mod serve;
pub mod summary;
