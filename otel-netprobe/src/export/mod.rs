//! Exporters: everything here reads a [`crate::flow::Snapshot`] and nothing else.
//!
//! `names` is the metric catalogue (the contract with the collector, dashboards and alerts);
//! `prometheus` renders it as text; `summary` is the consolidated traffic summary; `http`
//! serves both.

pub mod health;
pub mod http;
pub mod names;
pub mod otlp;
pub mod prometheus;
pub mod summary;
