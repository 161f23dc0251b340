//! Kubernetes awareness (issue 4, in progress): the IP index that names both ends of a flow.
//!
//! The watchers (next) turn pods, services, EndpointSlices and nodes into the trimmed records
//! of [`index`]; the decorator reads [`index::IpIndex`] snapshots. Nothing here talks to an
//! API server yet.

pub mod index;
