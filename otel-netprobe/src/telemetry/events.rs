//! Typed events of the agent's own health (Vector's `internal_events` model): one struct per
//! event; `emit` increments its counter and logs, at most once per window for errors (the
//! next line says how many were left out).

use std::fmt::Display;

use tracing::{debug, warn};

use super::{Count, Telemetry};

/// An event of the agent's own health.
pub trait Event {
    /// Counts the event and logs it.
    fn emit(self, t: &Telemetry);
}

/// A read cycle completed.
pub struct ReadCompleted;

impl Event for ReadCompleted {
    fn emit(self, t: &Telemetry) {
        t.add(Count::ReadCycles, 1);
    }
}

/// Reading the kernel tables failed; the previous state is kept.
pub struct ReadFailed<'a> {
    /// The cause.
    pub error: &'a dyn Display,
}

impl Event for ReadFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.add(Count::ReadErrors, 1);
        if let Some(left_out) = t.may_log(Count::ReadErrors) {
            warn!(error = %self.error, left_out, "reading the flow table failed");
        }
    }
}

/// Idle flows left the kernel table with their final values (their counts stay).
pub struct FlowsMovedOut {
    /// How many.
    pub count: u64,
}

impl Event for FlowsMovedOut {
    fn emit(self, t: &Telemetry) {
        t.add(Count::MovedOut, self.count);
        if self.count > 0 {
            debug!(
                flows = self.count,
                "idle flows moved out of the kernel table"
            );
        }
    }
}

/// Idle flows were forgotten; their series stop.
pub struct FlowsExpired {
    /// How many.
    pub count: u64,
}

impl Event for FlowsExpired {
    fn emit(self, t: &Telemetry) {
        t.add(Count::Expired, self.count);
        if self.count > 0 {
            debug!(flows = self.count, "idle flows forgotten");
        }
    }
}

/// Connections left the kernel table before their end: it was full, and its least recently
/// used entries made room. Their outcome is not counted.
pub struct ConnsEvicted {
    /// How many.
    pub count: u64,
}

impl Event for ConnsEvicted {
    fn emit(self, t: &Telemetry) {
        t.add(Count::ConnsEvicted, self.count);
        if self.count > 0
            && let Some(left_out) = t.may_log(Count::ConnsEvicted)
        {
            warn!(
                connections = self.count,
                left_out,
                "the connection table is full: connections were pushed out before their end"
            );
        }
    }
}

/// The carry store was full: these flows' counts that left the kernel table were not saved
/// (after a restart they continue from their kernel entry only).
pub struct CarryFull {
    /// How many flows.
    pub count: u64,
}

impl Event for CarryFull {
    fn emit(self, t: &Telemetry) {
        t.add(Count::CarryFull, self.count);
        if self.count > 0
            && let Some(left_out) = t.may_log(Count::CarryFull)
        {
            warn!(
                flows = self.count,
                left_out,
                "the carry store is full: these flows' moved-out counts would not survive a restart"
            );
        }
    }
}

/// A program could not be attached to an interface; its packets are not counted there.
pub struct AttachFailed<'a> {
    /// The interface.
    pub interface: &'a str,
    /// What was being attached (`ingress`, `egress`).
    pub hook: &'static str,
    /// The cause.
    pub error: &'a dyn Display,
}

impl Event for AttachFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.add(Count::AttachErrors, 1);
        if let Some(left_out) = t.may_log(Count::AttachErrors) {
            warn!(interface = %self.interface, hook = self.hook, error = %self.error, left_out,
                "cannot attach; these packets are not counted");
        }
    }
}

/// The backend accepted an OTLP export.
pub struct ExportSent;

impl Event for ExportSent {
    fn emit(self, t: &Telemetry) {
        t.add(Count::ExportOk, 1);
    }
}

/// The backend accepted an OTLP export but rejected some of its points (OTLP
/// `partial_success`): they are lost, like a failed export's.
pub struct ExportRejected<'a> {
    /// Data points rejected.
    pub points: u64,
    /// The backend's reason (may be empty).
    pub message: &'a str,
}

impl Event for ExportRejected<'_> {
    fn emit(self, t: &Telemetry) {
        t.add(Count::ExportRejected, self.points);
        if let Some(left_out) = t.may_log(Count::ExportRejected) {
            warn!(
                points = self.points,
                reason = self.message,
                left_out,
                "the OTLP backend rejected data points of an accepted export"
            );
        }
    }
}

/// An OTLP export failed after its retries: its points are dropped (the next export carries
/// the cumulative totals).
pub struct ExportFailed<'a> {
    /// Data points in the request.
    pub points: u64,
    /// The cause.
    pub error: &'a dyn Display,
}

impl Event for ExportFailed<'_> {
    fn emit(self, t: &Telemetry) {
        t.add(Count::ExportFailed, 1);
        t.add(Count::ExportDropped, self.points);
        // An absent collector must not flood the log.
        if let Some(left_out) = t.may_log(Count::ExportFailed) {
            warn!(error = %self.error, points = self.points, left_out,
                "OTLP export failed; dropped (the next export carries the totals)");
        }
    }
}
