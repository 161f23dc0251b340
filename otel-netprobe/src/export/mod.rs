//! Renderers: everything here reads a [`crate::flow::Snapshot`] (its frame and summary) and the
//! agent's health counters, and nothing else.
//!
//! `names` is the metric catalogue (the contract with the collector, dashboards and alerts);
//! `prometheus` renders frames as text and `otlp` as protobuf, both generically; `summary` is
//! the consolidated traffic summary; `http` serves them.

pub mod http;
pub mod names;
pub mod otlp;
pub mod prometheus;
pub mod serve;
pub mod summary;
